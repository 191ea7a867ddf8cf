#include "bench/bench_request.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "bench/ceilings_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace truthput {
namespace {

using ::testing::HasSubstr;

BenchFlagValues Flags() {
  BenchFlagValues f;
  f.model = "70b";
  f.batch = "1..256";
  f.context = 2048;
  return f;
}

std::string Error(const BenchFlagValues& f, Phase phase = Phase::kDecode) {
  absl::StatusOr<BenchRequest> r = MakeBenchRequest("bench_decode", phase, f);
  EXPECT_FALSE(r.ok());
  return r.ok() ? "" : std::string(r.status().message());
}

TEST(BenchRequest, ValidDecodeSweep) {
  absl::StatusOr<BenchRequest> r = MakeBenchRequest("bench_decode", Phase::kDecode, Flags());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->batches.size(), 9u);
  EXPECT_EQ(r->Steps().size(), 9u);
  EXPECT_EQ(r->Steps().back().batch, 256);
  EXPECT_EQ(r->Steps().back().context, 2048);
}

TEST(BenchRequest, PrefillSweepsSeqAndBatch) {
  BenchFlagValues f = Flags();
  f.context = 0;
  f.batch = "1,8";
  f.seq = "512..2048";
  absl::StatusOr<BenchRequest> r = MakeBenchRequest("bench_prefill", Phase::kPrefill, f);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->Steps().size(), 6u);
  EXPECT_EQ(r->Steps()[1].seq_len, 512);
  EXPECT_EQ(r->Steps()[1].batch, 8);
}

TEST(BenchRequest, BadInputGetsOneClearLine) {
  BenchFlagValues f = Flags();
  f.model = "71b";
  EXPECT_THAT(Error(f), HasSubstr("unknown model '71b'; known: 8b, 70b, 405b"));
  f = Flags();
  f.batch = "";
  EXPECT_THAT(Error(f), HasSubstr("--batch is empty"));
  f.batch = "0";
  EXPECT_THAT(Error(f), HasSubstr("out of range"));
  f.batch = "1..";
  EXPECT_THAT(Error(f), HasSubstr("not an integer"));
  // Every entry is checked before anything runs, not only the first.
  f.batch = "1,100000000";
  EXPECT_THAT(Error(f), HasSubstr("pass 2^62"));
  f = Flags();
  f.context = -1;
  EXPECT_THAT(Error(f), HasSubstr("--context must be >= 0"));
  f = Flags();
  f.tp = 0;
  EXPECT_THAT(Error(f), HasSubstr("--tp must be >= 1, got 0"));
  for (double usd : {-1.0, std::nan(""), HUGE_VAL, 1e308, 1.000001e6}) {
    f = Flags();
    f.usd_per_gpu_hour = usd;
    EXPECT_THAT(Error(f), HasSubstr(": must be a finite price >= 0")) << usd;
  }
  // The refused value is printed as given, not rounded to one that would be accepted.
  f = Flags();
  f.usd_per_gpu_hour = 1000001;
  EXPECT_THAT(Error(f), HasSubstr("--usd_per_gpu_hour=1000001: must be a finite price >= 0 and "
                                  "at most 1000000 (dollars an hour)"));
  f.usd_per_gpu_hour = 1e6;
  EXPECT_TRUE(MakeBenchRequest("bench_decode", Phase::kDecode, f).ok());
  // 0 is a price (a GPU you own), not "the datasheet's"; no flag is no price given.
  f = Flags();
  f.usd_per_gpu_hour = 0;
  ASSERT_TRUE(MakeBenchRequest("bench_decode", Phase::kDecode, f).ok());
  EXPECT_EQ(MakeBenchRequest("bench_decode", Phase::kDecode, f)->usd_per_gpu_hour, 0.0);
  EXPECT_FALSE(MakeBenchRequest("bench_decode", Phase::kDecode, Flags())->usd_per_gpu_hour);
  f.usd_per_gpu_hour = -0.0;
  const absl::StatusOr<BenchRequest> minus_zero =
      MakeBenchRequest("bench_decode", Phase::kDecode, f);
  EXPECT_FALSE(std::signbit(*minus_zero->usd_per_gpu_hour));
  f = Flags();
  f.tp = 3;
  EXPECT_THAT(Error(f), HasSubstr("tp 3 does not divide the heads"));
  f = Flags();
  f.gpu = "h300";
  EXPECT_THAT(Error(f), HasSubstr("unknown GPU 'h300'"));
  f = Flags();
  f.predict = true;
  EXPECT_THAT(Error(f), HasSubstr("--predict needs --gpu"));
  f = Flags();
  f.profile = "deep";
  EXPECT_THAT(Error(f), HasSubstr("--profile=deep: must be off, step or ops"));
  f = Flags();
  f.gemm = "magma";
  EXPECT_THAT(Error(f), HasSubstr("--gemm=magma: must be auto, own, own_w8a8 or cublaslt"));
  f = Flags();
  f.ceilings = "/nonexistent/ceilings.json";
  EXPECT_THAT(Error(f), HasSubstr("--ceilings=/nonexistent/ceilings.json: cannot read"));
  f.ceilings = testing::TempDir();
  EXPECT_THAT(Error(f), HasSubstr(" is a folder; name a ceilings .json"));
  f = Flags();
  f.calibrate = "run.json";
  EXPECT_THAT(Error(f), HasSubstr("--calibrate needs --predict"));
  f.predict = true;
  f.gpu = "b200";
  f.calibrate = "/nonexistent/run.json";
  EXPECT_THAT(Error(f), HasSubstr("no such file"));
  f = Flags();
  f.weights = "int4";
  EXPECT_THAT(Error(f), HasSubstr("--weights=int4: must be bf16 or fp8"));
  f = Flags();
  f.seq = "0";
  EXPECT_THAT(Error(f, Phase::kPrefill), HasSubstr("--seq"));
  f = Flags();
  f.batch = "1..1000:+1";
  f.seq = "1..101:+1";  // 101000 steps: each list is fine, the product is not
  EXPECT_THAT(Error(f, Phase::kPrefill), HasSubstr("1000 x 101 steps; at most 100000"));
  f.seq = "1..100:+1";  // exactly 100000
  f.context = 0;        // a prefill's
  const absl::StatusOr<BenchRequest> most = MakeBenchRequest("bench_prefill", Phase::kPrefill, f);
  EXPECT_TRUE(most.ok()) << most.status();
}

