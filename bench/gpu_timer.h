// TimeGpuWork: honest GPU timing of a piece of stream work, with enough repetitions for a tight
// confidence interval on the median.
//
// Method. The work is captured once into a CUDA graph (use_graph; after one eager run) or
// enqueued eagerly each time. After the warm-up (below) it runs in rounds of reps_per_round
// repetitions; each repetition is bracketed by its own pair of events, recorded back to back
// on the stream, and the host synchronizes once per round. Rounds continue until at least
// min_reps samples are in and the ~95% CI of the median is within target_rel_ci of it
// (stable), or max_reps is reached, or max_seconds with min_reps in (not stable): min_reps
// outlasts the time cap, up to 3 x max_seconds.
// The CI is the wider of two (stats.h): order statistics over the samples, which assume they are
// independent, and, from 20 samples on, over the medians of ten consecutive batches of them,
// which a drift widens (a clock settling under a power cap makes neighbouring steps alike). The
// second is wider for independent samples too (~1.4x), so it asks for more of them; below 20
// samples (short minimums: ceiling bursts, ops, long prefills) the first decides alone.
//
// What a sample means. The time between the GPU reaching the start event and the stop event.
//   * Graph mode (with gate_graph_rounds): each round's launches are enqueued behind a closed
//     StreamGate (stream_gate.h) that opens once the whole round is enqueued, so the GPU runs the
//     round back to back: a sample is the graph's device time (its kernels and the gaps between
//     them on the GPU), never time the GPU spent waiting for the host to submit the launch. A
//     round the host cannot enqueue within gate_timeout_ms (its launches fill the queue: a
//     graph's memset nodes, which cuBLASLt adds for some algorithms, take queue space at every
//     launch, where graphs of kernels alone took none measurable) is dropped and the rounds
//     halved; where even one launch does not fit, timing goes on ungated.
//   * Eager mode: never gated. Where the host enqueues slower than the GPU executes, the GPU waits
//     for each launch and the sample includes that launch overhead, which is what eager numbers
//     are for; where the GPU is slower, the sample is device time.
// Warm-up: `warmup` runs, then (warmup_seconds) rounds as above, at least one, whose samples
// are dropped, so that a clock the power cap holds down has settled into the timed rounds'
// rhythm before the first of them, and the rounds that overflow the gate were halved in the
// warm-up. The caps (max_seconds) count the timed rounds only.
// Event resolution is about 0.5 us, so work much shorter than ~20 us should be batched inside
// enqueue. Caches are not flushed between repetitions: data small enough for L2 stays warm.

#ifndef TRUTHPUT_BENCH_GPU_TIMER_H_
#define TRUTHPUT_BENCH_GPU_TIMER_H_

#include <cuda_runtime_api.h>

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace truthput {

struct TimingOptions {
  int warmup = 3;  // Untimed runs of the timed thing (graph launches or enqueues).
  // Then untimed rounds for at least this long (see the top). A GPU that the work drives to
  // its power cap runs the first ~0.8 s fast (its power mean still below the cap), then its
  // clock falls hard and swings with a ~1 s period for seconds; timed from the start, that
  // swing is the tail.
  double warmup_seconds = 0;
  int min_reps = 20;
  int max_reps = 2000;
  double max_seconds = 5.0;  // Bounds the timed rounds past min_reps, and 3x it all of them.
  double target_rel_ci = 0.005;
  bool use_graph = true;  // Needs a stream other than the legacy default stream.
  int reps_per_round = 10;
  bool gate_graph_rounds = true;  // Graph mode: hold each round behind a StreamGate (see above).
  double gate_timeout_ms = 200;   // A round the host takes longer to enqueue is halved.
};

struct TimingStats {
  double p50_ms = 0;
  std::optional<double> p99_ms;  // Only from kMinSamplesForP99 (stats.h) reps on.
  double rel_spread = 0;  // (p90 - p10) / p50.
  double rel_ci = 0;      // Half-width of the ~95% CI of the median over it: the wider of
                          // SampleSummary's rel_ci and rel_ci_batches (stats.h).
  double rel_ci_steps = 0;  // SampleSummary's rel_ci alone (the samples taken as independent).
  int reps = 0;
  bool stable = false;  // reps >= min_reps and rel_ci <= target_rel_ci.
  bool graph = false;   // Timed as graph launches.
  bool gated = false;   // Every kept sample came from a gated (graph) round.
  int round_reps = 0;   // Reps per gated round at the end (0: ungated); below reps_per_round
                        // where gated rounds of more timed out (each timeout halves them).
  int graph_memset_nodes = 0;  // Memset nodes of the timed graph (launch-queue space; above).
  std::vector<double> samples_ms;  // Every kept sample, in the order timed (reps of them; the
                                   // samples of dropped rounds are not kept).
};

struct GraphExecDeleter {
  void operator()(cudaGraphExec_t g) const { cudaGraphExecDestroy(g); }
};
using GraphExecPtr = std::unique_ptr<CUgraphExec_st, GraphExecDeleter>;

// Captures one enqueue into an instantiated, uploaded CUDA graph (for runs that must replay
// exactly what was timed: the NVML and CUPTI passes). The capture is always ended, so an
// enqueue error leaves the stream usable; it is returned unchanged. Where `memset_nodes` is
// given, it is set to the graph's number of memset nodes.
absl::StatusOr<GraphExecPtr> CaptureGraph(const std::function<absl::Status(cudaStream_t)>& enqueue,
                                          cudaStream_t stream, int* memset_nodes = nullptr);

// Times `enqueue` on `stream` (see the header comment). enqueue must only enqueue asynchronous
// work on the stream it is given (no synchronization, no allocation when use_graph) and return
// the first error it meets; that error is returned unchanged. The call leaves no graph, event or
// pinned memory behind, on every path.
absl::StatusOr<TimingStats> TimeGpuWork(const std::function<absl::Status(cudaStream_t)>& enqueue,
                                        cudaStream_t stream, const TimingOptions& options);

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_GPU_TIMER_H_
