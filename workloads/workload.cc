#include "workloads/workload.h"

#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace truthput {
namespace {

// Activations are bf16 (hidden states, Q/K/V, logits) but where a W8A8 GEMM reads e4m3
// (Workload::CountE4m3Activations).
constexpr int64_t kActBytes = 2;

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// One shard's sizes under tensor parallelism: heads, FFN columns and vocabulary are split,
// the hidden size and the norms are replicated.
struct ShardDims {
  int64_t hidden, q_heads, kv_heads, head_dim, ffn, vocab, layers;
  int64_t q() const { return q_heads * head_dim; }
  int64_t kv() const { return kv_heads * head_dim; }
};

ShardDims Shard(const ModelSpec& m, int64_t tp) {
  return ShardDims{static_cast<int64_t>(m.hidden_size()),
                   static_cast<int64_t>(m.num_heads()) / tp,
                   static_cast<int64_t>(m.num_kv_heads()) / tp,
                   static_cast<int64_t>(m.head_dim()),
                   CeilDiv(m.ffn_size(), tp),
                   CeilDiv(m.vocab_size(), tp),
                   static_cast<int64_t>(m.num_layers())};
}

// A step's FLOPs plus its KV cache's bytes, in floating point: its projections' and attention's
// FLOPs (total_flops adds them) and the KV bytes, which dwarf every other count. Build refuses a
// step where this passes 2^62, so that no count nor sum of counts wraps.
double CountScale(const ShardDims& d, const StepConfig& c) {
  const double tokens = static_cast<double>(c.batch) * static_cast<double>(c.seq_len);
  const double positions =
      static_cast<double>(c.batch) * (static_cast<double>(c.context) + c.seq_len);
  const double pairs = c.phase == Phase::kDecode
                           ? positions
                           : tokens * (static_cast<double>(c.seq_len) + 1) / 2;
  const double params =
      static_cast<double>(d.layers) *
          (static_cast<double>(d.hidden) * (2.0 * d.q() + 2.0 * d.kv() + 3.0 * d.ffn)) +
      static_cast<double>(d.vocab) * d.hidden;
  return 2 * tokens * params + 4 * pairs * d.q() * static_cast<double>(d.layers) +
         positions * 2 * d.kv() * 4 * static_cast<double>(d.layers);
}

Op Gemm(std::string name, int64_t count, int64_t m, int64_t n, int64_t k, DType wt) {
  Op op{.name = std::move(name), .kind = OpKind::kGemm, .count = count, .m = m, .n = n, .k = k};
  op.weight_dtype = wt;
  op.flops = 2 * m * n * k;
  op.tensor_flops = true;
  op.weight_bytes = n * k * DTypeBytes(wt);
  if (wt == FP8_E4M3) op.weight_bytes += n * 4;  // one fp32 scale per output channel
  op.act_bytes = (m * k + m * n) * kActBytes;
  return op;
}

// x += r, then RMSNorm of x into y: the add, then square, accumulate, scale by the reciprocal
// root and multiply by the weight: 5 FLOPs per element. Reads x, r and the weight vector; writes
// x and y.
Op AddRmsNorm(std::string name, int64_t count, int64_t rows, int64_t cols) {
  Op op{.name = std::move(name), .kind = OpKind::kAddRmsNorm, .count = count, .m = rows, .n = cols};
  op.flops = 5 * rows * cols;
  op.weight_bytes = cols * kActBytes;
  op.act_bytes = 4 * rows * cols * kActBytes;
  return op;
}

}  // namespace

absl::string_view PhaseName(Phase phase) {
  return phase == Phase::kDecode ? "decode" : "prefill";
}

absl::string_view OpKindName(OpKind kind) {
  switch (kind) {
    case OpKind::kEmbedding: return "embedding";
    case OpKind::kAddRmsNorm: return "add_rmsnorm";
    case OpKind::kGemm: return "gemm";
    case OpKind::kRopeKvAppend: return "rope_kv_append";
    case OpKind::kAttention: return "attention";
    case OpKind::kSiluMul: return "silu_mul";
  }
  return "?";
}

