#include "kernels/decode_attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"
#include "kernels/pdl.cuh"
#include "kernels/ptx.cuh"

namespace truthput {
namespace {

using bf16 = __nv_bfloat16;

// CTA shape. Each warp runs its own cp.async pipeline over every kWarps-th tile of the CTA's key
// range with its own online-softmax state (no block barrier in the main loop); the warps' states
// are merged through shared memory at the end.
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kTileKeys = 16;  // keys per tile: one m16n8k16 k-step of P.V, two n-tiles of Q.K^T
constexpr int kStages = 3;     // per-warp pipeline depth: 2 tiles in flight while one computes
constexpr int kRows = 16;      // query heads per CTA: the mma's M (unused rows are zero padding)

template <int D>
constexpr int kTileBytes = kTileKeys * D * static_cast<int>(sizeof(bf16));  // one K or V tile

template <int D>
constexpr size_t kPipelineSmem = static_cast<size_t>(kWarps) * kStages * 2 * kTileBytes<D>;
// The warps' states for the end-of-CTA combine: numerator rows padded by 8 floats, so that a
// row starts 8 banks after the one before it and the fragments' float2 stores (4 rows x 8
// columns per half-warp) hit 32 different banks; then max and sum.
template <int D>
constexpr int kCombineStride = D + 8;
template <int D>
constexpr size_t kCombineSmem =
    static_cast<size_t>(kWarps) * kRows * (kCombineStride<D> + 2) * sizeof(float);
template <int D>
constexpr size_t kSmemBytes = std::max(kPipelineSmem<D>, kCombineSmem<D>);

struct AttnParams {
  const bf16* q;
  const bf16* k;
  const bf16* v;
  bf16* out;
  float* ws_acc;  // [batch * Hq][num_splits][D]  unnormalized numerators
  float* ws_m;    // [batch * Hq][num_splits]     running max (log2 domain)
  float* ws_l;    // [batch * Hq][num_splits]     softmax denominators
  int num_q_heads;
  int num_kv_heads;
  int group;       // Hq / Hkv
  int head_tiles;  // ceil(group / kRows): CTAs per KV head along the query-head axis
  int kv_len;
  int cache_capacity;
  float scale_log2;  // scale * log2(e): scores live in the exp2 domain
  int num_splits;
  int keys_per_split;  // multiple of kTileKeys
};

using ptx::CpAsync16;
using ptx::CpAsyncCommit;
using ptx::CpAsyncWait;
using ptx::Ldmatrix4;
using ptx::Ldmatrix4Trans;
using ptx::LoadMmaARows;
using ptx::MmaBf16;
using ptx::SmemAddr;
using ptx::SwizzledOffset;  // tiles are [kTileKeys][D] bf16

// Packs (lo, hi) to a bf16x2 register (lo in the low half: the lower column of a fragment) and
// returns the rounded values' sum, so the softmax denominator adds exactly the weights the
// tensor cores multiply.
__device__ __forceinline__ uint32_t PackBf16(float lo, float hi, float& rounded_sum) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  const float2 f = __bfloat1622float2(h);
  rounded_sum += f.x + f.y;
  return *reinterpret_cast<const uint32_t*>(&h);
}

// One warp copies keys [key0, key0 + kTileKeys) of K and V (rows >= key_end zero-filled).
template <int D>
__device__ __forceinline__ void LoadTile(uint32_t k_dst, uint32_t v_dst, const bf16* k_head,
                                         const bf16* v_head, int key0, int key_end, int lane) {
  constexpr int kChunks = D / 8;
  constexpr int kPerLane = kTileKeys * kChunks / 32;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int idx = lane + 32 * i;
    const int row = idx / kChunks;
    const int chunk = idx % kChunks;
    const int key = key0 + row;
    const bool valid = key < key_end;
    const int64_t src = static_cast<int64_t>(valid ? key : key0) * D + chunk * 8;
    const uint32_t dst = SwizzledOffset<D>(row, chunk);
    CpAsync16(k_dst + dst, k_head + src, valid);
    CpAsync16(v_dst + dst, v_head + src, valid);
  }
}

