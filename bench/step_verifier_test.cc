#include "bench/step_verifier.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "bench/device_info.h"
#include "bench/gpu_timer.h"
#include "bench/reference_ops.h"
#include "bench/step_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cublaslt_gemm.h"
#include "kernels/cuda_status.h"
#include "kernels/elementwise.h"
#include "kernels/gpu_test_util.h"
#include "kernels/random_fill.h"
#include "workloads/model_registry.h"
#include "workloads/workload.h"

namespace truthput {
namespace {

using ::testing::HasSubstr;

// hidden 256, 4 query heads and 2 KV heads of 64, FFN 512, vocabulary 1000, 2 layers.
ModelSpec TinyModel() {
  ModelSpec m;
  m.set_name("tiny");
  m.set_hidden_size(256);
  m.set_num_layers(2);
  m.set_num_heads(4);
  m.set_num_kv_heads(2);
  m.set_head_dim(64);
  m.set_ffn_size(512);
  m.set_vocab_size(1000);
  m.set_tied_embeddings(false);
  m.set_weight_dtype(BF16);
  m.set_kv_dtype(BF16);
  m.set_rope_theta(10000);
  m.set_max_context(4096);
  m.set_rms_norm_eps(1e-5f);
  return m;
}

class StepVerifierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    absl::StatusOr<std::unique_ptr<CublasLtGemm>> gemm = CublasLtGemm::Create();
    ASSERT_TRUE(gemm.ok()) << gemm.status();
    gemm_ = *std::move(gemm);
  }
  void TearDown() override {
    SetVerifyStepHookForTesting(nullptr);  // a failed assertion may have left one set
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  StepRunner::Options RunnerOptions(const std::string& gemm = "auto") {
    size_t free_bytes = 0, total_bytes = 0;
    EXPECT_EQ(cudaMemGetInfo(&free_bytes, &total_bytes), cudaSuccess);
    int device = 0, l2 = 0, sms = 0;
    EXPECT_EQ(cudaGetDevice(&device), cudaSuccess);
    EXPECT_EQ(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device), cudaSuccess);
    EXPECT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), cudaSuccess);
    StepRunner::Options o;
    o.free_bytes = static_cast<int64_t>(free_bytes) - (int64_t{1} << 30);
    o.l2_bytes = l2;
    o.sm_count = sms;
    absl::StatusOr<DeviceIdentity> id = ReadDeviceIdentity(device);
    EXPECT_TRUE(id.ok()) << id.status();
    if (id.ok()) o.dram_gbps = DramPeakGbps(*id);  // the split policy bench_decode uses
    o.seed = FreshSeed();  // printed, so a failure can be replayed
    std::printf("step runner seed %llu\n", static_cast<unsigned long long>(o.seed));
    o.gemm = gemm;
    return o;
  }

  // A decode step of `model` on the GPU, ready to verify.
  absl::StatusOr<std::unique_ptr<StepRunner>> MakeRunner(const ModelSpec& model, int64_t batch,
                                                         int64_t context,
                                                         const std::string& gemm = "auto") {
    StepConfig config;
    config.phase = Phase::kDecode;
    config.batch = batch;
    config.context = context;
    return MakeRunner(model, config, gemm);
  }
  absl::StatusOr<std::unique_ptr<StepRunner>> MakeRunner(const ModelSpec& model,
                                                         const StepConfig& config,
                                                         const std::string& gemm = "auto") {
    absl::StatusOr<Workload> w = Workload::Build(model, config);
    if (!w.ok()) return w.status();
    return StepRunner::Create(*w, gemm_.get(), RunnerOptions(gemm), stream_);
  }

  void ExpectVerifies(const ModelSpec& model, int64_t batch, int64_t context,
                      const std::string& gemm = "auto") {
    absl::StatusOr<std::unique_ptr<StepRunner>> runner = MakeRunner(model, batch, context, gemm);
    ASSERT_TRUE(runner.ok()) << runner.status();
    ASSERT_OK(VerifyStep(**runner, stream_));
    // The buffers are left as a step leaves them: a second pass verifies too.
    ASSERT_OK(VerifyStep(**runner, stream_));
  }

  cudaStream_t stream_ = nullptr;
  std::unique_ptr<CublasLtGemm> gemm_;
};

TEST_F(StepVerifierTest, TinyModelBatch1) { ExpectVerifies(TinyModel(), 1, 37); }

TEST_F(StepVerifierTest, TinyModelBatch3) { ExpectVerifies(TinyModel(), 3, 37); }

