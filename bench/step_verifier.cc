#include "bench/step_verifier.h"

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "bench/reference_ops.h"
#include "kernels/cuda_status.h"
#include "kernels/gemv.h"
#include "kernels/random_fill.h"
#include "workloads/model_registry.h"

namespace truthput {
namespace {

VerifyStepHook& TestHook() {
  static auto* hook = new VerifyStepHook;
  return *hook;
}

using bf16 = __nv_bfloat16;

// Tolerances of ref::Compare (relative to |ref| + rms(ref)). Element-wise ops round once to bf16
// (2^-9 relative); attention rounds the softmax weights to bf16 for the tensor-core P.V, so it
// gets a little more; GEMMs have their own (ref::CompareGemm, up to 2.6x that on cuBLASLt's fp8
// fast accumulation at k = 28672). Copies are exact.
constexpr double kRtolElementwise = 2e-2;
constexpr double kRtolAttention = 3e-2;
constexpr double kExact = 0.0;
// An output written only as e4m3 per row (for a W8A8 GEMM): 3 mantissa bits round to within
// 2^-4 of |value|, over the bf16 rounding the kernel applies first.
constexpr double kRtolE4m3 = 7e-2;
// Its scales (max |row| / 448), from bf16-rounded outputs: within 2^-9 of the reference's.
constexpr double kRtolE4m3Scale = 1e-2;

constexpr int64_t kMaxVerifyLayers = 2;
constexpr uint32_t kMaxVerifyVocab = 4096;

float Bf16BitsToFloat(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

std::vector<float> ToFloat(const std::vector<uint16_t>& bits) {
  std::vector<float> f(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) f[i] = Bf16BitsToFloat(bits[i]);
  return f;
}

// What the GPU's per-row e4m3 quantization (QuantizeWeightsFp8) does to x [rows, cols], undone:
// row r becomes float(e4m3(x * lift * mult_r)) * s_r with s_r = max |x[r, :]| / 448 and mult_r
// = 448 / (max |x[r, :]| * lift) (fp8_weights.h's format), through the same CUDA conversion
// (round to nearest, saturating). The W8A8 GEMM's reference multiplies these.
std::vector<float> Fp8RowsRoundTrip(const std::vector<float>& x, int64_t rows, int64_t cols) {
  std::vector<float> out(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    float amax = 0.0f;
    for (int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(x[r * cols + c]));
    const float scale = amax / 448.0f;
    const float lift = amax < 0x1p-100f ? 0x1p100f : 1.0f;
    const float mult = amax > 0.0f ? 448.0f / (amax * lift) : 0.0f;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = x[r * cols + c] * lift * mult;
      out[r * cols + c] = static_cast<float>(__nv_fp8_e4m3(v)) * scale;
    }
  }
  return out;
}

// e4m3 rows [rows, cols] with one scale per row, as the values they stand for: float(e4m3) * the
// row's scale (fp8_weights.h's format: the fp8 weights, and the activations' per-token copy).
std::vector<float> DequantizeE4m3Rows(const std::vector<uint8_t>& q,
                                      const std::vector<float>& scales, int64_t cols) {
  std::vector<float> out(q.size());
  for (size_t i = 0; i < q.size(); ++i) {
    __nv_fp8_e4m3 v;
    v.__x = static_cast<__nv_fp8_storage_t>(q[i]);
    out[i] = static_cast<float>(v) * scales[i / cols];
  }
  return out;
}

// Checks one step, op by op. Holds the description of the op being checked for its messages.
class Verifier {
 public:
  Verifier(const StepRunner& runner, cudaStream_t stream) : r_(runner), s_(stream) {}

