// SkinnyGemmBf16: the decode-step linear layer y[m,n] = x[m,k] · W[n,k]^T for small batches
// (1 <= m <= 32), written for the HBM limit: every weight byte is read from memory exactly once
// per call, whatever m is. The math of CublasLtGemm (PyTorch nn.Linear: W [n,k], x row-major
// [m,k], y row-major [m,n]; bf16 in and out, fp32 accumulation), with W packed beforehand into
// the order the kernel reads it (PackSkinnyGemmWeights).
//
// Design (see gemv.cu for the details):
//   * A CTA of 8 warps owns 128 output channels (16 per warp) and a range of k. Each lane streams
//     16 bytes of two W rows per 64-byte k-step with cp.async into its warp's 5-stage
//     shared-memory ring (L1 bypassed, no L2 prefetch, normal L2 priority: see gemv.cu), so
//     4 k-steps (4 KB per warp, ~64 KB per SM) are in flight at all times without holding
//     registers. In the packed layout (below) a warp's k-step is 1 KB of consecutive memory
//     and a CTA's 8 KB, so the CTAs read W as a streaming read does.
//   * The product runs on tensor cores (mma.sync m16n8k16, fp32 accumulation) with W as the
//     16-row operand and the m tokens as the 8-column one (ceil(m / 8) n-tiles). The order of
//     the k summation is free, so W is fed exactly as each lane's 16 bytes arrive and x is read
//     in the matching order: no shuffles, no ldmatrix, no CTA barrier in the main loop. x comes
//     through L1 (all warps of a CTA walk the same k range together, so it is read from L2 about
//     once per CTA), one k-step ahead of its use.
//   * Stream-K grid: min(2 CTAs per SM, enough to give each CTA >= 4 k-steps) CTAs split the
//     flattened (128-row tile, k-step) space into equal contiguous ranges. Every CTA gets the
//     same number of weight bytes for every n (1024 .. 128256) and k, so there is no partial
//     last wave, and small n gets split-K automatically. Tiles a CTA covers entirely are written
//     straight to y; a tile cut between CTAs has each CTA's fp32 partial in the workspace, and
//     the last CTA to arrive (an atomic counter per tile) sums the partials in a fixed order and
//     writes y: deterministic, one kernel, no second launch.
//   * Row split instead, where whole rows fill the GPU (PlanSkinnyGemm; every 70B projection up
//     to 8 tokens, o and down at every m, qkv to 16 tokens with fp8 and to 24 with bf16, gate_up
//     and lm_head at 25-32 with bf16; 8B's bf16 projections): each CTA owns blocks of 16, 32 or
//     64 rows over all of k, its warps split k and add their parts in shared memory, so no
//     partial sum leaves the CTA.
//     With fp8 at 25-32 tokens (o, down) each warp owns its CTA's 32 rows over an eighth of k, so
//     one x fragment feeds two 16-row slices (SkinnyGemmPlan::two_slice).
//     The cross-CTA reduction at the end of Stream-K costs about 6 us on the H100, 10% of a 70B
//     o projection at batch 1.
//   * Wide row split where 256-row blocks fill the GPU at 9-32 tokens (fp8) or 9-24 (bf16): 70B
//     gate_up and the LM heads. Each warp owns 32 rows (two slices sharing x, as above) over all
//     of k and the CTA's warps walk k together, so x is read from L2 once per CTA and each x
//     fragment feeds two slices; no partial sum leaves a warp.
//
// Requirements (InvalidArgument otherwise, never a silent slow path):
//   * 1 <= m <= 32, n >= 1, k >= 8 and k a multiple of 8;
//   * w: PackSkinnyGemmWeights' output for this (n, k) (SkinnyGemmPackedBytes bytes);
//   * x and w 16-byte aligned, y 2-byte aligned;
//   * workspace: at least SkinnyGemmWorkspaceBytes(m, n, k, SMs of the current device) bytes,
//     16-byte aligned, ZERO-FILLED BEFORE ITS FIRST USE (e.g. cudaMemsetAsync once after
//     allocating it). Every call leaves its tile counters zero again, but not its fp32 partials,
//     and where the counters end and the partials begin depends on the shape: a workspace may be
//     reused only by later calls of the SAME (m, n, k) (one shape's partials land on another's
//     counters: seen on the H100 as whole tiles left unwritten). May be null when the size
//     needed is 0. Calls sharing a workspace must not run concurrently (on different streams).
//
// No allocation, no synchronization, no host-device traffic: capturable into a CUDA graph (the
// graph bakes in the workspace pointer).
#ifndef TRUTHPUT_KERNELS_GEMV_H_
#define TRUTHPUT_KERNELS_GEMV_H_

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace truthput {

using bf16 = __nv_bfloat16;

inline constexpr int64_t kSkinnyGemmMaxM = 32;

// How a SkinnyGemm call is laid out on the GPU. Pure host code, deterministic; exposed for tests,
// benchmarks labels and tuning.
struct SkinnyGemmPlan {
  int64_t row_tiles = 0;        // ceil(n / 128): the CTA tiles of output channels
  int64_t ksteps_per_tile = 0;  // ceil(k * weight_bytes / 64): a k-step is 64 bytes of a W row
  int64_t total_ksteps = 0;     // row_tiles * ksteps_per_tile
  int64_t ksteps_per_cta = 0;   // each CTA's contiguous share of the flattened k-steps
  int ctas = 0;                 // grid size
  // 16, 32 or 64 for a row split: each CTA owns blocks of that many whole rows, block b going to
  // CTA b % ctas (ksteps_per_cta = ksteps_per_tile); 256 for the wide split (each warp owns 32
  // of the block's rows over all of k); 0 for Stream-K.
  int rows_per_cta = 0;
  int blocks_per_cta = 0;       // row split: at most this many blocks per CTA (1: one wave)
  // Each warp owns 32 rows (two 16-row slices sharing every x fragment), so it loads x once per
  // 2 KB of weights rather than per 1 KB: the wide split, and 32-row blocks in one wave with fp8
  // weights at 25-32 tokens (each warp over an eighth of k, instead of 16 rows over a quarter).
  bool two_slice = false;
  bool split = false;           // some tile is shared by several CTAs (needs the workspace)
  size_t workspace_bytes = 0;   // 0 when !split
};

// The plan for weights of `weight_bytes` bytes per element (2: bf16, 1: fp8) on a GPU with
// sm_count SMs (sm_count <= 0 is taken as 132, an H100 SXM). Shapes must be valid (m in 1..32,
// n >= 1, k >= 8); others give a zero plan.
SkinnyGemmPlan PlanSkinnyGemm(int64_t m, int64_t n, int64_t k, int weight_bytes, int sm_count);

// Workspace bytes a call of this shape needs, for bf16 or fp8 weights (the larger of the two).
// 0 when no split is needed.
size_t SkinnyGemmWorkspaceBytes(int64_t m, int64_t n, int64_t k, int sm_count);

// "ctas=256 ksteps/cta=28 tiles=8x896 split", "... whole-tiles", "ctas=256 rows/block=32
// blocks/cta=1 tiles=64x256 row-split" or "... row-split two-slice": for benchmark labels.
std::string SkinnyGemmPlanDescription(const SkinnyGemmPlan& plan);

// The packed weight layout. W [n,k] of weight_bytes-byte elements (2: bf16, 1: fp8) is cut into
// 128-row tiles and 64-byte k-steps, and stored [tile][k-step][row of the tile][64 bytes]: each
// tile's k-steps in order, each k-step its 128 rows' 64 bytes in row order, so the kernel's warps
// (16 rows each) read 1 KB and its CTAs 8 KB of consecutive memory per k-step. Rows past n and
// bytes past a row's end are zero. Reading W row-major instead (16 rows x 64 bytes per warp and
// k-step) made the 70B decode step 2-8% slower on the H100
// (results/h100-sxm/gemv_load_experiment.txt, section 8).
//
// Bytes of the packed form: ceil(n / 128) * ceil(k * weight_bytes / 64) * 8192, equal to
// n * k * weight_bytes when n % 128 == 0 and k * weight_bytes % 64 == 0. 0 for empty shapes.
size_t SkinnyGemmPackedBytes(int64_t n, int64_t k, int weight_bytes);

// Where byte `byte` (< k * weight_bytes) of row `row` (< n) lands in the packed form.
int64_t SkinnyGemmPackedOffset(int64_t row, int64_t byte, int64_t k, int weight_bytes);

// Enqueues packed = W in the packed layout, zero padding included. w row-major [n,k]; n >= 1,
// k a positive multiple of 8; w and packed 16-byte aligned and not overlapping; packed holds
// SkinnyGemmPackedBytes(n, k, weight_bytes) bytes.
absl::Status PackSkinnyGemmWeights(const void* w, void* packed, int64_t n, int64_t k,
                                   int weight_bytes, cudaStream_t stream);

// As PackSkinnyGemmWeights over W itself (for weights too large to hold twice): w holds
// SkinnyGemmPackedBytes(n, k, weight_bytes) bytes, W row-major at its start; tiles go a few at a
// time, last first, through `scratch`, which holds at least 128 * k * weight_bytes bytes (one
// tile of W) and does not overlap w.
absl::Status PackSkinnyGemmWeightsInPlace(void* w, int64_t n, int64_t k, int weight_bytes,
                                          void* scratch, size_t scratch_bytes,
                                          cudaStream_t stream);

// Enqueues y = x · W^T on stream, w_packed = PackSkinnyGemmWeights(W). See the header comment for
// requirements.
absl::Status SkinnyGemmBf16(const bf16* x, const bf16* w_packed, bf16* y, int64_t m, int64_t n,
                            int64_t k, void* workspace, size_t workspace_bytes,
                            cudaStream_t stream);

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_GEMV_H_
