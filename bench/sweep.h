// A sweep over batch sizes that keeps what it measured: a point that fails, or Ctrl-C, ends the
// sweep, and every point measured before it is still printed and written. A sweep takes
// minutes; losing all of it to one keystroke or to its last point would be a surprise.
#ifndef TRUTHPUT_BENCH_SWEEP_H_
#define TRUTHPUT_BENCH_SWEEP_H_

#include <csignal>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "results/results.pb.h"
#include "workloads/workload.h"

namespace truthput {

// Ctrl-C during a sweep: the first SIGINT asks the sweep to stop once the point it is measuring
// is done; the second ends the process as usual. SIGTERM (timeout, a batch scheduler's time
// limit) and SIGHUP (a closed terminal) ask the same, any number of times, so that a killed
// sweep still writes the points it measured (SIGKILL ends it at once).
class SweepInterrupt {
 public:
  // Installs the handler of each of SIGINT, SIGTERM and SIGHUP (unless that signal is ignored, as
  // SIGINT is in a background job and SIGHUP under nohup); the destructor puts back the ones
  // found. One at a time.
  SweepInterrupt();
  ~SweepInterrupt();
  SweepInterrupt(const SweepInterrupt&) = delete;
  SweepInterrupt& operator=(const SweepInterrupt&) = delete;

  // The first of those signals that arrived while this object was alive, or 0.
  int signal() const;

  static constexpr int kSignalCount = 3;  // SIGINT, SIGTERM, SIGHUP

 private:
  struct sigaction previous_[kSignalCount];
};

// Runs `run_point` for each step in order, each into a new point of `result`, until one fails
// or `interrupted` gives a signal (non-zero: SweepInterrupt::signal) before a point starts. OK
// when every step ran. Otherwise the reason naming the step (Cancelled, naming the signal, for
// an interrupt); the failed point is removed, and where points remain, a note in result's config
// says the sweep is incomplete and where it stopped.
absl::Status RunSweep(const std::vector<StepConfig>& steps,
                      const std::function<absl::Status(const StepConfig&, BatchPoint*)>& run_point,
                      const std::function<int()>& interrupted, RunResult& result);

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_SWEEP_H_
