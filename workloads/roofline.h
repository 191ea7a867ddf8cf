// The roofline bound of an op, max(FLOPs / peak FLOP rate, bytes / peak bandwidth), and of a step:
// the sum of its ops' bounds, as they run one after another. That is the time no implementation
// of these kernels can beat on a GPU with given peak rates; fusing ops or overlapping them could
// (a step-level max(FLOPs, bytes) bound is lower, most near the ridge).
#ifndef TRUTHPUT_WORKLOADS_ROOFLINE_H_
#define TRUTHPUT_WORKLOADS_ROOFLINE_H_

#include <cstdint>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "workloads/model_spec.pb.h"
#include "workloads/workload.h"

namespace truthput {

// Peak rates a bound is computed against (datasheet, or later measured on the GPU).
struct Ceilings {
  double bf16_flops_per_s = 0;    // tensor cores on bf16 operands
  double fp8_flops_per_s = 0;     // tensor cores on e4m3 operands; 0 where there are none
  double vector_flops_per_s = 0;  // elementwise ops (fp32 CUDA cores)
  double bytes_per_s = 0;         // DRAM bandwidth

  // The tensor rate for operands of `dtype` (fp8 at the bf16 rate on a GPU without fp8).
  double TensorFlopsPerSecond(DType dtype) const {
    return dtype == FP8_E4M3 && fp8_flops_per_s > 0 ? fp8_flops_per_s : bf16_flops_per_s;
  }
  static Ceilings FromDatasheet(const GpuSpec& gpu);
};

enum class Resource { kMemory, kCompute };
absl::string_view ResourceName(Resource r);

struct OpBound {
  double compute_s = 0;  // one execution
  double memory_s = 0;
  double seconds() const { return compute_s > memory_s ? compute_s : memory_s; }
  Resource limiter() const {
    return compute_s >= memory_s ? Resource::kCompute : Resource::kMemory;  // as StepBound's
  }
};

struct StepBound {
  std::vector<OpBound> ops;  // parallel to Workload::ops()
  double seconds = 0;        // sum over ops of count * bound: kernels run one after another
  double compute_s = 0;      // sum of count * compute time
  double memory_s = 0;       // sum of count * memory time
  double tokens_per_s = 0;
  double intensity = 0;      // FLOP per byte of the whole step
  // Compute where the step's FLOPs take at least as long as its bytes (compute_s >= memory_s:
  // its intensity is at or past the ridge), as DecodeRidgeBatch finds it; else memory.
  Resource limiter = Resource::kMemory;
};

// A GEMM's FLOPs run at the tensor rate of its weights' dtype, attention's at its KV cache's
// (fp8 weights leave the bf16 LM head and bf16 attention at the bf16 rate).
OpBound BoundOp(const Op& op, const Ceilings& c);
StepBound BoundStep(const Workload& w, const Ceilings& c);

// The smallest decode batch at which the step's compute time reaches its memory time (the ridge
// of the roofline) at `context` tokens and TP degree `tp`. NotFound when the step never turns
// compute-bound, saying what its bytes are at the largest batch searched: KV reads grow with the
// batch as fast as FLOPs do, so at long contexts the intensity saturates below the ridge; at
// context 0 activations can do the same (fp8 weights, a high TP degree).
absl::StatusOr<int64_t> DecodeRidgeBatch(const ModelSpec& model, int64_t context, int64_t tp,
                                         const Ceilings& c);

}  // namespace truthput

#endif  // TRUTHPUT_WORKLOADS_ROOFLINE_H_
