// The few NVML declarations truthput uses (NvmlSampler, and fake_nvml.h for its tests). nvml.h is
// not installed on the build machine; these mirror the public nvml.h (NVML API version 12/13, as
// shipped with CUDA 12.x/13.x and drivers 535..580). All structs are plain C with natural
// alignment on x86-64 and aarch64.
#ifndef TRUTHPUT_BENCH_NVML_TYPES_H_
#define TRUTHPUT_BENCH_NVML_TYPES_H_

#include <cstddef>

namespace truthput {

// nvml.h: `typedef enum nvmlReturn_enum {...} nvmlReturn_t;` An enum of int size; the values
// truthput names (NvmlReturnName in nvml_sampler.cc has them all).
using nvmlReturn_t = int;
constexpr nvmlReturn_t kNvmlSuccess = 0;                     // NVML_SUCCESS
constexpr nvmlReturn_t kNvmlErrorUninitialized = 1;          // NVML_ERROR_UNINITIALIZED
constexpr nvmlReturn_t kNvmlErrorInvalidArgument = 2;        // NVML_ERROR_INVALID_ARGUMENT
constexpr nvmlReturn_t kNvmlErrorNotSupported = 3;           // NVML_ERROR_NOT_SUPPORTED
constexpr nvmlReturn_t kNvmlErrorNoPermission = 4;           // NVML_ERROR_NO_PERMISSION
constexpr nvmlReturn_t kNvmlErrorNotFound = 6;               // NVML_ERROR_NOT_FOUND
constexpr nvmlReturn_t kNvmlErrorInsufficientSize = 7;       // NVML_ERROR_INSUFFICIENT_SIZE
constexpr nvmlReturn_t kNvmlErrorDriverNotLoaded = 9;        // NVML_ERROR_DRIVER_NOT_LOADED
constexpr nvmlReturn_t kNvmlErrorArgumentVersionMismatch = 25;  // ..._ARGUMENT_VERSION_MISMATCH
constexpr nvmlReturn_t kNvmlErrorUnknown = 999;              // NVML_ERROR_UNKNOWN

// nvml.h: `typedef struct nvmlDevice_st* nvmlDevice_t;` (opaque).
struct nvmlDevice_st;
using nvmlDevice_t = nvmlDevice_st*;

// nvml.h: `typedef struct nvmlUtilization_st { unsigned int gpu; unsigned int memory; }`.
struct nvmlUtilization_t {
  unsigned int gpu;
  unsigned int memory;
};

// nvml.h: `typedef struct nvmlProcessInfo_v2_st {...} nvmlProcessInfo_v2_t;`, the entry of
// nvmlDeviceGetComputeRunningProcesses_v2. (The _v3 call took a larger struct of the same name
// in drivers 535.43 to 535.86 only; _v2's has had this layout throughout.) usedGpuMemory is
// NVML_VALUE_NOT_AVAILABLE where NVML cannot tell (without the rights to, or in some containers).
struct nvmlProcessInfo_v2_t {
  unsigned int pid;
  unsigned long long usedGpuMemory;  // Bytes.
  unsigned int gpuInstanceId;        // MIG: the instance; 0xFFFFFFFF otherwise.
  unsigned int computeInstanceId;
};
static_assert(offsetof(nvmlProcessInfo_v2_t, usedGpuMemory) == 8 &&
              sizeof(nvmlProcessInfo_v2_t) == 24);
constexpr unsigned long long kNvmlValueNotAvailable = ~0ULL;  // NVML_VALUE_NOT_AVAILABLE

// nvml.h: nvmlClockType_t, NVML_CLOCK_SM = 1.
constexpr unsigned int kNvmlClockSm = 1;

// nvml.h: nvmlTemperatureSensors_t, NVML_TEMPERATURE_GPU = 0 (the die).
constexpr int kNvmlTemperatureGpu = 0;

// nvml.h: nvmlTemperature_v1_t, the argument of nvmlDeviceGetTemperatureV (newer drivers; CUDA 13
// deprecates nvmlDeviceGetTemperature for it), with version nvmlTemperature_v1 =
// NVML_STRUCT_VERSION(Temperature, 1): the struct's size with the version in the top byte.
struct nvmlTemperature_v1_t {
  unsigned int version;  // IN: kNvmlTemperatureV1.
  int sensorType;        // IN: kNvmlTemperatureGpu.
  int temperature;       // OUT: degrees C.
};
static_assert(sizeof(nvmlTemperature_v1_t) == 12);
constexpr unsigned int kNvmlTemperatureV1 =
    static_cast<unsigned int>(sizeof(nvmlTemperature_v1_t)) | (1u << 24);

// nvml.h: `typedef struct nvmlGpmSample_st* nvmlGpmSample_t;` (opaque).
struct nvmlGpmSample_st;
using nvmlGpmSample_t = nvmlGpmSample_st*;

// nvml.h: nvmlGpmMetric_t.
struct nvmlGpmMetric_t {
  unsigned int metricId;    // IN: an NVML_GPM_METRIC_* id.
  nvmlReturn_t nvmlReturn;  // OUT: this metric's status; value is valid only if NVML_SUCCESS.
  double value;             // OUT.
  struct {
    char* shortName;
    char* longName;
    char* unit;
  } metricInfo;  // OUT: may be null.
};
static_assert(offsetof(nvmlGpmMetric_t, value) == 8 && sizeof(nvmlGpmMetric_t) == 40);

// nvml.h: nvmlGpmMetricsGet_t, version NVML_GPM_METRICS_GET_VERSION = 1. Its array has
// NVML_GPM_METRIC_MAX entries: 98 in the CUDA 12.2-era header, 333 in later ones, under the same
// version 1, so NVML can only rely on (and touch) the first numMetrics entries. We declare the
// larger size anyway, so a library that assumed its own full size would still stay in bounds.
constexpr unsigned int kNvmlGpmMetricsGetVersion = 1;
constexpr int kNvmlGpmMetricMax = 333;
struct nvmlGpmMetricsGet_t {
  unsigned int version;     // IN: NVML_GPM_METRICS_GET_VERSION.
  unsigned int numMetrics;  // IN: how many of metrics[] to compute.
  nvmlGpmSample_t sample1;  // IN: the earlier sample.
  nvmlGpmSample_t sample2;  // IN: the later sample.
  nvmlGpmMetric_t metrics[kNvmlGpmMetricMax];  // IN metricId; OUT nvmlReturn, value.
};
static_assert(offsetof(nvmlGpmMetricsGet_t, sample1) == 8);
static_assert(offsetof(nvmlGpmMetricsGet_t, metrics) == 24);

// nvml.h: nvmlGpmSupport_t, version NVML_GPM_SUPPORT_VERSION = 1.
constexpr unsigned int kNvmlGpmSupportVersion = 1;
struct nvmlGpmSupport_t {
  unsigned int version;            // IN: NVML_GPM_SUPPORT_VERSION.
  unsigned int isSupportedDevice;  // OUT.
};

// nvml.h: nvmlGpmMetricId_t values.
constexpr unsigned int kGpmSmUtil = 2;        // NVML_GPM_METRIC_SM_UTIL
constexpr unsigned int kGpmAnyTensorUtil = 5; // NVML_GPM_METRIC_ANY_TENSOR_UTIL
constexpr unsigned int kGpmDramBwUtil = 10;   // NVML_GPM_METRIC_DRAM_BW_UTIL

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_NVML_TYPES_H_
