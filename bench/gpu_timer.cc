#include "bench/gpu_timer.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/stats.h"
#include "bench/stream_gate.h"
#include "kernels/cuda_status.h"

namespace truthput {
namespace {

struct GraphDeleter {
  void operator()(cudaGraph_t g) const { cudaGraphDestroy(g); }
};
using GraphPtr = std::unique_ptr<CUgraph_st, GraphDeleter>;

// A fixed set of timing events, destroyed together.
class EventPool {
 public:
  EventPool() = default;
  EventPool(const EventPool&) = delete;
  EventPool& operator=(const EventPool&) = delete;
  ~EventPool() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  absl::Status Create(int count) {
    for (int i = 0; i < count; ++i) {
      cudaEvent_t e = nullptr;
      TP_CUDA_RETURN_IF_ERROR(cudaEventCreate(&e));
      events_.push_back(e);
    }
    return absl::OkStatus();
  }
  cudaEvent_t operator[](int i) const { return events_[i]; }

 private:
  std::vector<cudaEvent_t> events_;
};

absl::Status CheckOptions(const TimingOptions& o, cudaStream_t stream) {
  if (o.warmup < 0 || o.min_reps < 1 || o.max_reps < o.min_reps || !(o.max_seconds > 0) ||
      !(o.target_rel_ci >= 0) || o.reps_per_round < 1 || !(o.gate_timeout_ms > 0) ||
      !(o.warmup_seconds >= 0 && o.warmup_seconds <= 600)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TimeGpuWork: bad options: warmup=", o.warmup, " warmup_seconds=", o.warmup_seconds,
        " min_reps=", o.min_reps, " max_reps=",
        o.max_reps, " max_seconds=", o.max_seconds, " target_rel_ci=", o.target_rel_ci,
        " reps_per_round=", o.reps_per_round, " gate_timeout_ms=", o.gate_timeout_ms));
  }
  if (o.use_graph && (stream == nullptr || stream == cudaStreamLegacy)) {
    return absl::InvalidArgumentError(
        "TimeGpuWork: use_graph needs a created stream (the legacy default stream cannot be "
        "captured)");
  }
  return absl::OkStatus();
}

}  // namespace

// Captures one enqueue into an instantiated, uploaded graph. The capture is always ended, so an
// enqueue error leaves the stream usable; it is returned unchanged.
absl::StatusOr<GraphExecPtr> CaptureGraph(const std::function<absl::Status(cudaStream_t)>& enqueue,
                                          cudaStream_t stream, int* memset_nodes) {
  // Thread-local mode: unsafe calls (e.g. cudaMalloc) in this thread fail the capture, while other
  // threads of the process are not disturbed.
  TP_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const absl::Status enqueued = enqueue(stream);
  cudaGraph_t raw_graph = nullptr;
  // Made a status at once (CudaStatus consumes the last error), so a failed capture's error is
  // not reported later against an unrelated launch when the enqueue's error is returned first.
  const absl::Status ended =
      CudaStatus(cudaStreamEndCapture(stream, &raw_graph), "cudaStreamEndCapture");
  GraphPtr graph(raw_graph);
  TP_RETURN_IF_ERROR(enqueued);
  TP_RETURN_IF_ERROR(ended);
  if (graph == nullptr) return absl::InternalError("cudaStreamEndCapture returned no graph");
  if (memset_nodes != nullptr) {
    size_t count = 0;
    TP_CUDA_RETURN_IF_ERROR(cudaGraphGetNodes(graph.get(), nullptr, &count));
    std::vector<cudaGraphNode_t> nodes(count);
    TP_CUDA_RETURN_IF_ERROR(cudaGraphGetNodes(graph.get(), nodes.data(), &count));
    *memset_nodes = 0;
    for (cudaGraphNode_t node : nodes) {
      cudaGraphNodeType type;
      TP_CUDA_RETURN_IF_ERROR(cudaGraphNodeGetType(node, &type));
      if (type == cudaGraphNodeTypeMemset) ++*memset_nodes;
    }
  }
  cudaGraphExec_t raw_exec = nullptr;
  TP_CUDA_RETURN_IF_ERROR(cudaGraphInstantiate(&raw_exec, graph.get(), 0));
  GraphExecPtr exec(raw_exec);
  TP_CUDA_RETURN_IF_ERROR(cudaGraphUpload(exec.get(), stream));
  return exec;
}