TEST_F(StepVerifierTest, ReducedLlama70bBatch2) {
  absl::StatusOr<ModelSpec> model = LoadModel("70b");
  ASSERT_TRUE(model.ok()) << model.status();
  absl::StatusOr<ModelSpec> reduced = ReducedForVerification(*model);
  ASSERT_TRUE(reduced.ok()) << reduced.status();
  EXPECT_EQ(reduced->num_layers(), 2u);
  EXPECT_EQ(reduced->vocab_size(), 4096u);
  EXPECT_EQ(reduced->hidden_size(), model->hidden_size());
  EXPECT_EQ(reduced->ffn_size(), model->ffn_size());
  ExpectVerifies(*reduced, 2, 129);
}

ModelSpec TinyFp8Model() {
  ModelSpec m = TinyModel();
  m.set_weight_dtype(FP8_E4M3);
  return m;
}

// fp8 weights through the own kernel (bf16 activations), the own kernel on activations quantized
// per token (W8A8) and cuBLASLt (W8A8); batch 40 is past the own kernel's 32 rows, so "own" falls
// back there.
TEST_F(StepVerifierTest, TinyFp8OwnBatch3) { ExpectVerifies(TinyFp8Model(), 3, 37, "own"); }
TEST_F(StepVerifierTest, TinyFp8OwnW8A8Batch3) {
  ExpectVerifies(TinyFp8Model(), 3, 37, "own_w8a8");
}
TEST_F(StepVerifierTest, TinyFp8CublasLtBatch3) {
  ExpectVerifies(TinyFp8Model(), 3, 37, "cublaslt");
}
TEST_F(StepVerifierTest, TinyFp8OwnBatch40) { ExpectVerifies(TinyFp8Model(), 40, 37, "own"); }

// The ops that quantize for the GEMM after them leave their bf16 output (xn, act) as it was: a
// NaN there stays NaN. (The step's GEMMs read only the copy; VerifyStep checks it.)
TEST_F(StepVerifierTest, Fp8OpsQuantizingForTheNextGemmWriteNoBf16Output) {
  absl::StatusOr<std::unique_ptr<StepRunner>> runner =
      MakeRunner(TinyFp8Model(), 3, 37, "cublaslt");
  ASSERT_TRUE(runner.ok()) << runner.status();
  const StepRunner& r = **runner;
  const StepRunner::Activations& a = r.activations();
  const std::vector<Op>& ops = r.workload().ops();
  int checked = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (!r.QuantizesForNextGemm(i)) continue;
    SCOPED_TRACE(ops[i].name);
    __nv_bfloat16* bf16_out = ops[i].kind == OpKind::kSiluMul ? a.act : a.xn;
    const int64_t n = ops[i].m * ops[i].n;
    ASSERT_OK(FillBf16(bf16_out, n, NAN, stream_));
    ASSERT_OK(r.EnqueueOpOnce(i, 0, stream_));
    ASSERT_CUDA(cudaStreamSynchronize(stream_));
    const std::vector<float> after = ToHost(bf16_out, n);
    EXPECT_EQ(std::count_if(after.begin(), after.end(), [](float v) { return !std::isnan(v); }),
              0);
    ++checked;
  }
  EXPECT_EQ(checked, 3);  // add_attn_norm, add_ffn_norm, silu_mul
}

// FFN rows longer than the fused quantized copy takes (E4m3CopyIsFused): SiluMul writes bf16 and
// down_proj quantizes it in its own launch, as o_proj does.
TEST_F(StepVerifierTest, TinyFp8WideFfnQuantizesInTheGemm) {
  ModelSpec m = TinyFp8Model();
  m.set_ffn_size(32784);  // a multiple of 16, past 32768
  ASSERT_FALSE(E4m3CopyIsFused(static_cast<int>(m.ffn_size())));
  absl::StatusOr<std::unique_ptr<StepRunner>> runner = MakeRunner(m, 3, 37, "cublaslt");
  ASSERT_TRUE(runner.ok()) << runner.status();
  const std::vector<Op>& ops = (*runner)->workload().ops();
  for (size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].name != "down_proj") continue;
    EXPECT_FALSE((*runner)->QuantizesForNextGemm(i - 1));
    EXPECT_TRUE((*runner)->QuantizesActivations(i));
    EXPECT_THAT((*runner)->Implementation(i), HasSubstr("activations to e4m3 per token, then"));
  }
  ASSERT_OK(VerifyStep(**runner, stream_));
}

