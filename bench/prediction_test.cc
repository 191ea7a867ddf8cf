#include "bench/prediction.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "workloads/gpu_datasheet.h"

namespace truthput {
namespace {

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
  SetMeasuredRates(p, *FindGpu("h100-sxm"), BF16, 3.0);
  EXPECT_DOUBLE_EQ(p.tokens_per_s(), 160);
  EXPECT_DOUBLE_EQ(p.achieved_gbps(), 2800);
  EXPECT_DOUBLE_EQ(p.mbu(), 2800.0 / 3350);
  EXPECT_DOUBLE_EQ(p.achieved_tflops(), 40);
  EXPECT_DOUBLE_EQ(p.mfu(), 40 / 989.4);
  EXPECT_DOUBLE_EQ(p.roofline_eff(), 0.8);
  EXPECT_DOUBLE_EQ(p.usd_per_mtok(), 3.0 / 3600 / 160 * 1e6);  // $5.21 per million tokens
  SetMeasuredRates(p, *FindGpu("h100-sxm"), FP8_E4M3, 3.0);
  EXPECT_DOUBLE_EQ(p.mfu(), 40 / 1978.9);  // fp8 weights: the fp8 peak
  EXPECT_DOUBLE_EQ(p.mbu(), 2800.0 / 3350);
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
  measured.mutable_points(0)->set_bound_ms(std::nan(""));
  RunResult b200 = *Predict(Request("1", 2048), *FindGpu("b200"));
  EXPECT_NE(ApplyCalibration(measured, "h100.json", b200).message().find("has no bound_ms"),
            std::string::npos);
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
}

}  // namespace
}  // namespace truthput
