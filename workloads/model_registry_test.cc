#include "workloads/model_registry.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace truthput {
namespace {

using ::testing::HasSubstr;

TEST(ModelRegistry, AliasesLoadTheLlamaModels) {
  absl::StatusOr<ModelSpec> m70 = LoadModel("70b");
  ASSERT_TRUE(m70.ok()) << m70.status();
  EXPECT_EQ(m70->name(), "Llama-3.1-70B");
  EXPECT_EQ(m70->hidden_size(), 8192u);
  EXPECT_EQ(m70->num_layers(), 80u);
  EXPECT_EQ(m70->num_kv_heads(), 8u);
  EXPECT_EQ(LoadModel("8b")->num_layers(), 32u);
  EXPECT_EQ(LoadModel("405b")->hidden_size(), 16384u);
  EXPECT_EQ(LoadModel("mistral-7b")->vocab_size(), 32768u);
  // File stems and display names work too.
  EXPECT_EQ(LoadModel("llama-3.1-8b")->name(), "Llama-3.1-8B");
  EXPECT_EQ(LoadModel("Llama-3.1-405B")->num_layers(), 126u);
  // Whatever their case, as --model promises.
  EXPECT_EQ(LoadModel("70B")->name(), "Llama-3.1-70B");
}

TEST(ModelRegistry, UnknownModelListsTheKnownOnes) {
  absl::StatusOr<ModelSpec> m = LoadModel("71b");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("unknown model '71b'"));
  EXPECT_THAT(m.status().message(), HasSubstr("70b"));
  EXPECT_THAT(m.status().message(), HasSubstr(".textproto"));
}

TEST(ModelRegistry, MissingFileIsNamed) {
  absl::StatusOr<ModelSpec> m = LoadModel("/nonexistent/model.textproto");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("/nonexistent/model.textproto"));
}

// A folder named like a spec is not read as an empty one.
TEST(ModelRegistry, AFolderIsNotAModelFile) {
  const std::string dir = testing::TempDir() + "/folder.textproto";
  std::filesystem::create_directories(dir);
  absl::StatusOr<ModelSpec> m = LoadModel(dir);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("folder.textproto is a folder"));
  std::filesystem::remove(dir);
}

constexpr char kValid[] = R"(name: "tiny" hidden_size: 64 num_layers: 2 num_heads: 4
  num_kv_heads: 2 head_dim: 16 ffn_size: 128 vocab_size: 100 weight_dtype: BF16 kv_dtype: BF16)";

TEST(ModelRegistry, ParsesAUserSpec) {
  absl::StatusOr<ModelSpec> m = ParseModelSpec(kValid, "tiny.textproto");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->ffn_size(), 128u);
}

TEST(ModelRegistry, RejectsUnknownFieldsWithPosition) {
  absl::StatusOr<ModelSpec> m =
      ParseModelSpec(std::string(kValid) + "\nhiden_size: 3", "user.textproto");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("user.textproto:3:"));
  EXPECT_THAT(m.status().message(), HasSubstr("hiden_size"));
}

TEST(ModelRegistry, RejectsHeadsNotDivisibleByKvHeads) {
  absl::StatusOr<ModelSpec> m =
      ParseModelSpec(absl::StrReplaceAll(kValid, {{"num_kv_heads: 2", "num_kv_heads: 3"}}),
                     "bad.textproto");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("num_heads (4) is not divisible by num_kv_heads (3)"));
}

TEST(ModelRegistry, RejectsZeroSizes) {
  // Each size set to 0, and (proto3 reads a missing field as 0) each left out.
  for (const char* field : {"hidden_size: 64", "num_layers: 2", "num_heads: 4",
                            "num_kv_heads: 2", "head_dim: 16", "ffn_size: 128",
                            "vocab_size: 100"}) {
    const std::string name(absl::string_view(field).substr(0, absl::string_view(field).find(':')));
    for (const std::string& as : {name + ": 0", std::string()}) {
      absl::StatusOr<ModelSpec> m = ParseModelSpec(absl::StrReplaceAll(kValid, {{field, as}}), "z");
      ASSERT_FALSE(m.ok()) << field << " -> '" << as << "'";
      EXPECT_THAT(m.status().message(), HasSubstr(name + " must be > 0"));
    }
  }
}

TEST(ModelRegistry, RejectsAnEmptyName) {
  for (const char* name : {"''", "' '"}) {
    absl::StatusOr<ModelSpec> m = ParseModelSpec(
        absl::StrReplaceAll(kValid, {{"name: \"tiny\"", absl::StrCat("name: ", name)}}), "n");
    ASSERT_FALSE(m.ok()) << name;
    EXPECT_THAT(m.status().message(), HasSubstr("name must not be empty")) << name;
  }
}

