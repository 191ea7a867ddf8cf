// The small-batch decode GEMM of gemv.h (bf16 weights) and fp8_weights.h (e4m3 weights, with bf16
// or e4m3 activations): one kernel template, instantiated per Mode and number of 8-token n-tiles.
#include "kernels/gemv.h"

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"
#include "kernels/ptx.cuh"
#include "kernels/fp8_weights.h"
#include "kernels/pdl.cuh"

namespace truthput {
namespace {

// CTA shape. Each warp owns 16 output channels (the mma's M) of its CTA's 128-row tile; all 8
// warps walk the same k range, so each x element they read comes from L1 after the first warp.
constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kWarpRows = 16;
constexpr int kTileRows = kWarps * kWarpRows;
// A k-step is 64 bytes of a W row: 4 lanes (one mma thread group) x 16 bytes, i.e. 32 bf16 or 64
// fp8 weights. For each k-step a lane copies 16 bytes of row g and of row g + 8 into its own
// slot of the warp's shared-memory ring with cp.async; kStages k-steps are in the ring, so
// kStages - 1 are in flight while one is consumed: (kStages - 1) KB per warp, ~64 KB per SM with
// 16 resident warps, well past the ~25 KB per SM that HBM's latency-bandwidth product needs.
// cp.async keeps the bytes in flight out of registers (a register-staged version of the same
// depth needs more than the 128 registers two CTAs per SM allow, and spills).
constexpr int kKstepBytes = 64;
constexpr int kStages = 5;
constexpr int kStageUint4s = 2 * 32;  // per warp: rows g and g + 8, 32 lanes
// The packed weight layout (gemv.h): a tile's k-step is its 128 rows' 64 bytes in row order, so a
// warp's k-step (16 rows) is 1 KB of consecutive memory, lane (g, t)'s chunks of rows g and g + 8
// at 16 * lane and 512 + 16 * lane, and a CTA's k-step 8 KB.
constexpr int kWarpKstepBytes = kStageUint4s * 16;
constexpr int64_t kCtaKstepBytes = int64_t{kWarps} * kWarpKstepBytes;
// Two resident CTAs per SM (16 warps) saturate HBM. A CTA gets at least one ring's worth of
// k-steps (all of them in flight at once), so a tiny GEMM uses fewer CTAs rather than more
// partial sums; below about 264 * 4 * 8 KB = 8.6 MB of weights the grid shrinks.
constexpr int kCtasPerSm = 2;
// Row-split CTAs resident per SM: the kernel's launch bound and the plan's CTA slots. More than
// 2 where the instance's registers allow it: more warps in flight, and one wave for more blocks.
// One wave of fp8 blocks runs 4 with one n-tile (the instance needs 55 registers) and 3 with two
// (72): 70B qkv at one token 80 -> 93% of the streaming ceiling, at 16 tokens 70 -> 81%; down at
// 8 tokens 85 -> 96%. One wave of bf16 blocks runs 4 with two n-tiles (64) and 3 with three (72):
// qkv at 16 tokens leaves Stream-K, 87 -> 96%; 16-row blocks for down 95 -> 96%. bf16's strided
// split runs 3 with two n-tiles (72): gate_up at 16 tokens 92 -> 94%, lm_head 92 -> 95% (both
// now take the wide split). (On H100s; results/h100-sxm/gemv_load_experiment.txt.)
constexpr int RowSplitCtasPerSm(bool fp8, int ntiles, bool strided) {
  if (strided) return !fp8 && ntiles == 2 ? 3 : kCtasPerSm;
  if (fp8) return ntiles == 1 ? 4 : ntiles == 2 ? 3 : kCtasPerSm;
  return ntiles == 2 ? 4 : ntiles == 3 ? 3 : kCtasPerSm;
}
constexpr int64_t kMinKstepsPerCta = kStages - 1;

// What a kernel instance multiplies: bf16 x by bf16 W; bf16 x by e4m3 W, converted to bf16 in
// registers (kFp8); or e4m3 x, quantized per token, by e4m3 W on the fp8 tensor cores (kW8A8:
// half the mma instructions of kFp8 per weight byte, no conversion, half the x bytes).
enum class Mode { kBf16, kFp8, kW8A8 };
constexpr bool Fp8Weights(Mode mode) { return mode != Mode::kBf16; }

// A partial-sum slot holds one warp's accumulators for one n-tile: 32 lanes x 4 floats, in the
// mma's fragment order (so writing and reading it back are coalesced float4 accesses).
constexpr int kSlotFloat4s = 32;
constexpr size_t kCounterAlign = 256;

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
size_t AlignUp(size_t a, size_t b) { return (a + b - 1) / b * b; }
int NTiles(int64_t m) { return static_cast<int>(CeilDiv(m, 8)); }  // 8-token mma n-tiles

// W8A8's fields are last and x keeps its type: inserted after x, they shifted every parameter's
// offset, and ptxas scheduled the bf16-activation kernels differently enough to cost 70B fp8 at 32
// tokens 3-8% (qkv 45.3 -> 49.0 us, gate_up 176.1 -> 184.3 on one H100; gemv_load_experiment.txt
// section 24).
struct Params {
  const bf16* x;        // null for kW8A8
  const uint8_t* w;     // packed (PackSkinnyGemmWeights)
  const float* scales;  // fp8 only: per output channel
  bf16* y;
  int m;
  int64_t n, k;
  int64_t ksteps_per_tile, ksteps_per_cta, total_ksteps;
  unsigned* counters;     // [row_tiles] arrivals at split tiles; zero between calls
  float4* partials;       // [ctas][2 slots: first, last segment][kWarps][n-tiles][32 lanes]
  const uint8_t* xq;      // kW8A8 only: x in e4m3
  const float* x_scales;  // kW8A8 only: per token
};

// --- Loads -----------------------------------------------------------------------------------

// W is loaded at the L2's default (normal) priority, with no cache-policy operand. Evict-first
// looked right (W is read once) and wins when the kernel runs alone, but inside a decode step
// the L2 is full of normal-priority lines (KV cache, activations), so evict-first lines are the
// only ones replaced: lines the (since dropped) 256-byte prefetch brought in were evicted before
// use and re-read (DRAM bytes over the model's 1.195 -> 1.016 at batch 16 on the H100,
// results/h100-sxm/l2_policy_experiment.txt). An explicit evict-normal policy operand then cost
// 3-4% of batch-1 step time against none, bf16 and fp8, and was within 2% at batch 16 (same
// machine, results/h100-sxm/gemv_load_experiment.txt).

using ptx::SmemAddr;

// Copies 16 bytes of packed W to shared memory, bypassing L1 (.cg: never reused by this SM).
// No L2 prefetch qualifier: a warp's copies already cover whole 512-byte runs, and .L2::256B made
// the L2 look up a quarter of the sectors twice (70B down, batch 1: 18.6 M sectors from the SMs
// and 11.0 M across the L2 partitions, against 14.9 M and 7.4 M without it). An H100 has L2
// headroom (same time); an H200 streams 1.43x the bytes through the same L2, which a plain
// streaming read already runs at 95%, so there the hint cost 5-7% (own bf16 at one token 93-95 ->
// 99-100% of the streaming ceiling; gemv_load_experiment.txt section 22).
__device__ __forceinline__ void CopyW16(uint32_t dst, const uint8_t* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
}
using ptx::CpAsyncCommit;
using ptx::CpAsyncWait;
__device__ __forceinline__ uint4 LoadShared16(uint32_t addr) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(addr)
               : "memory");
  return v;
}

