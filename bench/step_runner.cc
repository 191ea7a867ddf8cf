#include "bench/step_runner.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "bench/nvtx_range.h"
#include "bench/reference_ops.h"
#include "kernels/cuda_status.h"
#include "kernels/decode_attention.h"
#include "kernels/elementwise.h"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_format.h"
#include "kernels/embedding.h"
#include "kernels/fp8_weights.h"
#include "kernels/gemv.h"
#include "kernels/prefill_attention.h"
#include "kernels/random_fill.h"
#include "kernels/reference_gemm.h"

namespace truthput {
namespace {

constexpr int64_t kAlign = 256;
int64_t AlignUp(int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

const Op* FindOp(const Workload& w, absl::string_view name) {
  for (const Op& op : w.ops()) {
    if (op.name == name) return &op;
  }
  return nullptr;
}

// The shapes a step's buffers need, read off the op list itself.
struct Dims {
  int64_t B, T, h, q, kv, f, V, Hq, Hkv, d, capacity;
  bool fp8;  // the blocks' linear layers hold e4m3 weights and fp32 scales
};

absl::StatusOr<Dims> DimsOf(const Workload& w) {
  const Op* qkv = FindOp(w, "qkv_proj");
  const Op* at = FindOp(w, "attention");
  const Op* gu = FindOp(w, "gate_up_proj");
  const Op* lm = FindOp(w, "lm_head");
  if (!qkv || !at || !gu || !lm) return absl::InternalError("op list lacks a required op");
  Dims d;
  d.B = w.config().batch;
  d.T = w.tokens_per_step();
  d.h = qkv->k;
  d.Hq = at->attn.num_q_heads;
  d.Hkv = at->attn.num_kv_heads;
  d.d = at->attn.head_dim;
  d.q = d.Hq * d.d;
  d.kv = d.Hkv * d.d;
  d.f = gu->n / 2;
  d.V = lm->n;
  d.capacity = at->attn.kv_len();
  d.fp8 = qkv->weight_dtype == FP8_E4M3;
  return d;
}

// Offsets of the buffers inside one allocation, 256-byte aligned.
class Layout {
 public:
  int64_t Add(int64_t bytes) {
    const int64_t at = size_;
    size_ += AlignUp(bytes);
    return at;
  }
  int64_t size() const { return size_; }

 private:
  int64_t size_ = 0;
};

struct LayerLayout {
  int64_t attn_norm_w, ffn_norm_w, w_qkv, w_o, w_gate_up, w_down;
  int64_t s_qkv = -1, s_o = -1, s_gate_up = -1, s_down = -1;  // fp8 scales; -1: none
  int64_t k_cache, v_cache, total;
};

// Bytes of a weight matrix [n,k]: room for its packed form too (the own GEMM's, gemv.h), which
// is larger only where n % 128 or k * bytes % 64 is not 0 (no built-in model's projection).
int64_t WeightBytes(int64_t n, int64_t k, int bytes) {
  return std::max(n * k * bytes, static_cast<int64_t>(SkinnyGemmPackedBytes(n, k, bytes)));
}

LayerLayout LayoutLayer(const Dims& d) {
  Layout l;
  LayerLayout o;
  const int wb = d.fp8 ? 1 : 2;
  o.attn_norm_w = l.Add(d.h * 2);
  o.ffn_norm_w = l.Add(d.h * 2);
  o.w_qkv = l.Add(WeightBytes(d.q + 2 * d.kv, d.h, wb));
  o.w_o = l.Add(WeightBytes(d.h, d.q, wb));
  o.w_gate_up = l.Add(WeightBytes(2 * d.f, d.h, wb));
  o.w_down = l.Add(WeightBytes(d.h, d.f, wb));
  if (d.fp8) {
    o.s_qkv = l.Add((d.q + 2 * d.kv) * 4);
    o.s_o = l.Add(d.h * 4);
    o.s_gate_up = l.Add(2 * d.f * 4);
    o.s_down = l.Add(d.h * 4);
  }
  o.k_cache = l.Add(d.B * d.kv * d.capacity * 2);
  o.v_cache = l.Add(d.B * d.kv * d.capacity * 2);
  o.total = l.size();
  return o;
}

struct SharedLayout {
  int64_t embedding, lm_head, final_norm_w, ids, last_ids, x_last, r_last, x, xn, qkv, q, attn_out,
      tmp_h, gate_up, act, logits, attn_ws, gemm_ws;
  int64_t xq = -1, x_scales = -1;  // fp8 weights only
  int64_t staging = -1;  // fp8 weights are made, own-GEMM weights packed, through it
  int64_t total;
};

// fp8 weights are made from random bf16 rows, and the own GEMM's weights packed in place, through
// a staging buffer of this many bytes (or one 128-row tile of the widest weight, if larger).
constexpr int64_t kStagingBytes = int64_t{64} << 20;

// Workspace of the own skinny GEMM: one region per GEMM op (a workspace is only reusable by
// calls of the same shape), each 256-byte aligned. Returns the total; `offsets` (if given) gets
// each op's offset, parallel to the op list.
int64_t SkinnyWorkspaceBytes(const Workload& w, int sm_count,
                             std::vector<int64_t>* offsets = nullptr) {
  Layout l;
  for (const Op& op : w.ops()) {
    int64_t at = 0;
    if (op.kind == OpKind::kGemm && op.m <= kSkinnyGemmMaxM) {
      at = l.Add(static_cast<int64_t>(SkinnyGemmWorkspaceBytes(op.m, op.n, op.k, sm_count)));
    }
    if (offsets != nullptr) offsets->push_back(at);
  }
  return l.size();
}

SharedLayout LayoutShared(const Workload& w, const Dims& d, int num_splits, int sm_count) {
  Layout l;
  SharedLayout o;
  o.embedding = l.Add(d.V * d.h * 2);
  o.lm_head = w.model().tied_embeddings() ? o.embedding : l.Add(WeightBytes(d.V, d.h, 2));
  o.final_norm_w = l.Add(d.h * 2);
  o.ids = l.Add(d.T * 4);
  o.last_ids = l.Add(d.B * 4);
  o.x_last = l.Add(d.B * d.h * 2);
  o.r_last = l.Add(d.B * d.h * 2);
  o.x = l.Add(d.T * d.h * 2);
  o.xn = l.Add(d.T * d.h * 2);
  o.qkv = l.Add(d.T * (d.q + 2 * d.kv) * 2);
  o.q = l.Add(d.T * d.q * 2);
  o.attn_out = l.Add(d.T * d.q * 2);
  o.tmp_h = l.Add(d.T * d.h * 2);
  o.gate_up = l.Add(d.T * 2 * d.f * 2);
  o.act = l.Add(d.T * d.f * 2);
  o.logits = l.Add(d.B * d.V * 2);
  o.attn_ws = l.Add(static_cast<int64_t>(DecodeAttentionWorkspaceBytes(
      static_cast<int>(d.B), static_cast<int>(d.Hq), static_cast<int>(d.d), num_splits)));
  o.gemm_ws = l.Add(SkinnyWorkspaceBytes(w, sm_count));
  if (d.fp8) {
    o.xq = l.Add(d.T * std::max({d.h, d.q, d.f}));
    o.x_scales = l.Add(d.T * 4);
  }
  const bool small_batch_gemm = std::any_of(w.ops().begin(), w.ops().end(), [](const Op& op) {
    return op.kind == OpKind::kGemm && op.m <= kSkinnyGemmMaxM;
  });
  if (d.fp8 || small_batch_gemm) {
    o.staging = l.Add(std::max(kStagingBytes, 128 * std::max({d.h, d.q, d.f}) * 2));
  }
  o.total = l.size();
  return o;
}

int SplitsFor(const Dims& d, const StepRunner::Options& options) {
  return ChooseDecodeSplits(static_cast<int>(d.B), static_cast<int>(d.Hkv),
                            static_cast<int>(d.capacity), options.sm_count, options.dram_gbps);
}

__nv_bfloat16* At(const DeviceBuffer& b, int64_t offset) {
  return reinterpret_cast<__nv_bfloat16*>(b.as<char>() + offset);
}

template <typename T>
T* AtOrNull(const DeviceBuffer& b, int64_t offset) {
  return offset < 0 ? nullptr : reinterpret_cast<T*>(b.as<char>() + offset);
}

}  // namespace

ResidencyInput StepRunner::Sizes(const Workload& w, const Options& options) {
  ResidencyInput in;
  absl::StatusOr<Dims> d = DimsOf(w);
  if (!d.ok()) return in;
  in.num_layers = w.model().num_layers();
  in.layer_bytes = LayoutLayer(*d).total;
  for (const Op& op : w.ops()) {
    if (op.per_layer) {
      in.layer_step_bytes += op.own_bytes();  // one layer's execution
    } else {
      in.other_step_bytes += op.count * op.own_bytes();
    }
  }
  in.shared_bytes =
      LayoutShared(w, *d, SplitsFor(*d, options), options.sm_count).total;
  in.free_bytes = options.free_bytes;
  in.l2_bytes = options.l2_bytes;
  return in;
}

absl::StatusOr<std::unique_ptr<StepRunner>> StepRunner::Create(const Workload& w,
                                                               CublasLtGemm* gemm,
                                                               const Options& options,
                                                               cudaStream_t stream) {
  absl::StatusOr<Dims> dims = DimsOf(w);
  if (!dims.ok()) return dims.status();
  const Dims d = *dims;
  absl::StatusOr<ResidencyPlan> plan = PlanResidency(Sizes(w, options));
  if (!plan.ok()) return plan.status();

  auto runner = std::unique_ptr<StepRunner>(new StepRunner(w, gemm));
  StepRunner& r = *runner;
  r.plan_ = *plan;
  r.cache_capacity_ = d.capacity;
  r.num_splits_ = SplitsFor(d, options);
  r.sm_count_ = options.sm_count;

  const SharedLayout s = LayoutShared(w, d, r.num_splits_, options.sm_count);
  absl::StatusOr<DeviceBuffer> shared = DeviceBuffer::Allocate(s.total, "shared buffers");
  if (!shared.ok()) return shared.status();
  r.shared_ = *std::move(shared);
  r.act_ = Activations{reinterpret_cast<int32_t*>(r.shared_.as<char>() + s.ids),
                       reinterpret_cast<int32_t*>(r.shared_.as<char>() + s.last_ids),
                       At(r.shared_, s.x_last), At(r.shared_, s.r_last),
                       At(r.shared_, s.embedding), At(r.shared_, s.lm_head),
                       At(r.shared_, s.final_norm_w), At(r.shared_, s.x), At(r.shared_, s.xn),
                       At(r.shared_, s.qkv), At(r.shared_, s.q), At(r.shared_, s.attn_out),
                       At(r.shared_, s.tmp_h), At(r.shared_, s.gate_up), At(r.shared_, s.act),
                       At(r.shared_, s.logits), AtOrNull<__nv_fp8_e4m3>(r.shared_, s.xq),
                       AtOrNull<float>(r.shared_, s.x_scales)};
  r.attn_workspace_ = reinterpret_cast<float*>(r.shared_.as<char>() + s.attn_ws);
  r.gemm_workspace_ = r.shared_.as<char>() + s.gemm_ws;
  r.gemm_workspace_bytes_ = static_cast<size_t>(
      SkinnyWorkspaceBytes(w, options.sm_count, &r.gemm_workspace_offsets_));
  // The skinny GEMM's split-K counters and partials must start at zero; every call leaves them
  // zero again.
  if (r.gemm_workspace_bytes_ > 0) {
    TP_CUDA_RETURN_IF_ERROR(
        cudaMemsetAsync(r.gemm_workspace_, 0, r.gemm_workspace_bytes_, stream));
  }

  const LayerLayout ll = LayoutLayer(d);
  for (int64_t i = 0; i < r.plan_.layer_buffers; ++i) {
    absl::StatusOr<DeviceBuffer> b =
        DeviceBuffer::Allocate(ll.total, absl::StrCat("layer buffer ", i).c_str());
    if (!b.ok()) return b.status();
    r.layers_.push_back(LayerBuffers{
        At(*b, ll.attn_norm_w), At(*b, ll.ffn_norm_w), AtOrNull<void>(*b, ll.w_qkv),
        AtOrNull<void>(*b, ll.w_o), AtOrNull<void>(*b, ll.w_gate_up), AtOrNull<void>(*b, ll.w_down),
        AtOrNull<float>(*b, ll.s_qkv), AtOrNull<float>(*b, ll.s_o),
        AtOrNull<float>(*b, ll.s_gate_up), AtOrNull<float>(*b, ll.s_down), At(*b, ll.k_cache),
        At(*b, ll.v_cache)});
    r.layer_memory_.push_back(*std::move(b));
  }

  // Random data everywhere (never zeros). Weights scaled by sqrt(3/k) so that each projection
  // keeps its input's variance and 80 layers of residual adds stay far from bf16's range.
  uint64_t seed = options.seed;
  auto fill = [&](__nv_bfloat16* p, int64_t n, float scale) {
    return FillRandomBf16(p, n, seed++, scale, stream);
  };
  auto ws = [](int64_t k) { return std::sqrt(3.0f / static_cast<float>(k)); };
  // A weight matrix [n,k]: random bf16 as is, or for fp8 random bf16 rows quantized per row
  // through the staging buffer, a slice at a time.
  __nv_bfloat16* staging = s.staging >= 0 ? At(r.shared_, s.staging) : nullptr;
  const int64_t staging_bytes = s.staging >= 0 ? s.total - s.staging : 0;
  auto fill_weight = [&](void* p, float* scales, int64_t n, int64_t k) -> absl::Status {
    if (!d.fp8) return fill(static_cast<__nv_bfloat16*>(p), n * k, ws(k));
    const int64_t rows = std::max<int64_t>(1, staging_bytes / (k * 2));
    for (int64_t r0 = 0; r0 < n; r0 += rows) {
      const int64_t nr = std::min(rows, n - r0);
      TP_RETURN_IF_ERROR(fill(staging, nr * k, ws(k)));
      TP_RETURN_IF_ERROR(QuantizeWeightsFp8(
          staging, static_cast<__nv_fp8_e4m3*>(p) + r0 * k, scales + r0, nr, k, stream));
    }
    return absl::OkStatus();
  };
  TP_RETURN_IF_ERROR(fill(r.act_.embedding, d.V * d.h, 1.0f));
  if (!w.model().tied_embeddings()) TP_RETURN_IF_ERROR(fill(r.act_.lm_head, d.V * d.h, ws(d.h)));
  TP_RETURN_IF_ERROR(fill(r.act_.final_norm_w, d.h, 1.0f));
  TP_RETURN_IF_ERROR(FillRandomTokenIds(r.act_.ids, static_cast<int>(d.T),
                                        static_cast<int>(d.V), seed++, stream));
  // Prefill: the logits come from the last token of each prompt, row b * seq_len + seq_len - 1.
  std::vector<int32_t> last(d.B);
  for (int64_t b = 0; b < d.B; ++b) last[b] = static_cast<int32_t>((b + 1) * (d.T / d.B) - 1);
  TP_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(r.act_.last_ids, last.data(), d.B * sizeof(int32_t),
                                          cudaMemcpyHostToDevice, stream));
  for (const LayerBuffers& l : r.layers_) {
    TP_RETURN_IF_ERROR(fill(l.attn_norm_w, d.h, 1.0f));
    TP_RETURN_IF_ERROR(fill(l.ffn_norm_w, d.h, 1.0f));
    TP_RETURN_IF_ERROR(fill_weight(l.w_qkv, l.s_qkv, d.q + 2 * d.kv, d.h));
    TP_RETURN_IF_ERROR(fill_weight(l.w_o, l.s_o, d.h, d.q));
    TP_RETURN_IF_ERROR(fill_weight(l.w_gate_up, l.s_gate_up, 2 * d.f, d.h));
    TP_RETURN_IF_ERROR(fill_weight(l.w_down, l.s_down, d.h, d.f));
    TP_RETURN_IF_ERROR(fill(l.k_cache, d.B * d.kv * d.capacity, 1.0f));
    TP_RETURN_IF_ERROR(fill(l.v_cache, d.B * d.kv * d.capacity, 1.0f));
  }
  // Activations get random contents too, so that no op ever reads zeros.
  const int64_t act_elems = (s.logits + d.B * d.V * 2 - s.x) / 2;
  TP_RETURN_IF_ERROR(fill(r.act_.x, act_elems, 1.0f));
  if (d.fp8) {
    absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> fp8 = CublasLtFp8Gemm::Create();
    if (!fp8.ok()) return fp8.status();
    r.fp8_gemm_ = *std::move(fp8);
  }

