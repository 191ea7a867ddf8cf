#include "bench/measured_columns.h"

#include <cstdint>
#include <optional>
#include <utility>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "bench/prediction.h"
#include "workloads/gpu_datasheet.h"
#include "workloads/model_registry.h"
#include "workloads/workload.h"

namespace truthput {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// The 70B decode step at batch 8, predicted on the H100 SXM datasheet, with round figures put
// in place of the predicted ones each test reads, so that every expectation is worked by hand.
class MeasuredColumnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<ModelSpec> model = LoadModel("70b");
    ASSERT_TRUE(model.ok()) << model.status();
    StepConfig config;
    config.phase = Phase::kDecode;
    config.batch = 8;
    config.context = 2048;
    absl::StatusOr<Workload> w = Workload::Build(*model, config);
    ASSERT_TRUE(w.ok()) << w.status();
    w_.emplace(*std::move(w));
    p_ = PredictPoint(*w_, *FindGpu("h100-sxm"), int64_t{80} << 30);
    ASSERT_EQ(p_.ops_size(), static_cast<int>(w_->ops().size()));
    p_.set_step_ms_p50(50);
    p_.set_model_gbytes(100);
    p_.set_model_gflops(40);
  }
  int IndexOf(OpKind kind) const {
    for (size_t i = 0; i < w_->ops().size(); ++i) {
      if (w_->ops()[i].kind == kind) return static_cast<int>(i);
    }
    return -1;
  }

  std::optional<Workload> w_;  // no default constructor
  BatchPoint p_;
};

TEST_F(MeasuredColumnsTest, OpTimingRatesTheOpAgainstItsOwnBytesAndFlops) {
  const int attn = IndexOf(OpKind::kAttention);
  const int gemm = IndexOf(OpKind::kGemm);
  ASSERT_GE(attn, 0);
  ASSERT_GE(gemm, 0);
  p_.mutable_ops(gemm)->set_gbytes(2.0);
  p_.mutable_ops(gemm)->set_gflops(4.0);
  SetOpTiming(*w_, gemm, 4.0, p_);
  const OpPoint& g = p_.ops(gemm);
  EXPECT_DOUBLE_EQ(g.measured_ms(), 4.0);
  EXPECT_DOUBLE_EQ(g.share(), 0.08);           // 4 ms of the step's 50
  EXPECT_DOUBLE_EQ(g.achieved_gbps(), 500.0);  // 2 GB in 4 ms
  EXPECT_DOUBLE_EQ(g.achieved_tflops(), 1.0);  // 4 GFLOP in 4 ms
  // A GEMM says nothing of attention's shares.
  EXPECT_FALSE(p_.has_attention_time_share());
  EXPECT_FALSE(p_.has_attention_flops_share());

  p_.mutable_ops(attn)->set_gbytes(1.5);
  p_.mutable_ops(attn)->set_gflops(10.0);
  SetOpTiming(*w_, attn, 5.0, p_);
  EXPECT_DOUBLE_EQ(p_.ops(attn).share(), 0.1);
  EXPECT_DOUBLE_EQ(p_.ops(attn).achieved_gbps(), 300.0);
  EXPECT_DOUBLE_EQ(p_.attention_time_share(), 0.1);
  EXPECT_DOUBLE_EQ(p_.attention_flops_share(), 0.25);  // 10 of the step's 40 GFLOP
  // The GEMM's columns are its own still.
  EXPECT_DOUBLE_EQ(p_.ops(gemm).share(), 0.08);
}