// x through L1 (read-only for the kernel; shared by the CTA's 8 warps). A warp loads x one k-step
// ahead of its use (WarpGemm::Run), so an x load that misses L1 waits behind a whole k-step rather
// than stalling its mma. Loading it when used cost 2-4% of decode step time with fp8 weights (batch
// 1 and 16) and up to 1% with bf16; prefetching it into L1 kStages - 1 k-steps ahead (beside W) was
// no better at batch 1 and 10-20 points worse at batch 16 (same machine, results/h100-sxm/
// gemv_load_experiment.txt, section 5).
template <typename T>
__device__ __forceinline__ uint4 LoadX(const T* p) {
  return __ldg(reinterpret_cast<const uint4*>(p));
}

// --- Math ------------------------------------------------------------------------------------

// d += a (16x16, row-major bf16) * b (16x8, col-major bf16), fp32 accumulators.
__device__ __forceinline__ void Mma(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                    uint32_t a3, uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// d += a (16x32, row-major e4m3) * b (32x8, col-major e4m3), fp32 accumulators. The fragments
// have m16n8k16's layout with 4 one-byte elements per register where it has 2 two-byte ones.
__device__ __forceinline__ void MmaE4m3(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                        uint32_t a3, uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t Prmt(uint32_t a, uint32_t selector) {
  uint32_t d;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(0u), "r"(selector));
  return d;
}

// Four e4m3 bytes (b0 lowest) -> two bf16x2 words {b0, b1}, {b2, b3}, exactly. prmt with the
// sign-replicate selector bit puts each byte sign-extended into a 16-bit half; shifting left by
// 4 and masking keeps the sign at bit 15 and the 7 exponent/mantissa bits at bits 10..4, i.e. a
// bf16 whose exponent field is the e4m3 exponent (bias 7 instead of 127) and whose mantissa
// starts with the e4m3 mantissa. Multiplying by 2^120 fixes the bias for normal numbers and, as
// bf16 arithmetic keeps subnormals, turns e4m3 subnormals (exponent field 0) into their exact
// values too. (e4m3 NaN, which quantization never produces, becomes 480.)
__device__ __forceinline__ void Fp8x4ToBf16x4(uint32_t w, uint32_t& lo, uint32_t& hi) {
  constexpr uint32_t kMask = 0x87F087F0u;
  const uint32_t l = (Prmt(w, 0x9180u) << 4) & kMask;
  const uint32_t h = (Prmt(w, 0xB3A2u) << 4) & kMask;
  const __nv_bfloat162 k2p120 =
      __halves2bfloat162(__ushort_as_bfloat16(0x7B80), __ushort_as_bfloat16(0x7B80));
  const __nv_bfloat162 lv = __hmul2(*reinterpret_cast<const __nv_bfloat162*>(&l), k2p120);
  const __nv_bfloat162 hv = __hmul2(*reinterpret_cast<const __nv_bfloat162*>(&h), k2p120);
  lo = *reinterpret_cast<const uint32_t*>(&lv);
  hi = *reinterpret_cast<const uint32_t*>(&hv);
}

// --- The warp's product over a k-step range ----------------------------------------------------
//
// mma.m16n8k16 thread layout: lane = 4 * g + t. A (16x16): the lane holds rows g and g + 8,
// logical k columns {2t, 2t+1} and {2t+8, 2t+9}. B (16x8): logical k rows {2t, 2t+1} and
// {2t+8, 2t+9} of column (token) g. C (16x8): rows g and g + 8, columns 2t and 2t + 1.
//
// The order in which k is summed does not matter, so logical k positions are mapped onto memory as
// the loads deliver them: at k-step s, lane (g, t) loads 16 bytes of W row g and of row g + 8 from
// byte s * 64 + t * 16 of the row (two consecutive 16-byte slots of the packed layout), i.e. E
// consecutive weights (E = 8 bf16 or 16 fp8), and the same E consecutive elements of x for token g.
// Those E weights feed E / 4 mmas: the h-th takes weights {4h, 4h+1} as logical {2t, 2t+1} and
// {4h+2, 4h+3} as logical {2t+8, 2t+9}, in A and in B alike. Over the 4 lanes of a group and the
// E / 4 mmas, that covers all 4E weights of the k-step exactly once.
// kW8A8 (m16n8k32 e4m3: the same fragments with 4 one-byte elements per register) takes the 16
// weights as they come, words 2h and 2h + 1 of the chunk in the h-th of 2 mmas, with x's 16 bytes
// alike.
//
// Pipelining: each warp runs its own cp.async ring of kStages k-steps in shared memory (no CTA
// barrier in the main loop). A lane only ever reads back the 32 bytes it copied itself, so its
// own cp.async.wait_group is all the synchronization the ring needs.
template <Mode kMode, int NT>
struct WarpGemm {
  static constexpr bool kW8A8 = kMode == Mode::kW8A8;
  static constexpr int kElems = Fp8Weights(kMode) ? 16 : 8;  // weights per lane per k-step
  static constexpr int kStepElems = 4 * kElems;              // weights per row per k-step
  static constexpr int kXBytes = kW8A8 ? 1 : 2;              // bytes of an x element
  static constexpr int kXWords = kElems * kXBytes / 4;  // x words per token and lane per k-step
  static constexpr int kXVecs = kXWords / 4;            // 16-byte x loads per token per k-step
  static constexpr int kXVecElems = 16 / kXBytes;
  using XElem = std::conditional_t<kW8A8, uint8_t, bf16>;

  const uint8_t* wk;      // this lane's row-g chunk of the warp's k-step 0 in the tile (packed)
  const XElem* xrow[NT];  // token g + 8 * nt (clamped), at this lane's element offset t * E
  uint32_t ring;          // shared address of this lane's row-g chunk in stage 0
  int lane_elems_left;    // k - t * E
  bool token[NT];         // whether token g + 8 * nt exists

  __device__ __forceinline__ WarpGemm(const Params& p, int64_t tile, int warp, uint4* warp_ring) {
    const int lane = threadIdx.x % 32;
    const int g = lane / 4;
    const int t = lane % 4;
    wk = p.w + (tile * p.ksteps_per_tile * kWarps + warp) * kWarpKstepBytes + lane * 16;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int tok = nt * 8 + g;
      token[nt] = tok < p.m;
      const XElem* x;
      if constexpr (kW8A8) {
        x = p.xq;
      } else {
        x = p.x;
      }
      xrow[nt] = x + static_cast<int64_t>(token[nt] ? tok : p.m - 1) * p.k + t * kElems;
    }
    lane_elems_left = static_cast<int>(p.k) - t * kElems;
    ring = SmemAddr(warp_ring + lane);
  }

  // Starts copying k-step s into ring stage `stage` unless s >= end, and commits it as one
  // cp.async group (an empty group keeps the group count uniform). Rows past n and bytes past
  // the row's end are zeros in the packed layout, so every copy is whole.
  __device__ __forceinline__ void Issue(int stage, int s, int end) const {
    if (s < end) {
      const uint32_t dst = ring + stage * kStageUint4s * 16;
      const uint8_t* src = wk + s * kCtaKstepBytes;
      CopyW16(dst, src);
      CopyW16(dst + 32 * 16, src + 32 * 16);
    }
    CpAsyncCommit();
  }

  // The tokens' x at k-step s (zeros for missing tokens and past the row's end).
  __device__ __forceinline__ void LoadXStep(int s, uint32_t (&xw)[NT][kXWords]) const {
    const int e = s * kStepElems;  // element offset of the k-step
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int v = 0; v < kXVecs; ++v) {
        uint4 q = make_uint4(0, 0, 0, 0);
        if (token[nt] && e + kXVecElems * v < lane_elems_left) {
          q = LoadX(xrow[nt] + e + kXVecElems * v);
        }
        xw[nt][4 * v + 0] = q.x;
        xw[nt][4 * v + 1] = q.y;
        xw[nt][4 * v + 2] = q.z;
        xw[nt][4 * v + 3] = q.w;
      }
    }
  }

  // acc += rows g, g + 8 (chunks a, b of a k-step) times the tokens' x (xw) at that k-step.
  __device__ __forceinline__ void Step(uint4 a, uint4 b, const uint32_t (&xw)[NT][kXWords],
                                       float (&acc)[NT][4]) const {
    if constexpr (kW8A8) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        MmaE4m3(acc[nt], a.x, b.x, a.y, b.y, xw[nt][0], xw[nt][1]);
        MmaE4m3(acc[nt], a.z, b.z, a.w, b.w, xw[nt][2], xw[nt][3]);
      }
      return;
    }
    uint32_t aw[kElems / 2], bw[kElems / 2];
    if constexpr (kMode == Mode::kFp8) {
      const uint32_t a4[4] = {a.x, a.y, a.z, a.w};
      const uint32_t b4[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        Fp8x4ToBf16x4(a4[j], aw[2 * j], aw[2 * j + 1]);
        Fp8x4ToBf16x4(b4[j], bw[2 * j], bw[2 * j + 1]);
      }
    } else {
      aw[0] = a.x, aw[1] = a.y, aw[2] = a.z, aw[3] = a.w;
      bw[0] = b.x, bw[1] = b.y, bw[2] = b.z, bw[3] = b.w;
    }
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int h = 0; h < kElems / 4; ++h) {
        Mma(acc[nt], aw[2 * h], bw[2 * h], aw[2 * h + 1], bw[2 * h + 1], xw[nt][2 * h],
            xw[nt][2 * h + 1]);
      }
    }
  }

  // acc += this warp's 16 rows x tokens over k-steps [ks0, ks1) of the tile. Leaves no cp.async
  // in flight (the ring is reused by the next segment).
  //
  // kPairs: the loop runs two k-steps per iteration with the tokens' x in two buffers that swap
  // roles, instead of copying the prefetched x into place after every k-step. Fewer instructions
  // per weight byte, which is what limits several tokens per warp (70B, fp8, 16 tokens: 74-80 ->
  // 86-88% of the streaming ceiling on qkv, o and down); with one n-tile it helps fp8 with 32+
  // rows per CTA and costs bf16 and 16-row fp8 blocks 1-6 points, so those keep the single step
  // (results/h100-sxm/gemv_load_experiment.txt, section 13).
  template <int kStride = 1, bool kPairs = (NT >= 2)>
  __device__ __forceinline__ void Run(int ks0, int ks1, float (&acc)[NT][4]) const {
#pragma unroll
    for (int i = 0; i < kStages - 1; ++i) Issue(i, ks0 + i * kStride, ks1);
    uint32_t x[NT][kXWords];
    LoadXStep(ks0, x);
    int stage = 0;
    int s = ks0;
    // kW8A8's k-step is short enough that the compiler unrolls these loops, and spilled (16-row
    // blocks: 8 bytes, now none; two-slice: 32, now 4); the other modes' code is as it was tuned.
    if constexpr (kPairs) {
      uint32_t x2[NT][kXWords];
      const auto pair = [&] {
        KStep<kStride>(s, ks1, stage, x, x2, acc);
        KStep<kStride>(s + kStride, ks1, stage, x2, x, acc);
      };
      if constexpr (kW8A8) {
#pragma unroll 1
        for (; s + kStride < ks1; s += 2 * kStride) pair();
      } else {
        for (; s + kStride < ks1; s += 2 * kStride) pair();
      }
      if (s < ks1) KStep<kStride>(s, ks1, stage, x, x2, acc);
    } else {
      const auto step = [&] {
        uint32_t x_next[NT][kXWords];
        KStep<kStride>(s, ks1, stage, x, x_next, acc);
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
          for (int i = 0; i < kXWords; ++i) x[nt][i] = x_next[nt][i];
        }
      };
      if constexpr (kW8A8) {
#pragma unroll 1
        for (; s < ks1; s += kStride) step();
      } else {
        for (; s < ks1; s += kStride) step();
      }
    }
    CpAsyncWait<0>();
  }

  // One k-step s of Run: waits for its weights, refills the ring, loads the next k-step's x into
  // x_next and adds the products of x and the weights to acc.
  template <int kStride>
  __device__ __forceinline__ void KStep(int s, int ks1, int& stage,
                                        const uint32_t (&x)[NT][kXWords],
                                        uint32_t (&x_next)[NT][kXWords],
                                        float (&acc)[NT][4]) const {
    CpAsyncWait<kStages - 2>();  // k-step s has landed (this lane's copies)
    // Refill the stage consumed in the previous k-step with k-step s + kStages - 1.
    const int refill = stage == 0 ? kStages - 1 : stage - 1;
    Issue(refill, s + (kStages - 1) * kStride, ks1);
    const uint32_t at = ring + stage * kStageUint4s * 16;
    const uint4 a = LoadShared16(at);
    const uint4 b = LoadShared16(at + 32 * 16);
    LoadXStep(s + kStride, x_next);  // past the row's end: zeros, nothing read
    Step(a, b, x, acc);
    stage = stage == kStages - 1 ? 0 : stage + 1;
  }
};

