// CuptiRangeProfiler: what a piece of GPU work did, from the hardware counters: DRAM bytes, SM
// and tensor-pipe activity, tensor FLOPs, occupancy, L2 hit rate. It reads them with the
// CUDA 13 CUPTI Range Profiler (cupti_range_profiler.h + cupti_profiler_host.h) in user-range,
// user-replay mode.
//
// How a profile runs. The counter hardware reads only some metrics at once, so a metric set may
// need several passes (passes() says how many; TruthMetrics() plans to 2 on GH100). Profile runs
// the work once per pass, each time between a range push and pop; the work must therefore be
// idempotent and self-contained, e.g. one CUDA graph launch of a decode step. Kernels inside a range run
// asynchronously, back to back, graphs included. Before the first pass the stream is
// synchronized, so earlier work on it is not counted; work on other streams or processes that
// overlaps a range is counted too (DRAM and L2 counters are device-wide).
//
// What the numbers mean. Profiling perturbs the work (counter setup, serialization, replay), so
// never time a profiled run: use the counters for what they count, the timer (gpu_timer.h) for
// time.
// CUPTI 13 has no clock control: clocks are whatever the GPU chose.
//
// Failures. Create returns a status whose message is one line fit for an "n/a (reason)" cell: the
// reason, then the failing call in brackets, " [call: CUPTI_ERROR_...]":
//   PermissionDenied  counters are restricted to admin users;
//   Unavailable       another profiler holds the counters (ncu, nsys, DCGM profiling), or
//                     libnvperf_host.so cannot be loaded;
//   Unimplemented     CUPTI cannot profile this device or configuration (MIG, vGPU, ...).
// Metric names the chip does not know are dropped and listed by unsupported_metrics(), never an
// error (NotFound only when none of the names is known).
//
// Not thread-safe; one Profile at a time per process.
#ifndef TRUTHPUT_BENCH_CUPTI_RANGE_PROFILER_H_
#define TRUTHPUT_BENCH_CUPTI_RANGE_PROFILER_H_

#include <cuda_runtime_api.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace truthput {

// The counters of one user range: metric name -> value, in the metric's own unit (see
// TruthMetrics() for the ones truthput reports).
struct RangeMetrics {
  std::string range;
  std::map<std::string, double> values;
  int passes = 0;  // Times the work ran.
};

// One piece of work to profile as its own range.
using RangeWork = std::function<absl::Status(cudaStream_t)>;

class CuptiRangeProfiler {
 public:
  // Sets up profiling of `metrics` on device `device` (its primary context, which it initializes).
  // The work later given to Profile must run on that device.
  static absl::StatusOr<std::unique_ptr<CuptiRangeProfiler>> Create(
      int device, std::vector<std::string> metrics);

  // As Create's metric check, without a GPU: which of `metrics` the chip (e.g. "GH100") knows and
  // how many passes they need. Pass counts can differ from a real device's, which also knows
  // which counters are available.
  struct MetricPlan {
    std::vector<std::string> supported;
    std::vector<std::string> unsupported;
    int passes = 0;
  };
  static absl::StatusOr<MetricPlan> PlanMetrics(const std::string& chip,
                                                const std::vector<std::string>& metrics);

  ~CuptiRangeProfiler();
  CuptiRangeProfiler(const CuptiRangeProfiler&) = delete;
  CuptiRangeProfiler& operator=(const CuptiRangeProfiler&) = delete;

  // Profiles `work` as one range named range_name on `stream` (see the header comment). An error
  // from work is returned unchanged, after the profiler is cleaned up; the profiler stays usable.
  absl::StatusOr<RangeMetrics> Profile(const std::string& range_name, const RangeWork& work,
                                       cudaStream_t stream);

  // Several ranges in one session: each pass runs every work in order, each in its own range (e.g.
  // one range per op kind). Names must be distinct and non-empty. Results are in input order.
  absl::StatusOr<std::vector<RangeMetrics>> ProfileMany(
      const std::vector<std::pair<std::string, RangeWork>>& ranges, cudaStream_t stream);

  const std::string& chip() const { return chip_; }                  // e.g. "GH100"
  const std::vector<std::string>& metrics() const { return metrics_; }  // The ones read.
  const std::vector<std::string>& unsupported_metrics() const { return unsupported_; }
  int passes() const { return passes_; }  // Per range session, from the config.
  int device() const { return device_; }

 private:
  struct Impl;
  explicit CuptiRangeProfiler(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
  int device_ = 0;
  std::string chip_;
  std::vector<std::string> metrics_;
  std::vector<std::string> unsupported_;
  int passes_ = 0;
};

// A metric truthput reports, under a column name of its own.
struct TruthMetric {
  const char* column;  // Field of TruthColumns, e.g. "dram_read_bytes".
  const char* metric;  // CUPTI metric name, e.g. "dram__bytes_read.sum".
  const char* unit;    // Unit of the raw metric value: "byte", "%", "FLOP".
};

// The one table of metric names (chosen for GH100; see the .cc for why each).
const std::vector<TruthMetric>& TruthMetrics();
// Their metric names, for Create.
std::vector<std::string> TruthMetricNames();

// TruthMetrics() values of one range as plain fields; a field is unset where its metric was not
// read (unsupported on the chip, or not asked for).
struct TruthColumns {
  std::optional<double> dram_read_bytes;
  std::optional<double> dram_write_bytes;
  std::optional<double> sm_active_pct;      // SM cycles with a warp resident, % of elapsed.
  std::optional<double> tensor_active_pct;  // Tensor pipe busy (HMMA/HGMMA/QGMMA), % of elapsed.
  std::optional<double> tensor_flops_bf16;  // Tensor ops bf16 -> fp32, FLOP (an FMA is 2).
  std::optional<double> tensor_flops_fp8;   // Tensor ops with fp8 sources, FLOP.
  std::optional<double> tensor_flops;       // Sum of the two above that were read.
  std::optional<double> occupancy_pct;      // Warps resident, % of max, over active cycles.
  std::optional<double> l2_hit_pct;         // L2 sector hit rate (multi-pass: can pass 100).
};
TruthColumns ToTruthColumns(const RangeMetrics& m);

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_CUPTI_RANGE_PROFILER_H_