  // cuBLASLt's heuristic runs on the host before any graph capture; its candidates are timed on
  // the real buffers (rotating the layer buffers) and the fastest kept, once per shape.
  // Then, for --gemm=auto, the project's own skinny GEMM is timed against the tuned cuBLASLt
  // algorithm on the same buffers and the faster one runs the op.
  r.gemm_choice_.assign(w.ops().size(), GemmChoice{});
  for (size_t i = 0; i < w.ops().size(); ++i) {
    const Op& op = w.ops()[i];
    if (op.kind != OpKind::kGemm) continue;
    const size_t layers = op.per_layer ? static_cast<size_t>(r.plan_.layer_buffers) : 1;
    GemmChoice& c = r.gemm_choice_[i];
    // The own GEMM reads its weights packed, in place (gemv.h): not an LM head that is also the
    // embedding table, which the embedding op reads row-major.
    const bool shared_weights = op.name == "lm_head" && w.model().tied_embeddings();
    const bool own_fits = op.m <= kSkinnyGemmMaxM && !shared_weights;
    const bool w8a8_fits = op.weight_dtype == FP8_E4M3 && op.k % 16 == 0;
    const bool force_own = options.gemm == "own" || options.gemm == "own_w8a8";
    if (force_own && op.m <= kSkinnyGemmMaxM && shared_weights) {
      c.calibration = "own: not on the LM head, whose weights are the embedding table";
    }
    if (force_own && own_fits) {
      c.own = true;
      c.w8a8 = options.gemm == "own_w8a8" && w8a8_fits;
      continue;
    }
    if (absl::Status tuned = r.AutotuneCublasLt(i, stream); !tuned.ok()) {
      // cuBLASLt may have no kernel for a shape (e.g. no per-row-scaled fp8 on this GPU; a
      // bf16 heuristic answering CUBLAS_STATUS_NOT_SUPPORTED, which CublasStatus makes
      // Unimplemented); auto then runs the own kernel where it can, and says why.
      const bool no_kernel = absl::IsNotFound(tuned) || absl::IsInvalidArgument(tuned) ||
                             absl::IsUnimplemented(tuned);
      if (options.gemm != "auto" || !own_fits || !no_kernel) return tuned;
      c.own = true;
      c.calibration = absl::StrCat("auto: cuBLASLt unavailable (", tuned.message(), ")");
      continue;
    }
    if (options.gemm == "cublaslt" || !own_fits) continue;
    c.own = true;
    absl::StatusOr<double> own_ms = r.TimeRotated(i, layers, stream);
    if (!own_ms.ok()) return own_ms.status();
    // With fp8 weights, also the own kernel on e4m3 activations (k a multiple of 16).
    std::optional<double> w8a8_ms;
    if (w8a8_fits) {
      c.w8a8 = true;
      absl::StatusOr<double> ms = r.TimeRotated(i, layers, stream);
      if (!ms.ok()) return ms.status();
      w8a8_ms = *ms;
      c.w8a8 = false;
    }
    c.own = false;
    absl::StatusOr<double> lt_ms = r.TimeRotated(i, layers, stream);
    if (!lt_ms.ok()) return lt_ms.status();
    const double best_own = std::min(*own_ms, w8a8_ms.value_or(*own_ms));
    c.own = best_own <= *lt_ms;
    c.w8a8 = c.own && w8a8_ms.has_value() && *w8a8_ms < *own_ms;
    const Op* producer = r.CalibratedWith(i);
    const std::string with = producer ? absl::StrCat(" with ", producer->name) : "";
    c.calibration =
        w8a8_ms.has_value()
            ? absl::StrFormat("auto: own %.1f us, own W8A8 %.1f us, cuBLASLt %.1f us per call%s",
                              1e3 * *own_ms, 1e3 * *w8a8_ms, 1e3 * *lt_ms, with)
            : absl::StrFormat("auto: own %.1f us vs cuBLASLt %.1f us per call%s", 1e3 * *own_ms,
                              1e3 * *lt_ms, with);
  }
  // The prediction and the rates count what runs: e4m3 activations where a GEMM reads them.
  for (size_t i = 0; i < w.ops().size(); ++i) {
    if (!r.QuantizesActivations(i)) continue;
    TP_RETURN_IF_ERROR(
        r.workload_.CountE4m3Activations(i, r.ReadsCopyFromPreviousOp(i)));
  }
  // Timing did not depend on the weights' values; the products do. Each weight the own GEMM
  // runs on is now packed, in place, in every layer buffer; each GEMM is checked as it will run.
  for (size_t i = 0; i < w.ops().size(); ++i) {
    const Op& op = w.ops()[i];
    if (op.kind != OpKind::kGemm) continue;
    auto pack = [&]() -> absl::Status {
      if (!r.gemm_choice_[i].own) return absl::OkStatus();
      const int64_t layers = op.per_layer ? r.plan_.layer_buffers : 1;
      for (int64_t layer = 0; layer < layers; ++layer) {
        absl::StatusOr<GemmBuffers> b = r.GemmBuffersOf(op, layer);
        if (!b.ok()) return b.status();
        void* weights = const_cast<void*>(b->w);  // the runner's own buffer
        TP_RETURN_IF_ERROR(PackSkinnyGemmWeightsInPlace(
            weights, op.n, op.k, op.weight_dtype == FP8_E4M3 ? 1 : 2, staging,
            static_cast<size_t>(staging_bytes), stream));
      }
      return absl::OkStatus();
    };
    auto pack_then_hook = [&]() -> absl::Status {
      TP_RETURN_IF_ERROR(pack());
      if (!options.TEST_before_checked_launch) return absl::OkStatus();
      absl::StatusOr<GemmBuffers> b = r.GemmBuffersOf(op, 0);
      if (!b.ok()) return b.status();
      return options.TEST_before_checked_launch(op, *b, stream);
    };
    TP_RETURN_IF_ERROR(options.check_gemms ? r.CheckGemm(i, pack_then_hook, stream) : pack());
  }
  TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return runner;
}

absl::Status StepRunner::Launch(const Op& op, int64_t layer, cudaStream_t stream) const {
  // In eager mode the range encloses the launch; in a graph, its capture (ncu --nvtx and nsys
  // attribute graph kernels to the ranges open when they were captured).
  const NvtxRange range(op.name);
  const Activations& a = act_;
  const LayerBuffers& l = layer_buffers(layer);
  const AttentionShape& at = op.attn;
  const ModelSpec& model = workload_.model();
  const int T = static_cast<int>(workload_.tokens_per_step());
  const float eps = model.rms_norm_eps() > 0 ? model.rms_norm_eps() : 1e-5f;
  const std::string& n = op.name;
  if (n == "embedding") {
    // The rows go where a block's output goes (tmp_h), for the first layer's norm to add to x,
    // the residual stream, which starts at zero.
    const Op& lm = workload_.ops().back();
    TP_RETURN_IF_ERROR(EmbeddingGather(a.embedding, a.ids, a.tmp_h, static_cast<int>(op.m),
                                       static_cast<int>(op.n), static_cast<int>(lm.n), stream));
    TP_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(a.x, 0, op.m * op.n * sizeof(__nv_bfloat16), stream));
    return absl::OkStatus();
  }
  const size_t index = static_cast<size_t>(&op - workload_.ops().data());
  // Where the op quantizes for the GEMM after it, that GEMM reads only the copy: no bf16 output.
  const bool quantizes = QuantizesForNextGemm(index);
  const E4m3Rows quantized = quantizes ? E4m3Rows{a.xq, a.x_scales} : E4m3Rows{};
  // Each norm first adds the output of the block before it (tmp_h) to x.
  if (n == "add_attn_norm" || n == "add_ffn_norm") {
    return AddRmsNorm(a.x, a.tmp_h, n == "add_attn_norm" ? l.attn_norm_w : l.ffn_norm_w,
                      quantizes ? nullptr : a.xn, static_cast<int>(op.m), static_cast<int>(op.n),
                      eps, stream, quantized);
  }
  if (n == "add_final_norm") {
    __nv_bfloat16* x = a.x;
    const __nv_bfloat16* r = a.tmp_h;
    if (T != op.m) {
      // Prefill: each prompt's last row of both first (B rows of the T, a negligible copy).
      TP_RETURN_IF_ERROR(EmbeddingGather(a.x, a.last_ids, a.x_last, static_cast<int>(op.m),
                                         static_cast<int>(op.n), T, stream));
      TP_RETURN_IF_ERROR(EmbeddingGather(a.tmp_h, a.last_ids, a.r_last, static_cast<int>(op.m),
                                         static_cast<int>(op.n), T, stream));
      x = a.x_last;
      r = a.r_last;
    }
    return AddRmsNorm(x, r, a.final_norm_w, a.xn, static_cast<int>(op.m), static_cast<int>(op.n),
                      eps, stream);
  }
  if (op.kind == OpKind::kGemm) return LaunchGemm(op, layer, stream);
  if (n == "rope_kv_append") {
    return RopeKvAppend(a.qkv, a.q, l.k_cache, l.v_cache, static_cast<int>(at.batch),
                        static_cast<int>(at.q_len), static_cast<int>(at.start_pos),
                        static_cast<int>(at.num_q_heads), static_cast<int>(at.num_kv_heads),
                        static_cast<int>(at.head_dim), static_cast<int>(cache_capacity_),
                        static_cast<float>(model.rope_theta() > 0 ? model.rope_theta() : 10000.0),
                        stream);
  }
  if (n == "attention" && at.q_len > 1) {
    return PrefillAttention(a.q, l.k_cache, l.v_cache, a.attn_out, static_cast<int>(at.batch),
                            static_cast<int>(at.q_len), static_cast<int>(at.start_pos),
                            static_cast<int>(at.num_q_heads), static_cast<int>(at.num_kv_heads),
                            static_cast<int>(at.head_dim), static_cast<int>(cache_capacity_),
                            1.0f / std::sqrt(static_cast<float>(at.head_dim)), at.causal, stream);
  }
  if (n == "attention") {
    return DecodeAttention(a.q, l.k_cache, l.v_cache, a.attn_out, static_cast<int>(at.batch),
                           static_cast<int>(at.num_q_heads), static_cast<int>(at.num_kv_heads),
                           static_cast<int>(at.head_dim), static_cast<int>(at.kv_len()),
                           static_cast<int>(cache_capacity_),
                           1.0f / std::sqrt(static_cast<float>(at.head_dim)), num_splits_,
                           attn_workspace_, stream);
  }
  if (n == "silu_mul") {
    return SiluMul(a.gate_up, quantizes ? nullptr : a.act, static_cast<int>(op.m),
                   static_cast<int>(op.n), stream, quantized);
  }
  return absl::UnimplementedError(absl::StrCat("no kernel for op '", n, "'"));
}

