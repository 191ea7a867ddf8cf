#include "bench/prediction.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/text_format.h"
#include "bench/build_info.h"
#include "workloads/gpu_datasheet.h"
#include "workloads/roofline.h"

namespace truthput {

RunResult NewRunResult(const BenchRequest& r, const GpuSpec& datasheet) {
  RunResult result;
  result.set_truthput_version(kTruthputVersion);
  result.set_truthput_build(kTruthputBuild);
  result.set_started_at(absl::FormatTime(absl::RFC3339_sec, absl::Now(), absl::UTCTimeZone()));
  RunConfig* c = result.mutable_config();
  c->set_tool(r.tool);
  c->set_phase(std::string(PhaseName(r.phase)));
  c->set_model_arg(r.model_arg);
  *c->mutable_model() = r.model;
  c->set_context(r.context);
  for (int64_t b : r.batches) c->add_batches(b);
  if (r.phase == Phase::kPrefill) {
    for (int64_t s : r.seq_lens) c->add_seq_lens(s);
  }
  c->set_tp(r.tp);
  c->set_predict_only(r.predict);
  c->set_graph(r.graph);
  c->set_verify(r.verify && !r.predict);
  c->set_profile(r.predict ? "off" : r.profile);
  // A price of 0 is a GPU whose hours cost nothing when given, and unknown in a datasheet.
  if (r.usd_per_gpu_hour.has_value()) {
    c->set_usd_per_gpu_hour(*r.usd_per_gpu_hour);
  } else if (datasheet.usd_per_hour() > 0) {
    c->set_usd_per_gpu_hour(datasheet.usd_per_hour());
  } else if (!r.predict) {
    result.add_unavailable(absl::StrCat("usd_per_mtok: datasheet ", datasheet.id(),
                                        " has no price (--usd_per_gpu_hour gives one)"));
  }
  c->set_command_line(r.command_line);
  if (r.tp > 1) {
    // A prediction has no $/Mtok or J/token to scale.
    c->add_notes(absl::StrCat("tp=", r.tp, ": one shard's shapes on one GPU; the all-reduce "
                              "communication between shards is not modelled",
                              r.predict ? ""
                                        : absl::StrCat("; $/Mtok and J/token count all ", r.tp,
                                                       " GPUs (this one's price and energy times ",
                                                       r.tp, ")")));
  }
  *result.mutable_datasheet() = datasheet;
  if (r.phase == Phase::kDecode) {
    absl::StatusOr<int64_t> ridge = DecodeRidgeBatch(
        r.model, r.context, r.tp, Ceilings::FromDatasheet(datasheet));
    if (ridge.ok()) {
      result.set_predicted_ridge_batch(static_cast<double>(*ridge));
    } else {
      result.set_no_ridge_reason(std::string(ridge.status().message()));
    }
  }
  return result;
}

void SetMeasuredRates(BatchPoint& p, const GpuSpec& gpu, DType dtype,
                      std::optional<double> usd_per_hour, int gpus) {
  const double s = p.step_ms_p50() / 1e3;
  p.set_tokens_per_s(p.tokens() / s);
  p.set_achieved_gbps(p.model_gbytes() / s);
  p.set_mbu(p.achieved_gbps() / gpu.mem_bandwidth_gbps());
  p.set_achieved_tflops(p.model_gflops() / s / 1e3);
  p.set_mfu(p.achieved_tflops() * 1e12 / PeakFlopsPerSecond(gpu, dtype));
  p.set_roofline_eff(p.bound_ms() / p.step_ms_p50());
  if (usd_per_hour.has_value()) {
    p.set_usd_per_mtok(gpus * *usd_per_hour / 3600.0 / p.tokens_per_s() * 1e6);
  }
}

void SetMeasuredKnee(RunResult& result) {
  std::vector<const BatchPoint*> measured;
  for (const BatchPoint& p : result.points()) {
    if (p.has_step_ms_p50()) measured.push_back(&p);
  }
  if (measured.size() < 2 || !result.has_predicted_ridge_batch() ||
      measured.back()->batch() <= result.predicted_ridge_batch()) {
    return;
  }
  // The roofline's own construction with this GPU's achieved rates in place of the datasheet's:
  // the bandwidth the smallest batch reached (memory-bound) and the FLOP rate the largest
  // reached (compute-bound) meet at intensity I*; the knee is the batch whose step has it.
  const BatchPoint& first = *measured.front();
  const BatchPoint& last = *measured.back();
  const double bandwidth = first.model_gbytes() / first.step_ms_p50();
  const double flop_rate = last.model_gflops() / last.step_ms_p50();
  const double ridge_intensity = flop_rate / bandwidth;
  for (size_t i = 0; i + 1 < measured.size(); ++i) {
    const BatchPoint& a = *measured[i];
    const BatchPoint& b = *measured[i + 1];
    if (a.intensity() <= ridge_intensity && ridge_intensity <= b.intensity()) {
      // Intensity grows about linearly in the batch: interpolate in log-log.
      const double t = std::log(ridge_intensity / a.intensity()) /
                       std::log(b.intensity() / a.intensity());
      result.set_measured_knee_batch(a.batch() *
                                     std::pow(static_cast<double>(b.batch()) / a.batch(), t));
      return;
    }
  }
}

BatchPoint PredictPoint(const Workload& w, const GpuSpec& datasheet, int64_t memory_bytes) {
  const Ceilings ceilings = Ceilings::FromDatasheet(datasheet);
  const StepBound bound = BoundStep(w, ceilings);
  BatchPoint p;
  p.set_batch(w.config().batch);
  p.set_context(w.config().context);
  p.set_seq_len(w.config().seq_len);
  p.set_tokens(w.tokens_per_step());
  p.set_model_gbytes(w.total_bytes() / 1e9);
  p.set_model_gflops(w.total_flops() / 1e9);
  p.set_bound(std::string(ResourceName(bound.limiter)));
  p.set_bound_ms(bound.seconds * 1e3);
  p.set_bound_tokens_per_s(bound.tokens_per_s);
  p.set_intensity(bound.intensity);
  const MemoryFootprint f = w.Footprint();
  p.set_footprint_gbytes(f.total() / 1e9);
  p.set_fits(f.total() <= memory_bytes);
  p.set_tp_needed(TpNeeded(w.model(), w.config(), memory_bytes));
  for (size_t i = 0; i < w.ops().size(); ++i) {
    const Op& op = w.ops()[i];
    OpPoint* o = p.add_ops();
    o->set_name(op.name);
    o->set_kind(std::string(OpKindName(op.kind)));
    o->set_count(op.count);
    o->set_gbytes(op.count * op.bytes() / 1e9);
    o->set_gflops(op.count * op.flops / 1e9);
    o->set_bound(std::string(ResourceName(bound.ops[i].limiter())));
    o->set_bound_ms(op.count * bound.ops[i].seconds() * 1e3);
  }
  return p;
}

namespace {

// "num_layers 0 (the prediction's 80), ...": the fields of ModelSpec in which `file` differs
// from `prediction`, but for `source` (a citation) and `weight_dtype` (ApplyCalibration refuses
// that with a message of its own); empty where none does. Fields that do not change a step's
// cost (rope_theta, rms_norm_eps, max_context) count too: a file of another spec is refused.
std::string ModelDifferences(const ModelSpec& file, const ModelSpec& prediction) {
  std::vector<std::string> diffs;
  const google::protobuf::Descriptor* d = ModelSpec::descriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d->field(i);
    if (f->name() == "source" || f->name() == "weight_dtype") continue;
    std::string a, b;
    google::protobuf::TextFormat::PrintFieldValueToString(file, f, -1, &a);
    google::protobuf::TextFormat::PrintFieldValueToString(prediction, f, -1, &b);
    if (a != b) diffs.push_back(absl::StrCat(f->name(), " ", a, " (the prediction's ", b, ")"));
  }
  return absl::StrJoin(diffs, ", ");
}

// Whether measured batch a calibrates target batch t better than b does: nearer on a log scale,
// or as near and smaller (4 between 2 and 8). Nearness is max/min of each pair, compared
// cross-multiplied in integers (batches are 32-bit) so that a tie is exact: 6 is as near 4 as 9,
// which logarithms in doubles miss by 5.6e-17.
bool CalibratesBetter(uint64_t a, uint64_t b, uint64_t t) {
  const uint64_t a_far = std::max(a, t) * std::min(b, t), b_far = std::max(b, t) * std::min(a, t);
  return a_far < b_far || (a_far == b_far && a < b);
}

}  // namespace

