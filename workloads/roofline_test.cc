#include "workloads/roofline.h"

#include <algorithm>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "workloads/gpu_datasheet.h"
#include "workloads/model_registry.h"

namespace truthput {
namespace {

using ::testing::HasSubstr;

const ModelSpec& Llama70B() {
  static const ModelSpec* m = new ModelSpec(*LoadModel("70b"));
  return *m;
}

Ceilings H(const char* gpu) { return Ceilings::FromDatasheet(*FindGpu(gpu)); }

StepBound DecodeBound(int64_t batch, int64_t context, const char* gpu = "h100-sxm") {
  Workload w = *Workload::Build(Llama70B(), {.phase = Phase::kDecode, .batch = batch, .context = context});
  return BoundStep(w, H(gpu));
}

TEST(Roofline, OpBoundIsTheSlowerResource) {
  Ceilings c{.bf16_flops_per_s = 100, .vector_flops_per_s = 10, .bytes_per_s = 50};
  Op gemm{.kind = OpKind::kGemm, .flops = 1000, .tensor_flops = true, .weight_bytes = 100};
  EXPECT_DOUBLE_EQ(BoundOp(gemm, c).seconds(), 10.0);
  EXPECT_EQ(BoundOp(gemm, c).limiter(), Resource::kCompute);
  Op ew{.kind = OpKind::kSiluMul, .flops = 10, .act_bytes = 500};
  EXPECT_DOUBLE_EQ(BoundOp(ew, c).seconds(), 10.0);
  EXPECT_EQ(BoundOp(ew, c).limiter(), Resource::kMemory);
  ew.flops = 200;  // elementwise FLOPs run at the vector rate, not the tensor rate
  EXPECT_DOUBLE_EQ(BoundOp(ew, c).seconds(), 20.0);
}

TEST(Roofline, Batch1DecodeOnH100IsAbout24TokensPerSecond) {
  StepBound b = DecodeBound(1, 0);
  // 139.0 GB per step (the weights, bar all but one row of the embedding table) at 3.35 TB/s:
  // 41.5 ms, 24.1 tok/s. (The article's "24 tokens/second"; 141.1 GB, all weights, gives 23.7.)
  Workload w = *Workload::Build(Llama70B(), {.batch = 1});
  EXPECT_NEAR(b.seconds, w.total_bytes() / 3.35e12, 1e-4);
  EXPECT_NEAR(b.tokens_per_s, 24.1, 0.05);
  EXPECT_EQ(b.limiter, Resource::kMemory);
  EXPECT_NEAR(b.intensity, 1.0, 0.01);  // 2 FLOP per 2-byte weight per token
}

TEST(Roofline, H200BoundScalesWithBandwidth) {
  EXPECT_NEAR(DecodeBound(1, 0, "h200").tokens_per_s / DecodeBound(1, 0).tokens_per_s,
              4800.0 / 3350.0, 1e-6);
}

TEST(Roofline, DecodeRidgeAtContext0IsNearBatch295) {
  // 989.4 TFLOP/s / 3.35 TB/s = 295 FLOP per byte. Counting weights alone, decode intensity is
  // the batch (2 FLOP per 2-byte weight per token), so the ridge would be batch 295. The
  // activations each op reads and writes (~54 MB per token through 80 layers, 11% of the bytes
  // at batch 300) push it to batch ~335; at the ridge the step's intensity is 295 FLOP/B.
  absl::StatusOr<int64_t> ridge = DecodeRidgeBatch(Llama70B(), 0, 1, H("h100-sxm"));
  ASSERT_TRUE(ridge.ok()) << ridge.status();
  EXPECT_GE(*ridge, 295);
  EXPECT_LE(*ridge, 340);
  EXPECT_NEAR(DecodeBound(*ridge, 0).intensity, 989.4 / 3.35, 0.01 * 295);
  // Weights alone: the projections' FLOPs over their weight bytes equal the batch.
  Workload w = *Workload::Build(Llama70B(), {.batch = 295});
  double gemm_flops = 0, gemm_weight_bytes = 0;
  for (const Op& op : w.ops()) {
    if (op.kind != OpKind::kGemm) continue;
    gemm_flops += op.count * op.flops;
    gemm_weight_bytes += op.count * op.weight_bytes;
  }
  EXPECT_DOUBLE_EQ(gemm_flops / gemm_weight_bytes, 295);
  EXPECT_EQ(DecodeBound(*ridge, 0).limiter, Resource::kCompute);
  EXPECT_EQ(DecodeBound(*ridge - 1, 0).compute_s < DecodeBound(*ridge - 1, 0).memory_s, true);
  // The step's label agrees with the ridge line printed beside it (the projections alone turn
  // compute-limited some 20 batches earlier; the label is the step's, not theirs).
  EXPECT_EQ(DecodeBound(*ridge - 1, 0).limiter, Resource::kMemory);
  EXPECT_EQ(DecodeBound(*ridge - 20, 0).limiter, Resource::kMemory);
}

TEST(Roofline, Fp8WeightsLeaveAttentionAndTheLmHeadAtTheBf16Rate) {
  ModelSpec fp8 = Llama70B();
  fp8.set_weight_dtype(FP8_E4M3);
  const Workload w = *Workload::Build(
      fp8, {.phase = Phase::kPrefill, .batch = 8, .context = 0, .seq_len = 2048});
  const StepBound b = BoundStep(w, H("h100-sxm"));
  int checked = 0;
  for (size_t i = 0; i < w.ops().size(); ++i) {
    const Op& op = w.ops()[i];
    if (!op.tensor_flops) continue;
    // Block projections on e4m3 weights: 1978.9 TFLOP/s; the bf16 KV cache's attention and the
    // bf16 LM head: 989.4.
    const bool on_fp8 = op.kind == OpKind::kGemm && op.name != "lm_head";
    const double rate = on_fp8 ? 1978.9e12 : 989.4e12;
    const double expected = static_cast<double>(op.flops) / rate;
    EXPECT_NEAR(b.ops[i].compute_s, expected, 1e-9 * expected) << op.name;
    ++checked;
  }
  EXPECT_EQ(checked, 6);  // qkv, attention, o, gate_up, down, lm_head
  // A GPU without fp8 tensor cores runs them all at its bf16 rate.
  const StepBound a100 = BoundStep(w, H("a100-sxm"));
  // (The tolerance scales with the expected time: one scaled by the result would pass an
  // infinite time, which a zero fp8 rate taken at face value gives.)
  const double a100_expected = static_cast<double>(w.ops()[2].flops) / 312e12;
  EXPECT_NEAR(a100.ops[2].compute_s, a100_expected, 1e-9 * a100_expected);
}

TEST(Roofline, RidgeOfTheLargestModelIsFound) {
  // The search must not stop at a batch too large to count (405B at 2^24 sequences is past
  // 2^63 FLOPs): it searches from the largest batch that can be counted.
  const ModelSpec m405 = *LoadModel("405b");
  absl::StatusOr<int64_t> ridge = DecodeRidgeBatch(m405, 0, 1, H("h100-sxm"));
  ASSERT_TRUE(ridge.ok()) << ridge.status();
  EXPECT_GE(*ridge, 295);
  EXPECT_LE(*ridge, 340);
}

// Where the step of 2^20 sequences cannot be counted, the search starts lower, and the reason
// says that its batch is the largest countable one, not a limit of the model.
TEST(Roofline, ReasonSaysWhenTheSearchStoppedShortOfItsLimit) {
  ModelSpec huge = *LoadModel("405b");
  huge.set_num_layers(huge.num_layers() * 64);
  huge.set_max_context(1 << 20);
  const absl::Status st = DecodeRidgeBatch(huge, 1 << 19, 1, H("h100-sxm")).status();
  EXPECT_TRUE(absl::IsNotFound(st)) << st;
  EXPECT_THAT(std::string(st.message()),
              ::testing::ContainsRegex("stays memory-bound up to batch [0-9]+, the largest power of "
                                       "two whose step can be counted \\(there the KV cache"));
  EXPECT_THAT(std::string(st.message()), ::testing::Not(::testing::HasSubstr("1048576")));
}

TEST(Roofline, LongContextDecodeNeverTurnsComputeBound) {
  // KV bytes grow with batch as fast as attention FLOPs do (1 FLOP/byte for GQA-8 at bf16...
  // 4*64*128 FLOPs per 2*1024*2 bytes = 8 FLOP/byte), so at 32k context the step saturates.
  const absl::Status st = DecodeRidgeBatch(Llama70B(), 32768, 1, H("h100-sxm")).status();
  EXPECT_TRUE(absl::IsNotFound(st)) << st;
  // The reason names what the bytes are where the search ended: the KV cache.
  EXPECT_THAT(std::string(st.message()),
              ::testing::ContainsRegex("stays memory-bound up to batch 1048576 \\(there the KV "
                                       "cache is 100% of the step's bytes, activations 0%"));
  // Tokens/s still rises with batch, but flattens below the compute ridge.
  EXPECT_GT(DecodeBound(64, 2048).tokens_per_s, DecodeBound(1, 2048).tokens_per_s);
  EXPECT_EQ(DecodeBound(256, 2048).limiter, Resource::kMemory);
}

// At context 0 there are no KV reads, yet with fp8 weights at TP 8 the 8B step never turns
// compute-bound either: each token's activations (bf16, the norms' replicated across shards)
// grow with the batch as its FLOPs do. The reason must not blame the KV cache.
TEST(Roofline, NoRidgeReasonNamesTheBytesThatGrow) {
  absl::StatusOr<ModelSpec> m8 = LoadModel("8b");
  ASSERT_TRUE(m8.ok()) << m8.status();
  m8->set_weight_dtype(DType::FP8_E4M3);
  const absl::Status st = DecodeRidgeBatch(*m8, 0, 8, H("h100-sxm")).status();
  ASSERT_TRUE(absl::IsNotFound(st)) << st;
  // (The KV cache's 1% is the new token's K and V, appended.)
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("the KV cache is 1% of the step's bytes, activations 99%"));
}

// The datasheet's four figures land in the fields they name (H100 SXM: 989.4 bf16 and 1978.9
// fp8 TFLOP/s dense, 66.9 fp32 TFLOP/s, 3350 GB/s).
TEST(Roofline, CeilingsFromDatasheetTakeEachRate) {
  const Ceilings c = H("h100-sxm");
  EXPECT_DOUBLE_EQ(c.bf16_flops_per_s, 989.4e12);
  EXPECT_DOUBLE_EQ(c.fp8_flops_per_s, 1978.9e12);
  EXPECT_DOUBLE_EQ(c.vector_flops_per_s, 66.9e12);
  EXPECT_DOUBLE_EQ(c.bytes_per_s, 3.35e12);
}

// A tie between the resources is labelled compute, as StepBound and DecodeRidgeBatch label it.
TEST(Roofline, OpBoundTieIsCompute) {
  Ceilings c{.bf16_flops_per_s = 100, .vector_flops_per_s = 10, .bytes_per_s = 50};
  Op gemm{.kind = OpKind::kGemm, .flops = 1000, .tensor_flops = true, .weight_bytes = 500};
  EXPECT_DOUBLE_EQ(BoundOp(gemm, c).seconds(), 10.0);
  EXPECT_EQ(BoundOp(gemm, c).limiter(), Resource::kCompute);
}

// Attention runs at the tensor rate of its KV cache's dtype, whatever the weights are: an fp8
// cache with bf16 weights runs at the fp8 rate, the projections at the bf16 rate.
TEST(Roofline, Fp8KvCacheRunsAttentionAtTheFp8Rate) {
  ModelSpec m = Llama70B();
  m.set_kv_dtype(FP8_E4M3);
  const Workload w = *Workload::Build(m, {.batch = 4, .context = 1000});
  const StepBound b = BoundStep(w, H("h100-sxm"));
  int checked = 0;
  for (size_t i = 0; i < w.ops().size(); ++i) {
    const Op& op = w.ops()[i];
    if (op.name != "attention" && op.name != "qkv_proj") continue;
    const double expected =
        static_cast<double>(op.flops) / (op.name == "attention" ? 1978.9e12 : 989.4e12);
    EXPECT_NEAR(b.ops[i].compute_s, expected, 1e-9 * expected) << op.name;
    ++checked;
  }
  EXPECT_EQ(checked, 2);
}

// Kernels run one after another, each at its own slower resource: the step's time is the sum of
// the per-op maxima, above both the summed compute and the summed memory time when some ops are
// compute-bound (prefill's GEMMs) and some memory-bound (its norms). Tokens are all 8 x 2048.
TEST(Roofline, StepTimeSumsEachOpsSlowerResource) {
  const Workload w = *Workload::Build(
      Llama70B(), {.phase = Phase::kPrefill, .batch = 8, .context = 0, .seq_len = 2048});
  const StepBound b = BoundStep(w, H("h100-sxm"));
  EXPECT_GT(b.seconds, b.compute_s);
  EXPECT_GT(b.seconds, b.memory_s);
  double sum = 0;
  for (size_t i = 0; i < w.ops().size(); ++i) {
    sum += w.ops()[i].count * std::max(b.ops[i].compute_s, b.ops[i].memory_s);
  }
  EXPECT_NEAR(b.seconds, sum, 1e-12 * sum);
  EXPECT_NEAR(b.tokens_per_s, 8 * 2048 / b.seconds, 1e-9 * b.tokens_per_s);
}

// Where batch 1 is already compute-bound (a GPU with a tiny FLOP rate), the ridge is batch 1.
TEST(Roofline, RidgeIsBatch1WhereBatch1IsComputeBound) {
  const Ceilings slow{.bf16_flops_per_s = 1e9, .vector_flops_per_s = 1e9, .bytes_per_s = 3.35e12};
  absl::StatusOr<int64_t> ridge = DecodeRidgeBatch(Llama70B(), 0, 1, slow);
  ASSERT_TRUE(ridge.ok()) << ridge.status();
  EXPECT_EQ(*ridge, 1);
}

// The ridge is the smallest compute-bound batch: the one below it is memory-bound, for several
// models, contexts and TP degrees (a search that stops early returns one too many somewhere).
TEST(Roofline, RidgeIsTheFirstComputeBoundBatch) {
  const Ceilings c = H("h100-sxm");
  struct Case { const char* model; int64_t context, tp; };
  for (const Case& k : {Case{"70b", 0, 1}, Case{"70b", 100, 1}, Case{"70b", 500, 2},
                        Case{"70b", 100, 4}, Case{"8b", 0, 1}, Case{"8b", 300, 1},
                        Case{"405b", 200, 8}}) {
    const ModelSpec m = *LoadModel(k.model);
    absl::StatusOr<int64_t> ridge = DecodeRidgeBatch(m, k.context, k.tp, c);
    ASSERT_TRUE(ridge.ok()) << k.model << " " << k.context << ": " << ridge.status();
    EXPECT_GT(*ridge, 1) << k.model << " " << k.context;
    auto limiter = [&](int64_t batch) {
      return BoundStep(*Workload::Build(m, {.batch = batch, .context = k.context, .tp = k.tp}), c)
          .limiter;
    };
    EXPECT_EQ(limiter(*ridge), Resource::kCompute) << k.model << " " << k.context;
    EXPECT_EQ(limiter(*ridge - 1), Resource::kMemory) << k.model << " " << k.context;
  }
}

// 405B with 2^15 times its 126 layers (4,128,768) at context 0: a step counts 2 x 1.316e16
// FLOPs per sequence (2 per parameter), so 2^62 / 2.632e16 = 175 sequences fit and 128 is the
// largest power of two (2^7: a search that skipped powers would miss it). There the step is
// memory-bound (intensity 125 against the ridge's 295), and its bytes are the weights: per layer
// 2 x 16384 x (18432 + 16384 + 3 x 53248) = 6,375,342,080 bytes against the activations' 128
// tokens x 1,236,992 = 158,334,976 (norms 262,144, qkv 69,632, rope 69,632, attention 65,536,
// o 65,536, gate_up 245,760, silu 319,488, down 139,264): 98% weights, 2% activations, the KV
// cache (the new token only) 0%.
TEST(Roofline, NoRidgeReasonNamesTheWeightsAndTheLargestCountableBatch) {
  ModelSpec huge = *LoadModel("405b");
  huge.set_num_layers(126 * 32768);
  const absl::Status st = DecodeRidgeBatch(huge, 0, 1, H("h100-sxm")).status();
  ASSERT_TRUE(absl::IsNotFound(st)) << st;
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("up to batch 128, the largest power of two whose step can be counted "
                        "(there the KV cache is 0% of the step's bytes, activations 2%, "
                        "weights 98%)"));
  // 2^22 times its layers: 2 x 1.68e18 FLOPs a sequence, so only batch 1 can be counted.
  huge.set_num_layers(126 << 22);
  const absl::Status one = DecodeRidgeBatch(huge, 0, 1, H("h100-sxm")).status();
  ASSERT_TRUE(absl::IsNotFound(one)) << one;
  EXPECT_THAT(std::string(one.message()), HasSubstr("up to batch 1, the largest power of two"));
}

}  // namespace
}  // namespace truthput
