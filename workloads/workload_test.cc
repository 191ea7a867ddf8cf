#include "workloads/workload.h"

#include <cstdint>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "workloads/model_registry.h"

namespace truthput {
namespace {

using ::testing::HasSubstr;

const ModelSpec& Llama70B() {
  static const ModelSpec* m = new ModelSpec(*LoadModel("70b"));
  return *m;
}

Workload Decode(int64_t batch, int64_t context, int64_t tp = 1) {
  absl::StatusOr<Workload> w = Workload::Build(
      Llama70B(), StepConfig{.phase = Phase::kDecode, .batch = batch, .context = context, .tp = tp});
  EXPECT_TRUE(w.ok()) << w.status();
  return *std::move(w);
}

const Op& FindOp(const Workload& w, absl::string_view name) {
  for (const Op& op : w.ops()) {
    if (op.name == name) return op;
  }
  ADD_FAILURE() << "no op " << name;
  static Op none;
  return none;
}

TEST(Workload, Llama70BHas70_55BParameters) {
  // Hand count: per layer q 8192^2 + k,v 2*8192*1024 + o 8192^2 + gate,up,down 3*8192*28672
  // + 2 norms of 8192 = 855,654,400; x80 layers; + embedding and LM head 2*128256*8192;
  // + final norm 8192.
  EXPECT_EQ(ParameterCount(Llama70B()), int64_t{855654400} * 80 + 2 * int64_t{128256} * 8192 + 8192);
  EXPECT_NEAR(ParameterCount(Llama70B()) / 70.55e9, 1.0, 0.001);
}

// The other built-in specs, counted by hand the same way, against the sizes their model cards
// publish (8.03B, 405.9B, 7.25B): a typo in a spec's dimensions fails here.
TEST(Workload, BuiltInSpecsHaveTheirPublishedParameterCounts) {
  // Llama-3.1-8B: per layer 4096^2 * 2 + 2*4096*1024 + 3*4096*14336 + 2*4096; 32 layers; untied
  // embedding and LM head of 128256 rows.
  const int64_t l8 =
      2 * int64_t{4096} * 4096 + 2 * 4096 * 1024 + 3 * int64_t{4096} * 14336 + 2 * 4096;
  EXPECT_EQ(ParameterCount(*LoadModel("8b")), l8 * 32 + 2 * int64_t{128256} * 4096 + 4096);
  EXPECT_NEAR(ParameterCount(*LoadModel("8b")) / 8.03e9, 1.0, 0.001);
  // Llama-3.1-405B: 16384 wide, 128 query heads on 8 KV heads, FFN 53248, 126 layers.
  const int64_t l405 = 2 * int64_t{16384} * 16384 + 2 * int64_t{16384} * 1024 +
                       3 * int64_t{16384} * 53248 + 2 * 16384;
  EXPECT_EQ(ParameterCount(*LoadModel("405b")), l405 * 126 + 2 * int64_t{128256} * 16384 + 16384);
  EXPECT_NEAR(ParameterCount(*LoadModel("405b")) / 405.9e9, 1.0, 0.001);
  // Mistral-7B-v0.3: the 8B's layers with a vocabulary of 32768.
  EXPECT_EQ(ParameterCount(*LoadModel("mistral-7b")), l8 * 32 + 2 * int64_t{32768} * 4096 + 4096);
  EXPECT_NEAR(ParameterCount(*LoadModel("mistral-7b")) / 7.25e9, 1.0, 0.001);
}

TEST(Workload, OpListOfADecodeStep) {
  Workload w = Decode(1, 0);
  std::vector<std::string> names;
  for (const Op& op : w.ops()) names.push_back(op.name);
  EXPECT_THAT(names, ::testing::ElementsAre("embedding", "add_attn_norm", "qkv_proj",
                                            "rope_kv_append", "attention", "o_proj",
                                            "add_ffn_norm", "gate_up_proj", "silu_mul",
                                            "down_proj", "add_final_norm", "lm_head"));
  EXPECT_EQ(FindOp(w, "qkv_proj").count, 80);
  EXPECT_EQ(FindOp(w, "lm_head").count, 1);
  for (const Op& op : w.ops()) {
    EXPECT_EQ(op.per_layer, op.count == 80) << op.name;
  }
  const Op& qkv = FindOp(w, "qkv_proj");
  EXPECT_EQ(qkv.m, 1);
  EXPECT_EQ(qkv.n, 8192 + 2 * 1024);
  EXPECT_EQ(qkv.k, 8192);
  EXPECT_EQ(qkv.flops, 2 * 1 * 10240 * 8192);
  EXPECT_EQ(qkv.weight_bytes, 10240 * 8192 * 2);
  EXPECT_EQ(qkv.act_bytes, (8192 + 10240) * 2);
  const Op& down = FindOp(w, "down_proj");
  EXPECT_EQ(down.n, 8192);
  EXPECT_EQ(down.k, 28672);
  EXPECT_EQ(FindOp(w, "gate_up_proj").n, 2 * 28672);
  EXPECT_EQ(FindOp(w, "lm_head").n, 128256);
}

TEST(Workload, EveryNormAddsTheResidualBeforeIt) {
  Workload w = Decode(4, 0);
  const int64_t row_bytes = 8192 * 2;
  for (const char* name : {"add_attn_norm", "add_ffn_norm", "add_final_norm"}) {
    const Op& op = FindOp(w, name);
    EXPECT_EQ(op.kind, OpKind::kAddRmsNorm) << name;
    EXPECT_EQ(op.count, std::string(name) == "add_final_norm" ? 1 : 80) << name;
    EXPECT_EQ(op.m, 4) << name;
    // Reads x and the block's output, writes x (the sums) and the normalized rows.
    EXPECT_EQ(op.act_bytes, 4 * 4 * row_bytes) << name;
    EXPECT_EQ(op.weight_bytes, row_bytes) << name;
  }
  // The embedding gathers the rows (the first block output) and zeroes x.
  const Op& emb = FindOp(w, "embedding");
  EXPECT_EQ(emb.weight_bytes, 4 * row_bytes);
  EXPECT_EQ(emb.act_bytes, 2 * 4 * row_bytes);
  // Prefill normalizes only each prompt's last row at the end.
  absl::StatusOr<Workload> prefill =
      Workload::Build(Llama70B(), {.phase = Phase::kPrefill, .batch = 2, .seq_len = 100});
  ASSERT_TRUE(prefill.ok()) << prefill.status();
  EXPECT_EQ(FindOp(*prefill, "add_final_norm").m, 2);
  EXPECT_EQ(FindOp(*prefill, "add_ffn_norm").m, 200);
}

TEST(Workload, Batch1DecodeAtContext0MovesTheWeights) {
  Workload w = Decode(1, 0);
  // The model's weights in memory: 2 bytes x 70.55B parameters = 141.1 GB.
  EXPECT_NEAR(w.Footprint().weight_bytes / 141.1e9, 1.0, 0.001);
  // One step reads every weight once, except the embedding table, of which it gathers one row
  // per sequence: 141.1 GB - (128256 - 1) rows x 8192 x 2 bytes = 139.0 GB.
  const int64_t expected = 2 * (ParameterCount(Llama70B()) - (128256 - 1) * int64_t{8192});
  EXPECT_EQ(w.total_weight_bytes(), expected);
  EXPECT_NEAR(w.total_weight_bytes() / 139.0e9, 1.0, 0.001);
  EXPECT_EQ(w.total_kv_read_bytes(), 80 * 2 * 1024 * 2);  // the appended token itself
  // Activations and KV are a rounding error at batch 1.
  EXPECT_LT(w.total_bytes() - w.total_weight_bytes(), 0.001 * w.total_bytes());
}

TEST(Workload, FlopsAreTwicePerWeightPerToken) {
  for (int64_t b : {1, 7, 256}) {
    Workload w = Decode(b, 0);
    int64_t gemm_flops = 0;
    for (const Op& op : w.ops()) {
      if (op.kind == OpKind::kGemm) gemm_flops += op.count * op.flops;
    }
    const int64_t gemm_params = ParameterCount(Llama70B()) - 128256 * int64_t{8192} -
                                (2 * 80 + 1) * int64_t{8192};
    EXPECT_EQ(gemm_flops, 2 * b * gemm_params);
  }
}

TEST(Workload, KvBytesGrowLinearlyInContextAndBatch) {
  // Every cached token of every sequence: K and V, 8 heads x 128 x 2 bytes, in 80 layers.
  auto kv = [](int64_t b, int64_t c) { return Decode(b, c).total_kv_read_bytes(); };
  const int64_t per_token = 80 * 2 * 8 * 128 * 2;
  EXPECT_EQ(kv(1, 2047), 2048 * per_token);
  EXPECT_EQ(kv(3, 999), 3 * 1000 * per_token);
  EXPECT_EQ(kv(2, 4095) - kv(2, 2047), 2 * 2048 * per_token);
  EXPECT_EQ(kv(64, 2048), 64 * kv(1, 2048));
  EXPECT_EQ(FindOp(Decode(1, 100), "rope_kv_append").kv_write_bytes, 2 * 1024 * 2);
  // Attention FLOPs: QK^T and PV over context+1 keys for 64 query heads.
  EXPECT_EQ(FindOp(Decode(2, 99), "attention").flops, 4 * 2 * 64 * 128 * 100);
}

TEST(Workload, TensorParallelDividesEveryProjection) {
  Workload full = Decode(4, 512, 1);
  Workload shard = Decode(4, 512, 8);
  for (const char* name : {"qkv_proj", "o_proj", "gate_up_proj", "down_proj", "lm_head"}) {
    EXPECT_EQ(FindOp(full, name).weight_bytes, 8 * FindOp(shard, name).weight_bytes) << name;
    EXPECT_EQ(FindOp(full, name).flops, 8 * FindOp(shard, name).flops) << name;
  }
  EXPECT_EQ(full.total_kv_read_bytes(), 8 * shard.total_kv_read_bytes());
  EXPECT_EQ(FindOp(shard, "attention").attn.num_kv_heads, 1);
}

TEST(Workload, PrefillIsCausalAndProducesBatchTimesSeqTokens) {
  absl::StatusOr<Workload> w = Workload::Build(
      Llama70B(), StepConfig{.phase = Phase::kPrefill, .batch = 2, .seq_len = 100});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->tokens_per_step(), 200);
  EXPECT_EQ(FindOp(*w, "qkv_proj").m, 200);
  EXPECT_EQ(FindOp(*w, "lm_head").m, 2);  // logits of the last token only
  // Query i of a causal prompt sees i+1 keys: 100*101/2 per head.
  EXPECT_EQ(FindOp(*w, "attention").flops, 4 * 2 * 64 * 128 * (100 * 101 / 2));
  EXPECT_EQ(FindOp(*w, "attention").kv_read_bytes, 2 * 100 * 2 * 1024 * 2);
}

TEST(Workload, FootprintAndTpNeeded) {
  Workload w = Decode(256, 2048);
  const MemoryFootprint f = w.Footprint();
  EXPECT_EQ(f.kv_cache_bytes, int64_t{256} * 2049 * 80 * 2 * 1024 * 2);
  EXPECT_GT(f.activation_bytes, 0);
  StepConfig c{.phase = Phase::kDecode, .batch = 1, .context = 0};
  EXPECT_EQ(TpNeeded(Llama70B(), c, int64_t{80} * 1000 * 1000 * 1000), 2);
  EXPECT_EQ(TpNeeded(Llama70B(), c, int64_t{141} * 1000 * 1000 * 1000), 2);
  EXPECT_EQ(TpNeeded(Llama70B(), c, int64_t{160} * 1000 * 1000 * 1000), 1);
  EXPECT_EQ(TpNeeded(Llama70B(), c, int64_t{1} * 1000 * 1000 * 1000), 0);
}

// Every power-of-two degree that divides the heads is tried, 128 included where there are 128.
TEST(Workload, TpNeededGoesUpToTheHeadCount) {
  ModelSpec m = Llama70B();
  m.set_num_heads(128);
  m.set_num_kv_heads(128);
  m.set_head_dim(64);
  const StepConfig c{.phase = Phase::kDecode, .batch = 1, .context = 0};
  auto footprint = [&](int64_t tp) {
    StepConfig t = c;
    t.tp = tp;
    return Workload::Build(m, t)->Footprint().total();
  };
  ASSERT_LT(footprint(128), footprint(64));
  EXPECT_EQ(TpNeeded(m, c, footprint(128)), 128);
  EXPECT_EQ(TpNeeded(m, c, footprint(64)), 64);
  EXPECT_EQ(TpNeeded(m, c, footprint(128) - 1), 0);
}

TEST(Workload, Fp8WeightsHalveTheWeightBytesPlusScales) {
  ModelSpec fp8 = Llama70B();
  fp8.set_weight_dtype(FP8_E4M3);
  Workload w8 = *Workload::Build(fp8, {.batch = 1});
  Workload w16 = Decode(1, 0);
  const Op& q8 = FindOp(w8, "qkv_proj");
  EXPECT_EQ(q8.weight_bytes, 10240 * 8192 + 10240 * 4);  // 1 byte per weight + fp32 scales
  EXPECT_EQ(q8.flops, FindOp(w16, "qkv_proj").flops);
  // The embedding table and the LM head stay bf16: 2.1 GB of 70.6 GB.
  EXPECT_EQ(FindOp(w8, "lm_head").weight_bytes, FindOp(w16, "lm_head").weight_bytes);
  EXPECT_EQ(FindOp(w8, "embedding").weight_bytes, FindOp(w16, "embedding").weight_bytes);
  const double ratio = static_cast<double>(w8.total_weight_bytes()) / w16.total_weight_bytes();
  EXPECT_NEAR(ratio, 0.5 + 0.5 * 128256.0 * 8192 * 2 / w16.total_weight_bytes(), 0.001);
  // The footprint counts the same: block weights and scales in fp8, tables in bf16.
  const int64_t block_params = 80 * int64_t{8192} * (10240 + 8192 + 3 * 28672);
  const int64_t scales = 80 * int64_t{10240 + 8192 + 2 * 28672 + 8192} * 4;
  const int64_t tables = 2 * int64_t{128256} * 8192 * 2;
  const int64_t norms = (2 * 80 + 1) * 8192 * 2;
  EXPECT_EQ(w8.Footprint().weight_bytes, block_params + scales + tables + norms);
}

// W8A8 GEMMs read x as e4m3 bytes and a scale per row. Hand counts at batch 4 (m = 4): qkv and
// gate_up read x = 8192 columns, down 28672.
TEST(Workload, E4m3ActivationsCountWhatEachPathMoves) {
  ModelSpec fp8 = Llama70B();
  fp8.set_weight_dtype(FP8_E4M3);
  Workload w = *Workload::Build(fp8, {.batch = 4});
  const Workload before = w;
  const auto index = [&w](absl::string_view name) {
    for (size_t i = 0; i < w.ops().size(); ++i) {
      if (w.ops()[i].name == name) return i;
    }
    ADD_FAILURE() << "no op " << name;
    return size_t{0};
  };
  const int64_t m = 4;
  // Quantized by the norm before it: the norm writes m*k + 4m bytes instead of 2*m*k, and the
  // GEMM reads those instead of 2*m*k.
  ASSERT_TRUE(w.CountE4m3Activations(index("gate_up_proj"), /*by_previous_op=*/true).ok());
  EXPECT_EQ(FindOp(w, "gate_up_proj").act_dtype, FP8_E4M3);
  EXPECT_EQ(FindOp(w, "gate_up_proj").act_bytes,
            FindOp(before, "gate_up_proj").act_bytes - m * 8192 + 4 * m);
  EXPECT_EQ(FindOp(w, "add_ffn_norm").act_bytes,
            FindOp(before, "add_ffn_norm").act_bytes - m * 8192 + 4 * m);
  ASSERT_TRUE(w.CountE4m3Activations(index("down_proj"), true).ok());
  EXPECT_EQ(FindOp(w, "silu_mul").act_bytes,
            FindOp(before, "silu_mul").act_bytes - m * 28672 + 4 * m);
  // Quantized in its own launch (o_proj after attention): reads x in bf16, writes the copy,
  // reads the copy: 2*m*k + 2*(m*k + 4m) where bf16 alone read 2*m*k.
  ASSERT_TRUE(w.CountE4m3Activations(index("o_proj"), false).ok());
  EXPECT_EQ(FindOp(w, "o_proj").act_bytes,
            FindOp(before, "o_proj").act_bytes + 2 * (m * 8192 + 4 * m));
  EXPECT_EQ(FindOp(w, "attention").act_bytes, FindOp(before, "attention").act_bytes);
  // Per layer: (m*8192 - 4m) twice saved on the FFN input, (m*28672 - 4m) twice on down's;
  // o_proj adds 2*(m*8192 + 4m).
  const int64_t per_layer = -2 * (m * 8192 - 4 * m) - 2 * (m * 28672 - 4 * m) +
                            2 * (m * 8192 + 4 * m);
  EXPECT_EQ(w.total_bytes(), before.total_bytes() + 80 * per_layer);
  EXPECT_EQ(w.total_weight_bytes(), before.total_weight_bytes());

  // Errors: counted twice, not an fp8 GEMM, no producer of x before it.
  EXPECT_FALSE(w.CountE4m3Activations(index("down_proj"), true).ok());
  EXPECT_FALSE(w.CountE4m3Activations(index("lm_head"), false).ok());  // bf16 weights
  EXPECT_FALSE(w.CountE4m3Activations(index("silu_mul"), false).ok());
  EXPECT_THAT(w.CountE4m3Activations(w.ops().size(), false).message(), HasSubstr("no op 12"));
  absl::Status st = w.CountE4m3Activations(index("qkv_proj"), true);
  EXPECT_TRUE(st.ok()) << st;
  Workload again = *Workload::Build(fp8, {.batch = 4});
  st = again.CountE4m3Activations(index("o_proj"), true);  // attention writes attn_out, not e4m3
  EXPECT_THAT(st.message(), HasSubstr("does not write its x"));
  EXPECT_EQ(again.total_bytes(), before.total_bytes());  // a rejected call changes nothing
}

TEST(Workload, BadInput) {
  auto err = [](StepConfig c) {
    absl::StatusOr<Workload> w = Workload::Build(Llama70B(), c);
    EXPECT_FALSE(w.ok());
    return std::string(w.status().message());
  };
  EXPECT_THAT(err({.batch = 0}), HasSubstr("batch must be >= 1, got 0"));
  EXPECT_THAT(err({.batch = 1, .context = -5}), HasSubstr("context must be >= 0, got -5"));
  EXPECT_THAT(err({.batch = 1, .tp = 3}), HasSubstr("tp 3 does not divide the heads"));
  EXPECT_THAT(err({.batch = 1, .tp = 16}), HasSubstr("8 KV heads"));
  EXPECT_THAT(err({.batch = 1, .context = 131072}), HasSubstr("max_context"));
  EXPECT_THAT(err({.phase = Phase::kPrefill, .batch = 1, .seq_len = 0}), HasSubstr("seq_len"));
}

// Sizes that would wrap the results' uint32 fields or a step's int64 counts are refused, not
// printed as wrapped numbers.
TEST(Workload, RefusesSizesThatWouldWrap) {
  auto err = [](const ModelSpec& m, StepConfig c) {
    absl::StatusOr<Workload> w = Workload::Build(m, c);
    EXPECT_FALSE(w.ok());
    return std::string(w.status().message());
  };
  EXPECT_THAT(err(Llama70B(), {.batch = int64_t{1} << 32}), HasSubstr("below 2^32"));
  ModelSpec unbounded = Llama70B();  // a custom spec need not give a max_context
  unbounded.clear_max_context();
  EXPECT_THAT(err(unbounded, {.batch = 1, .context = std::numeric_limits<int64_t>::max()}),
              HasSubstr("below 2^32"));
  EXPECT_THAT(err(unbounded, {.batch = 1, .context = (int64_t{1} << 32) - 1}),
              HasSubstr("below 2^32"));  // context + the new token
  // 2^27 sequences of 2^20 cached tokens: 2^47 positions, whose attention FLOPs alone are
  // 4 * 2^47 * 8192 * 80 (about 3.8e20) > 2^63.
  EXPECT_THAT(err(unbounded, {.batch = int64_t{1} << 27, .context = int64_t{1} << 20}),
              HasSubstr("pass 2^62 (4.6e18)"));
  // Projections and attention each just under 2^62, their sum past it (70B, 2^25 sequences of
  // 53024 tokens): refused, since total_flops adds them.
  EXPECT_THAT(err(unbounded, {.batch = 33176778, .context = 53024}),
              HasSubstr("pass 2^62 (4.6e18)"));
  // The largest step that fits is counted without wrapping: every count positive.
  absl::StatusOr<Workload> big =
      Workload::Build(unbounded, {.batch = int64_t{1} << 20, .context = int64_t{1} << 20});
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_GT(big->total_flops(), 0);
  EXPECT_GT(big->total_bytes(), 0);
}

// Every op's FLOPs, each as often as the step runs it, by hand at decode batch 1, context 0 (one
// key per head). Per layer:
//   add_attn_norm, add_ffn_norm  5 x 8192                 =     40,960 each
//   qkv_proj     2 x 10240 x 8192                         = 167,772,160
//   rope         3 x (8192 + 1024)  (Q and K rotated)     =     27,648
//   attention    4 x 64 heads x 128 x 1 key               =     32,768
//   o_proj       2 x 8192 x 8192                          = 134,217,728
//   gate_up      2 x 57344 x 8192                         = 939,524,096
//   silu_mul     4 x 28672                                =    114,688
//   down_proj    2 x 8192 x 28672                         = 469,762,048
//   sum                                                   = 1,711,533,056; x 80 = 136,922,644,480
// + final norm 40,960 + lm_head 2 x 128256 x 8192 = 2,101,346,304: 139,024,031,744.
TEST(Workload, TotalFlopsCountsEveryOpOncePerLayer) {
  EXPECT_EQ(Decode(1, 0).total_flops(), int64_t{139024031744});
}

// The ops other than GEMMs and norms, by hand at decode batch 4, context 100 (101 keys).
TEST(Workload, RopeAttentionAndSiluCountByHand) {
  const Workload w = Decode(4, 100);
  const Op& rope = FindOp(w, "rope_kv_append");
  EXPECT_EQ(rope.flops, 3 * 4 * (8192 + 1024));  // 110,592: Q and K rotated, V not
  // Reads Q, K, V (4 x 10240 x 2 = 81,920), writes rotated Q (4 x 8192 x 2 = 65,536).
  EXPECT_EQ(rope.act_bytes, 81920 + 65536);
  EXPECT_EQ(rope.kv_write_bytes, 4 * 2 * 1024 * 2);  // K and V of 4 tokens: 16,384
  const Op& at = FindOp(w, "attention");
  EXPECT_EQ(at.flops, int64_t{4} * 4 * 64 * 128 * 101);  // 13,238,272
  EXPECT_EQ(at.kv_read_bytes, 4 * 101 * 2 * 1024 * 2);    // 1,654,784
  EXPECT_EQ(at.act_bytes, 2 * 4 * 8192 * 2);              // Q in, output out: 131,072
  const Op& silu = FindOp(w, "silu_mul");
  EXPECT_EQ(silu.flops, 4 * 4 * 28672);          // 458,752
  EXPECT_EQ(silu.act_bytes, 3 * 4 * 28672 * 2);  // gate and up in, one out: 688,128
  EXPECT_EQ(FindOp(w, "add_attn_norm").flops, 5 * 4 * 8192);  // 163,840
}

// o_proj maps the heads' outputs back to the hidden size: at TP 8 a shard's k is its 8 heads x
// 128 = 1024 while n stays 8192 (at TP 1 both are 8192, so only a shard tells them apart).
TEST(Workload, OProjShardReadsItsHeadsAndWritesTheHiddenSize) {
  const Workload shard = Decode(1, 0, 8);
  const Op& o = FindOp(shard, "o_proj");
  EXPECT_EQ(o.n, 8192);
  EXPECT_EQ(o.k, 1024);
  const Op& qkv = FindOp(shard, "qkv_proj");
  EXPECT_EQ(qkv.n, 1024 + 2 * 128);  // 8 query heads, 1 KV head, of 128
  EXPECT_EQ(qkv.k, 8192);
}

// An FFN or vocabulary that TP does not divide evenly leaves the last shard short; the op list
// is the largest shard's, rounded up (70B with FFN 28673 and vocab 128257, TP 8: 3585 columns
// and 16033 rows).
TEST(Workload, UnevenShardsRoundUp) {
  ModelSpec m = Llama70B();
  m.set_ffn_size(28673);
  m.set_vocab_size(128257);
  absl::StatusOr<Workload> w = Workload::Build(m, {.batch = 1, .tp = 8});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(FindOp(*w, "gate_up_proj").n, 2 * 3585);
  EXPECT_EQ(FindOp(*w, "down_proj").k, 3585);
  EXPECT_EQ(FindOp(*w, "lm_head").n, 16033);
}

// An fp8 KV cache moves 1 byte per element where bf16 moves 2; the weights' dtype plays no part.
// Decode batch 2 at context 999 (1000 cached positions each).
TEST(Workload, Fp8KvCacheHalvesTheKvBytes) {
  ModelSpec m = Llama70B();
  m.set_kv_dtype(FP8_E4M3);
  absl::StatusOr<Workload> w = Workload::Build(m, {.batch = 2, .context = 999});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(FindOp(*w, "attention").kv_read_bytes, 2 * 1000 * 2 * 1024);   // 4,096,000
  EXPECT_EQ(FindOp(*w, "rope_kv_append").kv_write_bytes, 2 * 2 * 1024);    // 4,096
  EXPECT_EQ(w->Footprint().kv_cache_bytes, int64_t{2} * 1000 * 80 * 2 * 1024);  // 327,680,000
  // bf16 weights still read 2 bytes each.
  EXPECT_EQ(FindOp(*w, "qkv_proj").weight_bytes, 10240 * 8192 * 2);
}

TEST(Workload, DTypeBytes) {
  EXPECT_EQ(DTypeBytes(FP8_E4M3), 1);
  EXPECT_EQ(DTypeBytes(BF16), 2);
  EXPECT_EQ(DTypeBytes(FP16), 2);
  EXPECT_EQ(DTypeBytes(FP32), 4);
}

// Prefill gathers one embedding row per prompt token, not per sequence, and its footprint keeps
// one layer's buffers for all 200 tokens but logits only for each prompt's last (batch 2, prompt
// 100). Per token: x, the block output and the normed rows (3 x 8192), Q, K, V (8192 + 2048),
// the attention output (8192), gate, up and their product (3 x 28672): 129,024 elements; 200 of
// them plus 2 x 128,256 logits, in bf16: (25,804,800 + 256,512) x 2 = 52,122,624 bytes.
TEST(Workload, PrefillEmbeddingAndActivationFootprint) {
  absl::StatusOr<Workload> w =
      Workload::Build(Llama70B(), {.phase = Phase::kPrefill, .batch = 2, .seq_len = 100});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(FindOp(*w, "embedding").weight_bytes, 200 * 8192 * 2);
  EXPECT_EQ(w->Footprint().activation_bytes, 52122624);
}

// A tied model stores its table once: 128256 x 8192 fewer parameters, and bytes in bf16.
TEST(Workload, TiedEmbeddingsAreCountedOnce) {
  ModelSpec tied = Llama70B();
  tied.set_tied_embeddings(true);
  const int64_t table = int64_t{128256} * 8192;  // 1,050,673,152
  EXPECT_EQ(ParameterCount(tied), ParameterCount(Llama70B()) - table);
  absl::StatusOr<Workload> w = Workload::Build(tied, {.batch = 1});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->Footprint().weight_bytes, Decode(1, 0).Footprint().weight_bytes - 2 * table);
}