TEST_F(StepVerifierTest, Fp8RunnerHoldsFp8WeightsAndSaysWhichPathQuantizes) {
  for (const std::string gemm : {"own", "own_w8a8", "cublaslt"}) {
    absl::StatusOr<std::unique_ptr<StepRunner>> runner = MakeRunner(TinyFp8Model(), 3, 37, gemm);
    ASSERT_TRUE(runner.ok()) << runner.status();
    const StepRunner& r = **runner;
    const std::vector<Op>& ops = r.workload().ops();
    absl::StatusOr<Workload> built =
        Workload::Build(TinyFp8Model(), {.phase = Phase::kDecode, .batch = 3, .context = 37});
    ASSERT_TRUE(built.ok()) << built.status();
    for (size_t i = 0; i < ops.size(); ++i) {
      // The ops right before qkv, gate_up and down write their quantized activations, and no
      // bf16 output; o_proj, after attention, quantizes them itself. The runner's op list counts
      // those bytes: fewer for the ops writing e4m3, more for o_proj.
      const bool feeds_w8a8 = gemm != "own" && (ops[i].name == "add_attn_norm" ||
                                                ops[i].name == "add_ffn_norm" ||
                                                ops[i].name == "silu_mul");
      EXPECT_EQ(r.QuantizesForNextGemm(i), feeds_w8a8) << ops[i].name;
      const int64_t built_bytes = built->ops()[i].act_bytes;
      if (feeds_w8a8) {
        EXPECT_THAT(r.Implementation(i),
                    HasSubstr("output only in e4m3 per token, for " + ops[i + 1].name));
        EXPECT_LT(ops[i].act_bytes, built_bytes) << ops[i].name;
      } else if (ops[i].name == "o_proj" && gemm != "own") {
        EXPECT_GT(ops[i].act_bytes, built_bytes);
      } else if (ops[i].kind != OpKind::kGemm) {
        EXPECT_EQ(ops[i].act_bytes, built_bytes) << ops[i].name;
      }
      if (ops[i].kind != OpKind::kGemm) continue;
      EXPECT_EQ(ops[i].act_dtype, r.QuantizesActivations(i) ? FP8_E4M3 : BF16) << ops[i].name;
      if (r.QuantizesActivations(i) && ops[i].name != "o_proj") {
        EXPECT_LT(ops[i].act_bytes, built_bytes) << ops[i].name;  // reads e4m3 x
      } else if (!r.QuantizesActivations(i)) {
        EXPECT_EQ(ops[i].act_bytes, built_bytes) << ops[i].name;
      }
      absl::StatusOr<StepRunner::GemmBuffers> b = r.GemmBuffersOf(ops[i], 0);
      ASSERT_TRUE(b.ok()) << b.status();
      const bool block_linear = ops[i].name != "lm_head";  // the LM head stays bf16
      EXPECT_EQ(b->w_scales != nullptr, block_linear) << ops[i].name;
      EXPECT_EQ(r.QuantizesActivations(i), block_linear && gemm != "own") << ops[i].name;
      EXPECT_EQ(r.ReadsCopyFromPreviousOp(i),
                block_linear && gemm != "own" && ops[i].name != "o_proj")
          << ops[i].name;
      EXPECT_EQ(r.PacksWeights(i), gemm != "cublaslt") << ops[i].name;
      const std::string quantized = ops[i].name == "o_proj"
                                        ? "activations to e4m3 per token, then "
                                        : "e4m3 activations from " + ops[i - 1].name + ", then ";
      EXPECT_THAT(r.Implementation(i),
                  HasSubstr(!block_linear ? (gemm == "cublaslt" ? "cublasLt" : "skinny_gemm_bf16")
                            : gemm == "own"      ? "skinny_gemm_fp8"
                            : gemm == "own_w8a8" ? quantized + "truthput skinny_gemm_w8a8"
                                                 : quantized + "cublasLt"))
          << ops[i].name;
    }
    // The residency plan's bytes between reuses are the weights and KV of the runner's op list;
    // the activations, e4m3 or bf16, are left out.
    int64_t step_bytes = 0, other_bytes = 0;
    for (const Op& op : ops) {
      (op.per_layer ? step_bytes : other_bytes) += op.own_bytes();
    }
    const ResidencyPlan& plan = r.residency();
    ASSERT_TRUE(plan.full);  // the tiny model: the other layer and the ops outside the layers
    EXPECT_EQ(plan.bytes_between_reuse, (plan.layer_buffers - 1) * step_bytes + other_bytes);
  }
}

