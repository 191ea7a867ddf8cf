#include "bench/sweep.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace truthput {
namespace {

std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the handler may only touch lock-free state");

void OnSigint(int) {
  g_interrupted.store(true);
  // The next Ctrl-C ends the process: a user who means it is not held up by a long point.
  std::signal(SIGINT, SIG_DFL);
  constexpr char kMessage[] =
      "\ninterrupted: stopping after the point being measured (Ctrl-C again to abort)\n";
  [[maybe_unused]] ssize_t n = write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
}

}  // namespace

SweepInterrupt::SweepInterrupt() {
  g_interrupted.store(false);
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_handler = OnSigint;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // a read or wait the signal lands in goes on
  sigaction(SIGINT, &action, &previous_);
  // Started with SIGINT ignored (a background job, nohup): it stays ignored.
  if (previous_.sa_handler == SIG_IGN) sigaction(SIGINT, &previous_, nullptr);
}

SweepInterrupt::~SweepInterrupt() { sigaction(SIGINT, &previous_, nullptr); }

bool SweepInterrupt::requested() const { return g_interrupted.load(); }

absl::Status RunSweep(const std::vector<StepConfig>& steps,
                      const std::function<absl::Status(const StepConfig&, BatchPoint*)>& run_point,
                      const std::function<bool()>& interrupted, RunResult& result) {
  absl::Status stopped;
  for (const StepConfig& step : steps) {
    const std::string where =
        step.phase == Phase::kPrefill
            ? absl::StrCat("batch ", step.batch, ", prompt ", step.seq_len)
            : absl::StrCat("batch ", step.batch, ", context ", step.context);
    if (interrupted()) {
      stopped = absl::CancelledError(absl::StrCat("interrupted (Ctrl-C) before ", where));
      break;
    }
    absl::Status st = run_point(step, result.add_points());
    if (st.ok()) continue;
    result.mutable_points()->RemoveLast();
    stopped = absl::Status(st.code(), absl::StrCat("stopped at ", where, ": ", st.message()));
    break;
  }
  if (!stopped.ok() && result.points_size() > 0) {
    result.mutable_config()->add_notes(absl::StrCat(
        "incomplete: ", stopped.message(), "; the points listed before it are complete"));
  }
  return stopped;
}

}  // namespace truthput
