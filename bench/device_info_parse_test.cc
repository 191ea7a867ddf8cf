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

TEST(ParseNvidiaDriverVersion, NothingRecognizable) {
  EXPECT_EQ(ParseNvidiaDriverVersion(""), "");
  EXPECT_EQ(ParseNvidiaDriverVersion("garbage\n"), "");
  EXPECT_EQ(ParseNvidiaDriverVersion("NVRM version: NVIDIA UNIX x86_64 Kernel Module\n"), "");
}

}  // namespace
}  // namespace truthput
