#include "bench/fake_nvml.h"

#include <cstdint>
#include <mutex>
#include <string>

#include "bench/nvml_types.h"

namespace truthput::fake_nvml {
namespace {

// The sampler reads from its own thread while a test reads the record: one lock for both.
std::mutex mu;
// Before the first Reset, NVML does not start (fake_nvml.h).
Script Unscripted() {
  Script s;
  s.init_result = kNvmlErrorDriverNotLoaded;
  return s;
}
Script script = Unscripted();
Record record;

// The one device handle the fake hands out, and the next GPM sample handle (a new one per
// nvmlGpmSampleAlloc; never dereferenced).
nvmlDevice_st* const kDevice = reinterpret_cast<nvmlDevice_st*>(0x1000);
int gpm_next_handle = 0x2000;

// Records call c and returns its scripted code; on success *value is its scripted value.
int Answer(Call c, double* value) {
  const int i = record.calls[c]++;
  const int r = script.result[c] ? script.result[c](i) : kNvmlSuccess;
  if (r != kNvmlSuccess) return r;
  *value = script.value(c, i);
  record.returned_sum[c] += *value;
  ++record.returned[c];
  return kNvmlSuccess;
}

// NVML_ERROR_UNINITIALIZED before nvmlInit_v2; NVML_ERROR_INVALID_ARGUMENT for a handle the fake
// did not give out or a null out-pointer.
int CheckDevice(nvmlDevice_t device, const void* out) {
  if (record.inits <= 0) return kNvmlErrorUninitialized;
  if (device != kDevice || out == nullptr) return kNvmlErrorInvalidArgument;
  return kNvmlSuccess;
}

// A handle lookup: the one device, where `id` is the script's `known` one.
int Lookup(const char* id, const std::string& known, nvmlDevice_t* device) {
  std::lock_guard<std::mutex> lock(mu);
  if (record.inits <= 0) return kNvmlErrorUninitialized;
  if (id == nullptr || device == nullptr) return kNvmlErrorInvalidArgument;
  record.last_lookup = id;
  if (known != id) return kNvmlErrorNotFound;
  *device = kDevice;
  return kNvmlSuccess;
}

}  // namespace

void Reset(const Script& s) {
  std::lock_guard<std::mutex> lock(mu);
  script = s;
  record = Record{};
}

Record Seen() {
  std::lock_guard<std::mutex> lock(mu);
  return record;
}

// The NVML entry points, with nvml.h's names and C linkage (unmangled, though declared in this
// namespace), as NvmlSampler dlsyms them.
extern "C" {

nvmlReturn_t nvmlInit_v2() {
  std::lock_guard<std::mutex> lock(mu);
  if (script.init_result != kNvmlSuccess) return script.init_result;
  ++record.inits;
  return kNvmlSuccess;
}

nvmlReturn_t nvmlShutdown() {
  std::lock_guard<std::mutex> lock(mu);
  if (record.inits <= 0) return kNvmlErrorUninitialized;
  --record.inits;
  return kNvmlSuccess;
}

const char* nvmlErrorString(nvmlReturn_t) { return "fake NVML error"; }

nvmlReturn_t nvmlDeviceGetHandleByUUID(const char* uuid, nvmlDevice_t* device) {
  return Lookup(uuid, script.uuid, device);
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t* out) {
  std::lock_guard<std::mutex> lock(mu);
  if (int r = CheckDevice(device, out); r != kNvmlSuccess) return r;
  double v = 0;
  if (int r = Answer(kUtilization, &v); r != kNvmlSuccess) return r;
  out->gpu = static_cast<unsigned int>(v);
  out->memory = static_cast<unsigned int>(v / 2);
  return kNvmlSuccess;
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, unsigned int type, unsigned int* mhz) {
  std::lock_guard<std::mutex> lock(mu);
  if (int r = CheckDevice(device, mhz); r != kNvmlSuccess) return r;
  if (type != kNvmlClockSm) return kNvmlErrorInvalidArgument;  // the sampler asks for nothing else
  double v = 0;
  if (int r = Answer(kSmClock, &v); r != kNvmlSuccess) return r;
  *mhz = static_cast<unsigned int>(v);
  return kNvmlSuccess;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int* mw) {
  std::lock_guard<std::mutex> lock(mu);
  if (int r = CheckDevice(device, mw); r != kNvmlSuccess) return r;
  double v = 0;
  if (int r = Answer(kPower, &v); r != kNvmlSuccess) return r;
  *mw = static_cast<unsigned int>(v);
  return kNvmlSuccess;
}

// Built with TRUTHPUT_FAKE_NVML_OLD_DRIVER, the fake is a driver before 535: the same call under
// its older name only.
#ifdef TRUTHPUT_FAKE_NVML_OLD_DRIVER
nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device,
                                                       unsigned long long* bits) {
#else
nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device,
                                                    unsigned long long* bits) {
#endif
  std::lock_guard<std::mutex> lock(mu);
  if (int r = CheckDevice(device, bits); r != kNvmlSuccess) return r;
  double v = 0;
  if (int r = Answer(kReasons, &v); r != kNvmlSuccess) return r;
  *bits = static_cast<unsigned long long>(v);
  record.reasons_or |= *bits;
  return kNvmlSuccess;
}

// The old driver has only the deprecated call; the new one only nvmlDeviceGetTemperatureV, so
// that a sampler which falls back when it need not is caught.
#ifdef TRUTHPUT_FAKE_NVML_OLD_DRIVER
nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensor, unsigned int* celsius) {
  std::lock_guard<std::mutex> lock(mu);
  if (int r = CheckDevice(device, celsius); r != kNvmlSuccess) return r;
  if (sensor != kNvmlTemperatureGpu) return kNvmlErrorInvalidArgument;
  double v = 0;
  if (int r = Answer(kTemperature, &v); r != kNvmlSuccess) return r;
  *celsius = static_cast<unsigned int>(v);
  return kNvmlSuccess;
}
#else
nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t device, nvmlTemperature_v1_t* t) {
  std::lock_guard<std::mutex> lock(mu);
  if (int r = CheckDevice(device, t); r != kNvmlSuccess) return r;
  if (t->version != kNvmlTemperatureV1) return kNvmlErrorArgumentVersionMismatch;
  if (t->sensorType != kNvmlTemperatureGpu) return kNvmlErrorInvalidArgument;
  double v = 0;
  if (int r = Answer(kTemperature, &v); r != kNvmlSuccess) return r;
  t->temperature = static_cast<int>(v);
  return kNvmlSuccess;
}
#endif

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long* mj) {
  std::lock_guard<std::mutex> lock(mu);
  if (int r = CheckDevice(device, mj); r != kNvmlSuccess) return r;
  double v = 0;
  if (int r = Answer(kEnergy, &v); r != kNvmlSuccess) return r;
  *mj = static_cast<unsigned long long>(v);
  return kNvmlSuccess;
}

