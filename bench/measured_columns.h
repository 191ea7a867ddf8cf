// The columns of a GPU point that come from passes other than the timed step: each op timed
// alone, NVML's window of back-to-back steps, and CUPTI's counters of one step. Plain arithmetic
// on what those passes returned, kept apart from the GPU so that tests hold each column to its
// definition (results/results.proto).
#ifndef TRUTHPUT_BENCH_MEASURED_COLUMNS_H_
#define TRUTHPUT_BENCH_MEASURED_COLUMNS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "bench/cupti_range_profiler.h"
#include "bench/gpu_timer.h"
#include "bench/nvml_sampler.h"
#include "bench/residency.h"
#include "results/results.pb.h"
#include "workloads/workload.h"

namespace truthput {

// Op `op_index` of `p` (OpPoint parallel to the workload's ops) timed alone at `op_ms` for all
// its executions: measured_ms, its share of p.step_ms_p50(), and its achieved GB/s and TFLOP/s
// against its predicted gbytes and gflops. For the attention op also p's attention_time_share
// and attention_flops_share (its FLOPs over the step's). `p` must have step_ms_p50 set.
void SetOpTiming(const Workload& w, size_t op_index, double op_ms, BatchPoint& p);

// The notes of a step timing a reader must not take for a settled one: the median's CI never
// came within the target before the time or repetition cap, or (graph mode) some rounds ran
// ungated, so their samples may hold host launch gaps. Empty where neither.
std::vector<std::string> StepTimingNotes(const TimingStats& t);

// Why a graph's launches filled the launch queue, where it holds memset nodes: "the graph's 82
// memset nodes take launch-queue space at every launch"; empty where it holds none.
std::string MemsetNodesClause(const TimingStats& t);

// The ops that, timed alone (StepRunner::EnqueueOp: all executions of one op over the plan's
// layer buffers, rep after rep, nothing else between), read their weights or KV cache again
// after fewer than 4x `l2_bytes` (their own bytes included): their GB/s may include L2 hits
// that the step, with every other op between, does not get. A note naming each with the bytes
// between its re-reads, or empty when there are none.
std::string OpsTimedAloneNote(const Workload& w, const ResidencyPlan& plan, int64_t l2_bytes);

// What nvidia-smi would have said over `steps` steps run back to back in `s`'s window: its
// means as they are, throttle as ClockEventReasonsText ("n/a" where unread), NVML's notes, and
// joules_per_token = the window's energy over the tokens its steps made (a mean over the whole
// pass, back to back; not power_w x step_ms_p50, which rates the timed pass's median step),
// times `gpus`: with tensor parallelism each of the TP degree's GPUs spends it on those tokens.
void SetNvmlColumns(const NvmlSummary& s, int64_t steps, int gpus, BatchPoint& p);

// The counters of one step, rated against p.step_ms_p50(): dram_gbps and hw_tflops, and
// against the op list of `w`: dram_bytes_over_model (over p.model_gbytes()) and
// tensor_flops_over_model (over the FLOPs of w's tensor-core ops). A column whose counts were
// not read stays unset; so does an l2_hit_pct past 100, with a note that gives it.
void SetStepCounterColumns(const TruthColumns& t, const Workload& w, BatchPoint& p);

// The counters of one op kind's executions; hw_tflops only where the op has measured_ms.
void SetOpCounterColumns(const TruthColumns& t, OpPoint& o);

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_MEASURED_COLUMNS_H_
