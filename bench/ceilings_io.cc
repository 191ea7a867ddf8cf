#include "bench/ceilings_io.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/report.h"

namespace truthput {
namespace {

// Every rate field: its name (as in the JSON), whether it is set, its value, and whether a run
// needs it.
struct RateField {
  const char* name;
  bool (MeasuredCeilings::*has)() const;
  double (MeasuredCeilings::*get)() const;
  bool required;
};

using C = MeasuredCeilings;
const RateField kRates[] = {
    {"read_gbps", &C::has_read_gbps, &C::read_gbps, true},
    {"write_gbps", &C::has_write_gbps, &C::write_gbps, false},
    {"copy_gbps", &C::has_copy_gbps, &C::copy_gbps, false},
    {"memcpy_d2d_gbps", &C::has_memcpy_d2d_gbps, &C::memcpy_d2d_gbps, false},
    {"read_sustained_gbps", &C::has_read_sustained_gbps, &C::read_sustained_gbps, false},
    {"bf16_tflops", &C::has_bf16_tflops, &C::bf16_tflops, true},
    {"bf16_sustained_tflops", &C::has_bf16_sustained_tflops, &C::bf16_sustained_tflops, false},
    {"fp8_tflops", &C::has_fp8_tflops, &C::fp8_tflops, false},
    {"fp8_sustained_tflops", &C::has_fp8_sustained_tflops, &C::fp8_sustained_tflops, false},
    {"fp8_precise_accum_tflops", &C::has_fp8_precise_accum_tflops, &C::fp8_precise_accum_tflops,
     false},
    {"launch_latency_us", &C::has_launch_latency_us, &C::launch_latency_us, false},
    {"graph_node_us", &C::has_graph_node_us, &C::graph_node_us, false},
    {"empty_kernel_gpu_us", &C::has_empty_kernel_gpu_us, &C::empty_kernel_gpu_us, false},
    {"launch_sync_us", &C::has_launch_sync_us, &C::launch_sync_us, false},
    {"h2d_gbps", &C::has_h2d_gbps, &C::h2d_gbps, false},
    {"d2h_gbps", &C::has_d2h_gbps, &C::d2h_gbps, false},
};

absl::Status WithPath(const absl::Status& st, const std::string& path) {
  return absl::Status(st.code(), absl::StrCat(path, ": ", st.message()));
}

// One line of the table: name, measured value with unit, datasheet value and percentage, and a
// remark; columns aligned, no trailing blanks.
void Line(std::ostream& out, const std::string& name, const std::string& measured,
          const std::string& sheet, const std::string& pct, const std::string& remark) {
  std::string line = absl::StrFormat("%-36s %16s %16s %7s  %s", name, measured, sheet, pct, remark);
  line.erase(line.find_last_not_of(' ') + 1);
  out << line << "\n";
}

// A rate beside its datasheet figure and percentage (blank where the datasheet has none).
void Row(std::ostream& out, const std::string& name, double value, const char* unit,
         double datasheet, const std::string& remark) {
  std::string sheet, pct;
  if (datasheet > 0) {
    sheet = absl::StrFormat("%.1f %s", datasheet, unit);
    pct = absl::StrFormat("%.1f%%", 100 * value / datasheet);
  }
  Line(out, name, absl::StrFormat("%.1f %s", value, unit), sheet, pct, remark);
}

void UsRow(std::ostream& out, const std::string& name, double us, const std::string& remark) {
  Line(out, name, absl::StrFormat("%.2f us", us), "", "", remark);
}

// The GEMM rate a run with `dtype` weights divides by: fp8's where measured, else bf16's; held
// where the file has a held rate, else the burst; with the shape that gave it.
struct GemmDenominator {
  bool fp8;
  bool held;
  double tflops;
  std::string shape;
};
GemmDenominator GemmDenominatorOf(const MeasuredCeilings& c, DType dtype) {
  if (dtype == FP8_E4M3 && c.has_fp8_tflops() && c.fp8_tflops() > 0) {
    const bool held = c.has_fp8_sustained_tflops();
    return {true, held, held ? c.fp8_sustained_tflops() : c.fp8_tflops(),
            held ? c.fp8_sustained_shape() : c.fp8_best_shape()};
  }
  const bool held = c.has_bf16_sustained_tflops();
  return {false, held, held ? c.bf16_sustained_tflops() : c.bf16_tflops(),
          held ? c.bf16_sustained_shape() : c.bf16_best_shape()};
}

// The highest median of `dtype`'s GEMMs (the first of equals); null where there is none.
const MeasuredCeilings::GemmPoint* HighestGemm(const MeasuredCeilings& c,
                                               const std::string& dtype) {
  const MeasuredCeilings::GemmPoint* highest = nullptr;
  for (const MeasuredCeilings::GemmPoint& g : c.gemms()) {
    if (g.dtype() == dtype && (highest == nullptr || g.tflops() > highest->tflops())) highest = &g;
  }
  return highest;
}

}  // namespace

absl::StatusOr<std::string> FormatCeilingsJson(const MeasuredCeilings& c) {
  return MessageToJson(c);
}

absl::StatusOr<MeasuredCeilings> ParseCeilingsJson(const std::string& json) {
  MeasuredCeilings c;
  if (absl::Status st = JsonToMessage(json, /*ignore_unknown_fields=*/true, c); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("not a ceilings JSON file: ", st.message()));
  }
  if (absl::Status st = ValidateCeilings(c); !st.ok()) return st;
  return c;
}