absl::StatusOr<StepRunner::GemmBuffers> StepRunner::GemmBuffersOf(const Op& op,
                                                                  int64_t layer) const {
  const Activations& a = act_;
  const LayerBuffers& l = layer_buffers(layer);
  const std::string& n = op.name;
  if (n == "qkv_proj") return GemmBuffers{a.xn, l.w_qkv, l.s_qkv, a.qkv};
  if (n == "o_proj") return GemmBuffers{a.attn_out, l.w_o, l.s_o, a.tmp_h};
  if (n == "gate_up_proj") return GemmBuffers{a.xn, l.w_gate_up, l.s_gate_up, a.gate_up};
  if (n == "down_proj") return GemmBuffers{a.act, l.w_down, l.s_down, a.tmp_h};
  if (n == "lm_head") return GemmBuffers{a.xn, a.lm_head, nullptr, a.logits};
  return absl::InvalidArgumentError(absl::StrCat("op '", n, "' is not a GEMM of the step"));
}

bool StepRunner::PacksWeights(size_t op_index) const {
  return op_index < gemm_choice_.size() && gemm_choice_[op_index].own;
}

bool StepRunner::QuantizesActivations(size_t op_index) const {
  const Op& op = workload_.ops().at(op_index);
  if (op.kind != OpKind::kGemm || op.weight_dtype != FP8_E4M3) return false;
  return op_index >= gemm_choice_.size() || !gemm_choice_[op_index].own ||
         gemm_choice_[op_index].w8a8;
}

