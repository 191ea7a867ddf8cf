#include "bench/report.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/json_util.h"
#include "workloads/gpu_datasheet.h"

namespace truthput {
namespace {

bool Measured(const RunResult& r) { return !r.config().predict_only(); }
bool Prefill(const RunResult& r) { return r.config().phase() == "prefill"; }

std::string Num(double v, int precision) { return absl::StrFormat("%.*f", precision, v); }

// Optional fields print empty when unset, never as 0.
template <typename Getter, typename Has>
std::string Opt(const BatchPoint& p, Has has, Getter get, int precision) {
  return (p.*has)() ? Num((p.*get)(), precision) : "";
}

std::string CsvQuote(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) {
    if (c == '"') q += '"';
    q += c;
  }
  return q + "\"";
}

// Per op, across the sweep: its share of the measured step time and the bandwidth it reached.
void PrintOpBreakdown(const RunResult& r, std::ostream& out) {
  std::vector<const BatchPoint*> points;
  for (const BatchPoint& p : r.points()) {
    if (!p.skipped() && p.ops_size() > 0 && p.ops(0).has_measured_ms()) points.push_back(&p);
  }
  if (points.empty()) return;
  out << "\nPer op (each op timed alone, all its executions in one graph): share of the step's "
         "p50 | achieved GB/s\n";
  // A prefill sweep has several prompts per batch: each column names both ("8/2048").
  const bool prefill = Prefill(r);
  std::string head = absl::StrFormat("%-16s", prefill ? "op \\ batch/seq" : "op \\ batch");
  for (const BatchPoint* p : points) {
    head += prefill ? absl::StrFormat(" %13s", absl::StrCat(p->batch(), "/", p->seq_len()))
                    : absl::StrFormat(" %13d", p->batch());
  }
  out << head << "\n";
  for (int i = 0; i < points[0]->ops_size(); ++i) {
    std::string line = absl::StrFormat("%-16s", points[0]->ops(i).name());
    for (const BatchPoint* p : points) {
      const OpPoint& o = p->ops(i);
      line += absl::StrFormat(" %5.1f%% %6.0f", 100 * o.share(), o.achieved_gbps());
    }
    out << line << "\n";
  }
  std::string sum = absl::StrFormat("%-16s", "sum of ops");
  for (const BatchPoint* p : points) {
    double share = 0;
    for (const OpPoint& o : p->ops()) share += o.share();
    sum += absl::StrFormat(" %5.1f%% %6s", 100 * share, "");
  }
  out << sum << "\n";
}

// The truth columns: what NVML and CUPTI said, "n/a" where they could not say (the reason is in
// RunResult.unavailable), empty for skipped points.
struct TruthColumn {
  const char* name;
  bool (BatchPoint::*has)() const;
  double (BatchPoint::*get)() const;
  int precision;
};

const std::vector<TruthColumn>& TruthColumns() {
  using P = BatchPoint;
  static const auto* columns = new std::vector<TruthColumn>{
      {"smi_util_pct", &P::has_smi_util_pct, &P::smi_util_pct, 1},
      {"smi_mem_util_pct", &P::has_smi_mem_util_pct, &P::smi_mem_util_pct, 1},
      {"gpm_sm_util_pct", &P::has_gpm_sm_util_pct, &P::gpm_sm_util_pct, 1},
      {"sm_active_pct", &P::has_sm_active_pct, &P::sm_active_pct, 1},
      {"tensor_active_pct", &P::has_tensor_active_pct, &P::tensor_active_pct, 2},
      {"dram_read_gbytes", &P::has_dram_read_gbytes, &P::dram_read_gbytes, 3},
      {"dram_write_gbytes", &P::has_dram_write_gbytes, &P::dram_write_gbytes, 3},
      {"dram_gbps", &P::has_dram_gbps, &P::dram_gbps, 1},
      {"dram_bytes_over_model", &P::has_dram_bytes_over_model, &P::dram_bytes_over_model, 4},
      {"hw_tflops", &P::has_hw_tflops, &P::hw_tflops, 2},
      {"sm_clock_mhz", &P::has_sm_clock_mhz, &P::sm_clock_mhz, 0},
      {"power_w", &P::has_power_w, &P::power_w, 1},
      {"joules_per_token", &P::has_joules_per_token, &P::joules_per_token, 4},
      {"tensor_flops_over_model", &P::has_tensor_flops_over_model, &P::tensor_flops_over_model, 4},
      {"gpm_tensor_util_pct", &P::has_gpm_tensor_util_pct, &P::gpm_tensor_util_pct, 1},
      {"gpm_dram_bw_util_pct", &P::has_gpm_dram_bw_util_pct, &P::gpm_dram_bw_util_pct, 1},
      {"occupancy_pct", &P::has_occupancy_pct, &P::occupancy_pct, 1},
      {"l2_hit_pct", &P::has_l2_hit_pct, &P::l2_hit_pct, 1},
      {"gpu_temp_c", &P::has_gpu_temp_c, &P::gpu_temp_c, 0},
  };
  return *columns;
}

std::string TruthValue(const BatchPoint& p, const TruthColumn& t) {
  if (p.skipped()) return "";
  return (p.*t.has)() ? Num((p.*t.get)(), t.precision) : "n/a";
}

// A right-aligned table cell; "n/a" when unset.
std::string Cell(const BatchPoint& p, bool (BatchPoint::*has)() const,
                 double (BatchPoint::*get)() const, int width, int precision) {
  if (!(p.*has)()) return absl::StrFormat(" %*s", width, "n/a");
  return absl::StrFormat(" %*.*f", width, precision, (p.*get)());
}

// GPU runs lead with the contrast the product exists for: what nvidia-smi said beside what the
// counters and the model's own bytes and FLOPs say.
void PrintMeasuredTable(const RunResult& r, std::ostream& out) {
  using P = BatchPoint;
  std::string head = absl::StrFormat("%6s", "batch");
  if (Prefill(r)) head += absl::StrFormat(" %6s", "seq");
  head += absl::StrFormat(
      " %6s %6s %6s %6s %7s %9s | %8s %8s %9s %6s %-7s %8s %6s %6s %7s %7s %6s %6s", "smi%",
      "SMact%", "tens%", "MBU", "MFU", "tok/s", Prefill(r) ? "TTFT_ms" : "p50_ms", "p99_ms", "bound_t/s", "eff", "bound", "DRAM/mdl",
      "HW_TF", "W", "J/tok", "$/Mtok", "MBUm", "MFUm");
  out << head << "\n";
  for (const BatchPoint& p : r.points()) {
    std::string line = absl::StrFormat("%6d", p.batch());
    if (Prefill(r)) line += absl::StrFormat(" %6d", p.seq_len());
    if (p.skipped()) {
      out << line << "  skipped: " << p.skip_reason() << "\n";
      continue;
    }
    line += Cell(p, &P::has_smi_util_pct, &P::smi_util_pct, 6, 1) +
            Cell(p, &P::has_sm_active_pct, &P::sm_active_pct, 6, 1) +
            Cell(p, &P::has_tensor_active_pct, &P::tensor_active_pct, 6, 2) +
            Cell(p, &P::has_mbu, &P::mbu, 6, 3) + Cell(p, &P::has_mfu, &P::mfu, 7, 4) +
            Cell(p, &P::has_tokens_per_s, &P::tokens_per_s, 9, 1) + " |" +
            Cell(p, &P::has_step_ms_p50, &P::step_ms_p50, 8, 3) +
            Cell(p, &P::has_step_ms_p99, &P::step_ms_p99, 8, 3) +
            absl::StrFormat(" %9.1f", p.bound_tokens_per_s()) +
            Cell(p, &P::has_roofline_eff, &P::roofline_eff, 6, 3) +
            absl::StrFormat(" %-7s", p.bound()) +
            Cell(p, &P::has_dram_bytes_over_model, &P::dram_bytes_over_model, 8, 3) +
            Cell(p, &P::has_hw_tflops, &P::hw_tflops, 6, 1) +
            Cell(p, &P::has_power_w, &P::power_w, 6, 0) +
            Cell(p, &P::has_joules_per_token, &P::joules_per_token, 7, 3) +
            Cell(p, &P::has_usd_per_mtok, &P::usd_per_mtok, 7, 3) +
            Cell(p, &P::has_mbu_measured, &P::mbu_measured, 6, 3) +
            Cell(p, &P::has_mfu_measured, &P::mfu_measured, 6, 3);
    if (Prefill(r) && p.has_attention_time_share()) {
      line += absl::StrFormat("  attention: %.0f%% of time, %.0f%% of FLOPs",
                              100 * p.attention_time_share(), 100 * p.attention_flops_share());
    }
    out << line << "\n";
  }
  out << "smi%: nvidia-smi utilization.gpu; SMact%/tens%: SMs busy / tensor pipe busy (CUPTI); "
         "MBU/MFU: model bytes/FLOPs per step time over the datasheet peaks; eff: bound / "
         "measured time; DRAM/mdl: DRAM bytes counted over the model's minimum; HW_TF: tensor "
         "FLOPs counted per second; MBUm/MFUm: against this GPU's measured ceilings\n";
  for (const std::string& u : r.unavailable()) out << "n/a: " << u << "\n";
}

}  // namespace

