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
  ResidencyPlan plan;
  if (fit >= in.num_layers) {
    plan.layer_buffers = in.num_layers;
    plan.full = true;
  } else {
    // Between two uses of a layer buffer the other buffers' bytes pass through L2.
    const int64_t min_touched = 4 * in.l2_bytes;
    const int64_t per = std::max<int64_t>(in.layer_step_bytes, 1);
    const int64_t needed = std::max<int64_t>(2, 1 + (min_touched + per - 1) / per);
    if (fit < needed) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "does not fit: %d layer buffers of %.2f GB (the fewest that keep %.0f MB between "
          "reuses, 4x L2) plus %.2f GB shared need %.2f GB, %.2f GB free",
          needed, in.layer_bytes / 1e9, min_touched / 1e6, in.shared_bytes / 1e9,
          (needed * in.layer_bytes + in.shared_bytes) / 1e9, in.free_bytes / 1e9));
    }
    plan.layer_buffers = fit;  // as many as fit: more distinct memory is more like the model
  }
  plan.bytes_between_reuse = plan.full ? in.num_layers * in.layer_step_bytes
                                       : (plan.layer_buffers - 1) * in.layer_step_bytes;
  plan.allocated_bytes = plan.layer_buffers * in.layer_bytes + in.shared_bytes;
  return plan;
}

}  // namespace truthput