nvmlReturn_t nvmlGpmQueryDeviceSupport(nvmlDevice_t device, nvmlGpmSupport_t* support) {
  std::lock_guard<std::mutex> lock(mu);
  if (int r = CheckDevice(device, support); r != kNvmlSuccess) return r;
  if (support->version != kNvmlGpmSupportVersion) return kNvmlErrorArgumentVersionMismatch;
  support->isSupportedDevice = script.gpm_supported ? 1 : 0;
  return kNvmlSuccess;
}

nvmlReturn_t nvmlGpmSampleAlloc(nvmlGpmSample_t* sample) {
  std::lock_guard<std::mutex> lock(mu);
  if (record.inits <= 0) return kNvmlErrorUninitialized;
  if (sample == nullptr) return kNvmlErrorInvalidArgument;
  *sample = reinterpret_cast<nvmlGpmSample_t>(static_cast<uintptr_t>(gpm_next_handle++));
  ++record.gpm_samples;
  return kNvmlSuccess;
}

nvmlReturn_t nvmlGpmSampleFree(nvmlGpmSample_t sample) {
  std::lock_guard<std::mutex> lock(mu);
  if (sample == nullptr) return kNvmlErrorInvalidArgument;
  --record.gpm_samples;
  return kNvmlSuccess;
}

nvmlReturn_t nvmlGpmSampleGet(nvmlDevice_t device, nvmlGpmSample_t sample) {
  std::lock_guard<std::mutex> lock(mu);
  if (int r = CheckDevice(device, sample); r != kNvmlSuccess) return r;
  double unused = 0;
  return Answer(kGpmSampleGet, &unused);
}

nvmlReturn_t nvmlGpmMetricsGet(nvmlGpmMetricsGet_t* get) {
  std::lock_guard<std::mutex> lock(mu);
  if (record.inits <= 0) return kNvmlErrorUninitialized;
  if (get == nullptr) return kNvmlErrorInvalidArgument;
  if (get->version != kNvmlGpmMetricsGetVersion) return kNvmlErrorArgumentVersionMismatch;
  // Two different samples, and no more metrics than nvml.h's smallest array (98) holds.
  if (get->sample1 == nullptr || get->sample2 == nullptr || get->sample1 == get->sample2 ||
      get->numMetrics == 0 || get->numMetrics > 98) {
    return kNvmlErrorInvalidArgument;
  }
  ++record.gpm_metrics_gets;
  if (script.gpm_metrics_result != kNvmlSuccess) return script.gpm_metrics_result;
  for (unsigned int i = 0; i < get->numMetrics; ++i) {
    nvmlGpmMetric_t& m = get->metrics[i];
    m.nvmlReturn = script.gpm_metric_result ? script.gpm_metric_result(m.metricId) : kNvmlSuccess;
    m.value = m.nvmlReturn == kNvmlSuccess ? m.metricId * 1.5 : 0;
  }
  return kNvmlSuccess;
}

// As NVML documents it: with *count too small for the list, the count needed and
// NVML_ERROR_INSUFFICIENT_SIZE (infos may then be null).
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device, unsigned int* count,
                                                     nvmlProcessInfo_v2_t* infos) {
  std::lock_guard<std::mutex> lock(mu);
  if (int r = CheckDevice(device, count); r != kNvmlSuccess) return r;
  ++record.process_queries;
  if (script.processes_result != kNvmlSuccess) return script.processes_result;
  for (int i = 0; i < script.processes_started_per_query; ++i) {
    script.processes.push_back({.pid = static_cast<unsigned int>(100000 + script.processes.size())});
  }
  const unsigned int n = static_cast<unsigned int>(script.processes.size());
  if (*count < n) {
    *count = n;
    return kNvmlErrorInsufficientSize;
  }
  if (n > 0 && infos == nullptr) return kNvmlErrorInvalidArgument;
  for (unsigned int i = 0; i < n; ++i) infos[i] = script.processes[i];
  *count = n;
  return kNvmlSuccess;
}

}  // extern "C"

}  // namespace truthput::fake_nvml
