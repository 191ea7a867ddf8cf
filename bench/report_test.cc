#include "bench/report.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/prediction.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "workloads/gpu_datasheet.h"

namespace truthput {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

RunResult Predicted() {
  BenchFlagValues f;
  f.model = "70b";
  f.batch = "1,2";
  f.context = 2048;
  f.gpu = "h100-sxm";
  f.predict = true;
  return *Predict(*MakeBenchRequest("bench_decode", Phase::kDecode, f), *FindGpu("h100-sxm"));
}

TEST(Report, CsvHasThePublishedColumns) {
  const std::string csv = FormatCsv(Predicted());
  std::vector<std::string> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[0], StartsWith("batch,context,model_gbytes,model_gflops,bound,bound_ms,"
                                   "bound_tokens_per_s,intensity"));
  EXPECT_THAT(lines[0], ::testing::Not(HasSubstr("step_ms_p50")));  // nothing measured
  EXPECT_THAT(lines[1], StartsWith("1,2048,"));
}

// A CSV read without its JSON still says what the run was: its TP degree, and its notes (run
// notes, then the point's own) on every row.
TEST(Report, CsvRowsEndWithTheTpDegreeAndTheNotes) {
  RunResult r = Predicted();
  r.mutable_config()->set_tp(8);
  r.mutable_config()->add_notes("incomplete: stopped at batch 2, \"why\"");
  r.mutable_points(1)->add_notes("power: read in 2 of 3 samples");
  const std::string csv = FormatCsv(r);
  std::vector<std::string> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[0], ::testing::EndsWith(",tp_needed,tp,notes"));
  EXPECT_THAT(lines[1], ::testing::EndsWith(",8,\"incomplete: stopped at batch 2, \"\"why\"\"\""));
  EXPECT_THAT(lines[2], ::testing::EndsWith(",8,\"incomplete: stopped at batch 2, \"\"why\"\"; "
                                            "power: read in 2 of 3 samples\""));
  r.mutable_config()->clear_notes();
  r.mutable_config()->set_tp(1);
  lines = absl::StrSplit(FormatCsv(r), '\n', absl::SkipEmpty());
  EXPECT_THAT(lines[1], ::testing::EndsWith(",1,"));
}

TEST(Report, MeasuredColumnsAppearForGpuRunsAndUnsetOnesStayEmpty) {
  RunResult r = Predicted();
  r.mutable_config()->set_predict_only(false);
  BatchPoint* p = r.mutable_points(0);
  p->set_step_ms_p50(50);
  p->set_tokens_per_s(20);
  r.mutable_points(1)->set_skipped(true);
  r.mutable_points(1)->set_skip_reason("does not fit, really");
  const std::string csv = FormatCsv(r);
  std::vector<std::string> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  EXPECT_THAT(lines[0], HasSubstr(",step_ms_p50,step_ms_p99,tokens_per_s,achieved_gbps,mbu,"
                                  "achieved_tflops,mfu,roofline_eff,usd_per_mtok"));
  EXPECT_THAT(lines[1], HasSubstr(",50.0000,,20.000,"));
  EXPECT_THAT(lines[2], HasSubstr("true,\"does not fit, really\""));
}

// Splits one CSV row, quoted cells ("a, ""b""") included.
std::vector<std::string> CsvCells(const std::string& row) {
  std::vector<std::string> cells(1);
  bool quoted = false;
  for (size_t i = 0; i < row.size(); ++i) {
    const char c = row[i];
    if (quoted && c == '"' && i + 1 < row.size() && row[i + 1] == '"') {
      cells.back() += '"';
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      cells.emplace_back();
    } else {
      cells.back() += c;
    }
  }
  return cells;
}

