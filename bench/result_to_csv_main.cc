// result_to_csv IN.json [OUT.csv]: the CSV of a RunResult JSON file, in the same columns
// bench_decode / bench_prefill --csv write (stdout without OUT; OUT is never overwritten).
#include <iostream>

#include "bench/report.h"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3 || argv[1][0] == '-') {
    std::cerr << "usage: result_to_csv IN.json [OUT.csv]\n";
    return 2;
  }
  absl::StatusOr<truthput::RunResult> result = truthput::LoadResultJson(argv[1]);
  if (!result.ok()) {
    std::cerr << "result_to_csv: " << result.status().message() << "\n";
    return 2;
  }
  const std::string csv = truthput::FormatCsv(*result);
  if (argc == 2) {
    if (!(std::cout << csv << std::flush)) {
      std::cerr << "result_to_csv: writing standard output failed\n";
      return 1;
    }
    return 0;
  }
  absl::Status st = truthput::WriteFileAtomically(argv[2], csv, /*overwrite=*/false);
  if (absl::IsAlreadyExists(st)) {
    std::cerr << "result_to_csv: " << argv[2] << " exists; result_to_csv never replaces a file\n";
    return 1;
  }
  if (!st.ok()) {
    std::cerr << "result_to_csv: " << st.message() << "\n";
    return 1;
  }
  return 0;
}
