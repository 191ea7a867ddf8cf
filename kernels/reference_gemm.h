// ReferenceGemm: y[m,n] = x[m,k] · W[n,k]^T (nn.Linear layout, all row-major) from bf16 inputs
// (ReferenceGemmScaled: either operand e4m3 with per-row scales) into an fp32 output, accumulated
// in fp32. Deliberately plain: one warp per output element, no tiling, no tensor cores, so it
// shares no code path or rounding with the GEMMs it checks. For tests, and bench_decode's check
// of each chosen GEMM, at shapes where a CPU reference would be too slow (a few ms for
// 128 x 57344 x 8192).
#ifndef TRUTHPUT_KERNELS_REFERENCE_GEMM_H_
#define TRUTHPUT_KERNELS_REFERENCE_GEMM_H_

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"

namespace truthput {

using bf16 = __nv_bfloat16;

// Enqueues the product on stream; m, n, k must be positive. No alignment requirements.
absl::Status ReferenceGemm(const bf16* x, const bf16* w, float* y, int64_t m, int64_t n, int64_t k,
                           cudaStream_t stream);

// An operand of ReferenceGemmScaled: bf16 values (row_scales null), or e4m3 values whose row r
// stands for row_scales[r] times them (kernels/fp8_weights.h's per-row format).
struct ReferenceOperand {
  const void* data = nullptr;
  const float* row_scales = nullptr;
};

// y[i,j] = x_scale[i] * w_scale[j] * sum_t x[i,t] * w[j,t] (a scale is 1 for a bf16 operand):
// the product every fp8 GEMM of the step computes, from the operands as it reads them.
absl::Status ReferenceGemmScaled(const ReferenceOperand& x, const ReferenceOperand& w, float* y,
                                 int64_t m, int64_t n, int64_t k, cudaStream_t stream);

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_REFERENCE_GEMM_H_