// Every CSV column named after a BatchPoint field holds that field: each gets a value of its own
// (the column's index), so two columns swapped or one written from another field fail.
TEST(Report, EveryCsvColumnHoldsTheFieldItIsNamedAfter) {
  RunResult r = Predicted();
  r.mutable_config()->set_predict_only(false);
  r.mutable_config()->set_calibration("measured.json");
  r.mutable_points()->DeleteSubrange(1, 1);
  BatchPoint& p = *r.mutable_points(0);
  const std::vector<std::string> header =
      CsvCells(std::vector<std::string>(absl::StrSplit(FormatCsv(r), '\n'))[0]);
  const google::protobuf::Reflection* refl = p.GetReflection();
  std::map<std::string, std::string> want;  // column -> the cell it must hold
  for (size_t i = 0; i < header.size(); ++i) {
    const google::protobuf::FieldDescriptor* f =
        p.GetDescriptor()->FindFieldByName(header[i]);
    if (f == nullptr || f->is_repeated()) continue;
    const int v = static_cast<int>(i) + 1;
    using F = google::protobuf::FieldDescriptor;
    switch (f->cpp_type()) {
      case F::CPPTYPE_DOUBLE: refl->SetDouble(&p, f, v); break;  // whole: any decimals print it
      case F::CPPTYPE_INT64: refl->SetInt64(&p, f, v); break;
      case F::CPPTYPE_UINT64: refl->SetUInt64(&p, f, v); break;
      case F::CPPTYPE_INT32: refl->SetInt32(&p, f, v); break;
      case F::CPPTYPE_UINT32: refl->SetUInt32(&p, f, v); break;
      case F::CPPTYPE_BOOL: refl->SetBool(&p, f, i % 2 == 0); break;
      case F::CPPTYPE_STRING: refl->SetString(&p, f, absl::StrCat("s", v)); break;
      default: continue;
    }
    want[header[i]] = f->cpp_type() == F::CPPTYPE_BOOL     ? (i % 2 == 0 ? "true" : "false")
                      : f->cpp_type() == F::CPPTYPE_STRING ? absl::StrCat("s", v)
                                                           : absl::StrCat(v);
  }
  ASSERT_GE(want.size(), 30u);  // the predicted, calibrated and measured columns
  p.set_skipped(false);         // a skipped point leaves its throttle cell empty
  want["skipped"] = "false";
  std::vector<std::string> lines = absl::StrSplit(FormatCsv(r), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u);
  const std::vector<std::string> row = CsvCells(lines[1]);
  ASSERT_EQ(row.size(), header.size());
  for (size_t i = 0; i < header.size(); ++i) {
    auto it = want.find(header[i]);
    if (it == want.end()) continue;
    double got = 0, expected = 0;
    if (absl::SimpleAtod(row[i], &got) && absl::SimpleAtod(it->second, &expected)) {
      EXPECT_DOUBLE_EQ(got, expected) << header[i];  // however many decimals it is printed with
    } else {
      EXPECT_EQ(row[i], it->second) << header[i];
    }
  }
}

// The console table's header and the row of its one point, as column -> cell (the "|" that
// parts nvidia-smi's and the counters' view from the timings dropped).
std::map<std::string, std::string> TableCells(const RunResult& r) {
  std::ostringstream out;
  PrintTable(r, out);
  std::vector<std::string> lines = absl::StrSplit(out.str(), '\n');
  auto head = std::find_if(lines.begin(), lines.end(),
                           [](const std::string& l) { return absl::StartsWith(l, " batch"); });
  std::map<std::string, std::string> cells;
  if (head == lines.end() || head + 1 == lines.end()) return cells;
  std::vector<std::string> names = absl::StrSplit(*head, ' ', absl::SkipEmpty());
  std::vector<std::string> values = absl::StrSplit(*(head + 1), ' ', absl::SkipEmpty());
  std::erase(names, "|");
  std::erase(values, "|");
  EXPECT_EQ(names.size(), values.size()) << *head << "\n" << *(head + 1);
  for (size_t i = 0; i < std::min(names.size(), values.size()); ++i) cells[names[i]] = values[i];
  return cells;
}

// Each column of the console table holds the field its legend names: every field gets a value
// of its own, so two columns swapped or one printed from another field fail.
void ExpectTableColumnsHoldTheirFields(RunResult r,
                                       const std::map<std::string, std::string>& field_of) {
  BatchPoint& p = *r.mutable_points(0);
  const google::protobuf::Reflection* refl = p.GetReflection();
  std::map<std::string, double> want;
  int v = 0;
  for (const auto& [column, field] : field_of) {
    const google::protobuf::FieldDescriptor* f = p.GetDescriptor()->FindFieldByName(field);
    ASSERT_NE(f, nullptr) << field;
    ++v;
    using F = google::protobuf::FieldDescriptor;
    switch (f->cpp_type()) {
      case F::CPPTYPE_DOUBLE: refl->SetDouble(&p, f, v); break;  // whole: any decimals print it
      case F::CPPTYPE_UINT32: refl->SetUInt32(&p, f, v); break;
      case F::CPPTYPE_STRING: refl->SetString(&p, f, absl::StrCat("s", v)); break;
      default: FAIL() << field << " is not a number or a string";
    }
    want[column] = v;
  }
  const std::map<std::string, std::string> cells = TableCells(r);
  for (const auto& [column, value] : want) {
    auto it = cells.find(column);
    ASSERT_NE(it, cells.end()) << "no column " << column;
    double got = 0;
    if (!absl::SimpleAtod(it->second, &got)) {
      EXPECT_EQ(it->second, absl::StrCat("s", value)) << column;
    } else {
      EXPECT_DOUBLE_EQ(got, value) << column;
    }
  }
}

