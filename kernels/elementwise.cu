#include "kernels/elementwise.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"
#include "kernels/e4m3_rows.cuh"
#include "kernels/fp8_weights.h"
#include "kernels/pdl.cuh"

namespace truthput {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;  // grid-stride kernels: a few waves of an H100
constexpr int kVec = 8;               // bf16 per 16-byte access

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

unsigned GridFor(int64_t work) {
  int64_t blocks = (work + kThreads - 1) / kThreads;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks);
}

// 8 bf16 <-> 8 fp32 through one 16-byte register pack.
struct Pack8 {
  uint4 u;
};

__device__ __forceinline__ void Unpack8(const Pack8& pk, float (&f)[kVec]) {
  e4m3::Unpack(pk.u, f);
}

__device__ __forceinline__ Pack8 Pack(const float (&f)[kVec]) {
  Pack8 pk;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    reinterpret_cast<__nv_bfloat162*>(&pk.u)[k] = __floats2bfloat162_rn(f[2 * k], f[2 * k + 1]);
  }
  return pk;
}

__device__ __forceinline__ void Load8(const bf16* p, float (&f)[kVec]) {
  Pack8 pk;
  pk.u = *reinterpret_cast<const uint4*>(p);
  Unpack8(pk, f);
}

__device__ __forceinline__ void Store8(bf16* p, const float (&f)[kVec]) {
  *reinterpret_cast<uint4*>(p) = Pack(f).u;
}

