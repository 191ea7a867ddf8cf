#include "bench/nvml_sampler.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstddef>
#include <map>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/nvml_types.h"

namespace truthput {
namespace {

constexpr nvmlReturn_t kNvmlFunctionMissing = -1;  // Ours: the symbol isn't in this libnvidia-ml.

// GPM values over shorter windows are invalid on Hopper (NVIDIA/DCGM#310: "100ms is a hard
// limitation").
constexpr absl::Duration kGpmMinWindow = absl::Milliseconds(100);

constexpr char kLibraryName[] = "libnvidia-ml.so.1";

// The nvmlReturn_t enumerator names of nvml.h, for messages ("NVML_ERROR_NOT_SUPPORTED").
const char* NvmlReturnName(nvmlReturn_t r) {
  switch (r) {
    case 0: return "NVML_SUCCESS";
    case 1: return "NVML_ERROR_UNINITIALIZED";
    case 2: return "NVML_ERROR_INVALID_ARGUMENT";
    case 3: return "NVML_ERROR_NOT_SUPPORTED";
    case 4: return "NVML_ERROR_NO_PERMISSION";
    case 5: return "NVML_ERROR_ALREADY_INITIALIZED";
    case 6: return "NVML_ERROR_NOT_FOUND";
    case 7: return "NVML_ERROR_INSUFFICIENT_SIZE";
    case 8: return "NVML_ERROR_INSUFFICIENT_POWER";
    case 9: return "NVML_ERROR_DRIVER_NOT_LOADED";
    case 10: return "NVML_ERROR_TIMEOUT";
    case 11: return "NVML_ERROR_IRQ_ISSUE";
    case 12: return "NVML_ERROR_LIBRARY_NOT_FOUND";
    case 13: return "NVML_ERROR_FUNCTION_NOT_FOUND";
    case 14: return "NVML_ERROR_CORRUPTED_INFOROM";
    case 15: return "NVML_ERROR_GPU_IS_LOST";
    case 16: return "NVML_ERROR_RESET_REQUIRED";
    case 17: return "NVML_ERROR_OPERATING_SYSTEM";
    case 18: return "NVML_ERROR_LIB_RM_VERSION_MISMATCH";
    case 19: return "NVML_ERROR_IN_USE";
    case 20: return "NVML_ERROR_MEMORY";
    case 21: return "NVML_ERROR_NO_DATA";
    case 22: return "NVML_ERROR_VGPU_ECC_NOT_SUPPORTED";
    case 23: return "NVML_ERROR_INSUFFICIENT_RESOURCES";
    case 24: return "NVML_ERROR_FREQ_NOT_SUPPORTED";
    case 25: return "NVML_ERROR_ARGUMENT_VERSION_MISMATCH";
    case 26: return "NVML_ERROR_DEPRECATED";
    case 27: return "NVML_ERROR_NOT_READY";
    case 28: return "NVML_ERROR_GPU_NOT_FOUND";
    case 29: return "NVML_ERROR_INVALID_STATE";
    case 999: return "NVML_ERROR_UNKNOWN";
    default: return nullptr;
  }
}

// A running mean and maximum of one sampled quantity, with how many reads failed and the last
// failure's error.
struct Series {
  int n = 0;
  double sum = 0;
  double max = 0;
  int failed = 0;
  nvmlReturn_t last_error = kNvmlSuccess;