// Writes the warp's 16 rows x tokens of y from fp32 sums (scaled per channel for fp8 weights, and
// per token for fp8 x).
template <Mode kMode, int NT>
__device__ __forceinline__ void StoreRows(const Params& p, int64_t row0,
                                          const float (&acc)[NT][4]) {
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;
  const int t = lane % 4;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int64_t row = row0 + g + 8 * half;
    if (row >= p.n) continue;
    const float scale = Fp8Weights(kMode) ? p.scales[row] : 1.0f;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int tok = nt * 8 + 2 * t + c;
        if (tok < p.m) {
          float v = acc[nt][2 * half + c] * scale;
          if constexpr (kMode == Mode::kW8A8) v *= p.x_scales[tok];
          p.y[static_cast<int64_t>(tok) * p.n + row] = __float2bfloat16_rn(v);
        }
      }
    }
  }
}

__device__ __forceinline__ float4* Slot(const Params& p, int64_t cta, int which, int warp, int nt,
                                        int nts) {
  return p.partials + (((cta * 2 + which) * kWarps + warp) * nts + nt) * kSlotFloat4s;
}

// A tile shared by several CTAs: publish this CTA's partial sums; the last CTA to arrive adds all
// of them in CTA order (deterministic whichever CTA is last) and writes y. `which` is this CTA's
// slot: 0 if the tile holds the start of the CTA's range, else 1 (it then holds its end).
template <Mode kMode, int NT>
__device__ void FinishSplitTile(const Params& p, int64_t tile, int which, int64_t row0,
                                const float (&acc)[NT][4], bool* s_last) {
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int t = lane % 4;
  const bool has_rows = row0 < p.n;
  if (has_rows) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      if (nt * 8 + 2 * t < p.m) {
        Slot(p, blockIdx.x, which, warp, nt, NT)[lane] =
            make_float4(acc[nt][0], acc[nt][1], acc[nt][2], acc[nt][3]);
      }
    }
  }
  __threadfence();  // publish the partials before the arrival below
  __syncthreads();
  const int64_t first = tile * p.ksteps_per_tile / p.ksteps_per_cta;
  const int64_t last = ((tile + 1) * p.ksteps_per_tile - 1) / p.ksteps_per_cta;
  if (threadIdx.x == 0) {
    const unsigned arrived = atomicAdd(&p.counters[tile], 1u) + 1u;
    const bool is_last = arrived == static_cast<unsigned>(last - first + 1);
    // Every contributor has arrived: reset for the next call (stream order publishes it).
    if (is_last) p.counters[tile] = 0;
    *s_last = is_last;
  }
  __syncthreads();
  if (!*s_last) return;
  __threadfence();  // order the reads below after the other CTAs' published partials
  if (!has_rows) return;
  float sum[NT][4] = {};