// Choices are matched whatever their case, as --gpu and --model are, and kept in lower case;
// each one the errors list is accepted.
TEST(BenchRequest, ChoicesAreMatchedInAnyCase) {
  BenchFlagValues f = Flags();
  f.weights = "FP8";
  f.profile = "OPS";
  f.gemm = "Own";
  absl::StatusOr<BenchRequest> r = MakeBenchRequest("bench_decode", Phase::kDecode, f);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model.weight_dtype(), FP8_E4M3);
  EXPECT_EQ(r->profile, "ops");
  EXPECT_EQ(r->gemm, "own");
  f = Flags();
  f.weights = "bf16";
  r = MakeBenchRequest("bench_decode", Phase::kDecode, f);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model.weight_dtype(), BF16);
  for (const char* profile : {"off", "step", "ops"}) {
    f = Flags();
    f.profile = profile;
    r = MakeBenchRequest("bench_decode", Phase::kDecode, f);
    EXPECT_TRUE(r.ok() && r->profile == profile) << profile << " " << r.status();
  }
  for (const char* gemm : {"auto", "own", "own_w8a8", "cublaslt"}) {
    f = Flags();
    f.gemm = gemm;
    r = MakeBenchRequest("bench_decode", Phase::kDecode, f);
    EXPECT_TRUE(r.ok() && r->gemm == gemm) << gemm << " " << r.status();
  }
}

