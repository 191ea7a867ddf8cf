#include "kernels/prefill_attention.h"

#include <cuda.h>  // CUtensorMap and its enums only: the encoder comes from the runtime
#include <cudaTypedefs.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"
#include "kernels/ptx.cuh"

// TRUTHPUT_PREFILL_SM90A is defined (kernels/CMakeLists.txt) when CMAKE_CUDA_ARCHITECTURES holds
// sm_90a: only then does the wgmma kernel have real device code for H100-class GPUs.
#if defined(TRUTHPUT_PREFILL_SM90A)
#define TP_PREFILL_HAVE_SM90A 1
#else
#define TP_PREFILL_HAVE_SM90A 0
#endif

// wgmma, TMA and mbarrier tx-counts exist in the arch-specific sm_90a device pass only.
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TP_PREFILL_WGMMA_DEVICE 1
#endif

namespace truthput {
namespace {

using bf16 = __nv_bfloat16;

// ------------------------------------------------------------------------------------------------
// Helpers shared by both kernels.

using ptx::SmemAddr;

// 2^x on the SFU (ex2.approx(-inf) = +0).
__device__ __forceinline__ float Exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// Score fragments. Both kernels hold a tile of scores in the m16n8 accumulator layout (g = lane
// / 4, t = lane % 4), N/8 column blocks of 8 keys:
//   s[4i + 0], s[4i + 1]: row g,     keys 8i + 2t, 8i + 2t + 1
//   s[4i + 2], s[4i + 3]: row g + 8, the same keys
// (for wgmma m64nNk16 each warp of the warpgroup owns 16 of the 64 rows in exactly this layout).
// P as the A operand of a k16 step over keys 16k..16k+15 is then, for both mma.sync and wgmma:
//   a0 = (s[8k], s[8k+1]), a1 = (s[8k+2], s[8k+3]), a2 = (s[8k+4], s[8k+5]), a3 = (s[8k+6], s[8k+7]).

// Sets to -inf the scores of keys past each row's last visible key. key0: the tile's first key;
// lim_lo / lim_hi: the last key rows g / g + 8 may see.
template <int N>
__device__ __forceinline__ void MaskScores(float (&s)[N / 2], int key0, int t, int lim_lo,
                                           int lim_hi) {
#pragma unroll
  for (int i = 0; i < N / 8; ++i) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int key = key0 + 8 * i + 2 * t + (e & 1);
      if (key > (e < 2 ? lim_lo : lim_hi)) s[4 * i + e] = -INFINITY;
    }
  }
}

// One online-softmax step over a tile of raw scores (N keys): updates the running row maxima
// m_lo / m_hi (raw score units, quad-uniform) and the per-thread partial denominators l_lo /
// l_hi, writes P = 2^(scale_log2 * (s - m)) as bf16 A fragments and returns in alpha_lo /
// alpha_hi the factor by which the output accumulators must be rescaled. A row with no visible
// key so far keeps m = -inf and gets P = 0, alpha = 0 (never NaN). Requires scale_log2 > 0.
template <int N>
__device__ __forceinline__ void SoftmaxStep(float (&s)[N / 2], uint32_t (&pa)[N / 16][4],
                                            float scale_log2, float& m_lo, float& m_hi,
                                            float& l_lo, float& l_hi, float& alpha_lo,
                                            float& alpha_hi) {
  float mx_lo = m_lo, mx_hi = m_hi;
#pragma unroll
  for (int i = 0; i < N / 8; ++i) {
    mx_lo = fmaxf(mx_lo, fmaxf(s[4 * i], s[4 * i + 1]));
    mx_hi = fmaxf(mx_hi, fmaxf(s[4 * i + 2], s[4 * i + 3]));
  }
#pragma unroll
  for (int o = 1; o <= 2; o <<= 1) {
    mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, o));
    mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, o));
  }
  const float base_lo = mx_lo == -INFINITY ? 0.0f : mx_lo * scale_log2;
  const float base_hi = mx_hi == -INFINITY ? 0.0f : mx_hi * scale_log2;
  alpha_lo = Exp2(m_lo * scale_log2 - base_lo);  // 0 while m was -inf
  alpha_hi = Exp2(m_hi * scale_log2 - base_hi);
  m_lo = mx_lo;
  m_hi = mx_hi;
  float sum_lo = 0.0f, sum_hi = 0.0f;
#pragma unroll
  for (int i = 0; i < N / 8; ++i) {
    s[4 * i + 0] = Exp2(fmaf(s[4 * i + 0], scale_log2, -base_lo));
    s[4 * i + 1] = Exp2(fmaf(s[4 * i + 1], scale_log2, -base_lo));
    s[4 * i + 2] = Exp2(fmaf(s[4 * i + 2], scale_log2, -base_hi));
    s[4 * i + 3] = Exp2(fmaf(s[4 * i + 3], scale_log2, -base_hi));
    sum_lo += s[4 * i + 0] + s[4 * i + 1];
    sum_hi += s[4 * i + 2] + s[4 * i + 3];
  }
  l_lo = l_lo * alpha_lo + sum_lo;
  l_hi = l_hi * alpha_hi + sum_hi;
#pragma unroll
  for (int k = 0; k < N / 16; ++k) {
    pa[k][0] = PackBf16(s[8 * k + 0], s[8 * k + 1]);
    pa[k][1] = PackBf16(s[8 * k + 2], s[8 * k + 3]);
    pa[k][2] = PackBf16(s[8 * k + 4], s[8 * k + 5]);
    pa[k][3] = PackBf16(s[8 * k + 6], s[8 * k + 7]);
  }
}

// The last key row r (at position start_pos + r) may see.
__device__ __forceinline__ int LastVisibleKey(int pos, int kv_len, bool causal) {
  return causal ? min(pos, kv_len - 1) : kv_len - 1;
}

// ------------------------------------------------------------------------------------------------
// Kernel 1: FlashAttention-2 style on mma.sync (portable; head_dim 64 or 128).

