// Ceilings files: what bench_ceilings measured on a GPU (results.proto's MeasuredCeilings, as
// protobuf JSON), read back and used by runs on the same GPU, so MBU and MFU can be stated against
// what the GPU was measured to reach as well as against its datasheet. CPU only.
#ifndef TRUTHPUT_BENCH_CEILINGS_IO_H_
#define TRUTHPUT_BENCH_CEILINGS_IO_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "results/results.pb.h"
#include "workloads/model_spec.pb.h"
#include "workloads/roofline.h"

namespace truthput {

// The protobuf JSON mapping (field names as in results.proto, every field printed).
absl::StatusOr<std::string> FormatCeilingsJson(const MeasuredCeilings& c);

// Parses and validates (ValidateCeilings). Unknown fields are ignored, so files written by newer
// versions still load. InvalidArgument on malformed JSON or a failed validation.
absl::StatusOr<MeasuredCeilings> ParseCeilingsJson(const std::string& json);

// A usable ceilings record: the GPU named, read_gbps and bf16_tflops present (the two every run
// needs), and every rate that is present finite and > 0. InvalidArgument naming the field.
absl::Status ValidateCeilings(const MeasuredCeilings& c);

// Reads, parses and validates the file at `path`; NotFound where it cannot be read. Errors name
// the path.
absl::StatusOr<MeasuredCeilings> LoadCeilings(const std::string& path);

// InvalidArgument unless the ceilings were measured on a GPU of exactly this name (as
// cudaGetDeviceProperties reports it): ceilings of another GPU model mean nothing here.
absl::Status CheckCeilingsGpu(const MeasuredCeilings& c, const std::string& running_gpu_name);

// Empty where the ceilings were measured on the card running now, or where either UUID is
// unknown. Otherwise a note naming both cards: cards of one model differ by a few percent in
// bandwidth and clocks, and mbu_measured / mfu_measured then carry that difference.
std::string CeilingsFromAnotherCardNote(const MeasuredCeilings& c, const std::string& running_uuid);

// A GEMM's shape as ceilings files name it: "m=8192 n=57344 k=8192". A held GEMM's notes and
// the ceiling's choice among them are matched by it (DenominatorNotes), so it has one spelling.
std::string GemmShapeText(int64_t m, int64_t n, int64_t k);
std::string GemmShapeText(const MeasuredCeilings::GemmPoint& g);

// Of the GEMMs recorded as `dtype` ("bf16 sustained", "fp8 sustained"), the one a ceiling takes:
// the highest low end of its median's ~95% interval, tflops / (1 + rel_ci), rather than the
// highest median. Held medians mostly do not settle under a power cap (+-0.6% to +-3.7% on an
// H200), and the highest of several loose medians reads high on average (the winner's curse).
// A record without a usable rel_ci (unset, not finite or negative) counts as a low end of 0
// unless none has one; then the highest median. Of equal low ends, the higher median. Null where
// none has that dtype; otherwise a pointer into c.gemms, valid while that field is not edited.
const MeasuredCeilings::GemmPoint* SurestGemm(const MeasuredCeilings& c, const std::string& dtype);

// Where SurestGemm is not the highest median of `dtype`, a note that says which it took and over
// what, named as that GEMM's own notes (DenominatorNotes passes it on): "fp8 sustained GEMM
// m=12288 n=12288 k=12288: the ceiling, 1359.6 TFLOP/s +-0.62%, taken over m=6144 n=6144
// k=6144's higher but looser median, 1362.6: ..."; empty otherwise.
std::string SurestGemmNote(const MeasuredCeilings& c, const std::string& dtype);

// The measured dense GEMM rate, TFLOP/s, for weights of `dtype`: fp8's for FP8_E4M3 where
// measured, bf16's otherwise (as PeakFlopsPerSecond does with datasheets); the sustained rate
// where the file has it, else the burst (files written before sustained rates were measured).
double MeasuredPeakTflops(const MeasuredCeilings& c, DType dtype);

// The measured streaming read, GB/s: read_sustained_gbps where set, else read_gbps.
double MeasuredReadGbps(const MeasuredCeilings& c);

// What MeasuredReadGbps and MeasuredPeakTflops(c, dtype) give, and whether each is a held rate:
// "read 4558 GB/s sustained, bf16 GEMM 688 TFLOP/s sustained", or "(a burst: no sustained rate)"
// after a figure from a file that has none.
std::string MeasuredDenominatorsText(const MeasuredCeilings& c, DType dtype);

// The ceilings' notes that bear on what a run with `dtype` weights divides by: another process
// on the GPU while they were measured, and an unsettled median of the very read or GEMM shape
// MeasuredReadGbps and MeasuredPeakTflops give (e.g. "fp8 sustained GEMM m=6144 n=6144 k=6144:
// median not settled ... (+-3.48%, 80 reps)"), so a run states how firm its denominators are.
std::vector<std::string> DenominatorNotes(const MeasuredCeilings& c, DType dtype);

// Sets p.mbu_measured = achieved_gbps / MeasuredReadGbps(c) and p.mfu_measured =
// achieved_tflops / MeasuredPeakTflops(c, weight_dtype) for a measured point (achieved_gbps /
// achieved_tflops set); leaves skipped or predicted points alone. Expects validated ceilings.
void AddMeasuredAgainstCeilings(BatchPoint& p, const MeasuredCeilings& c, DType weight_dtype);

// The console table of a ceilings record: each measured rate beside its datasheet ceiling and
// percentage where the datasheet has one, the launch costs, the GEMM sweep and the notes.
void PrintCeilingsTable(const MeasuredCeilings& c, std::ostream& out);

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_CEILINGS_IO_H_