absl::Status ValidateCeilings(const MeasuredCeilings& c) {
  if (c.machine().gpu_name().empty()) {
    return absl::InvalidArgumentError(
        "ceilings: machine.gpu_name is empty (not a file written by bench_ceilings?)");
  }
  for (const RateField& f : kRates) {
    if (!(c.*f.has)()) {
      if (f.required) {
        return absl::InvalidArgumentError(
            absl::StrCat("ceilings: ", f.name,
                         " is missing (every run needs it; re-measure with "
                         "bench_ceilings)"));
      }
      continue;
    }
    const double v = (c.*f.get)();
    if (!std::isfinite(v) || !(v > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("ceilings: ", f.name, " = ", v, ": must be finite and > 0"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<MeasuredCeilings> LoadCeilings(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is a folder; name a ceilings .json (bench_ceilings --json=FILE)"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read the ceilings file"));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read failed"));
  absl::StatusOr<MeasuredCeilings> c = ParseCeilingsJson(text.str());
  if (!c.ok()) return WithPath(c.status(), path);
  return c;
}

absl::Status CheckCeilingsGpu(const MeasuredCeilings& c, const std::string& running_gpu_name) {
  if (c.machine().gpu_name() == running_gpu_name) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "ceilings were measured on a '", c.machine().gpu_name(), "', but this GPU is a '",
      running_gpu_name, "'; measure this one with bench_ceilings --json=PATH"));
}

std::string CeilingsFromAnotherCardNote(const MeasuredCeilings& c,
                                        const std::string& running_uuid) {
  const std::string& measured_on = c.machine().gpu_uuid();
  if (measured_on.empty() || running_uuid.empty() || measured_on == running_uuid) return "";
  // "GPU-" and the first 8 hex digits name a card in every table of this project.
  return absl::StrCat("the ceilings were measured on another card of this model (",
                      measured_on.substr(0, 12), "; this run: ", running_uuid.substr(0, 12),
                      "): mbu_measured and mfu_measured include the two cards' difference");
}

std::string GemmShapeText(int64_t m, int64_t n, int64_t k) {
  return absl::StrCat("m=", m, " n=", n, " k=", k);
}

std::string GemmShapeText(const MeasuredCeilings::GemmPoint& g) {
  return GemmShapeText(g.m(), g.n(), g.k());
}

const MeasuredCeilings::GemmPoint* SurestGemm(const MeasuredCeilings& c,
                                              const std::string& dtype) {
  const MeasuredCeilings::GemmPoint* surest = nullptr;
  double surest_low = -1;
  for (const MeasuredCeilings::GemmPoint& g : c.gemms()) {
    if (g.dtype() != dtype) continue;
    if (!g.has_rel_ci() || !std::isfinite(g.rel_ci()) || g.rel_ci() < 0) continue;
    const double low = g.tflops() / (1 + g.rel_ci());
    if (low > surest_low || (low == surest_low && g.tflops() > surest->tflops())) {
      surest_low = low;
      surest = &g;
    }
  }
  return surest != nullptr ? surest : HighestGemm(c, dtype);
}

std::string SurestGemmNote(const MeasuredCeilings& c, const std::string& dtype) {
  const MeasuredCeilings::GemmPoint* surest = SurestGemm(c, dtype);
  const MeasuredCeilings::GemmPoint* highest = HighestGemm(c, dtype);
  if (surest == nullptr || surest->tflops() >= highest->tflops()) return "";
  // Named as the held GEMM's own notes are, so DenominatorNotes passes it to the runs that
  // divide by it.
  return absl::StrFormat(
      "%s GEMM %s: the ceiling, %.1f TFLOP/s +-%.2f%%, taken over %s's higher but looser "
      "median, %.1f: the highest low end of the ~95%% intervals",
      dtype, GemmShapeText(*surest), surest->tflops(), 100 * surest->rel_ci(),
      GemmShapeText(*highest), highest->tflops());
}

double MeasuredPeakTflops(const MeasuredCeilings& c, DType dtype) {
  return GemmDenominatorOf(c, dtype).tflops;
}

double MeasuredReadGbps(const MeasuredCeilings& c) {
  return c.has_read_sustained_gbps() ? c.read_sustained_gbps() : c.read_gbps();
}

std::string MeasuredDenominatorsText(const MeasuredCeilings& c, DType dtype) {
  const GemmDenominator gemm = GemmDenominatorOf(c, dtype);
  const auto kind = [](bool held) { return held ? " sustained" : " (a burst: no sustained rate)"; };
  return absl::StrFormat("read %.0f GB/s%s, %s GEMM %.0f TFLOP/s%s", MeasuredReadGbps(c),
                         kind(c.has_read_sustained_gbps()), gemm.fp8 ? "fp8" : "bf16",
                         gemm.tflops, kind(gemm.held));
}

std::vector<std::string> DenominatorNotes(const MeasuredCeilings& c, DType dtype) {
  // Each measurement's notes begin with what was timed (bench/ceilings.cc names them so).
  const GemmDenominator gemm = GemmDenominatorOf(c, dtype);
  const std::string read = c.has_read_sustained_gbps() ? "read, sustained: " : "read: ";
  const std::string gemm_prefix = absl::StrCat(gemm.fp8 ? "fp8" : "bf16",
                                               gemm.held ? " sustained" : "", " GEMM ", gemm.shape,
                                               ": ");
  std::vector<std::string> notes;
  for (const std::string& note : c.notes()) {
    if (absl::StartsWith(note, "other processes") || absl::StartsWith(note, read) ||
        (!gemm.shape.empty() && absl::StartsWith(note, gemm_prefix))) {
      notes.push_back(note);
    }
  }
  return notes;
}

void AddMeasuredAgainstCeilings(BatchPoint& p, const MeasuredCeilings& c, DType weight_dtype) {
  if (p.has_achieved_gbps() && MeasuredReadGbps(c) > 0) {
    p.set_mbu_measured(p.achieved_gbps() / MeasuredReadGbps(c));
  }
  const double peak = MeasuredPeakTflops(c, weight_dtype);
  if (p.has_achieved_tflops() && peak > 0) p.set_mfu_measured(p.achieved_tflops() / peak);
}

void PrintCeilingsTable(const MeasuredCeilings& c, std::ostream& out) {
  const MachineInfo& m = c.machine();
  const GpuSpec& g = c.datasheet();
  const bool sheet = c.has_datasheet();
  out << absl::StrFormat(
      "Ceilings measured on %s (%d SMs, %.1f GB, L2 %.0f MiB, CC %s; driver %s, CUDA %s, "
      "cuBLASLt %s)\n",
      m.gpu_name(), m.sm_count(), m.memory_gbytes(), m.l2_mbytes(), m.compute_capability(),
      m.driver_version().empty() ? "?" : m.driver_version(), m.cuda_runtime_version(),
      m.cublas_version());
  out << (sheet ? absl::StrCat("Datasheet: ", g.display_name(), " (", g.id(), ")\n")
                : std::string("Datasheet: none for this GPU (no percentages)\n"));
  Line(out, "ceiling", "measured", "datasheet", "%", "how");
  const double bw = sheet ? g.mem_bandwidth_gbps() : 0;
  const std::string buffers = absl::StrFormat("%.2f GB buffers", c.buffer_gbytes());
  if (c.has_read_gbps()) {
    Row(out, "DRAM read (own kernel)", c.read_gbps(), "GB/s", bw, buffers);
  }
  if (c.has_read_sustained_gbps()) {
    Row(out, "DRAM read, sustained", c.read_sustained_gbps(), "GB/s", bw,
        "held for seconds; runs divide by it");
  }
  if (c.has_write_gbps()) {
    Row(out, "DRAM write (own kernel)", c.write_gbps(), "GB/s", bw, buffers);
  }
  if (c.has_copy_gbps()) {
    Row(out, "DRAM copy (own kernel, r+w)", c.copy_gbps(), "GB/s", bw, buffers);
  }
  if (c.has_memcpy_d2d_gbps()) {
    Row(out, "cudaMemcpyAsync D2D (r+w)", c.memcpy_d2d_gbps(), "GB/s", bw, buffers);
  }
  if (c.has_bf16_tflops()) {
    Row(out, "bf16 GEMM (cuBLASLt, autotuned)", c.bf16_tflops(), "TFLOP/s",
        sheet ? g.bf16_tflops() : 0, c.bf16_best_shape());
  }
  if (c.has_bf16_sustained_tflops()) {
    Row(out, "bf16 GEMM, sustained", c.bf16_sustained_tflops(), "TFLOP/s",
        sheet ? g.bf16_tflops() : 0,
        absl::StrCat(c.bf16_sustained_shape(), ", held for seconds; runs divide by it"));
  }
  if (c.has_fp8_tflops()) {
    Row(out, "fp8 e4m3 GEMM (cuBLASLt, fast acc)", c.fp8_tflops(), "TFLOP/s",
        sheet ? g.fp8_tflops() : 0, c.fp8_best_shape());
  }
  if (c.has_fp8_sustained_tflops()) {
    Row(out, "fp8 e4m3 GEMM, sustained", c.fp8_sustained_tflops(), "TFLOP/s",
        sheet ? g.fp8_tflops() : 0,
        absl::StrCat(c.fp8_sustained_shape(), ", held for seconds; runs divide by it"));
  }
  if (c.has_fp8_precise_accum_tflops()) {
    Row(out, "fp8 e4m3 GEMM (precise accum)", c.fp8_precise_accum_tflops(), "TFLOP/s",
        sheet ? g.fp8_tflops() : 0, c.fp8_best_shape());
  }
  if (c.has_launch_latency_us()) {
    UsRow(out, "launch: host enqueue (eager)", c.launch_latency_us(),
          "host time per empty-kernel launch");
  }
  if (c.has_empty_kernel_gpu_us()) {
    UsRow(out, "launch: GPU per back-to-back kernel", c.empty_kernel_gpu_us(),
          "eager launches queued ahead, GPU time per kernel");
  }
  if (c.has_launch_sync_us()) {
    UsRow(out, "launch + synchronize", c.launch_sync_us(),
          "one empty kernel, launch to stream sync return");
  }
  if (c.has_graph_node_us()) {
    UsRow(out, "CUDA graph: per kernel node", c.graph_node_us(), "GPU time per empty-kernel node");
  }
  if (c.has_h2d_gbps()) Row(out, "host to device (pinned)", c.h2d_gbps(), "GB/s", 0, "");
  if (c.has_d2h_gbps()) Row(out, "device to host (pinned)", c.d2h_gbps(), "GB/s", 0, "");

  if (c.gemms_size() > 0) {
    out << absl::StrFormat("\n%-14s %6s %6s %6s %10s %9s  %s\n", "GEMM sweep", "m", "n", "k",
                           "ms p50", "TFLOP/s", "algorithm");
    for (const MeasuredCeilings::GemmPoint& p : c.gemms()) {
      out << absl::StrFormat("%-14s %6d %6d %6d %10.3f %9.1f  %s\n", p.dtype(), p.m(), p.n(), p.k(),
                             p.ms_p50(), p.tflops(), p.algo());
    }
  }
  for (const std::string& note : c.notes()) out << "note: " << note << "\n";
}

}  // namespace truthput
