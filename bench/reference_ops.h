// CPU reference implementations of the ops of a step, in double precision, and the comparison of a
// GPU result against them. Pure C++, no CUDA.
//
// Inputs are host vectors of the bf16 values the GPU read, converted to float (exact), so the
// reference sees exactly the GPU's inputs; all arithmetic is in double. Shapes follow the kernels
// (kernels/embedding.h, elementwise.h, decode_attention.h, cublaslt_gemm.h), all row-major. A
// reference whose input sizes do not match its shape returns an empty vector, which Compare then
// reports as a size mismatch, or as nothing to compare when `got` is empty too.
#ifndef TRUTHPUT_BENCH_REFERENCE_OPS_H_
#define TRUTHPUT_BENCH_REFERENCE_OPS_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/types/span.h"

namespace truthput {
namespace ref {

// out[r, :] = table[ids[r], :] with table [vocab, cols], vocab = table.size() / cols. Ids outside
// [0, vocab) give zero rows, as the kernel does.
std::vector<double> EmbeddingGather(const std::vector<float>& table,
                                    const std::vector<int32_t>& ids, int64_t cols);

// y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w[:], x and y [rows, cols], w [cols].
std::vector<double> RmsNorm(const std::vector<float>& x, const std::vector<float>& w, int64_t rows,
                            int64_t cols, double eps);

// y[m, n] = x[m, k] . W[n, k]^T (nn.Linear layout). Spreads the rows of W over the host's cores;
// the result does not depend on how many.
std::vector<double> Gemm(const std::vector<float>& x, const std::vector<float>& w, int64_t m,
                         int64_t n, int64_t k);

// What RopeKvAppend computes for qkv [batch * q_len, (Hq + 2 Hkv) head_dim] (token t of sequence b
// in row b * q_len + t, at position start_pos + t): the rotate-half RoPE of elementwise.h with
// angle = pos * rope_theta^(-2i / head_dim), all in double.
struct RopeKvAppendResult {
  std::vector<double> q;  // [batch * q_len, Hq * head_dim], roped
  std::vector<double> k;  // [batch, Hkv, q_len, head_dim]: the rows appended to k_cache, roped
  std::vector<double> v;  // [batch, Hkv, q_len, head_dim]: the rows appended to v_cache, as is
};
RopeKvAppendResult RopeKvAppend(const std::vector<float>& qkv, int64_t batch, int64_t q_len,
                                int64_t start_pos, int64_t num_q_heads, int64_t num_kv_heads,
                                int64_t head_dim, double rope_theta);

// Decode GQA attention: out[b, h, :] = softmax(scale * q[b, h, :] . K[b, h / G, j, :], j < kv_len)
// . V[b, h / G, :, :], G = num_q_heads / num_kv_heads. q and out [batch, Hq, head_dim]; k_cache
// and v_cache [batch, Hkv, cache_capacity, head_dim].
std::vector<double> DecodeAttention(const std::vector<float>& q, const std::vector<float>& k_cache,
                                    const std::vector<float>& v_cache, int64_t batch,
                                    int64_t num_q_heads, int64_t num_kv_heads, int64_t head_dim,
                                    int64_t kv_len, int64_t cache_capacity, double scale);

// Attention of q_len query tokens per sequence (q: [batch * q_len, Hq * d], token t at position
// start_pos + t) over the cache's positions [0, start_pos + q_len); with `causal`, query t sees
// keys up to its own position only. Output laid out as q.
std::vector<double> Attention(const std::vector<float>& q, const std::vector<float>& k_cache,
                              const std::vector<float>& v_cache, int64_t batch, int64_t q_len,
                              int64_t start_pos, int64_t num_q_heads, int64_t num_kv_heads,
                              int64_t head_dim, int64_t cache_capacity, double scale,
                              bool causal);

// x + r, element-wise.
std::vector<double> ResidualAdd(const std::vector<float>& x, const std::vector<float>& r);

// SwiGLU: gate_up [rows, 2 ffn] (gate in columns [0, ffn), up in [ffn, 2 ffn));
// out[rows, ffn] = silu(gate) * up with silu(g) = g / (1 + exp(-g)).
std::vector<double> SiluMul(const std::vector<float>& gate_up, int64_t rows, int64_t ffn);

// The result of checking a GPU output against its reference.
struct Comparison {
  double max_abs_err = 0;           // max |got - ref| over finite elements
  double max_rel_err_vs_scale = 0;  // max |got - ref| / (|ref| + ref_rms)
  double ref_rms = 0;               // sqrt(mean(ref^2))
  double err_rms = 0;               // sqrt(mean((got - ref)^2)) over finite elements
  int64_t nan_count = 0;            // elements of `got` that are NaN or Inf
  int64_t fail_count = 0;           // elements that fail (NaN/Inf included)
  int64_t worst_index = -1;         // flat index of the worst element; -1 when none
  bool ok = false;
  // The worst element, e.g. "|err| 0.53 at [0, 17] (got 1.2, want 0.67)": the first NaN/Inf if
  // any, else the largest |got - ref| / (|ref| + ref_rms). When the sizes differ or both are
  // empty, says that instead.
  std::string worst;
};

// Element i passes when got[i] is finite and |got[i] - ref[i]| <= rtol * (|ref[i]| + ref_rms).
// The ref_rms term is the error budget of a value near zero that sums or rounds terms of the
// output's typical size (a dot product, bf16 rounding of its parts); the |ref| term is the
// output's own rounding. ok when the sizes match, are not zero, and every element passes: an
// empty comparison checks nothing, so it fails. `shape`, when given and consistent with the
// size, prints the worst index per dimension ("[0, 17]"), else flat.
Comparison Compare(const std::vector<float>& got, const std::vector<double>& ref, double rtol,
                   absl::Span<const int64_t> shape = {});

// Compare's rtol for a GEMM's bf16 output: fp32 sums over k up to 28672 (70B's down_proj), then
// one bf16 rounding. The step verifier and the runner's per-point GEMM check both use it, through
// RtolGemm.
inline constexpr double kRtolGemm = 3e-2;

// The rtol of a GEMM over `k` whose partial sums stay in the fp8 tensor core's fast accumulator
// (cuBLASLt's FAST_ACCUM) or not. That accumulator keeps about 14 bits (DeepSeek-V3 technical
// report, section 3.3.2), so each k step drops low bits and the error grows with k, as its
// square root on the H100 (GPU-7b1d5d9f, 2026-11-27, bench_decode's per-point checks of 70B):
// rms error 0.25% of rms(ref) at k = 8192 and 0.44% at 28672 (x1.8 for sqrt(3.5) = 1.87), the
// worst element 1.3% and 2.0% of |ref| + rms(ref), where bf16 GEMMs give 0.17% and 0.3%; one
// step_verifier_test draw gave 3.2% at 28672. So kRtolGemm up to k = 4096, times sqrt(k / 4096)
// past it: 0.079 at 70B's down_proj.
inline double RtolGemm(int64_t k, bool fast_accumulation) {
  return fast_accumulation ? kRtolGemm * std::sqrt(std::max(1.0, static_cast<double>(k) / 4096))
                           : kRtolGemm;
}

// Compare for a GEMM's output: each element within RtolGemm(k, fast_accumulation), and the error
// as a whole within kRtolGemm: rms(got - ref) <= kRtolGemm * rms(ref). The second catches a
// systematic error (scales a few percent off) that each element's looser fast-accumulation
// bound lets through; it fails with `worst` saying so.
Comparison CompareGemm(const std::vector<float>& got, const std::vector<double>& ref, int64_t k,
                       bool fast_accumulation, absl::Span<const int64_t> shape = {});

}  // namespace ref
}  // namespace truthput

#endif  // TRUTHPUT_BENCH_REFERENCE_OPS_H_