#pragma unroll 4
  for (int64_t c = first; c <= last; ++c) {
    const int slot = c * p.ksteps_per_cta >= tile * p.ksteps_per_tile ? 0 : 1;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      if (nt * 8 + 2 * t < p.m) {
        // L2, not L1: other SMs wrote these during this kernel.
        const float4 v = __ldcg(Slot(p, c, slot, warp, nt, NT) + lane);
        sum[nt][0] += v.x;
        sum[nt][1] += v.y;
        sum[nt][2] += v.z;
        sum[nt][3] += v.w;
      }
    }
  }
  StoreRows<kMode, NT>(p, row0, sum);
}

// Stream-K: CTA b owns flattened k-steps [b * L, (b + 1) * L) of the (tile, k-step) space, tile
// major. It walks them tile by tile: a whole tile goes straight to y, a partial one through
// FinishSplitTile. `seg`, the tile and the k-step bounds are uniform across the CTA, so the
// barriers inside FinishSplitTile are reached by all threads.
template <Mode kMode, int NT>
__global__ void __launch_bounds__(kThreads, kCtasPerSm) SkinnyGemmKernel(const Params p) {
  __shared__ uint4 s_ring[kWarps][kStages * kStageUint4s];
  __shared__ bool s_last;
  pdl::AllowNextLaunch();  // see pdl.cuh: launched plainly, but the next kernel may be early
  const int warp = threadIdx.x / 32;
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * p.ksteps_per_cta;
  const int64_t end = min(begin + p.ksteps_per_cta, p.total_ksteps);
  for (int64_t seg = begin; seg < end;) {
    const int64_t tile = seg / p.ksteps_per_tile;
    const int64_t ks0 = seg - tile * p.ksteps_per_tile;
    const int64_t ks1 = min(p.ksteps_per_tile, ks0 + (end - seg));
    const int64_t row0 = tile * kTileRows + warp * kWarpRows;
    float acc[NT][4] = {};
    if (row0 < p.n) {
      WarpGemm<kMode, NT>(p, tile, warp, s_ring[warp])
          .Run(static_cast<int>(ks0), static_cast<int>(ks1), acc);
    }
    if (ks0 == 0 && ks1 == p.ksteps_per_tile) {
      if (row0 < p.n) StoreRows<kMode, NT>(p, row0, acc);
    } else {
      FinishSplitTile<kMode, NT>(p, tile, seg == begin ? 0 : 1, row0, acc, &s_last);
    }
    seg += ks1 - ks0;
  }
}

// Row split (plan.rows_per_cta = R: 16, 32 or 64): CTA c owns output channels [R c, R c + R)
// (and, kStrided, every gridDim.x-th block of R rows after them) over the whole k
// range, so no partial sum leaves it and there is no end-of-kernel reduction across CTAs. Its R /
// 16 row groups of warps each take 16 of those rows, and the warps of a row group split the k-steps
// into kWarps * 16 / R parts (interleaved with one n-tile, contiguous with more: each measured
// faster there), added through shared memory in a fixed order. Chosen (PlanSkinnyGemm) where the
// blocks fill the GPU: on an H100 the cross-CTA reduction of Stream-K costs about 6 us at the end of
// a 70B o projection (50 us at batch 1).
template <Mode kMode, int NT, int R, bool kStrided>
__global__ void __launch_bounds__(kThreads, RowSplitCtasPerSm(Fp8Weights(kMode), NT, kStrided))
    SkinnyGemmRowSplitKernel(const Params p) {
  constexpr int kRowGroups = R / kWarpRows;
  constexpr int kParts = kWarps / kRowGroups;
  static_assert(kTileRows % R == 0 && kParts >= 2);
  __shared__ uint4 s_ring[kWarps][kStages * kStageUint4s];
  static_assert(sizeof(s_ring) >= kWarps * NT * kSlotFloat4s * sizeof(float4));
  pdl::AllowNextLaunch();  // see pdl.cuh: launched plainly, but the next kernel may be early
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int group = warp % kRowGroups;
  const int part = warp / kRowGroups;
  const int64_t kpt = p.ksteps_per_tile;
  const int64_t blocks = (p.n + R - 1) / R;
  // One block of R rows per CTA, or (kStrided), for large n, blocks strided over the grid
  // (concurrent CTAs read neighbouring blocks). The one-block instance runs no loop: the loop
  // costs registers (fp8, one n-tile: 55 -> 66, too many for 4 CTAs per SM).
  for (int64_t block = blockIdx.x; block < blocks; block += gridDim.x) {
    const int64_t tile = block / (kTileRows / R);  // the 128-row tile of the packed layout
    const int tile_warp = static_cast<int>(block % (kTileRows / R)) * kRowGroups + group;
    const int64_t row0 = tile * kTileRows + tile_warp * kWarpRows;
    float acc[NT][4] = {};
    if (row0 < p.n) {
      const WarpGemm<kMode, NT> gemm(p, tile, tile_warp, s_ring[warp]);
      if constexpr (NT == 1) {
        // Parts interleaved k-step by k-step: the CTA's warps read neighbouring k-steps of the
        // same rows at once, one region of memory instead of kParts far apart.
        gemm.template Run<kParts, Fp8Weights(kMode) && R >= 32>(part, static_cast<int>(kpt), acc);
      } else {
        gemm.Run(static_cast<int>(part * kpt / kParts),
                 static_cast<int>((part + 1) * kpt / kParts), acc);
      }
    }
    __syncthreads();  // every ring is idle (Run leaves no copy in flight): reuse it for the sums
    float4* sums = reinterpret_cast<float4*>(&s_ring[0][0]);  // [warp][n-tile][lane]
    if (part > 0) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        sums[(warp * NT + nt) * kSlotFloat4s + lane] =
            make_float4(acc[nt][0], acc[nt][1], acc[nt][2], acc[nt][3]);
      }
    }
    __syncthreads();
    if (part == 0 && row0 < p.n) {
#pragma unroll
      for (int q = 1; q < kParts; ++q) {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          const float4 v = sums[((q * kRowGroups + group) * NT + nt) * kSlotFloat4s + lane];
          acc[nt][0] += v.x;
          acc[nt][1] += v.y;
          acc[nt][2] += v.z;
          acc[nt][3] += v.w;
        }
      }
      StoreRows<kMode, NT>(p, row0, acc);
    }
    if constexpr (!kStrided) break;
    if (block + gridDim.x < blocks) __syncthreads();  // the sums are read before the next Run
  }
}

constexpr int kTwoSliceStages = 3;