// One CTA = (sequence b, KV head, block of up to 16 query heads of its group, context split).
//
// mma fragment layout (m16n8k16, g = lane / 4, t = lane % 4):
//   A (16x16): a0 (row g, cols 2t..2t+1), a1 (row g+8, same), a2 (row g, cols 2t+8..), a3 (g+8, ..)
//   B (16x8):  b0 (rows 2t..2t+1, col g), b1 (rows 2t+8.., col g)
//   C (16x8):  c0,c1 (row g, cols 2t, 2t+1), c2,c3 (row g+8, cols 2t, 2t+1)
// S = Q.K^T: A = Q (rows = query heads, k = dims), B = K^T (k = dims, n = keys): B's col-major
// layout is K's row-major one, so plain ldmatrix on K rows yields it. O = P.V: A = P is exactly
// S's C layout repacked to bf16, B = V (k = keys, n = dims) via ldmatrix.trans.
template <int D>
__global__ void __launch_bounds__(kThreads, 2) DecodeAttentionKernel(AttnParams p) {
  static_assert(D % 16 == 0 && (kTileKeys * D / 8) % 32 == 0);
  constexpr int kKSteps = D / 16;  // k-steps of Q.K^T
  constexpr int kNTiles = D / 8;   // n-tiles of P.V
  extern __shared__ __align__(128) unsigned char smem[];

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane >> 2, t = lane & 3;

  // Launched as a programmatic dependent of the kernel before it (pdl.cuh): q and the newest K/V
  // row are that kernel's output. Then the merge kernel (or, unsplit, the next kernel) may start
  // launching; it waits for this grid's results before reading them.
  pdl::WaitForPrevious();
  pdl::AllowNextLaunch();
  int cta = blockIdx.x;
  const int split = cta % p.num_splits;
  cta /= p.num_splits;
  const int head_tile = cta % p.head_tiles;
  cta /= p.head_tiles;
  const int kvh = cta % p.num_kv_heads;
  const int b = cta / p.num_kv_heads;

  const int key_begin = static_cast<int>(
      std::min<int64_t>(static_cast<int64_t>(split) * p.keys_per_split, p.kv_len));
  const int key_end = std::min(p.kv_len, key_begin + p.keys_per_split);
  const int num_tiles = (key_end - key_begin + kTileKeys - 1) / kTileKeys;
  const int my_tiles = warp < num_tiles ? (num_tiles - warp + kWarps - 1) / kWarps : 0;

  const int64_t kv_offset =
      (static_cast<int64_t>(b) * p.num_kv_heads + kvh) * p.cache_capacity * D;
  const bf16* k_head = p.k + kv_offset;
  const bf16* v_head = p.v + kv_offset;

  // This warp's kStages stages of [K tile | V tile].
  const uint32_t stages = SmemAddr(smem) + warp * (kStages * 2 * kTileBytes<D>);
  auto tile_key0 = [&](int j) { return key_begin + (warp + j * kWarps) * kTileKeys; };

  // Start the memory stream before anything else.
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < my_tiles) {
      const uint32_t k_dst = stages + s * 2 * kTileBytes<D>;
      LoadTile<D>(k_dst, k_dst + kTileBytes<D>, k_head, v_head, tile_key0(s), key_end, lane);
    }
    CpAsyncCommit();  // possibly empty: keeps the group count uniform for wait_group
  }

  // Q as A fragments, held for the whole key range. Rows past the group are zero.
  const int row_lo = head_tile * kRows + g, row_hi = row_lo + 8;  // index within the group
  const bool has_lo = row_lo < p.group, has_hi = row_hi < p.group;
  const int64_t q_head0 = static_cast<int64_t>(b) * p.num_q_heads + kvh * p.group;
  const bf16* q_lo = p.q + (q_head0 + row_lo) * D + 2 * t;
  const bf16* q_hi = p.q + (q_head0 + row_hi) * D + 2 * t;
  uint32_t qa[kKSteps][4];
  LoadMmaARows<kKSteps>(q_lo, q_hi, has_lo, has_hi, qa);

  // ldmatrix row addresses (lane l supplies row l % 8 of matrix l / 8).
  // K, x4 = {keys 0-7, keys 8-15} x {dims 0-7, dims 8-15} of a k-step -> b0/b1 of n-tiles 0, 1.
  const int k_row = (lane & 7) + ((lane >> 4) << 3);
  const int k_chunk = (lane >> 3) & 1;
  // V, x4.trans = {dims 0-7, 8-15} x {keys 0-7, keys 8-15} -> b0/b1 of two n-tiles of dims.
  const int v_row = (lane & 7) + (((lane >> 3) & 1) << 3);
  const int v_chunk = lane >> 4;

  float acc[kNTiles][4];