std::string FormatCsv(const RunResult& r) {
  std::vector<std::string> header = {"batch", "context"};
  if (Prefill(r)) header.push_back("seq_len");
  for (const char* c : {"model_gbytes", "model_gflops", "bound", "bound_ms", "bound_tokens_per_s",
                        "intensity", "footprint_gbytes", "fits", "tp_needed"}) {
    header.push_back(c);
  }
  const bool calibrated = !r.config().calibration().empty();
  if (calibrated) {
    for (const char* c : {"calibration_eff", "calibration_batch", "projected_tokens_per_s"}) {
      header.push_back(c);
    }
  }
  if (Measured(r)) {
    for (const char* c : {"step_ms_p50", "step_ms_p99", "tokens_per_s", "achieved_gbps", "mbu",
                          "achieved_tflops", "mfu", "roofline_eff", "usd_per_mtok",
                          "step_rel_spread", "step_ms_p50_rel_ci", "reps", "residency",
                          "skipped", "skip_reason", "attention_time_share",
                          "attention_flops_share", "mbu_measured",
                          "mfu_measured"}) {
      header.push_back(c);
    }
    for (const TruthColumn& t : TruthColumns()) header.push_back(t.name);
    header.push_back("throttle");
  }
  // Last, so that a CSV read without its JSON still says what the run was: one TP shard, a sweep
  // that stopped early, ceilings of another card, a quantity NVML read only in part.
  header.push_back("tp");
  header.push_back("notes");
  std::string out = absl::StrJoin(header, ",") + "\n";
  for (const BatchPoint& p : r.points()) {
    std::vector<std::string> row = {absl::StrCat(p.batch()), absl::StrCat(p.context())};
    if (Prefill(r)) row.push_back(absl::StrCat(p.seq_len()));
    row.insert(row.end(), {Num(p.model_gbytes(), 4), Num(p.model_gflops(), 3), p.bound(),
                           Num(p.bound_ms(), 4), Num(p.bound_tokens_per_s(), 3),
                           Num(p.intensity(), 4), Num(p.footprint_gbytes(), 3),
                           p.fits() ? "true" : "false", absl::StrCat(p.tp_needed())});
    if (calibrated) {
      using P = BatchPoint;
      row.push_back(Opt(p, &P::has_calibration_eff, &P::calibration_eff, 4));
      row.push_back(p.has_calibration_batch() ? absl::StrCat(p.calibration_batch()) : "");
      row.push_back(Opt(p, &P::has_projected_tokens_per_s, &P::projected_tokens_per_s, 3));
    }
    if (Measured(r)) {
      using P = BatchPoint;
      row.push_back(Opt(p, &P::has_step_ms_p50, &P::step_ms_p50, 4));
      row.push_back(Opt(p, &P::has_step_ms_p99, &P::step_ms_p99, 4));
      row.push_back(Opt(p, &P::has_tokens_per_s, &P::tokens_per_s, 3));
      row.push_back(Opt(p, &P::has_achieved_gbps, &P::achieved_gbps, 1));
      row.push_back(Opt(p, &P::has_mbu, &P::mbu, 4));
      row.push_back(Opt(p, &P::has_achieved_tflops, &P::achieved_tflops, 3));
      row.push_back(Opt(p, &P::has_mfu, &P::mfu, 5));
      row.push_back(Opt(p, &P::has_roofline_eff, &P::roofline_eff, 4));
      row.push_back(Opt(p, &P::has_usd_per_mtok, &P::usd_per_mtok, 4));
      row.push_back(Opt(p, &P::has_step_rel_spread, &P::step_rel_spread, 4));
      row.push_back(Opt(p, &P::has_step_ms_p50_rel_ci, &P::step_ms_p50_rel_ci, 5));
      row.push_back(p.has_reps() ? absl::StrCat(p.reps()) : "");
      row.push_back(CsvQuote(p.residency()));
      row.push_back(p.skipped() ? "true" : "false");
      row.push_back(CsvQuote(p.skip_reason()));
      row.push_back(Opt(p, &P::has_attention_time_share, &P::attention_time_share, 4));
      row.push_back(Opt(p, &P::has_attention_flops_share, &P::attention_flops_share, 4));
      row.push_back(Opt(p, &P::has_mbu_measured, &P::mbu_measured, 4));
      row.push_back(Opt(p, &P::has_mfu_measured, &P::mfu_measured, 5));
      for (const TruthColumn& t : TruthColumns()) row.push_back(TruthValue(p, t));
      row.push_back(p.skipped() ? "" : p.throttle().empty() ? "n/a" : CsvQuote(p.throttle()));
    }
    row.push_back(absl::StrCat(r.config().tp()));
    std::vector<std::string> notes(r.config().notes().begin(), r.config().notes().end());
    notes.insert(notes.end(), p.notes().begin(), p.notes().end());
    row.push_back(CsvQuote(absl::StrJoin(notes, "; ")));
    out += absl::StrJoin(row, ",") + "\n";
  }
  return out;
}