  absl::Status Run() {
    TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s_));  // Create's fills, earlier steps
    // The order of StepRunner::EnqueueStep.
    const std::vector<Op>& ops = r_.workload().ops();
    size_t i = 0;
    for (; i < ops.size() && !ops[i].per_layer; ++i) TP_RETURN_IF_ERROR(VerifyOp(i, 0));
    const size_t first_layer_op = i;
    size_t end_layer_ops = first_layer_op;
    while (end_layer_ops < ops.size() && ops[end_layer_ops].per_layer) ++end_layer_ops;
    const int64_t num_layers = r_.workload().model().num_layers();
    for (int64_t layer = 0; layer < num_layers; ++layer) {
      for (size_t j = first_layer_op; j < end_layer_ops; ++j) {
        TP_RETURN_IF_ERROR(VerifyOp(j, layer));
      }
    }
    for (size_t j = end_layer_ops; j < ops.size(); ++j) TP_RETURN_IF_ERROR(VerifyOp(j, 0));
    return absl::OkStatus();
  }

 private:
  absl::Status VerifyOp(size_t index, int64_t layer) {
    const Op& op = r_.workload().ops().at(index);
    where_ = op.per_layer ? absl::StrCat("op ", op.name, " (layer ", layer, ")")
                          : absl::StrCat("op ", op.name);
    switch (op.kind) {
      case OpKind::kEmbedding: return VerifyEmbedding(op, index, layer);
      case OpKind::kAddRmsNorm: return VerifyAddRmsNorm(op, index, layer);
      case OpKind::kGemm: return VerifyGemm(op, index, layer);
      case OpKind::kRopeKvAppend: return VerifyRopeKvAppend(op, index, layer);
      case OpKind::kAttention: return VerifyAttention(op, index, layer);
      case OpKind::kSiluMul: return VerifySiluMul(op, index, layer);
    }
    return NoReference(op);
  }

  absl::Status NoReference(const Op& op) const {
    return absl::UnimplementedError(absl::StrCat("VerifyStep: no reference for op '", op.name,
                                                 "' (", OpKindName(op.kind), ")"));
  }

  // ---- Device <-> host ----------------------------------------------------------------------