#pragma unroll
  for (int j = 0; j < kNTiles; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
  float m_lo = -INFINITY, m_hi = -INFINITY;  // running max per row (quad-uniform)
  float l_lo = 0.0f, l_hi = 0.0f;            // per-thread partial denominators

  for (int j = 0; j < my_tiles; ++j) {
    {
      const int jn = j + kStages - 1;
      if (jn < my_tiles) {
        const uint32_t k_dst = stages + (jn % kStages) * 2 * kTileBytes<D>;
        LoadTile<D>(k_dst, k_dst + kTileBytes<D>, k_head, v_head, tile_key0(jn), key_end, lane);
      }
      CpAsyncCommit();
    }
    CpAsyncWait<kStages - 1>();  // tile j's group has landed (for this lane's copies) ...
    __syncwarp();                // ... and for every lane's.

    const uint32_t k_smem = stages + (j % kStages) * 2 * kTileBytes<D>;
    const uint32_t v_smem = k_smem + kTileBytes<D>;
    const int key0 = tile_key0(j);

    // s[n]: scores of keys key0 + 8n + 2t + {0, 1} for rows g (s[n][0..1]) and g + 8 (s[n][2..3]).
    float s[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
      uint32_t kb[4];
      Ldmatrix4(k_smem + SwizzledOffset<D>(k_row, 2 * kk + k_chunk), kb);
      MmaBf16(s[0], qa[kk], kb[0], kb[1]);
      MmaBf16(s[1], qa[kk], kb[2], kb[3]);
    }

    // Online softmax in the exp2 domain. key0 < key_end, so every quad sees a finite max.
#pragma unroll
    for (int n = 0; n < 2; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = key0 + 8 * n + 2 * t + (e & 1);
        s[n][e] = key < key_end ? s[n][e] * p.scale_log2 : -INFINITY;
      }
    }
    float mx_lo = fmaxf(fmaxf(s[0][0], s[0][1]), fmaxf(s[1][0], s[1][1]));
    float mx_hi = fmaxf(fmaxf(s[0][2], s[0][3]), fmaxf(s[1][2], s[1][3]));
#pragma unroll
    for (int o = 1; o <= 2; o <<= 1) {
      mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, o));
      mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, o));
    }
    const float new_lo = fmaxf(m_lo, mx_lo), new_hi = fmaxf(m_hi, mx_hi);
    const float alpha_lo = exp2f(m_lo - new_lo), alpha_hi = exp2f(m_hi - new_hi);  // 0 at first
    m_lo = new_lo;
    m_hi = new_hi;

    float sum_lo = 0.0f, sum_hi = 0.0f;
    uint32_t pa[4];  // P as the A operand (rows = query heads, k = the tile's 16 keys)
    pa[0] = PackBf16(exp2f(s[0][0] - new_lo), exp2f(s[0][1] - new_lo), sum_lo);
    pa[1] = PackBf16(exp2f(s[0][2] - new_hi), exp2f(s[0][3] - new_hi), sum_hi);
    pa[2] = PackBf16(exp2f(s[1][0] - new_lo), exp2f(s[1][1] - new_lo), sum_lo);
    pa[3] = PackBf16(exp2f(s[1][2] - new_hi), exp2f(s[1][3] - new_hi), sum_hi);
    l_lo = l_lo * alpha_lo + sum_lo;
    l_hi = l_hi * alpha_hi + sum_hi;