TEST(Report, MeasuredTableColumnsHoldTheirFields) {
  RunResult r = Predicted();
  r.mutable_config()->set_predict_only(false);
  r.mutable_points()->DeleteSubrange(1, 1);
  ExpectTableColumnsHoldTheirFields(
      r, {{"smi%", "smi_util_pct"}, {"SMact%", "sm_active_pct"}, {"tens%", "tensor_active_pct"},
          {"MBU", "mbu"}, {"MFU", "mfu"}, {"tok/s", "tokens_per_s"}, {"p50_ms", "step_ms_p50"},
          {"p99_ms", "step_ms_p99"}, {"bound_t/s", "bound_tokens_per_s"},
          {"eff", "roofline_eff"}, {"bound", "bound"}, {"DRAM/mdl", "dram_bytes_over_model"},
          {"HW_TF", "hw_tflops"}, {"W", "power_w"}, {"J/tok", "joules_per_token"},
          {"$/Mtok", "usd_per_mtok"}, {"MBUm", "mbu_measured"}, {"MFUm", "mfu_measured"}});
}

TEST(Report, PredictedTableColumnsHoldTheirFields) {
  RunResult r = Predicted();
  r.mutable_config()->set_calibration("measured.json");
  r.mutable_points()->DeleteSubrange(1, 1);
  ExpectTableColumnsHoldTheirFields(
      r, {{"model_GB", "model_gbytes"}, {"GFLOP", "model_gflops"}, {"FLOP/B", "intensity"},
          {"bound", "bound"}, {"bound_ms", "bound_ms"}, {"bound_t/s", "bound_tokens_per_s"},
          {"need_GB", "footprint_gbytes"}, {"tp", "tp_needed"},
          {"cal_batch", "calibration_batch"}, {"cal_eff", "calibration_eff"},
          {"proj_t/s", "projected_tokens_per_s"}});
}

// An op's bytes and FLOPs are per step: every execution (80 layers) of the per-execution cost.
TEST(Report, OpBytesAndFlopsCountEveryExecution) {
  const RunResult r = Predicted();
  const BatchPoint& b1 = r.points(0);
  auto down = std::find_if(b1.ops().begin(), b1.ops().end(),
                           [](const OpPoint& o) { return o.name() == "down_proj"; });
  ASSERT_NE(down, b1.ops().end());
  EXPECT_EQ(down->count(), 80u);
  // 8192 x 28672 bf16 weights, 469.8 MB per layer; 2 FLOP per weight for the one token.
  EXPECT_NEAR(down->gbytes(), 80 * 8192.0 * 28672 * 2 / 1e9, 0.01);
  EXPECT_NEAR(down->gflops(), 80 * 2 * 8192.0 * 28672 / 1e9, 1e-6);
}

TEST(Report, TruthColumnsReadNaWithTheReasonOnce) {
  RunResult r = Predicted();
  r.mutable_config()->set_predict_only(false);
  for (BatchPoint& p : *r.mutable_points()) {
    p.set_step_ms_p50(50);
    p.set_mbu(0.8);
    p.set_smi_util_pct(100);
    p.set_dram_read_gbytes(139.5);
  }
  r.add_unavailable("sm_active_pct, tensor_active_pct: no permission to read GPU counters");
  const std::string csv = FormatCsv(r);
  std::vector<std::string> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  EXPECT_THAT(lines[0], HasSubstr("smi_util_pct,smi_mem_util_pct,gpm_sm_util_pct,sm_active_pct,"
                                  "tensor_active_pct,dram_read_gbytes,dram_write_gbytes,dram_gbps,"
                                  "dram_bytes_over_model,hw_tflops,sm_clock_mhz,power_w,"
                                  "joules_per_token"));
  EXPECT_THAT(lines[0], HasSubstr(",throttle"));
  EXPECT_THAT(lines[1], HasSubstr(",100.0,n/a,n/a,n/a,n/a,139.500,n/a,"));
  std::ostringstream table;
  PrintTable(r, table);
  // The contrast leads: nvidia-smi beside the counters and the model's own efficiencies.
  EXPECT_THAT(table.str(), HasSubstr("smi%"));
  EXPECT_THAT(table.str(), HasSubstr("100.0    n/a"));
  const std::string text = table.str();
  const std::string reason = "n/a: sm_active_pct, tensor_active_pct: no permission";
  EXPECT_EQ(text.find(reason), text.rfind(reason));  // once
  EXPECT_NE(text.find(reason), std::string::npos);
}