bool StepRunner::FastAccumulation(size_t op_index) const {
  const bool cublaslt_fp8 = QuantizesActivations(op_index) && !gemm_choice_.at(op_index).own;
  return cublaslt_fp8 && fp8_gemm_ != nullptr && fp8_gemm_->fast_accum();
}

bool StepRunner::FeedsNextGemm(size_t op_index) const {
  const std::vector<Op>& ops = workload_.ops();
  if (op_index + 1 >= ops.size()) return false;
  // The pairs where the op writes exactly the next GEMM's x (GemmBuffersOf): xn, xn, act.
  const std::string& n = ops[op_index].name;
  const std::string& next = ops[op_index + 1].name;
  return (n == "add_attn_norm" && next == "qkv_proj") ||
         (n == "add_ffn_norm" && next == "gate_up_proj") ||
         (n == "silu_mul" && next == "down_proj");
}

const Op* StepRunner::CalibratedWith(size_t op_index) const {
  const Op& op = workload_.ops().at(op_index);
  if (op.weight_dtype != FP8_E4M3 || op_index == 0 || !FeedsNextGemm(op_index - 1)) return nullptr;
  return &workload_.ops()[op_index - 1];
}

bool StepRunner::QuantizesForNextGemm(size_t op_index) const {
  return FeedsNextGemm(op_index) && QuantizesActivations(op_index + 1) &&
         E4m3CopyIsFused(static_cast<int>(workload_.ops()[op_index].n));
}

