#include "bench/ceilings_io.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace truthput {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kH100[] = "NVIDIA H100 80GB HBM3";

// A record as bench_ceilings writes it on the lent H100 (the design notes' reference figures).
MeasuredCeilings H100Ceilings() {
  MeasuredCeilings c;
  c.mutable_machine()->set_gpu_name(kH100);
  c.mutable_machine()->set_sm_count(132);
  c.mutable_datasheet()->set_id("h100-sxm");
  c.mutable_datasheet()->set_mem_bandwidth_gbps(3350);
  c.mutable_datasheet()->set_bf16_tflops(989.4);
  c.mutable_datasheet()->set_fp8_tflops(1978.9);
  c.set_read_gbps(3130);
  c.set_write_gbps(3000);
  c.set_copy_gbps(2950);
  c.set_memcpy_d2d_gbps(3020);
  c.set_bf16_tflops(762);
  c.set_bf16_best_shape("m=8192 n=8192 k=8192");
  c.set_fp8_tflops(1300);
  c.set_fp8_best_shape("m=8192 n=57344 k=8192");
  c.set_launch_latency_us(2.1);
  c.set_graph_node_us(0.6);
  c.set_h2d_gbps(55);
  c.set_d2h_gbps(54);
  c.set_started_at("2025-01-01T00:00:00Z");
  c.set_truthput_version("0.1.0");
  c.set_buffer_gbytes(4.29);
  MeasuredCeilings::GemmPoint* g = c.add_gemms();
  g->set_dtype("bf16");
  g->set_m(8192);
  g->set_n(8192);
  g->set_k(8192);
  g->set_ms_p50(1.443);
  g->set_tflops(762);
  return c;
}

// Writes `text` to a fresh file in the test's temporary directory and returns its path.
std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::filesystem::path path = std::filesystem::path(testing::TempDir()) / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  return path.string();
}

TEST(CeilingsIo, RoundTripsThroughAFile) {
  const MeasuredCeilings c = H100Ceilings();
  absl::StatusOr<std::string> json = FormatCeilingsJson(c);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_THAT(*json, HasSubstr("\"read_gbps\": 3130"));
  const std::string path = WriteTemp("ceilings_roundtrip.json", *json);
  absl::StatusOr<MeasuredCeilings> loaded = LoadCeilings(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(c, *loaded))
      << loaded->DebugString();
  // Unset optional rates stay unset across the round trip ("not measured" is never 0).
  EXPECT_FALSE(loaded->has_fp8_precise_accum_tflops());
}

TEST(CeilingsIo, LoadsForTheSameGpu) {
  const std::string path = WriteTemp("ceilings_same.json", *FormatCeilingsJson(H100Ceilings()));
  absl::StatusOr<MeasuredCeilings> c = LoadCeilings(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(CheckCeilingsGpu(*c, kH100).ok());
  EXPECT_DOUBLE_EQ(c->read_gbps(), 3130);
}

TEST(CeilingsIo, RefusesAnotherGpu) {
  const std::string path = WriteTemp("ceilings_other.json", *FormatCeilingsJson(H100Ceilings()));
  absl::StatusOr<MeasuredCeilings> c = LoadCeilings(path);
  ASSERT_TRUE(c.ok()) << c.status();
  const absl::Status st = CheckCeilingsGpu(*c, "NVIDIA H200");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr(kH100));
  EXPECT_THAT(st.message(), HasSubstr("NVIDIA H200"));
  EXPECT_THAT(st.message(), HasSubstr("bench_ceilings"));
  // A name that merely starts alike is another GPU too.
  EXPECT_FALSE(CheckCeilingsGpu(H100Ceilings(), "NVIDIA H100 PCIe").ok());
}

TEST(CeilingsIo, NotesCeilingsFromAnotherCardOfTheModel) {
  MeasuredCeilings c = H100Ceilings();
  const std::string here = "GPU-224f00a3-acad-38f3-cdd8-6623f4eb43bd";
  c.mutable_machine()->set_gpu_uuid(here);
  EXPECT_EQ(CeilingsFromAnotherCardNote(c, here), "");
  const std::string note =
      CeilingsFromAnotherCardNote(c, "GPU-e0464ebc-05c7-33c7-e78d-2edc79d66fcb");
  EXPECT_THAT(note, HasSubstr("another card"));
  EXPECT_THAT(note, HasSubstr("GPU-224f00a3;"));
  EXPECT_THAT(note, HasSubstr("this run: GPU-e0464ebc)"));
  // A file without a UUID (written before it was recorded) cannot be told apart: no note.
  c.mutable_machine()->clear_gpu_uuid();
  EXPECT_EQ(CeilingsFromAnotherCardNote(c, here), "");
}