#pragma unroll
    for (int jn = 0; jn < kNTiles; ++jn) {
      acc[jn][0] *= alpha_lo;
      acc[jn][1] *= alpha_lo;
      acc[jn][2] *= alpha_hi;
      acc[jn][3] *= alpha_hi;
    }
#pragma unroll
    for (int j2 = 0; j2 < kNTiles / 2; ++j2) {
      uint32_t vb[4];
      Ldmatrix4Trans(v_smem + SwizzledOffset<D>(v_row, 2 * j2 + v_chunk), vb);
      MmaBf16(acc[2 * j2], pa, vb[0], vb[1]);
      MmaBf16(acc[2 * j2 + 1], pa, vb[2], vb[3]);
    }
    __syncwarp();  // every lane is done with this stage before it is refilled
  }

  CpAsyncWait<0>();
#pragma unroll
  for (int o = 1; o <= 2; o <<= 1) {
    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, o);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, o);
  }
  __syncthreads();  // all warps are out of the pipeline buffers; reuse them for the merge

  constexpr int kStride = kCombineStride<D>;
  float* sm_o = reinterpret_cast<float*>(smem);   // [kWarps][kRows][kStride]
  float* sm_m = sm_o + kWarps * kRows * kStride;  // [kWarps][kRows]
  float* sm_l = sm_m + kWarps * kRows;            // [kWarps][kRows]
  {
    float* o_w = sm_o + warp * kRows * kStride;
#pragma unroll
    for (int jn = 0; jn < kNTiles; ++jn) {
      const int col = jn * 8 + 2 * t;
      if (has_lo) {  // rows past the group (zero padding of the mma) are never read
        *reinterpret_cast<float2*>(o_w + g * kStride + col) = make_float2(acc[jn][0], acc[jn][1]);
      }
      if (has_hi) {
        *reinterpret_cast<float2*>(o_w + (g + 8) * kStride + col) =
            make_float2(acc[jn][2], acc[jn][3]);
      }
    }
    if (t == 0) {
      sm_m[warp * kRows + g] = m_lo;
      sm_m[warp * kRows + g + 8] = m_hi;
      sm_l[warp * kRows + g] = l_lo;
      sm_l[warp * kRows + g + 8] = l_hi;
    }
  }
  __syncthreads();

  // Each thread combines 8 columns of one row (c..c+3 and D/2+c..: a quarter-warp's float4 loads
  // then cover all 32 banks), every load issued before the first is used. With 4 warps per SM
  // this is latency-bound: one column per thread (8 rounds of dependent shared-memory loads) made
  // the end of a CTA take about 1.8 us on an H100 (decode_attention_experiment.txt).
  constexpr int kThreadsPerRow = D / 8;
  const int rows_left = p.group - head_tile * kRows;
  const int rows = rows_left < kRows ? rows_left : kRows;
  for (int e = threadIdx.x; e < rows * kThreadsPerRow; e += kThreads) {
    const int r = e / kThreadsPerRow, c = (e % kThreadsPerRow) * 4, c2 = c + D / 2;
    float mw[kWarps], lw[kWarps];
    float4 ow[kWarps][2];
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      mw[w] = sm_m[w * kRows + r];
      lw[w] = sm_l[w * kRows + r];
      const float* o = sm_o + (w * kRows + r) * kStride;
      ow[w][0] = *reinterpret_cast<const float4*>(o + c);
      ow[w][1] = *reinterpret_cast<const float4*>(o + c2);
    }
    float m = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) m = fmaxf(m, mw[w]);
    float l = 0.0f, o[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float wt = mw[w] == -INFINITY ? 0.0f : exp2f(mw[w] - m);  // warps without keys: 0
      l += wt * lw[w];
      o[0] += wt * ow[w][0].x;
      o[1] += wt * ow[w][0].y;
      o[2] += wt * ow[w][0].z;
      o[3] += wt * ow[w][0].w;
      o[4] += wt * ow[w][1].x;
      o[5] += wt * ow[w][1].y;
      o[6] += wt * ow[w][1].z;
      o[7] += wt * ow[w][1].w;
    }
    const int64_t bh = q_head0 + head_tile * kRows + r;  // b * Hq + query head
    if (p.num_splits == 1) {
      const float inv = 1.0f / l;
      uint32_t w32[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const __nv_bfloat162 h = __floats2bfloat162_rn(o[2 * i] * inv, o[2 * i + 1] * inv);
        w32[i] = *reinterpret_cast<const uint32_t*>(&h);
      }
      *reinterpret_cast<uint2*>(p.out + bh * D + c) = make_uint2(w32[0], w32[1]);
      *reinterpret_cast<uint2*>(p.out + bh * D + c2) = make_uint2(w32[2], w32[3]);
    } else {
      const int64_t slot = bh * p.num_splits + split;
      float* dst = p.ws_acc + slot * D;
      *reinterpret_cast<float4*>(dst + c) = make_float4(o[0], o[1], o[2], o[3]);
      *reinterpret_cast<float4*>(dst + c2) = make_float4(o[4], o[5], o[6], o[7]);
      if (c == 0) {
        p.ws_m[slot] = m;  // -inf (with l = 0) for a split past the end of the context
        p.ws_l[slot] = l;
      }
    }
  }
}

