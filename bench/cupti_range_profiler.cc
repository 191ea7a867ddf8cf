#include "bench/cupti_range_profiler.h"

#include <cuda.h>
#include <cupti_profiler_host.h>
#include <cupti_profiler_target.h>
#include <cupti_range_profiler.h>
#include <cupti_result.h>
#include <cupti_target.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/cuda_status.h"

namespace truthput {
namespace {

// CUPTI parameter structs: their own size first, a reserved pointer, everything else zero.
template <typename T>
T MakeParams(size_t struct_size) {
  T p{};
  p.structSize = struct_size;
  return p;
}
#define TP_CUPTI_PARAMS(type) MakeParams<type>(type##_STRUCT_SIZE)

std::string CuptiErrorName(CUptiResult r) {
  const char* s = nullptr;
  if (cuptiGetResultString(r, &s) != CUPTI_SUCCESS || s == nullptr) {
    return absl::StrCat("CUPTI error ", static_cast<int>(r));
  }
  return s;
}

// CUPTI's description of an error, or "" where it has none beyond the name.
std::string CuptiErrorMessage(CUptiResult r) {
  const char* s = nullptr;
  if (cuptiGetErrorMessage(r, &s) != CUPTI_SUCCESS || s == nullptr) return "";
  return s == CuptiErrorName(r) ? "" : s;
}

// OK for CUPTI_SUCCESS. Otherwise the reasons counters cannot be read at all become statuses whose
// message starts with a one-line reason (for "n/a (reason)" cells) followed by the call; the rest
// are Internal "CALL: CUPTI_ERROR_NAME (description)".
absl::Status CuptiStatus(CUptiResult r, const char* call) {
  if (r == CUPTI_SUCCESS) return absl::OkStatus();
  const std::string where = absl::StrCat(" [", call, ": ", CuptiErrorName(r), "]");
  switch (r) {
    case CUPTI_ERROR_INSUFFICIENT_PRIVILEGES:
      return absl::PermissionDeniedError(absl::StrCat(
          "no permission to read GPU counters: run as root or set "
          "NVreg_RestrictProfilingToAdminUsers=0",
          where));
    case CUPTI_ERROR_VIRTUALIZED_DEVICE_INSUFFICIENT_PRIVILEGES:
      return absl::PermissionDeniedError(
          absl::StrCat("the hypervisor does not allow reading this vGPU's counters", where));
    case CUPTI_ERROR_HARDWARE_BUSY:
      return absl::UnavailableError(absl::StrCat(
          "GPU counters are in use by another profiler (ncu, nsys, DCGM profiling?)", where));
    case CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED:
      return absl::UnavailableError(absl::StrCat(
          "another CUPTI client is attached (running under ncu, nsys or cuda-gdb?)", where));
    case CUPTI_ERROR_OLD_PROFILER_API_INITIALIZED:
      return absl::UnavailableError(absl::StrCat(
          "the legacy CUPTI profiler API is already in use in this process", where));
    case CUPTI_ERROR_MIG_DEVICE_NOT_SUPPORTED:
      return absl::UnimplementedError(
          absl::StrCat("CUPTI cannot read counters on a MIG instance", where));
    case CUPTI_ERROR_NOT_SUPPORTED:
    case CUPTI_ERROR_NOT_COMPATIBLE:
    case CUPTI_ERROR_VIRTUALIZED_DEVICE_NOT_SUPPORTED:
    case CUPTI_ERROR_CONFIDENTIAL_COMPUTING_NOT_SUPPORTED:
    case CUPTI_ERROR_CMP_DEVICE_NOT_SUPPORTED:
    case CUPTI_ERROR_SLI_DEVICE_NOT_SUPPORTED:
    case CUPTI_ERROR_WSL_DEVICE_NOT_SUPPORTED:
    case CUPTI_ERROR_INVALID_CHIP_NAME: {
      const std::string what = CuptiErrorMessage(r);
      return absl::UnimplementedError(
          absl::StrCat("CUPTI cannot read counters on this device or configuration",
                       what.empty() ? "" : ": ", what, where));
    }
    case CUPTI_ERROR_INVALID_METRIC_NAME:
      return absl::InvalidArgumentError(absl::StrCat(call, ": ", CuptiErrorName(r)));
    case CUPTI_ERROR_OUT_OF_MEMORY:
      return absl::ResourceExhaustedError(absl::StrCat(call, ": ", CuptiErrorName(r)));
    default: {
      const std::string what = CuptiErrorMessage(r);
      return absl::InternalError(absl::StrCat(call, ": ", CuptiErrorName(r),
                                              what.empty() ? "" : " (", what,
                                              what.empty() ? "" : ")"));
    }
  }
}

#define TP_CUPTI_RETURN_IF_ERROR(expr)                                         \
  do {                                                                         \
    if (absl::Status _st = ::truthput::CuptiStatus((expr), #expr); !_st.ok()) \
      return _st;                                                              \
  } while (0)

// libcupti dlopens libnvperf_host.so (the metric tables) by name, so it is found only on the
// library path. Load the copy next to the libcupti in use first (same release, whatever the
// toolkit layout: lib64 or extras/CUPTI/lib64); libcupti's own dlopen then finds it loaded by its
// soname. Kept for the life of the process.
absl::Status LoadNvperfHost() {
  static std::mutex mu;
  static bool loaded = false;
  std::lock_guard<std::mutex> lock(mu);
  if (loaded) return absl::OkStatus();
  std::string cupti_dir;
  Dl_info info{};
  void* sym = dlsym(RTLD_DEFAULT, "cuptiProfilerInitialize");
  if (sym != nullptr && dladdr(sym, &info) != 0 && info.dli_fname != nullptr) {
    const std::string path = info.dli_fname;
    const size_t slash = path.rfind('/');
    if (slash != std::string::npos) cupti_dir = path.substr(0, slash);
  }
  std::string errors;
  if (!cupti_dir.empty()) {
    const std::string next_to_cupti = cupti_dir + "/libnvperf_host.so";
    if (dlopen(next_to_cupti.c_str(), RTLD_NOW | RTLD_GLOBAL) != nullptr) {
      loaded = true;
      return absl::OkStatus();
    }
    const char* e = dlerror();
    absl::StrAppend(&errors, e != nullptr ? e : next_to_cupti.c_str(), "; ");
  }
  if (dlopen("libnvperf_host.so", RTLD_NOW | RTLD_GLOBAL) != nullptr) {
    loaded = true;
    return absl::OkStatus();
  }
  const char* e = dlerror();
  absl::StrAppend(&errors, e != nullptr ? e : "libnvperf_host.so");
  return absl::UnavailableError(absl::StrCat(
      "libnvperf_host.so (CUPTI's metric library) not found: add its directory (next to "
      "libcupti.so) to LD_LIBRARY_PATH [",
      errors, "]"));
}

// cuptiProfilerInitialize, once per process. Never undone: CUPTI keeps its driver hooks for the
// process, and deinitializing while another profiler object lives would pull them from under it.
absl::Status InitializeProfiler() {
  static std::mutex mu;
  static bool initialized = false;
  std::lock_guard<std::mutex> lock(mu);
  if (initialized) return absl::OkStatus();
  auto p = TP_CUPTI_PARAMS(CUpti_Profiler_Initialize_Params);
  TP_CUPTI_RETURN_IF_ERROR(cuptiProfilerInitialize(&p));
  initialized = true;
  return absl::OkStatus();
}

// A driver API function through the runtime, so that nothing links libcuda (a binary that does
// would not even start on a machine without the driver, where GPU tests must skip).
template <typename Fn>
absl::StatusOr<Fn> DriverFunction(const char* name) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult query{};
  TP_CUDA_RETURN_IF_ERROR(
      cudaGetDriverEntryPointByVersion(name, &fn, 12000, cudaEnableDefault, &query));
  if (query != cudaDriverEntryPointSuccess || fn == nullptr) {
    return absl::InternalError(absl::StrCat("cudaGetDriverEntryPointByVersion(", name,
                                            "): not found (query result ",
                                            static_cast<int>(query), ")"));
  }
  return reinterpret_cast<Fn>(fn);
}

absl::StatusOr<CUcontext> CurrentContext() {
  using CtxGetCurrent = CUresult (*)(CUcontext*);
  absl::StatusOr<CtxGetCurrent> get = DriverFunction<CtxGetCurrent>("cuCtxGetCurrent");
  if (!get.ok()) return get.status();
  CUcontext ctx = nullptr;
  const CUresult r = (*get)(&ctx);
  if (r != CUDA_SUCCESS || ctx == nullptr) {
    return absl::InternalError(
        absl::StrCat("cuCtxGetCurrent: CUresult ", static_cast<int>(r), ", context ",
                     ctx == nullptr ? "null" : "set"));
  }
  return ctx;
}

absl::StatusOr<CUdevice> ContextDevice() {
  using CtxGetDevice = CUresult (*)(CUdevice*);
  absl::StatusOr<CtxGetDevice> get = DriverFunction<CtxGetDevice>("cuCtxGetDevice");
  if (!get.ok()) return get.status();
  CUdevice dev = 0;
  const CUresult r = (*get)(&dev);
  if (r != CUDA_SUCCESS) {
    return absl::InternalError(absl::StrCat("cuCtxGetDevice: CUresult ", static_cast<int>(r)));
  }
  return dev;
}

// Whether CUPTI can range-profile the device in this configuration, and if not, why.
absl::Status CheckDeviceSupported(CUdevice dev) {
  auto p = TP_CUPTI_PARAMS(CUpti_Profiler_DeviceSupported_Params);
  p.cuDevice = dev;
  p.api = CUPTI_PROFILER_RANGE_PROFILING;
  TP_CUPTI_RETURN_IF_ERROR(cuptiProfilerDeviceSupported(&p));
  // UNKNOWN means CUPTI could not tell: let the later calls decide.
  if (p.isSupported == CUPTI_PROFILER_CONFIGURATION_SUPPORTED ||
      p.isSupported == CUPTI_PROFILER_CONFIGURATION_UNKNOWN) {
    return absl::OkStatus();
  }
  std::vector<std::string> why;
  auto note = [&why](CUpti_Profiler_Support_Level level, const char* what) {
    if (level == CUPTI_PROFILER_CONFIGURATION_UNSUPPORTED) why.push_back(what);
    if (level == CUPTI_PROFILER_CONFIGURATION_DISABLED) {
      why.push_back(absl::StrCat(what, " (disabled)"));
    }
  };
  note(p.architecture, "GPU architecture");
  note(p.sli, "SLI");
  note(p.vGpu, "vGPU");
  note(p.confidentialCompute, "confidential computing");
  note(p.cmp, "CMP device");
  note(p.wsl, "WSL");
  return absl::UnimplementedError(absl::StrCat(
      "CUPTI cannot read counters on this device or configuration",
      why.empty() ? std::string(" (MIG instance?)") : absl::StrCat(": ", absl::StrJoin(why, ", ")),
      " [cuptiProfilerDeviceSupported]"));
}

absl::StatusOr<std::string> ChipName(int device) {
  auto p = TP_CUPTI_PARAMS(CUpti_Device_GetChipName_Params);
  p.deviceIndex = static_cast<size_t>(device);
  TP_CUPTI_RETURN_IF_ERROR(cuptiDeviceGetChipName(&p));
  if (p.pChipName == nullptr) return absl::InternalError("cuptiDeviceGetChipName: no name");
  return std::string(p.pChipName);
}

// Which counters this context can read now (the host uses it to refuse the others).
absl::StatusOr<std::vector<uint8_t>> CounterAvailability(CUcontext ctx) {
  auto p = TP_CUPTI_PARAMS(CUpti_Profiler_GetCounterAvailability_Params);
  p.ctx = ctx;
  TP_CUPTI_RETURN_IF_ERROR(cuptiProfilerGetCounterAvailability(&p));
  std::vector<uint8_t> image(p.counterAvailabilityImageSize);
  p.pCounterAvailabilityImage = image.data();
  TP_CUPTI_RETURN_IF_ERROR(cuptiProfilerGetCounterAvailability(&p));
  image.resize(p.counterAvailabilityImageSize);
  return image;
}

struct HostDeleter {
  void operator()(CUpti_Profiler_Host_Object* host) const {
    auto p = TP_CUPTI_PARAMS(CUpti_Profiler_Host_Deinitialize_Params);
    p.pHostObject = host;
    cuptiProfilerHostDeinitialize(&p);  // Nothing to do about a failure here.
  }
};
using HostPtr = std::unique_ptr<CUpti_Profiler_Host_Object, HostDeleter>;

// The host side of the profiler: metric tables of `chip`, restricted to the available counters
// where an availability image is given (none: offline, every counter of the chip).
absl::StatusOr<HostPtr> NewHost(const std::string& chip, const std::vector<uint8_t>& availability) {
  auto p = TP_CUPTI_PARAMS(CUpti_Profiler_Host_Initialize_Params);
  p.profilerType = CUPTI_PROFILER_TYPE_RANGE_PROFILER;
  p.pChipName = chip.c_str();
  p.pCounterAvailabilityImage = availability.empty() ? nullptr : availability.data();
  TP_CUPTI_RETURN_IF_ERROR(cuptiProfilerHostInitialize(&p));
  if (p.pHostObject == nullptr) {
    return absl::InternalError("cuptiProfilerHostInitialize: no host object");
  }
  return HostPtr(p.pHostObject);
}

absl::Status AddMetrics(CUpti_Profiler_Host_Object* host, std::vector<const char*> names) {
  auto p = TP_CUPTI_PARAMS(CUpti_Profiler_Host_ConfigAddMetrics_Params);
  p.pHostObject = host;
  p.ppMetricNames = names.data();
  p.numMetrics = names.size();
  TP_CUPTI_RETURN_IF_ERROR(cuptiProfilerHostConfigAddMetrics(&p));
  return absl::OkStatus();
}

// Splits `metrics` into those the chip (and its available counters) can collect and the rest,
// checking each name on its own. Duplicates and empty names are dropped. A name the metric
// tables do not know is caught by GetMetricProperties (which accepts rollups and submetrics and
// leaves the host object intact); a known name that still cannot be configured fails
// ConfigAddMetrics, which leaves that host object unusable (every later add fails, seen with
// CUPTI 13.0), so the scratch object is replaced after a failure.
absl::Status SplitMetrics(const std::string& chip, const std::vector<uint8_t>& availability,
                          const std::vector<std::string>& metrics,
                          std::vector<std::string>* supported,
                          std::vector<std::string>* unsupported) {
  std::set<std::string> seen;
  HostPtr scratch;
  for (const std::string& m : metrics) {
    if (m.empty() || !seen.insert(m).second) continue;
    if (scratch == nullptr) {
      absl::StatusOr<HostPtr> host = NewHost(chip, availability);
      if (!host.ok()) return host.status();
      scratch = std::move(*host);
    }
    auto props = TP_CUPTI_PARAMS(CUpti_Profiler_Host_GetMetricProperties_Params);
    props.pHostObject = scratch.get();
    props.pMetricName = m.c_str();
    // A failure that is not the metric's (no permission, counters busy, out of memory) fails
    // the whole profiler with its reason rather than passing for "not supported on the chip".
    auto not_the_metrics = [](const absl::Status& st) {
      return absl::IsPermissionDenied(st) || absl::IsUnavailable(st) ||
             absl::IsResourceExhausted(st);
    };
    if (const CUptiResult r = cuptiProfilerHostGetMetricProperties(&props); r != CUPTI_SUCCESS) {
      absl::Status st = CuptiStatus(r, "cuptiProfilerHostGetMetricProperties");
      if (not_the_metrics(st)) return st;
      unsupported->push_back(m);
      continue;
    }
    if (absl::Status added = AddMetrics(scratch.get(), {m.c_str()}); added.ok()) {
      supported->push_back(m);
    } else {
      if (not_the_metrics(added)) return added;
      unsupported->push_back(m);
      scratch.reset();
    }
  }
  return absl::OkStatus();
}

struct HostConfig {
  HostPtr host;
  std::vector<uint8_t> image;
  int passes = 0;
};

// The config image (which counters each pass collects) for `metrics`, all known to be supported.
absl::StatusOr<HostConfig> BuildConfig(const std::string& chip,
                                       const std::vector<uint8_t>& availability,
                                       const std::vector<std::string>& metrics) {
  HostConfig config;
  absl::StatusOr<HostPtr> host = NewHost(chip, availability);
  if (!host.ok()) return host.status();
  config.host = std::move(*host);
  std::vector<const char*> names;
  for (const std::string& m : metrics) names.push_back(m.c_str());
  TP_RETURN_IF_ERROR(AddMetrics(config.host.get(), names));

  auto size = TP_CUPTI_PARAMS(CUpti_Profiler_Host_GetConfigImageSize_Params);
  size.pHostObject = config.host.get();
  TP_CUPTI_RETURN_IF_ERROR(cuptiProfilerHostGetConfigImageSize(&size));
  config.image.resize(size.configImageSize);
  auto image = TP_CUPTI_PARAMS(CUpti_Profiler_Host_GetConfigImage_Params);
  image.pHostObject = config.host.get();
  image.configImageSize = config.image.size();
  image.pConfigImage = config.image.data();
  TP_CUPTI_RETURN_IF_ERROR(cuptiProfilerHostGetConfigImage(&image));

  auto passes = TP_CUPTI_PARAMS(CUpti_Profiler_Host_GetNumOfPasses_Params);
  passes.configImageSize = config.image.size();
  passes.pConfigImage = config.image.data();
  TP_CUPTI_RETURN_IF_ERROR(cuptiProfilerHostGetNumOfPasses(&passes));
  config.passes = static_cast<int>(passes.numOfPasses);
  return config;
}

absl::Status NoMetricKnown(const std::string& chip, const std::vector<std::string>& metrics) {
  return absl::NotFoundError(absl::StrCat("none of the ", metrics.size(),
                                          " metrics is known to CUPTI for chip ", chip, ": ",
                                          absl::StrJoin(metrics, ", ")));
}

}  // namespace

struct CuptiRangeProfiler::Impl {
  CUcontext ctx = nullptr;
  HostConfig config;
  std::vector<std::string> names;   // The metrics read, owning the strings of name_ptrs.
  std::vector<const char*> name_ptrs;
};

CuptiRangeProfiler::CuptiRangeProfiler(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CuptiRangeProfiler::~CuptiRangeProfiler() = default;

absl::StatusOr<CuptiRangeProfiler::MetricPlan> CuptiRangeProfiler::PlanMetrics(
    const std::string& chip, const std::vector<std::string>& metrics) {
  TP_RETURN_IF_ERROR(LoadNvperfHost());
  MetricPlan plan;
  const std::vector<uint8_t> no_availability;
  TP_RETURN_IF_ERROR(
      SplitMetrics(chip, no_availability, metrics, &plan.supported, &plan.unsupported));
  if (plan.supported.empty()) return NoMetricKnown(chip, metrics);
  absl::StatusOr<HostConfig> config = BuildConfig(chip, no_availability, plan.supported);
  if (!config.ok()) return config.status();
  plan.passes = config->passes;
  return plan;
}

absl::StatusOr<std::unique_ptr<CuptiRangeProfiler>> CuptiRangeProfiler::Create(
    int device, std::vector<std::string> metrics) {
  if (metrics.empty()) return absl::InvalidArgumentError("CuptiRangeProfiler: no metrics");
  TP_RETURN_IF_ERROR(LoadNvperfHost());

  // The device's primary context, the one the runtime API (and so the work) uses. The caller's
  // current device is left as it was.
  int previous_device = 0;
  TP_CUDA_RETURN_IF_ERROR(cudaGetDevice(&previous_device));
  absl::Cleanup restore_device = [previous_device] { cudaSetDevice(previous_device); };
  TP_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  TP_CUDA_RETURN_IF_ERROR(cudaFree(nullptr));  // Creates the primary context if need be.
  auto impl = std::make_unique<Impl>();
  absl::StatusOr<CUcontext> ctx = CurrentContext();
  if (!ctx.ok()) return ctx.status();
  impl->ctx = *ctx;
  absl::StatusOr<CUdevice> cu_device = ContextDevice();
  if (!cu_device.ok()) return cu_device.status();

  TP_RETURN_IF_ERROR(InitializeProfiler());
  TP_RETURN_IF_ERROR(CheckDeviceSupported(*cu_device));
  absl::StatusOr<std::string> chip = ChipName(device);
  if (!chip.ok()) return chip.status();
  absl::StatusOr<std::vector<uint8_t>> availability = CounterAvailability(impl->ctx);
  if (!availability.ok()) return availability.status();

  std::vector<std::string> supported, unsupported;
  TP_RETURN_IF_ERROR(SplitMetrics(*chip, *availability, metrics, &supported, &unsupported));
  if (supported.empty()) return NoMetricKnown(*chip, metrics);
  absl::StatusOr<HostConfig> config = BuildConfig(*chip, *availability, supported);
  if (!config.ok()) return config.status();
  impl->config = std::move(*config);
  impl->names = supported;
  for (const std::string& m : impl->names) impl->name_ptrs.push_back(m.c_str());

  // Permission and a profiler already holding the counters may only show when the range profiler
  // is enabled: find out here, so that a profiler that exists can profile.
  auto enable = TP_CUPTI_PARAMS(CUpti_RangeProfiler_Enable_Params);
  enable.ctx = impl->ctx;
  TP_CUPTI_RETURN_IF_ERROR(cuptiRangeProfilerEnable(&enable));
  auto disable = TP_CUPTI_PARAMS(CUpti_RangeProfiler_Disable_Params);
  disable.pRangeProfilerObject = enable.pRangeProfilerObject;
  TP_CUPTI_RETURN_IF_ERROR(cuptiRangeProfilerDisable(&disable));

  std::unique_ptr<CuptiRangeProfiler> profiler(new CuptiRangeProfiler(std::move(impl)));
  profiler->device_ = device;
  profiler->chip_ = *std::move(chip);
  profiler->metrics_ = std::move(supported);
  profiler->unsupported_ = std::move(unsupported);
  profiler->passes_ = profiler->impl_->config.passes;
  return profiler;
}

absl::StatusOr<RangeMetrics> CuptiRangeProfiler::Profile(const std::string& range_name,
                                                         const RangeWork& work,
                                                         cudaStream_t stream) {
  absl::StatusOr<std::vector<RangeMetrics>> ranges = ProfileMany({{range_name, work}}, stream);
  if (!ranges.ok()) return ranges.status();
  return std::move(ranges->front());
}

absl::StatusOr<std::vector<RangeMetrics>> CuptiRangeProfiler::ProfileMany(
    const std::vector<std::pair<std::string, RangeWork>>& ranges, cudaStream_t stream) {
  if (ranges.empty()) return absl::InvalidArgumentError("ProfileMany: no ranges");
  std::set<std::string> names;
  for (const auto& [name, work] : ranges) {
    if (name.empty() || !names.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("ProfileMany: range names must be distinct and non-empty: '", name, "'"));
    }
    if (!work) return absl::InvalidArgumentError(absl::StrCat("ProfileMany: no work for ", name));
  }
  const size_t num_ranges = ranges.size();

  // Earlier work on the stream must not land in the first range.
  TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));