void PrintTable(const RunResult& r, std::ostream& out) {
  const RunConfig& c = r.config();
  const GpuSpec& g = r.datasheet();
  out << absl::StrFormat("%s %s  model=%s  tp=%d  %s\n", c.tool(),
                         c.predict_only() ? "(prediction, no GPU used)" : "", c.model().name(),
                         c.tp(), Prefill(r) ? "" : absl::StrCat("context=", c.context()));
  if (r.has_machine()) {
    const MachineInfo& m = r.machine();
    out << absl::StrFormat("GPU: %s, %d SMs, %.1f GB, L2 %.0f MiB, driver %s, CUDA %s, cuBLAS %s\n",
                           m.gpu_name(), m.sm_count(), m.memory_gbytes(), m.l2_mbytes(),
                           m.driver_version(), m.cuda_runtime_version(), m.cublas_version());
  }
  // The peak MFU is taken against (PeakFlopsPerSecond): a GPU without fp8 tensor cores multiplies
  // fp8 weights at its bf16 rate. (The bounds take each op's own dtype: roofline.h.)
  const bool fp8_rate = c.model().weight_dtype() == FP8_E4M3 && g.fp8_tflops() > 0;
  out << absl::StrFormat(
      "Datasheet %s: %.0f TFLOP/s dense %s, %.0f GB/s, %.0f GB (efficiencies are against these)\n",
      g.display_name(), fp8_rate ? g.fp8_tflops() : g.bf16_tflops(),
      fp8_rate                                 ? "fp8"
      : c.model().weight_dtype() == FP8_E4M3 ? "bf16 (no fp8 tensor cores)"
                                               : "bf16",
      g.mem_bandwidth_gbps(), g.memory_gbytes());
  for (const std::string& note : c.notes()) out << "Note: " << note << "\n";

  if (Measured(r)) {
    PrintMeasuredTable(r, out);
  } else {
    std::string head = absl::StrFormat("%6s", "batch");
    if (Prefill(r)) head += absl::StrFormat(" %6s", "seq");
    head += absl::StrFormat(" %9s %10s %7s %-7s %9s %9s %9s %5s %4s", "model_GB", "GFLOP",
                            "FLOP/B", "bound", "bound_ms", "bound_t/s", "need_GB", "fits", "tp");
    if (!c.calibration().empty()) {
      head += absl::StrFormat(" %9s %8s %10s", "cal_batch", "cal_eff", "proj_t/s");
    }
    out << head << "\n";
    for (const BatchPoint& p : r.points()) {
      std::string line = absl::StrFormat("%6d", p.batch());
      if (Prefill(r)) line += absl::StrFormat(" %6d", p.seq_len());
      line += absl::StrFormat(" %9.2f %10.1f %7.2f %-7s %9.3f %9.1f %9.1f %5s %4s",
                              p.model_gbytes(), p.model_gflops(), p.intensity(), p.bound(),
                              p.bound_ms(), p.bound_tokens_per_s(), p.footprint_gbytes(),
                              p.fits() ? "yes" : "no",
                              p.tp_needed() ? absl::StrCat(p.tp_needed()) : "-");
      if (p.has_projected_tokens_per_s()) {
        line += absl::StrFormat(" %9d %8.3f %10.1f", p.calibration_batch(), p.calibration_eff(),
                                p.projected_tokens_per_s());
      }
      out << line << "\n";
    }
  }
  if (r.has_predicted_ridge_batch()) {
    out << absl::StrFormat("Roofline ridge: decode turns compute-bound at batch %.0f",
                           r.predicted_ridge_batch());
    if (r.has_measured_knee_batch()) {
      out << absl::StrFormat("; measured knee at batch %.0f (%.2fx the ridge)",
                             r.measured_knee_batch(),
                             r.measured_knee_batch() / r.predicted_ridge_batch());
    }
    out << "\n";
  } else if (!Prefill(r)) {
    // (Files written before no_ridge_reason say nothing of why.)
    out << "Roofline ridge: none"
        << (r.no_ridge_reason().empty() ? "" : absl::StrCat(": ", r.no_ridge_reason())) << "\n";
  }
  if (Measured(r)) PrintOpBreakdown(r, out);
  if (!Measured(r)) {
    out << absl::StrFormat(
        "need_GB: weights + KV cache + activations of one TP shard; tp: smallest TP degree at "
        "which one fits %.1f GB (%s; -: none that divides the heads does, 0 in CSV and JSON).\n",
        MemoryBytes(g) / 1e9,
        g.reported_memory_gbytes() > 0 ? "what a card reported"
                                       : absl::StrCat("the datasheet's ", g.memory_gbytes(),
                                                      " GiB"));
  }
}