// Sum (or max) over the block; every thread gets the result. blockDim.x must be a multiple of 32.
template <bool kMax>
__device__ float BlockReduce(float v) {
  __shared__ float partial[32];
  __shared__ float total;
  const auto combine = [](float a, float b) { return kMax ? fmaxf(a, b) : a + b; };
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = combine(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int nwarps = blockDim.x / 32;
    float s = lane < nwarps ? partial[lane] : 0.0f;  // 0 is neutral for a max of magnitudes too
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s = combine(s, __shfl_xor_sync(0xffffffffu, s, o));
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

__device__ float BlockSum(float v) { return BlockReduce<false>(v); }
__device__ float BlockMaxOfMagnitudes(float v) { return BlockReduce<true>(v); }

// The e4m3 bytes of a block's bf16 outputs held in registers (out[j] at columns
// (threadIdx.x + j * blockDim.x) * 8 from q), made as QuantizeWeightsFp8 would.
template <int kVecs>
__device__ __forceinline__ void StoreE4m3(const Pack8 (&out)[kVecs], int nvec,
                                          e4m3::RowMultiplier m, __nv_fp8_e4m3* q) {
#pragma unroll
  for (int j = 0; j < kVecs; ++j) {
    const int v = threadIdx.x + j * blockDim.x;
    if (v < nvec) {
      *reinterpret_cast<uint2*>(reinterpret_cast<uint8_t*>(q) + v * kVec) =
          e4m3::Quantize8(out[j].u, m);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// RmsNorm: one block per row. The vectorized form keeps the row in registers (kVecs 16-byte
// pieces of x and of the weight per thread, all loaded at once), so a row costs one memory round
// trip: at batch 1 the kernel is that latency, not bandwidth. Each element is read and written by
// the same thread, so y may alias x. With a quantized copy (kQuantize) the bf16 outputs stay in
// registers through a second block reduction, their largest magnitude, and then go out as e4m3;
// y may then be null, for a GEMM that reads only the copy.
// With kAdd (AddRmsNorm) the residual's pieces are loaded beside x's, each sum is rounded to bf16
// and stored back to x exactly as ResidualAdd would, and the norm is of those rounded sums: the
// residual add costs no round trip and no launch of its own.

constexpr int kNormMaxThreads = 1024;
constexpr int kNormMaxVecs = 4;  // rows up to 1024 * 4 * 8 = 32768 elements in registers

template <int kVecs, bool kQuantize, bool kAdd>
__global__ void __launch_bounds__(kNormMaxThreads)
    RmsNormRowInRegistersKernel(bf16* x, const bf16* residual, const bf16* __restrict__ weight,
                                bf16* y, E4m3Rows quantized, int cols, float eps) {
  pdl::WaitForPrevious();
  pdl::AllowNextLaunch();
  const int64_t offset = static_cast<int64_t>(blockIdx.x) * cols;
  const int nvec = cols / kVec;
  float f[kVecs][kVec], w[kVecs][kVec];
  Pack8 r[kVecs];  // kAdd: the residual, packed until x has arrived too
#pragma unroll
  for (int j = 0; j < kVecs; ++j) {
    const int v = threadIdx.x + j * blockDim.x;
    if (v < nvec) {
      Load8(x + offset + v * kVec, f[j]);
      if constexpr (kAdd) r[j].u = *reinterpret_cast<const uint4*>(residual + offset + v * kVec);
      Load8(weight + v * kVec, w[j]);
    }
  }
  if constexpr (kAdd) {
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      const int v = threadIdx.x + j * blockDim.x;
      if (v < nvec) {
        float add[kVec];
        Unpack8(r[j], add);
#pragma unroll
        for (int k = 0; k < kVec; ++k) f[j][k] += add[k];
        const Pack8 sum = Pack(f[j]);
        *reinterpret_cast<uint4*>(x + offset + v * kVec) = sum.u;
        Unpack8(sum, f[j]);  // the norm sees the bf16 sums, as after ResidualAdd
      }
    }
  }
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kVecs; ++j) {
    if (threadIdx.x + j * blockDim.x < nvec) {
#pragma unroll
      for (int k = 0; k < kVec; ++k) ss = fmaf(f[j][k], f[j][k], ss);
    }
  }
  const float inv = rsqrtf(BlockSum(ss) / static_cast<float>(cols) + eps);
  Pack8 out[kVecs];
  float amax = 0.0f;
#pragma unroll
  for (int j = 0; j < kVecs; ++j) {
    const int v = threadIdx.x + j * blockDim.x;
    if (v < nvec) {
#pragma unroll
      for (int k = 0; k < kVec; ++k) f[j][k] = f[j][k] * inv * w[j][k];
      out[j] = Pack(f[j]);
      if (!kQuantize || y != nullptr) *reinterpret_cast<uint4*>(y + offset + v * kVec) = out[j].u;
      if constexpr (kQuantize) amax = e4m3::Amax8(out[j].u, amax);
    }
  }
  if constexpr (kQuantize) {
    amax = BlockMaxOfMagnitudes(amax);
    if (threadIdx.x == 0) quantized.scales[blockIdx.x] = e4m3::RowScale(amax);
    StoreE4m3<kVecs>(out, nvec, e4m3::RowMultiplierFor(amax), quantized.q + offset);
  }
}

// Element-wise (unaligned or odd cols): pass 1 sums squares, pass 2 re-reads x (an L1/L2 hit).
__global__ void __launch_bounds__(kThreads)
    RmsNormScalarKernel(const bf16* x, const bf16* __restrict__ weight, bf16* y, int cols,
                        float eps) {
  pdl::WaitForPrevious();
  pdl::AllowNextLaunch();
  const int64_t offset = static_cast<int64_t>(blockIdx.x) * cols;
  const bf16* xr = x + offset;
  bf16* yr = y + offset;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    const float f = __bfloat162float(xr[i]);
    ss = fmaf(f, f, ss);
  }
  const float inv = rsqrtf(BlockSum(ss) / static_cast<float>(cols) + eps);
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    yr[i] = __float2bfloat16_rn(__bfloat162float(xr[i]) * inv * __bfloat162float(weight[i]));
  }
}

// ---------------------------------------------------------------------------------------------
// ResidualAdd: x and r share their offset from 16-byte alignment (else head == n and all is
// element-wise); [head, head + nvec * 8) goes in 16-byte accesses.

__global__ void __launch_bounds__(kThreads)
    ResidualAddKernel(bf16* __restrict__ x, const bf16* __restrict__ r, int64_t n, int64_t head,
                      int64_t nvec) {
  pdl::WaitForPrevious();
  pdl::AllowNextLaunch();
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t v = tid; v < nvec; v += stride) {
    const int64_t i0 = head + v * kVec;
    float a[kVec], b[kVec];
    Load8(x + i0, a);
    Load8(r + i0, b);
#pragma unroll
    for (int k = 0; k < kVec; ++k) a[k] += b[k];
    Store8(x + i0, a);
  }
  const int64_t tail_start = head + nvec * kVec;
  const int64_t nscalar = head + (n - tail_start);
  for (int64_t s = tid; s < nscalar; s += stride) {
    const int64_t i = s < head ? s : tail_start + (s - head);
    x[i] = __float2bfloat16_rn(__bfloat162float(x[i]) + __bfloat162float(r[i]));
  }
}