  // Enabled only for the session, so that unprofiled runs (the timed ones) never pay for it.
  auto enable = TP_CUPTI_PARAMS(CUpti_RangeProfiler_Enable_Params);
  enable.ctx = impl_->ctx;
  TP_CUPTI_RETURN_IF_ERROR(cuptiRangeProfilerEnable(&enable));
  CUpti_RangeProfiler_Object* const object = enable.pRangeProfilerObject;
  absl::Cleanup disable = [object] {
    auto p = TP_CUPTI_PARAMS(CUpti_RangeProfiler_Disable_Params);
    p.pRangeProfilerObject = object;
    cuptiRangeProfilerDisable(&p);  // Nothing better to do about a failure on the way out.
  };

  auto size = TP_CUPTI_PARAMS(CUpti_RangeProfiler_GetCounterDataSize_Params);
  size.pRangeProfilerObject = object;
  size.pMetricNames = impl_->name_ptrs.data();
  size.numMetrics = impl_->name_ptrs.size();
  size.maxNumOfRanges = num_ranges;
  size.maxNumRangeTreeNodes = static_cast<uint32_t>(num_ranges);
  TP_CUPTI_RETURN_IF_ERROR(cuptiRangeProfilerGetCounterDataSize(&size));
  std::vector<uint8_t> counter_data(size.counterDataSize);
  auto init = TP_CUPTI_PARAMS(CUpti_RangeProfiler_CounterDataImage_Initialize_Params);
  init.pRangeProfilerObject = object;
  init.counterDataSize = counter_data.size();
  init.pCounterData = counter_data.data();
  TP_CUPTI_RETURN_IF_ERROR(cuptiRangeProfilerCounterDataImageInitialize(&init));