// Merges the splits of one (b, query head): out = sum_s w_s acc_s / sum_s w_s l_s with
// w_s = 2^(m_s - max m). One block of D threads per (b, head), one column per thread. Every
// split's (m, l, numerator) is requested before the first is used: the merge costs one memory
// round trip, not num_splits of them (it is on the step's critical path).
template <int D, int kMaxSplits>
__global__ void __launch_bounds__(D)
    DecodeAttentionReduceKernel(const float* __restrict__ ws_acc, const float* __restrict__ ws_m,
                                const float* __restrict__ ws_l, bf16* __restrict__ out,
                                int num_splits) {
  const int64_t bh = blockIdx.x;
  const int c = threadIdx.x;
  // Launched as a programmatic dependent of DecodeAttentionKernel: wait until that grid has
  // finished and its partials are visible.
  pdl::WaitForPrevious();
  pdl::AllowNextLaunch();
  float m[kMaxSplits], l[kMaxSplits], a[kMaxSplits];
#pragma unroll
  for (int s = 0; s < kMaxSplits; ++s) {
    const bool in = s < num_splits;
    m[s] = in ? ws_m[bh * num_splits + s] : -INFINITY;
    l[s] = in ? ws_l[bh * num_splits + s] : 0.0f;
    a[s] = in ? ws_acc[(bh * num_splits + s) * D + c] : 0.0f;
  }
  float mx = -INFINITY;
#pragma unroll
  for (int s = 0; s < kMaxSplits; ++s) mx = fmaxf(mx, m[s]);
  float den = 0.0f, num = 0.0f;
#pragma unroll
  for (int s = 0; s < kMaxSplits; ++s) {
    const float w = m[s] == -INFINITY ? 0.0f : exp2f(m[s] - mx);  // a split past the end: 0
    den += w * l[s];
    num += w * a[s];
  }
  out[bh * D + c] = __float2bfloat16_rn(num / den);
}