// ---------------------------------------------------------------------------------------------
// SiluMul

// The hardware exp2 and reciprocal (a few ulp in fp32, far inside the bf16 rounding of the
// output): with expf and an IEEE division, the block-per-row kernel below was issue-bound
// (results/h100-sxm/gemv_load_experiment.txt, section 27). 1 + exp(-g) past 2^126 (g below
// about -87) gives 0, silu's limit.
__device__ __forceinline__ float Silu(float g) { return __fdividef(g, 1.0f + __expf(-g)); }

template <bool kVectorized>
__global__ void __launch_bounds__(kThreads)
    SiluMulKernel(const bf16* __restrict__ gate_up, bf16* __restrict__ out, int64_t rows,
                  int64_t ffn) {
  pdl::WaitForPrevious();
  pdl::AllowNextLaunch();
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  if constexpr (kVectorized) {
    const int64_t per_row = ffn / kVec;
    const int64_t total = rows * per_row;
    for (int64_t v = tid; v < total; v += stride) {
      const int64_t row = v / per_row;
      const int64_t col = (v - row * per_row) * kVec;
      const bf16* g = gate_up + row * 2 * ffn + col;
      float gf[kVec], uf[kVec];
      Load8(g, gf);
      Load8(g + ffn, uf);
#pragma unroll
      for (int k = 0; k < kVec; ++k) gf[k] = Silu(gf[k]) * uf[k];
      Store8(out + row * ffn + col, gf);
    }
  } else {
    const int64_t total = rows * ffn;
    for (int64_t e = tid; e < total; e += stride) {
      const int64_t row = e / ffn;
      const int64_t col = e - row * ffn;
      const bf16* g = gate_up + row * 2 * ffn + col;
      out[e] = __float2bfloat16_rn(Silu(__bfloat162float(g[0])) * __bfloat162float(g[ffn]));
    }
  }
}