// The step as bench_decode and bench_prefill time it, one CUDA graph in which each small kernel
// may start while the kernel before it runs (programmatic dependent launch, kernels/pdl.cuh),
// computes what the op-by-op run computes. Every activation is NaN in between, so a kernel that
// read its input before the kernel writing it had finished would carry NaN into the logits.
void ExpectGraphMatchesOpByOp(const StepRunner& r, int64_t batch, cudaStream_t stream) {
  ASSERT_OK(VerifyStep(r, stream));  // op by op, each against the CPU reference
  const StepRunner::Activations& a = r.activations();
  const int64_t logits = batch * r.workload().model().vocab_size();
  const std::vector<float> want = ToHost(a.logits, logits);

  // x .. logits are one span of the runner's buffers, every one written before it is read; so
  // are the W8A8 activations (0xFF: e4m3 NaN, and NaN scales).
  const int64_t span = (a.logits - a.x) + logits;
  ASSERT_OK(FillBf16(a.x, span, NAN, stream));
  if (a.xq != nullptr) {
    const ModelSpec& m = r.workload().model();
    const int64_t tokens = r.workload().tokens_per_step();
    const int64_t widest = std::max<int64_t>(
        {m.hidden_size(), int64_t{m.num_heads()} * m.head_dim(), m.ffn_size()});
    ASSERT_CUDA(cudaMemsetAsync(a.xq, 0xFF, tokens * widest, stream));
    ASSERT_CUDA(cudaMemsetAsync(a.x_scales, 0xFF, tokens * sizeof(float), stream));
  }
  absl::StatusOr<GraphExecPtr> step =
      CaptureGraph([&](cudaStream_t s) { return r.EnqueueStep(s); }, stream);
  ASSERT_TRUE(step.ok()) << step.status();
  ASSERT_CUDA(cudaGraphLaunch(step->get(), stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));
  const std::vector<float> got = ToHost(a.logits, logits);

  double scale = 0;
  for (float w : want) scale = std::max(scale, std::fabs(static_cast<double>(w)));
  ASSERT_GT(scale, 0);
  int64_t bad = 0;
  for (int64_t i = 0; i < logits; ++i) {
    // Equal but for the order of split-K sums; NaN never passes.
    if (!(std::fabs(static_cast<double>(got[i]) - want[i]) <= 1e-2 * scale)) {
      if (bad < 5) {
        ADD_FAILURE() << "logit " << i << ": graph " << got[i] << ", op by op " << want[i];
      }
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0) << "of " << logits << " logits";
}

TEST_F(StepVerifierTest, GraphOfTheDecodeStepMatchesOpByOp) {
  absl::StatusOr<ModelSpec> model = LoadModel("70b");
  ASSERT_TRUE(model.ok()) << model.status();
  absl::StatusOr<ModelSpec> reduced = ReducedForVerification(*model);
  ASSERT_TRUE(reduced.ok()) << reduced.status();
  const int64_t batch = 2;  // context 129: the attention runs split, with its merge kernel
  for (const std::string gemm : {"own", "cublaslt"}) {
    SCOPED_TRACE(gemm);
    absl::StatusOr<std::unique_ptr<StepRunner>> runner = MakeRunner(*reduced, batch, 129, gemm);
    ASSERT_TRUE(runner.ok()) << runner.status();
    ASSERT_GT((*runner)->num_splits(), 1);
    ExpectGraphMatchesOpByOp(**runner, batch, stream_);
  }
}

// fp8 weights as W8A8, the activations quantized by the ops before the GEMMs inside the graph.
TEST_F(StepVerifierTest, GraphOfTheFp8DecodeStepMatchesOpByOp) {
  absl::StatusOr<ModelSpec> model = LoadModel("70b");
  ASSERT_TRUE(model.ok()) << model.status();
  absl::StatusOr<ModelSpec> reduced = ReducedForVerification(*model);
  ASSERT_TRUE(reduced.ok()) << reduced.status();
  reduced->set_weight_dtype(FP8_E4M3);
  const int64_t batch = 2;
  for (const std::string gemm : {"own_w8a8", "cublaslt"}) {
    SCOPED_TRACE(gemm);
    absl::StatusOr<std::unique_ptr<StepRunner>> runner = MakeRunner(*reduced, batch, 129, gemm);
    ASSERT_TRUE(runner.ok()) << runner.status();
    ExpectGraphMatchesOpByOp(**runner, batch, stream_);
  }
}

TEST_F(StepVerifierTest, GraphOfThePrefillStepMatchesOpByOp) {
  StepConfig config;
  config.phase = Phase::kPrefill;
  config.batch = 2;
  config.seq_len = 37;
  absl::StatusOr<std::unique_ptr<StepRunner>> runner = MakeRunner(TinyModel(), config);
  ASSERT_TRUE(runner.ok()) << runner.status();
  ExpectGraphMatchesOpByOp(**runner, config.batch, stream_);
  // The result names the attention kernel that ran: head_dim 64 has only the mma.sync one.
  const std::vector<Op>& ops = (*runner)->workload().ops();
  const auto attention = std::find_if(ops.begin(), ops.end(),
                                      [](const Op& op) { return op.kind == OpKind::kAttention; });
  ASSERT_NE(attention, ops.end());
  EXPECT_THAT((*runner)->Implementation(attention - ops.begin()), HasSubstr("mma.sync kernel"));
}

TEST_F(StepVerifierTest, RejectsAllZeroInput) {
  absl::StatusOr<std::unique_ptr<StepRunner>> runner = MakeRunner(TinyModel(), 3, 37);
  ASSERT_TRUE(runner.ok()) << runner.status();
  // Layer 1's FFN norm weight zeroed: its output would be all zeros, which must never be timed.
  ASSERT_CUDA(cudaMemsetAsync((*runner)->layer_buffers(1).ffn_norm_w, 0,
                              TinyModel().hidden_size() * sizeof(uint16_t), stream_));
  const absl::Status st = VerifyStep(**runner, stream_);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(st.message(), HasSubstr("op add_ffn_norm (layer 1)"));
  EXPECT_THAT(st.message(), HasSubstr("all zeros"));
}

// The per-point GEMM check (StepRunner::Options::check_gemms) holds each GEMM's launch against
// its reference; Create fails, naming the op, when the last output channel's weights change sign
// between the reference and the launch (40 rows: some output of that channel is far from 0).
// cuBLASLt runs them all. The last case runs down_proj over k = 28672 (70B's) on cuBLASLt's fp8
// fast accumulation, whose tolerance grows with k (ref::RtolGemm: 0.079): it must still catch
// one channel's sign.
TEST_F(StepVerifierTest, PerPointGemmCheckFailsWhenTheProductChanges) {
  ModelSpec long_k = TinyFp8Model();
  long_k.set_ffn_size(28672);
  for (const auto& [name, model] : {std::pair<const char*, ModelSpec>{"bf16", TinyModel()},
                                    {"fp8", TinyFp8Model()},
                                    {"fp8, ffn 28672", long_k}}) {
    SCOPED_TRACE(name);
    const bool fp8 = model.weight_dtype() == FP8_E4M3;
    absl::StatusOr<Workload> w =
        Workload::Build(model, {.phase = Phase::kDecode, .batch = 40, .context = 37});
    ASSERT_TRUE(w.ok()) << w.status();
    // Unchanged, every GEMM passes its check as it runs.
    absl::StatusOr<std::unique_ptr<StepRunner>> runner =
        StepRunner::Create(*w, gemm_.get(), RunnerOptions("cublaslt"), stream_);
    ASSERT_TRUE(runner.ok()) << runner.status();
    const std::vector<Op>& ops = (*runner)->workload().ops();
    int checked = 0;
    for (size_t i = 0; i < ops.size(); ++i) {
      if (ops[i].kind != OpKind::kGemm) continue;
      const std::string target = ops[i].name;
      SCOPED_TRACE(target);
      const bool fast = fp8 && target != "lm_head";  // the head stays bf16
      EXPECT_EQ((*runner)->FastAccumulation(i), fast);
      // On the check's stream, after the reference, before the launch.
      auto flip_sign = [&](const Op& op, const StepRunner::GemmBuffers& b,
                           cudaStream_t s) -> absl::Status {
        if (op.name != target) return absl::OkStatus();
        const bool e4m3 = b.w_scales != nullptr;
        const int64_t row_bytes = op.k * (e4m3 ? 1 : 2);
        char* last_row = static_cast<char*>(const_cast<void*>(b.w)) + (op.n - 1) * row_bytes;
        std::vector<uint8_t> row(row_bytes);
        TP_CUDA_RETURN_IF_ERROR(
            cudaMemcpyAsync(row.data(), last_row, row_bytes, cudaMemcpyDeviceToHost, s));
        TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));
        // The sign bit: bit 7 of an e4m3 code, of a bf16's high (second, little-endian) byte.
        for (int64_t j = e4m3 ? 0 : 1; j < row_bytes; j += e4m3 ? 1 : 2) row[j] ^= 0x80;
        TP_CUDA_RETURN_IF_ERROR(
            cudaMemcpyAsync(last_row, row.data(), row_bytes, cudaMemcpyHostToDevice, s));
        return CudaStatus(cudaStreamSynchronize(s), "cudaStreamSynchronize");
      };
      StepRunner::Options o = RunnerOptions("cublaslt");
      o.TEST_before_checked_launch = flip_sign;
      absl::StatusOr<std::unique_ptr<StepRunner>> flipped =
          StepRunner::Create(*w, gemm_.get(), o, stream_);
      EXPECT_EQ(flipped.status().code(), absl::StatusCode::kInternal) << flipped.status();
      const std::string message(flipped.status().message());
      EXPECT_THAT(message, HasSubstr(absl::StrCat("GEMM check failed: ", target)));
      // The worst element lies in that channel: [row, n - 1].
      EXPECT_THAT(message, HasSubstr(absl::StrCat(", ", ops[i].n - 1, "] (got")));
      if (fast) {
        // Every channel's scale 4% high: at k 28672 no element is past its fast-accumulation
        // bound, but the error as a whole, 4% of rms(ref), is past the 3% CompareGemm allows.
        // (At short k the largest elements fail on their own first.)
        o.TEST_before_checked_launch = [&](const Op& op, const StepRunner::GemmBuffers& b,
                                           cudaStream_t s) -> absl::Status {
          if (op.name != target) return absl::OkStatus();
          std::vector<float> scales(op.n);
          float* scale = const_cast<float*>(b.w_scales);
          TP_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(scales.data(), scale, scales.size() * 4,
                                                  cudaMemcpyDeviceToHost, s));
          TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));
          for (float& v : scales) v *= 1.04f;
          TP_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(scale, scales.data(), scales.size() * 4,
                                                  cudaMemcpyHostToDevice, s));
          return CudaStatus(cudaStreamSynchronize(s), "cudaStreamSynchronize");
        };
        absl::StatusOr<std::unique_ptr<StepRunner>> scaled =
            StepRunner::Create(*w, gemm_.get(), o, stream_);
        EXPECT_EQ(scaled.status().code(), absl::StatusCode::kInternal) << scaled.status();
        if (ops[i].k == 28672) EXPECT_THAT(scaled.status().message(), HasSubstr("of rms(ref)"));
      }
      ++checked;
    }
    EXPECT_EQ(checked, 5);  // qkv, o, gate_up, down, lm_head
  }
}