bool StepRunner::ReadsCopyFromPreviousOp(size_t op_index) const {
  return op_index > 0 && QuantizesForNextGemm(op_index - 1);
}

absl::Status StepRunner::LaunchGemm(const Op& op, int64_t layer, cudaStream_t stream) const {
  absl::StatusOr<GemmBuffers> o = GemmBuffersOf(op, layer);
  if (!o.ok()) return o.status();
  const size_t index = static_cast<size_t>(&op - workload_.ops().data());
  const bool fp8 = o->w_scales != nullptr;
  if (QuantizesActivations(index) && !ReadsCopyFromPreviousOp(index)) {
    // W8A8 after an op that cannot quantize for it (o_proj after attention; down_proj after a
    // SiluMul whose rows are too wide, E4m3CopyIsFused): the activations to e4m3 per token here
    // (the same per-row quantizer as the weights).
    TP_RETURN_IF_ERROR(QuantizeWeightsFp8(o->x, act_.xq, act_.x_scales, op.m, op.k, stream));
  }
  if (index < gemm_choice_.size() && gemm_choice_[index].own) {
    const int64_t offset = gemm_workspace_offsets_[index];
    void* ws = static_cast<char*>(gemm_workspace_) + offset;
    const size_t ws_bytes = gemm_workspace_bytes_ - static_cast<size_t>(offset);
    if (gemm_choice_[index].w8a8) {
      return SkinnyGemmW8A8(act_.xq, act_.x_scales, static_cast<const __nv_fp8_e4m3*>(o->w),
                            o->w_scales, o->y, op.m, op.n, op.k, ws, ws_bytes, stream);
    }
    if (fp8) {
      return SkinnyGemmFp8(o->x, static_cast<const __nv_fp8_e4m3*>(o->w), o->w_scales, o->y,
                           op.m, op.n, op.k, ws, ws_bytes, stream);
    }
    return SkinnyGemmBf16(o->x, static_cast<const __nv_bfloat16*>(o->w), o->y, op.m, op.n, op.k,
                          ws, ws_bytes, stream);
  }
  if (fp8) {
    return fp8_gemm_->Run(act_.xq, act_.x_scales, static_cast<const __nv_fp8_e4m3*>(o->w),
                          o->w_scales, o->y, op.m, op.n, op.k, stream);
  }
  return gemm_->Run(o->x, static_cast<const __nv_bfloat16*>(o->w), o->y, op.m, op.n, op.k, stream);
}