// With a quantized copy: one block per row, the row's gates and ups all loaded before any is used
// (as RmsNorm's row), the outputs kept in registers until the row's scale is known. Rows split over
// clusters of 8 CTAs that exchange their maxima in distributed shared memory, to use more SMs at
// few rows, were slower (results/h100-sxm/gemv_load_experiment.txt, section 26).
template <int kVecs>
__global__ void __launch_bounds__(kNormMaxThreads)
    SiluMulE4m3Kernel(const bf16* __restrict__ gate_up, bf16* __restrict__ out,
                      E4m3Rows quantized, int ffn) {
  pdl::WaitForPrevious();
  pdl::AllowNextLaunch();
  const int nvec = ffn / kVec;
  const bf16* g = gate_up + static_cast<int64_t>(blockIdx.x) * 2 * ffn;
  const int64_t offset = static_cast<int64_t>(blockIdx.x) * ffn;
  Pack8 gate[kVecs], up[kVecs];  // raw bf16 until used: half the registers of floats
#pragma unroll
  for (int j = 0; j < kVecs; ++j) {
    const int v = threadIdx.x + j * blockDim.x;
    if (v < nvec) {
      gate[j].u = *reinterpret_cast<const uint4*>(g + v * kVec);
      up[j].u = *reinterpret_cast<const uint4*>(g + ffn + v * kVec);
    }
  }
  float amax = 0.0f;
#pragma unroll
  for (int j = 0; j < kVecs; ++j) {
    const int v = threadIdx.x + j * blockDim.x;
    if (v < nvec) {
      float a[kVec], b[kVec];
      Unpack8(gate[j], a);
      Unpack8(up[j], b);
#pragma unroll
      for (int k = 0; k < kVec; ++k) a[k] = Silu(a[k]) * b[k];
      gate[j] = Pack(a);  // the output now
      if (out != nullptr) *reinterpret_cast<uint4*>(out + offset + v * kVec) = gate[j].u;
      amax = e4m3::Amax8(gate[j].u, amax);
    }
  }
  amax = BlockMaxOfMagnitudes(amax);
  if (threadIdx.x == 0) quantized.scales[blockIdx.x] = e4m3::RowScale(amax);
  StoreE4m3<kVecs>(gate, nvec, e4m3::RowMultiplierFor(amax), quantized.q + offset);
}

// ---------------------------------------------------------------------------------------------
// RopeKvAppend: one block per token. The block first tabulates cos/sin for the token's position
// (head_dim / 2 angles, shared by all heads), then rotates the Hq + Hkv Q/K heads and copies the
// Hkv V heads. Vectorized work items are 8 rotation pairs (16 bytes from each half of a head);
// the block has a thread per work item (up to 1024), so a decode token's loads all go out at
// once rather than one round trip per loop iteration.

constexpr int kRopeMaxThreads = 1024;

struct RopeParams {
  const bf16* qkv;
  bf16* q_out;
  bf16* k_cache;
  bf16* v_cache;
  int q_len;
  int start_pos;
  int num_q_heads;
  int num_kv_heads;
  int head_dim;
  int cache_capacity;
  double log2_theta;
};

