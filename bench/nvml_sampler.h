// NvmlSampler: what the driver's own counters (NVML) say about a GPU while a benchmark runs:
// utilization as nvidia-smi shows it, SM clock, power, energy, temperature, why clocks were held
// down, and on Hopper and newer the GPM (GPU performance monitoring) activity a DCGM dashboard
// shows.
//
// libnvidia-ml.so.1 is loaded at run time (dlopen), so truthput builds without nvml.h and runs
// where NVML is missing; Create then returns Unavailable and callers go on without it.
//
// What the numbers mean (and don't):
//   * util_gpu_pct is NVML's "utilization.gpu": the percentage of time, over NVML's own period of
//     1/6 s to 1 s before each read, in which at least one kernel ran. A one-thread kernel scores
//     100%. It says nothing about how much of the GPU the kernels used; gpm_sm_util_pct does.
//   * Each sample reads NVML's values of that moment; utilization and (on Ampere and newer) power
//     are themselves averages over NVML's trailing period, so means lag the window's start.
//   * clock_event_reasons ORs every sample: gpu_idle appears when any sample saw an idle GPU.
//   * energy_j and the GPM values come from counters read at Start and at Stop. GPM counters are
//     only meaningful over 100 ms or more; a shorter window leaves the GPM values unset.
//
// Usage:
//   absl::StatusOr<std::unique_ptr<NvmlSampler>> s = NvmlSampler::Create(identity.uuid);
//   (*s)->Start();
//   ... run the GPU work, synchronize ...
//   NvmlSummary summary = (*s)->Stop();
//
// Start and Stop are thread-safe (a Stop may come from another thread than its Start); a sampler
// may be started again after Stop. Each window's summary covers only that window.
#ifndef TRUTHPUT_BENCH_NVML_SAMPLER_H_
#define TRUTHPUT_BENCH_NVML_SAMPLER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace truthput {

// "none" for 0; otherwise the set bits' names joined by '|', lowest bit first: gpu_idle (0x1),
// app_clocks (0x2), sw_power_cap (0x4), hw_slowdown (0x8), sync_boost (0x10), sw_thermal (0x20),
// hw_thermal (0x40), hw_power_brake (0x80), display_clocks (0x100), as nvml.h's
// nvmlClocksEventReason* bits; unnamed bits as hex ("0x200").
std::string ClockEventReasonsText(uint64_t reasons);

// The note for a quantity that `failed` of a window's `samples` could not read (the last with
// `error`): "utilization: read in 49 of 52 samples, the value is over those
// (NVML_ERROR_UNKNOWN)". Empty where none or every sample failed (then the value is unset and
// `unavailable` says why). NvmlSummary::notes holds it.
std::string PartialReadNote(absl::string_view what, int failed, int samples,
                            absl::string_view error);

// One Start..Stop window. Every value NVML could not give stays unset, and `unavailable` says why,
// one line per thing: "energy: NVML_ERROR_NOT_SUPPORTED", "GPM: not supported on this GPU".
struct NvmlSummary {
  int samples = 0;      // Sampling ticks in the window (the first at Start).
  double window_s = 0;  // Start to Stop, host clock.

  std::optional<double> util_gpu_pct;      // Mean of utilization.gpu over the samples.
  std::optional<double> util_gpu_pct_max;  // Its largest sample.
  std::optional<double> util_mem_pct;      // Mean of utilization.memory (% of time memory was
                                           // read or written; not a bandwidth fraction).
  std::optional<double> sm_clock_mhz;      // Mean SM clock.
  std::optional<double> power_w;           // Mean board power as NVML reports it.
  std::optional<double> energy_j;          // Energy counter at Stop minus at Start.
  // The hottest GPU (die) temperature read, in degrees C. Leakage grows with temperature, so
  // under a power cap a hotter die may get a lower clock for the same work.
  std::optional<double> gpu_temp_c;

  uint64_t clock_event_reasons = 0;        // OR of every sample's reasons.
  bool clock_event_reasons_read = false;   // Whether any sample could read them.
  // ClockEventReasonsText(clock_event_reasons), or "unavailable" if no sample could read them.
  std::string ClockEventReasonsText() const;