absl::StatusOr<std::string> FormatJson(const RunResult& r) { return MessageToJson(r); }

absl::StatusOr<std::string> MessageToJson(const google::protobuf::Message& r) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(r, &json, options);
  if (!status.ok()) return absl::InternalError(std::string(status.message()));
  return json;
}

absl::Status JsonToMessage(const std::string& json, bool ignore_unknown_fields,
                           google::protobuf::Message& message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = ignore_unknown_fields;
  auto status = google::protobuf::util::JsonStringToMessage(json, &message, options);
  if (status.ok()) return absl::OkStatus();
  const std::string text(status.message());
  return absl::InvalidArgumentError(text.substr(0, text.find('\n')));
}

absl::StatusOr<RunResult> ParseJson(const std::string& json) {
  RunResult r;
  if (absl::Status st = JsonToMessage(json, /*ignore_unknown_fields=*/false, r); !st.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not the JSON of a truthput run (", st.message(), ")"));
  }
  return r;
}

namespace {

// The first double field of `m` (a BatchPoint or an OpPoint) that is set and not a finite
// number >= 0: every time, rate, share, count and ratio truthput writes is one.
std::optional<std::string> BadNumber(const google::protobuf::Message& m) {
  const google::protobuf::Reflection& r = *m.GetReflection();
  const google::protobuf::Descriptor& d = *m.GetDescriptor();
  for (int i = 0; i < d.field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d.field(i);
    if (f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_DOUBLE) continue;
    if (f->is_repeated()) {
      for (int j = 0; j < r.FieldSize(m, f); ++j) {
        const double v = r.GetRepeatedDouble(m, f, j);
        if (!std::isfinite(v) || v < 0) return absl::StrCat(f->name(), "[", j, "] = ", v);
      }
      continue;
    }
    if (!r.HasField(m, f)) continue;
    const double v = r.GetDouble(m, f);
    if (!std::isfinite(v) || v < 0) return absl::StrCat(f->name(), " = ", v);
  }
  return std::nullopt;
}

// A file's points name a number no run writes: NaN, infinite or negative (a file edited by
// hand, or another program's).
absl::Status CheckPointNumbers(const RunResult& r) {
  for (const BatchPoint& p : r.points()) {
    std::optional<std::string> bad = BadNumber(p);
    for (int i = 0; !bad && i < p.ops_size(); ++i) {
      if ((bad = BadNumber(p.ops(i)))) *bad = absl::StrCat("op ", p.ops(i).name(), " ", *bad);
    }
    if (bad) {
      return absl::InvalidArgumentError(
          absl::StrCat("point batch ", p.batch(), ": ", *bad,
                       ": not a number truthput writes (each is finite and >= 0)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RunResult> LoadResultJson(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is a folder; name a run's .json"));
  }
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream json;
  json << in.rdbuf();
  if (json.str().empty()) return absl::InvalidArgumentError(absl::StrCat(path, " is empty"));
  absl::StatusOr<RunResult> r = ParseJson(json.str());
  if (!r.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", r.status().message()));
  if (r->points().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": a truthput run with no points"));
  }
  if (absl::Status numbers = CheckPointNumbers(*r); !numbers.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", numbers.message()));
  }
  return r;
}

namespace {

namespace fs = std::filesystem;

// What an output path names, once symlinks are followed.
struct OutputTarget {
  fs::path file;         // the regular file to create or replace (a link's target)
  bool stream = false;   // a device or pipe (/dev/null, /dev/stdout): written into, not replaced
  bool folder = false;   // a folder: an error
};

OutputTarget ResolveOutputTarget(const std::string& path) {
  std::error_code ec;
  // fs::status follows links as the kernel does, /proc's /dev/stdout -> pipe:[n] included.
  const fs::file_status st = fs::status(path, ec);
  if (fs::is_directory(st)) return {.file = path, .folder = true};
  if (fs::exists(st) && !fs::is_regular_file(st)) return {.file = path, .stream = true};
  // A regular file or nothing yet: follow a chain of links (perhaps to a file not yet there).
  fs::path file = path;
  for (int hops = 0; hops < 40 && fs::is_symlink(file, ec); ++hops) {
    const fs::path next = fs::read_symlink(file, ec);
    if (ec) break;
    file = next.is_absolute() ? next : file.parent_path() / next;
  }
  return {.file = file};
}

// ResolveOutputTarget, then the checks CheckOutputPath names.
absl::StatusOr<OutputTarget> CheckedOutputTarget(const std::string& path, bool overwrite) {
  OutputTarget target = ResolveOutputTarget(path);
  if (target.folder) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is a folder; name a file"));
  }
  if (target.stream) return target;
  std::error_code ec;
  if (!overwrite && fs::exists(target.file, ec)) {
    return absl::AlreadyExistsError(absl::StrCat(path, " exists; pass --overwrite to replace it"));
  }
  // The temporary file and the rename need the target's folder.
  fs::path folder = target.file.parent_path();
  if (folder.empty()) folder = ".";
  if (!fs::is_directory(folder, ec)) {
    if (fs::exists(folder, ec)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ", folder.string(), " is not a folder"));
    }
    return absl::NotFoundError(
        absl::StrCat(path, ": folder ", folder.string(), " does not exist"));
  }
  if (access(folder.c_str(), W_OK) != 0) {
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write in folder ",
                                                    folder.string(), ": ", std::strerror(errno)));
  }
  return target;
}