// Timed alone, an op meets its own buffers again after its own executions only: with 45 layer
// buffers over 80 layers, layers 45..79 reuse buffers 0..34 and the next rep's layer 0 meets
// buffer 0 after 35 executions' bytes (34 others and its own).
TEST(OpsTimedAlone, NamesTheOpsThatMeetTheirWeightsOrKvAgainInsideFourL2) {
  const ModelSpec model = *LoadModel("70b");
  constexpr int64_t kL2 = 50 << 20;
  const ResidencyPlan rotating{.layer_buffers = 45, .full = false};
  const ResidencyPlan full{.layer_buffers = 80, .full = true};

  // Context 128: one layer's K and V are 0.5 MB, 35 of them under 4x L2 (210 MB).
  absl::StatusOr<Workload> short_ctx =
      Workload::Build(model, {.phase = Phase::kDecode, .batch = 1, .context = 128});
  ASSERT_TRUE(short_ctx.ok()) << short_ctx.status();
  const Op* attention = nullptr;
  for (const Op& op : short_ctx->ops()) {
    if (op.kind == OpKind::kAttention) attention = &op;
  }
  ASSERT_NE(attention, nullptr);
  std::string note = OpsTimedAloneNote(*short_ctx, rotating, kL2);
  EXPECT_THAT(note,
              HasSubstr(absl::StrFormat("attention (%.1f MB)", 35 * attention->own_bytes() / 1e6)));
  EXPECT_THAT(note, HasSubstr("add_attn_norm ("));  // 16 KB of weights: always inside L2
  EXPECT_THAT(note, HasSubstr("under 210 MB (4x L2)"));
  // A projection streams far more than L2 by itself; activation-only ops are not named.
  EXPECT_THAT(note, Not(HasSubstr("qkv_proj")));
  EXPECT_THAT(note, Not(HasSubstr("lm_head")));
  EXPECT_THAT(note, Not(HasSubstr("silu_mul")));
  EXPECT_THAT(note, Not(HasSubstr("rope_kv_append")));

  // All 80 buffers resident: attention meets its own after 80 executions, 42 MB at context 128
  // is still under 210 MB; at context 2048 (8.4 MB a layer) it is not.
  EXPECT_THAT(OpsTimedAloneNote(*short_ctx, full, kL2), HasSubstr("attention ("));
  absl::StatusOr<Workload> long_ctx =
      Workload::Build(model, {.phase = Phase::kDecode, .batch = 1, .context = 2048});
  ASSERT_TRUE(long_ctx.ok()) << long_ctx.status();
  EXPECT_THAT(OpsTimedAloneNote(*long_ctx, rotating, kL2), Not(HasSubstr("attention")));
  EXPECT_THAT(OpsTimedAloneNote(*long_ctx, full, kL2), Not(HasSubstr("attention")));
  // An L2 too small to matter: no note.
  EXPECT_EQ(OpsTimedAloneNote(*long_ctx, rotating, 1), "");
}

// Activations are the same buffers at every execution and are not counted between two reads of
// an op's weights: a lower bound, so the note errs toward naming an op. Here 1 GiB of them
// between two reads of a norm's 16 KB of weights may well evict those, yet the norm is named.
TEST(OpsTimedAlone, CountsNoActivationBytesBetweenReads) {
  absl::StatusOr<Workload> prefill = Workload::Build(
      *LoadModel("70b"), {.phase = Phase::kPrefill, .batch = 8, .context = 0, .seq_len = 2048});
  ASSERT_TRUE(prefill.ok()) << prefill.status();
  const Op* norm = nullptr;
  for (const Op& op : prefill->ops()) {
    if (op.name == "add_attn_norm") norm = &op;
  }
  ASSERT_NE(norm, nullptr);
  ASSERT_GE(norm->act_bytes, int64_t{1} << 30);  // 16384 rows of 8192 bf16, read and written
  EXPECT_THAT(OpsTimedAloneNote(*prefill, {.layer_buffers = 45, .full = false}, 50 << 20),
              HasSubstr(absl::StrFormat("add_attn_norm (%.1f MB)",
                                        35 * norm->weight_bytes / 1e6)));
}

