// The shared main() of bench_decode and bench_prefill: validate, predict or run, report.
#ifndef TRUTHPUT_BENCH_BENCH_MAIN_H_
#define TRUTHPUT_BENCH_BENCH_MAIN_H_

#include <functional>
#include <string>

#include "bench/bench_request.h"

#include "workloads/workload.h"

namespace truthput {

// Parses the common flags and runs. The phase's own flags (--context for decode, --seq for
// prefill) are defined by each binary and copied in by `read_phase_flags` after parsing.
// Returns the process exit code: 0 ok, 2 bad input, 1 a failure while running.
int BenchMain(const std::string& tool, Phase phase, int argc, char** argv,
              const std::function<void(BenchFlagValues&)>& read_phase_flags);

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_BENCH_MAIN_H_