// The bf16 output VerifyStep reads of op `op` in `layer`, as the kernels write it.
__nv_bfloat16* OutputOf(const StepRunner& r, const Op& op, int64_t layer) {
  const StepRunner::Activations& a = r.activations();
  switch (op.kind) {
    case OpKind::kEmbedding: return a.tmp_h;
    case OpKind::kAddRmsNorm: return a.xn;
    case OpKind::kGemm: {
      absl::StatusOr<StepRunner::GemmBuffers> b = r.GemmBuffersOf(op, layer);
      return b.ok() ? b->y : nullptr;
    }
    case OpKind::kRopeKvAppend: return a.q;
    case OpKind::kAttention: return a.attn_out;
    case OpKind::kSiluMul: return a.act;
  }
  return nullptr;
}

// VerifyStep fails, naming the op and the layer, when one element of one op's output is wrong
// after its launch (the hook writes it, on the op's stream): every op of the decode step, in the
// last layer it runs in, so that the same op in layer 0 passes first. 1000 is far from any
// value of these unit-scale activations; NaN must fail whatever the tolerance.
TEST_F(StepVerifierTest, RejectsOneWrongElementOfAnyOp) {
  for (const auto& [name, model, gemm] :
       {std::tuple<const char*, ModelSpec, const char*>{"bf16", TinyModel(), "auto"},
        {"fp8 own", TinyFp8Model(), "own"},
        {"fp8 cublaslt", TinyFp8Model(), "cublaslt"}}) {
    SCOPED_TRACE(name);
    const bool fp8 = model.weight_dtype() == FP8_E4M3;
    absl::StatusOr<std::unique_ptr<StepRunner>> runner = MakeRunner(model, 3, 37, gemm);
    ASSERT_TRUE(runner.ok()) << runner.status();
    StepRunner& r = **runner;
    const std::vector<Op>& ops = r.workload().ops();
    int checked = 0;
    for (size_t i = 0; i < ops.size(); ++i) {
      // With fp8 weights only the GEMMs' outputs are bf16 whatever path runs.
      if (fp8 && ops[i].kind != OpKind::kGemm) continue;
      const int64_t layer = ops[i].per_layer ? model.num_layers() - 1 : 0;
      __nv_bfloat16* out = OutputOf(r, ops[i], layer);
      ASSERT_NE(out, nullptr) << ops[i].name;
      for (const float wrong : {1000.0f, NAN}) {
        SCOPED_TRACE(absl::StrCat(ops[i].name, " <- ", wrong));
        // Row 1, column 5 of a [rows, n] output: flat index n + 5 (for q and attn_out, whose
        // shape is [tokens, heads, head_dim], head 0 of token 1 at n = heads x head_dim).
        const int64_t row_len = ops[i].kind == OpKind::kRopeKvAppend ||
                                        ops[i].kind == OpKind::kAttention
                                    ? model.num_heads() * model.head_dim()
                                    : ops[i].n;
        SetVerifyStepHookForTesting(
            [&, i, layer, wrong](const StepRunner&, size_t op, int64_t l, cudaStream_t s) {
              if (op != i || l != layer) return absl::OkStatus();
              return FillBf16(out + row_len + 5, 1, wrong, s);
            });
        const absl::Status st = VerifyStep(r, stream_);
        SetVerifyStepHookForTesting(nullptr);
        EXPECT_EQ(st.code(), absl::StatusCode::kInternal) << st;
        const std::string where = ops[i].per_layer
                                      ? absl::StrCat("op ", ops[i].name, " (layer ", layer, ")")
                                      : absl::StrCat("op ", ops[i].name);
        EXPECT_THAT(st.message(), HasSubstr(absl::StrCat("verification failed: ", where)));
        if (std::isnan(wrong)) {
          EXPECT_THAT(st.message(), HasSubstr("(1 NaN/Inf)"));
        } else {
          EXPECT_THAT(st.message(), HasSubstr("got 1000"));
          EXPECT_THAT(st.message(), HasSubstr("; 1 of "));  // that element alone
        }
      }
      ++checked;
    }
    // The decode step: embedding, add_attn_norm, qkv_proj, rope_kv_append, attention, o_proj,
    // add_ffn_norm, gate_up_proj, silu_mul, down_proj, final_norm, lm_head; fp8: its 5 GEMMs.
    EXPECT_EQ(checked, fp8 ? 5 : 12);
    // Without the hook the same runner verifies: the failures were the hook's.
    ASSERT_OK(VerifyStep(r, stream_));
  }
}