namespace fa2 {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRows = kWarps * 16;  // query rows per CTA: 16 per warp (one m16 tile)
constexpr int kKeys = 64;           // keys per K/V tile
constexpr int kStages = 3;          // cp.async pipeline depth: 2 tiles in flight while one computes

template <int D>
constexpr int kTileBytes = kKeys * D * static_cast<int>(sizeof(bf16));  // one K or V tile
template <int D>
constexpr int kSmemBytes = kStages * 2 * kTileBytes<D>;  // 96 KB for D = 128: 2 CTAs per SM

struct Params {
  const bf16* q;
  const bf16* k;
  const bf16* v;
  bf16* out;
  int q_len;
  int start_pos;
  int kv_len;
  int num_q_heads;
  int num_kv_heads;
  int group;        // Hq / Hkv
  int batch_heads;  // batch * Hq
  int num_q_tiles;
  int cache_capacity;
  float scale_log2;
  bool causal;
};

using ptx::CpAsync16;
using ptx::CpAsyncCommit;
using ptx::CpAsyncWait;
using ptx::Ldmatrix4;
using ptx::Ldmatrix4Trans;
using ptx::LoadMmaARows;
using ptx::MmaBf16;
using ptx::SwizzledOffset;  // tiles are [kKeys][D] bf16

// The CTA copies keys [key0, key0 + kKeys) of K and V; rows at or past kv_len are zero-filled
// (never read: a NaN there would survive 0 * NaN in P.V).
template <int D>
__device__ __forceinline__ void LoadKvTile(uint32_t k_dst, uint32_t v_dst, const bf16* k_head,
                                           const bf16* v_head, int key0, int kv_len, int tid) {
  constexpr int kChunks = D / 8;
  constexpr int kPerThread = kKeys * kChunks / kThreads;
  static_assert(kKeys * kChunks % kThreads == 0);
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int idx = tid + kThreads * i;
    const int row = idx / kChunks;
    const int chunk = idx % kChunks;
    const int key = key0 + row;
    const bool valid = key < kv_len;
    const int64_t src = static_cast<int64_t>(valid ? key : 0) * D + chunk * 8;
    const uint32_t dst = SwizzledOffset<D>(row, chunk);
    CpAsync16(k_dst + dst, k_head + src, valid);
    CpAsync16(v_dst + dst, v_head + src, valid);
  }
}

// One CTA = (query tile of kRows rows, sequence b, query head h). Warp w owns rows 16w..16w+15 of
// the tile with its Q fragments in registers; the CTA streams K/V tiles of kKeys keys through a
// kStages-deep cp.async pipeline. S = Q.K^T: A = Q, B = K^T (plain ldmatrix on K rows); O = P.V:
// A = P (the S accumulators repacked), B = V (ldmatrix.trans).
template <int D>
__global__ void __launch_bounds__(kThreads, 2) PrefillMmaKernel(const Params p) {
  static_assert(D % 16 == 0 && kKeys % 16 == 0);
  constexpr int kKSteps = D / 16;  // k-steps of Q.K^T over head dims
  constexpr int kDTiles = D / 8;   // n-tiles of O
  extern __shared__ __align__(128) unsigned char smem[];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane >> 2, t = lane & 3;

  // Heaviest query tiles first (with a causal mask a tile's cost grows with its index); within a
  // tile rank, consecutive CTAs are consecutive heads, so a KV head's group shares L2.
  const int tile_rank = blockIdx.x / p.batch_heads;
  const int bh = blockIdx.x % p.batch_heads;
  const int q_tile = p.num_q_tiles - 1 - tile_rank;
  const int b = bh / p.num_q_heads, h = bh % p.num_q_heads;
  const int kvh = h / p.group;
  const int q0 = q_tile * kRows;
  const int rows = min(kRows, p.q_len - q0);
  const int key_end = p.causal ? p.start_pos + q0 + rows : p.kv_len;  // <= kv_len
  const int num_tiles = (key_end + kKeys - 1) / kKeys;
  // Tiles before this one need no mask: every key in them is visible to every row of the CTA.
  const int first_masked = p.causal ? (p.start_pos + q0 + 1) / kKeys : p.kv_len / kKeys;

  const int64_t kv_offset =
      (static_cast<int64_t>(b) * p.num_kv_heads + kvh) * p.cache_capacity * D;
  const bf16* k_head = p.k + kv_offset;
  const bf16* v_head = p.v + kv_offset;
  const uint32_t stages = SmemAddr(smem);
  auto k_stage = [&](int j) { return stages + (j % kStages) * 2 * kTileBytes<D>; };

  // Start the memory stream before anything else.
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < num_tiles) {
      LoadKvTile<D>(k_stage(s), k_stage(s) + kTileBytes<D>, k_head, v_head, s * kKeys, p.kv_len,
                    tid);
    }
    CpAsyncCommit();  // possibly empty: keeps the group count uniform for wait_group
  }

  // Q as A fragments for the whole loop; rows past q_len are zero.
  const int r_lo = q0 + warp * 16 + g, r_hi = r_lo + 8;
  const bool has_lo = r_lo < p.q_len, has_hi = r_hi < p.q_len;
  const int64_t row_stride = static_cast<int64_t>(p.num_q_heads) * D;
  const bf16* q_base = p.q + static_cast<int64_t>(b) * p.q_len * row_stride +
                       static_cast<int64_t>(h) * D + 2 * t;
  const bf16* q_lo = q_base + static_cast<int64_t>(has_lo ? r_lo : 0) * row_stride;
  const bf16* q_hi = q_base + static_cast<int64_t>(has_hi ? r_hi : 0) * row_stride;
  uint32_t qa[kKSteps][4];
  LoadMmaARows<kKSteps>(q_lo, q_hi, has_lo, has_hi, qa);
  const int lim_lo = LastVisibleKey(p.start_pos + r_lo, p.kv_len, p.causal);
  const int lim_hi = LastVisibleKey(p.start_pos + r_hi, p.kv_len, p.causal);

  // ldmatrix row addresses (lane l supplies row l % 8 of matrix l / 8).
  // K, x4 = {keys 0-7, keys 8-15} x {dims 0-7, dims 8-15} of a k-step -> b0/b1 of 2 key n-tiles.
  const int k_row = (lane & 7) + ((lane >> 4) << 3);
  const int k_chunk = (lane >> 3) & 1;
  // V, x4.trans = {dims 0-7, 8-15} x {keys 0-7, keys 8-15} -> b0/b1 of two n-tiles of dims.
  const int v_row = (lane & 7) + (((lane >> 3) & 1) << 3);
  const int v_chunk = lane >> 4;

  float acc[kDTiles * 4];
