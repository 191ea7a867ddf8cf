#include "bench/bench_request.h"

#include <cmath>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/ceilings_io.h"
#include "bench/report.h"
#include "workloads/gpu_datasheet.h"
#include "workloads/model_registry.h"
#include "workloads/size_list.h"

namespace truthput {

std::vector<StepConfig> BenchRequest::Steps() const {
  std::vector<StepConfig> steps;
  for (int64_t s : seq_lens) {
    for (int64_t b : batches) {
      steps.push_back(StepConfig{.phase = phase, .batch = b, .context = context,
                                 .seq_len = s, .tp = tp});
    }
  }
  return steps;
}

absl::StatusOr<BenchRequest> MakeBenchRequest(std::string tool, Phase phase,
                                              const BenchFlagValues& f) {
  BenchRequest r;
  r.tool = std::move(tool);
  r.phase = phase;
  r.model_arg = f.model;
  absl::StatusOr<ModelSpec> model = LoadModel(f.model);
  if (!model.ok()) return model.status();
  r.model = *std::move(model);
  // Names are matched as --gpu and --model are, whatever their case.
  const std::string weights = absl::AsciiStrToLower(f.weights);
  const std::string profile = absl::AsciiStrToLower(f.profile);
  const std::string gemm = absl::AsciiStrToLower(f.gemm);
  if (weights == "fp8") {
    r.model.set_weight_dtype(FP8_E4M3);
  } else if (weights == "bf16") {
    r.model.set_weight_dtype(BF16);
  } else if (!f.weights.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--weights=", f.weights, ": must be bf16 or fp8"));
  }

  absl::StatusOr<std::vector<int64_t>> batches = ParseSizeList(f.batch, "batch");
  if (!batches.ok()) return batches.status();
  r.batches = *std::move(batches);
  if (phase == Phase::kPrefill) {
    absl::StatusOr<std::vector<int64_t>> seqs = ParseSizeList(f.seq, "seq");
    if (!seqs.ok()) return seqs.status();
    r.seq_lens = *std::move(seqs);
    // Each list alone is capped; their product is what a run would hold in memory and time.
    constexpr size_t kMaxSteps = 100000;
    if (r.batches.size() * r.seq_lens.size() > kMaxSteps) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--batch x --seq: ", r.batches.size(), " x ", r.seq_lens.size(),
          " steps; at most ", kMaxSteps, " in one run"));
    }
  }
  if (f.context < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--context must be >= 0, got ", f.context));
  }
  r.context = f.context;
  if (f.tp < 1) return absl::InvalidArgumentError(absl::StrCat("--tp must be >= 1, got ", f.tp));
  r.tp = f.tp;
  for (const StepConfig& step : r.Steps()) {
    absl::StatusOr<Workload> w = Workload::Build(r.model, step);
    if (!w.ok()) return w.status();
  }

  r.gpu_arg = f.gpu;
  if (!f.gpu.empty()) {
    absl::StatusOr<GpuSpec> gpu = FindGpu(f.gpu);
    if (!gpu.ok()) return gpu.status();
  } else if (f.predict) {
    return absl::InvalidArgumentError("--predict needs --gpu=ID (e.g. --gpu=h100-sxm)");
  }
  r.predict = f.predict;
  r.graph = f.graph;
  r.verify = f.verify;
  if (profile != "off" && profile != "step" && profile != "ops") {
    return absl::InvalidArgumentError(
        absl::StrCat("--profile=", f.profile, ": must be off, step or ops"));
  }
  r.profile = profile;
  if (gemm != "auto" && gemm != "own" && gemm != "own_w8a8" && gemm != "cublaslt") {
    return absl::InvalidArgumentError(
        absl::StrCat("--gemm=", f.gemm, ": must be auto, own, own_w8a8 or cublaslt"));
  }
  r.gemm = gemm;
  // Capped far above any GPU's price, so that $/Mtok (price x GPUs / tokens per second) stays
  // finite.
  constexpr double kMaxUsdPerGpuHour = 1e6;
  if (f.usd_per_gpu_hour.has_value() &&
      (!std::isfinite(*f.usd_per_gpu_hour) || *f.usd_per_gpu_hour < 0 ||
       *f.usd_per_gpu_hour > kMaxUsdPerGpuHour)) {
    // %.15g: StrCat's 6 digits print 1000001 as 1e+06, which reads as a price it accepts; 15
    // digits give back any decimal of up to 15 digits as typed (17 print -1.1 as
    // -1.1000000000000001).
    return absl::InvalidArgumentError(
        absl::StrFormat("--usd_per_gpu_hour=%.15g: must be a finite price >= 0 and at most %.15g "
                        "(dollars an hour)",
                        *f.usd_per_gpu_hour, kMaxUsdPerGpuHour));
  }
  r.usd_per_gpu_hour = f.usd_per_gpu_hour;
  if (r.usd_per_gpu_hour) *r.usd_per_gpu_hour += 0.0;  // -0 is 0: no "-0.000" $/Mtok

  // Loaded here, in a prediction too (which only notes it has no use for one): a typo is
  // refused before anything runs, not minutes into a GPU run.
  r.ceilings_path = f.ceilings;
  if (!f.ceilings.empty() && f.ceilings != "none") {
    absl::StatusOr<MeasuredCeilings> c = LoadCeilings(f.ceilings);
    if (!c.ok()) {
      return absl::Status(c.status().code(), absl::StrCat("--ceilings=", c.status().message()));
    }
    r.ceilings = *std::move(c);
  }
  r.calibrate_path = f.calibrate;
  if (!f.calibrate.empty()) {
    if (!f.predict) return absl::InvalidArgumentError("--calibrate needs --predict");
    if (!std::filesystem::exists(f.calibrate)) {
      return absl::NotFoundError(absl::StrCat("--calibrate=", f.calibrate, ": no such file"));
    }
  }
  r.csv_path = f.csv;
  r.json_path = f.json;
  r.overwrite = f.overwrite;
  for (const std::string& path : {f.csv, f.json}) {
    if (path.empty()) continue;
    if (absl::Status st = CheckOutputPath(path, f.overwrite); !st.ok()) return st;
  }
  if (!f.csv.empty() && !f.json.empty() && SameOutputFile(f.csv, f.json)) {
    return absl::InvalidArgumentError("--csv and --json name the same file");
  }
  return r;
}

}  // namespace truthput