TEST(Report, TableShowsEveryPoint) {
  std::ostringstream out;
  PrintTable(Predicted(), out);
  EXPECT_THAT(out.str(), HasSubstr("prediction"));
  EXPECT_THAT(out.str(), HasSubstr("Llama-3.1-70B"));
  EXPECT_THAT(out.str(), HasSubstr("3350 GB/s"));
  // Context 2048 has no ridge; the line says why, from the step's own bytes.
  EXPECT_THAT(out.str(), HasSubstr("Roofline ridge: none: decode of Llama-3.1-70B at context 2048 "
                                   "stays memory-bound up to batch 1048576 (there the KV cache is "
                                   "93% of the step's bytes"));
}

// A cell that holds a line break is quoted, or the row would end inside it.
TEST(Report, CsvQuotesACellThatHoldsALineBreak) {
  RunResult r = Predicted();
  r.mutable_config()->set_predict_only(false);
  r.mutable_points(0)->set_skipped(true);
  r.mutable_points(0)->set_skip_reason("out of memory\nat batch 1");
  EXPECT_THAT(FormatCsv(r), HasSubstr(",\"out of memory\nat batch 1\","));
}

// The measured and calibrated columns of an unset field are empty, the truth columns and the
// throttle "n/a" (could not be read); setting one field fills its own column and no other, so a
// column that asks another field whether it is set fails.
TEST(Report, EachCsvColumnIsEmptyOrNaExactlyWhenItsOwnFieldIsUnset) {
  RunResult r = Predicted();
  r.mutable_config()->set_predict_only(false);
  r.mutable_config()->set_calibration("measured.json");
  r.mutable_points()->DeleteSubrange(1, 1);
  auto row = [&r] {
    const std::vector<std::string> lines = absl::StrSplit(FormatCsv(r), '\n', absl::SkipEmpty());
    return CsvCells(lines[1]);
  };
  const std::vector<std::string> header =
      CsvCells(std::vector<std::string>(absl::StrSplit(FormatCsv(r), '\n'))[0]);
  // The truth columns: what NVML and CUPTI could not say reads "n/a".
  const std::set<std::string> truth = {
      "smi_util_pct", "smi_mem_util_pct", "gpm_sm_util_pct", "sm_active_pct",
      "tensor_active_pct", "dram_read_gbytes", "dram_write_gbytes", "dram_gbps",
      "dram_bytes_over_model", "hw_tflops", "sm_clock_mhz", "power_w", "joules_per_token",
      "tensor_flops_over_model", "gpm_tensor_util_pct", "gpm_dram_bw_util_pct",
      "occupancy_pct", "l2_hit_pct", "gpu_temp_c"};
  const std::vector<std::string> unset = row();
  ASSERT_EQ(unset.size(), header.size());
  std::map<std::string, std::string> empty;  // optional column -> its cell when unset
  BatchPoint& p = *r.mutable_points(0);
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i] == "throttle") EXPECT_EQ(unset[i], "n/a");
    const google::protobuf::FieldDescriptor* f = p.GetDescriptor()->FindFieldByName(header[i]);
    if (f == nullptr || !f->has_presence()) continue;
    if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    empty[header[i]] = truth.count(header[i]) ? "n/a" : "";
    EXPECT_EQ(unset[i], empty[header[i]]) << header[i];
  }
  ASSERT_EQ(empty.size(), 3 + 16 + truth.size());  // calibrated, measured and truth columns
  for (const auto& [column, _] : empty) {
    const google::protobuf::FieldDescriptor* f = p.GetDescriptor()->FindFieldByName(column);
    BatchPoint saved = p;
    if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_DOUBLE) {
      p.GetReflection()->SetDouble(&p, f, 1);
    } else {
      p.GetReflection()->SetUInt32(&p, f, 1);
    }
    const std::vector<std::string> cells = row();
    for (size_t i = 0; i < header.size(); ++i) {
      auto it = empty.find(header[i]);
      if (it == empty.end()) continue;
      if (header[i] == column) {
        EXPECT_NE(cells[i], it->second) << column << " set, its column still unset";
      } else {
        EXPECT_EQ(cells[i], it->second) << column << " set fills " << header[i];
      }
    }
    p = saved;
  }
}

