// fake_nvml: a stand-in libnvidia-ml.so.1 for testing NvmlSampler on machines without a GPU.
//
// It is built as a shared library with that soname (bench/CMakeLists.txt). A test that links it
// has it loaded before NvmlSampler::Create dlopens "libnvidia-ml.so.1", so the dlopen returns this
// library, not the driver's, and the test scripts what each NVML call returns: failures on chosen
// calls, values that change from sample to sample, GPM present or not. It also records what the
// sampler did to it (calls per function, what it returned, initializations and GPM buffers not
// released), so a test can hold the sampler's summary against what NVML actually said.
//
// Only the calls NvmlSampler makes are implemented, with nvml.h's signatures, as NVML documents
// them: every device call before nvmlInit_v2 returns NVML_ERROR_UNINITIALIZED.
#ifndef TRUTHPUT_BENCH_FAKE_NVML_H_
#define TRUTHPUT_BENCH_FAKE_NVML_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bench/nvml_types.h"

namespace truthput::fake_nvml {

// The functions sampled on every tick, and the other calls a test may fail.
enum Call {
  kUtilization,     // nvmlDeviceGetUtilizationRates
  kSmClock,         // nvmlDeviceGetClockInfo(NVML_CLOCK_SM)
  kPower,           // nvmlDeviceGetPowerUsage
  kReasons,         // nvmlDeviceGetCurrentClocksEventReasons (ThrottleReasons: old driver)
  kTemperature,     // nvmlDeviceGetTemperatureV (nvmlDeviceGetTemperature: old driver)
  kEnergy,          // nvmlDeviceGetTotalEnergyConsumption
  kGpmSampleGet,    // nvmlGpmSampleGet
  kCallCount,
};

// What the fake answers. Until the first Reset, nvmlInit_v2 fails (NVML_ERROR_DRIVER_NOT_LOADED):
// loaded by anything but a test that scripts it, the fake gives nothing. `result[c](i)` is the return code of the i-th call (from 0) of c since
// Reset (default: success); a successful call returns `value(c, i)`.
struct Script {
  int init_result = kNvmlSuccess;
  std::string uuid = "GPU-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";  // lower case, as NVML's
  std::function<int(int)> result[kCallCount];
  // Value of a successful call: utilization % (memory utilization is half of it), SM clock in
  // MHz, power in mW, clock event reason bits, the GPU temperature in degrees C, the energy
  // counter in mJ.
  std::function<double(Call, int)> value = [](Call c, int i) -> double {
    switch (c) {
      case kUtilization: return 40 + 7 * (i % 9);
      case kSmClock: return 1500 + 10 * (i % 5);
      case kPower: return 300000 + 1000 * (i % 4);
      case kReasons: return 0;
      case kTemperature: return 60 + (i % 3);
      case kEnergy: return 1000000 + 2500.0 * i;
      default: return 0;
    }
  };
  bool gpm_supported = true;
  int gpm_metrics_result = kNvmlSuccess;
  // Per GPM metric id, its own return code (default success) and value (default: id * 1.5).
  std::function<int(unsigned int)> gpm_metric_result;
  // nvmlDeviceGetComputeRunningProcesses_v2: these processes, or this error.
  std::vector<nvmlProcessInfo_v2_t> processes;
  int processes_result = kNvmlSuccess;
  // Processes that start between two queries: each query first adds this many to the list.
  int processes_started_per_query = 0;
};

// What the fake saw since Reset.
struct Record {
  int calls[kCallCount] = {};
  // Sum of the values returned by successful calls, and how many there were.
  double returned_sum[kCallCount] = {};
  int returned[kCallCount] = {};
  uint64_t reasons_or = 0;
  int inits = 0;         // nvmlInit_v2 that succeeded, minus nvmlShutdown.
  int gpm_samples = 0;   // nvmlGpmSampleAlloc minus nvmlGpmSampleFree.
  std::string last_lookup;  // The id last passed to a handle lookup.
  int gpm_metrics_gets = 0;
  int process_queries = 0;  // nvmlDeviceGetComputeRunningProcesses_v2 calls.
};

// Replaces the script and clears the record. Not while a sampler exists: its initialization of
// NVML would be forgotten.
void Reset(const Script& script);
// A copy of the record, taken under the fake's lock.
Record Seen();

}  // namespace truthput::fake_nvml

#endif  // TRUTHPUT_BENCH_FAKE_NVML_H_