  absl::StatusOr<std::vector<uint16_t>> Bits(const bf16* p, int64_t n) const {
    std::vector<uint16_t> h(n);
    if (n > 0) {
      TP_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(h.data(), p, n * sizeof(uint16_t), cudaMemcpyDeviceToHost, s_));
      TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s_));
    }
    return h;
  }

  absl::StatusOr<std::vector<float>> Floats(const bf16* p, int64_t n) const {
    absl::StatusOr<std::vector<uint16_t>> bits = Bits(p, n);
    if (!bits.ok()) return bits.status();
    return ToFloat(*bits);
  }

  // An input as floats, rejected when not finite or, unless zeros are its expected value, all
  // zero.
  absl::StatusOr<std::vector<float>> Input(const bf16* p, int64_t n, absl::string_view what,
                                           bool may_be_zero = false) const {
    absl::StatusOr<std::vector<float>> v = Floats(p, n);
    if (!v.ok()) return v.status();
    TP_RETURN_IF_ERROR(CheckInput(*v, what, may_be_zero));
    return v;
  }

  absl::Status CheckInput(const std::vector<float>& v, absl::string_view what,
                          bool may_be_zero = false) const {
    bool nonzero = false;
    for (size_t i = 0; i < v.size(); ++i) {
      if (!std::isfinite(v[i])) {
        return absl::FailedPreconditionError(absl::StrCat(
            "verification failed: ", where_, ": input ", what, " is ", v[i], " at [", i, "]"));
      }
      nonzero |= v[i] != 0.0f;
    }
    if (!nonzero && !may_be_zero) {
      return absl::FailedPreconditionError(
          absl::StrCat("verification failed: ", where_, ": input ", what, " is all zeros (",
                       v.size(), " elements); the harness must never time zeros"));
    }
    return absl::OkStatus();
  }

  // NaN everywhere in [p, p + n): an output the kernel does not write then fails the comparison.
  absl::Status Poison(bf16* p, int64_t n) const {
    return FillBf16(p, n, std::numeric_limits<float>::quiet_NaN(), s_);
  }

  // The e4m3 copy of an op's output (StepRunner::QuantizesForNextGemm), poisoned: 0xFF bytes
  // (e4m3 NaN, which the saturating quantizer never writes) and NaN scales.
  absl::Status PoisonE4m3Copy(int64_t rows, int64_t cols) const {
    const StepRunner::Activations& a = r_.activations();
    TP_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(a.xq, 0xFF, rows * cols, s_));
    TP_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(a.x_scales, 0xFF, rows * sizeof(float), s_));
    return absl::OkStatus();
  }

  // That copy on the host: its scales, and the values it stands for (float(e4m3) * the row's
  // scale).
  struct E4m3Copy {
    std::vector<float> values, scales;
  };
  absl::StatusOr<E4m3Copy> ReadE4m3Copy(int64_t rows, int64_t cols) const {
    const StepRunner::Activations& a = r_.activations();
    std::vector<uint8_t> q(rows * cols);
    E4m3Copy copy{{}, std::vector<float>(rows)};
    TP_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(q.data(), a.xq, q.size(), cudaMemcpyDeviceToHost, s_));
    TP_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(copy.scales.data(), a.x_scales, rows * sizeof(float),
                                            cudaMemcpyDeviceToHost, s_));
    TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s_));
    copy.values = DequantizeE4m3Rows(q, copy.scales, cols);
    return copy;
  }

  // An op's output written only as that copy, against its reference `want` [rows, cols]: the
  // scales against max |want row| / 448, the values within e4m3's rounding.
  absl::Status CheckE4m3Copy(const std::vector<double>& want, int64_t rows, int64_t cols,
                             absl::string_view what) const {
    absl::StatusOr<E4m3Copy> got = ReadE4m3Copy(rows, cols);
    if (!got.ok()) return got.status();
    std::vector<double> want_scales(rows, 0.0);
    for (int64_t i = 0; i < static_cast<int64_t>(want.size()); ++i) {
      want_scales[i / cols] = std::max(want_scales[i / cols], std::fabs(want[i]) / 448.0);
    }
    TP_RETURN_IF_ERROR(Check(got->scales, want_scales, kRtolE4m3Scale, {rows},
                             absl::StrCat(what, " in e4m3, scales")));
    return Check(got->values, want, kRtolE4m3, {rows, cols}, absl::StrCat(what, " in e4m3"));
  }

  absl::Status Launch(size_t index, int64_t layer) const {
    absl::Status st = r_.EnqueueOpOnce(index, layer, s_);
    // A copy: the hook may replace itself.
    if (const VerifyStepHook hook = TestHook(); st.ok() && hook) st = hook(r_, index, layer, s_);
    if (!st.ok()) return absl::Status(st.code(), absl::StrCat(where_, ": ", st.message()));
    TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s_));
    return absl::OkStatus();
  }

  // Internal error with the worst element when `got` does not match `want`.
  absl::Status Check(const std::vector<float>& got, const std::vector<double>& want, double rtol,
                     std::vector<int64_t> shape, absl::string_view output = "") const {
    return Verdict(ref::Compare(got, want, rtol, shape), rtol, got.size(), shape, output);
  }

  // Check's status for a comparison already made.
  absl::Status Verdict(const ref::Comparison& c, double rtol, size_t size,
                       const std::vector<int64_t>& shape, absl::string_view output = "") const {
    if (c.ok) return absl::OkStatus();
    return absl::InternalError(
        absl::StrCat("verification failed: ", where_, output.empty() ? "" : ", output ", output,
                     ": ", c.worst, ", rtol ", rtol, "; ", c.fail_count, " of ", size,
                     " elements fail (", c.nan_count, " NaN/Inf), max |err| ", c.max_abs_err,
                     ", ref rms ", c.ref_rms, ", shape [", absl::StrJoin(shape, ", "), "]"));
  }

  // ---- The ops --------------------------------------------------------------------------------

  absl::Status VerifyEmbedding(const Op& op, size_t index, int64_t layer) {
    const StepRunner::Activations& a = r_.activations();
    const int64_t rows = op.m, cols = op.n;
    const int64_t vocab = r_.workload().ops().back().n;  // the LM head's rows, as Launch has it
    std::vector<int32_t> ids(rows);
    TP_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(ids.data(), a.ids, rows * sizeof(int32_t), cudaMemcpyDeviceToHost, s_));
    TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s_));
    // Only the rows the tokens select, as a table of `rows` rows indexed 0, 1, ...
    std::vector<uint16_t> table_bits(rows * cols);
    std::vector<int32_t> local_ids(rows);
    for (int64_t r = 0; r < rows; ++r) {
      if (ids[r] < 0 || ids[r] >= vocab) {
        return absl::FailedPreconditionError(absl::StrCat("verification failed: ", where_,
                                                          ": token id ", ids[r], " at [", r,
                                                          "] is outside [0, ", vocab, ")"));
      }
      TP_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(table_bits.data() + r * cols,
                                              a.embedding + ids[r] * cols, cols * sizeof(uint16_t),
                                              cudaMemcpyDeviceToHost, s_));
      local_ids[r] = static_cast<int32_t>(r);
    }
    TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s_));
    const std::vector<float> table = ToFloat(table_bits);
    TP_RETURN_IF_ERROR(CheckInput(table, "embedding rows"));

    // The rows land in tmp_h, the first block output the first norm adds; x, the residual
    // stream, starts at zero.
    TP_RETURN_IF_ERROR(Poison(a.tmp_h, rows * cols));
    TP_RETURN_IF_ERROR(Poison(a.x, rows * cols));
    TP_RETURN_IF_ERROR(Launch(index, layer));
    absl::StatusOr<std::vector<float>> got = Floats(a.tmp_h, rows * cols);
    if (!got.ok()) return got.status();
    TP_RETURN_IF_ERROR(Check(*got, ref::EmbeddingGather(table, local_ids, cols), kExact,
                             {rows, cols}, "the rows (tmp_h)"));
    absl::StatusOr<std::vector<float>> x = Floats(a.x, rows * cols);
    if (!x.ok()) return x.status();
    return Check(*x, std::vector<double>(x->size(), 0.0), kExact, {rows, cols}, "x");
  }

  // x += the block output before the norm (tmp_h), then the norm of x into xn: both outputs
  // checked, the norm against the reference of the sums the GPU kept (themselves checked first).
  // The final norm of a prefill step takes each prompt's last row of x and of tmp_h.
  absl::Status VerifyAddRmsNorm(const Op& op, size_t index, int64_t layer) {
    const StepRunner::Activations& a = r_.activations();
    const StepRunner::LayerBuffers& l = r_.layer_buffers(layer);
    const bf16* w = op.name == "add_attn_norm"    ? l.attn_norm_w
                    : op.name == "add_ffn_norm"   ? l.ffn_norm_w
                    : op.name == "add_final_norm" ? a.final_norm_w
                                                  : nullptr;
    if (w == nullptr) return NoReference(op);
    const int64_t rows = op.m, cols = op.n;
    // The eps StepRunner::Launch passes (a float).
    const float model_eps = r_.workload().model().rms_norm_eps();
    const float eps = model_eps > 0 ? model_eps : 1e-5f;
    const int64_t T = r_.workload().tokens_per_step();
    const bool last_rows = op.name == "add_final_norm" && T != rows;
    const int64_t in_rows = last_rows ? T : rows;
    // The first layer's norm adds the embedding rows to a residual stream of zeros.
    const bool stream_starts = op.name == "add_attn_norm" && layer == 0;
    absl::StatusOr<std::vector<float>> x = Input(a.x, in_rows * cols, "x", stream_starts);
    if (!x.ok()) return x.status();
    absl::StatusOr<std::vector<float>> r = Input(a.tmp_h, in_rows * cols, "the block output");
    if (!r.ok()) return r.status();
    if (last_rows) {
      std::vector<float> x_last(rows * cols), r_last(rows * cols);
      for (int64_t b = 0; b < rows; ++b) {
        const int64_t row = (b + 1) * (T / rows) - 1;
        std::copy_n(x->begin() + row * cols, cols, x_last.begin() + b * cols);
        std::copy_n(r->begin() + row * cols, cols, r_last.begin() + b * cols);
      }
      *x = std::move(x_last);
      *r = std::move(r_last);
    }
    absl::StatusOr<std::vector<float>> weight = Input(w, cols, "weight");
    if (!weight.ok()) return weight.status();
    // x is updated in place (its copy from before is the input); xn, or the e4m3 copy written
    // in its place, can be poisoned.
    const bool e4m3_only = r_.QuantizesForNextGemm(index);
    TP_RETURN_IF_ERROR(e4m3_only ? PoisonE4m3Copy(rows, cols) : Poison(a.xn, rows * cols));
    TP_RETURN_IF_ERROR(Launch(index, layer));
    absl::StatusOr<std::vector<float>> sums = Floats(last_rows ? a.x_last : a.x, rows * cols);
    if (!sums.ok()) return sums.status();
    TP_RETURN_IF_ERROR(
        Check(*sums, ref::ResidualAdd(*x, *r), kRtolElementwise, {rows, cols}, "x (the sums)"));
    const std::vector<double> want = ref::RmsNorm(*sums, *weight, rows, cols, eps);
    if (e4m3_only) return CheckE4m3Copy(want, rows, cols, "xn");
    absl::StatusOr<std::vector<float>> got = Floats(a.xn, rows * cols);
    if (!got.ok()) return got.status();
    return Check(*got, want, kRtolElementwise, {rows, cols}, "xn");
  }

  // fp8 weights [n, k] with their per-row scales, dequantized (float(e4m3) * scale).
  // A weight matrix's bytes in row-major order: as stored, or unpacked from the own GEMM's
  // layout (gemv.h).
  absl::StatusOr<std::vector<uint8_t>> WeightBytes(const void* w, int64_t n, int64_t k,
                                                   int bytes, bool packed) const {
    std::vector<uint8_t> raw(packed ? static_cast<int64_t>(SkinnyGemmPackedBytes(n, k, bytes))
                                    : n * k * bytes);
    TP_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(raw.data(), w, raw.size(), cudaMemcpyDeviceToHost, s_));
    TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s_));
    if (!packed) return raw;
    std::vector<uint8_t> rows(n * k * bytes);
    const int64_t row_bytes = k * bytes;
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t b = 0; b < row_bytes; b += 64) {  // 64 bytes of a row stay together
        std::memcpy(&rows[r * row_bytes + b], &raw[SkinnyGemmPackedOffset(r, b, k, bytes)],
                    std::min<int64_t>(64, row_bytes - b));
      }
    }
    return rows;
  }

  absl::StatusOr<std::vector<float>> Bf16Weight(const void* w, int64_t n, int64_t k,
                                                bool packed) const {
    absl::StatusOr<std::vector<uint8_t>> raw = WeightBytes(w, n, k, 2, packed);
    if (!raw.ok()) return raw.status();
    std::vector<uint16_t> bits(n * k);
    std::memcpy(bits.data(), raw->data(), raw->size());
    std::vector<float> f = ToFloat(bits);
    TP_RETURN_IF_ERROR(CheckInput(f, "weight"));
    return f;
  }

  absl::StatusOr<std::vector<float>> Fp8Weight(const void* wq, const float* scales, int64_t n,
                                               int64_t k, bool packed) const {
    absl::StatusOr<std::vector<uint8_t>> raw = WeightBytes(wq, n, k, 1, packed);
    if (!raw.ok()) return raw.status();
    std::vector<float> s(n);
    TP_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(s.data(), scales, n * sizeof(float), cudaMemcpyDeviceToHost, s_));
    TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s_));
    std::vector<float> w = DequantizeE4m3Rows(*raw, s, k);
    TP_RETURN_IF_ERROR(CheckInput(w, "fp8 weight"));
    return w;
  }

  absl::Status VerifyGemm(const Op& op, size_t index, int64_t layer) {
    // The runner's own mapping of the op to its buffers: what Launch uses, by construction.
    absl::StatusOr<StepRunner::GemmBuffers> b = r_.GemmBuffersOf(op, layer);
    if (!b.ok()) return NoReference(op);
    const int64_t m = op.m, n = op.n, k = op.k;
    // x as the GEMM reads it: the e4m3 copy the op before wrote (bf16 x is then not written),
    // or bf16 x, which a W8A8 GEMM quantizes in its launch (redone on the host below).
    const bool copy_from_previous = r_.ReadsCopyFromPreviousOp(index);
    absl::StatusOr<std::vector<float>> x;
    if (copy_from_previous) {
      absl::StatusOr<E4m3Copy> copy = ReadE4m3Copy(m, k);
      if (!copy.ok()) return copy.status();
      TP_RETURN_IF_ERROR(CheckInput(copy->values, "x in e4m3"));
      x = std::move(copy->values);
    } else {
      x = Input(b->x, m * k, "x");
    }
    if (!x.ok()) return x.status();
    const bool packed = r_.PacksWeights(index);
    absl::StatusOr<std::vector<float>> w = b->w_scales == nullptr
                                               ? Bf16Weight(b->w, n, k, packed)
                                               : Fp8Weight(b->w, b->w_scales, n, k, packed);
    if (!w.ok()) return w.status();
    if (r_.QuantizesActivations(index) && !copy_from_previous) *x = Fp8RowsRoundTrip(*x, m, k);
    TP_RETURN_IF_ERROR(Poison(b->y, m * n));
    TP_RETURN_IF_ERROR(Launch(index, layer));
    absl::StatusOr<std::vector<float>> got = Floats(b->y, m * n);
    if (!got.ok()) return got.status();
    std::vector<double> want = ref::Gemm(*x, *w, m, n, k);
    w->clear();
    w->shrink_to_fit();  // the largest host buffer of the run (70B's gate_up: 1.9 GB)
    const bool fast = r_.FastAccumulation(index);
    return Verdict(ref::CompareGemm(*got, want, k, fast, {m, n}), ref::RtolGemm(k, fast),
                   got->size(), {m, n});
  }

  absl::Status VerifyRopeKvAppend(const Op& op, size_t index, int64_t layer) {
    if (op.name != "rope_kv_append") return NoReference(op);
    const StepRunner::Activations& a = r_.activations();
    const StepRunner::LayerBuffers& l = r_.layer_buffers(layer);
    const AttentionShape& at = op.attn;
    const int64_t B = at.batch, T = at.batch * at.q_len, hq = at.num_q_heads, hkv = at.num_kv_heads,
                  d = at.head_dim, cap = r_.cache_capacity();
    const int64_t start = at.start_pos, q_len = at.q_len;
    if (start + q_len > cap) {
      return absl::FailedPreconditionError(absl::StrCat("verification failed: ", where_,
                                                        ": positions up to ", start + q_len,
                                                        " exceed the cache capacity ", cap));
    }
    const int64_t cache_elems = B * hkv * cap * d;
    // The theta Launch passes: the kernel takes a float.
    const double model_theta = r_.workload().model().rope_theta();
    const double theta = static_cast<float>(model_theta > 0 ? model_theta : 10000.0);

    absl::StatusOr<std::vector<float>> qkv = Input(a.qkv, T * (hq + 2 * hkv) * d, "qkv");
    if (!qkv.ok()) return qkv.status();
    absl::StatusOr<std::vector<uint16_t>> k_before = Bits(l.k_cache, cache_elems);
    if (!k_before.ok()) return k_before.status();
    absl::StatusOr<std::vector<uint16_t>> v_before = Bits(l.v_cache, cache_elems);
    if (!v_before.ok()) return v_before.status();

    TP_RETURN_IF_ERROR(Poison(a.q, T * hq * d));
    for (int64_t bh = 0; bh < B * hkv; ++bh) {  // positions [start, start + q_len) are contiguous
      TP_RETURN_IF_ERROR(Poison(l.k_cache + (bh * cap + start) * d, q_len * d));
      TP_RETURN_IF_ERROR(Poison(l.v_cache + (bh * cap + start) * d, q_len * d));
    }
    TP_RETURN_IF_ERROR(Launch(index, layer));

    absl::StatusOr<std::vector<float>> q = Floats(a.q, T * hq * d);
    if (!q.ok()) return q.status();
    absl::StatusOr<std::vector<uint16_t>> k_after = Bits(l.k_cache, cache_elems);
    if (!k_after.ok()) return k_after.status();
    absl::StatusOr<std::vector<uint16_t>> v_after = Bits(l.v_cache, cache_elems);
    if (!v_after.ok()) return v_after.status();

    const ref::RopeKvAppendResult want =
        ref::RopeKvAppend(*qkv, B, q_len, start, hq, hkv, d, theta);
    TP_RETURN_IF_ERROR(Check(*q, want.q, kRtolElementwise, {T, hq, d}, "q"));
    TP_RETURN_IF_ERROR(CheckAppended(*k_after, *k_before, want.k, kRtolElementwise, at, "k_cache"));
    return CheckAppended(*v_after, *v_before, want.v, kExact, at, "v_cache");
  }

  // The rows RopeKvAppend appended to a cache against `want` ([batch, Hkv, q_len, head_dim]), and
  // every other position bit-for-bit as it was.
  absl::Status CheckAppended(const std::vector<uint16_t>& after,
                             const std::vector<uint16_t>& before, const std::vector<double>& want,
                             double rtol, const AttentionShape& at, absl::string_view what) const {
    const int64_t bhs = at.batch * at.num_kv_heads, d = at.head_dim, cap = r_.cache_capacity();
    const int64_t start = at.start_pos, q_len = at.q_len;
    for (int64_t i = 0; i < static_cast<int64_t>(after.size()); ++i) {
      const int64_t pos = i / d % cap;
      if (after[i] != before[i] && (pos < start || pos >= start + q_len)) {
        const int64_t bh = i / d / cap;
        return absl::InternalError(absl::StrCat(
            "verification failed: ", where_, ": ", what,
            " changed outside the appended positions, at [", bh / at.num_kv_heads, ", ",
            bh % at.num_kv_heads, ", ", pos, ", ", i % d, "] (batch, kv head, position, dim)"));
      }
    }
    std::vector<float> got(bhs * q_len * d);
    for (int64_t bh = 0; bh < bhs; ++bh) {
      for (int64_t j = 0; j < q_len * d; ++j) {
        got[bh * q_len * d + j] = Bf16BitsToFloat(after[(bh * cap + start) * d + j]);
      }
    }
    return Check(got, want, rtol, {at.batch, at.num_kv_heads, q_len, d}, what);
  }

  absl::Status VerifyAttention(const Op& op, size_t index, int64_t layer) {
    if (op.name != "attention") return NoReference(op);
    const StepRunner::Activations& a = r_.activations();
    const StepRunner::LayerBuffers& l = r_.layer_buffers(layer);
    const AttentionShape& at = op.attn;
    const int64_t T = at.batch * at.q_len;
    const int64_t B = at.batch, hq = at.num_q_heads, hkv = at.num_kv_heads, d = at.head_dim,
                  cap = r_.cache_capacity(), kv_len = at.kv_len();
    if (kv_len > cap) {
      return absl::FailedPreconditionError(absl::StrCat("verification failed: ", where_,
                                                        ": kv_len ", kv_len,
                                                        " exceeds the cache capacity ", cap));
    }
    absl::StatusOr<std::vector<float>> q = Input(a.q, T * hq * d, "q");
    if (!q.ok()) return q.status();
    absl::StatusOr<std::vector<float>> k = Floats(l.k_cache, B * hkv * cap * d);
    if (!k.ok()) return k.status();
    absl::StatusOr<std::vector<float>> v = Floats(l.v_cache, B * hkv * cap * d);
    if (!v.ok()) return v.status();
    // Only positions [0, kv_len) are read; check those.
    TP_RETURN_IF_ERROR(CheckInput(UsedPositions(*k, B * hkv, cap, kv_len, d), "k_cache"));
    TP_RETURN_IF_ERROR(CheckInput(UsedPositions(*v, B * hkv, cap, kv_len, d), "v_cache"));

    TP_RETURN_IF_ERROR(Poison(a.attn_out, T * hq * d));
    TP_RETURN_IF_ERROR(Launch(index, layer));
    absl::StatusOr<std::vector<float>> got = Floats(a.attn_out, T * hq * d);
    if (!got.ok()) return got.status();
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    return Check(*got,
                 ref::Attention(*q, *k, *v, B, at.q_len, at.start_pos, hq, hkv, d, cap, scale,
                                at.causal),
                 kRtolAttention, {T, hq, d});
  }

  static std::vector<float> UsedPositions(const std::vector<float>& cache, int64_t bhs, int64_t cap,
                                          int64_t kv_len, int64_t d) {
    std::vector<float> used;
    used.reserve(bhs * kv_len * d);
    for (int64_t bh = 0; bh < bhs; ++bh) {
      const auto row = cache.begin() + bh * cap * d;
      used.insert(used.end(), row, row + kv_len * d);
    }
    return used;
  }

  absl::Status VerifySiluMul(const Op& op, size_t index, int64_t layer) {
    if (op.name != "silu_mul") return NoReference(op);
    const StepRunner::Activations& a = r_.activations();
    const int64_t rows = op.m, ffn = op.n;
    absl::StatusOr<std::vector<float>> gate_up = Input(a.gate_up, rows * 2 * ffn, "gate_up");
    if (!gate_up.ok()) return gate_up.status();
    const bool e4m3_only = r_.QuantizesForNextGemm(index);  // then act is not written
    TP_RETURN_IF_ERROR(e4m3_only ? PoisonE4m3Copy(rows, ffn) : Poison(a.act, rows * ffn));
    TP_RETURN_IF_ERROR(Launch(index, layer));
    const std::vector<double> want = ref::SiluMul(*gate_up, rows, ffn);
    if (e4m3_only) return CheckE4m3Copy(want, rows, ffn, "act");
    absl::StatusOr<std::vector<float>> got = Floats(a.act, rows * ffn);
    if (!got.ok()) return got.status();
    return Check(*got, want, kRtolElementwise, {rows, ffn});
  }

  const StepRunner& r_;
  cudaStream_t s_;
  std::string where_;  // "op down_proj (layer 1)": the op being checked
};

}  // namespace

