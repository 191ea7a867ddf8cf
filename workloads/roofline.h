// The roofline bound of an op and of a step: the time no implementation can beat on a GPU with
// given peak rates, max(FLOPs / peak FLOP rate, bytes / peak bandwidth).
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
  double tensor_flops_per_s = 0;  // GEMMs and attention, in the dtype of the weights
  double vector_flops_per_s = 0;  // elementwise ops (fp32 CUDA cores)
  double bytes_per_s = 0;         // DRAM bandwidth

  static Ceilings FromDatasheet(const GpuSpec& gpu, DType weight_dtype);
};

enum class Resource { kMemory, kCompute };
absl::string_view ResourceName(Resource r);

struct OpBound {
  double compute_s = 0;  // one execution
  double memory_s = 0;
  double seconds() const { return compute_s > memory_s ? compute_s : memory_s; }
  Resource limiter() const { return compute_s > memory_s ? Resource::kCompute : Resource::kMemory; }
};

struct StepBound {
  std::vector<OpBound> ops;  // parallel to Workload::ops()
  double seconds = 0;        // sum over ops of count * bound: kernels run one after another
  double compute_s = 0;      // sum of count * compute time
  double memory_s = 0;       // sum of count * memory time
  double tokens_per_s = 0;
  double intensity = 0;      // FLOP per byte of the whole step
  // The resource that most of the bound time is spent on.
  Resource limiter = Resource::kMemory;
};

OpBound BoundOp(const Op& op, const Ceilings& c);
StepBound BoundStep(const Workload& w, const Ceilings& c);

// The smallest decode batch at which the step's compute time reaches its memory time (the ridge
// of the roofline) at `context` tokens and TP degree `tp`. NotFound when the step never turns
// compute-bound: KV reads grow with the batch as fast as FLOPs do, so at long contexts the
// intensity saturates below the ridge.
absl::StatusOr<int64_t> DecodeRidgeBatch(const ModelSpec& model, int64_t context, int64_t tp,
                                         const Ceilings& c);

}  // namespace truthput

#endif  // TRUTHPUT_WORKLOADS_ROOFLINE_H_