// Creates a file of a name of its own beside `file` (O_EXCL: no file of the user's is touched),
// with the mode a new file gets; sets `tmp` to its name and returns its descriptor. `path` (the
// output path as the user gave it) names the error.
absl::StatusOr<int> CreateFileBeside(const std::string& path, const fs::path& file,
                                     std::string& tmp) {
  int fd = -1;
  int error = 0;
  for (int i = 0; fd < 0 && i < 100; ++i) {
    tmp = absl::StrCat(file.string(), ".", getpid(), ".", i, ".tmp");
    fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    error = errno;
    if (fd < 0 && error != EEXIST) break;
  }
  if (fd >= 0) return fd;
  fs::path folder = file.parent_path();
  if (folder.empty()) folder = ".";
  return absl::PermissionDeniedError(absl::StrCat(path, ": cannot create a file in folder ",
                                                  folder.string(), ": ", std::strerror(error)));
}

}  // namespace

bool SameOutputFile(const std::string& a, const std::string& b) {
  const OutputTarget ta = ResolveOutputTarget(a), tb = ResolveOutputTarget(b);
  if (ta.stream || tb.stream) return false;
  // (A path the library cannot resolve stays as written.)
  auto canonical = [](const fs::path& p) {
    std::error_code ec;
    fs::path r = fs::weakly_canonical(fs::absolute(p, ec), ec);
    return ec ? p.lexically_normal() : r;
  };
  return canonical(ta.file) == canonical(tb.file);
}

