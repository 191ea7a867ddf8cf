#include "workloads/roofline.h"

#include "absl/strings/str_cat.h"
#include "workloads/gpu_datasheet.h"

namespace truthput {

Ceilings Ceilings::FromDatasheet(const GpuSpec& gpu, DType weight_dtype) {
  return Ceilings{PeakFlopsPerSecond(gpu, weight_dtype), gpu.fp32_tflops() * 1e12,
                  PeakBytesPerSecond(gpu)};
}

absl::string_view ResourceName(Resource r) {
  return r == Resource::kCompute ? "compute" : "memory";
}

OpBound BoundOp(const Op& op, const Ceilings& c) {
  const double peak = op.tensor_flops ? c.tensor_flops_per_s : c.vector_flops_per_s;
  return OpBound{static_cast<double>(op.flops) / peak,
                 static_cast<double>(op.bytes()) / c.bytes_per_s};
}

StepBound BoundStep(const Workload& w, const Ceilings& c) {
  StepBound s;
  double compute_limited_s = 0;
  for (const Op& op : w.ops()) {
    const OpBound b = BoundOp(op, c);
    s.ops.push_back(b);
    s.seconds += op.count * b.seconds();
    s.compute_s += op.count * b.compute_s;
    s.memory_s += op.count * b.memory_s;
    if (b.limiter() == Resource::kCompute) compute_limited_s += op.count * b.seconds();
  }
  s.tokens_per_s = w.tokens_per_step() / s.seconds;
  s.intensity = static_cast<double>(w.total_flops()) / static_cast<double>(w.total_bytes());
  s.limiter = compute_limited_s * 2 > s.seconds ? Resource::kCompute : Resource::kMemory;
  return s;
}

absl::StatusOr<int64_t> DecodeRidgeBatch(const ModelSpec& model, int64_t context, int64_t tp,
                                         const Ceilings& c) {
  auto compute_bound = [&](int64_t batch) -> absl::StatusOr<bool> {
    absl::StatusOr<Workload> w = Workload::Build(
        model, StepConfig{.phase = Phase::kDecode, .batch = batch, .context = context, .tp = tp});
    if (!w.ok()) return w.status();
    const StepBound b = BoundStep(*w, c);
    return b.compute_s >= b.memory_s;
  };
  constexpr int64_t kMaxBatch = int64_t{1} << 24;
  absl::StatusOr<bool> at_max = compute_bound(kMaxBatch);
  if (!at_max.ok()) return at_max.status();
  if (!*at_max) {
    return absl::NotFoundError(absl::StrCat("decode of ", model.name(), " at context ", context,
                                            " stays memory-bound at every batch"));
  }
  int64_t lo = 0, hi = kMaxBatch;  // compute_bound(lo) false (or lo = 0), compute_bound(hi) true
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    absl::StatusOr<bool> cb = compute_bound(mid);
    if (!cb.ok()) return cb.status();
    (*cb ? hi : lo) = mid;
  }
  return hi;
}

}  // namespace truthput