absl::Status StepRunner::AutotuneCublasLt(size_t op_index, cudaStream_t stream) {
  const Op& op = workload_.ops().at(op_index);
  const int64_t layers = op.per_layer ? plan_.layer_buffers : 1;
  std::vector<GemmBuffers> buffers;
  for (int64_t layer = 0; layer < layers; ++layer) {
    absl::StatusOr<GemmBuffers> b = GemmBuffersOf(op, layer);
    if (!b.ok()) return b.status();
    buffers.push_back(*b);
  }
  if (buffers.front().w_scales != nullptr) {
    // The op's own activations quantized, so the candidates are timed on real e4m3 data.
    TP_RETURN_IF_ERROR(QuantizeWeightsFp8(buffers.front().x, act_.xq, act_.x_scales, op.m, op.k,
                                          stream));
    std::vector<CublasLtFp8Gemm::ScaledOperands> operands;
    for (const GemmBuffers& b : buffers) {
      operands.push_back({act_.xq, act_.x_scales, static_cast<const __nv_fp8_e4m3*>(b.w),
                          b.w_scales, b.y});
    }
    return fp8_gemm_->Autotune(op.m, op.n, op.k, operands, stream);
  }
  std::vector<CublasLtGemm::Operands> operands;
  for (const GemmBuffers& b : buffers) {
    operands.push_back({b.x, static_cast<const __nv_bfloat16*>(b.w), b.y});
  }
  return gemm_->Autotune(op.m, op.n, op.k, operands, stream);
}