// A skipped point was not measured at all: its truth and throttle cells are empty, not "n/a".
TEST(Report, SkippedPointsLeaveTheTruthColumnsEmpty) {
  RunResult r = Predicted();
  r.mutable_config()->set_predict_only(false);
  r.mutable_points()->DeleteSubrange(1, 1);
  r.mutable_points(0)->set_skipped(true);
  const std::vector<std::string> lines = absl::StrSplit(FormatCsv(r), '\n', absl::SkipEmpty());
  const std::vector<std::string> header = CsvCells(lines[0]);
  const std::vector<std::string> row = CsvCells(lines[1]);
  ASSERT_EQ(row.size(), header.size());
  const auto first = std::find(header.begin(), header.end(), "smi_util_pct");
  const auto throttle = std::find(header.begin(), header.end(), "throttle");
  ASSERT_LT(first, throttle);
  for (auto it = first; it <= throttle; ++it) {
    EXPECT_EQ(row[it - header.begin()], "") << *it;
  }
}

RunResult PredictedPrefill(const char* model = "70b", const char* seq = "512") {
  BenchFlagValues f;
  f.model = model;
  f.batch = "1";
  f.seq = seq;
  f.gpu = "h100-sxm";
  f.predict = true;
  return *Predict(*MakeBenchRequest("bench_prefill", Phase::kPrefill, f), *FindGpu("h100-sxm"));
}

TEST(Report, PrefillCsvHasTheSeqLenAfterTheContext) {
  const std::vector<std::string> lines =
      absl::StrSplit(FormatCsv(PredictedPrefill()), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], StartsWith("batch,context,seq_len,model_gbytes,"));
  EXPECT_THAT(lines[1], StartsWith("1,0,512,"));  // prefill starts from an empty KV cache
}

// A prefill step's time is the time to the first token; its row gives the prompt length, and
// there is no decode ridge to speak of.
TEST(Report, PrefillTableShowsTheSeqLenAndTtft) {
  RunResult r = PredictedPrefill();
  r.mutable_config()->set_predict_only(false);
  r.mutable_points(0)->set_step_ms_p50(123);
  const std::map<std::string, std::string> cells = TableCells(r);
  EXPECT_EQ(cells.count("p50_ms"), 0u);
  ASSERT_EQ(cells.count("TTFT_ms"), 1u);
  EXPECT_EQ(cells.at("TTFT_ms"), "123.000");
  ASSERT_EQ(cells.count("seq"), 1u);
  EXPECT_EQ(cells.at("seq"), "512");
  std::ostringstream out;
  PrintTable(r, out);
  EXPECT_THAT(out.str(), ::testing::Not(HasSubstr("Roofline ridge")));
}

// Attention's share of the time beside its share of the FLOPs, in percent, on prefill rows only.
TEST(Report, PrefillRowsSayAttentionsShareOfTimeAndOfFlops) {
  RunResult r = PredictedPrefill();
  r.mutable_config()->set_predict_only(false);
  r.mutable_points(0)->set_attention_time_share(0.3);
  r.mutable_points(0)->set_attention_flops_share(0.1);
  std::ostringstream out;
  PrintTable(r, out);
  EXPECT_THAT(out.str(), HasSubstr("  attention: 30% of time, 10% of FLOPs\n"));

  RunResult decode = Predicted();
  decode.mutable_config()->set_predict_only(false);
  decode.mutable_points(0)->set_attention_time_share(0.3);
  decode.mutable_points(0)->set_attention_flops_share(0.1);
  std::ostringstream decode_out;
  PrintTable(decode, decode_out);
  EXPECT_THAT(decode_out.str(), ::testing::Not(HasSubstr("attention:")));
}

