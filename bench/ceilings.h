// MeasureCeilings: what the GPU this process runs on actually delivers, as opposed to what its
// datasheet promises. bench_ceilings prints it and writes it as a ceilings file (results.proto's
// MeasuredCeilings), against which runs state MBU and MFU (bench/ceilings_io.h).
//
// What is measured, each timed with TimeGpuWork (median of repetitions, CUDA graphs where the
// work is kernels, so launch gaps are not in the figure):
//   * DRAM bandwidth: own streaming read (kernels/stream_read.h, the ceiling bench_kernels holds
//     kernels against), write and copy kernels (kernels/stream_kernels.h) and
//     cudaMemcpyAsync device to device, on buffers of at least 8x L2 (4 GiB; 1 GiB with quick),
//     filled with random data. Copies count bytes read plus bytes written.
//   * Dense GEMM rate through cuBLASLt over a sweep of large shapes (squares and Llama-3-70B-like
//     rectangles at 8192 tokens): bf16 autotuned over the heuristic's candidates, fp8 e4m3 with
//     fast accumulation, autotuned over those and their tile and split-K variants
//     (CublasLtFp8Gemm::Autotune); then fp8 without fast accumulation at fp8's best
//     shape. Each reports the best rate and the shape that gave it. Random inputs.
//   * Sustained, after every burst: the read and every GEMM shape again (with the algorithm its
//     burst was tuned to), each back to back for a lead-in and then timed for seconds; of each
//     dtype the shape whose interval's low end is highest (SurestGemm, ceilings_io.h). Under a
//     power cap the clock falls once work has run a while; the millisecond bursts above do not
//     see it, a sweep point's seconds of steps do, so runs divide by the sustained rates.
//   * Launch costs of an empty kernel: the host's enqueue time per eager launch, the GPU time per
//     kernel when launches are queued back to back, a launch-and-synchronize round trip, and a
//     CUDA graph's GPU time per kernel node (the slope between graphs of 100 and 1100 nodes).
//   * Host <-> device copy bandwidth over the bus from and to pinned host memory.
// The streaming kernels are checked on a small buffer before anything is timed. A run that
// measures its own ceilings at start-up (run_weights) takes only what it divides by.
#ifndef TRUTHPUT_BENCH_CEILINGS_H_
#define TRUTHPUT_BENCH_CEILINGS_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "results/results.pb.h"
#include "workloads/model_spec.pb.h"

namespace truthput {

struct CeilingsOptions {
  bool quick = false;  // Smaller GEMM sweep, 1 GiB buffers, shorter time caps.
  // Set for a run's start-up: only what a run with these weights divides by (ceilings_io.h):
  // the read and the bf16 GEMM, and the fp8 GEMM for fp8 weights, each in bursts and held. The
  // other bandwidths, fp8's precise accumulation, launch costs and host copies are left unset.
  std::optional<DType> run_weights;
  std::string command_line;  // Recorded in the result.
};

struct GemmShape {
  int64_t m, n, k;
};

// The GEMM shapes measured (y[m,n] = x[m,k] · W[n,k]^T).
std::vector<GemmShape> CeilingsGemmShapes(bool quick);

// Measures the ceilings (every one, or a run's with run_weights) on CUDA device 0, logging each
// figure to `log` as it is measured.
// FailedPrecondition "no CUDA GPU: ..." where there is none, or naming the GPU where this build
// has no code for it. fp8 on a GPU without fp8 tensor cores, and a pinned allocation that fails,
// leave their fields unset with a note; every other failure is an error.
absl::StatusOr<MeasuredCeilings> MeasureCeilings(const CeilingsOptions& options, std::ostream& log);

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_CEILINGS_H_