TEST(CeilingsIo, MissingFileIsNotFound) {
  absl::StatusOr<MeasuredCeilings> c = LoadCeilings(testing::TempDir() + "/no_such_ceilings.json");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
}

TEST(CeilingsIo, AFolderIsNamedAsOne) {
  absl::StatusOr<MeasuredCeilings> c = LoadCeilings(testing::TempDir());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("is a folder; name a ceilings .json"));
}

TEST(CeilingsIo, MalformedJsonIsInvalid) {
  const std::string path = WriteTemp("ceilings_bad.json", "{\"read_gbps\": ");
  absl::StatusOr<MeasuredCeilings> c = LoadCeilings(path);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr(path));
}

TEST(CeilingsIo, IgnoresUnknownFields) {
  std::string json = *FormatCeilingsJson(H100Ceilings());
  json.insert(json.find('{') + 1, "\"added_by_a_later_version\": 1,");
  absl::StatusOr<MeasuredCeilings> c = ParseCeilingsJson(json);
  EXPECT_TRUE(c.ok()) << c.status();
}

TEST(CeilingsIo, RequiresReadBandwidthAndBf16Rate) {
  MeasuredCeilings c = H100Ceilings();
  c.clear_read_gbps();
  EXPECT_THAT(ValidateCeilings(c).message(), HasSubstr("read_gbps"));
  c = H100Ceilings();
  c.clear_bf16_tflops();
  EXPECT_THAT(ValidateCeilings(c).message(), HasSubstr("bf16_tflops"));
  c = H100Ceilings();
  c.mutable_machine()->clear_gpu_name();
  EXPECT_EQ(ValidateCeilings(c).code(), absl::StatusCode::kInvalidArgument);
  // A RunResult file handed over by mistake: no rates, so it is refused.
  EXPECT_EQ(ParseCeilingsJson("{\"truthput_version\": \"0.1.0\", \"points\": []}").status().code(),
            absl::StatusCode::kInvalidArgument);
  // Text that is not JSON: one line, without protobuf's quote of the input below it.
  const absl::Status garbage = ParseCeilingsJson("garbage").status();
  EXPECT_EQ(garbage.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(garbage.message(), HasSubstr("not a ceilings JSON file"));
  EXPECT_THAT(garbage.message(), Not(HasSubstr("\n")));
}

TEST(CeilingsIo, RejectsNonPositiveOrNonFiniteRates) {
  for (double bad : {0.0, -1.0, std::numeric_limits<double>::quiet_NaN(),
                     std::numeric_limits<double>::infinity()}) {
    MeasuredCeilings c = H100Ceilings();
    c.set_h2d_gbps(bad);
    const absl::Status st = ValidateCeilings(c);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(st.message(), HasSubstr("h2d_gbps")) << bad;
  }
  MeasuredCeilings c = H100Ceilings();
  c.set_read_gbps(-3130);
  EXPECT_THAT(ValidateCeilings(c).message(), HasSubstr("read_gbps"));
  c = H100Ceilings();
  c.set_bf16_sustained_tflops(0);  // A denominator: 0 would make mfu_measured infinite.
  EXPECT_THAT(ValidateCeilings(c).message(), HasSubstr("bf16_sustained_tflops"));
  EXPECT_TRUE(ValidateCeilings(H100Ceilings()).ok());
}

BatchPoint MeasuredPoint(double achieved_gbps, double achieved_tflops) {
  BatchPoint p;
  p.set_batch(1);
  p.set_achieved_gbps(achieved_gbps);
  p.set_achieved_tflops(achieved_tflops);
  return p;
}

TEST(CeilingsIo, MeasuredMbuAndMfuForBf16) {
  BatchPoint p = MeasuredPoint(2840, 381);
  AddMeasuredAgainstCeilings(p, H100Ceilings(), BF16);
  ASSERT_TRUE(p.has_mbu_measured());
  ASSERT_TRUE(p.has_mfu_measured());
  EXPECT_DOUBLE_EQ(p.mbu_measured(), 2840.0 / 3130.0);
  EXPECT_DOUBLE_EQ(p.mfu_measured(), 381.0 / 762.0);
}

TEST(CeilingsIo, MeasuredMfuUsesTheFp8RateForFp8Weights) {
  BatchPoint p = MeasuredPoint(1000, 650);
  AddMeasuredAgainstCeilings(p, H100Ceilings(), FP8_E4M3);
  EXPECT_DOUBLE_EQ(p.mfu_measured(), 650.0 / 1300.0);
  EXPECT_DOUBLE_EQ(p.mbu_measured(), 1000.0 / 3130.0);
  // Without a measured fp8 rate (a GPU without fp8), bf16's is the ceiling, as with datasheets.
  MeasuredCeilings no_fp8 = H100Ceilings();
  no_fp8.clear_fp8_tflops();
  BatchPoint q = MeasuredPoint(1000, 650);
  AddMeasuredAgainstCeilings(q, no_fp8, FP8_E4M3);
  EXPECT_DOUBLE_EQ(q.mfu_measured(), 650.0 / 762.0);
  EXPECT_DOUBLE_EQ(MeasuredPeakTflops(H100Ceilings(), BF16), 762.0);
}

// A file with sustained rates (read, and each dtype's best GEMM shape held for seconds) is read
// by them: a sweep point's steps run back to back for seconds too. Files without them keep the
// burst rates (the two tests above).
TEST(CeilingsIo, RunsDivideBySustainedRatesWhereTheFileHasThem) {
  MeasuredCeilings c = H100Ceilings();
  c.set_read_sustained_gbps(3050);
  c.set_bf16_sustained_tflops(710);
  c.set_fp8_sustained_tflops(1200);
  EXPECT_DOUBLE_EQ(MeasuredReadGbps(c), 3050.0);
  EXPECT_DOUBLE_EQ(MeasuredReadGbps(H100Ceilings()), 3130.0);
  BatchPoint p = MeasuredPoint(2840, 381);
  AddMeasuredAgainstCeilings(p, c, BF16);
  EXPECT_DOUBLE_EQ(p.mbu_measured(), 2840.0 / 3050.0);
  EXPECT_DOUBLE_EQ(p.mfu_measured(), 381.0 / 710.0);
  BatchPoint q = MeasuredPoint(1000, 650);
  AddMeasuredAgainstCeilings(q, c, FP8_E4M3);
  EXPECT_DOUBLE_EQ(q.mfu_measured(), 650.0 / 1200.0);
  std::ostringstream out;
  PrintCeilingsTable(c, out);
  EXPECT_THAT(out.str(), HasSubstr("3050.0 GB/s"));
  EXPECT_THAT(out.str(), HasSubstr("91.0%"));  // 3050 / 3350
  EXPECT_THAT(out.str(), HasSubstr("71.8%"));  // 710 / 989.4
  EXPECT_THAT(out.str(), HasSubstr("60.6%"));  // 1200 / 1978.9
  EXPECT_EQ(MeasuredDenominatorsText(c, FP8_E4M3),
            "read 3050 GB/s sustained, fp8 GEMM 1200 TFLOP/s sustained");
  EXPECT_EQ(MeasuredDenominatorsText(H100Ceilings(), BF16),
            "read 3130 GB/s (a burst: no sustained rate), bf16 GEMM 762 TFLOP/s (a burst: no "
            "sustained rate)");
  std::ostringstream burst_only;
  PrintCeilingsTable(H100Ceilings(), burst_only);
  EXPECT_THAT(burst_only.str(), ::testing::Not(HasSubstr("sustained")));
}

// A run repeats the ceilings' notes on what it divides by (the read and its weights' GEMM shape,
// held or burst, and a co-tenant), not those on other measurements.
TEST(CeilingsIo, DenominatorNotesAreThoseOfTheRatesARunDividesBy) {
  MeasuredCeilings c = H100Ceilings();
  const std::string unsettled = ": median not settled when the timing stopped (+-1.00%, 80 reps)";
  for (const char* what :
       {"read", "write", "bf16 GEMM m=8192 n=8192 k=8192", "bf16 GEMM m=4096 n=4096 k=4096",
        "fp8 GEMM m=8192 n=57344 k=8192", "read, sustained",
        "bf16 sustained GEMM m=12288 n=12288 k=12288", "fp8 sustained GEMM m=6144 n=6144 k=6144",
        "fp8 sustained GEMM m=8192 n=57344 k=8192"}) {
    c.add_notes(absl::StrCat(what, unsettled));
  }
  c.add_notes("other processes on this GPU while the ceilings were measured: pid 42");
  const std::string cotenant = c.notes(c.notes_size() - 1);
  // Bursts only: the burst read and the best burst shape of the weights' dtype.
  EXPECT_THAT(DenominatorNotes(c, BF16),
              ElementsAre(absl::StrCat("read", unsettled),
                          absl::StrCat("bf16 GEMM m=8192 n=8192 k=8192", unsettled), cotenant));
  EXPECT_THAT(DenominatorNotes(c, FP8_E4M3),
              ElementsAre(absl::StrCat("read", unsettled),
                          absl::StrCat("fp8 GEMM m=8192 n=57344 k=8192", unsettled), cotenant));
  // Held rates: their notes, at the held best shape.
  c.set_read_sustained_gbps(3050);
  c.set_bf16_sustained_tflops(710);
  c.set_bf16_sustained_shape("m=12288 n=12288 k=12288");
  c.set_fp8_sustained_tflops(1200);
  c.set_fp8_sustained_shape("m=6144 n=6144 k=6144");
  EXPECT_THAT(DenominatorNotes(c, BF16),
              ElementsAre(absl::StrCat("read, sustained", unsettled),
                          absl::StrCat("bf16 sustained GEMM m=12288 n=12288 k=12288", unsettled),
                          cotenant));
  EXPECT_THAT(DenominatorNotes(c, FP8_E4M3),
              ElementsAre(absl::StrCat("read, sustained", unsettled),
                          absl::StrCat("fp8 sustained GEMM m=6144 n=6144 k=6144", unsettled),
                          cotenant));
  // No fp8 rate: fp8 weights divide by bf16's, and get its notes.
  c.clear_fp8_tflops();
  EXPECT_EQ(DenominatorNotes(c, FP8_E4M3), DenominatorNotes(c, BF16));
  EXPECT_THAT(DenominatorNotes(H100Ceilings(), BF16), IsEmpty());
}

// The ceiling takes the highest low end of the intervals, not the highest median: the fp8 holds
// of H200 GPU-cfb9054e (results/h200/ceilings.json before stop 51), 6144^3 at 1362.6 +-3.48% and
// 12288^3 at 1359.6 +-0.62%.
TEST(CeilingsIo, SurestGemmTakesTheHighestLowEndOfTheIntervals) {
  MeasuredCeilings c;
  auto add = [&c](const char* dtype, int n, double tflops, std::optional<double> rel_ci) {
    MeasuredCeilings::GemmPoint* g = c.add_gemms();
    g->set_dtype(dtype);
    g->set_m(n);
    g->set_n(n);
    g->set_k(n);
    g->set_tflops(tflops);
    if (rel_ci) g->set_rel_ci(*rel_ci);
  };
  EXPECT_EQ(SurestGemm(c, "fp8 sustained"), nullptr);
  add("fp8", 6144, 1600, 0.001);  // a burst: not a held record
  add("fp8 sustained", 6144, 1362.6, 0.0348);
  add("fp8 sustained", 12288, 1359.6, 0.0062);
  add("fp8 sustained", 4096, 1400, std::nullopt);  // no interval: its low end is 0
  const MeasuredCeilings::GemmPoint* g = SurestGemm(c, "fp8 sustained");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->m(), 12288u);
  EXPECT_EQ(SurestGemmNote(c, "fp8 sustained"),
            "fp8 sustained GEMM m=12288 n=12288 k=12288: the ceiling, 1359.6 TFLOP/s +-0.62%, "
            "taken over m=4096 n=4096 k=4096's higher but looser median, 1400.0: the highest "
            "low end of the ~95% intervals");
  // Tighter still, but lower: 1340 / 1.001 is below 1359.6 / 1.0062.
  add("fp8 sustained", 8192, 1340, 0.001);
  EXPECT_EQ(SurestGemm(c, "fp8 sustained")->m(), 12288u);
  // An unusable interval is none.
  add("fp8 sustained", 2048, 1500, -1);
  add("fp8 sustained", 1024, 1500, std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(SurestGemm(c, "fp8 sustained")->m(), 12288u);
  // Of equal low ends (1250 / 1.25 = 1500 / 1.5, exactly), the higher median.
  add("fp8 tie", 1024, 1250, 0.25);
  add("fp8 tie", 2048, 1500, 0.5);
  EXPECT_EQ(SurestGemm(c, "fp8 tie")->m(), 2048u);
  // Where none has an interval, the highest median.
  add("bf16 sustained", 4096, 690, std::nullopt);
  add("bf16 sustained", 8192, 700, std::nullopt);
  EXPECT_EQ(SurestGemm(c, "bf16 sustained")->m(), 8192u);
  EXPECT_EQ(SurestGemmNote(c, "bf16 sustained"), "");  // the highest median itself
  // Of equal medians without intervals, the first recorded.
  add("bf16 equal", 8192, 700, std::nullopt);
  add("bf16 equal", 4096, 700, std::nullopt);
  EXPECT_EQ(SurestGemm(c, "bf16 equal")->m(), 8192u);
  EXPECT_EQ(SurestGemmNote(c, "fp4 sustained"), "");
}

// A run learns of the choice: the note goes with the chosen GEMM's own.
TEST(CeilingsIo, TheChoiceOfTheHeldGemmReachesTheRunsThatDivideByIt) {
  MeasuredCeilings c;
  c.mutable_machine()->set_gpu_name("NVIDIA H200");
  c.set_read_gbps(4660);
  c.set_bf16_tflops(808);
  c.set_fp8_tflops(1614);
  for (auto [n, tflops, rel_ci] : {std::tuple{6144, 1362.6, 0.0348}, {12288, 1359.6, 0.0062}}) {
    MeasuredCeilings::GemmPoint* g = c.add_gemms();
    g->set_dtype("fp8 sustained");
    g->set_m(n);
    g->set_n(n);
    g->set_k(n);
    g->set_tflops(tflops);
    g->set_rel_ci(rel_ci);
  }
  const MeasuredCeilings::GemmPoint* g = SurestGemm(c, "fp8 sustained");
  ASSERT_NE(g, nullptr);
  c.set_fp8_sustained_tflops(g->tflops());
  c.set_fp8_sustained_shape("m=12288 n=12288 k=12288");
  const std::string note = SurestGemmNote(c, "fp8 sustained");
  ASSERT_FALSE(note.empty());
  c.add_notes(note);
  EXPECT_THAT(DenominatorNotes(c, FP8_E4M3), ElementsAre(note));
  EXPECT_THAT(note,
              HasSubstr("taken over m=6144 n=6144 k=6144's higher but looser median, 1362.6"));
}

TEST(CeilingsIo, LeavesUnmeasuredPointsAlone) {
  BatchPoint p;
  p.set_batch(512);
  p.set_skipped(true);
  AddMeasuredAgainstCeilings(p, H100Ceilings(), BF16);
  EXPECT_FALSE(p.has_mbu_measured());
  EXPECT_FALSE(p.has_mfu_measured());
}

TEST(CeilingsIo, TableShowsDatasheetPercentages) {
  std::ostringstream out;
  PrintCeilingsTable(H100Ceilings(), out);
  const std::string table = out.str();
  EXPECT_THAT(table, HasSubstr(kH100));
  EXPECT_THAT(table, HasSubstr("3130.0 GB/s"));
  EXPECT_THAT(table, HasSubstr("93.4%"));  // 3130 / 3350
  EXPECT_THAT(table, HasSubstr("77.0%"));  // 762 / 989.4
  EXPECT_THAT(table, HasSubstr("65.7%"));  // 1300 / 1978.9
  EXPECT_THAT(table, HasSubstr("m=8192 n=8192 k=8192"));
  EXPECT_THAT(table, HasSubstr("2.10 us"));
  // No datasheet: values without percentages.
  MeasuredCeilings c = H100Ceilings();
  c.clear_datasheet();
  std::ostringstream bare;
  PrintCeilingsTable(c, bare);
  EXPECT_THAT(bare.str(), HasSubstr("3130.0 GB/s"));
  EXPECT_THAT(bare.str(), ::testing::Not(HasSubstr("93.4%")));
}

// Where this run's UUID is unknown, the cards cannot be compared: no note.
TEST(CeilingsIo, NoCardNoteWithoutThisRunsUuid) {
  MeasuredCeilings c = H100Ceilings();
  c.mutable_machine()->set_gpu_uuid("GPU-224f00a3-acad-38f3-cdd8-6623f4eb43bd");
  EXPECT_EQ(CeilingsFromAnotherCardNote(c, ""), "");
}

// An fp8 rate recorded as 0 is no fp8 rate: fp8 weights are held to the bf16 one.
TEST(CeilingsIo, ZeroFp8RateFallsBackToBf16) {
  MeasuredCeilings c = H100Ceilings();
  c.set_fp8_tflops(0);
  EXPECT_DOUBLE_EQ(MeasuredPeakTflops(c, FP8_E4M3), 762.0);
}

// Rows without a datasheet figure (no datasheet; host transfers, which have none) show no
// percentage, never "inf%".
TEST(CeilingsIo, TableHasNoPercentageWithoutADatasheetFigure) {
  for (bool sheet : {true, false}) {
    MeasuredCeilings c = H100Ceilings();
    if (!sheet) c.clear_datasheet();
    std::ostringstream out;
    PrintCeilingsTable(c, out);
    EXPECT_THAT(out.str(), ::testing::Not(HasSubstr("inf"))) << sheet;
    EXPECT_THAT(out.str(), ::testing::Not(HasSubstr(" 0.0 GB/s"))) << sheet;
  }
}

}  // namespace
}  // namespace truthput
