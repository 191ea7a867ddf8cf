// How a step's buffers are laid out in GPU memory so that no byte is served from L2 that a real
// model would read from DRAM: all layers resident when they fit, else a rotation of distinct
// layer buffers wide enough that the weights and KV read between two uses of one buffer are at
// least 4x the L2 size.
#ifndef TRUTHPUT_BENCH_RESIDENCY_H_
#define TRUTHPUT_BENCH_RESIDENCY_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace truthput {

struct ResidencyInput {
  int64_t num_layers = 0;
  int64_t layer_bytes = 0;        // one layer's weights + KV cache (allocated per layer buffer)
  // The weight and KV bytes (Op::own_bytes; not the activations every layer reuses) of one
  // layer's ops and of the ops outside the layers (embedding, LM head): a lower bound on the
  // bytes that pass through L2 between two uses of a buffer.
  int64_t layer_step_bytes = 0;
  int64_t other_step_bytes = 0;
  int64_t shared_bytes = 0;       // embedding, LM head, activations, workspaces
  int64_t free_bytes = 0;         // usable GPU memory
  int64_t l2_bytes = 0;
};

struct ResidencyPlan {
  int64_t layer_buffers = 0;  // distinct layer buffers; == num_layers means full residency
  bool full = false;
  // The fewest weight and KV bytes read between two uses of one layer buffer, the step boundary
  // included.
  int64_t bytes_between_reuse = 0;
  int64_t allocated_bytes = 0;
  // "full (80 layers)" or "rotating 40 layer buffers (66.73 GB of weights and KV between
  // reuses)".
  std::string Describe() const;
};

// Layer l runs on buffer l % layer_buffers and every step starts again at buffer 0, so with a
// rotation the buffers below num_layers % layer_buffers are reused across the step boundary after
// fewer layers than within it; the plan takes the most buffers that fit and keep 4x L2 there too.
// ResourceExhausted with the reason when not even the smallest honest rotation fits.
absl::StatusOr<ResidencyPlan> PlanResidency(const ResidencyInput& in);

// The bytes that must pass between two uses of one buffer for none of it to be left in an L2 of
// `l2_bytes`: 4x, a margin over its size, since its replacement policy is not documented.
inline int64_t MinBytesBetweenReuse(int64_t l2_bytes) { return 4 * l2_bytes; }

// The fewest weight and KV bytes read between two uses of one layer buffer with `buffers` of
// them (full residency when buffers >= num_layers), the step boundary included: PlanResidency's
// figure.
int64_t BytesBetweenReuse(const ResidencyInput& in, int64_t buffers);

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_RESIDENCY_H_
