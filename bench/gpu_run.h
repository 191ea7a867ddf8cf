// Running a bench request on the GPU: verification, then for every point the whole step in a
// CUDA graph, timed, and each op timed on its own; the measured RunResult.
#ifndef TRUTHPUT_BENCH_GPU_RUN_H_
#define TRUTHPUT_BENCH_GPU_RUN_H_

#include <ostream>

#include "absl/status/statusor.h"
#include "bench/bench_request.h"
#include "results/results.pb.h"

namespace truthput {

// FailedPrecondition where no GPU is usable; InternalError naming the op when the reduced-size
// correctness check fails. Points that cannot run in the GPU's memory are marked skipped with
// the reason and the sweep goes on. Progress goes to `log`.
absl::StatusOr<RunResult> RunOnGpu(const BenchRequest& request, std::ostream& log);

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_GPU_RUN_H_
