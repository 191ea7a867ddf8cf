#include "bench/build_info.h"

#include <regex>
#include <string>

#include "gtest/gtest.h"

namespace truthput {
namespace {

TEST(BuildInfoTest, IsACommitOrUnknown) {
  const std::string build = kTruthputBuild;
  EXPECT_TRUE(std::regex_match(build, std::regex("[0-9a-f]{40}(-dirty)?|unknown"))) << build;
}

}  // namespace
}  // namespace truthput