absl::Status ApplyCalibration(const RunResult& measured, const std::string& source,
                              RunResult& prediction) {
  const RunConfig& m = measured.config();
  const RunConfig& p = prediction.config();
  auto mismatch = [&](absl::string_view what, const std::string& a, const std::string& b) {
    return absl::InvalidArgumentError(absl::StrCat("--calibrate=", source, ": its ", what, " is ",
                                                   a, ", the prediction's is ", b));
  };
  if (m.predict_only()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--calibrate=", source, ": a prediction, not a measured run"));
  }
  if (m.model().name() != p.model().name()) return mismatch("model", m.model().name(), p.model().name());
  // The same name is not the same model (a custom spec, an edited file): the specs must agree,
  // or the efficiency would be restated against another step.
  if (const std::string diff = ModelDifferences(m.model(), p.model()); !diff.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--calibrate=", source, ": its model ",
                                                   m.model().name(), " is not the prediction's: ",
                                                   diff));
  }
  if (m.phase() != p.phase()) return mismatch("phase", m.phase(), p.phase());
  if (m.tp() != p.tp()) return mismatch("tp", absl::StrCat(m.tp()), absl::StrCat(p.tp()));
  if (m.model().weight_dtype() != p.model().weight_dtype()) {
    return mismatch("weight dtype", DType_Name(m.model().weight_dtype()),
                    DType_Name(p.model().weight_dtype()));
  }
  // The file's own datasheet restates its efficiency (below); without one there is nothing to
  // restate against, and a zero would project infinite tokens/s.
  const GpuSpec& sheet = measured.datasheet();
  if (!(sheet.mem_bandwidth_gbps() > 0) || !(sheet.bf16_tflops() > 0) ||
      !std::isfinite(sheet.mem_bandwidth_gbps()) || !std::isfinite(sheet.bf16_tflops())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--calibrate=", source, ": no datasheet with bandwidth and bf16 FLOP/s to rate it against"));
  }
  // An efficiency against another GPU's peaks (a MIG instance against its whole GPU, --gpu=ID)
  // is not that GPU's, and would project it onto the prediction's.
  if (measured.has_machine()) {
    if (const std::string other = DatasheetMismatch(sheet, measured.machine().gpu_name(),
                                                    measured.machine().sm_count());
        !other.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--calibrate=", source, ": measured against another GPU's datasheet: ", other));
    }
  }
  const Phase phase = m.phase() == PhaseName(Phase::kPrefill) ? Phase::kPrefill : Phase::kDecode;
  std::vector<const BatchPoint*> points;
  for (const BatchPoint& q : measured.points()) {
    if (q.has_roofline_eff()) points.push_back(&q);
  }
  if (points.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--calibrate=", source, ": no measured points"));
  }
  // Calibrated on a copy, assigned only once every point is: a refusal leaves `prediction` as
  // it was rather than half of its points projected.
  RunResult calibrated = prediction;
  std::vector<std::string> borrowed;  // "64 from 16": points calibrated at another batch
  std::vector<std::string> crossed;   // points whose limiter is not the measured point's
  for (BatchPoint& target : *calibrated.mutable_points()) {
    const BatchPoint* best = nullptr;
    const uint64_t t = target.batch();
    for (const BatchPoint* q : points) {
      if (q->context() != target.context() || q->seq_len() != target.seq_len()) continue;
      if (best == nullptr || CalibratesBetter(q->batch(), best->batch(), t)) best = q;
    }
    if (best == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--calibrate=", source, ": no measured point at context ", target.context(),
          " and sequence length ", target.seq_len()));
    }
    // The measured run rated itself with its own op list, which counts e4m3 activations where
    // --gemm=auto chose a W8A8 GEMM; the prediction counts bf16. Restated against the
    // prediction's bound of the measured step on the measured GPU's datasheet, the efficiency
    // projects that GPU back onto its own measured time.
    if (!(best->bound_ms() > 0) || !std::isfinite(best->bound_ms())) {
      return absl::InvalidArgumentError(absl::StrCat("--calibrate=", source, ": batch ",
                                                     best->batch(), " has no bound_ms"));
    }
    if (!(best->roofline_eff() > 0) || !std::isfinite(best->roofline_eff())) {
      return absl::InvalidArgumentError(absl::StrCat("--calibrate=", source, ": batch ",
                                                     best->batch(), " has roofline_eff ",
                                                     best->roofline_eff(), ", not a measurement"));
    }
    // roofline_eff is bound_ms over the p50 it was measured with; one that is not (an edited
    // file) would project a number no run saw.
    if (best->has_step_ms_p50() && best->step_ms_p50() > 0) {
      const double from_p50 = best->bound_ms() / best->step_ms_p50();
      if (!(std::abs(best->roofline_eff() - from_p50) <= 1e-3 * from_p50)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "--calibrate=%s: batch %d has roofline_eff %g, but bound_ms / step_ms_p50 is %g",
            source, best->batch(), best->roofline_eff(), from_p50));
      }
    }
    absl::StatusOr<Workload> step = Workload::Build(
        m.model(), StepConfig{.phase = phase,
                              .batch = static_cast<int64_t>(best->batch()),
                              .context = static_cast<int64_t>(best->context()),
                              .seq_len = static_cast<int64_t>(best->seq_len()),
                              .tp = static_cast<int64_t>(m.tp())});
    if (!step.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--calibrate=", source, ": batch ",
                                                     best->batch(), ": ", step.status().message()));
    }
    const double bound_ms =
        1e3 * BoundStep(*step, Ceilings::FromDatasheet(measured.datasheet())).seconds;
    const double eff = best->roofline_eff() * bound_ms / best->bound_ms();
    target.set_calibration_eff(eff);
    target.set_calibration_batch(best->batch());
    target.set_projected_tokens_per_s(target.bound_tokens_per_s() * eff);
    if (best->batch() != target.batch()) {
      borrowed.push_back(absl::StrCat(target.batch(), " from ", best->batch()));
    }
    if (best->bound() != target.bound()) {
      crossed.push_back(absl::StrCat(target.batch(), " (", best->bound(), "-bound where measured, ",
                                     target.bound(), "-bound here)"));
    }
  }
  const std::string on =
      measured.has_machine() ? measured.machine().gpu_name() : measured.datasheet().display_name();
  RunConfig& config = *calibrated.mutable_config();
  config.set_calibration(source);
  config.add_notes(absl::StrCat(
      "projected_tokens_per_s: this GPU's roofline bound times the roofline efficiency measured on ",
      on, " (", source, ") at the same or the nearest batch (calibration_batch",
      borrowed.empty() ? "" : absl::StrCat("; batch ", absl::StrJoin(borrowed, ", ")),
      "), against this prediction's count of that step: a projection, not a measurement"));
  // A bandwidth efficiency says little of how near a compute bound the same step gets, and back.
  if (!crossed.empty()) {
    config.add_notes(absl::StrCat(
        "calibration crosses a limiter at batch ", absl::StrJoin(crossed, ", "),
        ": an efficiency measured against one limit is applied to the other, so those "
        "projections are rougher"));
  }
  // Eager launches put the host's launch gaps into the efficiency; a graph run would not.
  if (!m.graph()) {
    config.add_notes(absl::StrCat(source, " was measured with --graph=false (eager launches): "
                                          "its efficiencies include launch overhead"));
  }
  prediction = std::move(calibrated);
  return absl::OkStatus();
}

