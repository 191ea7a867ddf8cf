// CPU test for the driver-version parsing in device_info (no GPU needed).
#include "bench/device_info.h"
#include "gtest/gtest.h"

namespace truthput {
namespace {

TEST(ParseNvidiaDriverVersion, ProprietaryModule) {
  EXPECT_EQ(ParseNvidiaDriverVersion(
                "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 "
                "UTC 2023\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"),
            "535.104.05");
}

TEST(ParseNvidiaDriverVersion, OpenModule) {
  EXPECT_EQ(ParseNvidiaDriverVersion(
                "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release "
                "Build  (dvs-builder@U16-I3-B03-4-3)  Sun Jul 27 06:54:38 UTC 2025\n"),
            "580.159.04");
}

// A dotted word before the version (a build tag) is not the version: it must start with a digit.
TEST(ParseNvidiaDriverVersion, TakesTheFirstDottedNumber) {
  EXPECT_EQ(ParseNvidiaDriverVersion("NVRM version: NVIDIA UNIX x86_64 Kernel Module  rc.1  "
                                     "535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"),
            "535.104.05");
}

TEST(ParseNvidiaDriverVersion, NothingRecognizable) {
  EXPECT_EQ(ParseNvidiaDriverVersion(""), "");
  EXPECT_EQ(ParseNvidiaDriverVersion("garbage\n"), "");
  EXPECT_EQ(ParseNvidiaDriverVersion("NVRM version: NVIDIA UNIX x86_64 Kernel Module\n"), "");
  // Not the driver's version file.
  EXPECT_EQ(ParseNvidiaDriverVersion("Kernel Module  535.104.05\n"), "");
  // A number that is not dotted (the date's day) is not a version.
  EXPECT_EQ(ParseNvidiaDriverVersion(
                "NVRM version: NVIDIA UNIX x86_64 Kernel Module  Sat Aug 19 01:15:15 UTC 2023\n"),
            "");
}

// The version is on the first line; the compiler's on the next is not the driver's.
TEST(ParseNvidiaDriverVersion, OnlyTheFirstLine) {
  EXPECT_EQ(ParseNvidiaDriverVersion("NVRM version: NVIDIA UNIX x86_64 Kernel Module\n"
                                     "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"),
            "");
}

TEST(DramPeakGbpsTest, FromClockAndBusWidth) {
  DeviceIdentity h100;
  h100.mem_clock_mhz_max = 2619;
  h100.mem_bus_width_bits = 5120;
  EXPECT_NEAR(DramPeakGbps(h100), 3352.3, 0.1);  // the datasheet's 3.35 TB/s
  DeviceIdentity h200;
  h200.mem_clock_mhz_max = 3201;
  h200.mem_bus_width_bits = 6144;
  EXPECT_NEAR(DramPeakGbps(h200), 4916.7, 0.1);  // the datasheet's 4.8 TB/s, rounded down there
  EXPECT_EQ(DramPeakGbps(DeviceIdentity{}), 0.0);
  h100.mem_bus_width_bits = 0;
  EXPECT_EQ(DramPeakGbps(h100), 0.0);
}

}  // namespace
}  // namespace truthput