#pragma unroll
  for (int i = 0; i < kDTiles * 4; ++i) acc[i] = 0.0f;
  float m_lo = -INFINITY, m_hi = -INFINITY;  // running max per row (raw scores, quad-uniform)
  float l_lo = 0.0f, l_hi = 0.0f;            // per-thread partial denominators

  for (int j = 0; j < num_tiles; ++j) {
    CpAsyncWait<kStages - 2>();  // tile j has landed (this thread's copies) ...
    __syncthreads();             // ... everyone's; and everyone is done with tile j - 1's stage
    {
      const int jn = j + kStages - 1;  // refills the stage tile j - 1 used
      if (jn < num_tiles) {
        LoadKvTile<D>(k_stage(jn), k_stage(jn) + kTileBytes<D>, k_head, v_head, jn * kKeys,
                      p.kv_len, tid);
      }
      CpAsyncCommit();
    }
    const uint32_t k_smem = k_stage(j);
    const uint32_t v_smem = k_smem + kTileBytes<D>;

    float s[kKeys / 2];
#pragma unroll
    for (int i = 0; i < kKeys / 2; ++i) s[i] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
#pragma unroll
      for (int np = 0; np < kKeys / 16; ++np) {
        uint32_t kb[4];
        Ldmatrix4(k_smem + SwizzledOffset<D>(np * 16 + k_row, 2 * kk + k_chunk), kb);
        MmaBf16(&s[8 * np], qa[kk], kb[0], kb[1]);
        MmaBf16(&s[8 * np + 4], qa[kk], kb[2], kb[3]);
      }
    }
    if (j >= first_masked) MaskScores<kKeys>(s, j * kKeys, t, lim_lo, lim_hi);

    uint32_t pa[kKeys / 16][4];
    float alpha_lo, alpha_hi;
    SoftmaxStep<kKeys>(s, pa, p.scale_log2, m_lo, m_hi, l_lo, l_hi, alpha_lo, alpha_hi);
#pragma unroll
    for (int i = 0; i < kDTiles; ++i) {
      acc[4 * i + 0] *= alpha_lo;
      acc[4 * i + 1] *= alpha_lo;
      acc[4 * i + 2] *= alpha_hi;
      acc[4 * i + 3] *= alpha_hi;
    }
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
#pragma unroll
      for (int j2 = 0; j2 < D / 16; ++j2) {
        uint32_t vb[4];
        Ldmatrix4Trans(v_smem + SwizzledOffset<D>(kk * 16 + v_row, 2 * j2 + v_chunk), vb);
        MmaBf16(&acc[8 * j2], pa[kk], vb[0], vb[1]);
        MmaBf16(&acc[8 * j2 + 4], pa[kk], vb[2], vb[3]);
      }
    }
  }
  CpAsyncWait<0>();

#pragma unroll
  for (int o = 1; o <= 2; o <<= 1) {
    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, o);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, o);
  }
  const float inv_lo = 1.0f / l_lo, inv_hi = 1.0f / l_hi;
  bf16* out_base = p.out + static_cast<int64_t>(b) * p.q_len * row_stride +
                   static_cast<int64_t>(h) * D + 2 * t;
  bf16* out_lo = out_base + static_cast<int64_t>(has_lo ? r_lo : 0) * row_stride;
  bf16* out_hi = out_base + static_cast<int64_t>(has_hi ? r_hi : 0) * row_stride;
#pragma unroll
  for (int i = 0; i < kDTiles; ++i) {
    if (has_lo) {
      *reinterpret_cast<uint32_t*>(out_lo + 8 * i) =
          PackBf16(acc[4 * i] * inv_lo, acc[4 * i + 1] * inv_lo);
    }
    if (has_hi) {
      *reinterpret_cast<uint32_t*>(out_hi + 8 * i) =
          PackBf16(acc[4 * i + 2] * inv_hi, acc[4 * i + 3] * inv_hi);
    }
  }
}

}  // namespace fa2

// ------------------------------------------------------------------------------------------------
// Kernel 2: FlashAttention-3 style on sm_90a (TMA + mbarrier pipeline, wgmma, ping-pong
// warpgroups); head_dim 128.