// Opts DecodeAttentionKernel<D> into more than the default 48 KB of dynamic shared memory (96 KB
// for D = 128, so two CTAs fit per SM) and asks for the full shared-memory carveout. Done once
// per device (the attribute is per device context), not per call: it is host work on every
// decode step of every layer otherwise. A racing duplicate set is harmless.
template <int D>
absl::Status EnsureKernelAttributes() {
  static std::atomic<uint64_t> done_devices{0};
  int device = 0;
  TP_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  const uint64_t bit = device < 64 ? uint64_t{1} << device : 0;
  if (bit != 0 && (done_devices.load(std::memory_order_acquire) & bit) != 0) {
    return absl::OkStatus();
  }
  TP_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(DecodeAttentionKernel<D>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(kSmemBytes<D>)));
  TP_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(DecodeAttentionKernel<D>,
                                               cudaFuncAttributePreferredSharedMemoryCarveout,
                                               cudaSharedmemCarveoutMaxShared));
  done_devices.fetch_or(bit, std::memory_order_release);
  return absl::OkStatus();
}

template <int D>
absl::Status Launch(const AttnParams& p, int64_t grid, int64_t batch_heads, cudaStream_t stream) {
  TP_RETURN_IF_ERROR(EnsureKernelAttributes<D>());
  TP_RETURN_IF_ERROR(CudaStatus(pdl::Launch(DecodeAttentionKernel<D>,
                                            static_cast<unsigned>(grid), kThreads,
                                            kSmemBytes<D>, stream, p),
                                "DecodeAttentionKernel"));
  if (p.num_splits == 1) return absl::OkStatus();
  // The merge is a programmatic dependent launch too: it is launched while the attention kernel
  // runs instead of after it. On an H100 that took 1.2-1.5 us off every split call at batch 1
  // and 8 in bench_kernels (batch 1, context 4096: 15.3 -> 14.0 us) and 0-4% off the attention
  // op inside a decode step's CUDA graph (results/h100-sxm/decode_attention_experiment.txt).
  // The few-split instance: fewer predicated loads, 2-5% faster at batch 8, context 512-2048
  // (one H100).
  auto* merge = p.num_splits <= 4 ? DecodeAttentionReduceKernel<D, 4>
                                  : DecodeAttentionReduceKernel<D, kDecodeMaxSplits>;
  return CudaStatus(pdl::Launch(merge, static_cast<unsigned>(batch_heads), D, 0, stream,
                                static_cast<const float*>(p.ws_acc),
                                static_cast<const float*>(p.ws_m),
                                static_cast<const float*>(p.ws_l), p.out, p.num_splits),
                    "DecodeAttentionReduceKernel");
}

bool AlignedTo(const void* p, uintptr_t n) { return reinterpret_cast<uintptr_t>(p) % n == 0; }

}  // namespace

int ChooseDecodeSplits(int batch, int num_kv_heads, int kv_len, int sm_count, double dram_gbps) {
  if (batch <= 0 || num_kv_heads <= 0 || kv_len <= 0) return 1;
  if (sm_count <= 0) sm_count = 132;
  const int64_t ctas = static_cast<int64_t>(batch) * num_kv_heads;
  const double drain_ctas = std::isfinite(dram_gbps) ? std::ceil(dram_gbps / kDecodeCtaGbps) : 0;
  if (ctas >= std::max<double>(kDecodeNoSplitCtas, drain_ctas)) return 1;
  const int64_t by_occupancy = sm_count / ctas;
  // From kDecodeNoSplitCtas CTAs a split is only for the memory's sake (see the header).
  const int64_t by_length = kv_len / (ctas >= kDecodeNoSplitCtas ? kDecodeMinKeysPerDrainSplit
                                                                 : kDecodeMinKeysPerSplit);
  return static_cast<int>(std::max<int64_t>(
      1, std::min({by_occupancy, by_length, static_cast<int64_t>(kDecodeMaxSplits)})));
}

size_t DecodeAttentionWorkspaceBytes(int batch, int num_q_heads, int head_dim, int num_splits) {
  if (num_splits <= 1 || batch <= 0 || num_q_heads <= 0 || head_dim <= 0) return 0;
  return static_cast<size_t>(batch) * num_q_heads * num_splits * (head_dim + 2) * sizeof(float);
}