int64_t DTypeBytes(DType dtype) {
  switch (dtype) {
    case FP8_E4M3: return 1;
    case FP32: return 4;
    default: return 2;
  }
}

absl::StatusOr<Workload> Workload::Build(const ModelSpec& model, const StepConfig& config) {
  const bool decode = config.phase == Phase::kDecode;
  if (config.batch < 1) {
    return absl::InvalidArgumentError(absl::StrCat("batch must be >= 1, got ", config.batch));
  }
  if (config.context < 0) {
    return absl::InvalidArgumentError(absl::StrCat("context must be >= 0, got ", config.context));
  }
  if (config.seq_len < 1) {
    return absl::InvalidArgumentError(absl::StrCat("seq_len must be >= 1, got ", config.seq_len));
  }
  if (decode && config.seq_len != 1) {
    return absl::InvalidArgumentError("a decode step has seq_len 1");
  }
  if (!decode && config.context != 0) {
    return absl::InvalidArgumentError("prefill starts from an empty KV cache (context 0)");
  }
  if (config.tp < 1 || model.num_heads() % config.tp != 0 ||
      model.num_kv_heads() % config.tp != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tp ", config.tp, " does not divide the heads of ", model.name(), " (",
                     model.num_heads(), " query heads, ", model.num_kv_heads(), " KV heads)"));
  }
  // Results hold batch, context and prompt length as uint32: beyond that they would wrap.
  constexpr int64_t kMaxSize = std::numeric_limits<uint32_t>::max();
  if (config.batch > kMaxSize || config.seq_len > kMaxSize ||
      config.context > kMaxSize - config.seq_len) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch ", config.batch, ", context ", config.context, ", prompt ", config.seq_len,
        ": each (and context + prompt) must be below 2^32"));
  }
  const int64_t positions = config.context + config.seq_len;
  if (model.max_context() != 0 && positions > static_cast<int64_t>(model.max_context())) {
    return absl::InvalidArgumentError(absl::StrCat("context + new tokens (", positions,
                                                   ") exceeds ", model.name(),
                                                   "'s max_context ", model.max_context()));
  }

  const ShardDims d = Shard(model, config.tp);
  if (const double scale = CountScale(d, config); scale > 0x1p62) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "batch %d, context %d, prompt %d: the step's FLOPs and bytes (%.3g) pass 2^62 (4.6e18), "
        "beyond which truthput's 64-bit counts and their sums could wrap",
        config.batch, config.context, config.seq_len, scale));
  }
  Workload w(model, config);
  const DType wt = model.weight_dtype();
  const DType kvt = model.kv_dtype();
  const int64_t B = config.batch;
  const int64_t T = B * config.seq_len;  // tokens through the layers
  const int64_t L = d.layers;

  // The residual stream x is carried between the blocks, and each block's output is added to it
  // by the norm after the block (as vLLM's fused_add_rms_norm does): every norm is an add and a
  // norm in one kernel. The embedding rows are the first such output, added to a stream that
  // starts at zero, so that the first layer runs the same ops as the others.
  //
  // The new tokens' embedding rows (a gather, not the whole table), and x set to zero.
  Op emb{.name = "embedding", .kind = OpKind::kEmbedding, .count = 1, .m = T, .n = d.hidden};
  emb.weight_bytes = T * d.hidden * kActBytes;  // the table is bf16 whatever weight_dtype is
  emb.act_bytes = 2 * T * d.hidden * kActBytes;
  w.ops_.push_back(emb);
  const size_t first_layer_op = w.ops_.size();

  w.ops_.push_back(AddRmsNorm("add_attn_norm", L, T, d.hidden));
  w.ops_.push_back(Gemm("qkv_proj", L, T, d.q() + 2 * d.kv(), d.hidden, wt));

  AttentionShape attn{.batch = B, .q_len = config.seq_len, .start_pos = config.context,
                      .num_q_heads = d.q_heads, .num_kv_heads = d.kv_heads,
                      .head_dim = d.head_dim, .causal = !decode};
  Op rope{.name = "rope_kv_append", .kind = OpKind::kRopeKvAppend, .count = L, .m = T,
          .n = d.q() + 2 * d.kv(), .attn = attn};
  rope.kv_dtype = kvt;
  rope.flops = 3 * T * (d.q() + d.kv());  // rotate pairs of Q and K: 2 mul + 1 add each
  rope.act_bytes = T * (d.q() + 2 * d.kv()) * kActBytes + T * d.q() * kActBytes;
  rope.kv_write_bytes = T * 2 * d.kv() * DTypeBytes(kvt);
  w.ops_.push_back(rope);

  // Attention FLOPs are its two matmuls (QK^T and PV), 2 FLOPs per multiply-add; softmax is
  // not counted. Decode: every query sees kv_len keys. Causal prefill: query i sees i+1 keys.
  Op at{.name = "attention", .kind = OpKind::kAttention, .count = L, .attn = attn};
  at.kv_dtype = kvt;
  at.tensor_flops = true;
  const int64_t keys_per_head =
      decode ? attn.kv_len() : config.seq_len * (config.seq_len + 1) / 2;
  at.flops = 4 * B * d.q_heads * d.head_dim * keys_per_head;
  // K and V of every cached position read once (the minimum: all query heads of a KV group
  // share one read); Q read and the output written once.
  at.kv_read_bytes = B * attn.kv_len() * 2 * d.kv() * DTypeBytes(kvt);
  at.act_bytes = 2 * T * d.q() * kActBytes;
  w.ops_.push_back(at);

  w.ops_.push_back(Gemm("o_proj", L, T, d.hidden, d.q(), wt));
  w.ops_.push_back(AddRmsNorm("add_ffn_norm", L, T, d.hidden));
  w.ops_.push_back(Gemm("gate_up_proj", L, T, 2 * d.ffn, d.hidden, wt));

  Op silu{.name = "silu_mul", .kind = OpKind::kSiluMul, .count = L, .m = T, .n = d.ffn};
  silu.flops = 4 * T * d.ffn;  // exp, add, divide, multiply per output
  silu.act_bytes = 3 * T * d.ffn * kActBytes;
  w.ops_.push_back(silu);

  w.ops_.push_back(Gemm("down_proj", L, T, d.hidden, d.ffn, wt));

  for (size_t i = first_layer_op; i < w.ops_.size(); ++i) w.ops_[i].per_layer = true;

  // Logits only for the last token of each sequence, as serving engines do: in prefill the final
  // add and norm take each prompt's last row of x and of the FFN output (gathered first, a
  // negligible copy).
  w.ops_.push_back(AddRmsNorm("add_final_norm", 1, B, d.hidden));
  w.ops_.push_back(Gemm("lm_head", 1, B, d.vocab, d.hidden, BF16));  // bf16 even for fp8 models
  return w;
}