namespace fa3 {

constexpr int kD = 128;
constexpr int kBlockM = 128;  // query rows per CTA: 64 per consumer warpgroup (wgmma M)
constexpr int kBlockN = 128;  // keys per K/V tile (N of Q.K^T, K of P.V)
constexpr int kStages = 3;  // K/V ring: tile j + 2 loads while tiles j - 1 (P.V) and j (Q.K^T) run
constexpr int kConsumerWarps = 8;                    // warpgroups 0 and 1
constexpr int kThreads = (kConsumerWarps + 4) * 32;  // + producer warpgroup 2
// Register split (setmaxnreg): 384 threads launch at 168 registers each; the producer
// warpgroup gives most of its share to the consumers (40 + 2 * 232 = 3 * 168).
constexpr int kProducerRegs = 40;
constexpr int kConsumerRegs = 232;
static_assert(kProducerRegs + 2 * kConsumerRegs == 3 * 168);
constexpr int kHalfBytes = 128 * 64 * 2;  // a [128 rows][64 dims] bf16 sub-tile: 16 KB
constexpr int kTileBytes = 2 * kHalfBytes;  // [128 rows][128 dims] as two 64-dim halves
// Shared memory (offsets from a 1024-byte aligned base, as the 128-byte swizzle requires).
constexpr int kQOffset = 0;
constexpr int kKOffset = kQOffset + kTileBytes;
constexpr int kVOffset = kKOffset + kStages * kTileBytes;
constexpr int kBarOffset = kVOffset + kStages * kTileBytes;  // 224 KB
constexpr int kNumBars = 1 + 3 * kStages;                    // q_full, full_k[], full_v[], empty[]
constexpr int kSmemBytes = kBarOffset + kNumBars * 8 + 1024;  // + slack to align the base
static_assert(kSmemBytes <= 227 * 1024, "over the sm_90 per-block shared memory limit");

struct Params {
  CUtensorMap tm_q;  // [B][q_len][Hq][128] as (d, Hq, q_len, B), box (64, 1, 128, 1)
  CUtensorMap tm_k;  // [B * Hkv][kv_len][128] (row stride cache_capacity), box (64, 128, 1)
  CUtensorMap tm_v;
  bf16* out;
  int q_len;
  int start_pos;
  int kv_len;
  int num_q_heads;
  int num_kv_heads;
  int group;
  int batch_heads;
  int num_q_tiles;
  float scale_log2;
  int causal;
};

#if defined(TP_PREFILL_WGMMA_DEVICE)

// Named barriers (0 is __syncthreads): the ping-pong turn of each consumer warpgroup, and each
// consumer warpgroup's epilogue.
constexpr int kBarTurn = 1;      // 1, 2
constexpr int kBarEpilogue = 3;  // 3, 4

template <int kRegs>
__device__ __forceinline__ void SetMaxRegsInc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <int kRegs>
__device__ __forceinline__ void SetMaxRegsDec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

__device__ __forceinline__ void MbarInit(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void MbarArrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void MbarArriveExpectTx(uint32_t bar, int bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ bool MbarTryWait(uint32_t bar, int parity) {
  uint32_t done;
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
      "selp.u32 %0, 1, 0, p;\n"
      "}\n"
      : "=r"(done)
      : "r"(bar), "r"(parity)
      : "memory");
  return done != 0;
}
// Waits until the phase of parity `parity` has completed.
__device__ __forceinline__ void MbarWait(uint32_t bar, int parity) {
  while (!MbarTryWait(bar, parity)) {
  }
}
// As MbarWait, but a wait of more than ~2^34 cycles (several seconds) can only be a pipeline bug:
// trap, so that it surfaces as a launch error rather than a hung process. (Producer only: the
// clock costs registers that the consumers do not have to spare.)
__device__ __forceinline__ void MbarWaitOrTrap(uint32_t bar, int parity) {
  if (MbarTryWait(bar, parity)) return;
  const long long start = clock64();
  while (!MbarTryWait(bar, parity)) {
    if (clock64() - start > (1ll << 34)) __trap();
  }
}

__device__ __forceinline__ void NamedBarSync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void NamedBarArrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

__device__ __forceinline__ void TmaLoad3d(uint32_t dst, const CUtensorMap* map, uint32_t bar,
                                          int c0, int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5}], [%2];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}
__device__ __forceinline__ void TmaLoad4d(uint32_t dst, const CUtensorMap* map, uint32_t bar,
                                          int c0, int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5, %6}], [%2];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}
__device__ __forceinline__ void PrefetchTensorMap(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// wgmma shared-memory matrix descriptor, 128-byte swizzle: start address, leading and stride
// byte offsets (all >> 4), layout type 1 in bits 62-63.
//   K-major (Q, K: rows of 64 dims = 128 bytes): LBO unused (1), SBO = 1024 (8-row groups);
//     the k-th 16-wide k-step within a 64-dim half starts 32k bytes into the row.
//   MN-major (V as B of P.V, N = dims contiguous): LBO = byte distance between the two 64-dim
//     halves, SBO = 1024 (8-key groups); the k-th 16-key step starts 16 * 128 k bytes in.
__device__ __forceinline__ uint64_t MakeDesc(uint32_t smem_addr, uint32_t lbo_bytes,
                                             uint32_t sbo_bytes) {
  return static_cast<uint64_t>((smem_addr & 0x3FFFF) >> 4) |
         (static_cast<uint64_t>(lbo_bytes >> 4) << 16) |
         (static_cast<uint64_t>(sbo_bytes >> 4) << 32) | (uint64_t{1} << 62);
}

__device__ __forceinline__ void WgmmaFence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void WgmmaCommit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void WgmmaWait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving accesses to d across this point (wgmma writes d
// asynchronously, behind the compiler's back, until the wait).
__device__ __forceinline__ void FenceRegs(float (&d)[64]) {
#pragma unroll
  for (int i = 0; i < 64; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

#define TP_ACC8(i)                                                                 \
  "+f"(d[i + 0]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), \
      "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define TP_ACC64 \
  TP_ACC8(0), TP_ACC8(8), TP_ACC8(16), TP_ACC8(24), TP_ACC8(32), TP_ACC8(40), TP_ACC8(48), TP_ACC8(56)
#define TP_REGS64                                                                           \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "  \
  "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, "   \
  "%36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, "   \
  "%53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"

// d (+)= A . B, m64n128k16, A and B K-major in shared memory. scale_d == 0: d = A . B.
__device__ __forceinline__ void WgmmaSS(float (&d)[64], uint64_t desc_a, uint64_t desc_b,
                                        int scale_d) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " TP_REGS64
      ", %64, %65, p, 1, 1, 0, 0;\n"
      "}\n"
      : TP_ACC64
      : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

// d += A . B, m64n128k16, A (bf16 pairs) in registers, B MN-major in shared memory.
__device__ __forceinline__ void WgmmaRS(float (&d)[64], const uint32_t (&a)[4], uint64_t desc_b) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " TP_REGS64
      ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n"
      "}\n"
      : TP_ACC64
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "n"(1));
}

#undef TP_REGS64
#undef TP_ACC64
#undef TP_ACC8

// Issues S = Q.K^T for one key tile: 8 k-steps over the head dims, two 64-dim halves.
__device__ __forceinline__ void IssueQK(float (&s)[64], uint32_t q_rows, uint32_t k_tile) {
#pragma unroll
  for (int kk = 0; kk < kD / 16; ++kk) {
    const uint32_t off = (kk / 4) * kHalfBytes + (kk % 4) * 32;
    WgmmaSS(s, MakeDesc(q_rows + off, 16, 1024), MakeDesc(k_tile + off, 16, 1024), kk > 0);
  }
}

// Issues O += P.V for one key tile: 8 k-steps over the keys.
__device__ __forceinline__ void IssuePV(float (&o)[64], const uint32_t (&pa)[kBlockN / 16][4],
                                        uint32_t v_tile) {
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk) {
    WgmmaRS(o, pa[kk], MakeDesc(v_tile + kk * 16 * 128, kHalfBytes, 1024));
  }
}

// Softmax of key tile j's scores into P (pa) and the matching rescale of O.
struct RowState {
  float m_lo = -INFINITY, m_hi = -INFINITY;  // running max (raw scores, quad-uniform)
  float l_lo = 0.0f, l_hi = 0.0f;            // per-thread partial denominators
};
__device__ __forceinline__ void SoftmaxTile(float (&s)[64], float (&o)[64],
                                            uint32_t (&pa)[kBlockN / 16][4], bool mask, int key0,
                                            int t, int lim_lo, int lim_hi, float scale_log2,
                                            RowState& rs) {
  if (mask) MaskScores<kBlockN>(s, key0, t, lim_lo, lim_hi);
  float alpha_lo, alpha_hi;
  SoftmaxStep<kBlockN>(s, pa, scale_log2, rs.m_lo, rs.m_hi, rs.l_lo, rs.l_hi, alpha_lo, alpha_hi);
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    o[4 * i + 0] *= alpha_lo;
    o[4 * i + 1] *= alpha_lo;
    o[4 * i + 2] *= alpha_hi;
    o[4 * i + 3] *= alpha_hi;
  }
}