// The per-point GEMM check of the own skinny GEMM (bf16 and fp8 weights, packed at Create): the
// first token's activations zeroed after the reference, before the launch, make Create fail,
// naming the op and the own kernel.
TEST_F(StepVerifierTest, PerPointGemmCheckOfTheOwnGemmFailsWhenTheProductChanges) {
  for (const ModelSpec& model : {TinyModel(), TinyFp8Model()}) {
    SCOPED_TRACE(model.weight_dtype() == FP8_E4M3 ? "fp8" : "bf16");
    absl::StatusOr<Workload> w =
        Workload::Build(model, {.phase = Phase::kDecode, .batch = 3, .context = 37});
    ASSERT_TRUE(w.ok()) << w.status();
    int checked = 0;
    for (const Op& target : w->ops()) {
      if (target.kind != OpKind::kGemm) continue;
      SCOPED_TRACE(target.name);
      StepRunner::Options o = RunnerOptions("own");
      o.TEST_before_checked_launch = [&](const Op& op, const StepRunner::GemmBuffers& b,
                                         cudaStream_t s) {
        if (op.name != target.name) return absl::OkStatus();
        return CudaStatus(cudaMemsetAsync(const_cast<__nv_bfloat16*>(b.x), 0,
                                          op.k * sizeof(__nv_bfloat16), s),
                          "cudaMemsetAsync");
      };
      absl::StatusOr<std::unique_ptr<StepRunner>> runner =
          StepRunner::Create(*w, gemm_.get(), o, stream_);
      EXPECT_EQ(runner.status().code(), absl::StatusCode::kInternal) << runner.status();
      EXPECT_THAT(runner.status().message(),
                  HasSubstr(absl::StrCat("GEMM check failed: ", target.name, " at m=3 on ")));
      EXPECT_THAT(runner.status().message(), HasSubstr("skinny_gemm"));
      ++checked;
    }
    EXPECT_EQ(checked, 5);  // qkv, o, gate_up, down, lm_head: all own at 3 tokens
    // The same options without the hook create a runner: the failures were the hook's.
    absl::StatusOr<std::unique_ptr<StepRunner>> runner =
        StepRunner::Create(*w, gemm_.get(), RunnerOptions("own"), stream_);
    ASSERT_TRUE(runner.ok()) << runner.status();
  }
}

