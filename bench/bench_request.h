// What a bench_decode / bench_prefill invocation asks for, parsed and validated from its flags.
#ifndef TRUTHPUT_BENCH_BENCH_REQUEST_H_
#define TRUTHPUT_BENCH_BENCH_REQUEST_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "results/results.pb.h"
#include "workloads/model_spec.pb.h"
#include "workloads/workload.h"

namespace truthput {

struct BenchRequest {
  std::string tool;  // "bench_decode" or "bench_prefill"
  Phase phase = Phase::kDecode;
  std::string model_arg;
  ModelSpec model;
  std::vector<int64_t> batches;
  std::vector<int64_t> seq_lens = {1};  // prefill prompt lengths; {1} for decode
  int64_t context = 0;
  int64_t tp = 1;
  std::string gpu_arg;  // --gpu: datasheet to predict for / compare against ("" = detect)
  bool predict = false;
  bool graph = true;
  bool verify = true;
  std::string profile = "step";  // CUPTI depth: "off", "step", "ops"
  std::string gemm = "auto";     // projections: "auto", "own", "own_w8a8", "cublaslt"
  std::optional<double> usd_per_gpu_hour;  // unset: the datasheet's public price
  // Ceilings file of this GPU (bench_ceilings --json) for mbu_measured/mfu_measured; "" measures
  // them at start-up (quick sweep); "none" skips them.
  std::string ceilings_path;
  // The file at ceilings_path, loaded and validated (LoadCeilings) by MakeBenchRequest; RunOnGpu
  // checks it names the GPU at hand.
  std::optional<MeasuredCeilings> ceilings;
  // --predict --calibrate: a measured run whose roofline efficiency scales the prediction.
  std::string calibrate_path;
  std::string csv_path;
  std::string json_path;
  bool overwrite = false;
  std::string command_line;

  // The step configs of the sweep, in order (seq_len outer, batch inner).
  std::vector<StepConfig> Steps() const;
};

// Raw flag values, as typed.
struct BenchFlagValues {
  std::string model, batch, seq, gpu, csv, json, profile = "step", ceilings,
      gemm = "auto", calibrate, weights;
  int64_t context = 0;
  int64_t tp = 1;
  bool predict = false, graph = true, verify = true, overwrite = false;
  std::optional<double> usd_per_gpu_hour;
};

// Validates everything that can be checked before touching a GPU: the model exists, the batch
// and sequence lists parse, every step builds (TP divides the heads, context fits the model),
// the GPU name is known, a --ceilings file loads (LoadCeilings), and output files can be written
// (CheckOutputPath).
absl::StatusOr<BenchRequest> MakeBenchRequest(std::string tool, Phase phase,
                                              const BenchFlagValues& flags);

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_BENCH_REQUEST_H_
