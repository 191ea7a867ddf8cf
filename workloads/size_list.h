// Parsing of size lists on the command line: "1..256" (doubling), "8..64:+8" (steps of 8),
// "1..256:*4" (factor 4), "1,3,8", or a mix "1,2,8..64:+8". Values are positive integers.
#ifndef TRUTHPUT_WORKLOADS_SIZE_LIST_H_
#define TRUTHPUT_WORKLOADS_SIZE_LIST_H_

#include <cstdint>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"

namespace truthput {

// Returns the values in ascending order without duplicates. A range "a..b" includes a, every
// step below b, and b itself even where no step lands on it ("1..100" ends 32, 64, 100): the
// sizes asked for run, up to the largest. `what` names the flag in errors.
absl::StatusOr<std::vector<int64_t>> ParseSizeList(absl::string_view text, absl::string_view what);

}  // namespace truthput

#endif  // TRUTHPUT_WORKLOADS_SIZE_LIST_H_
