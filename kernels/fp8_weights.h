// FP8 (e4m3) weights with one fp32 scale per output channel, and the small-batch decode GEMM on
// them: half the weight bytes of bf16, so about twice the decode speed where weights dominate.
//
// Format: W[n,k] ≈ wq[n,k] * scales[n], wq row-major e4m3 (OCP FP8, max finite 448), scales[j] =
// max_i |W[j,i]| / 448 (0 for an all-zero row, whose wq is all zero). Quantization multiplies
// rather than divides: wq[j,i] = RN_satfinite(W[j,i] * lift * (448 / (max_i |W[j,i]| * lift)))
// in fp32, with lift = 2^100 for rows whose largest magnitude is below 2^-100 and 1 otherwise,
// which keeps the multiplier finite; round to nearest, saturate to ±448.
//
// SkinnyGemmFp8 is SkinnyGemmBf16's kernel (gemv.h; same stream-K grid, same workspace rules, same
// packed weight layout with 1-byte elements) with 16-byte loads of 16 fp8 weights, converted
// exactly to bf16 in registers (sign-extending byte permute, shift, mask, then a multiply by 2^120
// that also makes e4m3 subnormals exact); the per-channel scale is applied to the fp32 accumulator.
// It is defined in gemv.cu.
//
// No allocation, no synchronization: everything here is capturable into a CUDA graph.
#ifndef TRUTHPUT_KERNELS_FP8_WEIGHTS_H_
#define TRUTHPUT_KERNELS_FP8_WEIGHTS_H_

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"

namespace truthput {

using bf16 = __nv_bfloat16;

// wq[n,k], scales[n] from w[n,k] as above. Requirements: n, k >= 1, k a multiple of 8; w
// 16-byte aligned, wq 8-byte aligned, scales 4-byte aligned. NaN in a row is not supported.
absl::Status QuantizeWeightsFp8(const bf16* w, __nv_fp8_e4m3* wq, float* scales, int64_t n,
                                int64_t k, cudaStream_t stream);

// w[j,i] = bf16(float(wq[j,i]) * scales[j]): the bf16 weights SkinnyGemmFp8 multiplies by, up to
// this rounding to bf16 (for references). Requirements as QuantizeWeightsFp8.
absl::Status DequantizeWeightsFp8(const __nv_fp8_e4m3* wq, const float* scales, bf16* w, int64_t n,
                                  int64_t k, cudaStream_t stream);

// y[m,n] = x[m,k] · (wq * scales)^T, fp32 accumulation, the scale applied to the fp32 sum, with
// wq_packed = PackSkinnyGemmWeights(wq, ..., weight_bytes = 1) (gemv.h). Requirements: as
// SkinnyGemmBf16 (1 <= m <= 32, k a multiple of 8, x and wq_packed 16-byte aligned, workspace of
// SkinnyGemmWorkspaceBytes zero-filled before first use), and scales 4-byte aligned.
absl::Status SkinnyGemmFp8(const bf16* x, const __nv_fp8_e4m3* wq_packed, const float* scales,
                           bf16* y, int64_t m, int64_t n, int64_t k, void* workspace,
                           size_t workspace_bytes, cudaStream_t stream);

// W8A8: y[i,j] = x_scales[i] * scales[j] * sum_k xq[i,k] * wq[j,k], the activations quantized per
// token beforehand (QuantizeWeightsFp8 on x[m,k] gives xq and x_scales), the products on the fp8
// tensor cores (mma.sync m16n8k32 e4m3, fp32 accumulation): SkinnyGemmFp8's kernel without the
// conversion to bf16, half its mma instructions and half its x bytes. The numerics of
// CublasLtFp8Gemm's per-row-scaled form. Requirements: as SkinnyGemmFp8, with k a multiple of 16,
// xq 16-byte and x_scales 4-byte aligned.
absl::Status SkinnyGemmW8A8(const __nv_fp8_e4m3* xq, const float* x_scales,
                            const __nv_fp8_e4m3* wq_packed, const float* scales, bf16* y,
                            int64_t m, int64_t n, int64_t k, void* workspace,
                            size_t workspace_bytes, cudaStream_t stream);

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_FP8_WEIGHTS_H_