  void Add(double v) {
    max = n == 0 ? v : std::max(max, v);
    sum += v;
    ++n;
  }
  // Records one read's return code; true when it succeeded.
  bool Read(nvmlReturn_t r) {
    if (r == kNvmlSuccess) return true;
    last_error = r;
    ++failed;
    return false;
  }
};

}  // namespace

std::string PartialReadNote(absl::string_view what, int failed, int samples,
                            absl::string_view error) {
  if (failed <= 0 || failed >= samples) return "";
  return absl::StrCat(what, ": read in ", samples - failed, " of ", samples,
                      " samples, the value is over those (", error, ")");
}

struct NvmlSampler::Api {
  // Required.
  nvmlReturn_t (*Init_v2)() = nullptr;
  nvmlReturn_t (*Shutdown)() = nullptr;
  const char* (*ErrorString)(nvmlReturn_t) = nullptr;
  nvmlReturn_t (*DeviceGetHandleByUUID)(const char*, nvmlDevice_t*) = nullptr;
  // Optional: where one is missing, what it gives is reported unavailable.
  nvmlReturn_t (*DeviceGetUtilizationRates)(nvmlDevice_t, nvmlUtilization_t*) = nullptr;
  nvmlReturn_t (*DeviceGetClockInfo)(nvmlDevice_t, unsigned int, unsigned int*) = nullptr;
  nvmlReturn_t (*DeviceGetPowerUsage)(nvmlDevice_t, unsigned int*) = nullptr;
  nvmlReturn_t (*DeviceGetTotalEnergyConsumption)(nvmlDevice_t, unsigned long long*) = nullptr;
  // nvmlDeviceGetCurrentClocksEventReasons (driver 535+), else the older, same-signature
  // nvmlDeviceGetCurrentClocksThrottleReasons.
  nvmlReturn_t (*DeviceGetCurrentClocksEventReasons)(nvmlDevice_t, unsigned long long*) = nullptr;
  // nvmlDeviceGetTemperatureV, else (older drivers) the deprecated nvmlDeviceGetTemperature.
  nvmlReturn_t (*DeviceGetTemperatureV)(nvmlDevice_t, nvmlTemperature_v1_t*) = nullptr;
  nvmlReturn_t (*DeviceGetTemperature)(nvmlDevice_t, int, unsigned int*) = nullptr;
  nvmlReturn_t (*GpmQueryDeviceSupport)(nvmlDevice_t, nvmlGpmSupport_t*) = nullptr;
  nvmlReturn_t (*GpmSampleAlloc)(nvmlGpmSample_t*) = nullptr;
  nvmlReturn_t (*GpmSampleFree)(nvmlGpmSample_t) = nullptr;
  nvmlReturn_t (*GpmSampleGet)(nvmlDevice_t, nvmlGpmSample_t) = nullptr;
  nvmlReturn_t (*GpmMetricsGet)(nvmlGpmMetricsGet_t*) = nullptr;
  nvmlReturn_t (*DeviceGetComputeRunningProcesses_v2)(nvmlDevice_t, unsigned int*,
                                                     nvmlProcessInfo_v2_t*) = nullptr;