void SetVerifyStepHookForTesting(VerifyStepHook hook) { TestHook() = std::move(hook); }

absl::Status VerifyStep(const StepRunner& runner, cudaStream_t stream) {
  return Verifier(runner, stream).Run();
}

absl::StatusOr<ModelSpec> ReducedForVerification(const ModelSpec& model) {
  TP_RETURN_IF_ERROR(ValidateModelSpec(model));
  ModelSpec reduced = model;
  reduced.set_num_layers(
      static_cast<uint32_t>(std::min<int64_t>(model.num_layers(), kMaxVerifyLayers)));
  reduced.set_vocab_size(std::min(model.vocab_size(), kMaxVerifyVocab));
  return reduced;
}

StepConfig ReducedStepForVerification(const StepConfig& first) {
  StepConfig step = first;
  if (step.phase == Phase::kDecode) {
    step.batch = std::min<int64_t>(step.batch, 3);
    step.context = std::min<int64_t>(step.context, 129);
  } else {
    step.batch = std::min<int64_t>(step.batch, 2);
    step.seq_len = std::min<int64_t>(step.seq_len, 37);
  }
  return step;
}

std::vector<std::string> GemmVariantsToVerify(const std::string& gemm, bool fp8_weights) {
  std::vector<std::string> variants;
  if (gemm == "auto" || gemm == "own" || (gemm == "own_w8a8" && !fp8_weights)) {
    variants.push_back("own");
  }
  if (fp8_weights && (gemm == "auto" || gemm == "own_w8a8")) variants.push_back("own_w8a8");
  if (gemm == "auto" || gemm == "cublaslt") variants.push_back("cublaslt");
  return variants;
}

}  // namespace truthput