// acc0, acc1 += the products of two warp slices (g0, g1: 16 rows each) over k-steps [ks0, ks1),
// one x fragment per k-step feeding both, through a kTwoSliceStages ring per slice. Leaves no
// cp.async in flight.
template <Mode kMode, int NT>
__device__ __forceinline__ void RunTwoSlices(const WarpGemm<kMode, NT>& g0,
                                             const WarpGemm<kMode, NT>& g1, int ks0, int ks1,
                                             float (&acc0)[NT][4], float (&acc1)[NT][4]) {
  constexpr int S = kTwoSliceStages;
  constexpr int kXWords = WarpGemm<kMode, NT>::kXWords;
#pragma unroll
  for (int i = 0; i < S - 1; ++i) {
    g0.Issue(i, ks0 + i, ks1);
    g1.Issue(i, ks0 + i, ks1);
  }
  int stage = 0;
  const auto step = [&](int s) {
    CpAsyncWait<2 * (S - 2)>();  // both slices' k-step s have landed (this lane's copies)
    const int refill = stage == 0 ? S - 1 : stage - 1;
    g0.Issue(refill, s + S - 1, ks1);
    g1.Issue(refill, s + S - 1, ks1);
    const uint32_t at0 = g0.ring + stage * kStageUint4s * 16;
    const uint32_t at1 = g1.ring + stage * kStageUint4s * 16;
    const uint4 a0 = LoadShared16(at0), b0 = LoadShared16(at0 + 32 * 16);
    const uint4 a1 = LoadShared16(at1), b1 = LoadShared16(at1 + 32 * 16);
    uint32_t x[NT][kXWords];
    g0.LoadXStep(s, x);
    g0.Step(a0, b0, x, acc0);
    g1.Step(a1, b1, x, acc1);
    stage = stage == S - 1 ? 0 : stage + 1;
  };
  if constexpr (kMode == Mode::kW8A8) {  // not unrolled, as in WarpGemm::Run
#pragma unroll 1
    for (int s = ks0; s < ks1; ++s) step(s);
  } else {
    for (int s = ks0; s < ks1; ++s) step(s);
  }
  CpAsyncWait<0>();
}

// Row split for plan.two_slice (32-row blocks, one wave, fp8, 4 n-tiles): each warp owns both
// 16-row slices of its CTA's block over an eighth of k, so one x fragment feeds the mmas of two
// slices. At 32 tokens every k-step's x is 4 KB per warp against 1 KB of fp8 weights, and those
// loads cost 6-18 points of the streaming ceiling (o 72.5 -> 90.0%, down 75.7 -> 92.3% with x
// not loaded at all, a diagnostic build). Each slice has a 3-stage ring (48 KB per CTA), and x is
// loaded when used: loading it a k-step ahead, as WarpGemm::Run does, needs 156 registers, and at
// 1 CTA per SM (or 128 registers and more spills) o and down at 32 tokens were 4-17 points slower
// than SkinnyGemmRowSplitKernel; this one spills 48 bytes. On an H100, o at 32 tokens 72.4 ->
// 80.6% of the ceiling, down 75.8 -> 82.9% (results/h100-sxm/gemv_load_experiment.txt,
// section 18).
template <Mode kMode, int NT>
__global__ void __launch_bounds__(kThreads, kCtasPerSm) SkinnyGemmTwoSliceKernel(const Params p) {
  __shared__ uint4 s_ring[kWarps][2][kTwoSliceStages * kStageUint4s];
  static_assert(sizeof(s_ring) >= kWarps * 2 * NT * kSlotFloat4s * sizeof(float4));
  pdl::AllowNextLaunch();  // see pdl.cuh: launched plainly, but the next kernel may be early
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int64_t tile = blockIdx.x / (kTileRows / 32);  // the 128-row tile of the packed layout
  const int tile_warp = static_cast<int>(blockIdx.x % (kTileRows / 32)) * 2;  // slice 0
  const int64_t row0 = tile * kTileRows + tile_warp * kWarpRows;
  const int ks0 = static_cast<int>(warp * p.ksteps_per_tile / kWarps);
  const int ks1 = static_cast<int>((warp + 1) * p.ksteps_per_tile / kWarps);
  float acc0[NT][4] = {}, acc1[NT][4] = {};
  if (row0 < p.n) {
    const WarpGemm<kMode, NT> g0(p, tile, tile_warp, s_ring[warp][0]);
    const WarpGemm<kMode, NT> g1(p, tile, tile_warp + 1, s_ring[warp][1]);
    RunTwoSlices(g0, g1, ks0, ks1, acc0, acc1);
  }
  __syncthreads();  // every ring is idle: reuse it for the sums
  float4* sums = reinterpret_cast<float4*>(&s_ring[0][0][0]);  // [warp][slice][n-tile][lane]
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    sums[((warp * 2 + 0) * NT + nt) * kSlotFloat4s + lane] =
        make_float4(acc0[nt][0], acc0[nt][1], acc0[nt][2], acc0[nt][3]);
    sums[((warp * 2 + 1) * NT + nt) * kSlotFloat4s + lane] =
        make_float4(acc1[nt][0], acc1[nt][1], acc1[nt][2], acc1[nt][3]);
  }
  __syncthreads();
  // Warp w < 2 adds slice w over the 8 k-parts, in part order.
  if (warp < 2 && row0 + warp * kWarpRows < p.n) {
    float acc[NT][4] = {};
#pragma unroll
    for (int q = 0; q < kWarps; ++q) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const float4 v = sums[((q * 2 + warp) * NT + nt) * kSlotFloat4s + lane];
        acc[nt][0] += v.x;
        acc[nt][1] += v.y;
        acc[nt][2] += v.z;
        acc[nt][3] += v.w;
      }
    }
    StoreRows<kMode, NT>(p, row0 + warp * kWarpRows, acc);
  }
}

// Wide row split (plan.rows_per_cta = kWideRows): each warp owns 32 rows (two 16-row slices
// sharing every x fragment, as in the kernel above) over all of k, and the CTA's 8 warps walk k
// together, so each k-step's x is read from L2 once per CTA and from L1 by the other warps; no
// partial sum leaves a warp, and no shared memory but the rings. kStrided: blocks of 256 rows
// strided over the grid. Against Stream-K it removes the cross-CTA reduction and half the x
// loads per weight byte; against the strided 32-row split, a CTA's warps share one k range (and
// its x) instead of four.
constexpr int kWideRows = 2 * kTileRows;
template <Mode kMode, int NT, bool kStrided>
__global__ void __launch_bounds__(kThreads, kCtasPerSm) SkinnyGemmWideKernel(const Params p) {
  __shared__ uint4 s_ring[kWarps][2][kTwoSliceStages * kStageUint4s];
  pdl::AllowNextLaunch();  // see pdl.cuh: launched plainly, but the next kernel may be early
  const int warp = threadIdx.x / 32;
  const int ks1 = static_cast<int>(p.ksteps_per_tile);
  const int64_t blocks = (p.n + kWideRows - 1) / kWideRows;
  for (int64_t block = blockIdx.x; block < blocks; block += gridDim.x) {
    const int64_t tile = block * 2 + warp / 4;  // the 128-row tile of the packed layout
    const int tile_warp = (warp % 4) * 2;       // slice 0
    const int64_t row0 = tile * kTileRows + tile_warp * kWarpRows;
    if (row0 >= p.n) break;  // warp-uniform; later blocks' rows are further on
    float acc0[NT][4] = {}, acc1[NT][4] = {};
    const WarpGemm<kMode, NT> g0(p, tile, tile_warp, s_ring[warp][0]);
    const WarpGemm<kMode, NT> g1(p, tile, tile_warp + 1, s_ring[warp][1]);
    RunTwoSlices(g0, g1, 0, ks1, acc0, acc1);
    StoreRows<kMode, NT>(p, row0, acc0);
    StoreRows<kMode, NT>(p, row0 + kWarpRows, acc1);
    if constexpr (!kStrided) break;
  }
}