  // "NVML_ERROR_NOT_SUPPORTED"; for a code this file doesn't know, NVML's own description.
  std::string Error(nvmlReturn_t r) const {
    if (r == kNvmlFunctionMissing) return absl::StrCat(kLibraryName, " lacks the function");
    if (const char* name = NvmlReturnName(r)) return name;
    return absl::StrCat("NVML error ", r, " (", ErrorString != nullptr ? ErrorString(r) : "?", ")");
  }
};

struct NvmlSampler::Window {
  absl::Time start;
  int samples = 0;
  Series util_gpu, util_mem, sm_clock, power_mw, gpu_temp;
  Series reasons;  // Counts successful reads only; the bits go to reasons_or.
  uint64_t reasons_or = 0;
  // Energy counter at Start (mJ), or why it couldn't be read.
  std::optional<unsigned long long> energy_start_mj;
  nvmlReturn_t energy_start_error = kNvmlSuccess;
  // Whether GPM sample 0 holds the window's start; otherwise why not (empty: GPM is off).
  bool gpm_started = false;
  std::string gpm_start_error;
};

std::string ClockEventReasonsText(uint64_t reasons) {
  if (reasons == 0) return "none";
  static constexpr const char* kNames[] = {
      "gpu_idle",    "app_clocks", "sw_power_cap",   "hw_slowdown",    "sync_boost",
      "sw_thermal",  "hw_thermal", "hw_power_brake", "display_clocks",
  };
  constexpr int kNamed = sizeof(kNames) / sizeof(kNames[0]);
  std::vector<std::string> parts;
  for (int bit = 0; bit < 64; ++bit) {
    const uint64_t mask = uint64_t{1} << bit;
    if ((reasons & mask) == 0) continue;
    parts.push_back(bit < kNamed ? std::string(kNames[bit]) : absl::StrFormat("0x%x", mask));
  }
  return absl::StrJoin(parts, "|");
}

std::string NvmlSummary::ClockEventReasonsText() const {
  return clock_event_reasons_read ? truthput::ClockEventReasonsText(clock_event_reasons)
                                  : "unavailable";
}

std::string OtherProcessesNote(const std::vector<GpuProcess>& seen, uint32_t self_pid) {
  std::map<uint32_t, std::optional<int64_t>> by_pid;  // The most memory each was seen with.
  bool self_seen = false;
  for (const GpuProcess& p : seen) {
    if (p.pid == self_pid) {
      self_seen = true;
      continue;
    }
    std::optional<int64_t>& used = by_pid[p.pid];
    if (p.used_bytes && (!used || *used < *p.used_bytes)) used = p.used_bytes;
  }
  if (by_pid.size() < (self_seen ? 1u : 2u)) return "";
  std::vector<std::string> listed;
  for (const auto& [pid, used] : by_pid) {
    listed.push_back(absl::StrCat(
        "pid ", pid, " (", used ? absl::StrFormat("%.1f GB", *used / 1e9) : "memory n/a", ")"));
  }
  return absl::StrCat(
      self_seen ? "other processes had" : "other processes may have had",
      " a compute context on this GPU while it was measured: ", absl::StrJoin(listed, ", "),
      self_seen ? "" : ", of which one is presumably this one (not listed by its own pid, as in "
                       "a container)",
      "; their kernels would take bandwidth and SMs from what was measured");
}

absl::StatusOr<std::vector<GpuProcess>> NvmlSampler::ComputeProcesses() const {
  constexpr const char* kCall = "nvmlDeviceGetComputeRunningProcesses_v2";
  if (api_->DeviceGetComputeRunningProcesses_v2 == nullptr) {
    return absl::UnavailableError(absl::StrCat(kCall, ": ", api_->Error(kNvmlFunctionMissing)));
  }
  // NVML says how many there are when the array is too small; processes may start in between.
  std::vector<nvmlProcessInfo_v2_t> infos(16);
  for (int attempt = 0;; ++attempt) {
    unsigned int count = static_cast<unsigned int>(infos.size());
    const nvmlReturn_t r = api_->DeviceGetComputeRunningProcesses_v2(
        static_cast<nvmlDevice_t>(device_), &count, infos.data());
    if (r == kNvmlErrorInsufficientSize && attempt < 3 && count > infos.size()) {
      infos.resize(count + 8);
      continue;
    }
    if (r != kNvmlSuccess) return absl::UnavailableError(absl::StrCat(kCall, ": ", api_->Error(r)));
    std::vector<GpuProcess> out;
    for (unsigned int i = 0; i < std::min<size_t>(count, infos.size()); ++i) {
      GpuProcess p{.pid = infos[i].pid};
      if (infos[i].usedGpuMemory != kNvmlValueNotAvailable) {
        p.used_bytes = static_cast<int64_t>(infos[i].usedGpuMemory);
      }
      out.push_back(p);
    }
    return out;
  }
}

NvmlSampler::NvmlSampler(void* library, absl::Duration interval)
    : library_(library), interval_(interval), api_(std::make_unique<Api>()),
      window_(std::make_unique<Window>()) {}

absl::StatusOr<std::unique_ptr<NvmlSampler>> NvmlSampler::Create(
    const std::string& gpu_uuid, absl::Duration interval) {
  if (gpu_uuid.empty()) {
    return absl::InvalidArgumentError("NvmlSampler: empty GPU UUID");
  }
  if (interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("NvmlSampler: interval must be positive, got ",
                     absl::FormatDuration(interval)));
  }
  void* library = dlopen(kLibraryName, RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    const char* why = dlerror();
    return absl::UnavailableError(
        absl::StrCat("NVML not available: ", why != nullptr ? why : kLibraryName));
  }
  // From here on the sampler owns the library: its destructor shuts NVML down and unloads it on
  // every return below.
  std::unique_ptr<NvmlSampler> s(new NvmlSampler(library, interval));
  Api& api = *s->api_;
  auto load = [library](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(library, name));
  };
  load(api.Init_v2, "nvmlInit_v2");
  load(api.Shutdown, "nvmlShutdown");
  load(api.ErrorString, "nvmlErrorString");
  load(api.DeviceGetHandleByUUID, "nvmlDeviceGetHandleByUUID");
  load(api.DeviceGetUtilizationRates, "nvmlDeviceGetUtilizationRates");
  load(api.DeviceGetClockInfo, "nvmlDeviceGetClockInfo");
  load(api.DeviceGetPowerUsage, "nvmlDeviceGetPowerUsage");
  load(api.DeviceGetTotalEnergyConsumption, "nvmlDeviceGetTotalEnergyConsumption");
  load(api.DeviceGetCurrentClocksEventReasons, "nvmlDeviceGetCurrentClocksEventReasons");
  if (api.DeviceGetCurrentClocksEventReasons == nullptr) {
    load(api.DeviceGetCurrentClocksEventReasons, "nvmlDeviceGetCurrentClocksThrottleReasons");
  }
  load(api.DeviceGetTemperatureV, "nvmlDeviceGetTemperatureV");
  if (api.DeviceGetTemperatureV == nullptr) {
    load(api.DeviceGetTemperature, "nvmlDeviceGetTemperature");
  }
  load(api.GpmQueryDeviceSupport, "nvmlGpmQueryDeviceSupport");
  load(api.GpmSampleAlloc, "nvmlGpmSampleAlloc");
  load(api.GpmSampleFree, "nvmlGpmSampleFree");
  load(api.GpmSampleGet, "nvmlGpmSampleGet");
  load(api.GpmMetricsGet, "nvmlGpmMetricsGet");
  load(api.DeviceGetComputeRunningProcesses_v2, "nvmlDeviceGetComputeRunningProcesses_v2");

  const char* missing = api.Init_v2 == nullptr                 ? "nvmlInit_v2"
                        : api.Shutdown == nullptr              ? "nvmlShutdown"
                        : api.ErrorString == nullptr           ? "nvmlErrorString"
                        : api.DeviceGetHandleByUUID == nullptr ? "nvmlDeviceGetHandleByUUID"
                                                               : nullptr;
  if (missing != nullptr) {
    return absl::UnavailableError(
        absl::StrCat("NVML not available: ", kLibraryName, " has no ", missing));
  }

  if (nvmlReturn_t r = api.Init_v2(); r != kNvmlSuccess) {
    return absl::UnavailableError(absl::StrCat("NVML not available: nvmlInit_v2: ", api.Error(r)));
  }
  s->nvml_initialized_ = true;

  // nvidia-smi and NVML print UUIDs in lower case ("GPU-5f3c..."); accept either case.
  const std::string id =
      gpu_uuid.size() <= 4
          ? gpu_uuid
          : absl::StrCat(gpu_uuid.substr(0, 4), absl::AsciiStrToLower(gpu_uuid.substr(4)));
  nvmlDevice_t device = nullptr;
  if (nvmlReturn_t r = api.DeviceGetHandleByUUID(id.c_str(), &device); r != kNvmlSuccess) {
    const std::string message =
        absl::StrCat("NvmlSampler: nvmlDeviceGetHandleByUUID(", id, "): ", api.Error(r));
    if (r == kNvmlErrorNotFound) return absl::NotFoundError(message);
    if (r == kNvmlErrorInvalidArgument) return absl::InvalidArgumentError(message);
    return absl::UnavailableError(message);
  }
  s->device_ = device;

  // GPM: Hopper and newer. Allocate the two sample buffers once, here.
  if (api.GpmQueryDeviceSupport == nullptr || api.GpmSampleAlloc == nullptr ||
      api.GpmSampleFree == nullptr || api.GpmSampleGet == nullptr || api.GpmMetricsGet == nullptr) {
    s->gpm_off_reason_ = absl::StrCat("GPM: ", kLibraryName, " has no GPM API (driver too old)");
  } else {
    nvmlGpmSupport_t support{kNvmlGpmSupportVersion, 0};
    if (nvmlReturn_t r = api.GpmQueryDeviceSupport(device, &support); r != kNvmlSuccess) {
      s->gpm_off_reason_ = absl::StrCat("GPM: nvmlGpmQueryDeviceSupport: ", api.Error(r));
    } else if (!support.isSupportedDevice) {
      s->gpm_off_reason_ = "GPM: not supported on this GPU";
    } else {
      for (void*& sample : s->gpm_samples_) {
        nvmlGpmSample_t handle = nullptr;
        if (nvmlReturn_t alloc = api.GpmSampleAlloc(&handle); alloc != kNvmlSuccess) {
          s->gpm_off_reason_ = absl::StrCat("GPM: nvmlGpmSampleAlloc: ", api.Error(alloc));
          break;
        }
        sample = handle;
      }
    }
  }
  return s;
}