int64_t Workload::tokens_per_step() const {
  return config_.phase == Phase::kDecode ? config_.batch : config_.batch * config_.seq_len;
}

int64_t Workload::total_flops() const {
  int64_t s = 0;
  for (const Op& op : ops_) s += op.count * op.flops;
  return s;
}

int64_t Workload::total_bytes() const {
  int64_t s = 0;
  for (const Op& op : ops_) s += op.count * op.bytes();
  return s;
}

absl::Status Workload::CountE4m3Activations(size_t gemm_index, bool by_previous_op) {
  if (gemm_index >= ops_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("CountE4m3Activations: no op ", gemm_index));
  }
  Op& gemm = ops_[gemm_index];
  if (gemm.kind != OpKind::kGemm || gemm.weight_dtype != FP8_E4M3 || gemm.act_dtype != BF16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CountE4m3Activations: op '", gemm.name, "' is not a GEMM with fp8 weights and bf16 x"));
  }
  const int64_t bf16_x = gemm.m * gemm.k * kActBytes;
  const int64_t e4m3_x = gemm.m * gemm.k * DTypeBytes(FP8_E4M3) + gemm.m * 4;  // and the scales
  if (by_previous_op) {
    Op* producer = gemm_index > 0 ? &ops_[gemm_index - 1] : nullptr;
    const bool writes_x = producer != nullptr &&
                          (producer->kind == OpKind::kAddRmsNorm ||
                           producer->kind == OpKind::kSiluMul) &&
                          producer->m == gemm.m && producer->n == gemm.k;
    if (!writes_x) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CountE4m3Activations: the op before '", gemm.name, "' does not write its x"));
    }
    producer->act_bytes += e4m3_x - bf16_x;  // writes the copy in place of its bf16 output
  } else {
    gemm.act_bytes += bf16_x + e4m3_x;  // the launch's quantizer reads x, writes the copy
  }
  gemm.act_bytes += e4m3_x - bf16_x;  // the GEMM reads the copy
  gemm.act_dtype = FP8_E4M3;
  return absl::OkStatus();
}

