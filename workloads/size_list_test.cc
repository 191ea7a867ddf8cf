#include "workloads/size_list.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace truthput {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<int64_t> Parse(absl::string_view s) {
  absl::StatusOr<std::vector<int64_t>> v = ParseSizeList(s, "batch");
  EXPECT_TRUE(v.ok()) << s << ": " << v.status();
  return v.ok() ? *v : std::vector<int64_t>{};
}

std::string Error(absl::string_view s) {
  absl::StatusOr<std::vector<int64_t>> v = ParseSizeList(s, "batch");
  EXPECT_FALSE(v.ok()) << s;
  return v.ok() ? "" : std::string(v.status().message());
}

TEST(SizeList, Forms) {
  EXPECT_THAT(Parse("1..256"), ElementsAre(1, 2, 4, 8, 16, 32, 64, 128, 256));
  // The end of a range runs even where no step lands on it.
  EXPECT_THAT(Parse("1..64:+8"), ElementsAre(1, 9, 17, 25, 33, 41, 49, 57, 64));
  EXPECT_THAT(Parse("1..100"), ElementsAre(1, 2, 4, 8, 16, 32, 64, 100));
  EXPECT_THAT(Parse("3..4:*2"), ElementsAre(3, 4));
  EXPECT_THAT(Parse("8..64:+8"), ElementsAre(8, 16, 24, 32, 40, 48, 56, 64));
  EXPECT_THAT(Parse("1..100:*10"), ElementsAre(1, 10, 100));
  // A value at exactly hi / step still steps: 2 = 5 / 2 goes on to 4, 64 = 129 / 2 to 128.
  EXPECT_THAT(Parse("1..5"), ElementsAre(1, 2, 4, 5));
  EXPECT_THAT(Parse("1..129"), ElementsAre(1, 2, 4, 8, 16, 32, 64, 128, 129));
  EXPECT_THAT(Parse("1,3,8"), ElementsAre(1, 3, 8));
  EXPECT_THAT(Parse("8, 1 ,3,3"), ElementsAre(1, 3, 8));
  EXPECT_THAT(Parse("1,2,16..64:+16"), ElementsAre(1, 2, 16, 32, 48, 64));
  EXPECT_THAT(Parse("5"), ElementsAre(5));
  EXPECT_THAT(Parse("3..3"), ElementsAre(3));
  // A step that would pass the end of the range (or wrap) goes to the end instead.
  EXPECT_THAT(Parse("1..4294967295:*4294967295"), ElementsAre(1, 4294967295));
  EXPECT_THAT(Parse("4294967294..4294967295:+4294967295"), ElementsAre(4294967294, 4294967295));
  EXPECT_THAT(Parse("1..4294967295:*65536"), ElementsAre(1, 65536, 4294967295));
}

TEST(SizeList, BadInput) {
  EXPECT_THAT(Error(""), HasSubstr("--batch is empty"));
  EXPECT_THAT(Error("0"), HasSubstr("0 is out of range"));
  EXPECT_THAT(Error("0..8"), HasSubstr("out of range"));
  EXPECT_THAT(Error("-4"), HasSubstr("out of range"));
  EXPECT_THAT(Error("abc"), HasSubstr("'abc' is not an integer"));
  EXPECT_THAT(Error("1..x"), HasSubstr("'x' is not an integer"));
  EXPECT_THAT(Error("64..1"), HasSubstr("runs backwards"));
  EXPECT_THAT(Error("1..64:8"), HasSubstr("must be +N"));
  EXPECT_THAT(Error("1..64:*1"), HasSubstr("*2 or more"));
  EXPECT_THAT(Error("1..64:+0"), HasSubstr("out of range"));
  EXPECT_THAT(Error("1,,2"), HasSubstr("empty item"));
  EXPECT_THAT(Error("1..1000000:+1"), HasSubstr("more than"));
  EXPECT_THAT(Error("1..200000:+2"), HasSubstr("more than 100000 values"));  // 100000 steps + end
  EXPECT_THAT(Error("4294967296"), HasSubstr("out of range (1 to 4294967295)"));
  EXPECT_THAT(Error("99999999999999999999"),
              HasSubstr("99999999999999999999 is out of range (1 to 4294967295)"));
  EXPECT_THAT(Error("-99999999999999999999"), HasSubstr("out of range"));
  EXPECT_THAT(Error("1e20"), HasSubstr("'1e20' is not an integer"));
  EXPECT_THAT(Error("1..4:*99999999999999999999"), HasSubstr("out of range"));
}

}  // namespace
}  // namespace truthput
