#include "bench/cli_usage.h"

#include <string>

#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "bench/build_info.h"

namespace truthput {

void SetCommandLineUsage(absl::string_view usage) {
  absl::SetProgramUsageMessage(usage);
  absl::FlagsUsageConfig config;
  // Abseil's default lists only flags defined in a file named like the program; bench_decode's
  // and bench_prefill's shared flags live in bench_main.cc.
  config.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "bench/");
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  config.normalize_filename = [](absl::string_view file) {
    const size_t at = file.rfind("bench/");
    return std::string(at == absl::string_view::npos ? file : file.substr(at));
  };
  config.version_string = VersionLine;
  absl::SetFlagsUsageConfig(config);
}

}  // namespace truthput