  // GPM, over the whole window (Hopper and newer): % of SMs busy (SM cycles with a warp resident,
  // over all SMs), % of time the tensor cores did anything, % of peak DRAM bandwidth used.
  std::optional<double> gpm_sm_util_pct;
  std::optional<double> gpm_tensor_util_pct;
  std::optional<double> gpm_dram_bw_util_pct;

  std::vector<std::string> unavailable;
  // Caveats on values that are set: a quantity some samples could not read (PartialReadNote).
  std::vector<std::string> notes;
};

// A process with a compute context on the GPU, as NVML lists it.
struct GpuProcess {
  uint32_t pid = 0;
  std::optional<int64_t> used_bytes;  // Unset where NVML cannot tell.
};

// The note for a measurement that shared its GPU: the processes of `seen` (read at several times;
// a pid may repeat) other than `self_pid`, "" where there are none. Where `self_pid` is not among
// them (a container's PID namespace: NVML gives the host's pids), one of them is taken to be this
// process, and only more than one is noted. Either note starts "other processes". A co-tenant takes bandwidth and SMs that the figures
// are divided by, and nvidia-smi's utilization counts its kernels too.
std::string OtherProcessesNote(const std::vector<GpuProcess>& seen, uint32_t self_pid);

class NvmlSampler {
 public:
  // Loads NVML, initializes it and finds the GPU by its UUID ("GPU-...", as DeviceIdentity::uuid
  // and nvidia-smi print it, either case; unaffected by CUDA_VISIBLE_DEVICES). Unavailable
  // "NVML not available: ..." where the library is missing or NVML can't start (no driver);
  // NotFound where NVML has no such GPU; InvalidArgument for an empty id or a non-positive
  // interval.
  static absl::StatusOr<std::unique_ptr<NvmlSampler>> Create(
      const std::string& gpu_uuid, absl::Duration interval = absl::Milliseconds(20));

  // Stops sampling if running, then shuts NVML down and unloads it.
  ~NvmlSampler();
  NvmlSampler(const NvmlSampler&) = delete;
  NvmlSampler& operator=(const NvmlSampler&) = delete;

  // Reads the start counters (energy, GPM) and starts a thread that samples every interval.
  // A no-op while already started.
  void Start();
  // Stops and joins the thread, reads the end counters and returns the window's summary. Without
  // a running window, a summary of 0 samples saying so in `unavailable`.
  NvmlSummary Stop();

  // The processes with a compute context on this GPU now (nvmlDeviceGetComputeRunningProcesses_v2),
  // this one included where NVML sees it. Unavailable, naming the call and NVML's error, where
  // NVML cannot say. Safe while sampling.
  absl::StatusOr<std::vector<GpuProcess>> ComputeProcesses() const;

 private:
  struct Api;       // The dlsym'd NVML entry points (nvml_sampler.cc).
  struct Window;    // Accumulators of one Start..Stop window.

  NvmlSampler(void* library, absl::Duration interval);

  void Loop();          // The sampling thread.
  void SampleOnce();    // One tick: utilization, clock, power, clock event reasons, temperature.
  void ReadGpmEnd(NvmlSummary& summary);

  void* const library_;  // dlopen handle.
  const absl::Duration interval_;
  std::unique_ptr<Api> api_;
  bool nvml_initialized_ = false;
  void* device_ = nullptr;  // nvmlDevice_t.
  // GPM: two sample buffers (nvmlGpmSample_t), allocated once where the GPU supports GPM;
  // where it doesn't, gpm_off_reason_ says why (empty: GPM is on).
  void* gpm_samples_[2] = {nullptr, nullptr};
  std::string gpm_off_reason_;

  absl::Mutex lifecycle_mu_;  // Serializes Start, Stop and destruction.
  bool running_ ABSL_GUARDED_BY(lifecycle_mu_) = false;
  std::thread thread_ ABSL_GUARDED_BY(lifecycle_mu_);
  // Written by Start before the thread starts, by the thread while it runs, read by Stop after
  // the join: the thread's start and join order every access, so it needs no lock of its own.
  std::unique_ptr<Window> window_;

  absl::Mutex stop_mu_;  // Wakes the sampling thread early for Stop.
  bool stop_requested_ ABSL_GUARDED_BY(stop_mu_) = false;
};

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_NVML_SAMPLER_H_
