// Turning a RunResult into what users read and script against: the console table, CSV, JSON.
#ifndef TRUTHPUT_BENCH_REPORT_H_
#define TRUTHPUT_BENCH_REPORT_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "results/results.pb.h"

namespace truthput {

void PrintTable(const RunResult& result, std::ostream& out);

// CSV with a header row. Column names are a published contract: add, never rename.
std::string FormatCsv(const RunResult& result);

// The protobuf JSON mapping of any of the result messages (field names as in the .proto,
// unset primitive fields printed, indented).
absl::StatusOr<std::string> MessageToJson(const google::protobuf::Message& message);
// The inverse: parses `json` into `message`, unknown fields ignored where asked. The error is
// protobuf's on one line (it quotes the input around the error on lines of their own).
absl::Status JsonToMessage(const std::string& json, bool ignore_unknown_fields,
                           google::protobuf::Message& message);

// The protobuf JSON mapping of RunResult (field names as in results.proto).
absl::StatusOr<std::string> FormatJson(const RunResult& result);
absl::StatusOr<RunResult> ParseJson(const std::string& json);
// ParseJson of a file; errors name the path, are one line, and include a run with no points
// and a point with a number no run writes (NaN, infinite or negative).
absl::StatusOr<RunResult> LoadResultJson(const std::string& path);

// OK where WriteFileAtomically(path, ..., overwrite) can succeed when the run ends: the path is
// not a folder, the file's folder exists and a file can be created in it (one is, and removed),
// and the file does not exist unless `overwrite` (a symlink is checked as its target; a device or
// pipe is always OK). Checked before measuring, so that minutes of a run are not lost to a typo.
absl::Status CheckOutputPath(const std::string& path, bool overwrite);

// Whether outputs `a` and `b` would replace one file, however written ("x", "./x", a link to it,
// a link to where it will be). A device or pipe (/dev/null, /dev/stdout) is written into, not
// replaced, so two outputs may share one.
bool SameOutputFile(const std::string& a, const std::string& b);

// Writes `content` to `path` through a temporary file of its own name, renamed over the file (a
// symlink's target, which may not exist yet); refuses to replace an existing file unless
// `overwrite`. A device or pipe (/dev/null, /dev/stdout) is written into, never replaced.
absl::Status WriteFileAtomically(const std::string& path, const std::string& content,
                                 bool overwrite);

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_REPORT_H_