template <bool kVectorized>
__global__ void __launch_bounds__(kRopeMaxThreads) RopeKvAppendKernel(RopeParams p) {
  extern __shared__ float rope_table[];  // [half] cos, then [half] sin
  const int half = p.head_dim / 2;
  float* cos_t = rope_table;
  float* sin_t = rope_table + half;

  const int64_t token = blockIdx.x;
  const int64_t b = token / p.q_len;
  const int pos = p.start_pos + static_cast<int>(token - b * p.q_len);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    // The angle in double, so that it is exact to well below bf16 resolution even at pos ~ 1e5,
    // reduced to [-pi, pi] in double; cos and sin of that in fp32 (double pow and sincos made
    // this table most of the kernel's time).
    constexpr double kTwoPi = 6.283185307179586;
    const double angle = pos * exp2(-2.0 * i / p.head_dim * p.log2_theta);
    const float r = static_cast<float>(fma(-rint(angle / kTwoPi), kTwoPi, angle));
    sincosf(r, &sin_t[i], &cos_t[i]);
  }
  // The table needs nothing from the previous kernel: it is built while that one finishes.
  pdl::WaitForPrevious();
  pdl::AllowNextLaunch();
  __syncthreads();

  const int d = p.head_dim;
  const int hq = p.num_q_heads, hkv = p.num_kv_heads;
  const bf16* row = p.qkv + token * static_cast<int64_t>(hq + 2 * hkv) * d;
  bf16* q_row = p.q_out + token * static_cast<int64_t>(hq) * d;
  // Cache row of (b, kv head 0, pos); kv head h is h * cache_capacity * d further.
  const int64_t head_stride = static_cast<int64_t>(p.cache_capacity) * d;
  const int64_t cache_base = (b * hkv * p.cache_capacity + pos) * static_cast<int64_t>(d);

  constexpr int kPairs = kVectorized ? kVec : 1;  // rotation pairs per work item
  const int items_per_head = half / kPairs;
  const int rope_items = (hq + hkv) * items_per_head;
  const int v_items_per_head = d / kPairs;
  const int total = rope_items + hkv * v_items_per_head;
  for (int item = threadIdx.x; item < total; item += blockDim.x) {
    if (item < rope_items) {
      const int h = item / items_per_head;
      const int i0 = (item - h * items_per_head) * kPairs;
      const bf16* src = row + static_cast<int64_t>(h) * d;
      bf16* dst = h < hq ? q_row + static_cast<int64_t>(h) * d
                         : p.k_cache + cache_base + (h - hq) * head_stride;
      if constexpr (kVectorized) {
        float x1[kVec], x2[kVec], o1[kVec], o2[kVec];
        Load8(src + i0, x1);
        Load8(src + half + i0, x2);
#pragma unroll
        for (int k = 0; k < kVec; ++k) {
          const float c = cos_t[i0 + k], s = sin_t[i0 + k];
          o1[k] = x1[k] * c - x2[k] * s;
          o2[k] = x2[k] * c + x1[k] * s;
        }
        Store8(dst + i0, o1);
        Store8(dst + half + i0, o2);
      } else {
        const float x1 = __bfloat162float(src[i0]), x2 = __bfloat162float(src[half + i0]);
        const float c = cos_t[i0], s = sin_t[i0];
        dst[i0] = __float2bfloat16_rn(x1 * c - x2 * s);
        dst[half + i0] = __float2bfloat16_rn(x2 * c + x1 * s);
      }
    } else {
      const int vi = item - rope_items;
      const int h = vi / v_items_per_head;
      const int i0 = (vi - h * v_items_per_head) * kPairs;
      const bf16* src = row + static_cast<int64_t>(hq + hkv + h) * d + i0;
      bf16* dst = p.v_cache + cache_base + h * head_stride + i0;
      if constexpr (kVectorized) {
        *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
      } else {
        *dst = *src;
      }
    }
  }
}

// InvalidArgument unless `quantized` is absent, or complete and aligned for rows of a multiple of
// 8 and a 16-byte aligned bf16 output (what the quantizer reads where the fused kernel cannot run).
absl::Status CheckQuantized(const char* api, E4m3Rows quantized, const bf16* out, int cols) {
  if (quantized.q == nullptr && quantized.scales == nullptr) return absl::OkStatus();
  if (quantized.q == nullptr || quantized.scales == nullptr ||
      reinterpret_cast<uintptr_t>(quantized.q) % 8 != 0 ||
      reinterpret_cast<uintptr_t>(quantized.scales) % 4 != 0 || !Aligned16(out) ||
      cols % kVec != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        api, ": a quantized copy needs q 8-byte, scales 4-byte and the output 16-byte aligned "
             "and a row length that is a multiple of 8 (got ", cols, ")"));
  }
  return absl::OkStatus();
}

// Without a bf16 output the quantized copy can only come from the fused kernels: the fallback
// quantizes the output it wrote.
absl::Status NoFusedCopy(const char* api, int cols) {
  return absl::InvalidArgumentError(absl::StrCat(
      api, ": without a bf16 output the quantized copy must be made in the same kernel, which "
           "takes rows of a multiple of 8 up to ", kNormMaxThreads * kNormMaxVecs * kVec,
      " elements and 16-byte aligned buffers (got ", cols, " columns)"));
}

// Kernel instance for rows of `nvec` 16-byte pieces kept in registers: (threads, pieces per thread)
// with at most kNormMaxThreads threads; pieces 0 when the row does not fit.
struct RowLaunch {
  int threads = 0;
  int vecs = 0;
};
RowLaunch RowInRegisters(int nvec) {
  if (nvec < 1 || nvec > kNormMaxThreads * kNormMaxVecs) return {};
  const int vecs = (nvec + kNormMaxThreads - 1) / kNormMaxThreads;  // 1, 2, 3 or 4
  return {((nvec + vecs - 1) / vecs + 31) / 32 * 32, vecs == 3 ? kNormMaxVecs : vecs};
}