NvmlSampler::~NvmlSampler() {
  bool running;
  {
    absl::MutexLock lock(&lifecycle_mu_);
    running = running_;
  }
  if (running) Stop();
  for (void* sample : gpm_samples_) {
    if (sample != nullptr) api_->GpmSampleFree(static_cast<nvmlGpmSample_t>(sample));
  }
  if (nvml_initialized_) api_->Shutdown();
  dlclose(library_);
}

void NvmlSampler::Start() {
  absl::MutexLock lock(&lifecycle_mu_);
  if (running_) return;
  const Api& api = *api_;
  auto* device = static_cast<nvmlDevice_t>(device_);
  *window_ = Window{};

  if (api.DeviceGetTotalEnergyConsumption == nullptr) {
    window_->energy_start_error = kNvmlFunctionMissing;
  } else if (unsigned long long mj = 0;
             (window_->energy_start_error = api.DeviceGetTotalEnergyConsumption(device, &mj)) ==
             kNvmlSuccess) {
    window_->energy_start_mj = mj;
  }
  if (gpm_off_reason_.empty()) {
    const nvmlReturn_t r = api.GpmSampleGet(device, static_cast<nvmlGpmSample_t>(gpm_samples_[0]));
    window_->gpm_started = r == kNvmlSuccess;
    if (r != kNvmlSuccess) {
      window_->gpm_start_error = absl::StrCat("GPM: nvmlGpmSampleGet: ", api.Error(r));
    }
  }
  window_->start = absl::Now();

  {
    absl::MutexLock stop_lock(&stop_mu_);
    stop_requested_ = false;
  }
  thread_ = std::thread([this] { Loop(); });
  running_ = true;
}