// One thread per 8 bytes of the packed layout (rows of fp8 weights may be only 8-byte aligned).
__global__ void __launch_bounds__(256) PackWeightsKernel(const uint8_t* __restrict__ w,
                                                         uint8_t* __restrict__ packed, int64_t n,
                                                         int64_t row_bytes, int64_t ksteps_per_tile,
                                                         int64_t words) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < words;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t piece = i / (kKstepBytes / 8);  // [tile][k-step][row in tile] of 64 bytes
    const int64_t ks = piece / kTileRows % ksteps_per_tile;
    const int64_t row = piece / kTileRows / ksteps_per_tile * kTileRows + piece % kTileRows;
    const int64_t byte = ks * kKstepBytes + i % (kKstepBytes / 8) * 8;
    uint2 v = make_uint2(0, 0);
    if (row < n && byte < row_bytes) {
      v = *reinterpret_cast<const uint2*>(w + row * row_bytes + byte);
    }
    reinterpret_cast<uint2*>(packed)[i] = v;
  }
}

// --- Host side --------------------------------------------------------------------------------

bool AlignedTo(const void* p, uintptr_t n) { return reinterpret_cast<uintptr_t>(p) % n == 0; }

// The kernel instantiated for the number of 8-token n-tiles (1 .. kSkinnyGemmMaxM / 8).
template <Mode kMode>
void LaunchForTiles(int ntiles, dim3 grid, const Params& p, cudaStream_t stream) {
  static_assert(kSkinnyGemmMaxM == 32, "instantiate one kernel per n-tile count");
  switch (ntiles) {
    case 1: SkinnyGemmKernel<kMode, 1><<<grid, kThreads, 0, stream>>>(p); break;
    case 2: SkinnyGemmKernel<kMode, 2><<<grid, kThreads, 0, stream>>>(p); break;
    case 3: SkinnyGemmKernel<kMode, 3><<<grid, kThreads, 0, stream>>>(p); break;
    default: SkinnyGemmKernel<kMode, 4><<<grid, kThreads, 0, stream>>>(p); break;
  }
}

template <Mode kMode, int NT, int R, bool kStrided>
void LaunchRowSplitKernel(dim3 grid, const Params& p, cudaStream_t stream) {
  SkinnyGemmRowSplitKernel<kMode, NT, R, kStrided><<<grid, kThreads, 0, stream>>>(p);
}

template <Mode kMode, int R, bool kStrided>
void LaunchRowSplitForTiles(int ntiles, dim3 grid, const Params& p, cudaStream_t stream) {
  switch (ntiles) {
    case 1: return LaunchRowSplitKernel<kMode, 1, R, kStrided>(grid, p, stream);
    case 2: return LaunchRowSplitKernel<kMode, 2, R, kStrided>(grid, p, stream);
    case 3: return LaunchRowSplitKernel<kMode, 3, R, kStrided>(grid, p, stream);
    default: return LaunchRowSplitKernel<kMode, 4, R, kStrided>(grid, p, stream);
  }
}

template <Mode kMode, int NT>
void LaunchWideKernel(bool strided, dim3 grid, const Params& p, cudaStream_t stream) {
  if (strided) {
    SkinnyGemmWideKernel<kMode, NT, true><<<grid, kThreads, 0, stream>>>(p);
  } else {
    SkinnyGemmWideKernel<kMode, NT, false><<<grid, kThreads, 0, stream>>>(p);
  }
}

// The wide split is planned with 2-4 n-tiles for fp8 weights, 2-3 for bf16 (PlanSkinnyGemm).
template <Mode kMode>
void LaunchWide(int ntiles, bool strided, dim3 grid, const Params& p, cudaStream_t stream) {
  switch (ntiles) {
    case 2: return LaunchWideKernel<kMode, 2>(strided, grid, p, stream);
    case 3: return LaunchWideKernel<kMode, 3>(strided, grid, p, stream);
    default: return LaunchWideKernel<kMode, 4>(strided, grid, p, stream);
  }
}

// The instances PlanSkinnyGemm can choose: 64-row blocks only with one n-tile; 16-row blocks (one
// wave) only at 4 CTAs per SM: fp8 with one n-tile, bf16 with two; with fp8 weights, several
// 32-row blocks per CTA only with one n-tile, and two-slice warps only with four; 256-row (wide)
// blocks with 2+ n-tiles.
template <Mode kMode>
void LaunchRowSplit(const SkinnyGemmPlan& plan, int ntiles, const Params& p,
                    cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(plan.ctas));
  const bool strided = plan.blocks_per_cta > 1;
  if (plan.rows_per_cta == kWideRows) return LaunchWide<kMode>(ntiles, strided, grid, p, stream);
  if (plan.rows_per_cta == 64) return LaunchRowSplitKernel<kMode, 1, 64, false>(grid, p, stream);
  if (plan.rows_per_cta == 16) {
    return LaunchRowSplitKernel<kMode, Fp8Weights(kMode) ? 1 : 2, 16, false>(grid, p, stream);
  }
  if constexpr (Fp8Weights(kMode)) {
    if (strided) return LaunchRowSplitKernel<kMode, 1, 32, true>(grid, p, stream);
    if (plan.two_slice) {
      SkinnyGemmTwoSliceKernel<kMode, 4><<<grid, kThreads, 0, stream>>>(p);
      return;
    }
  } else {
    if (strided) return LaunchRowSplitForTiles<kMode, 32, true>(ntiles, grid, p, stream);
  }
  LaunchRowSplitForTiles<kMode, 32, false>(ntiles, grid, p, stream);
}

template <Mode kMode>
absl::Status Launch(const char* api, const void* x, const float* x_scales, const uint8_t* w,
                    const float* scales, bf16* y, int64_t m, int64_t n, int64_t k, void* workspace,
                    size_t workspace_bytes, cudaStream_t stream) {
  // e4m3 x is read 16 elements at a time from 16-byte aligned rows.
  const int k_multiple = kMode == Mode::kW8A8 ? 16 : 8;
  if (m < 1 || m > kSkinnyGemmMaxM || n < 1 || k < k_multiple || k % k_multiple != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        api, ": need 1 <= m <= ", kSkinnyGemmMaxM, ", n >= 1 and k a positive multiple of ",
        k_multiple, "; got m=", m, " n=", n, " k=", k));
  }
  // In-row offsets are 32-bit in the kernel.
  if (n > std::numeric_limits<int32_t>::max() / 2 || k > (int64_t{1} << 28)) {
    return absl::InvalidArgumentError(
        absl::StrCat(api, ": n=", n, " or k=", k, " too large (n < 2^30, k <= 2^28)"));
  }
  if (x == nullptr || w == nullptr || y == nullptr ||
      (Fp8Weights(kMode) && scales == nullptr) ||
      (kMode == Mode::kW8A8 && x_scales == nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat(api, ": null pointer"));
  }
  if (!AlignedTo(x, 16) || !AlignedTo(w, 16) || !AlignedTo(y, 2) || !AlignedTo(scales, 4) ||
      !AlignedTo(x_scales, 4)) {
    return absl::InvalidArgumentError(absl::StrCat(
        api, ": x and the weights must be 16-byte aligned, y 2-byte and scales 4-byte aligned"));
  }
  absl::StatusOr<int> sms = CurrentSmCount();
  if (!sms.ok()) return sms.status();
  const SkinnyGemmPlan plan = PlanSkinnyGemm(m, n, k, Fp8Weights(kMode) ? 1 : 2, *sms);
  if (plan.split) {
    if (workspace == nullptr || workspace_bytes < plan.workspace_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          api, ": m=", m, " n=", n, " k=", k, " needs a zeroed workspace of ", plan.workspace_bytes,
          " bytes (SkinnyGemmWorkspaceBytes), got ", workspace_bytes));
    }
    if (!AlignedTo(workspace, 16)) {
      return absl::InvalidArgumentError(absl::StrCat(api, ": workspace must be 16-byte aligned"));
    }
  }
  Params p{};
  if constexpr (kMode == Mode::kW8A8) {
    p.xq = static_cast<const uint8_t*>(x);
  } else {
    p.x = static_cast<const bf16*>(x);
  }
  p.x_scales = x_scales;
  p.w = w;
  p.scales = scales;
  p.y = y;
  p.m = static_cast<int>(m);
  p.n = n;
  p.k = k;
  p.ksteps_per_tile = plan.ksteps_per_tile;
  p.ksteps_per_cta = plan.ksteps_per_cta;
  p.total_ksteps = plan.total_ksteps;
  if (plan.split) {
    p.counters = static_cast<unsigned*>(workspace);
    p.partials = reinterpret_cast<float4*>(
        static_cast<char*>(workspace) + AlignUp(plan.row_tiles * sizeof(unsigned), kCounterAlign));
  }
  if (plan.rows_per_cta > 0) {
    LaunchRowSplit<kMode>(plan, NTiles(m), p, stream);
  } else {
    LaunchForTiles<kMode>(NTiles(m), dim3(static_cast<unsigned>(plan.ctas)), p, stream);
  }
  return CudaStatus(cudaGetLastError(), api);
}

}  // namespace

