// bench_ceilings: measures what this GPU actually delivers (DRAM bandwidth, dense GEMM rates,
// launch costs, bus bandwidth), prints it against the datasheet, and writes it as JSON for
// bench_decode / bench_prefill --ceilings=PATH.
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_join.h"
#include "bench/ceilings.h"
#include "bench/ceilings_io.h"
#include "bench/cli_usage.h"
#include "bench/report.h"

ABSL_FLAG(std::string, json, "",
          "write the ceilings as JSON (protobuf mapping of results.proto's MeasuredCeilings) to "
          "this path, for bench_decode / bench_prefill --ceilings=PATH");
ABSL_FLAG(bool, overwrite, false, "replace an existing --json file");
ABSL_FLAG(bool, quick, false, "a smaller GEMM sweep, 1 GiB buffers and shorter time caps");

int main(int argc, char** argv) {
  truthput::SetCommandLineUsage(
      "what this GPU actually delivers (DRAM bandwidth, dense bf16/fp8 GEMM "
      "rates, launch costs, host<->device bandwidth), against its datasheet.\n"
      "Example: bench_ceilings --json=results/h100-sxm/ceilings.json");
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::cerr << "bench_ceilings: unexpected argument '" << positional[1]
              << "' (flags are --name=value)\n";
    return 2;
  }
  const std::string json_path = absl::GetFlag(FLAGS_json);
  const bool overwrite = absl::GetFlag(FLAGS_overwrite);
  // Refuse before minutes of measuring, not after.
  if (!json_path.empty()) {
    if (absl::Status st = truthput::CheckOutputPath(json_path, overwrite); !st.ok()) {
      std::cerr << "bench_ceilings: " << st.message() << "\n";
      return 2;
    }
  }

  truthput::CeilingsOptions options;
  options.quick = absl::GetFlag(FLAGS_quick);
  options.command_line = absl::StrJoin(std::vector<std::string>(argv, argv + argc), " ");
  absl::StatusOr<truthput::MeasuredCeilings> ceilings =
      truthput::MeasureCeilings(options, std::cout);
  if (!ceilings.ok()) {
    std::cerr << "bench_ceilings: " << ceilings.status().message() << "\n";
    return 1;
  }
  std::cout << "\n";
  truthput::PrintCeilingsTable(*ceilings, std::cout);

  if (!json_path.empty()) {
    absl::StatusOr<std::string> json = truthput::FormatCeilingsJson(*ceilings);
    const absl::Status st =
        json.ok() ? truthput::WriteFileAtomically(json_path, *json, overwrite) : json.status();
    if (!st.ok()) {
      std::cerr << "bench_ceilings: " << st.message() << "\n";
      return 1;
    }
    std::cout << "wrote " << json_path << "\n";
  }
  return 0;
}
