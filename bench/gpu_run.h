// Running a bench request on the GPU: verification, then for every point the whole step in a
// CUDA graph, timed, and each op timed on its own; the measured RunResult.
#ifndef TRUTHPUT_BENCH_GPU_RUN_H_
#define TRUTHPUT_BENCH_GPU_RUN_H_

#include <functional>
#include <ostream>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bench/bench_request.h"
#include "results/results.pb.h"

namespace truthput {

// A sweep's measured result. `stopped` is OK when every point ran; otherwise it says why the
// sweep ended early (Cancelled for Ctrl-C, SIGTERM or SIGHUP, or the error of the point that
// failed), and `result` holds the points before that one, each complete, with a note saying the
// sweep is incomplete. `signal` is the one that asked the sweep to stop, or 0.
struct GpuRun {
  RunResult result;
  absl::Status stopped;
  int signal = 0;
};

// FailedPrecondition "no CUDA GPU: ..." where no GPU is usable, or naming the GPU where this build
// has no code for it (CheckDeviceCode), each pointing to --predict; InternalError naming the op
// when the reduced-size correctness check fails; the error of the sweep's first point where that
// point fails (a later point's error ends the sweep instead: see GpuRun). Points that cannot run
// in the GPU's memory are marked skipped with the reason and the sweep goes on. Progress goes to
// `log`.
absl::StatusOr<GpuRun> RunOnGpu(const BenchRequest& request, std::ostream& log);

// Tests only: called in every point once its StepRunner is made, before anything is timed; an
// error it returns is the point's, as if that stage had failed (ResourceExhausted: out of
// memory). Null removes it. Not thread-safe: set it while no RunOnGpu runs.
void SetAfterRunnerMadeHookForTesting(std::function<absl::Status(const StepConfig&)> hook);

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_GPU_RUN_H_