// The step shapes Build must refuse, and the largest it must accept.
TEST(Workload, RefusesMalformedStepsAndAcceptsTheLastPosition) {
  auto build = [](StepConfig c) { return Workload::Build(Llama70B(), c); };
  EXPECT_THAT(build({.phase = Phase::kDecode, .batch = 1, .seq_len = 2}).status().message(),
              HasSubstr("a decode step has seq_len 1"));
  EXPECT_THAT(build({.phase = Phase::kPrefill, .batch = 1, .context = 5, .seq_len = 10})
                  .status().message(),
              HasSubstr("context 0"));
  EXPECT_THAT(build({.batch = 1, .tp = 0}).status().message(), HasSubstr("tp 0 does not divide"));
  EXPECT_THAT(build({.batch = 1, .tp = -8}).status().message(),
              HasSubstr("tp -8 does not divide"));
  // max_context 131072: context 131071 plus the new token fills it exactly.
  EXPECT_TRUE(build({.batch = 1, .context = 131071}).ok());
  EXPECT_TRUE(build({.phase = Phase::kPrefill, .batch = 1, .seq_len = 131072}).ok());
  EXPECT_FALSE(build({.phase = Phase::kPrefill, .batch = 1, .seq_len = 131073}).ok());
}

// The wrap guard refuses a step whose FLOPs plus KV bytes (KV counted at up to 4 bytes an
// element) pass 2^62, and no smaller one. 70B decode at batch 2^20: per sequence
//   projections 2 x (80 x 8192 x (2 x 8192 + 2 x 1024 + 3 x 28672) + 128256 x 8192)
//             = 2 x 69,501,714,432 = 139,003,428,864
//   per cached position: attention 4 x 8192 x 80 = 2,621,440, KV 2 x 1024 x 4 x 80 = 655,360.
// 2^62 / 2^20 = 2^42 = 4,398,046,511,104; (2^42 - 139,003,428,864) / 3,276,800 = 1,299,756.8
// positions: context 1,299,755 (1,299,756 positions) fits, context 1,299,756 does not.
TEST(Workload, WrapGuardRefusesExactlyPast2To62) {
  ModelSpec unbounded = Llama70B();
  unbounded.clear_max_context();
  const int64_t batch = int64_t{1} << 20;
  EXPECT_TRUE(Workload::Build(unbounded, {.batch = batch, .context = 1299755}).ok());
  EXPECT_THAT(Workload::Build(unbounded, {.batch = batch, .context = 1299756}).status().message(),
              HasSubstr("pass 2^62 (4.6e18)"));
}