absl::Status CheckOutputPath(const std::string& path, bool overwrite) {
  absl::StatusOr<OutputTarget> target = CheckedOutputTarget(path, overwrite);
  if (!target.ok() || target->stream) return target.status();
  // The folder's permission bits do not say everything (a read-only mount, /proc, root): the
  // file the write will start with is made and removed now, before a run of minutes.
  std::string tmp;
  absl::StatusOr<int> fd = CreateFileBeside(path, target->file, tmp);
  if (!fd.ok()) return fd.status();
  close(*fd);
  if (unlink(tmp.c_str()) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot remove the trial file ", tmp, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& content,
                                 bool overwrite) {
  // Checked again at the end: the run's start was minutes ago.
  absl::StatusOr<OutputTarget> checked = CheckedOutputTarget(path, overwrite);
  if (!checked.ok()) return checked.status();
  const OutputTarget& target = *checked;
  if (target.stream) {
    std::ofstream out(path, std::ios::binary);
    if (!out || !(out << content) || !out.flush()) {
      return absl::DataLossError(absl::StrCat("write to ", path, " failed"));
    }
    return absl::OkStatus();
  }
  // A temporary file beside the target, given the replaced file's mode if there is one, then
  // renamed over the target.
  std::string tmp;
  absl::StatusOr<int> created = CreateFileBeside(path, target.file, tmp);
  if (!created.ok()) return created.status();
  const int fd = *created;
  // Replacing a file keeps its permissions (a 0600 result stays private), not set-id bits. Where
  // they cannot be copied the file gets a new file's mode, as without --overwrite.
  if (struct stat old_file; stat(target.file.c_str(), &old_file) == 0) {
    (void)fchmod(fd, old_file.st_mode & 0777);
  }
  close(fd);
  std::error_code ec;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out || !(out << content) || !out.flush()) {
      fs::remove(tmp, ec);
      return absl::DataLossError(absl::StrCat("write to ", tmp, " failed"));
    }
  }
  // Without --overwrite the rename itself refuses a file that appeared since the check (another
  // run finishing first); a filesystem without RENAME_NOREPLACE falls back to a plain rename.
  int rc = -1;
  if (!overwrite) {
    rc = renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, target.file.c_str(), RENAME_NOREPLACE);
    if (rc != 0 && errno == EEXIST) {
      fs::remove(tmp, ec);
      return absl::AlreadyExistsError(
          absl::StrCat(path, " appeared during the run; pass --overwrite to replace it"));
    }
  }
  if (rc != 0 && (overwrite || errno == EINVAL || errno == ENOSYS)) {
    rc = std::rename(tmp.c_str(), target.file.c_str());
  }
  if (rc != 0) {
    const std::string why = std::strerror(errno);
    fs::remove(tmp, ec);
    return absl::InternalError(absl::StrCat("rename ", tmp, " -> ", path, ": ", why));
  }
  return absl::OkStatus();
}

}  // namespace truthput