TEST(ModelRegistry, RejectsRopeThetaAndEpsThatCannotBeUsed) {
  for (const char* bad : {"rope_theta: -1", "rope_theta: nan", "rope_theta: inf"}) {
    absl::StatusOr<ModelSpec> m = ParseModelSpec(absl::StrCat(kValid, " ", bad), "t");
    ASSERT_FALSE(m.ok()) << bad;
    EXPECT_THAT(m.status().message(), HasSubstr("rope_theta must be a positive number")) << bad;
  }
  for (const char* bad : {"rms_norm_eps: -1e-5", "rms_norm_eps: nan"}) {
    absl::StatusOr<ModelSpec> m = ParseModelSpec(absl::StrCat(kValid, " ", bad), "t");
    ASSERT_FALSE(m.ok()) << bad;
    EXPECT_THAT(m.status().message(), HasSubstr("rms_norm_eps must be a positive number")) << bad;
  }
  EXPECT_TRUE(ParseModelSpec(absl::StrCat(kValid, " rope_theta: 500000 rms_norm_eps: 1e-6"), "t").ok());
}

TEST(ModelRegistry, RejectsMissingDtype) {
  absl::StatusOr<ModelSpec> m = ParseModelSpec(
      "name: 'x' hidden_size: 64 num_layers: 2 num_heads: 4 num_kv_heads: 2 head_dim: 16 "
      "ffn_size: 128 vocab_size: 100",
      "nodtype");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("weight_dtype"));
}

TEST(ModelRegistry, EveryBuiltinModelValidates) {
  for (const std::string& name : KnownModelNames()) {
    absl::StatusOr<ModelSpec> m = LoadModel(name);
    EXPECT_TRUE(m.ok()) << name << ": " << m.status();
    if (m.ok()) EXPECT_FALSE(m->source().empty()) << name;
  }
}

// The dtypes the cost model has kernels for are accepted for weights and KV cache alike; others
// (fp32) are refused rather than priced at some other dtype's bytes.
TEST(ModelRegistry, AcceptsBf16Fp16AndFp8Only) {
  const std::string base =
      "name: 'x' hidden_size: 64 num_layers: 2 num_heads: 4 num_kv_heads: 2 head_dim: 16 "
      "ffn_size: 128 vocab_size: 100 ";
  for (const char* dtype : {"BF16", "FP16", "FP8_E4M3"}) {
    const std::string weights = absl::StrCat(base, "weight_dtype: ", dtype, " kv_dtype: BF16");
    EXPECT_TRUE(ParseModelSpec(weights, "t").ok()) << weights;
    const std::string kv = absl::StrCat(base, "weight_dtype: BF16 kv_dtype: ", dtype);
    EXPECT_TRUE(ParseModelSpec(kv, "t").ok()) << kv;
  }
  EXPECT_THAT(ParseModelSpec(absl::StrCat(base, "weight_dtype: FP32 kv_dtype: BF16"), "t")
                  .status().message(),
              HasSubstr("weight_dtype must be"));
  EXPECT_THAT(ParseModelSpec(absl::StrCat(base, "weight_dtype: BF16 kv_dtype: FP32"), "t")
                  .status().message(),
              HasSubstr("kv_dtype must be"));
}

// Rotary embeddings rotate pairs of a head's dimensions: an odd head_dim has no pairing.
TEST(ModelRegistry, RejectsAnOddHeadDim) {
  absl::StatusOr<ModelSpec> m =
      ParseModelSpec(absl::StrReplaceAll(kValid, {{"head_dim: 16", "head_dim: 15"}}), "t");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("head_dim (15) must be even"));
}

// A mixture-of-experts spec is refused as not modelled, not priced as a dense model.
TEST(ModelRegistry, RefusesMixtureOfExperts) {
  absl::StatusOr<ModelSpec> m = ParseModelSpec(absl::StrCat(kValid, " num_experts: 8"), "t");
  EXPECT_THAT(m.status().message(), HasSubstr("mixture-of-experts models"));
  EXPECT_EQ(m.status().code(), absl::StatusCode::kUnimplemented);  // not a malformed spec
  ModelSpec moe = *LoadModel("8b");
  moe.set_num_experts(8);
  EXPECT_EQ(ValidateModelSpec(moe).code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace truthput