#endif  // TP_PREFILL_WGMMA_DEVICE

// One CTA = (query tile of kBlockM rows, sequence b, query head h).
//
// Warpgroup 2 is the producer: one lane issues TMA loads of the Q tile and then of every K/V
// tile into a kStages-deep ring (full_k / full_v barriers carry the byte counts; consumers free a
// stage through `empty`). Warpgroups 0 and 1 are consumers owning rows 0-63 and 64-127. Per key
// tile j a consumer issues, in one go, S_j = Q.K_j^T (SS wgmma) and O += P_{j-1}.V_{j-1} (RS
// wgmma, P from registers), then does the softmax of S_j. The two warpgroups take turns issuing
// (named barriers kBarTurn + wg), so one's softmax runs under the other's tensor-core work.
// TMA zero-fills keys past kv_len and query rows past q_len (the tensor maps end there), so the
// only masking is of scores, on the tiles that cross the diagonal or the end of the context.
__global__ void __launch_bounds__(kThreads, 1) PrefillWgmmaKernel(const __grid_constant__ Params p) {
#if defined(TP_PREFILL_WGMMA_DEVICE)
  extern __shared__ __align__(1024) unsigned char smem[];
  const uint32_t base = (SmemAddr(smem) + 1023u) & ~1023u;
  const uint32_t q_smem = base + kQOffset;
  const uint32_t bars = base + kBarOffset;
  const uint32_t q_full = bars;
  auto full_k = [&](int s) { return bars + 8u * (1 + s); };
  auto full_v = [&](int s) { return bars + 8u * (1 + kStages + s); };
  auto empty = [&](int s) { return bars + 8u * (1 + 2 * kStages + s); };
  auto k_tile = [&](int s) { return base + kKOffset + s * kTileBytes; };
  auto v_tile = [&](int s) { return base + kVOffset + s * kTileBytes; };

  const int tile_rank = blockIdx.x / p.batch_heads;
  const int bh = blockIdx.x % p.batch_heads;
  const int q_tile = p.num_q_tiles - 1 - tile_rank;  // heaviest first
  const int b = bh / p.num_q_heads, h = bh % p.num_q_heads;
  const int kvh = h / p.group;
  const int q0 = q_tile * kBlockM;
  const int rows = min(kBlockM, p.q_len - q0);
  const int key_end = p.causal ? p.start_pos + q0 + rows : p.kv_len;  // <= kv_len
  const int num_tiles = (key_end + kBlockN - 1) / kBlockN;              // >= 1

  // Warp-uniform roles: the shuffle tells the compiler so (wgmma must not sit on a path it
  // thinks divergent, or it gets serialized).
  const int warp = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x / 32), 0);
  const int lane = threadIdx.x % 32;
  if (threadIdx.x == 0) {
    MbarInit(q_full, 1);
#pragma unroll
    for (int s = 0; s < kStages; ++s) {
      MbarInit(full_k(s), 1);
      MbarInit(full_v(s), 1);
      MbarInit(empty(s), kConsumerWarps);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (warp >= kConsumerWarps) {
    // Producer.
    SetMaxRegsDec<kProducerRegs>();
    if (warp == kConsumerWarps && lane == 0) {
      PrefetchTensorMap(&p.tm_q);
      PrefetchTensorMap(&p.tm_k);
      PrefetchTensorMap(&p.tm_v);
      MbarArriveExpectTx(q_full, kTileBytes);
      TmaLoad4d(q_smem, &p.tm_q, q_full, 0, h, q0, b);
      TmaLoad4d(q_smem + kHalfBytes, &p.tm_q, q_full, 64, h, q0, b);
      const int kv_head = b * p.num_kv_heads + kvh;
      for (int j = 0; j < num_tiles; ++j) {
        const int s = j % kStages;
        if (j >= kStages) MbarWaitOrTrap(empty(s), ((j / kStages) - 1) & 1);
        const int key0 = j * kBlockN;
        MbarArriveExpectTx(full_k(s), kTileBytes);
        TmaLoad3d(k_tile(s), &p.tm_k, full_k(s), 0, key0, kv_head);
        TmaLoad3d(k_tile(s) + kHalfBytes, &p.tm_k, full_k(s), 64, key0, kv_head);
        MbarArriveExpectTx(full_v(s), kTileBytes);
        TmaLoad3d(v_tile(s), &p.tm_v, full_v(s), 0, key0, kv_head);
        TmaLoad3d(v_tile(s) + kHalfBytes, &p.tm_v, full_v(s), 64, key0, kv_head);
      }
      // Watchdog: Q and the last K/V tile must land (if they never do, the consumers hang).
      const int jl = num_tiles - 1;
      MbarWaitOrTrap(q_full, 0);
      MbarWaitOrTrap(full_v(jl % kStages), (jl / kStages) & 1);
    }
    return;
  }

  // Consumers.
  SetMaxRegsInc<kConsumerRegs>();
  const int wg = warp / 4;
  const int warp_in_wg = warp % 4;
  const int g = lane >> 2, t = lane & 3;
  const int r_lo = 16 * warp_in_wg + g;  // this thread's rows within the warpgroup: r_lo, r_lo + 8
  const int row0 = q0 + 64 * wg;         // the warpgroup's first row within the sequence
  const int lim_lo = LastVisibleKey(p.start_pos + row0 + r_lo, p.kv_len, p.causal);
  const int lim_hi = LastVisibleKey(p.start_pos + row0 + r_lo + 8, p.kv_len, p.causal);
  // Tiles before this one are visible in full to every row of the warpgroup.
  const int first_masked = p.causal ? (p.start_pos + row0 + 1) / kBlockN : p.kv_len / kBlockN;
  const uint32_t q_wg = q_smem + wg * 64 * 128;  // the warpgroup's 64 rows in each half
  const int turn = kBarTurn + wg, other_turn = kBarTurn + (wg ^ 1);

  float s[64], o[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) s[i] = o[i] = 0.0f;
  uint32_t pa[kBlockN / 16][4];
  RowState rs;

  if (wg == 1) NamedBarArrive(kBarTurn, 2 * 128);  // warpgroup 0 issues first
  MbarWait(q_full, 0);

  // Tile 0: S only. Warpgroup 1 skips its last turn signal, which nobody would wait for
  // (warpgroup 0 syncs num_tiles times; warpgroup 1 signalled once up front).
  MbarWait(full_k(0), 0);
  NamedBarSync(turn, 2 * 128);
  WgmmaFence();
  IssueQK(s, q_wg, k_tile(0));
  WgmmaCommit();
  if (wg == 0 || num_tiles > 1) NamedBarArrive(other_turn, 2 * 128);
  WgmmaWait<0>();
  FenceRegs(s);
  SoftmaxTile(s, o, pa, first_masked == 0, 0, t, lim_lo, lim_hi, p.scale_log2, rs);

  for (int j = 1; j < num_tiles; ++j) {
    const int st = j % kStages;
    const int sp = (j - 1) % kStages;  // stage of tile j - 1
    MbarWait(full_k(st), (j / kStages) & 1);
    MbarWait(full_v(sp), ((j - 1) / kStages) & 1);
    NamedBarSync(turn, 2 * 128);  // our turn on the tensor cores
    WgmmaFence();
    IssueQK(s, q_wg, k_tile(st));
    IssuePV(o, pa, v_tile(sp));
    WgmmaCommit();
    if (wg == 0 || j + 1 < num_tiles) NamedBarArrive(other_turn, 2 * 128);
    WgmmaWait<0>();
    FenceRegs(s);
    FenceRegs(o);
    __syncwarp();
    if (lane == 0) MbarArrive(empty(sp));  // K_{j-1} and V_{j-1} are consumed
    SoftmaxTile(s, o, pa, j >= first_masked, j * kBlockN, t, lim_lo, lim_hi, p.scale_log2, rs);
  }
  {
    // O += P.V of the last tile.
    const int jl = num_tiles - 1, sl = jl % kStages;
    MbarWait(full_v(sl), (jl / kStages) & 1);
    WgmmaFence();
    IssuePV(o, pa, v_tile(sl));
    WgmmaCommit();
    WgmmaWait<0>();
    FenceRegs(o);
  }

  // Epilogue: normalize, stage the warpgroup's 64 x 128 bf16 rows in its own (now idle) Q rows
  // with the same swizzle, then write 16-byte chunks of whole rows.
  float l_lo = rs.l_lo, l_hi = rs.l_hi;
#pragma unroll
  for (int o2 = 1; o2 <= 2; o2 <<= 1) {
    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, o2);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, o2);
  }
  const float inv_lo = 1.0f / l_lo, inv_hi = 1.0f / l_hi;
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    const uint32_t half = q_wg + (i / 8) * kHalfBytes;
    const uint32_t chunk = static_cast<uint32_t>(((i % 8) ^ g) << 4) + 4 * t;  // (r & 7) == g
    const uint32_t lo = PackBf16(o[4 * i + 0] * inv_lo, o[4 * i + 1] * inv_lo);
    const uint32_t hi = PackBf16(o[4 * i + 2] * inv_hi, o[4 * i + 3] * inv_hi);
    asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(half + r_lo * 128 + chunk), "r"(lo) : "memory");
    asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(half + (r_lo + 8) * 128 + chunk), "r"(hi)
                 : "memory");
  }
  NamedBarSync(kBarEpilogue + wg, 128);
  const int tid_wg = threadIdx.x % 128;
  const int64_t row_stride = static_cast<int64_t>(p.num_q_heads) * kD;
  bf16* out_base = p.out + static_cast<int64_t>(b) * p.q_len * row_stride +
                   static_cast<int64_t>(h) * kD;
