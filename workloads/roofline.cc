#include "workloads/roofline.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "workloads/gpu_datasheet.h"

namespace truthput {

Ceilings Ceilings::FromDatasheet(const GpuSpec& gpu) {
  return Ceilings{.bf16_flops_per_s = gpu.bf16_tflops() * 1e12,
                  .fp8_flops_per_s = gpu.fp8_tflops() * 1e12,
                  .vector_flops_per_s = gpu.fp32_tflops() * 1e12,
                  .bytes_per_s = PeakBytesPerSecond(gpu)};
}

absl::string_view ResourceName(Resource r) {
  return r == Resource::kCompute ? "compute" : "memory";
}

OpBound BoundOp(const Op& op, const Ceilings& c) {
  const double peak =
      !op.tensor_flops ? c.vector_flops_per_s
                       : c.TensorFlopsPerSecond(op.kind == OpKind::kAttention ? op.kv_dtype
                                                                               : op.weight_dtype);
  return OpBound{static_cast<double>(op.flops) / peak,
                 static_cast<double>(op.bytes()) / c.bytes_per_s};
}

StepBound BoundStep(const Workload& w, const Ceilings& c) {
  StepBound s;
  for (const Op& op : w.ops()) {
    const OpBound b = BoundOp(op, c);
    s.ops.push_back(b);
    s.seconds += op.count * b.seconds();
    s.compute_s += op.count * b.compute_s;
    s.memory_s += op.count * b.memory_s;
  }
  s.tokens_per_s = w.tokens_per_step() / s.seconds;
  s.intensity = static_cast<double>(w.total_flops()) / static_cast<double>(w.total_bytes());
  s.limiter = s.compute_s >= s.memory_s ? Resource::kCompute : Resource::kMemory;
  return s;
}

absl::StatusOr<int64_t> DecodeRidgeBatch(const ModelSpec& model, int64_t context, int64_t tp,
                                         const Ceilings& c) {
  auto compute_bound = [&](int64_t batch) -> absl::StatusOr<bool> {
    absl::StatusOr<Workload> w = Workload::Build(
        model, StepConfig{.phase = Phase::kDecode, .batch = batch, .context = context, .tp = tp});
    if (!w.ok()) return w.status();
    return BoundStep(*w, c).limiter == Resource::kCompute;
  };
  // A step that cannot be built at batch 1 (bad context or TP) is the caller's error.
  if (absl::StatusOr<bool> one = compute_bound(1); !one.ok()) return one.status();
  // Searched up to 2^20 sequences, or a smaller power of two where a step that large could not be
  // counted.
  constexpr int64_t kMaxSearchBatch = int64_t{1} << 20;
  int64_t max_batch = kMaxSearchBatch;
  absl::StatusOr<bool> at_max = compute_bound(max_batch);
  while (!at_max.ok() && max_batch > 1) {
    max_batch /= 2;
    at_max = compute_bound(max_batch);
  }
  if (!at_max.ok()) return at_max.status();
  if (!*at_max) {
    // Say what the bytes are there: what keeps the step from reaching the ridge.
    absl::StatusOr<Workload> w = Workload::Build(
        model,
        StepConfig{.phase = Phase::kDecode, .batch = max_batch, .context = context, .tp = tp});
    if (!w.ok()) return w.status();
    double weights = 0, kv = 0, act = 0;
    for (const Op& op : w->ops()) {  // each op as often as the step runs it (per layer)
      const double count = static_cast<double>(op.count);
      weights += count * static_cast<double>(op.weight_bytes);
      kv += count * static_cast<double>(op.kv_read_bytes + op.kv_write_bytes);
      act += count * static_cast<double>(op.act_bytes);
    }
    const double total = weights + kv + act;
    return absl::NotFoundError(absl::StrFormat(
        "decode of %s at context %d stays memory-bound up to batch %d%s (there the KV cache is "
        "%.0f%% of the step's bytes, activations %.0f%%, weights %.0f%%)",
        model.name(), context, max_batch,
        max_batch < kMaxSearchBatch ? ", the largest power of two whose step can be counted"
                                    : "",
        100 * kv / total, 100 * act / total, 100 * weights / total));
  }
  int64_t lo = 0, hi = max_batch;  // compute_bound(lo) false (or lo = 0), compute_bound(hi) true
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    absl::StatusOr<bool> cb = compute_bound(mid);
    if (!cb.ok()) return cb.status();
    (*cb ? hi : lo) = mid;
  }
  return hi;
}

}  // namespace truthput
