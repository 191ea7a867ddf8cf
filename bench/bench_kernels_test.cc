// bench_kernels end to end on the GPU: one point of each family, run as a user runs it, and the
// JSON that Google Benchmark's tooling reads: the machine's identity in its context, no point in
// error, and counters that mean what they say (per-call FLOPs and bytes recomputed here from the
// shapes, independently of the workload model; every rate beside a ceiling it does not exceed).
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "kernels/prefill_attention.h"

namespace truthput {
namespace {

namespace fs = std::filesystem;
using google::protobuf::Struct;
using google::protobuf::Value;

// What one benchmark must move and compute per call, and the counter holding its ceiling.
struct Expected {
  double bytes, flops;
  const char* pct_counter;
};

// Llama-3.1-70B: hidden 8192, 64 query heads and 8 KV heads of 128.
constexpr double kD = 128, kHq = 64, kHkv = 8, kHidden = 8192;

std::map<std::string, Expected> ExpectedPoints() {
  std::map<std::string, Expected> points;
  // o_proj at one token: W [8192 x 8192] bf16, x and y one row each.
  points["Gemm/70b/o/b1/own_bf16"] = {kHidden * kHidden * 2 + 2 * kHidden * 2,
                                      2 * kHidden * kHidden, "pct_stream_read"};
  // Batch 8 over 512 cached tokens: K and V once, q in and out.
  const double decode_kv = 2 * 8 * kHkv * 512 * kD * 2, decode_q = 8 * kHq * kD * 2;
  points["DecodeAttention/70b/b8/ctx512"] = {decode_kv + 2 * decode_q, 4 * 8 * kHq * kD * 512,
                                             "pct_stream_read"};
  // 8 causal prompts of 2048: query t sees t + 1 keys.
  const double s = 2048, prefill_q = 8 * s * kHq * kD * 2, prefill_kv = 2 * 8 * kHkv * s * kD * 2;
  const Expected prefill{2 * prefill_q + prefill_kv, 4 * 8 * kHq * kD * (s * (s + 1) / 2),
                         "pct_gemm"};
  points["PrefillAttention/70b/b8/s2048/mma_sync"] = prefill;
  if (PrefillAttentionWgmmaAvailable()) points["PrefillAttention/70b/b8/s2048/wgmma"] = prefill;
  return points;
}

double Seconds(const Struct& b) {
  const std::string unit = b.fields().at("time_unit").string_value();
  const double scale = unit == "ns" ? 1e-9 : unit == "us" ? 1e-6 : unit == "ms" ? 1e-3 : 1.0;
  return b.fields().at("real_time").number_value() * scale;
}

TEST(BenchKernelsTest, OnePointOfEachFamilyReportsHonestCounters) {
  const fs::path self = fs::read_symlink("/proc/self/exe");
  const fs::path binary = self.parent_path() / "bench_kernels";
  ASSERT_TRUE(fs::exists(binary)) << binary << " is not beside the test";
  const fs::path out = fs::temp_directory_path() / absl::StrCat("bench_kernels_test_", getpid());
  fs::create_directories(out);
  const absl::Cleanup remove_out = [&out] {
    std::error_code ec;
    fs::remove_all(out, ec);
  };
  const fs::path json = out / "points.json";
  // The wgmma point is registered only where it can run.
  const std::string command = absl::StrCat(
      binary.string(),
      " '--benchmark_filter=^(Gemm/70b/o/b1/own_bf16|DecodeAttention/70b/b8/ctx512|"
      "PrefillAttention/70b/b8/s2048/(wgmma|mma_sync))/manual_time$'"
      " --benchmark_min_time=0.02"
      " --benchmark_out_format=json --benchmark_out=",
      json.string(), " >", (out / "log.txt").string(), " 2>&1");
  const int rc = std::system(command.c_str());
  std::ifstream log_file(out / "log.txt");
  std::stringstream log;
  log << log_file.rdbuf();
  ASSERT_EQ(rc, 0) << command << "\n" << log.str();

  std::ifstream json_file(json);
  std::stringstream text;
  text << json_file.rdbuf();
  Struct doc;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(text.str(), &doc).ok())
      << "not JSON: " << json << "\n" << text.str() << "\nlog:\n" << log.str();

  const Struct& context = doc.fields().at("context").struct_value();
  ASSERT_TRUE(context.fields().contains("gpu_uuid"));
  EXPECT_EQ(context.fields().at("gpu_uuid").string_value().rfind("GPU-", 0), 0u);

  std::map<std::string, Expected> expected = ExpectedPoints();
  for (const Value& v : doc.fields().at("benchmarks").list_value().values()) {
    const Struct& b = v.struct_value();
    // Manual-time benchmarks carry Google Benchmark's "/manual_time" suffix.
    std::string name = b.fields().at("name").string_value();
    if (const size_t at = name.rfind("/manual_time"); at != std::string::npos) name.erase(at);
    SCOPED_TRACE(name);
    const auto it = expected.find(name);
    ASSERT_NE(it, expected.end()) << "unexpected point";
    EXPECT_FALSE(b.fields().contains("error_occurred") &&
                 b.fields().at("error_occurred").bool_value())
        << b.fields().at("error_message").string_value();
    const Expected& e = it->second;
    const double seconds = Seconds(b);
    ASSERT_GT(seconds, 0);
    // Rates times the time per call give back the call's bytes and FLOPs: the counters carry
    // the right flags (per second, not per iteration or per run).
    EXPECT_NEAR(b.fields().at("bytes_per_second").number_value() * seconds / e.bytes, 1.0, 1e-3);
    EXPECT_NEAR(b.fields().at("flops").number_value() * seconds / e.flops, 1.0, 1e-3);
    ASSERT_TRUE(b.fields().contains(e.pct_counter));
    const double pct = b.fields().at(e.pct_counter).number_value();
    EXPECT_GT(pct, 1.0);
    EXPECT_LE(pct, 105.0) << "faster than its own ceiling: the ceiling is mismeasured";
    expected.erase(it);
  }
  for (const auto& [name, e] : expected) ADD_FAILURE() << name << " is missing from the JSON";
}

}  // namespace
}  // namespace truthput
