#include "bench/sweep.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <iterator>
#include <string>

#include "absl/strings/str_cat.h"

namespace truthput {
namespace {

std::atomic<int> g_signal{0};  // The first stop signal, 0 before one.
static_assert(std::atomic<int>::is_always_lock_free, "the handler may only touch lock-free state");

constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP};
static_assert(std::size(kStopSignals) == SweepInterrupt::kSignalCount);

void OnStopSignal(int sig) {
  // write() may set errno, which the interrupted code may be about to read.
  const int saved_errno = errno;
  int none = 0;
  const bool first = g_signal.compare_exchange_strong(none, sig);
  // A second Ctrl-C ends the process: a user who means it is not held up by a long point. A
  // SIGTERM or SIGHUP may come twice without anyone asking twice (timeout(1) signals the child
  // and then its whole process group), so those stay caught; SIGKILL aborts.
  if (sig == SIGINT) std::signal(sig, SIG_DFL);
  constexpr char kInt[] =
      "\ninterrupted: stopping after the point being measured (Ctrl-C again to abort)\n";
  constexpr char kTerm[] = "\nSIGTERM: stopping after the point being measured\n";
  constexpr char kHup[] = "\nSIGHUP: stopping after the point being measured\n";
  const char* message = sig == SIGINT ? kInt : sig == SIGTERM ? kTerm : kHup;
  const size_t size = sig == SIGINT ? sizeof(kInt) : sig == SIGTERM ? sizeof(kTerm) : sizeof(kHup);
  if (first) {  // timeout(1)'s second SIGTERM says nothing new
    [[maybe_unused]] ssize_t n = write(STDERR_FILENO, message, size - 1);
  }
  errno = saved_errno;
}

}  // namespace

SweepInterrupt::SweepInterrupt() {
  g_signal.store(0);
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // a read or wait the signal lands in goes on
  for (int i = 0; i < kSignalCount; ++i) {
    sigaction(kStopSignals[i], &action, &previous_[i]);
    // Started with the signal ignored (SIGINT in a background job, SIGHUP under nohup): it
    // stays ignored.
    if (previous_[i].sa_handler == SIG_IGN) sigaction(kStopSignals[i], &previous_[i], nullptr);
  }
}

SweepInterrupt::~SweepInterrupt() {
  for (int i = 0; i < kSignalCount; ++i) sigaction(kStopSignals[i], &previous_[i], nullptr);
}

int SweepInterrupt::signal() const { return g_signal.load(); }

absl::Status RunSweep(const std::vector<StepConfig>& steps,
                      const std::function<absl::Status(const StepConfig&, BatchPoint*)>& run_point,
                      const std::function<int()>& interrupted, RunResult& result) {
  absl::Status stopped;
  for (const StepConfig& step : steps) {
    const std::string where =
        step.phase == Phase::kPrefill
            ? absl::StrCat("batch ", step.batch, ", prompt ", step.seq_len)
            : absl::StrCat("batch ", step.batch, ", context ", step.context);
    if (const int sig = interrupted(); sig != 0) {
      const std::string name = sig == SIGINT    ? "Ctrl-C"
                               : sig == SIGTERM ? "SIGTERM"
                               : sig == SIGHUP  ? "SIGHUP"
                                                : absl::StrCat("signal ", sig);
      stopped = absl::CancelledError(absl::StrCat("interrupted (", name, ") before ", where));
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
