#include "workloads/roofline.h"

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
    EXPECT_NEAR(b.ops[i].compute_s, static_cast<double>(op.flops) / rate,
                1e-9 * b.ops[i].compute_s)
        << op.name;
    ++checked;
  }
  EXPECT_EQ(checked, 6);  // qkv, attention, o, gate_up, down, lm_head
  // A GPU without fp8 tensor cores runs them all at its bf16 rate.
  const StepBound a100 = BoundStep(w, H("a100-sxm"));
  EXPECT_NEAR(a100.ops[2].compute_s, static_cast<double>(w.ops()[2].flops) / 312e12,
              1e-9 * a100.ops[2].compute_s);
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

}  // namespace
}  // namespace truthput