// RmsNorm, or AddRmsNorm where residual is not null (x is then written).
absl::Status NormRows(const char* api, bf16* x, const bf16* residual, const bf16* weight, bf16* y,
                      int rows, int cols, float eps, cudaStream_t stream, E4m3Rows quantized) {
  if (rows < 0 || cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(api, ": bad shape rows=", rows, " cols=", cols));
  }
  if (!(eps >= 0.0f)) return absl::InvalidArgumentError(absl::StrCat(api, ": eps must be >= 0"));
  TP_RETURN_IF_ERROR(CheckQuantized(api, quantized, y, cols));
  if (rows == 0) return absl::OkStatus();
  const bool add = residual != nullptr;
  const bool quantize = quantized.q != nullptr;
  if (x == nullptr || weight == nullptr || (y == nullptr && !quantize)) {
    return absl::InvalidArgumentError(absl::StrCat(api, ": null pointer"));
  }
  if (add && y == x) {
    return absl::InvalidArgumentError(
        absl::StrCat(api, ": y must not be x (x keeps the sums, y the normalized rows)"));
  }
  const RowLaunch row = RowInRegisters(cols / kVec);
  const bool vec = cols % kVec == 0 && row.vecs > 0 && Aligned16(x) && Aligned16(weight) &&
                   Aligned16(y) && (!add || Aligned16(residual));
  if (!vec && y == nullptr) return NoFusedCopy(api, cols);
  if (!vec) {
    // The rare shapes outside the fused kernel: the add, the norm, the quantizer on its output.
    if (add) {
      TP_RETURN_IF_ERROR(ResidualAdd(x, residual, static_cast<int64_t>(rows) * cols, stream));
    }
    TP_RETURN_IF_ERROR(CudaStatus(
        pdl::Launch(RmsNormScalarKernel, rows, kThreads, 0, stream, x, weight, y, cols, eps),
        "RmsNormScalarKernel"));
    return quantize ? QuantizeWeightsFp8(y, quantized.q, quantized.scales, rows, cols, stream)
                    : absl::OkStatus();
  }
  using Kernel = void (*)(bf16*, const bf16*, const bf16*, bf16*, E4m3Rows, int, float);
  constexpr int kMax = kNormMaxVecs;
  const int i = (row.vecs == 1 ? 0 : row.vecs == 2 ? 1 : 2) + (quantize ? 3 : 0) + (add ? 6 : 0);
  constexpr Kernel kKernels[12] = {
      RmsNormRowInRegistersKernel<1, false, false>,    RmsNormRowInRegistersKernel<2, false, false>,
      RmsNormRowInRegistersKernel<kMax, false, false>, RmsNormRowInRegistersKernel<1, true, false>,
      RmsNormRowInRegistersKernel<2, true, false>,     RmsNormRowInRegistersKernel<kMax, true, false>,
      RmsNormRowInRegistersKernel<1, false, true>,     RmsNormRowInRegistersKernel<2, false, true>,
      RmsNormRowInRegistersKernel<kMax, false, true>,  RmsNormRowInRegistersKernel<1, true, true>,
      RmsNormRowInRegistersKernel<2, true, true>,      RmsNormRowInRegistersKernel<kMax, true, true>};
  return CudaStatus(pdl::Launch(kKernels[i], rows, row.threads, 0, stream, x, residual, weight, y,
                                quantized, cols, eps),
                    "RmsNormRowInRegistersKernel");
}

}  // namespace

bool E4m3CopyIsFused(int cols) {
  return cols % kVec == 0 && RowInRegisters(cols / kVec).vecs > 0;
}