absl::Status StepRunner::CheckGemm(size_t op_index, const std::function<absl::Status()>& pack,
                                   cudaStream_t stream) {
  const Op& op = workload_.ops().at(op_index);
  absl::StatusOr<GemmBuffers> b = GemmBuffersOf(op, 0);
  if (!b.ok()) return b.status();
  // x as the launch reads it: bf16, or e4m3 per token in act_.xq, where the op before writes it
  // in the step (the same quantizer, byte for byte) or the launch quantizes it again.
  const bool x8 = QuantizesActivations(op_index);
  if (x8) {
    TP_RETURN_IF_ERROR(QuantizeWeightsFp8(b->x, act_.xq, act_.x_scales, op.m, op.k, stream));
  }
  // Rows are independent: all of them up to 256, else the first and the last 128 (the partial
  // tiles at the end of m are where a plan goes wrong).
  std::vector<std::pair<int64_t, int64_t>> ranges;  // first row, rows
  if (op.m <= 256) {
    ranges.push_back({0, op.m});
  } else {
    ranges.push_back({0, 128});
    ranges.push_back({op.m - 128, 128});
  }
  int64_t rows = 0;
  for (const auto& [first, count] : ranges) rows += count;
  absl::StatusOr<DeviceBuffer> ref = DeviceBuffer::Allocate(rows * op.n * 4, "GEMM reference");
  if (!ref.ok()) return ref.status();
  int64_t at = 0;
  for (const auto& [first, count] : ranges) {
    const ReferenceOperand x =
        x8 ? ReferenceOperand{act_.xq + first * op.k, act_.x_scales + first}
           : ReferenceOperand{b->x + first * op.k, nullptr};
    TP_RETURN_IF_ERROR(ReferenceGemmScaled(x, {b->w, b->w_scales}, ref->as<float>() + at * op.n,
                                           count, op.n, op.k, stream));
    at += count;
  }
  TP_RETURN_IF_ERROR(pack());
  TP_RETURN_IF_ERROR(FillBf16(b->y, op.m * op.n, NAN, stream));  // what is not written fails
  TP_RETURN_IF_ERROR(Launch(op, 0, stream));
  std::vector<__nv_bfloat16> y(rows * op.n);
  std::vector<float> want_f(rows * op.n);
  at = 0;
  for (const auto& [first, count] : ranges) {
    TP_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(y.data() + at * op.n, b->y + first * op.n,
                                            count * op.n * sizeof(__nv_bfloat16),
                                            cudaMemcpyDeviceToHost, stream));
    at += count;
  }
  TP_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(want_f.data(), ref->get(), want_f.size() * 4,
                                          cudaMemcpyDeviceToHost, stream));
  TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  std::vector<float> got(y.size());
  for (size_t e = 0; e < y.size(); ++e) got[e] = __bfloat162float(y[e]);
  const std::vector<double> want(want_f.begin(), want_f.end());
  const ref::Comparison c =
      ref::CompareGemm(got, want, op.k, FastAccumulation(op_index), {rows, op.n});
  if (!c.ok) {
    return absl::InternalError(absl::StrCat("GEMM check failed: ", op.name, " at m=", op.m,
                                            " on ", Implementation(op_index), ": ", c.worst,
                                            " (rows checked: ", rows, ")"));
  }
  return absl::OkStatus();
}