// Per op: its share of the step's p50 in percent and the GB/s it reached, then the shares' sum.
TEST(Report, OpBreakdownGivesEachOpsShareInPercentAndTheirSum) {
  RunResult r = Predicted();
  r.mutable_config()->set_predict_only(false);
  r.mutable_points()->DeleteSubrange(1, 1);
  BatchPoint& p = *r.mutable_points(0);
  ASSERT_GE(p.ops_size(), 3);
  std::ostringstream untimed;
  PrintTable(r, untimed);
  EXPECT_THAT(untimed.str(), ::testing::Not(HasSubstr("Per op")));  // ops not timed alone

  for (OpPoint& o : *p.mutable_ops()) {
    o.set_measured_ms(1);
    o.set_share(0);
    o.set_achieved_gbps(0);
  }
  p.mutable_ops(0)->set_share(0.25);
  p.mutable_ops(0)->set_achieved_gbps(1500);
  p.mutable_ops(1)->set_share(0.5);
  std::ostringstream out;
  PrintTable(r, out);
  const std::vector<std::string> lines = absl::StrSplit(out.str(), '\n');
  auto line_of = [&lines](const std::string& name) {
    for (const std::string& l : lines) {
      if (absl::StartsWith(l, name + " ")) return l;
    }
    return std::string("no line for ") + name;
  };
  EXPECT_THAT(line_of(p.ops(0).name()), ::testing::EndsWith("  25.0%   1500"));
  EXPECT_THAT(line_of(p.ops(1).name()), ::testing::EndsWith("  50.0%      0"));
  EXPECT_THAT(line_of("sum of ops"), HasSubstr("  75.0%"));  // 25% + 50% + 0% for the rest
}

// A prefill sweep's per-op columns name batch and prompt: 1/512 and 1/2048 are different steps.
TEST(Report, PrefillOpBreakdownNamesEachColumnsBatchAndPrompt) {
  RunResult r = PredictedPrefill("8b", "512,2048");
  r.mutable_config()->set_predict_only(false);
  ASSERT_EQ(r.points_size(), 2);
  for (BatchPoint& p : *r.mutable_points()) {
    for (OpPoint& o : *p.mutable_ops()) o.set_measured_ms(1);
  }
  std::ostringstream out;
  PrintTable(r, out);
  EXPECT_THAT(out.str(), HasSubstr(absl::StrFormat("%-16s %13s %13s\n", "op \\ batch/seq",
                                                   "1/512", "1/2048")));
}

// The measured knee over the predicted ridge: 96 / 64 = 1.5.
TEST(Report, MeasuredKneeIsGivenAsAMultipleOfTheRidge) {
  RunResult r = Predicted();
  r.set_predicted_ridge_batch(64);
  r.set_measured_knee_batch(96);
  std::ostringstream out;
  PrintTable(r, out);
  EXPECT_THAT(out.str(), HasSubstr("Roofline ridge: decode turns compute-bound at batch 64; "
                                   "measured knee at batch 96 (1.50x the ridge)\n"));
}

// MFU of fp8 weights is against the fp8 peak where the GPU has fp8 tensor cores, else against
// its bf16 peak, and the line says which.
TEST(Report, DatasheetLineNamesThePeakTheMfuIsTakenAgainst) {
  RunResult r = Predicted();
  r.mutable_datasheet()->set_bf16_tflops(312);
  r.mutable_datasheet()->set_fp8_tflops(624);
  auto datasheet_line = [&r] {
    std::ostringstream out;
    PrintTable(r, out);
    for (absl::string_view l : absl::StrSplit(out.str(), '\n')) {
      if (absl::StartsWith(l, "Datasheet ")) return std::string(l);
    }
    return std::string();
  };
  EXPECT_THAT(datasheet_line(), HasSubstr(": 312 TFLOP/s dense bf16, "));
  r.mutable_config()->mutable_model()->set_weight_dtype(FP8_E4M3);
  EXPECT_THAT(datasheet_line(), HasSubstr(": 624 TFLOP/s dense fp8, "));
  r.mutable_datasheet()->set_fp8_tflops(0);  // an A100
  EXPECT_THAT(datasheet_line(), HasSubstr(": 312 TFLOP/s dense bf16 (no fp8 tensor cores), "));
}