absl::Status RmsNorm(const bf16* x, const bf16* weight, bf16* y, int rows, int cols, float eps,
                     cudaStream_t stream, E4m3Rows quantized) {
  // Without a residual the kernels only read x.
  return NormRows("RmsNorm", const_cast<bf16*>(x), nullptr, weight, y, rows, cols, eps, stream,
                  quantized);
}

absl::Status AddRmsNorm(bf16* x, const bf16* residual, const bf16* weight, bf16* y, int rows,
                        int cols, float eps, cudaStream_t stream, E4m3Rows quantized) {
  if (residual == nullptr && rows > 0) {
    return absl::InvalidArgumentError("AddRmsNorm: null pointer");
  }
  return NormRows("AddRmsNorm", x, residual, weight, y, rows, cols, eps, stream, quantized);
}

absl::Status ResidualAdd(bf16* x, const bf16* r, int64_t n, cudaStream_t stream) {
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat("ResidualAdd: n = ", n, " < 0"));
  if (n == 0) return absl::OkStatus();
  if (x == nullptr || r == nullptr) return absl::InvalidArgumentError("ResidualAdd: null pointer");
  const uintptr_t xa = reinterpret_cast<uintptr_t>(x), ra = reinterpret_cast<uintptr_t>(r);
  int64_t head = n, nvec = 0;  // element-wise unless x and r can both reach 16-byte alignment
  if (xa % 16 == ra % 16 && xa % 2 == 0) {
    head = static_cast<int64_t>(((16 - xa % 16) % 16) / 2);
    if (head > n) head = n;
    nvec = (n - head) / kVec;
  }
  const int64_t nscalar = n - nvec * kVec;
  return CudaStatus(pdl::Launch(ResidualAddKernel, GridFor(nvec > nscalar ? nvec : nscalar),
                                kThreads, 0, stream, x, r, n, head, nvec),
                    "ResidualAddKernel");
}

absl::Status SiluMul(const bf16* gate_up, bf16* out, int rows, int ffn, cudaStream_t stream,
                     E4m3Rows quantized) {
  if (rows < 0 || ffn <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("SiluMul: bad shape rows=", rows, " ffn=", ffn));
  }
  TP_RETURN_IF_ERROR(CheckQuantized("SiluMul", quantized, out, ffn));
  if (rows == 0) return absl::OkStatus();
  if (gate_up == nullptr || (out == nullptr && quantized.q == nullptr)) {
    return absl::InvalidArgumentError("SiluMul: null pointer");
  }
  const bool aligned = ffn % kVec == 0 && Aligned16(gate_up) && Aligned16(out);
  if (quantized.q != nullptr) {
    const RowLaunch row = RowInRegisters(ffn / kVec);
    if (aligned && row.vecs > 0) {
      auto* kernel = row.vecs == 1   ? SiluMulE4m3Kernel<1>
                     : row.vecs == 2 ? SiluMulE4m3Kernel<2>
                                     : SiluMulE4m3Kernel<kNormMaxVecs>;
      return CudaStatus(
          pdl::Launch(kernel, rows, row.threads, 0, stream, gate_up, out, quantized, ffn),
          "SiluMulE4m3Kernel");
    }
    if (out == nullptr) return NoFusedCopy("SiluMul", ffn);
    // Rows too long or unaligned for the fused kernel: the quantizer on the output.
    TP_RETURN_IF_ERROR(SiluMul(gate_up, out, rows, ffn, stream));
    return QuantizeWeightsFp8(out, quantized.q, quantized.scales, rows, ffn, stream);
  }
  const int64_t total = static_cast<int64_t>(rows) * ffn;
  if (aligned) {
    return CudaStatus(pdl::Launch(SiluMulKernel<true>, GridFor(total / kVec), kThreads, 0, stream,
                                  gate_up, out, int64_t{rows}, int64_t{ffn}),
                      "SiluMulKernel<vectorized>");
  }
  return CudaStatus(pdl::Launch(SiluMulKernel<false>, GridFor(total), kThreads, 0, stream, gate_up,
                                out, int64_t{rows}, int64_t{ffn}),
                    "SiluMulKernel<scalar>");
}