absl::Status DecodeAttention(const bf16* q, const bf16* k_cache, const bf16* v_cache, bf16* out,
                             int batch, int num_q_heads, int num_kv_heads, int head_dim,
                             int kv_len, int cache_capacity, float scale, int num_splits,
                             float* workspace, cudaStream_t stream) {
  if (batch < 0 || num_q_heads <= 0 || num_kv_heads <= 0 || num_q_heads % num_kv_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("DecodeAttention: bad batch=", batch, " or heads Hq=", num_q_heads,
                     " Hkv=", num_kv_heads, " (Hq must be a multiple of Hkv)"));
  }
  if (head_dim != 64 && head_dim != 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("DecodeAttention: head_dim must be 64 or 128, got ", head_dim));
  }
  if (kv_len < 1 || kv_len > cache_capacity) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DecodeAttention: need 1 <= kv_len <= cache_capacity, got kv_len=", kv_len,
        " cache_capacity=", cache_capacity));
  }
  if (num_splits < 1 || num_splits > kDecodeMaxSplits) {
    return absl::InvalidArgumentError(absl::StrCat("DecodeAttention: num_splits must be in [1, ",
                                                   kDecodeMaxSplits, "], got ", num_splits));
  }
  if (!std::isfinite(scale)) return absl::InvalidArgumentError("DecodeAttention: scale not finite");
  const int group = num_q_heads / num_kv_heads;
  const int head_tiles = (group + kRows - 1) / kRows;
  const int64_t grid = static_cast<int64_t>(batch) * num_kv_heads * head_tiles * num_splits;
  if (grid > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError("DecodeAttention: too many CTAs (batch * heads * splits)");
  }
  if (batch == 0) return absl::OkStatus();
  if (q == nullptr || k_cache == nullptr || v_cache == nullptr || out == nullptr) {
    return absl::InvalidArgumentError("DecodeAttention: null pointer");
  }
  if (!AlignedTo(k_cache, 16) || !AlignedTo(v_cache, 16) || !AlignedTo(out, 16) ||
      !AlignedTo(q, 4)) {
    return absl::InvalidArgumentError(
        "DecodeAttention: k_cache, v_cache and out must be 16-byte aligned, q 4-byte aligned");
  }
  if (num_splits > 1 && (workspace == nullptr || !AlignedTo(workspace, 16))) {
    return absl::InvalidArgumentError(
        "DecodeAttention: num_splits > 1 needs a 16-byte aligned workspace of "
        "DecodeAttentionWorkspaceBytes");
  }

  // Split length: a whole number of tiles, so only the last split has a partial tile.
  int keys_per_split = (kv_len + num_splits - 1) / num_splits;
  keys_per_split = (keys_per_split + kTileKeys - 1) / kTileKeys * kTileKeys;

  AttnParams p{};
  p.q = q;
  p.k = k_cache;
  p.v = v_cache;
  p.out = out;
  const int64_t batch_heads = static_cast<int64_t>(batch) * num_q_heads;
  if (num_splits > 1) {
    p.ws_acc = workspace;
    p.ws_m = workspace + batch_heads * num_splits * head_dim;
    p.ws_l = p.ws_m + batch_heads * num_splits;
  }
  p.num_q_heads = num_q_heads;
  p.num_kv_heads = num_kv_heads;
  p.group = group;
  p.head_tiles = head_tiles;
  p.kv_len = kv_len;
  p.cache_capacity = cache_capacity;
  p.scale_log2 = scale * 1.4426950408889634f;
  p.num_splits = num_splits;
  p.keys_per_split = keys_per_split;
  if (head_dim == 128) return Launch<128>(p, grid, batch_heads, stream);
  return Launch<64>(p, grid, batch_heads, stream);
}

}  // namespace truthput