#pragma unroll
  for (int k = 0; k < 64 * 16 / 128; ++k) {
    const int idx = tid_wg + 128 * k;
    const int r = idx / 16, c = idx % 16;
    const uint32_t addr = q_wg + (c / 8) * kHalfBytes + r * 128 + (((c % 8) ^ (r & 7)) << 4);
    uint4 v;
    asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "r"(addr)
                 : "memory");
    const int row = row0 + r;
    if (row < p.q_len) {
      *reinterpret_cast<uint4*>(out_base + static_cast<int64_t>(row) * row_stride + c * 8) = v;
    }
  }
#endif  // TP_PREFILL_WGMMA_DEVICE
}

}  // namespace fa3

// ------------------------------------------------------------------------------------------------
// Host side.

bool AlignedTo(const void* p, uintptr_t n) { return reinterpret_cast<uintptr_t>(p) % n == 0; }

// Opts `kernel` into `bytes` of dynamic shared memory once per device (the attribute is per
// device context; setting it on every call is host work on every layer otherwise). A racing
// duplicate set is harmless.
absl::Status EnsureSmemAttribute(const void* kernel, int bytes,
                                 std::atomic<uint64_t>& done_devices) {
  int device = 0;
  TP_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  const uint64_t bit = device < 64 ? uint64_t{1} << device : 0;
  if (bit != 0 && (done_devices.load(std::memory_order_acquire) & bit) != 0) {
    return absl::OkStatus();
  }
  TP_CUDA_RETURN_IF_ERROR(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  TP_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
      kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared));
  done_devices.fetch_or(bit, std::memory_order_release);
  return absl::OkStatus();
}