absl::StatusOr<RunResult> Predict(const BenchRequest& request, const GpuSpec& gpu) {
  RunResult result = NewRunResult(request, gpu);
  if (request.model.weight_dtype() == FP8_E4M3) {
    // Which GEMMs run W8A8 is chosen on the GPU (--gemm=auto's calibration).
    result.mutable_config()->add_notes(
        "fp8 weights: activations counted in bf16; a GPU run counts e4m3 and a scale per token "
        "where --gemm=auto chooses a W8A8 GEMM, known only once it has calibrated");
  }
  // Flags of a GPU run given to a prediction (scripts/run.sh passes its arguments to the
  // prediction it falls back to without a GPU): said, not silently dropped.
  std::vector<std::string> ignored;
  if (!request.ceilings_path.empty()) ignored.push_back("--ceilings");
  if (!request.graph) ignored.push_back("--graph=false");
  if (!request.verify) ignored.push_back("--verify=false");
  if (request.profile != "step") ignored.push_back(absl::StrCat("--profile=", request.profile));
  if (request.gemm != "auto") ignored.push_back(absl::StrCat("--gemm=", request.gemm));
  // $/Mtok is measured.
  if (request.usd_per_gpu_hour.has_value()) ignored.push_back("--usd_per_gpu_hour");
  if (!ignored.empty()) {
    result.mutable_config()->add_notes(absl::StrCat(
        absl::StrJoin(ignored, ", "), ": for a GPU run; a prediction has no use for them"));
  }
  const int64_t memory = MemoryBytes(gpu);
  for (const StepConfig& step : request.Steps()) {
    absl::StatusOr<Workload> w = Workload::Build(request.model, step);
    if (!w.ok()) return w.status();
    *result.add_points() = PredictPoint(*w, gpu, memory);
  }
  return result;
}

}  // namespace truthput
