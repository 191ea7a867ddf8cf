// The op list of one prefill or decode step of a model: what every kernel must compute and the
// minimum it must move. One list drives both the roofline prediction and the GPU run (whose copy
// also counts the activation dtypes its GEMMs run with: CountE4m3Activations).
#ifndef TRUTHPUT_WORKLOADS_WORKLOAD_H_
#define TRUTHPUT_WORKLOADS_WORKLOAD_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "workloads/model_spec.pb.h"

namespace truthput {

enum class Phase { kDecode, kPrefill };
absl::string_view PhaseName(Phase phase);

enum class OpKind {
  kEmbedding,     // gather of the new tokens' rows
  kAddRmsNorm,    // residual add, then RMSNorm of the sums (one kernel: AddRmsNorm)
  kGemm,          // linear layer y[m,n] = x[m,k] W[n,k]^T
  kRopeKvAppend,  // rotary embedding of Q and K, K and V appended to the cache
  kAttention,     // GQA attention over the KV cache (decode) or causal self-attention (prefill)
  kSiluMul,
};
absl::string_view OpKindName(OpKind kind);

// Bytes per element of a dtype (bf16 2, fp8 1, fp32 4).
int64_t DTypeBytes(DType dtype);

struct AttentionShape {
  int64_t batch = 0;
  int64_t q_len = 0;         // query tokens per sequence (1 for decode)
  int64_t start_pos = 0;     // position of the first query token (tokens already cached)
  int64_t num_q_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  bool causal = false;
  int64_t kv_len() const { return start_pos + q_len; }  // keys seen by the last query
};

// One op of a step. Costs are for ONE execution; `count` executions happen per step.
struct Op {
  std::string name;  // "qkv_proj", "attention", ...
  OpKind kind;
  int64_t count = 1;
  bool per_layer = false;  // runs once in every layer (count = num_layers)
  // kGemm: y[m,n] = x[m,k] W[n,k]^T. kAddRmsNorm, kEmbedding: m rows of n elements.
  // kSiluMul: m rows, n outputs (2n inputs). kRopeKvAppend: m tokens, n = q+k+v features.
  int64_t m = 0, n = 0, k = 0;
  AttentionShape attn;  // kAttention and kRopeKvAppend
  DType weight_dtype = BF16;
  DType kv_dtype = BF16;
  // kGemm: how x is read: bf16, or FP8_E4M3 with one fp32 scale per row (W8A8; see
  // Workload::CountE4m3Activations).
  DType act_dtype = BF16;

  int64_t flops = 0;           // matmul FLOPs count 2 per multiply-add; see workload.cc
  bool tensor_flops = false;   // runs on tensor cores (GEMMs, attention)
  int64_t weight_bytes = 0;    // weights read
  int64_t kv_read_bytes = 0;   // KV cache read
  int64_t kv_write_bytes = 0;  // KV cache written
  int64_t act_bytes = 0;       // activations read + written

  int64_t bytes() const { return weight_bytes + kv_read_bytes + kv_write_bytes + act_bytes; }
  // The bytes at addresses no other layer's ops touch: weights and the KV cache read (the KV a
  // layer appends is read back by its attention, so counted there once). Activations and
  // workspaces are the same buffers in every layer and are left out: the residency plan's
  // bytes between reuses are a lower bound, which errs toward more layer buffers.
  int64_t own_bytes() const { return weight_bytes + kv_read_bytes; }
};

struct StepConfig {
  Phase phase = Phase::kDecode;
  int64_t batch = 1;
  int64_t context = 0;   // decode: tokens already in each sequence's KV cache
  int64_t seq_len = 1;   // prefill: prompt length (decode: 1)
  int64_t tp = 1;        // tensor-parallel degree: the op list is one shard's
};

// Memory one TP shard of the real model needs for this step.
struct MemoryFootprint {
  int64_t weight_bytes = 0;
  int64_t kv_cache_bytes = 0;
  int64_t activation_bytes = 0;
  int64_t total() const { return weight_bytes + kv_cache_bytes + activation_bytes; }
};

class Workload {
 public:
  // Errors (InvalidArgument) for batch < 1, negative context, seq_len < 1, a TP degree that
  // does not divide the heads, or a context past the model's maximum.
  static absl::StatusOr<Workload> Build(const ModelSpec& model, const StepConfig& config);

  const ModelSpec& model() const { return model_; }
  const StepConfig& config() const { return config_; }
  // In execution order: embedding, per-layer ops (count = num_layers), final norm, LM head.
  const std::vector<Op>& ops() const { return ops_; }

  int64_t tokens_per_step() const;  // decode: batch (one new token each); prefill: batch*seq_len
  int64_t total_flops() const;
  int64_t total_bytes() const;
  int64_t total_weight_bytes() const;
  int64_t total_kv_read_bytes() const;
  MemoryFootprint Footprint() const;

  // Build counts every activation in bf16. A run whose GEMM op `gemm_index` (fp8 weights) reads
  // its x quantized to e4m3 per row (W8A8) calls this once it knows: the GEMM then reads m*k
  // bytes and m fp32 scales instead of 2*m*k bytes. With `by_previous_op` the op before it (a
  // norm or SiluMul whose output is exactly that x) writes the copy instead of its bf16 output;
  // else the GEMM's launch first quantizes x itself: it also reads x in bf16 and writes the copy.
  // InvalidArgument for an op that is not a GEMM with fp8 weights, one already counted so, or a
  // previous op whose output is not the GEMM's x.
  absl::Status CountE4m3Activations(size_t gemm_index, bool by_previous_op);

 private:
  Workload(const ModelSpec& model, const StepConfig& config) : model_(model), config_(config) {}
  ModelSpec model_;
  StepConfig config_;
  std::vector<Op> ops_;
};

// All parameters of the model (embedding and LM head counted once each, once if tied).
int64_t ParameterCount(const ModelSpec& model);

// The smallest power-of-two TP degree at which one shard fits in `memory_bytes`; 0 if none that
// divides the heads does.
int64_t TpNeeded(const ModelSpec& model, const StepConfig& config, int64_t memory_bytes);

}  // namespace truthput

#endif  // TRUTHPUT_WORKLOADS_WORKLOAD_H_