// A point that fits on no TP degree shows "-" (0 in CSV); the note under the table names the
// memory the fit is checked against.
TEST(Report, PredictedTableSaysWhatFitsAndAgainstWhichMemory) {
  RunResult r = Predicted();
  r.mutable_points()->DeleteSubrange(1, 1);
  r.mutable_points(0)->set_fits(false);
  r.mutable_points(0)->set_tp_needed(0);
  std::map<std::string, std::string> cells = TableCells(r);
  EXPECT_EQ(cells["fits"], "no");
  EXPECT_EQ(cells["tp"], "-");
  r.mutable_points(0)->set_fits(true);
  r.mutable_points(0)->set_tp_needed(1);
  cells = TableCells(r);
  EXPECT_EQ(cells["fits"], "yes");
  EXPECT_EQ(cells["tp"], "1");

  r.mutable_datasheet()->set_memory_gbytes(80);
  r.mutable_datasheet()->set_reported_memory_gbytes(85.017493504);
  std::ostringstream reported;
  PrintTable(r, reported);
  EXPECT_THAT(reported.str(), HasSubstr("which one fits 85.0 GB (what a card reported;"));
  r.mutable_datasheet()->clear_reported_memory_gbytes();
  std::ostringstream datasheet;
  PrintTable(r, datasheet);
  // 80 GiB = 80 x 2^30 bytes = 85.9e9.
  EXPECT_THAT(datasheet.str(), HasSubstr("which one fits 85.9 GB (the datasheet's 80 GiB;"));
}

TEST(Report, JsonRoundTrips) {
  RunResult r = Predicted();
  absl::StatusOr<std::string> json = FormatJson(r);
  ASSERT_TRUE(json.ok());
  EXPECT_THAT(*json, HasSubstr("\"bound_tokens_per_s\""));
  EXPECT_THAT(*json, ::testing::Not(HasSubstr("\"tokens_per_s\"")));  // unset optional
  absl::StatusOr<RunResult> back = ParseJson(*json);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->points_size(), 2);
  EXPECT_DOUBLE_EQ(back->points(1).model_gbytes(), r.points(1).model_gbytes());
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

TEST(Report, NeverOverwritesSilently) {
  const std::string path = testing::TempDir() + "/report_test.csv";
  std::remove(path.c_str());
  ASSERT_TRUE(WriteFileAtomically(path, "a", false).ok());
  absl::Status again = WriteFileAtomically(path, "b", false);
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists);
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(content, "a");
  // Replacing keeps the file's permissions: a private result stays private.
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  EXPECT_TRUE(WriteFileAtomically(path, "b", true).ok());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(ReadAll(path), "b");
  std::remove(path.c_str());
}

TEST(Report, ChecksAnOutputPathBeforeTheRun) {
  const std::string dir = testing::TempDir();
  const std::string fresh = dir + "/check_output_path.json";
  std::remove(fresh.c_str());
  EXPECT_TRUE(CheckOutputPath(fresh, false).ok());
  EXPECT_TRUE(CheckOutputPath("in_the_working_folder.json", false).ok());

  absl::Status st = CheckOutputPath(dir + "/no_such_folder/x.json", false);
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(st.message(), HasSubstr("no_such_folder does not exist"));
  // A file where the folder should be is said to be one.
  const std::string file = dir + "/check_output_path_file";
  std::ofstream(file) << "x";
  st = CheckOutputPath(file + "/x.json", false);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("check_output_path_file is not a folder"));
  std::remove(file.c_str());

  st = CheckOutputPath(dir, true);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("is a folder"));

  ASSERT_TRUE(WriteFileAtomically(fresh, "a", false).ok());
  EXPECT_EQ(CheckOutputPath(fresh, false).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(CheckOutputPath(fresh, true).ok());
  std::remove(fresh.c_str());
  // (A folder without write permission is not tested: the tests may run as root, who may write.)
  // /proc refuses a new file to root too, though its bits let root write: the check makes one.
  // (Another user is stopped by the bits first, with another message.)
  st = CheckOutputPath("/proc/version", true);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(st.message(), HasSubstr("/proc/version: cannot "));
  if (geteuid() == 0) {
    EXPECT_THAT(st.message(), HasSubstr("cannot create a file in folder /proc: "));
  }
  // The probe leaves nothing behind.
  ASSERT_TRUE(CheckOutputPath(fresh, false).ok());
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    EXPECT_THAT(e.path().filename().string(), Not(HasSubstr("check_output_path.json.")));
  }
}

