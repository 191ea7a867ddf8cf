#include "bench/measured_columns.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace truthput {

void SetOpTiming(const Workload& w, size_t op_index, double op_ms, BatchPoint& p) {
  OpPoint* o = p.mutable_ops(static_cast<int>(op_index));
  const double s = op_ms / 1e3;
  o->set_measured_ms(op_ms);
  o->set_share(op_ms / p.step_ms_p50());
  o->set_achieved_gbps(o->gbytes() / s);
  o->set_achieved_tflops(o->gflops() / s / 1e3);
  if (w.ops().at(op_index).kind == OpKind::kAttention) {
    p.set_attention_time_share(o->share());
    p.set_attention_flops_share(o->gflops() / p.model_gflops());
  }
}

std::string OpsTimedAloneNote(const Workload& w, const ResidencyPlan& plan, int64_t l2_bytes) {
  std::vector<std::string> ops;
  for (const Op& op : w.ops()) {
    if (op.own_bytes() == 0) continue;  // activations only: the same buffers every execution
    const int64_t buffers = op.per_layer ? std::min<int64_t>(plan.layer_buffers, op.count) : 1;
    const ResidencyInput alone{
        .num_layers = op.count, .layer_bytes = 1, .layer_step_bytes = op.own_bytes()};
    const int64_t between = BytesBetweenReuse(alone, buffers) + op.own_bytes();
    if (between < MinBytesBetweenReuse(l2_bytes)) {
      ops.push_back(absl::StrFormat("%s (%.1f MB)", op.name, between / 1e6));
    }
  }
  if (ops.empty()) return "";
  return absl::StrCat("timed alone, ", absl::StrJoin(ops, ", "),
                      " read their weights or KV again after under ",
                      absl::StrFormat("%.0f", MinBytesBetweenReuse(l2_bytes) / 1e6),
                      " MB (4x L2): their GB/s may include L2 hits the step does not get");
}

std::string MemsetNodesClause(const TimingStats& t) {
  if (t.graph_memset_nodes <= 0) return "";
  return absl::StrCat("the graph's ", t.graph_memset_nodes,
                      " memset nodes take launch-queue space at every launch");
}

std::vector<std::string> StepTimingNotes(const TimingStats& t) {
  std::vector<std::string> notes;
  if (!t.stable) {
    notes.push_back(absl::StrFormat(
        "step median not settled when the timing stopped at its time or repetition cap (its ~95%% "
        "CI +-%.2f%%, %d reps)",
        100 * t.rel_ci, t.reps));
  }
  if (t.graph && !t.gated) {
    notes.push_back(absl::StrCat(
        "some timing rounds ran ungated (the host could not enqueue even one launch behind the "
        "gate in time",
        t.graph_memset_nodes > 0 ? absl::StrCat("; ", MemsetNodesClause(t)) : "",
        "): their samples may include the GPU waiting for launches"));
  }
  return notes;
}

void SetNvmlColumns(const NvmlSummary& s, int64_t steps, int gpus, BatchPoint& p) {
  if (s.util_gpu_pct) p.set_smi_util_pct(*s.util_gpu_pct);
  if (s.util_mem_pct) p.set_smi_mem_util_pct(*s.util_mem_pct);
  if (s.gpm_sm_util_pct) p.set_gpm_sm_util_pct(*s.gpm_sm_util_pct);
  if (s.gpm_tensor_util_pct) p.set_gpm_tensor_util_pct(*s.gpm_tensor_util_pct);
  if (s.gpm_dram_bw_util_pct) p.set_gpm_dram_bw_util_pct(*s.gpm_dram_bw_util_pct);
  if (s.sm_clock_mhz) p.set_sm_clock_mhz(*s.sm_clock_mhz);
  if (s.power_w) p.set_power_w(*s.power_w);
  if (s.gpu_temp_c) p.set_gpu_temp_c(*s.gpu_temp_c);
  if (s.energy_j && steps > 0 && p.tokens() > 0) {
    p.set_joules_per_token(gpus * *s.energy_j / (static_cast<double>(steps) * p.tokens()));
  }
  p.set_throttle(s.clock_event_reasons_read ? s.ClockEventReasonsText() : "n/a");
  for (const std::string& n : s.notes) p.add_notes(absl::StrCat("NVML ", n));
}

void SetStepCounterColumns(const TruthColumns& t, const Workload& w, BatchPoint& p) {
  const double step_s = p.step_ms_p50() / 1e3;
  double model_tensor_flops = 0;
  for (const Op& op : w.ops()) {
    if (op.tensor_flops) model_tensor_flops += static_cast<double>(op.count) * op.flops;
  }
  if (t.sm_active_pct) p.set_sm_active_pct(*t.sm_active_pct);
  if (t.tensor_active_pct) p.set_tensor_active_pct(*t.tensor_active_pct);
  if (t.dram_read_bytes) p.set_dram_read_gbytes(*t.dram_read_bytes / 1e9);
  if (t.dram_write_bytes) p.set_dram_write_gbytes(*t.dram_write_bytes / 1e9);
  if (t.dram_read_bytes && t.dram_write_bytes) {
    const double bytes = *t.dram_read_bytes + *t.dram_write_bytes;
    p.set_dram_gbps(bytes / step_s / 1e9);
    p.set_dram_bytes_over_model(bytes / 1e9 / p.model_gbytes());
  }
  if (t.tensor_flops) {
    p.set_hw_tflops(*t.tensor_flops / step_s / 1e12);
    // A step with no tensor-core op has no model FLOPs to hold the count against.
    if (model_tensor_flops > 0) {
      p.set_tensor_flops_over_model(*t.tensor_flops / model_tensor_flops);
    }
  }
  if (t.occupancy_pct) p.set_occupancy_pct(*t.occupancy_pct);
  if (t.l2_hit_pct && *t.l2_hit_pct <= 100) {
    p.set_l2_hit_pct(*t.l2_hit_pct);
  } else if (t.l2_hit_pct) {
    // Hits and lookups come from different replay passes; past 100 the ratio is not a rate.
    p.add_notes(absl::StrFormat(
        "l2_hit_pct left empty: CUPTI's ratio read %.1f%%, its hits and lookups counted in "
        "different replay passes",
        *t.l2_hit_pct));
  }
}

void SetOpCounterColumns(const TruthColumns& t, OpPoint& o) {
  if (t.dram_read_bytes) o.set_dram_read_gbytes(*t.dram_read_bytes / 1e9);
  if (t.dram_write_bytes) o.set_dram_write_gbytes(*t.dram_write_bytes / 1e9);
  if (t.sm_active_pct) o.set_sm_active_pct(*t.sm_active_pct);
  if (t.tensor_active_pct) o.set_tensor_active_pct(*t.tensor_active_pct);
  if (t.tensor_flops && o.has_measured_ms()) {
    o.set_hw_tflops(*t.tensor_flops / (o.measured_ms() / 1e3) / 1e12);
  }
}

}  // namespace truthput