void NvmlSampler::Loop() {
  absl::Time next = absl::Now();
  while (true) {
    SampleOnce();
    // A fixed schedule, but no burst of catch-up samples after a slow NVML call.
    next = std::max(next + interval_, absl::Now());
    absl::MutexLock lock(&stop_mu_);
    if (stop_mu_.AwaitWithDeadline(absl::Condition(&stop_requested_), next)) return;
  }
}

void NvmlSampler::SampleOnce() {
  const Api& api = *api_;
  auto* device = static_cast<nvmlDevice_t>(device_);
  Window& w = *window_;
  ++w.samples;

  if (api.DeviceGetUtilizationRates == nullptr) {
    w.util_gpu.Read(kNvmlFunctionMissing);
  } else if (nvmlUtilization_t u{}; w.util_gpu.Read(api.DeviceGetUtilizationRates(device, &u))) {
    w.util_gpu.Add(u.gpu);
    w.util_mem.Add(u.memory);
  }
  if (api.DeviceGetClockInfo == nullptr) {
    w.sm_clock.Read(kNvmlFunctionMissing);
  } else if (unsigned int mhz = 0;
             w.sm_clock.Read(api.DeviceGetClockInfo(device, kNvmlClockSm, &mhz))) {
    w.sm_clock.Add(mhz);
  }
  if (api.DeviceGetPowerUsage == nullptr) {
    w.power_mw.Read(kNvmlFunctionMissing);
  } else if (unsigned int mw = 0; w.power_mw.Read(api.DeviceGetPowerUsage(device, &mw))) {
    w.power_mw.Add(mw);
  }
  if (api.DeviceGetCurrentClocksEventReasons == nullptr) {
    w.reasons.Read(kNvmlFunctionMissing);
  } else if (unsigned long long bits = 0;
             w.reasons.Read(api.DeviceGetCurrentClocksEventReasons(device, &bits))) {
    w.reasons.Add(0);
    w.reasons_or |= bits;
  }
  if (api.DeviceGetTemperatureV != nullptr) {
    nvmlTemperature_v1_t t{kNvmlTemperatureV1, kNvmlTemperatureGpu, 0};
    if (w.gpu_temp.Read(api.DeviceGetTemperatureV(device, &t))) w.gpu_temp.Add(t.temperature);
  } else if (api.DeviceGetTemperature != nullptr) {
    unsigned int c = 0;
    if (w.gpu_temp.Read(api.DeviceGetTemperature(device, kNvmlTemperatureGpu, &c))) {
      w.gpu_temp.Add(c);
    }
  } else {
    w.gpu_temp.Read(kNvmlFunctionMissing);
  }
}