// The same guard for causal prefill, one prompt of S tokens (pairs S(S+1)/2): projections
// S x 139,003,428,864, attention 4 x S(S+1)/2 x 8192 x 80 = S(S+1) x 1,310,720, KV S x 655,360.
// The sum passes 2^62 = 4,611,686,018,427,387,904 between S = 1,823,472 and 1,823,473.
TEST(Workload, PrefillWrapGuardCountsEveryTokenAndPair) {
  ModelSpec unbounded = Llama70B();
  unbounded.clear_max_context();
  auto prompt = [&](int64_t s) {
    return Workload::Build(unbounded, {.phase = Phase::kPrefill, .batch = 1, .seq_len = s});
  };
  EXPECT_TRUE(prompt(1823472).ok());
  EXPECT_THAT(prompt(1823473).status().message(), HasSubstr("pass 2^62 (4.6e18)"));
}

// A step too large to count at TP 1 can be at TP 2, where each shard counts about half: the
// decode step just past the guard above (2^62 x 1.0000001) is 2^62 x 0.5000001 per shard.
TEST(Workload, TpNeededSkipsDegreesWhoseStepCannotBeCounted) {
  ModelSpec unbounded = Llama70B();
  unbounded.clear_max_context();
  const StepConfig c{.batch = int64_t{1} << 20, .context = 1299756};
  ASSERT_FALSE(Workload::Build(unbounded, c).ok());
  EXPECT_EQ(TpNeeded(unbounded, c, std::numeric_limits<int64_t>::max()), 2);
}

}  // namespace
}  // namespace truthput