int64_t Workload::total_weight_bytes() const {
  int64_t s = 0;
  for (const Op& op : ops_) s += op.count * op.weight_bytes;
  return s;
}

int64_t Workload::total_kv_read_bytes() const {
  int64_t s = 0;
  for (const Op& op : ops_) s += op.count * op.kv_read_bytes;
  return s;
}

MemoryFootprint Workload::Footprint() const {
  const ShardDims d = Shard(model_, config_.tp);
  const int64_t wb = DTypeBytes(model_.weight_dtype());
  MemoryFootprint f;
  const int64_t per_layer = d.hidden * (d.q() + 2 * d.kv()) + d.q() * d.hidden +
                            3 * d.hidden * d.ffn;
  const int64_t table = d.vocab * d.hidden;  // vocab-parallel embedding / LM head shard
  // fp8: one fp32 scale per output channel of each block's linear layers.
  const int64_t scales = model_.weight_dtype() == FP8_E4M3
                             ? d.layers * (d.q() + 2 * d.kv() + d.hidden + 2 * d.ffn + d.hidden) * 4
                             : 0;
  f.weight_bytes = d.layers * per_layer * wb + scales +
                   (model_.tied_embeddings() ? 1 : 2) * table * kActBytes +  // bf16 tables
                   (2 * d.layers + 1) * d.hidden * kActBytes;                // norm weights
  const int64_t cached = config_.context + config_.seq_len;
  f.kv_cache_bytes =
      config_.batch * cached * d.layers * 2 * d.kv() * DTypeBytes(model_.kv_dtype());
  // One layer's live buffers (reused by every layer) plus the logits.
  const int64_t T = tokens_per_step();
  f.activation_bytes = (T * (3 * d.hidden + d.q() + 2 * d.kv() + d.q() + 3 * d.ffn) +
                        config_.batch * d.vocab) * kActBytes;
  return f;
}

int64_t ParameterCount(const ModelSpec& m) {
  const int64_t h = m.hidden_size(), q = m.num_heads() * m.head_dim(),
                kv = m.num_kv_heads() * m.head_dim(), f = m.ffn_size(), V = m.vocab_size();
  const int64_t per_layer = h * (q + 2 * kv) + q * h + 3 * h * f + 2 * h;
  return m.num_layers() * per_layer + (m.tied_embeddings() ? 1 : 2) * V * h + h;
}

int64_t TpNeeded(const ModelSpec& model, const StepConfig& config, int64_t memory_bytes) {
  // Past num_heads no degree divides them.
  for (int64_t tp = 1; tp <= static_cast<int64_t>(model.num_heads()); tp *= 2) {
    StepConfig c = config;
    c.tp = tp;
    absl::StatusOr<Workload> w = Workload::Build(model, c);
    if (!w.ok()) continue;
    if (w->Footprint().total() <= memory_bytes) return tp;
  }
  return 0;
}

}  // namespace truthput