SkinnyGemmPlan PlanSkinnyGemm(int64_t m, int64_t n, int64_t k, int weight_bytes, int sm_count) {
  SkinnyGemmPlan plan;
  if (m < 1 || m > kSkinnyGemmMaxM || n < 1 || k < 8 || (weight_bytes != 1 && weight_bytes != 2)) {
    return plan;
  }
  if (sm_count <= 0) sm_count = 132;
  plan.row_tiles = CeilDiv(n, kTileRows);
  plan.ksteps_per_tile = CeilDiv(k * weight_bytes, kKstepBytes);
  plan.total_ksteps = plan.row_tiles * plan.ksteps_per_tile;
  const int64_t max_ctas = static_cast<int64_t>(kCtasPerSm) * sm_count;
  // Row split where one wave of blocks fills at least 3/8 of two CTAs per SM (64-row blocks:
  // half) without passing the instance's CTA slots, or where 32-row blocks are at least 3 per
  // slot with bf16, 4 with fp8 (each CTA then takes every ctas-th block); every warp gets a ring's
  // worth of k-steps.
  // Smaller blocks first: more CTAs in flight. Measured on H100s, Llama-3.1-70B, % of the
  // streaming-read ceiling (results/h100-sxm/gemv_load_experiment.txt, sections 10 and 11):
  // against Stream-K, 32 rows (o, down) at 1-8 tokens 97-99% with bf16 weights against 88-94%,
  // 83-95% with fp8 against 69-80%, and 6-18 points more at 9-32 tokens; 64 rows (qkv, bf16) at
  // 1-8 tokens 97-99% against 88-89%; many blocks per CTA (gate_up, lm_head) at one token
  // 99-99.5% with bf16 and 94-97% with fp8 against 95.7-97.4% and 86-88%, but with fp8 and 2+
  // n-tiles 6-11 points behind Stream-K (so not used there). With fp8 and one n-tile, 4 CTAs
  // per SM: qkv (320 blocks of 32 rows) at one token 80 -> 93%, o and down (512 blocks of 16)
  // at 8 tokens 84 -> 89% and 85 -> 96%; with two n-tiles 3: qkv at 16 tokens 70 -> 81%. bf16
  // with two n-tiles, 4 per SM: qkv at 16 tokens 87 -> 96% (section 15). 16-row blocks only at
  // 4 CTAs per SM. Llama-3.1-8B's bf16 projections at one token (section 21): one wave from 3/8
  // (it was 3/4) takes qkv (192 blocks of 32), o and down (128) off Stream-K, 72-80 -> 95-99%,
  // and the strided split from 3 blocks per slot (it was 4) gate_up (896 blocks), 91 -> 98%; fp8
  // with one n-tile keeps 4 (gate_up 88 -> 84% at one token with 3).
  const bool fp8 = weight_bytes == 1;
  const bool one_tile = NTiles(m) == 1;
  // Wide row split (256-row blocks, each warp owning 32 rows over all of k) with fp8 and 2-4
  // n-tiles or bf16 and 2-3, where the blocks fill 3/4 of two CTAs per SM (one wave, or dealt
  // evenly): 70B gate_up and the LM heads. On an H100, against Stream-K (fp8) and the strided
  // 32-row split (bf16), % of the streaming ceiling: fp8 gate_up at 16 and 32 tokens 78-80 ->
  // 84-89%, LM head 76-78 -> 87-91%; bf16 at 16 tokens gate_up 94 -> 95%, LM head 94 -> 97-98%
  // (at 32 tokens bf16 gained nothing; results/h100-sxm/gemv_load_experiment.txt, section 19).
  if (NTiles(m) >= 2 && (fp8 || NTiles(m) <= 3) && plan.ksteps_per_tile >= kMinKstepsPerCta) {
    const int64_t blocks = CeilDiv(n, kWideRows);
    const int64_t per_cta = CeilDiv(blocks, max_ctas);
    const int64_t ctas = CeilDiv(blocks, per_cta);
    if (ctas >= CeilDiv(3 * max_ctas, 4)) {
      plan.rows_per_cta = kWideRows;
      plan.blocks_per_cta = static_cast<int>(per_cta);
      plan.ctas = static_cast<int>(ctas);
      plan.ksteps_per_cta = plan.ksteps_per_tile;
      plan.two_slice = true;
      return plan;
    }
  }
  const int64_t wave_slots = int64_t{RowSplitCtasPerSm(fp8, NTiles(m), false)} * sm_count;
  const int64_t strided_slots = int64_t{RowSplitCtasPerSm(fp8, NTiles(m), true)} * sm_count;
  for (const int rows : {16, 32, 64}) {
    if (rows == 16 && RowSplitCtasPerSm(fp8, NTiles(m), false) < 4) continue;
    if (rows == 64 && (!one_tile || (fp8 && m > 4))) continue;
    const int64_t blocks = CeilDiv(n, rows);
    const int64_t parts = kWarps * kWarpRows / rows;
    const int64_t min_blocks = rows == 64 ? CeilDiv(max_ctas, 2) : CeilDiv(3 * max_ctas, 8);
    // One wave of blocks, or at least 3-4 blocks per CTA slot, so that the last round is a small
    // part of the call; not with fp8 weights and 2+ n-tiles, where Stream-K is 6-11 points
    // faster.
    const bool one_wave = blocks <= wave_slots && blocks >= min_blocks;
    const bool strided =
        rows == 32 && blocks >= (fp8 ? 4 : 3) * strided_slots && (!fp8 || one_tile);
    if ((one_wave || strided) && plan.ksteps_per_tile >= parts * kMinKstepsPerCta) {
      plan.rows_per_cta = rows;
      // As few rounds of blocks as the slots allow, and the CTAs that many: every CTA then
      // has the same number of blocks but (at most) one, so none idles through a last round.
      plan.blocks_per_cta = one_wave ? 1 : static_cast<int>(CeilDiv(blocks, strided_slots));
      plan.ctas = static_cast<int>(CeilDiv(blocks, plan.blocks_per_cta));
      plan.ksteps_per_cta = plan.ksteps_per_tile;
      plan.two_slice = fp8 && NTiles(m) == 4 && rows == 32 && one_wave;
      return plan;
    }
  }
  const int64_t want =
      std::clamp<int64_t>(CeilDiv(plan.total_ksteps, kMinKstepsPerCta), 1, max_ctas);
  plan.ksteps_per_cta = CeilDiv(plan.total_ksteps, want);
  plan.ctas = static_cast<int>(CeilDiv(plan.total_ksteps, plan.ksteps_per_cta));
  plan.split = plan.ctas > 1 && plan.ksteps_per_cta % plan.ksteps_per_tile != 0;
  if (plan.split) {
    plan.workspace_bytes =
        AlignUp(static_cast<size_t>(plan.row_tiles) * sizeof(unsigned), kCounterAlign) +
        static_cast<size_t>(plan.ctas) * 2 * kWarps * NTiles(m) * kSlotFloat4s * sizeof(float4);
  }
  return plan;
}