// With fp8 weights the ops before a W8A8 GEMM write only its e4m3 copy: one wrong byte of it,
// or one row's scale doubled, fails VerifyStep, naming the op and what was wrong.
TEST_F(StepVerifierTest, RejectsAWrongE4m3CopyOrScale) {
  absl::StatusOr<std::unique_ptr<StepRunner>> runner =
      MakeRunner(TinyFp8Model(), 3, 37, "cublaslt");
  ASSERT_TRUE(runner.ok()) << runner.status();
  StepRunner& r = **runner;
  const StepRunner::Activations& a = r.activations();
  const std::vector<Op>& ops = r.workload().ops();
  const int64_t last_layer = TinyFp8Model().num_layers() - 1;
  int checked = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (!r.QuantizesForNextGemm(i)) continue;
    const std::string what = ops[i].kind == OpKind::kSiluMul ? "act" : "xn";
    // Row 1, column 5: 448 (e4m3 0x7e), or 0 where it already held +-448 (its row's largest).
    auto wrong_byte = [&, i](const StepRunner&, size_t op, int64_t layer,
                         cudaStream_t s) -> absl::Status {
      if (op != i || layer != last_layer) return absl::OkStatus();
      uint8_t* at = reinterpret_cast<uint8_t*>(a.xq) + ops[i].n + 5;
      uint8_t byte = 0;
      TP_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(&byte, at, 1, cudaMemcpyDeviceToHost, s));
      TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));
      byte = (byte & 0x7f) == 0x7e ? 0x00 : 0x7e;
      TP_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(at, &byte, 1, cudaMemcpyHostToDevice, s));
      return CudaStatus(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    };
    auto doubled_scale = [&, i](const StepRunner&, size_t op, int64_t layer,
                         cudaStream_t s) -> absl::Status {
      if (op != i || layer != last_layer) return absl::OkStatus();
      float scale = 0;
      TP_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(&scale, a.x_scales + 1, sizeof(float), cudaMemcpyDeviceToHost, s));
      TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));
      scale *= 2;
      TP_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(a.x_scales + 1, &scale, sizeof(float), cudaMemcpyHostToDevice, s));
      return CudaStatus(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    };
    const std::string where = absl::StrCat("verification failed: op ", ops[i].name, " (layer ",
                                           last_layer, "), output ", what, " in e4m3");
    SetVerifyStepHookForTesting(wrong_byte);
    absl::Status st = VerifyStep(r, stream_);
    EXPECT_EQ(st.code(), absl::StatusCode::kInternal) << ops[i].name << ": " << st;
    EXPECT_THAT(st.message(), HasSubstr(absl::StrCat(where, ": ")));
    EXPECT_THAT(st.message(), HasSubstr("at [1, 5]"));
    SetVerifyStepHookForTesting(doubled_scale);
    st = VerifyStep(r, stream_);
    EXPECT_EQ(st.code(), absl::StatusCode::kInternal) << ops[i].name << ": " << st;
    EXPECT_THAT(st.message(), HasSubstr(absl::StrCat(where, ", scales: ")));
    EXPECT_THAT(st.message(), HasSubstr("at [1]"));
    SetVerifyStepHookForTesting(nullptr);
    ++checked;
  }
  EXPECT_EQ(checked, 3);  // add_attn_norm, add_ffn_norm, silu_mul
  ASSERT_OK(VerifyStep(r, stream_));
}