struct Shape {
  int batch, q_len, start_pos, num_q_heads, num_kv_heads, head_dim, cache_capacity;
  float scale;
  bool causal;
  int kv_len() const { return start_pos + q_len; }
};

// Sets the shape fields that both kernels' Params share (rows: query rows per CTA) and returns
// the grid: a CTA per tile of rows of each (sequence, query head).
template <typename Params>
absl::StatusOr<unsigned> SetShapeParams(Params& p, const Shape& s, int rows) {
  p.q_len = s.q_len;
  p.start_pos = s.start_pos;
  p.kv_len = s.kv_len();
  p.num_q_heads = s.num_q_heads;
  p.num_kv_heads = s.num_kv_heads;
  p.group = s.num_q_heads / s.num_kv_heads;
  p.batch_heads = s.batch * s.num_q_heads;
  p.num_q_tiles = (s.q_len + rows - 1) / rows;
  p.scale_log2 = s.scale * 1.4426950408889634f;  // exp(x) = exp2(x * log2(e))
  p.causal = s.causal;
  const int64_t grid = static_cast<int64_t>(p.num_q_tiles) * p.batch_heads;
  if (grid > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError("PrefillAttention: too many CTAs");
  }
  return static_cast<unsigned>(grid);
}

template <int D>
absl::Status LaunchMma(const bf16* q, const bf16* k, const bf16* v, bf16* out, const Shape& s,
                       cudaStream_t stream) {
  static std::atomic<uint64_t> done_devices{0};
  const void* kernel = reinterpret_cast<const void*>(&fa2::PrefillMmaKernel<D>);
  TP_RETURN_IF_ERROR(EnsureSmemAttribute(kernel, fa2::kSmemBytes<D>, done_devices));
  fa2::Params p{};
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.cache_capacity = s.cache_capacity;
  absl::StatusOr<unsigned> grid = SetShapeParams(p, s, fa2::kRows);
  if (!grid.ok()) return grid.status();
  fa2::PrefillMmaKernel<D><<<*grid, fa2::kThreads, fa2::kSmemBytes<D>, stream>>>(p);
  return CudaStatus(cudaGetLastError(), "PrefillMmaKernel");
}

// cuTensorMapEncodeTiled through the runtime's driver entry point (no link against libcuda,
// which would keep GPU tests from starting, and skipping, on machines without a driver).
absl::StatusOr<PFN_cuTensorMapEncodeTiled_v12000> TensorMapEncoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 encoder = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult query = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
                                         &query) != cudaSuccess ||
        query != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      fn = nullptr;
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  if (encoder == nullptr) {
    return absl::FailedPreconditionError(
        "PrefillAttention: cuTensorMapEncodeTiled is not available from the driver");
  }
  return encoder;
}

// A bf16 tensor map with a 128-byte swizzle; dims[0] is the contiguous one, strides[i] (bytes)
// belongs to dims[i + 1].
template <int kRank>
absl::Status EncodeBf16Map(PFN_cuTensorMapEncodeTiled_v12000 encode, CUtensorMap* map,
                           const void* ptr, const cuuint64_t (&dims)[kRank],
                           const cuuint64_t (&strides)[kRank - 1], const cuuint32_t (&box)[kRank],
                           const char* what) {
  cuuint32_t element_strides[kRank];
  for (int i = 0; i < kRank; ++i) element_strides[i] = 1;
  const CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, kRank, const_cast<void*>(ptr),
                            dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                            CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    return absl::InternalError(absl::StrCat("PrefillAttention: cuTensorMapEncodeTiled(", what,
                                            ") failed with CUresult ", static_cast<int>(r)));
  }
  return absl::OkStatus();
}

