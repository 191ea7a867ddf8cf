// What a GPU run verifies before timing, decided on the CPU: which GEMM implementations and
// which reduced step.
#include <string>
#include <vector>

#include "bench/step_verifier.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "workloads/model_registry.h"
#include "workloads/workload.h"

namespace truthput {
namespace {

using ::testing::ElementsAre;

// Every implementation --gemm may launch is verified, and no other: --gemm=auto with fp8 weights
// can pick the W8A8 skinny GEMM, which a run that verified only "own" and "cublaslt" would time
// unchecked.
TEST(StepVerifierPlan, EveryGemmImplementationARunMayLaunchIsVerified) {
  EXPECT_THAT(GemmVariantsToVerify("auto", false), ElementsAre("own", "cublaslt"));
  EXPECT_THAT(GemmVariantsToVerify("auto", true), ElementsAre("own", "own_w8a8", "cublaslt"));
  EXPECT_THAT(GemmVariantsToVerify("own", false), ElementsAre("own"));
  EXPECT_THAT(GemmVariantsToVerify("own", true), ElementsAre("own"));
  EXPECT_THAT(GemmVariantsToVerify("own_w8a8", false), ElementsAre("own"));  // bf16: the same
  EXPECT_THAT(GemmVariantsToVerify("own_w8a8", true), ElementsAre("own_w8a8"));
  EXPECT_THAT(GemmVariantsToVerify("cublaslt", false), ElementsAre("cublaslt"));
  EXPECT_THAT(GemmVariantsToVerify("cublaslt", true), ElementsAre("cublaslt"));
}

TEST(StepVerifierPlan, ReducedStepKeepsThePhaseAndCapsTheShape) {
  const StepConfig decode{.phase = Phase::kDecode, .batch = 256, .context = 2048, .tp = 2};
  const StepConfig d = ReducedStepForVerification(decode);
  EXPECT_EQ(d.phase, Phase::kDecode);
  EXPECT_EQ(d.batch, 3);
  EXPECT_EQ(d.context, 129);
  EXPECT_EQ(d.seq_len, 1);
  EXPECT_EQ(d.tp, 2);  // one shard's shapes, as the run's
  // A step already smaller stays as it is.
  const StepConfig small = ReducedStepForVerification({.batch = 2, .context = 0});
  EXPECT_EQ(small.batch, 2);
  EXPECT_EQ(small.context, 0);

  const StepConfig prefill{.phase = Phase::kPrefill, .batch = 8, .seq_len = 2048};
  const StepConfig p = ReducedStepForVerification(prefill);
  EXPECT_EQ(p.phase, Phase::kPrefill);
  EXPECT_EQ(p.batch, 2);
  EXPECT_EQ(p.seq_len, 37);
  EXPECT_EQ(p.context, 0);
  EXPECT_EQ(ReducedStepForVerification({.phase = Phase::kPrefill, .batch = 1, .seq_len = 5})
                .seq_len,
            5);
}

// The reduced model keeps the real one's shapes but few layers and a small vocabulary, so its
// CPU reference takes seconds; a smaller model keeps its own.
TEST(StepVerifierPlan, ReducedModelCapsLayersAndVocabulary) {
  absl::StatusOr<ModelSpec> m = ReducedForVerification(*LoadModel("70b"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->num_layers(), 2u);
  EXPECT_EQ(m->vocab_size(), 4096u);
  EXPECT_EQ(m->hidden_size(), 8192u);
  EXPECT_EQ(m->ffn_size(), 28672u);
  ModelSpec tiny = *LoadModel("8b");
  tiny.set_num_layers(1);
  tiny.set_vocab_size(1000);
  m = ReducedForVerification(tiny);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->num_layers(), 1u);
  EXPECT_EQ(m->vocab_size(), 1000u);
}

}  // namespace
}  // namespace truthput