NvmlSummary NvmlSampler::Stop() {
  absl::MutexLock lock(&lifecycle_mu_);
  NvmlSummary summary;
  if (!running_) {
    summary.unavailable.push_back("sampler: Stop() without a running Start()");
    return summary;
  }
  {
    absl::MutexLock stop_lock(&stop_mu_);
    stop_requested_ = true;
  }
  thread_.join();
  running_ = false;

  const Api& api = *api_;
  auto* device = static_cast<nvmlDevice_t>(device_);
  const Window& w = *window_;

  // Energy: the counter at Stop minus at Start.
  nvmlReturn_t energy_error = w.energy_start_error;
  if (w.energy_start_mj.has_value()) {
    unsigned long long end_mj = 0;
    energy_error = api.DeviceGetTotalEnergyConsumption(device, &end_mj);
    if (energy_error == kNvmlSuccess && end_mj >= *w.energy_start_mj) {
      summary.energy_j = static_cast<double>(end_mj - *w.energy_start_mj) / 1e3;
    } else if (energy_error == kNvmlSuccess) {
      summary.unavailable.push_back("energy: the counter went backwards (driver reloaded?)");
    }
  }
  if (energy_error != kNvmlSuccess) {
    summary.unavailable.push_back(absl::StrCat("energy: ", api.Error(energy_error)));
  }

  summary.window_s = absl::ToDoubleSeconds(absl::Now() - w.start);
  ReadGpmEnd(summary);

  summary.samples = w.samples;
  // Where some samples could not read a quantity, its mean is over the rest, and a note says so.
  auto partial = [&summary, &api, &w](const Series& series, const char* what) {
    const std::string note =
        PartialReadNote(what, series.failed, w.samples, api.Error(series.last_error));
    if (!note.empty()) summary.notes.push_back(note);
  };
  auto mean = [&summary, &api, &partial](const Series& series, const char* what, double scale,
                                         std::optional<double>& out) {
    if (series.n > 0) {
      out = series.sum / series.n * scale;
      partial(series, what);
    } else {
      summary.unavailable.push_back(absl::StrCat(what, ": ", api.Error(series.last_error)));
    }
  };
  mean(w.util_gpu, "utilization", 1.0, summary.util_gpu_pct);
  if (w.util_gpu.n > 0) {
    summary.util_gpu_pct_max = w.util_gpu.max;
    summary.util_mem_pct = w.util_mem.sum / w.util_mem.n;
  }
  mean(w.sm_clock, "sm_clock", 1.0, summary.sm_clock_mhz);
  mean(w.power_mw, "power", 1e-3, summary.power_w);
  if (w.gpu_temp.n > 0) {
    summary.gpu_temp_c = w.gpu_temp.max;
    partial(w.gpu_temp, "gpu_temp");
  } else {
    summary.unavailable.push_back(absl::StrCat("gpu_temp: ", api.Error(w.gpu_temp.last_error)));
  }
  if (w.reasons.n > 0) {
    summary.clock_event_reasons = w.reasons_or;
    summary.clock_event_reasons_read = true;
    partial(w.reasons, "clock_event_reasons");
  } else {
    summary.unavailable.push_back(
        absl::StrCat("clock_event_reasons: ", api.Error(w.reasons.last_error)));
  }
  return summary;
}