  auto set_config = TP_CUPTI_PARAMS(CUpti_RangeProfiler_SetConfig_Params);
  set_config.pRangeProfilerObject = object;
  set_config.configSize = impl_->config.image.size();
  set_config.pConfig = impl_->config.image.data();
  set_config.counterDataImageSize = counter_data.size();
  set_config.pCounterDataImage = counter_data.data();
  set_config.range = CUPTI_UserRange;
  set_config.replayMode = CUPTI_UserReplay;
  set_config.maxRangesPerPass = num_ranges;
  set_config.numNestingLevels = 1;
  set_config.minNestingLevel = 1;
  set_config.passIndex = 0;
  set_config.targetNestingLevel = 1;
  TP_CUPTI_RETURN_IF_ERROR(cuptiRangeProfilerSetConfig(&set_config));

  // One pass: every work in its own range. On an error inside a pass the open range is popped and
  // the pass stopped before returning, so the profiler is left clean for the next session.
  auto stop = [object](bool* all_submitted) {
    auto p = TP_CUPTI_PARAMS(CUpti_RangeProfiler_Stop_Params);
    p.pRangeProfilerObject = object;
    const CUptiResult r = cuptiRangeProfilerStop(&p);
    if (all_submitted != nullptr) *all_submitted = p.isAllPassSubmitted != 0;
    return CuptiStatus(r, "cuptiRangeProfilerStop");
  };
  auto run_pass = [&]() -> absl::Status {
    auto start = TP_CUPTI_PARAMS(CUpti_RangeProfiler_Start_Params);
    start.pRangeProfilerObject = object;
    TP_CUPTI_RETURN_IF_ERROR(cuptiRangeProfilerStart(&start));
    absl::Status status;
    for (const auto& [name, work] : ranges) {
      auto push = TP_CUPTI_PARAMS(CUpti_RangeProfiler_PushRange_Params);
      push.pRangeProfilerObject = object;
      push.pRangeName = name.c_str();
      status = CuptiStatus(cuptiRangeProfilerPushRange(&push), "cuptiRangeProfilerPushRange");
      if (!status.ok()) break;
      status = work(stream);
      auto pop = TP_CUPTI_PARAMS(CUpti_RangeProfiler_PopRange_Params);
      pop.pRangeProfilerObject = object;
      const absl::Status popped =
          CuptiStatus(cuptiRangeProfilerPopRange(&pop), "cuptiRangeProfilerPopRange");
      if (status.ok()) status = popped;
      if (!status.ok()) break;
    }
    // Surfaces asynchronous errors of the work, after its ranges have closed.
    if (status.ok()) status = CudaStatus(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    if (!status.ok()) {
      stop(nullptr).IgnoreError();
      return status;
    }
    return absl::OkStatus();
  };

  // CUPTI says when the last pass is in; the bound only guards against a CUPTI that never does.
  const int max_passes = std::max(2 * passes_, passes_ + 4);
  int passes = 0;
  for (bool all_submitted = false; !all_submitted;) {
    if (passes >= max_passes) {
      return absl::InternalError(absl::StrCat("CUPTI range profiler did not finish after ", passes,
                                              " passes (config needs ", passes_, ")"));
    }
    TP_RETURN_IF_ERROR(run_pass());
    TP_RETURN_IF_ERROR(stop(&all_submitted));
    ++passes;
  }

  auto decode = TP_CUPTI_PARAMS(CUpti_RangeProfiler_DecodeData_Params);
  decode.pRangeProfilerObject = object;
  TP_CUPTI_RETURN_IF_ERROR(cuptiRangeProfilerDecodeData(&decode));
  if (decode.numOfRangeDropped > 0) {
    return absl::InternalError(absl::StrCat("cuptiRangeProfilerDecodeData: ",
                                            decode.numOfRangeDropped, " of ", num_ranges,
                                            " ranges dropped"));
  }
  auto info = TP_CUPTI_PARAMS(CUpti_RangeProfiler_GetCounterDataInfo_Params);
  info.pCounterDataImage = counter_data.data();
  info.counterDataImageSize = counter_data.size();
  TP_CUPTI_RETURN_IF_ERROR(cuptiRangeProfilerGetCounterDataInfo(&info));

  std::vector<RangeMetrics> results(num_ranges);
  std::vector<bool> found(num_ranges, false);
  std::vector<std::string> seen_names;
  for (size_t i = 0; i < info.numTotalRanges; ++i) {
    auto range = TP_CUPTI_PARAMS(CUpti_RangeProfiler_CounterData_GetRangeInfo_Params);
    range.pCounterDataImage = counter_data.data();
    range.counterDataImageSize = counter_data.size();
    range.rangeIndex = i;
    range.rangeDelimiter = "/";
    TP_CUPTI_RETURN_IF_ERROR(cuptiRangeProfilerCounterDataGetRangeInfo(&range));
    std::string name = range.rangeName != nullptr ? range.rangeName : "";
    seen_names.push_back(name);
    // With one nesting level the name is the pushed one; match the last component regardless.
    if (const size_t slash = name.rfind('/'); slash != std::string::npos) {
      name = name.substr(slash + 1);
    }
    size_t k = 0;
    while (k < num_ranges && ranges[k].first != name) ++k;
    if (k == num_ranges || found[k]) continue;

    std::vector<double> values(impl_->name_ptrs.size());
    auto eval = TP_CUPTI_PARAMS(CUpti_Profiler_Host_EvaluateToGpuValues_Params);
    eval.pHostObject = impl_->config.host.get();
    eval.pCounterDataImage = counter_data.data();
    eval.counterDataImageSize = counter_data.size();
    eval.rangeIndex = i;
    eval.ppMetricNames = impl_->name_ptrs.data();
    eval.numMetrics = impl_->name_ptrs.size();
    eval.pMetricValues = values.data();
    TP_CUPTI_RETURN_IF_ERROR(cuptiProfilerHostEvaluateToGpuValues(&eval));

    RangeMetrics& out = results[k];
    out.range = ranges[k].first;
    out.passes = passes;
    for (size_t j = 0; j < values.size(); ++j) out.values[impl_->names[j]] = values[j];
    found[k] = true;
  }
  for (size_t k = 0; k < num_ranges; ++k) {
    if (!found[k]) {
      return absl::InternalError(absl::StrCat("CUPTI returned no data for range '", ranges[k].first,
                                              "' (ranges in the data: ",
                                              absl::StrJoin(seen_names, ", "), ")"));
    }
  }
  return results;
}

// The metrics a result reports, chosen on GH100 (H100/H200) with CUPTI 13.0; each name exists
// there and is accepted by the host API offline for "GH100" (cupti_metric_plan_test). Time and
// clocks are not among them: a profiled pass is perturbed, so the timed pass and NVML give those.
const std::vector<TruthMetric>& TruthMetrics() {
  static const std::vector<TruthMetric>* const table = new std::vector<TruthMetric>{
      {"dram_read_bytes", "dram__bytes_read.sum", "byte"},
      {"dram_write_bytes", "dram__bytes_write.sum", "byte"},
      // Cycles with at least one warp resident on the SM over elapsed cycles, averaged over SMs:
      // the same as sm__cycles_active.avg / sm__cycles_elapsed.avg, as one metric (it also reads
      // in PM sampling on the H100).
      {"sm_active_pct", "sm__cycles_active.avg.pct_of_peak_sustained_elapsed", "%"},
      // Despite the name, counts HMMA, HGMMA (wgmma) and QGMMA (fp8 wgmma) cycles on GH100.
      {"tensor_active_pct",
       "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_elapsed", "%"},
      // Math ops on the tensor path, an FMA counting 2: a bf16 GEMM reads exactly 2*M*N*K.
      {"tensor_flops_bf16", "sm__ops_path_tensor_src_bf16_dst_fp32.sum", "FLOP"},
      {"tensor_flops_fp8", "sm__ops_path_tensor_src_fp8.sum", "FLOP"},
      // Over active cycles: how full the SMs were while they worked, not how long they worked.
      {"occupancy_pct", "sm__warps_active.avg.pct_of_peak_sustained_active", "%"},
      // Hits and lookups are counted in different passes, so replay noise can push it past 100.
      {"l2_hit_pct", "lts__t_sector_hit_rate.pct", "%"},
  };
  return *table;
}

std::vector<std::string> TruthMetricNames() {
  std::vector<std::string> names;
  for (const TruthMetric& m : TruthMetrics()) names.push_back(m.metric);
  return names;
}

TruthColumns ToTruthColumns(const RangeMetrics& m) {
  auto value = [&m](const char* column) -> std::optional<double> {
    for (const TruthMetric& t : TruthMetrics()) {
      if (std::string(t.column) != column) continue;
      const auto it = m.values.find(t.metric);
      if (it == m.values.end()) return std::nullopt;
      return it->second;
    }
    return std::nullopt;
  };
  TruthColumns c;
  c.dram_read_bytes = value("dram_read_bytes");
  c.dram_write_bytes = value("dram_write_bytes");
  c.sm_active_pct = value("sm_active_pct");
  c.tensor_active_pct = value("tensor_active_pct");
  c.tensor_flops_bf16 = value("tensor_flops_bf16");
  c.tensor_flops_fp8 = value("tensor_flops_fp8");
  if (c.tensor_flops_bf16 || c.tensor_flops_fp8) {
    c.tensor_flops = c.tensor_flops_bf16.value_or(0) + c.tensor_flops_fp8.value_or(0);
  }
  c.occupancy_pct = value("occupancy_pct");
  c.l2_hit_pct = value("l2_hit_pct");
  return c;
}

}  // namespace truthput
