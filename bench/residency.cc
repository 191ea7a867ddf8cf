#include "bench/residency.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace truthput {

std::string ResidencyPlan::Describe() const {
  if (full) return absl::StrFormat("full (%d layers)", layer_buffers);
  return absl::StrFormat("rotating %d layer buffers (%.2f GB between reuses)", layer_buffers,
                         bytes_between_reuse / 1e9);
}

absl::StatusOr<ResidencyPlan> PlanResidency(const ResidencyInput& in) {
  if (in.num_layers < 1 || in.layer_bytes < 1) {
    return absl::InvalidArgumentError("PlanResidency: empty model");
  }
  const int64_t room = in.free_bytes - in.shared_bytes;
  const int64_t fit = room > 0 ? room / in.layer_bytes : 0;
  const int64_t L = in.num_layers, per = in.layer_step_bytes;
  // The fewest bytes between two uses of a buffer with b buffers: the other b - 1 within a step;
  // across the boundary, for the buffers below L % b, the L % b - 1 layers after their last use
  // and the ops outside the layers.
  auto between = [&](int64_t b) {
    const int64_t within = (b - 1) * per;
    const int64_t r = L % b;
    return r == 0 ? within : std::min(within, (r - 1) * per + in.other_step_bytes);
  };
  ResidencyPlan plan;
  if (fit >= L) {
    plan.layer_buffers = L;
    plan.full = true;
    plan.bytes_between_reuse = (L - 1) * per + in.other_step_bytes;
  } else {
    const int64_t min_touched = 4 * in.l2_bytes;
    const int64_t needed =
        std::max<int64_t>(2, 1 + (min_touched + std::max<int64_t>(per, 1) - 1) /
                                     std::max<int64_t>(per, 1));
    if (fit < needed) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "does not fit: %d layer buffers of %.2f GB (the fewest that keep %.0f MB between "
          "reuses, 4x L2) plus %.2f GB shared need %.2f GB, %.2f GB free",
          needed, in.layer_bytes / 1e9, min_touched / 1e6, in.shared_bytes / 1e9,
          (needed * in.layer_bytes + in.shared_bytes) / 1e9, in.free_bytes / 1e9));
    }
    // As many as fit (more distinct memory is more like the model) and keep 4x L2 across steps.
    int64_t b = fit;
    while (b >= needed && between(b) < min_touched) --b;
    if (b < needed) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "does not fit: no rotation of %d to %d layer buffers over %d layers keeps %.0f MB "
          "(4x L2) between reuses across the step boundary",
          needed, fit, L, min_touched / 1e6));
    }
    plan.layer_buffers = b;
    plan.bytes_between_reuse = between(b);
  }
  plan.allocated_bytes = plan.layer_buffers * in.layer_bytes + in.shared_bytes;
  return plan;
}

}  // namespace truthput
