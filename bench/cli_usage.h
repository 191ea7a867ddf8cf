// What --help, --helpshort and --version print for the truthput binaries: the binary's own flags
// (wherever under bench/ they are defined), paths as in the repository, and truthput's version.
#ifndef TRUTHPUT_BENCH_CLI_USAGE_H_
#define TRUTHPUT_BENCH_CLI_USAGE_H_

#include "absl/strings/string_view.h"

namespace truthput {

// Sets the usage message (Abseil prints it after "<program>: ") and the flags' help config. Call
// before absl::ParseCommandLine.
void SetCommandLineUsage(absl::string_view usage);

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_CLI_USAGE_H_