// Every flag reaches the request as given; --ceilings=none names no file and is not looked for.
TEST(BenchRequest, CarriesEveryFlag) {
  const std::string run = testing::TempDir() + "/carried_run.json";
  std::ofstream(run) << "{}";
  BenchFlagValues f = Flags();
  f.tp = 2;
  f.gpu = "b200";
  f.predict = true;
  f.graph = false;
  f.verify = false;
  f.ceilings = "none";
  f.calibrate = run;
  f.usd_per_gpu_hour = 2.5;
  f.csv = testing::TempDir() + "/carried.csv";
  f.json = testing::TempDir() + "/carried.json";
  f.overwrite = true;
  absl::StatusOr<BenchRequest> r = MakeBenchRequest("bench_decode", Phase::kDecode, f);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tool, "bench_decode");
  EXPECT_EQ(r->model_arg, "70b");
  EXPECT_EQ(r->context, 2048);
  EXPECT_EQ(r->tp, 2);
  EXPECT_EQ(r->Steps().back().tp, 2);
  EXPECT_EQ(r->gpu_arg, "b200");
  EXPECT_TRUE(r->predict);
  EXPECT_FALSE(r->graph);
  EXPECT_FALSE(r->verify);
  EXPECT_EQ(r->ceilings_path, "none");
  EXPECT_EQ(r->calibrate_path, run);
  EXPECT_EQ(r->usd_per_gpu_hour, 2.5);
  EXPECT_EQ(r->csv_path, f.csv);
  EXPECT_EQ(r->json_path, f.json);
  EXPECT_TRUE(r->overwrite);
  EXPECT_FALSE(r->ceilings.has_value());
  std::remove(run.c_str());
}

// A --ceilings file is loaded into the request, or refused with the flag and the file's fault.
TEST(BenchRequest, LoadsTheCeilingsFile) {
  MeasuredCeilings c;
  c.mutable_machine()->set_gpu_name("NVIDIA H200");
  c.set_read_gbps(4660);
  c.set_bf16_tflops(808.2);
  absl::StatusOr<std::string> json = FormatCeilingsJson(c);
  ASSERT_TRUE(json.ok()) << json.status();
  const std::string path = testing::TempDir() + "/request_ceilings.json";
  std::ofstream(path) << *json;
  BenchFlagValues f = Flags();
  f.ceilings = path;
  absl::StatusOr<BenchRequest> r = MakeBenchRequest("bench_decode", Phase::kDecode, f);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->ceilings.has_value());
  EXPECT_EQ(r->ceilings->machine().gpu_name(), "NVIDIA H200");
  EXPECT_EQ(r->ceilings->read_gbps(), 4660);

  c.set_read_gbps(-1);
  std::ofstream(path) << *FormatCeilingsJson(c);
  EXPECT_THAT(Error(f), HasSubstr(absl::StrCat("--ceilings=", path, ": ")));
  EXPECT_THAT(Error(f), HasSubstr("read_gbps"));
  std::remove(path.c_str());
}

TEST(BenchRequest, Fp8WeightsChangeTheModelsDtype) {
  BenchFlagValues f = Flags();
  f.weights = "fp8";
  absl::StatusOr<BenchRequest> r = MakeBenchRequest("bench_decode", Phase::kDecode, f);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model.weight_dtype(), FP8_E4M3);
}

TEST(BenchRequest, RefusesToOverwriteResults) {
  const std::string path = testing::TempDir() + "/exists.csv";
  std::ofstream(path) << "x";
  BenchFlagValues f = Flags();
  f.csv = path;
  EXPECT_THAT(Error(f), HasSubstr("exists; pass --overwrite"));
  f.overwrite = true;
  EXPECT_TRUE(MakeBenchRequest("bench_decode", Phase::kDecode, f).ok());
  f = Flags();
  f.json = path;  // the JSON as much as the CSV
  EXPECT_THAT(Error(f), HasSubstr("exists; pass --overwrite"));
  f.csv = path;
  f.overwrite = true;
  // One file under two names is refused; one device is written into twice.
  f.json = testing::TempDir() + "/./exists.csv";
  EXPECT_THAT(Error(f), HasSubstr("--csv and --json name the same file"));
  f.csv = f.json = "/dev/null";
  EXPECT_TRUE(MakeBenchRequest("bench_decode", Phase::kDecode, f).ok());
  std::remove(path.c_str());
  // A link to the CSV that is not written yet: writing the JSON would follow it onto the CSV.
  const std::string link = testing::TempDir() + "/to_new.json";
  std::remove(link.c_str());
  std::error_code ec;
  std::filesystem::create_symlink("new.csv", link, ec);
  ASSERT_FALSE(ec) << ec.message();
  f.csv = testing::TempDir() + "/new.csv";
  f.json = link;
  EXPECT_THAT(Error(f), HasSubstr("--csv and --json name the same file"));
  std::remove(link.c_str());
}

}  // namespace
}  // namespace truthput