// rope_kv_append must leave the cache outside the appended positions as it was: a change at
// position 0 (the new token is at 37) fails, saying where.
TEST_F(StepVerifierTest, RejectsACacheChangeOutsideTheAppendedPositions) {
  absl::StatusOr<std::unique_ptr<StepRunner>> runner = MakeRunner(TinyModel(), 3, 37);
  ASSERT_TRUE(runner.ok()) << runner.status();
  StepRunner& r = **runner;
  const std::vector<Op>& ops = r.workload().ops();
  const auto rope = std::find_if(ops.begin(), ops.end(),
                                 [](const Op& op) { return op.kind == OpKind::kRopeKvAppend; });
  ASSERT_NE(rope, ops.end());
  const size_t index = rope - ops.begin();
  const int64_t d = TinyModel().head_dim();
  // Batch 1, KV head 1: (1 x 2 + 1) x capacity positions in, position 0, element 3.
  const int64_t at = (3 * r.cache_capacity()) * d + 3;
  SetVerifyStepHookForTesting([&](const StepRunner&, size_t op, int64_t layer, cudaStream_t s) {
    if (op != index || layer != 0) return absl::OkStatus();
    // The cache holds random values: any one is unlikely to be 77 already.
    return FillBf16(r.layer_buffers(0).k_cache + at, 1, 77.0f, s);
  });
  const absl::Status st = VerifyStep(r, stream_);
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal) << st;
  EXPECT_THAT(st.message(), HasSubstr("op rope_kv_append (layer 0)"));
  EXPECT_THAT(st.message(),
              HasSubstr("k_cache changed outside the appended positions, at [1, 1, 0, 3]"));
}

}  // namespace
}  // namespace truthput