void NvmlSampler::ReadGpmEnd(NvmlSummary& summary) {
  if (!gpm_off_reason_.empty()) {
    summary.unavailable.push_back(gpm_off_reason_);
    return;
  }
  const Window& w = *window_;
  if (!w.gpm_started) {
    summary.unavailable.push_back(w.gpm_start_error);
    return;
  }
  const Api& api = *api_;
  auto* sample_end = static_cast<nvmlGpmSample_t>(gpm_samples_[1]);
  if (nvmlReturn_t r = api.GpmSampleGet(static_cast<nvmlDevice_t>(device_), sample_end);
      r != kNvmlSuccess) {
    summary.unavailable.push_back(absl::StrCat("GPM: nvmlGpmSampleGet: ", api.Error(r)));
    return;
  }
  if (absl::Seconds(summary.window_s) < kGpmMinWindow) {
    summary.unavailable.push_back(absl::StrFormat(
        "GPM: window of %.0f ms is shorter than the 100 ms GPM needs", summary.window_s * 1e3));
    return;
  }

  struct Wanted {
    unsigned int id;
    const char* what;
    std::optional<double>* out;
  };
  const Wanted wanted[] = {
      {kGpmSmUtil, "gpm_sm_util", &summary.gpm_sm_util_pct},
      {kGpmAnyTensorUtil, "gpm_tensor_util", &summary.gpm_tensor_util_pct},
      {kGpmDramBwUtil, "gpm_dram_bw_util", &summary.gpm_dram_bw_util_pct},
  };
  // About 13 KB: on the heap, not the caller's stack.
  auto get = std::make_unique<nvmlGpmMetricsGet_t>();
  get->version = kNvmlGpmMetricsGetVersion;
  get->numMetrics = sizeof(wanted) / sizeof(wanted[0]);
  get->sample1 = static_cast<nvmlGpmSample_t>(gpm_samples_[0]);
  get->sample2 = sample_end;
  for (unsigned int i = 0; i < get->numMetrics; ++i) get->metrics[i].metricId = wanted[i].id;
  if (nvmlReturn_t r = api.GpmMetricsGet(get.get()); r != kNvmlSuccess) {
    summary.unavailable.push_back(absl::StrCat("GPM: nvmlGpmMetricsGet: ", api.Error(r)));
    return;
  }
  for (unsigned int i = 0; i < get->numMetrics; ++i) {
    const nvmlGpmMetric_t& m = get->metrics[i];
    if (m.nvmlReturn == kNvmlSuccess) {
      *wanted[i].out = m.value;
    } else {
      summary.unavailable.push_back(absl::StrCat(wanted[i].what, ": ", api.Error(m.nvmlReturn)));
    }
  }
}

}  // namespace truthput