TEST(Report, WritingTouchesNothingButTheTarget) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(testing::TempDir()) / "write_target_test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  // A file of the user's named like a temporary file survives.
  const std::string out = (dir / "run.csv").string();
  { std::ofstream(out + ".tmp") << "precious"; }
  ASSERT_TRUE(WriteFileAtomically(out, "new", false).ok());
  EXPECT_EQ(ReadAll(out), "new");
  EXPECT_EQ(ReadAll(out + ".tmp"), "precious");
  // Nothing else is left beside it.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 2);

  // A symlink stays a link; what it points to gets the content.
  const fs::path real = dir / "real.json", link = dir / "link.json";
  { std::ofstream(real) << "old"; }
  fs::create_symlink(real, link);
  EXPECT_EQ(CheckOutputPath(link.string(), false).code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(WriteFileAtomically(link.string(), "replaced", true).ok());
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(ReadAll(real.string()), "replaced");
  // A link to a file not there yet creates that file.
  const fs::path dangling = dir / "dangling.json";
  fs::create_symlink("later.json", dangling);
  ASSERT_TRUE(WriteFileAtomically(dangling.string(), "new", false).ok());
  EXPECT_TRUE(fs::is_symlink(dangling));
  EXPECT_EQ(ReadAll((dir / "later.json").string()), "new");

  // A pipe is written into, not replaced by a file.
  const fs::path fifo = dir / "pipe";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::string got;
  std::thread reader([&] { got = ReadAll(fifo.string()); });
  // (No --overwrite needed: nothing is replaced.)
  EXPECT_TRUE(WriteFileAtomically(fifo.string(), "through", false).ok());
  reader.join();
  EXPECT_EQ(got, "through");
  EXPECT_TRUE(fs::is_fifo(fifo));
  fs::remove_all(dir);
}

TEST(Report, LoadResultJsonErrorsAreOneLine) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(testing::TempDir()) / "load_json_test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto error = [](const fs::path& p) {
    absl::StatusOr<RunResult> r = LoadResultJson(p.string());
    EXPECT_FALSE(r.ok()) << p;
    const std::string message(r.status().message());
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    return message;
  };
  EXPECT_THAT(error(dir), HasSubstr("is a folder"));
  { std::ofstream(dir / "empty.json"); }
  EXPECT_THAT(error(dir / "empty.json"), HasSubstr("is empty"));
  { std::ofstream(dir / "text.json") << "not json\n\nat all\n"; }
  EXPECT_THAT(error(dir / "text.json"), HasSubstr("not the JSON of a truthput run"));
  { std::ofstream(dir / "ceilings.json") << R"({"fp8_precise_accum_tflops": 1})"; }
  EXPECT_THAT(error(dir / "ceilings.json"), HasSubstr("not the JSON of a truthput run"));
  { std::ofstream(dir / "none.json") << "{}"; }
  EXPECT_THAT(error(dir / "none.json"), HasSubstr("no points"));
  // Numbers no run writes, in a point or in one of its ops.
  { std::ofstream(dir / "nan.json") << R"({"points": [{"batch": 1, "bound_ms": "NaN"}]})"; }
  EXPECT_THAT(error(dir / "nan.json"), HasSubstr("point batch 1: bound_ms = nan: not a number"));
  { std::ofstream(dir / "inf.json") << R"({"points": [{"batch": 2, "tokens_per_s": "-Infinity"}]})"; }
  EXPECT_THAT(error(dir / "inf.json"), HasSubstr("point batch 2: tokens_per_s = -inf"));
  { std::ofstream(dir / "neg.json") << R"({"points": [{"batch": 4, "mbu": -1.5}]})"; }
  EXPECT_THAT(error(dir / "neg.json"), HasSubstr("point batch 4: mbu = -1.5"));
  {
    std::ofstream(dir / "op.json")
        << R"({"points": [{"batch": 8, "mbu": 0.5, "ops": [{"name": "o_proj", "share": -0.1}]}]})";
  }
  EXPECT_THAT(error(dir / "op.json"), HasSubstr("point batch 8: op o_proj share = -0.1"));
  // A step sample among good ones, by its place in the list.
  {
    std::ofstream(dir / "sample.json")
        << R"({"points": [{"batch": 16, "step_ms_samples": [36.1, "NaN", 36.2]}]})";
  }
  EXPECT_THAT(error(dir / "sample.json"), HasSubstr("point batch 16: step_ms_samples[1] = nan"));
  // Zero and unset are fine, and samples that are numbers are read in their order.
  { std::ofstream(dir / "zero.json") << R"({"points": [{"batch": 1, "mbu": 0}]})"; }
  EXPECT_TRUE(LoadResultJson((dir / "zero.json").string()).ok());
  {
    std::ofstream(dir / "samples.json")
        << R"({"points": [{"batch": 1, "step_ms_samples": [32.3541, 0, 32.1]}]})";
  }
  absl::StatusOr<RunResult> samples = LoadResultJson((dir / "samples.json").string());
  ASSERT_TRUE(samples.ok()) << samples.status();
  EXPECT_THAT(samples->points(0).step_ms_samples(), ::testing::ElementsAre(32.3541, 0, 32.1));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace truthput
