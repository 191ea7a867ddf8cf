#include "bench/device_info.h"

#include <cuda_runtime_api.h>

#include <cstdio>

#include "gtest/gtest.h"

namespace truthput {
namespace {

TEST(ReadDeviceIdentity, DescribesDeviceZero) {
  absl::StatusOr<DeviceIdentity> id = ReadDeviceIdentity(0);
  ASSERT_TRUE(id.ok()) << id.status();
  std::printf(
      "name '%s' device %d sms %d cc %d.%d memory %lld free %lld l2 %lld sm_clock %d MHz "
      "mem_clock %d MHz bus %d bits driver '%s' runtime '%s' cublas '%s' uuid '%s' host '%s'\n",
      id->name.c_str(), id->device, id->sm_count, id->cc_major, id->cc_minor,
      static_cast<long long>(id->memory_bytes), static_cast<long long>(id->free_bytes),
      static_cast<long long>(id->l2_bytes), id->sm_clock_mhz_max, id->mem_clock_mhz_max,
      id->mem_bus_width_bits, id->driver_version.c_str(), id->cuda_runtime_version.c_str(),
      id->cublas_version.c_str(), id->uuid.c_str(), id->hostname.c_str());
  EXPECT_FALSE(id->name.empty());
  EXPECT_EQ(id->device, 0);
  EXPECT_GT(id->sm_count, 0);
  EXPECT_GT(id->cc_major, 0);
  EXPECT_GT(id->l2_bytes, 0);
  EXPECT_GT(id->memory_bytes, id->free_bytes);
  EXPECT_GT(id->free_bytes, 0);
  EXPECT_GT(id->sm_clock_mhz_max, 0);
  EXPECT_GT(id->mem_clock_mhz_max, 0);
  EXPECT_GT(id->mem_bus_width_bits, 0);
  EXPECT_FALSE(id->cuda_runtime_version.empty());
  EXPECT_FALSE(id->cublas_version.empty());
  EXPECT_EQ(id->uuid.size(), 40u) << id->uuid;
  EXPECT_EQ(id->uuid.rfind("GPU-", 0), 0u) << id->uuid;
}

TEST(ReadDeviceIdentity, RejectsOrdinalOutOfRange) {
  int count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  EXPECT_EQ(ReadDeviceIdentity(count).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadDeviceIdentity(-1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ReadDeviceIdentity, LeavesCurrentDeviceUnchanged) {
  int before = -1, after = -1;
  ASSERT_EQ(cudaGetDevice(&before), cudaSuccess);
  ASSERT_TRUE(ReadDeviceIdentity(0).ok());
  ASSERT_EQ(cudaGetDevice(&after), cudaSuccess);
  EXPECT_EQ(before, after);
}

}  // namespace
}  // namespace truthput