absl::StatusOr<TimingStats> TimeGpuWork(const std::function<absl::Status(cudaStream_t)>& enqueue,
                                        cudaStream_t stream, const TimingOptions& options) {
  TP_RETURN_IF_ERROR(CheckOptions(options, stream));
  // Discard a stale non-sticky error left by earlier code (not ours to report; sticky errors
  // surface in the synchronize below), so the check after warm-up blames only enqueue.
  cudaGetLastError();

  // One eager run first in graph mode whatever the warm-up, so lazy module loading and first-call
  // setup inside enqueue happen outside capture.
  const int eager_warmup = options.use_graph ? 1 : options.warmup;
  for (int i = 0; i < eager_warmup; ++i) TP_RETURN_IF_ERROR(enqueue(stream));
  TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  // A launch error that enqueue did not check would otherwise pass as very fast work.
  TP_RETURN_IF_ERROR(CudaStatus(cudaGetLastError(), "cudaGetLastError (after warm-up enqueues)"));

  GraphExecPtr exec;
  int memset_nodes = 0;
  if (options.use_graph) {
    absl::StatusOr<GraphExecPtr> captured = CaptureGraph(enqueue, stream, &memset_nodes);
    if (!captured.ok()) return captured.status();
    exec = *std::move(captured);
    for (int i = 0; i < options.warmup; ++i) {
      TP_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(exec.get(), stream));
    }
    TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  }
  const auto run_once = [&]() -> absl::Status {
    if (exec != nullptr) return CudaStatus(cudaGraphLaunch(exec.get(), stream), "cudaGraphLaunch");
    return enqueue(stream);
  };

  const int first_round = std::min(options.reps_per_round, options.max_reps);
  int per_round = first_round;
  EventPool events;
  TP_RETURN_IF_ERROR(events.Create(2 * per_round));
  std::unique_ptr<StreamGate> gate;
  if (options.use_graph && options.gate_graph_rounds) {
    absl::StatusOr<std::unique_ptr<StreamGate>> created = StreamGate::Create();
    if (!created.ok()) return created.status();
    gate = *std::move(created);
  }
  const int64_t gate_timeout_ns = static_cast<int64_t>(options.gate_timeout_ms * 1e6);

  std::vector<double> samples;
  samples.reserve(std::min(options.max_reps, 4096));
  bool all_gated = gate != nullptr;
  SampleSummary summary;
  double rel_ci = 0;
  bool stable = false;
  // The timed warm-up is rounds like the timed ones, their samples dropped: the GPU reaches the
  // state the timed rounds hold it in (gaps between rounds included), and a round that overflows
  // the gate is halved then, not after, where its gate's idle would set the clock off again.
  bool warming = options.warmup_seconds > 0;
  auto start_time = std::chrono::steady_clock::now();
  while (true) {
    const int n = std::min<int>(per_round, options.max_reps - static_cast<int>(samples.size()));
    if (gate != nullptr) TP_RETURN_IF_ERROR(gate->Close(stream, gate_timeout_ns));
    for (int i = 0; i < n; ++i) {
      TP_CUDA_RETURN_IF_ERROR(cudaEventRecord(events[2 * i], stream));
      TP_RETURN_IF_ERROR(run_once());  // On error the gate's destructor opens it and drains.
      TP_CUDA_RETURN_IF_ERROR(cudaEventRecord(events[2 * i + 1], stream));
    }
    if (gate != nullptr) gate->Open();
    TP_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(events[2 * n - 1]));

    if (gate != nullptr && gate->TimedOut()) {
      // The host could not enqueue the round before the gate gave up (it blocked, e.g. on a full
      // launch queue): the round mixes gated and ungated samples. Drop it; retry gated with half
      // as many launches, and ungated once a single launch does not fit.
      if (per_round > 1) {
        per_round = (per_round + 1) / 2;
      } else {
        gate.reset();
        all_gated = false;
        per_round = first_round;  // Ungated, a round's size only sets how often the host waits.
      }
      continue;
    }
    if (warming) {
      const auto now = std::chrono::steady_clock::now();
      if (std::chrono::duration<double>(now - start_time).count() >= options.warmup_seconds) {
        warming = false;
        start_time = now;  // The caps count the timed rounds only.
      }
      continue;
    }
    for (int i = 0; i < n; ++i) {
      float ms = 0;
      TP_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, events[2 * i], events[2 * i + 1]));
      samples.push_back(ms);
    }
    summary = Summarize(samples);
    rel_ci = std::max(summary.rel_ci, summary.rel_ci_batches.value_or(0.0));
    const int reps = static_cast<int>(samples.size());
    if (reps >= options.min_reps && rel_ci <= options.target_rel_ci) {
      stable = true;
      break;
    }
    const double elapsed_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
    // min_reps outlasts the time cap, up to three times it: work far slower than its caller
    // expected (a step much slower than its roofline bound) still ends.
    const bool past_cap = elapsed_s >= options.max_seconds &&
                          (reps >= options.min_reps || elapsed_s >= 3 * options.max_seconds);
    if (reps >= options.max_reps || past_cap) break;
  }

  TimingStats stats;
  stats.p50_ms = summary.p50;
  stats.p99_ms = summary.p99;
  stats.rel_spread = summary.rel_spread;
  stats.rel_ci = rel_ci;
  stats.rel_ci_steps = summary.rel_ci;
  stats.reps = summary.n;
  stats.stable = stable;
  stats.graph = options.use_graph;
  stats.gated = all_gated;
  stats.round_reps = gate != nullptr ? per_round : 0;
  stats.graph_memset_nodes = memset_nodes;
  stats.samples_ms = std::move(samples);
  return stats;
}

}  // namespace truthput
