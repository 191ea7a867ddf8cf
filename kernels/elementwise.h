// The memory-bound pieces of a Llama-style decoder layer that sit between the GEMMs and the
// attention kernel: RMSNorm (alone or fused with the residual add before it), residual add,
// SwiGLU activation, and RoPE + KV-cache append.
//
// All tensors are row-major bf16 device pointers; math is fp32 and each output is rounded to bf16
// once. Paths use 16-byte vector loads/stores where pointers and row lengths allow and fall back
// to element-wise code otherwise, so any shape is accepted. No allocation, no synchronization:
// every function only enqueues kernels on `stream` and is safe to capture in a CUDA graph. Each
// kernel is a programmatic dependent launch (pdl.cuh): it may become resident while the kernel
// before it runs, and waits for that kernel's completion before it touches memory.
#ifndef TRUTHPUT_KERNELS_ELEMENTWISE_H_
#define TRUTHPUT_KERNELS_ELEMENTWISE_H_

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"

namespace truthput {

// Where RmsNorm or SiluMul also writes its bf16 output quantized to e4m3 per row: the bytes and
// scales QuantizeWeightsFp8 (fp8_weights.h) would make from that output, q [rows, cols] and
// scales [rows], without a kernel of its own and a second read of the output. For the W8A8 GEMM
// that reads the output next. Both null (the default): no quantized copy.
//
// With a quantized copy the bf16 output may be null (nothing written but the copy, for a GEMM
// that reads nothing else) where the copy is made in the same kernel: E4m3CopyIsFused(cols) and
// 16-byte aligned buffers; elsewhere that is InvalidArgument.
struct E4m3Rows {
  __nv_fp8_e4m3* q = nullptr;  // 8-byte aligned
  float* scales = nullptr;
};
bool E4m3CopyIsFused(int cols);  // rows of a multiple of 8 up to 32768 elements

// y[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * weight[:] for x, y of shape [rows, cols].
// One block per row. y may alias x. With `quantized`, cols must be a multiple of 8 and y 16-byte
// aligned (or null, above).
absl::Status RmsNorm(const __nv_bfloat16* x, const __nv_bfloat16* weight, __nv_bfloat16* y,
                     int rows, int cols, float eps, cudaStream_t stream,
                     E4m3Rows quantized = {});

// The residual add before a norm, fused with it: x[r, :] += residual[r, :] (each sum rounded to
// bf16), then y = RmsNorm(x) of the updated rows, with the optional e4m3 copy of y. The results
// are those of ResidualAdd then RmsNorm, bit for bit, from one kernel: one launch and one read of
// x fewer. y must not be x (InvalidArgument): x keeps the sums, the residual stream.
absl::Status AddRmsNorm(__nv_bfloat16* x, const __nv_bfloat16* residual,
                        const __nv_bfloat16* weight, __nv_bfloat16* y, int rows, int cols,
                        float eps, cudaStream_t stream, E4m3Rows quantized = {});

// x[i] += r[i] for i in [0, n).
absl::Status ResidualAdd(__nv_bfloat16* x, const __nv_bfloat16* r, int64_t n,
                         cudaStream_t stream);

// SwiGLU: gate_up is [rows, 2 * ffn] with gate in columns [0, ffn) and up in [ffn, 2 * ffn);
// out[rows, ffn] = silu(gate) * up, silu(g) = g / (1 + exp(-g)). With `quantized`, ffn must be a
// multiple of 8 and out 16-byte aligned or null (above); it then runs one block per row.
absl::Status SiluMul(const __nv_bfloat16* gate_up, __nv_bfloat16* out, int rows, int ffn,
                     cudaStream_t stream, E4m3Rows quantized = {});

// Rotary embedding and KV-cache append for a step of q_len tokens per sequence.
//
// qkv: [batch * q_len, (Hq + 2 * Hkv) * head_dim], each row [Q heads | K heads | V heads]; token
//      t of sequence b is row b * q_len + t and sits at position start_pos + t.
// RoPE is the rotate-half (Llama / Hugging Face) form: for i < head_dim / 2, with
//   angle = pos * rope_theta^(-2i / head_dim) (computed in double and reduced to [-pi, pi],
//   then cos/sin in fp32),
//   out[i]                = x[i] * cos - x[i + head_dim/2] * sin
//   out[i + head_dim / 2] = x[i + head_dim/2] * cos + x[i] * sin.
// (No rope_scaling variants such as Llama 3.1's "llama3" frequency rescaling.)
// q_out:   [batch * q_len, Hq * head_dim], roped Q.
// k_cache, v_cache: [batch][Hkv][cache_capacity][head_dim]; roped K and unchanged V of token t are
//      written at position start_pos + t; nothing else in the caches is touched.
// head_dim must be even; InvalidArgument if start_pos + q_len > cache_capacity.
absl::Status RopeKvAppend(const __nv_bfloat16* qkv, __nv_bfloat16* q_out,
                          __nv_bfloat16* k_cache, __nv_bfloat16* v_cache, int batch, int q_len,
                          int start_pos, int num_q_heads, int num_kv_heads, int head_dim,
                          int cache_capacity, float rope_theta, cudaStream_t stream);

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_ELEMENTWISE_H_
