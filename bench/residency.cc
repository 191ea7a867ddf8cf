#include "bench/residency.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace truthput {

std::string ResidencyPlan::Describe() const {
  if (full) return absl::StrFormat("full (%d layers)", layer_buffers);
  return absl::StrFormat("rotating %d layer buffers (%.2f GB of weights and KV between reuses)",
                         layer_buffers, bytes_between_reuse / 1e9);
}

int64_t BytesBetweenReuse(const ResidencyInput& in, int64_t buffers) {
  const int64_t L = in.num_layers, per = in.layer_step_bytes;
  // Full: the other layers and the ops outside them. A rotation: the other b - 1 buffers within
  // a step; across the boundary, for the buffers below L % b, the L % b - 1 layers after their
  // last use and the ops outside the layers.
  if (buffers >= L) return (L - 1) * per + in.other_step_bytes;
  const int64_t within = (buffers - 1) * per;
  const int64_t r = L % buffers;
  return r == 0 ? within : std::min(within, (r - 1) * per + in.other_step_bytes);
}

absl::StatusOr<ResidencyPlan> PlanResidency(const ResidencyInput& in) {
  if (in.num_layers < 1 || in.layer_bytes < 1) {
    return absl::InvalidArgumentError("PlanResidency: empty model");
  }
  const int64_t room = in.free_bytes - in.shared_bytes;
  const int64_t fit = room > 0 ? room / in.layer_bytes : 0;
  ResidencyPlan plan;
  if (fit >= in.num_layers) {
    plan.layer_buffers = in.num_layers;
    plan.full = true;
  } else {
    const int64_t min_touched = MinBytesBetweenReuse(in.l2_bytes);
    const int64_t per = std::max<int64_t>(in.layer_step_bytes, 1);
    const int64_t needed = std::max<int64_t>(2, 1 + (min_touched + per - 1) / per);
    if (fit < needed) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "does not fit: %d layer buffers of %.2f GB (the fewest that keep %.0f MB between "
          "reuses, 4x L2) plus %.2f GB shared need %.2f GB, %.2f GB free",
          needed, in.layer_bytes / 1e9, min_touched / 1e6, in.shared_bytes / 1e9,
          (needed * in.layer_bytes + in.shared_bytes) / 1e9, in.free_bytes / 1e9));
    }
    // As many as fit (more distinct memory is more like the model) and keep 4x L2 across steps.
    int64_t b = fit;
    while (b >= needed && BytesBetweenReuse(in, b) < min_touched) --b;
    if (b < needed) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "does not fit: no rotation of %d to %d layer buffers over %d layers keeps %.0f MB "
          "(4x L2) between reuses across the step boundary",
          needed, fit, in.num_layers, min_touched / 1e6));
    }
    plan.layer_buffers = b;
  }
  plan.bytes_between_reuse = BytesBetweenReuse(in, plan.layer_buffers);
  plan.allocated_bytes = plan.layer_buffers * in.layer_bytes + in.shared_bytes;
  return plan;
}

}  // namespace truthput
