#include "workloads/size_list.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace truthput {
namespace {

constexpr int64_t kMaxValue = 4294967295;  // results hold sizes as uint32
constexpr size_t kMaxCount = 100000;

absl::StatusOr<int64_t> ParsePositive(absl::string_view s, absl::string_view what,
                                      absl::string_view text) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(s, &v)) {
    // Digits that overflow int64 are a size too large, not a typo.
    absl::string_view digits = absl::StripAsciiWhitespace(s);
    if (!absl::ConsumePrefix(&digits, "+")) absl::ConsumePrefix(&digits, "-");
    if (!digits.empty() && std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit)) {
      return absl::InvalidArgumentError(absl::StrCat("--", what, "=", text, ": ", s,
                                                     " is out of range (1 to ", kMaxValue, ")"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("--", what, "=", text, ": '", s, "' is not an integer"));
  }
  if (v < 1 || v > kMaxValue) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", what, "=", text, ": ", v, " is out of range (1 to ", kMaxValue, ")"));
  }
  return v;
}

}  // namespace

absl::StatusOr<std::vector<int64_t>> ParseSizeList(absl::string_view text, absl::string_view what) {
  if (absl::StripAsciiWhitespace(text).empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--", what, " is empty"));
  }
  std::vector<int64_t> out;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (item.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", what, "=", text, ": empty item in the list"));
    }
    const size_t dots = item.find("..");
    if (dots == absl::string_view::npos) {
      absl::StatusOr<int64_t> v = ParsePositive(item, what, text);
      if (!v.ok()) return v.status();
      out.push_back(*v);
      continue;
    }
    absl::string_view first = item.substr(0, dots);
    absl::string_view rest = item.substr(dots + 2);
    absl::string_view step = "*2";
    if (const size_t colon = rest.find(':'); colon != absl::string_view::npos) {
      step = rest.substr(colon + 1);
      rest = rest.substr(0, colon);
    }
    absl::StatusOr<int64_t> lo = ParsePositive(first, what, text);
    if (!lo.ok()) return lo.status();
    absl::StatusOr<int64_t> hi = ParsePositive(rest, what, text);
    if (!hi.ok()) return hi.status();
    if (*lo > *hi) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", what, "=", text, ": range ", item, " runs backwards"));
    }
    const bool multiply = absl::ConsumePrefix(&step, "*");
    if (!multiply && !absl::ConsumePrefix(&step, "+")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", what, "=", text, ": step '", step, "' must be +N (add) or *N (multiply)"));
    }
    absl::StatusOr<int64_t> by = ParsePositive(step, what, text);
    if (!by.ok()) return by.status();
    if (multiply && *by < 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", what, "=", text, ": a multiplying step must be *2 or more"));
    }
    for (int64_t v = *lo;;) {
      out.push_back(v);
      if (out.size() > kMaxCount) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", what, "=", text, ": more than ", kMaxCount, " values"));
      }
      if (v == *hi) break;
      // The next value would pass hi (or wrap): the range ends at hi itself.
      v = (multiply ? v > *hi / *by : v > *hi - *by) ? *hi : (multiply ? v * *by : v + *by);
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace truthput