TEST_F(MeasuredColumnsTest, NvmlColumnsTakeEachMeanToItsOwnField) {
  NvmlSummary s;
  s.util_gpu_pct = 91;
  s.util_mem_pct = 42;
  s.gpm_sm_util_pct = 37;
  s.gpm_tensor_util_pct = 12;
  s.gpm_dram_bw_util_pct = 81;
  s.sm_clock_mhz = 1980;
  s.power_w = 650;
  s.gpu_temp_c = 71;
  s.energy_j = 120;
  s.clock_event_reasons_read = true;
  s.clock_event_reasons = 1u << 2;  // sw_power_cap
  s.notes = {"utilization: read in 49 of 52 samples"};
  BatchPoint tp8 = p_;
  SetNvmlColumns(s, 30, 1, p_);
  EXPECT_DOUBLE_EQ(p_.smi_util_pct(), 91);
  EXPECT_DOUBLE_EQ(p_.smi_mem_util_pct(), 42);
  EXPECT_DOUBLE_EQ(p_.gpm_sm_util_pct(), 37);
  EXPECT_DOUBLE_EQ(p_.gpm_tensor_util_pct(), 12);
  EXPECT_DOUBLE_EQ(p_.gpm_dram_bw_util_pct(), 81);
  EXPECT_DOUBLE_EQ(p_.sm_clock_mhz(), 1980);
  EXPECT_DOUBLE_EQ(p_.power_w(), 650);
  EXPECT_DOUBLE_EQ(p_.gpu_temp_c(), 71);
  // 120 J over 30 steps of 8 tokens.
  EXPECT_EQ(p_.tokens(), 8u);
  EXPECT_DOUBLE_EQ(p_.joules_per_token(), 0.5);
  EXPECT_EQ(p_.throttle(), "sw_power_cap");
  EXPECT_THAT(p_.notes(), ElementsAre("NVML utilization: read in 49 of 52 samples"));
  // At tp 8 each of eight GPUs spends this GPU's energy on the same tokens; its power stays.
  SetNvmlColumns(s, 30, 8, tp8);
  EXPECT_DOUBLE_EQ(tp8.joules_per_token(), 4.0);
  EXPECT_DOUBLE_EQ(tp8.power_w(), 650);
}

TEST_F(MeasuredColumnsTest, NvmlColumnsNotReadStayUnset) {
  NvmlSummary s;
  s.power_w = 300;
  SetNvmlColumns(s, 30, 1, p_);
  EXPECT_DOUBLE_EQ(p_.power_w(), 300);
  EXPECT_FALSE(p_.has_smi_util_pct());
  EXPECT_FALSE(p_.has_gpm_sm_util_pct());
  EXPECT_FALSE(p_.has_joules_per_token());
  EXPECT_FALSE(p_.has_gpu_temp_c());
  EXPECT_EQ(p_.throttle(), "n/a");

  // Energy over no steps is no figure, not infinity.
  s.energy_j = 10;
  BatchPoint none = p_;
  none.clear_joules_per_token();
  SetNvmlColumns(s, 0, 1, none);
  EXPECT_FALSE(none.has_joules_per_token());
}

TEST_F(MeasuredColumnsTest, StepCountersAreRatedAgainstTheP50AndTheModel) {
  TruthColumns t;
  t.sm_active_pct = 71;
  t.tensor_active_pct = 23;
  t.dram_read_bytes = 90e9;
  t.dram_write_bytes = 10e9;
  t.occupancy_pct = 15;
  t.l2_hit_pct = 44;
  double model_tensor_flops = 0;
  for (const Op& op : w_->ops()) {
    if (op.tensor_flops) model_tensor_flops += static_cast<double>(op.count) * op.flops;
  }
  ASSERT_GT(model_tensor_flops, 0);
  t.tensor_flops = 2 * model_tensor_flops;
  SetStepCounterColumns(t, *w_, p_);
  EXPECT_DOUBLE_EQ(p_.sm_active_pct(), 71);
  EXPECT_DOUBLE_EQ(p_.tensor_active_pct(), 23);
  EXPECT_DOUBLE_EQ(p_.dram_read_gbytes(), 90);
  EXPECT_DOUBLE_EQ(p_.dram_write_gbytes(), 10);
  EXPECT_DOUBLE_EQ(p_.dram_gbps(), 2000);             // 100 GB in 50 ms
  EXPECT_DOUBLE_EQ(p_.dram_bytes_over_model(), 1.0);  // 100 GB of the op list's 100
  EXPECT_DOUBLE_EQ(p_.hw_tflops(), 2 * model_tensor_flops / 0.05 / 1e12);
  EXPECT_DOUBLE_EQ(p_.tensor_flops_over_model(), 2.0);
  EXPECT_DOUBLE_EQ(p_.occupancy_pct(), 15);
  EXPECT_DOUBLE_EQ(p_.l2_hit_pct(), 44);
  // The sum the test took from the op list is the step's: about 70e9 weights x 2 FLOP x 8
  // tokens, plus attention's.
  EXPECT_GT(model_tensor_flops, 1.0e12);
  EXPECT_LT(model_tensor_flops, 1.3e12);
}

