// DeviceIdentity: what a result file records about the GPU and software it ran on.
#ifndef TRUTHPUT_BENCH_DEVICE_INFO_H_
#define TRUTHPUT_BENCH_DEVICE_INFO_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace truthput {

struct DeviceIdentity {
  std::string name;  // "NVIDIA H100 80GB HBM3"
  int device = 0;    // CUDA ordinal (as CUDA_VISIBLE_DEVICES renumbers it).
  int sm_count = 0;
  int cc_major = 0, cc_minor = 0;
  int64_t memory_bytes = 0;
  int64_t free_bytes = 0;  // At the time of the call, on this device.
  int64_t l2_bytes = 0;
  int sm_clock_mhz_max = 0;   // Peak SM clock (cudaDevAttrClockRate); not the clock under load.
  int mem_clock_mhz_max = 0;  // Peak memory clock (cudaDevAttrMemoryClockRate).
  int mem_bus_width_bits = 0;
  // Kernel driver, "580.159.04", from /proc/driver/nvidia/version (no NVML); empty where that
  // file is unreadable.
  std::string driver_version;
  std::string cuda_runtime_version;  // The CUDA runtime linked in, "13.0".
  std::string cublas_version;        // The cuBLASLt loaded, "13.1.0".
  std::string uuid;                  // "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as nvidia-smi.
  std::string hostname;
};

// Peak DRAM bandwidth in GB/s: two transfers per memory clock over the bus width (H100 SXM:
// 2619 MHz x 5120 bits = 3352; H200: 3201 MHz x 6144 bits = 4917). 0 where either is unknown.
double DramPeakGbps(const DeviceIdentity& id);

// Reads the identity of CUDA device `device`. FailedPrecondition "no CUDA GPU: ..." where no GPU
// is usable; InvalidArgument for an ordinal out of range. Leaves the current device unchanged.
absl::StatusOr<DeviceIdentity> ReadDeviceIdentity(int device);

// The version field of /proc/driver/nvidia/version's text ("NVRM version: NVIDIA UNIX x86_64
// Kernel Module  580.159.04  Thu ..."), or empty if there is none. Exposed for tests.
std::string ParseNvidiaDriverVersion(const std::string& proc_text);

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_DEVICE_INFO_H_