absl::Status RopeKvAppend(const bf16* qkv, bf16* q_out, bf16* k_cache, bf16* v_cache, int batch,
                          int q_len, int start_pos, int num_q_heads, int num_kv_heads,
                          int head_dim, int cache_capacity, float rope_theta,
                          cudaStream_t stream) {
  if (batch < 0 || q_len < 0 || start_pos < 0 || cache_capacity < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("RopeKvAppend: negative batch=", batch, " q_len=", q_len,
                     " start_pos=", start_pos, " or cache_capacity=", cache_capacity));
  }
  if (num_q_heads <= 0 || num_kv_heads <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RopeKvAppend: bad head counts Hq=", num_q_heads, " Hkv=", num_kv_heads));
  }
  // 4 * head_dim bytes of shared memory for the cos/sin table.
  if (head_dim <= 0 || head_dim % 2 != 0 || head_dim > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("RopeKvAppend: head_dim must be even and in [2, 4096], got ", head_dim));
  }
  if (static_cast<int64_t>(start_pos) + q_len > cache_capacity) {
    return absl::InvalidArgumentError(
        absl::StrCat("RopeKvAppend: start_pos + q_len = ", static_cast<int64_t>(start_pos) + q_len,
                     " exceeds cache_capacity ", cache_capacity));
  }
  if (!(rope_theta > 0.0f) || !std::isfinite(rope_theta)) {
    return absl::InvalidArgumentError("RopeKvAppend: rope_theta must be finite and > 0");
  }
  const int64_t tokens = static_cast<int64_t>(batch) * q_len;
  if (tokens == 0) return absl::OkStatus();
  if (tokens > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError("RopeKvAppend: batch * q_len exceeds 2^31 - 1");
  }
  if (static_cast<int64_t>(num_q_heads + 2 * num_kv_heads) * head_dim >
      std::numeric_limits<int32_t>::max() / 2) {
    return absl::InvalidArgumentError("RopeKvAppend: row too wide");
  }
  if (qkv == nullptr || q_out == nullptr || k_cache == nullptr || v_cache == nullptr) {
    return absl::InvalidArgumentError("RopeKvAppend: null pointer");
  }
  const RopeParams p{qkv,         q_out,        k_cache,  v_cache,        q_len,
                     start_pos,   num_q_heads,  num_kv_heads, head_dim, cache_capacity,
                     std::log2(static_cast<double>(rope_theta))};
  const size_t smem = sizeof(float) * head_dim;
  const auto blocks = static_cast<unsigned>(tokens);
  const bool vec = head_dim % (2 * kVec) == 0 && Aligned16(qkv) && Aligned16(q_out) &&
                   Aligned16(k_cache) && Aligned16(v_cache);
  // One thread per work item (see the kernel), at least one per angle of the table.
  const int64_t pairs = vec ? kVec : 1;
  const int64_t items = static_cast<int64_t>(num_q_heads + num_kv_heads) * (head_dim / 2 / pairs) +
                        static_cast<int64_t>(num_kv_heads) * (head_dim / pairs);
  const int threads = static_cast<int>(
      std::min<int64_t>(kRopeMaxThreads, (std::max<int64_t>(items, head_dim / 2) + 31) / 32 * 32));
  if (vec) {
    return CudaStatus(pdl::Launch(RopeKvAppendKernel<true>, blocks, threads, smem, stream, p),
                      "RopeKvAppendKernel<vectorized>");
  }
  return CudaStatus(pdl::Launch(RopeKvAppendKernel<false>, blocks, threads, smem, stream, p),
                    "RopeKvAppendKernel<scalar>");
}

}  // namespace truthput