// lts__t_sector_hit_rate.pct divides counts from two replay passes and can pass 100: such a
// reading is no rate, so the column stays empty and a note gives it; 100 itself is kept.
TEST_F(MeasuredColumnsTest, AnL2HitRatePastAHundredIsANoteNotAColumn) {
  TruthColumns t;
  t.l2_hit_pct = 103.26;
  const int notes_before = p_.notes_size();
  SetStepCounterColumns(t, *w_, p_);
  EXPECT_FALSE(p_.has_l2_hit_pct());
  ASSERT_EQ(p_.notes_size(), notes_before + 1);
  EXPECT_EQ(p_.notes(notes_before),
            "l2_hit_pct left empty: CUPTI's ratio read 103.3%, its hits and lookups counted in "
            "different replay passes");
  t.l2_hit_pct = 100;
  BatchPoint full = p_;
  full.clear_notes();
  SetStepCounterColumns(t, *w_, full);
  EXPECT_DOUBLE_EQ(full.l2_hit_pct(), 100);
  EXPECT_EQ(full.notes_size(), 0);
}

TEST_F(MeasuredColumnsTest, DramRateNeedsBothDirections) {
  TruthColumns t;
  t.dram_read_bytes = 90e9;
  SetStepCounterColumns(t, *w_, p_);
  EXPECT_DOUBLE_EQ(p_.dram_read_gbytes(), 90);
  EXPECT_FALSE(p_.has_dram_write_gbytes());
  EXPECT_FALSE(p_.has_dram_gbps());
  EXPECT_FALSE(p_.has_dram_bytes_over_model());
  EXPECT_FALSE(p_.has_hw_tflops());
  EXPECT_FALSE(p_.has_sm_active_pct());
}

TEST_F(MeasuredColumnsTest, OpCountersRateFlopsOnlyWhereTheOpWasTimed) {
  TruthColumns t;
  t.dram_read_bytes = 3e9;
  t.dram_write_bytes = 1e9;
  t.sm_active_pct = 64;
  t.tensor_active_pct = 9;
  t.tensor_flops = 6e12;
  OpPoint untimed;
  SetOpCounterColumns(t, untimed);
  EXPECT_DOUBLE_EQ(untimed.dram_read_gbytes(), 3);
  EXPECT_DOUBLE_EQ(untimed.dram_write_gbytes(), 1);
  EXPECT_DOUBLE_EQ(untimed.sm_active_pct(), 64);
  EXPECT_DOUBLE_EQ(untimed.tensor_active_pct(), 9);
  EXPECT_FALSE(untimed.has_hw_tflops());

  OpPoint timed;
  timed.set_measured_ms(2);
  SetOpCounterColumns(t, timed);
  EXPECT_DOUBLE_EQ(timed.hw_tflops(), 3000);  // 6e12 FLOP in 2 ms
}

// A step timing that did not settle, or whose graph rounds were not all gated, says so beside
// its figures; a settled, gated one (and an eager one, never gated) says nothing.
TEST(StepTimingNotesTest, OnlyWhereTheTimingIsNotSettledOrNotGated) {
  TimingStats t;
  t.stable = true;
  t.graph = true;
  t.gated = true;
  EXPECT_THAT(StepTimingNotes(t), ::testing::IsEmpty());
  t.graph = false;
  t.gated = false;
  EXPECT_THAT(StepTimingNotes(t), ::testing::IsEmpty());
  t.stable = false;
  t.rel_ci = 0.0123;
  t.reps = 6;
  EXPECT_THAT(StepTimingNotes(t),
              ElementsAre("step median not settled when the timing stopped at its time or "
                          "repetition cap (its ~95% CI +-1.23%, 6 reps)"));
  t.stable = true;
  t.graph = true;
  EXPECT_THAT(StepTimingNotes(t), ElementsAre(::testing::StartsWith("some timing rounds ran "
                                                                    "ungated")));
  EXPECT_THAT(StepTimingNotes(t), ElementsAre(Not(HasSubstr("memset"))));
  // The graph's memset nodes, what fills the launch queue, are named where it has some.
  t.graph_memset_nodes = 81;
  EXPECT_THAT(StepTimingNotes(t),
              ElementsAre(HasSubstr("; the graph's 81 memset nodes take launch-queue space at "
                                    "every launch)")));
}

}  // namespace
}  // namespace truthput