absl::Status StepRunner::EnqueueOpOnce(size_t op_index, int64_t layer, cudaStream_t stream) const {
  return Launch(workload_.ops().at(op_index), layer, stream);
}

absl::Status StepRunner::EnqueueOp(size_t op_index, cudaStream_t stream) const {
  const Op& op = workload_.ops().at(op_index);
  for (int64_t i = 0; i < op.count; ++i) TP_RETURN_IF_ERROR(Launch(op, i, stream));
  return absl::OkStatus();
}

absl::Status StepRunner::EnqueueStep(cudaStream_t stream) const {
  const std::vector<Op>& ops = workload_.ops();
  size_t i = 0;
  for (; i < ops.size() && !ops[i].per_layer; ++i) TP_RETURN_IF_ERROR(Launch(ops[i], 0, stream));
  const size_t first_layer_op = i;
  size_t end_layer_ops = first_layer_op;
  while (end_layer_ops < ops.size() && ops[end_layer_ops].per_layer) ++end_layer_ops;
  for (int64_t layer = 0; layer < static_cast<int64_t>(workload_.model().num_layers()); ++layer) {
    for (size_t j = first_layer_op; j < end_layer_ops; ++j) {
      TP_RETURN_IF_ERROR(Launch(ops[j], layer, stream));
    }
  }
  for (size_t j = end_layer_ops; j < ops.size(); ++j) TP_RETURN_IF_ERROR(Launch(ops[j], 0, stream));
  return absl::OkStatus();
}

absl::StatusOr<double> StepRunner::TimeRotated(size_t op_index, size_t layers,
                                               cudaStream_t stream) const {
  const Op& op = workload_.ops().at(op_index);
  cudaEvent_t start = nullptr, stop = nullptr;
  TP_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  const absl::Cleanup destroy_start = [start] { cudaEventDestroy(start); };
  TP_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  const absl::Cleanup destroy_stop = [stop] { cudaEventDestroy(stop); };
  // Distinct layer buffers one after another, as in the step, so no call finds W in L2.
  const int64_t per_round = static_cast<int64_t>(std::min<size_t>(layers, 8));
  const Op* producer = CalibratedWith(op_index);
  double best = 0;
  for (int round = 0; round < 4; ++round) {  // round 0 warms up
    TP_CUDA_RETURN_IF_ERROR(cudaEventRecord(start, stream));
    for (int64_t l = 0; l < per_round; ++l) {
      if (producer != nullptr) TP_RETURN_IF_ERROR(Launch(*producer, l, stream));
      TP_RETURN_IF_ERROR(Launch(op, l, stream));
    }
    TP_CUDA_RETURN_IF_ERROR(cudaEventRecord(stop, stream));
    TP_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop));
    float ms = 0;
    TP_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start, stop));
    if (round == 1 || (round > 1 && ms / per_round < best)) best = ms / per_round;
  }
  return best;
}

std::string StepRunner::Implementation(size_t op_index) const {
  const Op& op = workload_.ops().at(op_index);
  if (op.kind == OpKind::kGemm) {
    const GemmChoice& c = gemm_choice_.at(op_index);
    const bool fp8 = op.weight_dtype == FP8_E4M3;
    const std::string quantized =
        ReadsCopyFromPreviousOp(op_index)
            ? absl::StrCat("e4m3 activations from ", workload_.ops()[op_index - 1].name, ", then ")
            : "activations to e4m3 per token, then ";
    std::string what =
        c.own ? absl::StrCat(c.w8a8 ? quantized : "",
                             "truthput skinny_gemm_", c.w8a8 ? "w8a8" : fp8 ? "fp8" : "bf16", " (",
                             SkinnyGemmPlanDescription(
                                 PlanSkinnyGemm(op.m, op.n, op.k, fp8 ? 1 : 2, sm_count_)),
                             ")")
        : fp8 ? absl::StrCat(quantized, fp8_gemm_->AlgoDescription(op.m, op.n, op.k,
                                                        CublasLtFp8Gemm::Scaling::kPerRow))
              : gemm_->AlgoDescription(op.m, op.n, op.k);
    if (!c.calibration.empty()) absl::StrAppend(&what, "; ", c.calibration);
    return what;
  }
  if (op.kind == OpKind::kAttention && op.attn.q_len > 1) {
    // Named, so that a GPU or build without the wgmma kernel shows in the result.
    return absl::StrCat("truthput prefill_attention (",
                        PrefillAttentionAutoKernel(op.attn.head_dim) ==
                                PrefillAttentionKernel::kWgmma
                            ? "wgmma kernel: TMA, sm_90a"
                            : "mma.sync kernel",
                        "; causal, GQA, flash-style)");
  }
  if (op.kind == OpKind::kAttention) {
    return absl::StrCat("truthput decode_attention (GQA, ", num_splits_, " context splits)");
  }
  std::string what = absl::StrCat("truthput ", OpKindName(op.kind));
  if (QuantizesForNextGemm(op_index)) {
    absl::StrAppend(&what, ", output only in e4m3 per token, for ",
                    workload_.ops()[op_index + 1].name);
  }
  return what;
}

}  // namespace truthput
