#include "bench/prediction.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/build_info.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "workloads/gpu_datasheet.h"

namespace truthput {
namespace {

using ::testing::ElementsAre;

// --predict for the 70B model on the H100 SXM datasheet.
BenchFlagValues Flags(const char* batch, int64_t context) {
  BenchFlagValues f;
  f.model = "70b";
  f.batch = batch;
  f.context = context;
  f.gpu = "h100-sxm";
  f.predict = true;
  return f;
}

BenchRequest Request(const BenchFlagValues& f) {
  return *MakeBenchRequest("bench_decode", Phase::kDecode, f);
}

BenchRequest Request(const char* batch, int64_t context) { return Request(Flags(batch, context)); }

// --predict of bench_prefill: prompts of `seq` tokens, no context before them.
BenchRequest PrefillRequest(const char* batch, const char* seq) {
  BenchFlagValues f = Flags(batch, 0);
  f.seq = seq;
  return *MakeBenchRequest("bench_prefill", Phase::kPrefill, f);
}

TEST(Prediction, OnePointPerBatchWithTheBound) {
  absl::StatusOr<RunResult> r = Predict(Request("1..256", 0), *FindGpu("h100-sxm"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->points_size(), 9);
  const BatchPoint& b1 = r->points(0);
  EXPECT_EQ(b1.batch(), 1u);
  EXPECT_NEAR(b1.model_gbytes(), 139.0, 0.1);
  EXPECT_NEAR(b1.bound_tokens_per_s(), 24.1, 0.05);
  EXPECT_EQ(b1.bound(), "memory");
  EXPECT_FALSE(b1.fits());  // 141 GB of weights on an 80 GB GPU
  EXPECT_EQ(b1.tp_needed(), 2u);
  EXPECT_FALSE(b1.has_tokens_per_s());  // nothing measured
  EXPECT_EQ(b1.ops_size(), 12);  // the step's ops, as workload_test lists them
  double op_ms = 0;
  for (const OpPoint& op : b1.ops()) op_ms += op.bound_ms();
  EXPECT_NEAR(op_ms, b1.bound_ms(), 1e-9);
  // Weight reads amortize: at context 0 the bound rises nearly linearly with the batch (less
  // than 256x at batch 256 only because each token's activations add bytes).
  const double gain = r->points(8).bound_tokens_per_s() / b1.bound_tokens_per_s();
  EXPECT_GT(gain, 0.85 * 256);
  EXPECT_LT(gain, 256);
  EXPECT_EQ(r->datasheet().id(), "h100-sxm");
  EXPECT_TRUE(r->config().predict_only());
  EXPECT_FALSE(r->has_machine());
}

// A prediction neither verifies nor profiles, and its $/GPU-hour is the datasheet's ($2.99 for
// the H100 SXM) unless one is given; a GPU run records its own.
TEST(Prediction, ConfigRecordsTheRequest) {
  const GpuSpec h100 = *FindGpu("h100-sxm");
  BenchRequest request = Request("1,8", 32768);
  const RunResult r = *Predict(request, h100);
  const RunConfig& c = r.config();
  EXPECT_EQ(c.tool(), "bench_decode");
  EXPECT_EQ(c.phase(), "decode");
  EXPECT_EQ(c.context(), 32768u);
  EXPECT_THAT(c.batches(), ElementsAre(1u, 8u));
  EXPECT_EQ(c.seq_lens_size(), 0);  // decode: one new token per sequence
  EXPECT_FALSE(c.verify());
  EXPECT_EQ(c.profile(), "off");
  EXPECT_DOUBLE_EQ(c.usd_per_gpu_hour(), 2.99);
  // No ridge at context 32768 (RidgeAndMeasuredKnee): the reason is said instead.
  EXPECT_FALSE(r.has_predicted_ridge_batch());
  EXPECT_FALSE(r.no_ridge_reason().empty());

  request.predict = false;
  request.profile = "ops";
  request.usd_per_gpu_hour = 4;
  const RunResult gpu_run = NewRunResult(request, h100);
  EXPECT_TRUE(gpu_run.config().verify());
  EXPECT_EQ(gpu_run.config().profile(), "ops");
  EXPECT_DOUBLE_EQ(gpu_run.config().usd_per_gpu_hour(), 4);
  // Every result names the build it came from, predictions too.
  EXPECT_EQ(gpu_run.truthput_build(), kTruthputBuild);
  EXPECT_EQ(r.truthput_build(), kTruthputBuild);
}

// A GPU whose hours cost nothing (one you own) is priced at $0 when asked, not at the
// datasheet's rental price; a datasheet without a price leaves the price, and $/Mtok, unset.
TEST(Prediction, ConfigPricesAGivenZeroAtZeroAndAnUnknownPriceNotAtAll) {
  BenchRequest request = Request("1", 2048);
  request.predict = false;
  request.usd_per_gpu_hour = 0;
  RunResult r = NewRunResult(request, *FindGpu("h100-sxm"));
  ASSERT_TRUE(r.config().has_usd_per_gpu_hour());
  EXPECT_EQ(r.config().usd_per_gpu_hour(), 0);

  GpuSpec unpriced = *FindGpu("h100-sxm");
  unpriced.clear_usd_per_hour();
  request.usd_per_gpu_hour.reset();
  r = NewRunResult(request, unpriced);
  EXPECT_FALSE(r.config().has_usd_per_gpu_hour());
  EXPECT_THAT(r.unavailable(),
              ElementsAre("usd_per_mtok: datasheet h100-sxm has no price (--usd_per_gpu_hour "
                          "gives one)"));
  request.usd_per_gpu_hour = 1.5;
  EXPECT_DOUBLE_EQ(NewRunResult(request, unpriced).config().usd_per_gpu_hour(), 1.5);
}

// A prefill step runs every prompt token: 2 prompts of 512 are 1024 tokens. The ridge is a
// decode sweep's: a prefill has none, and no reason for none.
TEST(Prediction, PrefillPointsCountEveryPromptToken) {
  const RunResult r = *Predict(PrefillRequest("2", "512"), *FindGpu("h100-sxm"));
  ASSERT_EQ(r.points_size(), 1);
  EXPECT_EQ(r.points(0).batch(), 2u);
  EXPECT_EQ(r.points(0).seq_len(), 512u);
  EXPECT_EQ(r.points(0).tokens(), 1024u);
  EXPECT_EQ(r.config().phase(), "prefill");
  EXPECT_THAT(r.config().seq_lens(), ElementsAre(512u));
  EXPECT_FALSE(r.has_predicted_ridge_batch());
  EXPECT_EQ(r.no_ridge_reason(), "");
}

// Each op's figures count all its executions in a step (every layer's, for a per-layer op), so
// the ops add up to the step. An op is bound by its own intensity, not the step's: at batch 512
// (past the ridge of about 335) the step is compute-bound, but a norm or SiLU does a few FLOPs
// per element it moves and stays memory-bound.
TEST(Prediction, OpsAddUpToTheStepAndAreBoundByTheirOwnIntensity) {
  const BatchPoint p = Predict(Request("512", 0), *FindGpu("h100-sxm"))->points(0);
  ASSERT_EQ(p.bound(), "compute");
  double gbytes = 0, gflops = 0;
  int elementwise = 0;
  for (const OpPoint& op : p.ops()) {
    gbytes += op.gbytes();
    gflops += op.gflops();
    if (op.kind() == "add_rmsnorm" || op.kind() == "silu_mul") {
      ++elementwise;
      EXPECT_EQ(op.bound(), "memory") << op.name();
    }
  }
  EXPECT_NEAR(gbytes, p.model_gbytes(), 1e-9 * p.model_gbytes());
  EXPECT_NEAR(gflops, p.model_gflops(), 1e-9 * p.model_gflops());
  EXPECT_GE(elementwise, 2);
  EXPECT_EQ(p.ops(0).kind(), "embedding");
}

// fits weighs the whole footprint, KV cache included, against the card's reported memory
// (85.02e9 bytes on the H100 SXM), not its marketed 80 GB. Llama-3.1-8B at batch 16, context
// 31743: 16.06 GB of weights, a KV cache of 16 x 31744 tokens x 131072 B (32 layers x K and V
// x 8 heads x 128 x 2 B) = 66.57 GB and 6.2 MB of activations: 82.64 GB.
TEST(Prediction, FitsTheWholeFootprintInTheCardsReportedMemory) {
  const GpuSpec h100 = *FindGpu("h100-sxm");
  BenchFlagValues f = Flags("16", 31743);
  f.model = "8b";
  const BenchRequest request = Request(f);
  const BatchPoint p = Predict(request, h100)->points(0);
  EXPECT_NEAR(p.footprint_gbytes(), 82.64, 0.01);
  EXPECT_TRUE(p.fits());
  EXPECT_EQ(p.tp_needed(), 1u);
  // Exactly the footprint fits; a byte less does not.
  const absl::StatusOr<Workload> w = Workload::Build(request.model, request.Steps()[0]);
  ASSERT_TRUE(w.ok()) << w.status();
  const int64_t bytes = w->Footprint().total();
  EXPECT_TRUE(PredictPoint(*w, h100, bytes).fits());
  EXPECT_FALSE(PredictPoint(*w, h100, bytes - 1).fits());
}

// The rates users read, worked by hand: 8 tokens, 140 GB and 2000 GFLOP in a 50 ms step whose
// bound is 40 ms, on an H100 SXM (3350 GB/s, 989.4 bf16 and 1978.9 fp8 TFLOP/s) at $3/hour.
TEST(Prediction, MeasuredRatesFromTheMedianStep) {
  BatchPoint p;
  p.set_tokens(8);
  p.set_model_gbytes(140);
  p.set_model_gflops(2000);
  p.set_bound_ms(40);
  p.set_step_ms_p50(50);
  p.set_step_ms_p99(100);  // not a rate's denominator
  SetMeasuredRates(p, *FindGpu("h100-sxm"), BF16, 3.0, 1);
  EXPECT_DOUBLE_EQ(p.tokens_per_s(), 160);
  EXPECT_DOUBLE_EQ(p.achieved_gbps(), 2800);
  EXPECT_DOUBLE_EQ(p.mbu(), 2800.0 / 3350);
  EXPECT_DOUBLE_EQ(p.achieved_tflops(), 40);
  EXPECT_DOUBLE_EQ(p.mfu(), 40 / 989.4);
  EXPECT_DOUBLE_EQ(p.roofline_eff(), 0.8);
  EXPECT_DOUBLE_EQ(p.usd_per_mtok(), 3.0 / 3600 / 160 * 1e6);  // $5.21 per million tokens
  SetMeasuredRates(p, *FindGpu("h100-sxm"), FP8_E4M3, 3.0, 1);
  EXPECT_DOUBLE_EQ(p.mfu(), 40 / 1978.9);  // fp8 weights: the fp8 peak
  EXPECT_DOUBLE_EQ(p.mbu(), 2800.0 / 3350);
  // At tp 8 the same tokens take eight GPUs: eight times the cost; the per-GPU rates stay.
  SetMeasuredRates(p, *FindGpu("h100-sxm"), BF16, 3.0, 8);
  EXPECT_DOUBLE_EQ(p.usd_per_mtok(), 8 * 3.0 / 3600 / 160 * 1e6);
  EXPECT_DOUBLE_EQ(p.tokens_per_s(), 160);
  EXPECT_DOUBLE_EQ(p.mbu(), 2800.0 / 3350);
  // Free hours make free tokens; no price makes no $/Mtok, never a $0 that reads as free.
  SetMeasuredRates(p, *FindGpu("h100-sxm"), BF16, 0.0, 1);
  ASSERT_TRUE(p.has_usd_per_mtok());
  EXPECT_EQ(p.usd_per_mtok(), 0);
  BatchPoint unpriced = p;
  unpriced.clear_usd_per_mtok();
  SetMeasuredRates(unpriced, *FindGpu("h100-sxm"), BF16, std::nullopt, 1);
  EXPECT_FALSE(unpriced.has_usd_per_mtok());
  EXPECT_DOUBLE_EQ(unpriced.tokens_per_s(), 160);
}

TEST(Prediction, RidgeAndMeasuredKnee) {
  RunResult r = *Predict(Request("1,512", 0), *FindGpu("h100-sxm"));
  ASSERT_TRUE(r.has_predicted_ridge_batch());
  EXPECT_NEAR(r.predicted_ridge_batch(), 335, 10);
  SetMeasuredKnee(r);
  EXPECT_FALSE(r.has_measured_knee_batch());  // nothing measured
  // 50 ms at batch 1 (139.06 GB: 2.78 GB/ms) and 100 ms at batch 512 (71180 GFLOP: 712
  // GFLOP/ms) put the measured ridge at 256 FLOP/B; intensity is 1.0 at batch 1 and 425 at
  // 512, so log-log interpolation puts the knee at 512^(ln 256 / ln 425) = 304.
  r.mutable_points(0)->set_step_ms_p50(50);
  r.mutable_points(1)->set_step_ms_p50(100);
  SetMeasuredKnee(r);
  const BatchPoint& b1 = r.points(0);
  const BatchPoint& b512 = r.points(1);
  const double ridge = (b512.model_gflops() / 100) / (b1.model_gbytes() / 50);
  const double want = std::pow(512.0, std::log(ridge / b1.intensity()) /
                                          std::log(b512.intensity() / b1.intensity()));
  EXPECT_NEAR(r.measured_knee_batch(), want, 1e-9);
  EXPECT_NEAR(r.measured_knee_batch(), 304, 5);
  // Slower big batches (a lower FLOP rate) move the knee to smaller batches.
  r.mutable_points(1)->set_step_ms_p50(200);
  SetMeasuredKnee(r);
  EXPECT_LT(r.measured_knee_batch(), 200);
  // At context 32768 decode never turns compute-bound: no ridge, no knee.
  EXPECT_FALSE(Predict(Request("1", 32768), *FindGpu("h100-sxm"))->has_predicted_ridge_batch());
}

// A real sweep has many points: the knee is interpolated between the two whose intensities
// bracket the measured ridge, and a sweep that stops short of the predicted ridge has none.
TEST(Prediction, MeasuredKneeFromTheBracketingPointsOfASweep) {
  RunResult r = *Predict(Request("1,64,256,512", 0), *FindGpu("h100-sxm"));
  const double p50[] = {50, 52, 60, 100};
  for (int i = 0; i < 4; ++i) r.mutable_points(i)->set_step_ms_p50(p50[i]);
  SetMeasuredKnee(r);
  ASSERT_TRUE(r.has_measured_knee_batch());
  const BatchPoint& b256 = r.points(2);
  const BatchPoint& b512 = r.points(3);
  const double ridge = (b512.model_gflops() / 100) / (r.points(0).model_gbytes() / 50);
  ASSERT_LT(b256.intensity(), ridge);
  const double want = 256 * std::pow(2.0, std::log(ridge / b256.intensity()) /
                                               std::log(b512.intensity() / b256.intensity()));
  EXPECT_NEAR(r.measured_knee_batch(), want, 1e-9);
  EXPECT_GT(std::abs(want - 304), 1);  // not what batch 1 to 512 alone would give

  RunResult short_sweep = *Predict(Request("1,64,256", 0), *FindGpu("h100-sxm"));
  ASSERT_GT(short_sweep.predicted_ridge_batch(), 256);
  for (int i = 0; i < 3; ++i) short_sweep.mutable_points(i)->set_step_ms_p50(p50[i]);
  SetMeasuredKnee(short_sweep);
  EXPECT_FALSE(short_sweep.has_measured_knee_batch());
}

// Only measured points count: a batch with no step time (one that did not fit, say) is not a
// 0 ms step. And the knee needs a predicted ridge that the sweep goes strictly past.
TEST(Prediction, MeasuredKneeNeedsMeasuredPointsPastThePredictedRidge) {
  RunResult r = *Predict(Request("1,64,256,512", 0), *FindGpu("h100-sxm"));
  const double p50[] = {52, 60, 100};  // batches 64, 256 and 512; batch 1 not measured
  for (int i = 1; i < 4; ++i) r.mutable_points(i)->set_step_ms_p50(p50[i - 1]);
  RunResult at_ridge = r;
  at_ridge.set_predicted_ridge_batch(512);
  RunResult no_ridge = r;
  no_ridge.clear_predicted_ridge_batch();

  SetMeasuredKnee(r);
  ASSERT_TRUE(r.has_measured_knee_batch());
  // The bandwidth is batch 64's, the smallest measured.
  const BatchPoint& b256 = r.points(2);
  const BatchPoint& b512 = r.points(3);
  const double ridge = (b512.model_gflops() / 100) / (r.points(1).model_gbytes() / 52);
  ASSERT_LT(b256.intensity(), ridge);
  const double want = 256 * std::pow(2.0, std::log(ridge / b256.intensity()) /
                                               std::log(b512.intensity() / b256.intensity()));
  EXPECT_NEAR(r.measured_knee_batch(), want, 1e-9);

  SetMeasuredKnee(at_ridge);
  EXPECT_FALSE(at_ridge.has_measured_knee_batch());
  SetMeasuredKnee(no_ridge);
  EXPECT_FALSE(no_ridge.has_measured_knee_batch());
}

TEST(Prediction, CalibrationScalesTheBoundByTheMeasuredEfficiency) {
  RunResult measured = *Predict(Request("1,16", 2048), *FindGpu("h100-sxm"));
  measured.mutable_config()->set_predict_only(false);
  measured.mutable_machine()->set_gpu_name("NVIDIA H100 80GB HBM3");
  measured.mutable_points(0)->set_roofline_eff(0.8);
  measured.mutable_points(1)->set_roofline_eff(0.6);
  RunResult b200 = *Predict(Request("1,2,8,64", 2048), *FindGpu("b200"));
  ASSERT_TRUE(ApplyCalibration(measured, "h100.json", b200).ok());
  EXPECT_EQ(b200.config().calibration(), "h100.json");
  // Batch 1 and 2 take batch 1's efficiency (2 is nearer 1 than 16 on a log scale); 8 and 64
  // take batch 16's.
  const double want[] = {0.8, 0.8, 0.6, 0.6};
  for (int i = 0; i < 4; ++i) {
    const BatchPoint& p = b200.points(i);
    EXPECT_DOUBLE_EQ(p.calibration_eff(), want[i]) << p.batch();
    EXPECT_DOUBLE_EQ(p.projected_tokens_per_s(), p.bound_tokens_per_s() * want[i]);
  }
  EXPECT_EQ(b200.points(1).calibration_batch(), 1u);
  EXPECT_EQ(b200.points(2).calibration_batch(), 16u);
  // The note says which points took another batch's efficiency; a graph run has no eager note.
  EXPECT_NE(b200.config().notes(b200.config().notes_size() - 1).find("not a measurement"),
            std::string::npos);
  EXPECT_NE(b200.config().notes(b200.config().notes_size() - 1)
                .find("(calibration_batch; batch 2 from 1, 8 from 16, 64 from 16)"),
            std::string::npos)
      << b200.config().notes(b200.config().notes_size() - 1);

  // Mismatches are refused with what differs.
  RunResult other = *Predict(Request("1", 0), *FindGpu("b200"));
  absl::Status st = ApplyCalibration(measured, "h100.json", other);
  EXPECT_NE(st.message().find("no measured point at context 0"), std::string::npos) << st;
  RunResult unmeasured = *Predict(Request("1", 2048), *FindGpu("h100-sxm"));
  st = ApplyCalibration(unmeasured, "p.json", other);
  EXPECT_NE(st.message().find("a prediction, not a measured run"), std::string::npos) << st;
  // The same name with other numbers (an edited file, a custom spec) is another model; only the
  // source line may differ.
  measured.mutable_config()->mutable_model()->set_source("another citation");
  EXPECT_TRUE(ApplyCalibration(measured, "h100.json", b200).ok());
  measured.mutable_config()->mutable_model()->set_num_layers(0);
  st = ApplyCalibration(measured, "h100.json", b200);
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_NE(st.message().find("its model Llama-3.1-70B is not the prediction's: "
                              "num_layers 0 (the prediction's 80)"),
            std::string::npos)
      << st.message();
  // Every difference is listed, in the spec's field order.
  measured.mutable_config()->mutable_model()->set_hidden_size(1);
  st = ApplyCalibration(measured, "h100.json", b200);
  EXPECT_NE(st.message().find("hidden_size 1 (the prediction's 8192), "
                              "num_layers 0 (the prediction's 80)"),
            std::string::npos)
      << st.message();
  measured.mutable_config()->mutable_model()->set_hidden_size(8192);
  measured.mutable_config()->mutable_model()->set_num_layers(80);
  // Another weight dtype is said in its own words.
  measured.mutable_config()->mutable_model()->set_weight_dtype(FP8_E4M3);
  st = ApplyCalibration(measured, "h100.json", b200);
  EXPECT_NE(st.message().find("its weight dtype is FP8_E4M3, the prediction's is BF16"),
            std::string::npos)
      << st.message();
  measured.mutable_config()->mutable_model()->set_weight_dtype(BF16);
  // Another TP degree, phase or prompt length is another step.
  const uint32_t tp = measured.config().tp();
  measured.mutable_config()->set_tp(tp * 2);
  st = ApplyCalibration(measured, "h100.json", b200);
  EXPECT_NE(st.message().find(absl::StrCat("its tp is ", tp * 2, ", the prediction's is ", tp)),
            std::string::npos)
      << st.message();
  measured.mutable_config()->set_tp(tp);
  const std::string phase = measured.config().phase();
  measured.mutable_config()->set_phase("prefill");
  st = ApplyCalibration(measured, "h100.json", b200);
  EXPECT_NE(st.message().find(absl::StrCat("its phase is prefill, the prediction's is ", phase)),
            std::string::npos)
      << st.message();
  measured.mutable_config()->set_phase(phase);
  const auto seq_len = measured.points(0).seq_len();  // a decode step's: one token
  for (BatchPoint& q : *measured.mutable_points()) q.set_seq_len(512);
  st = ApplyCalibration(measured, "h100.json", b200);
  EXPECT_NE(st.message().find(absl::StrCat("no measured point at context 2048 and sequence length ",
                                           seq_len)),
            std::string::npos)
      << st.message();
  for (BatchPoint& q : *measured.mutable_points()) q.set_seq_len(seq_len);
  EXPECT_TRUE(ApplyCalibration(measured, "h100.json", b200).ok());
  measured.mutable_config()->mutable_model()->set_name("Other");
  st = ApplyCalibration(measured, "h100.json", b200);
  EXPECT_NE(st.message().find("its model is Other"), std::string::npos) << st;
}

// Batch 4 is as near 2 as 8 on a log scale (4/2 = 8/4), and 6 as near 4 as 9 (6/4 = 9/6): the
// smaller batch's efficiency, in either order of the file's points.
TEST(Prediction, CalibrationBreaksATieTowardTheSmallerBatch) {
  const struct {
    const char* measured;
    const char* target;
    uint32_t want;
  } cases[] = {{"2,8", "4", 2}, {"4,9", "6", 4}};
  for (const auto& c : cases) {
    RunResult measured = *Predict(Request(c.measured, 2048), *FindGpu("h100-sxm"));
    measured.mutable_config()->set_predict_only(false);
    measured.mutable_points(0)->set_roofline_eff(0.8);  // the smaller batch
    measured.mutable_points(1)->set_roofline_eff(0.6);
    for (bool reversed : {false, true}) {
      SCOPED_TRACE(absl::StrCat(c.measured, " -> ", c.target, reversed ? ", reversed" : ""));
      if (reversed) measured.mutable_points()->SwapElements(0, 1);
      RunResult p = *Predict(Request(c.target, 2048), *FindGpu("h100-sxm"));
      ASSERT_TRUE(ApplyCalibration(measured, "m.json", p).ok());
      EXPECT_EQ(p.points(0).calibration_batch(), c.want);
      EXPECT_DOUBLE_EQ(p.points(0).calibration_eff(), 0.8);
    }
  }
}

// An eager run's efficiencies carry launch gaps a graph run would not have: said in a note.
TEST(Prediction, CalibrationFromAnEagerRunSaysSo) {
  RunResult measured = *Predict(Request("1", 2048), *FindGpu("h100-sxm"));
  measured.mutable_config()->set_predict_only(false);
  measured.mutable_points(0)->set_roofline_eff(0.8);
  for (const bool graph : {true, false}) {
    measured.mutable_config()->set_graph(graph);
    RunResult b200 = *Predict(Request("1", 2048), *FindGpu("b200"));
    ASSERT_TRUE(ApplyCalibration(measured, "eager.json", b200).ok());
    const std::string last = b200.config().notes(b200.config().notes_size() - 1);
    EXPECT_EQ(last.find("eager.json was measured with --graph=false"),
              graph ? std::string::npos : 0u)
        << last;
  }
}

// Batch 256 at context 0 is memory-bound on the H100 (ridge near 335) and compute-bound on the
// A100 (near 163): the projection says it carries an efficiency across limiters.
TEST(Prediction, CalibrationSaysWhereItCrossesALimiter) {
  RunResult measured = *Predict(Request("64,256", 0), *FindGpu("h100-sxm"));
  measured.mutable_config()->set_predict_only(false);
  measured.mutable_points(0)->set_roofline_eff(0.8);
  measured.mutable_points(1)->set_roofline_eff(0.7);
  ASSERT_EQ(measured.points(1).bound(), "memory");
  RunResult a100 = *Predict(Request("64,256", 0), *FindGpu("a100-sxm"));
  ASSERT_EQ(a100.points(0).bound(), "memory");
  ASSERT_EQ(a100.points(1).bound(), "compute");
  ASSERT_TRUE(ApplyCalibration(measured, "h100.json", a100).ok());
  EXPECT_THAT(a100.config().notes(),
              ::testing::Contains(
                  "calibration crosses a limiter at batch 256 (memory-bound where measured, "
                  "compute-bound here): an efficiency measured against one limit is applied to "
                  "the other, so those projections are rougher"));
  // Onto the H100 itself nothing crosses.
  RunResult h100 = *Predict(Request("64,256", 0), *FindGpu("h100-sxm"));
  ASSERT_TRUE(ApplyCalibration(measured, "h100.json", h100).ok());
  EXPECT_THAT(h100.config().notes(),
              ::testing::Not(::testing::Contains(::testing::HasSubstr("crosses a limiter"))));
}

// A run against another GPU's datasheet (a MIG instance with --gpu=h100-sxm, an H100 NVL) rated
// itself against peaks it does not have: its efficiency is refused, with why.
TEST(Prediction, CalibrationRefusesARunRatedAgainstAnotherGpusDatasheet) {
  RunResult measured = *Predict(Request("1", 2048), *FindGpu("h100-sxm"));
  measured.mutable_config()->set_predict_only(false);
  measured.mutable_points(0)->set_roofline_eff(0.1);
  const RunResult before = *Predict(Request("1", 2048), *FindGpu("b200"));
  for (const auto& [name, sms] : std::vector<std::pair<std::string, int>>{
           {"NVIDIA H100 80GB HBM3 MIG 1g.10gb", 16}, {"NVIDIA H100 NVL", 132}}) {
    measured.mutable_machine()->set_gpu_name(name);
    measured.mutable_machine()->set_sm_count(sms);
    RunResult b200 = before;
    const absl::Status st = ApplyCalibration(measured, "slice.json", b200);
    EXPECT_TRUE(absl::IsInvalidArgument(st)) << name;
    EXPECT_THAT(std::string(st.message()),
                ::testing::StartsWith(absl::StrCat(
                    "--calibrate=slice.json: measured against another GPU's datasheet: ", name,
                    " (", sms, " SMs")));
    EXPECT_EQ(b200.SerializeAsString(), before.SerializeAsString()) << name;
  }
  // Its own GPU's: calibrated.
  measured.mutable_machine()->set_gpu_name("NVIDIA H100 80GB HBM3");
  measured.mutable_machine()->set_sm_count(132);
  RunResult b200 = before;
  EXPECT_TRUE(ApplyCalibration(measured, "h100.json", b200).ok());
  EXPECT_DOUBLE_EQ(b200.points(0).calibration_eff(), 0.1);
}

// The note names the GPU the efficiency was measured on: the machine the run recorded, else the
// name of its datasheet.
TEST(Prediction, CalibrationNoteNamesTheMeasuredGpu) {
  RunResult measured = *Predict(Request("1", 2048), *FindGpu("h100-sxm"));
  measured.mutable_config()->set_predict_only(false);
  measured.mutable_points(0)->set_roofline_eff(0.8);
  for (const bool machine : {false, true}) {
    if (machine) measured.mutable_machine()->set_gpu_name("NVIDIA H100 80GB HBM3");
    RunResult b200 = *Predict(Request("1", 2048), *FindGpu("b200"));
    ASSERT_TRUE(ApplyCalibration(measured, "h100.json", b200).ok());
    const std::string& note = b200.config().notes(b200.config().notes_size() - 1);
    EXPECT_NE(note.find(machine ? "measured on NVIDIA H100 80GB HBM3 (h100.json)"
                                : "measured on NVIDIA H100 SXM5 80GB (h100.json)"),
              std::string::npos)
        << note;
  }
}

// A prefill run is restated with prefill steps: calibrating a prediction of the same bf16 sweep
// on the same GPU gives back each point's measured efficiency.
TEST(Prediction, CalibrationFromAPrefillRun) {
  const GpuSpec h100 = *FindGpu("h100-sxm");
  RunResult measured = *Predict(PrefillRequest("1,4", "512"), h100);
  measured.mutable_config()->set_predict_only(false);
  measured.mutable_points(0)->set_roofline_eff(0.7);
  measured.mutable_points(1)->set_roofline_eff(0.9);
  RunResult same = *Predict(PrefillRequest("1,4", "512"), h100);
  const absl::Status st = ApplyCalibration(measured, "prefill.json", same);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_DOUBLE_EQ(same.points(0).calibration_eff(), 0.7);
  EXPECT_DOUBLE_EQ(same.points(1).calibration_eff(), 0.9);
}

// A point of the file without roofline_eff (not measured: it did not fit, say) lends nothing: the
// prediction's batch 64 takes the nearest measured batch, 16. A file with none is refused.
TEST(Prediction, CalibrationSkipsPointsThatWereNotMeasured) {
  RunResult measured = *Predict(Request("1,16,64", 2048), *FindGpu("h100-sxm"));
  measured.mutable_config()->set_predict_only(false);
  RunResult b200 = *Predict(Request("64", 2048), *FindGpu("b200"));
  absl::Status st = ApplyCalibration(measured, "h100.json", b200);
  EXPECT_NE(st.message().find("--calibrate=h100.json: no measured points"), std::string::npos)
      << st;
  measured.mutable_points(0)->set_roofline_eff(0.8);
  measured.mutable_points(1)->set_roofline_eff(0.6);
  st = ApplyCalibration(measured, "h100.json", b200);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(b200.points(0).calibration_batch(), 16u);
  EXPECT_DOUBLE_EQ(b200.points(0).calibration_eff(), 0.6);
}

// A refusal at a later point leaves the prediction as it was, earlier points included: none of
// it is projected from a file that was refused.
TEST(Prediction, FailedCalibrationLeavesThePredictionUnchanged) {
  RunResult measured = *Predict(Request("1,16", 2048), *FindGpu("h100-sxm"));
  measured.mutable_config()->set_predict_only(false);
  measured.mutable_points(0)->set_roofline_eff(0.8);
  measured.mutable_points(1)->set_roofline_eff(std::nan(""));
  RunResult b200 = *Predict(Request("1,64", 2048), *FindGpu("b200"));
  const std::string before = b200.SerializeAsString();
  const absl::Status st = ApplyCalibration(measured, "h100.json", b200);
  // Batch 1 calibrates from batch 1 before batch 64 reaches batch 16's NaN.
  EXPECT_NE(st.message().find("batch 16 has roofline_eff nan"), std::string::npos) << st;
  EXPECT_EQ(b200.SerializeAsString(), before);
}

// roofline_eff must be what the file's own bound and p50 give (bound_ms / step_ms_p50), as every
// GPU run writes it; an edited one is refused rather than projected.
TEST(Prediction, CalibrationRefusesAnEfficiencyItsOwnP50Contradicts) {
  RunResult measured = *Predict(Request("1", 2048), *FindGpu("h100-sxm"));
  measured.mutable_config()->set_predict_only(false);
  BatchPoint& q = *measured.mutable_points(0);
  q.set_step_ms_p50(q.bound_ms() / 0.8);
  q.set_roofline_eff(0.8);
  RunResult b200 = *Predict(Request("1", 2048), *FindGpu("b200"));
  EXPECT_TRUE(ApplyCalibration(measured, "h100.json", b200).ok());
  q.set_roofline_eff(0.9);
  const absl::Status st = ApplyCalibration(measured, "h100.json", b200);
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_NE(st.message().find("batch 1 has roofline_eff 0.9, but bound_ms / step_ms_p50 is 0.8"),
            std::string::npos)
      << st;
  // A file rounds its numbers: 1e-4 off is accepted, 0.5% is not.
  q.set_roofline_eff(0.8 * (1 + 1e-4));
  EXPECT_TRUE(ApplyCalibration(measured, "h100.json", b200).ok());
  q.set_roofline_eff(0.8 * 1.005);
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyCalibration(measured, "h100.json", b200)));
}

// A point of the file whose step cannot be built is named with the file.
TEST(Prediction, CalibrationNamesTheFileOfABadPoint) {
  RunResult measured = *Predict(Request("1", 2048), *FindGpu("h100-sxm"));
  measured.mutable_config()->set_predict_only(false);
  measured.mutable_points(0)->set_roofline_eff(0.8);
  RunResult b200 = *Predict(Request("1", 2048), *FindGpu("b200"));
  b200.mutable_points(0)->set_batch(0);
  measured.mutable_points(0)->set_batch(0);
  const absl::Status st = ApplyCalibration(measured, "h100.json", b200);
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_EQ(st.message().find("--calibrate=h100.json: batch 0: "), 0u) << st;
}

// A hand-edited or truncated file must not project 0, NaN or infinite tokens/s.
TEST(Prediction, CalibrationRefusesEfficienciesThatAreNotMeasurements) {
  RunResult measured = *Predict(Request("1", 2048), *FindGpu("h100-sxm"));
  measured.mutable_config()->set_predict_only(false);
  for (double eff : {0.0, -0.5, std::nan(""), HUGE_VAL}) {
    measured.mutable_points(0)->set_roofline_eff(eff);
    RunResult b200 = *Predict(Request("1", 2048), *FindGpu("b200"));
    absl::Status st = ApplyCalibration(measured, "h100.json", b200);
    EXPECT_NE(st.message().find("batch 1 has roofline_eff"), std::string::npos) << eff << st;
    EXPECT_FALSE(b200.points(0).has_projected_tokens_per_s());
  }
  measured.mutable_points(0)->set_roofline_eff(0.8);
  RunResult b200 = *Predict(Request("1", 2048), *FindGpu("b200"));
  for (double bound_ms : {std::nan(""), HUGE_VAL}) {
    measured.mutable_points(0)->set_bound_ms(bound_ms);
    EXPECT_NE(ApplyCalibration(measured, "h100.json", b200).message().find("has no bound_ms"),
              std::string::npos)
        << bound_ms;
  }
  // A datasheet with a bandwidth or bf16 rate of 0 or infinity rates nothing.
  const GpuSpec sheet = measured.datasheet();
  for (double bad : {0.0, HUGE_VAL}) {
    for (const bool bandwidth : {true, false}) {
      *measured.mutable_datasheet() = sheet;
      if (bandwidth) {
        measured.mutable_datasheet()->set_mem_bandwidth_gbps(bad);
      } else {
        measured.mutable_datasheet()->set_bf16_tflops(bad);
      }
      EXPECT_NE(ApplyCalibration(measured, "h100.json", b200).message().find("no datasheet"),
                std::string::npos)
          << bad << (bandwidth ? " GB/s" : " TFLOP/s");
    }
  }
  measured.clear_datasheet();
  EXPECT_NE(ApplyCalibration(measured, "h100.json", b200).message().find("no datasheet"),
            std::string::npos);
}

// An fp8 run rates itself with e4m3 activations counted where --gemm=auto chose W8A8; the
// prediction counts bf16. Calibrating a prediction for the measured GPU itself must give back
// the measured tokens/s, not the measured efficiency applied to a larger bound.
TEST(Prediction, CalibrationRestatesAnFp8RunsEfficiencyInThePredictionsCount) {
  BenchFlagValues f = Flags("64", 2048);
  f.weights = "fp8";
  const BenchRequest request = Request(f);
  const GpuSpec h100 = *FindGpu("h100-sxm");
  RunResult measured = *Predict(request, h100);
  measured.mutable_config()->set_predict_only(false);
  // The point as the GPU run records it: every block projection W8A8, qkv, gate_up and down on
  // the copy the op before them wrote, o_proj quantizing in its launch.
  absl::StatusOr<Workload> run = Workload::Build(request.model, request.Steps()[0]);
  ASSERT_TRUE(run.ok()) << run.status();
  for (size_t i = 0; i < run->ops().size(); ++i) {
    const Op& op = run->ops()[i];
    if (op.kind != OpKind::kGemm || op.name == "lm_head") continue;
    ASSERT_TRUE(run->CountE4m3Activations(i, op.name != "o_proj").ok()) << op.name;
  }
  BatchPoint& q = *measured.mutable_points(0);
  q = PredictPoint(*run, h100, MemoryBytes(h100));
  const BatchPoint predicted = Predict(request, h100)->points(0);
  ASSERT_LT(q.bound_ms(), predicted.bound_ms());  // fewer bytes counted
  const double step_ms = q.bound_ms() / 0.8;
  q.set_step_ms_p50(step_ms);
  q.set_roofline_eff(0.8);
  const double measured_tokens_per_s = q.tokens() / (step_ms / 1e3);

  RunResult same_gpu = *Predict(request, h100);
  ASSERT_TRUE(ApplyCalibration(measured, "fp8.json", same_gpu).ok());
  EXPECT_NEAR(same_gpu.points(0).projected_tokens_per_s(), measured_tokens_per_s,
              1e-9 * measured_tokens_per_s);
  EXPECT_GT(same_gpu.points(0).calibration_eff(), 0.8);
  // A bf16 run counts what the prediction counts: its efficiency carries over as measured
  // (CalibrationScalesTheBoundByTheMeasuredEfficiency).

  // A point without a bound cannot be restated.
  q.clear_bound_ms();
  absl::Status st = ApplyCalibration(measured, "fp8.json", same_gpu);
  EXPECT_NE(st.message().find("batch 64 has no bound_ms"), std::string::npos) << st;
}

TEST(Prediction, H200OverH100IsTheBandwidthRatio) {
  BenchRequest req = Request("1", 2048);
  const double h100 = Predict(req, *FindGpu("h100-sxm"))->points(0).bound_tokens_per_s();
  const double h200 = Predict(req, *FindGpu("h200"))->points(0).bound_tokens_per_s();
  EXPECT_NEAR(h200 / h100, 4.8 / 3.35, 1e-9);
}

TEST(Prediction, Fp8NoteSaysActivationsAreCountedInBf16) {
  BenchFlagValues f = Flags("1", 0);
  EXPECT_EQ(Predict(Request(f), *FindGpu("h100-sxm"))->config().notes_size(), 0);
  f.weights = "fp8";
  RunResult r = *Predict(Request(f), *FindGpu("h100-sxm"));
  ASSERT_EQ(r.config().notes_size(), 1);
  EXPECT_NE(r.config().notes(0).find("activations counted in bf16"), std::string::npos);
}

TEST(Prediction, TpNoteSaysCommunicationIsNotModelled) {
  BenchFlagValues f = Flags("1", 0);
  f.tp = 8;
  RunResult r = *Predict(Request(f), *FindGpu("h100-sxm"));
  ASSERT_EQ(r.config().notes_size(), 1);
  EXPECT_NE(r.config().notes(0).find("not modelled"), std::string::npos);
  EXPECT_TRUE(r.points(0).fits());  // 1/8 of 70B fits in 80 GB
  f.tp = 2;  // any TP degree past 1
  r = *Predict(Request(f), *FindGpu("h100-sxm"));
  ASSERT_EQ(r.config().notes_size(), 1);
  EXPECT_EQ(r.config().notes(0).find("tp=2: "), 0u) << r.config().notes(0);
}

// Flags only a GPU run uses are named in one note rather than dropped silently.
TEST(Prediction, NoteListsTheGpuRunFlagsAPredictionIgnores) {
  BenchFlagValues f = Flags("1", 0);
  f.ceilings = "none";
  f.graph = false;
  f.verify = false;
  f.profile = "ops";
  f.gemm = "own";
  f.usd_per_gpu_hour = 2;
  const RunResult r = *Predict(Request(f), *FindGpu("h100-sxm"));
  ASSERT_EQ(r.config().notes_size(), 1);
  EXPECT_EQ(r.config().notes(0),
            "--ceilings, --graph=false, --verify=false, --profile=ops, --gemm=own, "
            "--usd_per_gpu_hour: for a GPU run; a prediction has no use for them");
}

}  // namespace
}  // namespace truthput
