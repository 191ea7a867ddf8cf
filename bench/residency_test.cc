#include "bench/residency.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace truthput {
namespace {

constexpr int64_t GB = 1000 * 1000 * 1000;
constexpr int64_t MB = 1000 * 1000;

TEST(Residency, FullWhenEveryLayerFits) {
  absl::StatusOr<ResidencyPlan> p = PlanResidency({.num_layers = 32, .layer_bytes = GB / 2,
                                                   .layer_step_bytes = GB / 2,
                                                   .other_step_bytes = GB / 4,
                                                   .shared_bytes = GB, .free_bytes = 70 * GB,
                                                   .l2_bytes = 50 * MB});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->full);
  EXPECT_EQ(p->layer_buffers, 32);
  // Between two uses of a layer the other 31 and the ops outside the layers run: 31 * 0.5 GB +
  // 0.25 GB = 15.75 GB. Allocated: 32 * 0.5 GB + 1 GB shared = 17 GB.
  EXPECT_EQ(p->bytes_between_reuse, 15 * GB + 3 * GB / 4);
  EXPECT_EQ(p->allocated_bytes, 17 * GB);
  EXPECT_EQ(p->Describe(), "full (32 layers)");
}

TEST(Residency, FullWhenTheLayersFitExactly) {
  // 32 * 0.5 GB + 1 GB shared = 17 GB, all of it free: the last layer fits with no byte to spare.
  absl::StatusOr<ResidencyPlan> p = PlanResidency({.num_layers = 32, .layer_bytes = GB / 2,
                                                   .layer_step_bytes = GB / 2,
                                                   .shared_bytes = GB, .free_bytes = 17 * GB,
                                                   .l2_bytes = 50 * MB});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->full);
  EXPECT_EQ(p->allocated_bytes, 17 * GB);
}

TEST(Residency, RotatesAsManyLayersAsFit) {
  // Llama-70B at batch 1: 1.71 GB per layer, 80 layers, 75 GB free.
  absl::StatusOr<ResidencyPlan> p = PlanResidency(
      {.num_layers = 80, .layer_bytes = 1711 * MB, .layer_step_bytes = 1711 * MB,
       .shared_bytes = 5 * GB, .free_bytes = 75 * GB, .l2_bytes = 50 * MB});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE(p->full);
  // Room for layers: 75 - 5 = 70 GB; 70000 MB / 1711 MB = 40.9, so 40 buffers. Between two uses
  // of one the other 39 pass: 39 * 1711 MB = 66729 MB. Allocated: 40 * 1711 MB + 5 GB = 73440 MB.
  EXPECT_EQ(p->layer_buffers, 40);
  EXPECT_EQ(p->bytes_between_reuse, 66729 * MB);
  EXPECT_EQ(p->allocated_bytes, 73440 * MB);
  EXPECT_EQ(p->Describe(), "rotating 40 layer buffers (66.73 GB of weights and KV between reuses)");
}

TEST(Residency, SmallLayersNeedMoreBuffersThanTwo) {
  // 30 MB layers and a 50 MB L2: 200 MB between reuses needs 1 + 7 buffers. (96 layers: a
  // multiple of 8, so the step boundary keeps 7 layers between reuses too.)
  ResidencyInput in{.num_layers = 96, .layer_bytes = 30 * MB, .layer_step_bytes = 30 * MB,
                    .shared_bytes = 0, .free_bytes = 8 * 30 * MB, .l2_bytes = 50 * MB};
  absl::StatusOr<ResidencyPlan> p = PlanResidency(in);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->layer_buffers, 8);
  EXPECT_EQ(p->bytes_between_reuse, 7 * 30 * MB);  // 210 MB: the fewest buffers that reach 200
  EXPECT_EQ(p->allocated_bytes, 8 * 30 * MB);
  in.free_bytes = 7 * 30 * MB;  // 6 * 30 MB = 180 MB between reuses would be served from L2
  absl::StatusOr<ResidencyPlan> short_one = PlanResidency(in);
  EXPECT_EQ(short_one.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(short_one.status().message(), ::testing::HasSubstr("does not fit: 8 layer buffers"));
}