absl::Status LaunchWgmma(const bf16* q, const bf16* k, const bf16* v, bf16* out, const Shape& s,
                         cudaStream_t stream) {
  static std::atomic<uint64_t> done_devices{0};
  const void* kernel = reinterpret_cast<const void*>(&fa3::PrefillWgmmaKernel);
  TP_RETURN_IF_ERROR(EnsureSmemAttribute(kernel, fa3::kSmemBytes, done_devices));
  absl::StatusOr<PFN_cuTensorMapEncodeTiled_v12000> encode = TensorMapEncoder();
  if (!encode.ok()) return encode.status();

  constexpr cuuint64_t kRowBytes = fa3::kD * sizeof(bf16);
  fa3::Params p{};
  {
    const cuuint64_t dims[4] = {fa3::kD, static_cast<cuuint64_t>(s.num_q_heads),
                                static_cast<cuuint64_t>(s.q_len),
                                static_cast<cuuint64_t>(s.batch)};
    const cuuint64_t strides[3] = {kRowBytes, kRowBytes * s.num_q_heads,
                                   kRowBytes * s.num_q_heads * s.q_len};
    const cuuint32_t box[4] = {64, 1, fa3::kBlockM, 1};
    TP_RETURN_IF_ERROR(EncodeBf16Map<4>(*encode, &p.tm_q, q, dims, strides, box, "q"));
  }
  {
    const cuuint64_t dims[3] = {fa3::kD, static_cast<cuuint64_t>(s.kv_len()),
                                static_cast<cuuint64_t>(s.batch) * s.num_kv_heads};
    const cuuint64_t strides[2] = {kRowBytes, kRowBytes * s.cache_capacity};
    const cuuint32_t box[3] = {64, fa3::kBlockN, 1};
    TP_RETURN_IF_ERROR(EncodeBf16Map<3>(*encode, &p.tm_k, k, dims, strides, box, "k_cache"));
    TP_RETURN_IF_ERROR(EncodeBf16Map<3>(*encode, &p.tm_v, v, dims, strides, box, "v_cache"));
  }
  p.out = out;
  absl::StatusOr<unsigned> grid = SetShapeParams(p, s, fa3::kBlockM);
  if (!grid.ok()) return grid.status();
  fa3::PrefillWgmmaKernel<<<*grid, fa3::kThreads, fa3::kSmemBytes, stream>>>(p);
  return CudaStatus(cudaGetLastError(), "PrefillWgmmaKernel");
}

absl::Status Validate(const bf16* q, const bf16* k, const bf16* v, const bf16* out,
                      const Shape& s) {
  if (s.batch < 0 || s.q_len < 0 || s.start_pos < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PrefillAttention: negative batch=", s.batch, " q_len=", s.q_len,
        " or start_pos=", s.start_pos));
  }
  if (s.num_q_heads <= 0 || s.num_kv_heads <= 0 || s.num_q_heads % s.num_kv_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("PrefillAttention: bad heads Hq=", s.num_q_heads, " Hkv=", s.num_kv_heads,
                     " (Hq must be a positive multiple of Hkv)"));
  }
  if (s.head_dim != 64 && s.head_dim != 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("PrefillAttention: head_dim must be 64 or 128, got ", s.head_dim));
  }
  if (static_cast<int64_t>(s.start_pos) + s.q_len > s.cache_capacity) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PrefillAttention: start_pos + q_len = ", static_cast<int64_t>(s.start_pos) + s.q_len,
        " exceeds cache_capacity ", s.cache_capacity));
  }
  if (!std::isfinite(s.scale) || !(s.scale > 0.0f)) {
    return absl::InvalidArgumentError("PrefillAttention: scale must be finite and > 0");
  }
  if (s.batch == 0 || s.q_len == 0) return absl::OkStatus();
  if (q == nullptr || k == nullptr || v == nullptr || out == nullptr) {
    return absl::InvalidArgumentError("PrefillAttention: null pointer");
  }
  if (!AlignedTo(q, 16) || !AlignedTo(k, 16) || !AlignedTo(v, 16) || !AlignedTo(out, 16)) {
    return absl::InvalidArgumentError(
        "PrefillAttention: q, k_cache, v_cache and out must be 16-byte aligned");
  }
  return absl::OkStatus();
}

}  // namespace

bool PrefillAttentionWgmmaAvailable() {
  if (!TP_PREFILL_HAVE_SM90A) return false;
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major == 9 && minor == 0;
}

PrefillAttentionKernel PrefillAttentionAutoKernel(int head_dim) {
  return head_dim == fa3::kD && PrefillAttentionWgmmaAvailable() ? PrefillAttentionKernel::kWgmma
                                                                 : PrefillAttentionKernel::kMmaSync;
}

absl::Status PrefillAttentionWithKernel(PrefillAttentionKernel kernel, const bf16* q,
                                        const bf16* k_cache, const bf16* v_cache, bf16* out,
                                        int batch, int q_len, int start_pos, int num_q_heads,
                                        int num_kv_heads, int head_dim, int cache_capacity,
                                        float scale, bool causal, cudaStream_t stream) {
  const Shape s{batch,    q_len,          start_pos, num_q_heads, num_kv_heads,
                head_dim, cache_capacity, scale,     causal};
  TP_RETURN_IF_ERROR(Validate(q, k_cache, v_cache, out, s));
  if (kernel == PrefillAttentionKernel::kWgmma) {
    if (head_dim != fa3::kD) {
      return absl::InvalidArgumentError(
          absl::StrCat("PrefillAttention: the wgmma kernel needs head_dim 128, got ", head_dim));
    }
    if (!PrefillAttentionWgmmaAvailable()) {
      return absl::FailedPreconditionError(
          "PrefillAttention: the wgmma kernel needs an sm_90 device and a build with sm_90a");
    }
  }
  if (batch == 0 || q_len == 0) return absl::OkStatus();
  if (kernel == PrefillAttentionKernel::kAuto) kernel = PrefillAttentionAutoKernel(head_dim);
  if (kernel == PrefillAttentionKernel::kWgmma) {
    return LaunchWgmma(q, k_cache, v_cache, out, s, stream);
  }
  if (head_dim == 128) return LaunchMma<128>(q, k_cache, v_cache, out, s, stream);
  return LaunchMma<64>(q, k_cache, v_cache, out, s, stream);
}

absl::Status PrefillAttention(const bf16* q, const bf16* k_cache, const bf16* v_cache, bf16* out,
                              int batch, int q_len, int start_pos, int num_q_heads,
                              int num_kv_heads, int head_dim, int cache_capacity, float scale,
                              bool causal, cudaStream_t stream) {
  return PrefillAttentionWithKernel(PrefillAttentionKernel::kAuto, q, k_cache, v_cache, out,
                                    batch, q_len, start_pos, num_q_heads, num_kv_heads, head_dim,
                                    cache_capacity, scale, causal, stream);
}

}  // namespace truthput
