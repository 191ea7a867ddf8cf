#include "bench/residency.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace truthput {
namespace {

constexpr int64_t GB = 1000 * 1000 * 1000;
constexpr int64_t MB = 1000 * 1000;

TEST(Residency, FullWhenEveryLayerFits) {
  absl::StatusOr<ResidencyPlan> p = PlanResidency({.num_layers = 32, .layer_bytes = GB / 2,
                                                   .layer_step_bytes = GB / 2,
                                                   .shared_bytes = GB, .free_bytes = 70 * GB,
                                                   .l2_bytes = 50 * MB});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->full);
  EXPECT_EQ(p->layer_buffers, 32);
  EXPECT_THAT(p->Describe(), ::testing::HasSubstr("full"));
}

TEST(Residency, RotatesAsManyLayersAsFit) {
  // Llama-70B at batch 1: 1.71 GB per layer, 80 layers, 75 GB free.
  absl::StatusOr<ResidencyPlan> p = PlanResidency(
      {.num_layers = 80, .layer_bytes = 1711 * MB, .layer_step_bytes = 1711 * MB,
       .shared_bytes = 5 * GB, .free_bytes = 75 * GB, .l2_bytes = 50 * MB});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE(p->full);
  EXPECT_EQ(p->layer_buffers, 40);
  EXPECT_GE(p->bytes_between_reuse, 4 * 50 * MB);
  EXPECT_LE(p->allocated_bytes, 75 * GB);
}

TEST(Residency, SmallLayersNeedMoreBuffersThanTwo) {
  // 30 MB layers and a 50 MB L2: 200 MB between reuses needs 1 + 7 buffers.
  ResidencyInput in{.num_layers = 100, .layer_bytes = 30 * MB, .layer_step_bytes = 30 * MB,
                    .shared_bytes = 0, .free_bytes = 8 * 30 * MB, .l2_bytes = 50 * MB};
  absl::StatusOr<ResidencyPlan> p = PlanResidency(in);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->layer_buffers, 8);
  EXPECT_GE(p->bytes_between_reuse, 200 * MB);
  in.free_bytes = 7 * 30 * MB;
  EXPECT_EQ(PlanResidency(in).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(Residency, SkipsWithTheReasonWhenNothingFits) {
  absl::StatusOr<ResidencyPlan> p = PlanResidency(
      {.num_layers = 126, .layer_bytes = 40 * GB, .layer_step_bytes = 40 * GB,
       .shared_bytes = 5 * GB, .free_bytes = 75 * GB, .l2_bytes = 50 * MB});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(p.status().message(), ::testing::HasSubstr("does not fit: 2 layer buffers"));
  EXPECT_THAT(p.status().message(), ::testing::HasSubstr("75.00 GB free"));
}

}  // namespace
}  // namespace truthput