size_t SkinnyGemmWorkspaceBytes(int64_t m, int64_t n, int64_t k, int sm_count) {
  return std::max(PlanSkinnyGemm(m, n, k, 2, sm_count).workspace_bytes,
                  PlanSkinnyGemm(m, n, k, 1, sm_count).workspace_bytes);
}

std::string SkinnyGemmPlanDescription(const SkinnyGemmPlan& plan) {
  if (plan.rows_per_cta > 0) {
    return absl::StrCat("ctas=", plan.ctas, " rows/block=", plan.rows_per_cta,
                        " blocks/cta=", plan.blocks_per_cta,
                        " tiles=", plan.row_tiles, "x", plan.ksteps_per_tile, " row-split",
                        plan.two_slice ? " two-slice" : "");
  }
  return absl::StrCat("ctas=", plan.ctas, " ksteps/cta=", plan.ksteps_per_cta,
                      " tiles=", plan.row_tiles, "x", plan.ksteps_per_tile,
                      plan.split ? " split" : " whole-tiles");
}

size_t SkinnyGemmPackedBytes(int64_t n, int64_t k, int weight_bytes) {
  if (n < 1 || k < 1) return 0;
  return static_cast<size_t>(CeilDiv(n, kTileRows) * CeilDiv(k * weight_bytes, kKstepBytes) *
                             kCtaKstepBytes);
}

int64_t SkinnyGemmPackedOffset(int64_t row, int64_t byte, int64_t k, int weight_bytes) {
  const int64_t ksteps_per_tile = CeilDiv(k * weight_bytes, kKstepBytes);
  return ((row / kTileRows * ksteps_per_tile + byte / kKstepBytes) * kTileRows + row % kTileRows) *
             kKstepBytes +
         byte % kKstepBytes;
}

namespace {
absl::Status CheckPackShape(const char* api, int64_t n, int64_t k, int weight_bytes) {
  if (n >= 1 && k >= 8 && k % 8 == 0 && (weight_bytes == 1 || weight_bytes == 2)) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      api, ": need n >= 1, k a positive multiple of 8 and 1- or 2-byte weights; got n=", n,
      " k=", k, " weight_bytes=", weight_bytes));
}
}  // namespace

absl::Status PackSkinnyGemmWeights(const void* w, void* packed, int64_t n, int64_t k,
                                   int weight_bytes, cudaStream_t stream) {
  TP_RETURN_IF_ERROR(CheckPackShape("PackSkinnyGemmWeights", n, k, weight_bytes));
  if (w == nullptr || packed == nullptr || !AlignedTo(w, 16) || !AlignedTo(packed, 16)) {
    return absl::InvalidArgumentError(
        "PackSkinnyGemmWeights: w and packed must be non-null and 16-byte aligned");
  }
  const int64_t bytes = static_cast<int64_t>(SkinnyGemmPackedBytes(n, k, weight_bytes));
  const auto src = reinterpret_cast<uintptr_t>(w);
  const auto dst = reinterpret_cast<uintptr_t>(packed);
  if (dst < src + static_cast<uintptr_t>(n * k * weight_bytes) && src < dst + bytes) {
    return absl::InvalidArgumentError("PackSkinnyGemmWeights: w and packed overlap");
  }
  const int64_t words = bytes / 8;
  const int blocks = static_cast<int>(std::min<int64_t>(CeilDiv(words, 256), 65536));
  PackWeightsKernel<<<blocks, 256, 0, stream>>>(
      static_cast<const uint8_t*>(w), static_cast<uint8_t*>(packed), n, k * weight_bytes,
      CeilDiv(k * weight_bytes, kKstepBytes), words);
  return CudaStatus(cudaGetLastError(), "PackWeightsKernel");
}

absl::Status PackSkinnyGemmWeightsInPlace(void* w, int64_t n, int64_t k, int weight_bytes,
                                          void* scratch, size_t scratch_bytes,
                                          cudaStream_t stream) {
  TP_RETURN_IF_ERROR(CheckPackShape("PackSkinnyGemmWeightsInPlace", n, k, weight_bytes));
  const int64_t row_bytes = k * weight_bytes;
  const int64_t tile_rows_bytes = kTileRows * row_bytes;  // a tile of W, row-major
  if (scratch == nullptr || static_cast<int64_t>(scratch_bytes) < tile_rows_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("PackSkinnyGemmWeightsInPlace: scratch of ",
                                                   scratch_bytes, " bytes, need ",
                                                   tile_rows_bytes));
  }
  // A group of tiles packs to its own place: tile t's packed bytes start at t * tile_packed >=
  // t * tile_rows_bytes, where its rows start. Going from the last group to the first, a group's
  // packed bytes overwrite only its own rows (copied to scratch first) and groups already packed.
  const int64_t tiles = CeilDiv(n, kTileRows);
  const int64_t tile_packed = CeilDiv(row_bytes, kKstepBytes) * kCtaKstepBytes;
  const int64_t group = static_cast<int64_t>(scratch_bytes) / tile_rows_bytes;
  auto* base = static_cast<uint8_t*>(w);
  for (int64_t t1 = tiles; t1 > 0; t1 -= group) {
    const int64_t t0 = std::max<int64_t>(0, t1 - group);
    const int64_t rows = std::min(n, t1 * kTileRows) - t0 * kTileRows;
    TP_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(scratch, base + t0 * tile_rows_bytes, rows * row_bytes,
                                            cudaMemcpyDeviceToDevice, stream));
    TP_RETURN_IF_ERROR(
        PackSkinnyGemmWeights(scratch, base + t0 * tile_packed, rows, k, weight_bytes, stream));
  }
  return absl::OkStatus();
}

absl::Status SkinnyGemmBf16(const bf16* x, const bf16* w_packed, bf16* y, int64_t m, int64_t n,
                            int64_t k, void* workspace, size_t workspace_bytes,
                            cudaStream_t stream) {
  return Launch<Mode::kBf16>("SkinnyGemmBf16", x, nullptr,
                             reinterpret_cast<const uint8_t*>(w_packed), nullptr, y, m, n, k,
                             workspace, workspace_bytes, stream);
}

absl::Status SkinnyGemmFp8(const bf16* x, const __nv_fp8_e4m3* wq_packed, const float* scales,
                           bf16* y, int64_t m, int64_t n, int64_t k, void* workspace,
                           size_t workspace_bytes, cudaStream_t stream) {
  return Launch<Mode::kFp8>("SkinnyGemmFp8", x, nullptr,
                            reinterpret_cast<const uint8_t*>(wq_packed), scales, y, m, n, k,
                            workspace, workspace_bytes, stream);
}

absl::Status SkinnyGemmW8A8(const __nv_fp8_e4m3* xq, const float* x_scales,
                            const __nv_fp8_e4m3* wq_packed, const float* scales, bf16* y,
                            int64_t m, int64_t n, int64_t k, void* workspace,
                            size_t workspace_bytes, cudaStream_t stream) {
  return Launch<Mode::kW8A8>("SkinnyGemmW8A8", xq, x_scales,
                             reinterpret_cast<const uint8_t*>(wq_packed), scales, y, m, n, k,
                             workspace, workspace_bytes, stream);
}

}  // namespace truthput