// The buffer count follows the bytes a layer's ops touch in a step, not the bytes allocated for
// it: a KV cache is allocated to its capacity but a step reads only kv_len positions, and a
// layer's ops also touch activations that live in the shared buffers. Each case below gives a
// different count if the two are swapped.
TEST(Residency, BuffersFollowTheBytesTouchedNotAllocated) {
  // Touched < allocated: 100 MB allocated, 30 MB touched, 50 MB L2. 200 MB between reuses needs
  // 1 + ceil(200 / 30) = 8 buffers (800 MB); counting allocated bytes, 1 + ceil(200 / 100) = 3.
  ResidencyInput in{.num_layers = 96, .layer_bytes = 100 * MB, .layer_step_bytes = 30 * MB,
                    .shared_bytes = 0, .free_bytes = 8 * 100 * MB, .l2_bytes = 50 * MB};
  absl::StatusOr<ResidencyPlan> p = PlanResidency(in);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->layer_buffers, 8);
  EXPECT_EQ(p->bytes_between_reuse, 7 * 30 * MB);
  EXPECT_EQ(p->allocated_bytes, 8 * 100 * MB);
  in.free_bytes = 7 * 100 * MB;
  absl::StatusOr<ResidencyPlan> short_one = PlanResidency(in);
  EXPECT_EQ(short_one.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(short_one.status().message(), ::testing::HasSubstr("does not fit: 8 layer buffers"));

  // Touched > allocated: 30 MB allocated, 100 MB touched. 1 + ceil(200 / 100) = 3 buffers (90 MB)
  // suffice; counting allocated bytes would ask for 8 and refuse.
  in = {.num_layers = 96, .layer_bytes = 30 * MB, .layer_step_bytes = 100 * MB,
        .shared_bytes = 0, .free_bytes = 3 * 30 * MB, .l2_bytes = 50 * MB};
  p = PlanResidency(in);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->layer_buffers, 3);
  EXPECT_EQ(p->bytes_between_reuse, 2 * 100 * MB);
  EXPECT_EQ(p->allocated_bytes, 3 * 30 * MB);

  // Full residency counts touched bytes too: 10 layers of 100 MB touched, 30 MB allocated.
  in.num_layers = 10;
  in.free_bytes = 10 * 30 * MB;
  p = PlanResidency(in);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->full);
  EXPECT_EQ(p->bytes_between_reuse, 9 * 100 * MB);  // the other 9 layers
  EXPECT_EQ(p->allocated_bytes, 10 * 30 * MB);
}

// Layer l runs on buffer l % B and each step starts again at buffer 0: with 100 layers on 9
// buffers, buffer 0 serves layer 99 and then the next step's layer 0, with only the ops outside
// the layers between. The plan takes fewer buffers where the step boundary would be too short.
TEST(Residency, TheStepBoundaryKeepsFourL2BetweenReusesToo) {
  ResidencyInput in{.num_layers = 100, .layer_bytes = 30 * MB, .layer_step_bytes = 30 * MB,
                    .other_step_bytes = 150 * MB, .shared_bytes = 0, .free_bytes = 9 * 30 * MB,
                    .l2_bytes = 50 * MB};
  absl::StatusOr<ResidencyPlan> p = PlanResidency(in);
  ASSERT_TRUE(p.ok()) << p.status();
  // 9 buffers: 100 % 9 = 1, so 0 layers + 150 MB across the boundary, short of 200 MB.
  // 8 buffers: 100 % 8 = 4, so 3 * 30 + 150 = 240 MB across it, 7 * 30 = 210 MB within: 210.
  EXPECT_EQ(p->layer_buffers, 8);
  EXPECT_EQ(p->bytes_between_reuse, 210 * MB);
  EXPECT_EQ(p->allocated_bytes, 8 * 30 * MB);

  // 10 buffers divide 100 layers: 9 between reuses everywhere.
  in.free_bytes = 10 * 30 * MB;
  p = PlanResidency(in);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->layer_buffers, 10);
  EXPECT_EQ(p->bytes_between_reuse, 270 * MB);

  // With nothing outside the layers no count from 8 to 9 keeps 200 MB across the boundary
  // (8: 3 * 30 = 90 MB; 9: 0).
  in.other_step_bytes = 0;
  in.free_bytes = 9 * 30 * MB;
  p = PlanResidency(in);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(p.status().message(),
              ::testing::HasSubstr("no rotation of 8 to 9 layer buffers over 100 layers keeps "
                                   "200 MB (4x L2) between reuses across the step boundary"));
}

// BytesBetweenReuse against the order a step runs: layers 0..L-1 on buffers l % b, then the
// ops outside the layers, step after step. The fewest bytes between two uses of any buffer,
// counted by walking two steps.
TEST(Residency, BytesBetweenReuseIsTheFewestAlongTheSteps) {
  constexpr int64_t kPer = 7, kOther = 5;  // distinct, so a wrong term shows
  for (int64_t layers = 1; layers <= 40; ++layers) {
    for (int64_t buffers = 1; buffers <= layers; ++buffers) {
      int64_t fewest = -1;
      std::vector<int64_t> last_use(buffers, -1);  // bytes touched before that use ended
      int64_t touched = 0;
      for (int step = 0; step < 2; ++step) {
        for (int64_t l = 0; l < layers; ++l) {
          int64_t& last = last_use[l % buffers];
          if (last >= 0) {
            const int64_t between = touched - last;
            fewest = fewest < 0 ? between : std::min(fewest, between);
          }
          touched += kPer;
          last = touched;
        }
        touched += kOther;
      }
      const ResidencyInput in{.num_layers = layers, .layer_bytes = 1,
                              .layer_step_bytes = kPer, .other_step_bytes = kOther};
      EXPECT_EQ(BytesBetweenReuse(in, buffers), fewest) << layers << " layers, " << buffers;
    }
  }
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
