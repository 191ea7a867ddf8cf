// Causal (or full) grouped-query attention for the prefill step: q_len new query tokens per
// sequence attend over the KV cache, flash-attention style (no score matrix in DRAM).
//
// Two implementations behind one entry point:
//   * sm_90a (H100/H200), head_dim 128: a FlashAttention-3-style kernel. A producer warp streams
//     Q, K and V tiles into shared memory with TMA (128-byte swizzle, mbarrier pipeline); two
//     consumer warpgroups each own 64 query rows of a 128-row tile and run S = Q.K^T and
//     O += P.V as wgmma (bf16 in, fp32 accumulation), ping-ponging so that one warpgroup's
//     softmax overlaps the other's matrix products.
//   * everywhere else (and head_dim 64): a FlashAttention-2-style kernel on mma.sync m16n8k16
//     with cp.async, ldmatrix and 64-row query tiles.
// Both keep the online softmax in fp32 (exp2 domain), mask only the tiles that cross the causal
// diagonal or the end of the context, skip key tiles wholly above the diagonal, write the
// normalized output once as bf16, and schedule the heaviest (latest) query tiles first.
//
// No allocation, no synchronization: safe to capture in a CUDA graph. (The first call on a
// device sets the kernels' shared-memory attributes; make it outside capture to be safe, as with
// DecodeAttention.)
#ifndef TRUTHPUT_KERNELS_PREFILL_ATTENTION_H_
#define TRUTHPUT_KERNELS_PREFILL_ATTENTION_H_

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include "absl/status/status.h"

namespace truthput {

// For each sequence b, query token t (at position start_pos + t) and query head h, with
// G = num_q_heads / num_kv_heads and kv_len = start_pos + q_len:
//   out[b * q_len + t, h * d : (h + 1) * d] =
//       softmax_j(scale * q[b * q_len + t, h * d : ...] . K[b, h / G, j, :]) . V[b, h / G, j, :]
// over keys j < kv_len, and with `causal` only over j <= start_pos + t.
//
// q, out:           [batch * q_len, num_q_heads * head_dim] (token t of sequence b is row
//                   b * q_len + t, as RopeKvAppend writes q_out).
// k_cache, v_cache: [batch][num_kv_heads][cache_capacity][head_dim]; positions [0, kv_len) are
//                   read, nothing past them (they may hold anything, NaN included).
// Requirements (else InvalidArgument): batch, q_len, start_pos >= 0; head_dim 64 or 128;
// num_q_heads a positive multiple of num_kv_heads; start_pos + q_len <= cache_capacity; scale
// finite and > 0; q, k_cache, v_cache and out 16-byte aligned. batch == 0 or q_len == 0 is a
// no-op.
absl::Status PrefillAttention(const __nv_bfloat16* q, const __nv_bfloat16* k_cache,
                              const __nv_bfloat16* v_cache, __nv_bfloat16* out, int batch,
                              int q_len, int start_pos, int num_q_heads, int num_kv_heads,
                              int head_dim, int cache_capacity, float scale, bool causal,
                              cudaStream_t stream);

// Which kernel PrefillAttentionWithKernel runs (for tests and benchmarks; PrefillAttention is
// kAuto).
enum class PrefillAttentionKernel {
  kAuto,     // kWgmma where available and head_dim == 128, else kMmaSync
  kMmaSync,  // the portable mma.sync kernel (any sm_80+ GPU, head_dim 64 or 128)
  kWgmma,    // the TMA + wgmma kernel: head_dim 128 on an sm_90 device, library built for sm_90a
};

// Whether kWgmma can run on the current device: the library was compiled with sm_90a code and
// the device has compute capability 9.0. False on a machine without a GPU.
bool PrefillAttentionWgmmaAvailable();

// The kernel kAuto runs for head_dim on the current device.
PrefillAttentionKernel PrefillAttentionAutoKernel(int head_dim);

// PrefillAttention with an explicit kernel choice. kWgmma where it cannot run (see above) or with
// head_dim != 128 gives FailedPrecondition / InvalidArgument.
absl::Status PrefillAttentionWithKernel(PrefillAttentionKernel kernel, const __nv_bfloat16* q,
                                        const __nv_bfloat16* k_cache,
                                        const __nv_bfloat16* v_cache, __nv_bfloat16* out,
                                        int batch, int q_len, int start_pos, int num_q_heads,
                                        int num_kv_heads, int head_dim, int cache_capacity,
                                        float scale, bool causal, cudaStream_t stream);

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_PREFILL_ATTENTION_H_
