// The parts of CuptiRangeProfiler that need no GPU: PlanMetrics (Create's metric check, run by
// CUPTI's host library for a chip named offline) and ToTruthColumns.
//
// Failures are injected by interposition: this file defines three of CUPTI's host calls, which
// the profiler's calls bind to at link time; they pass through to libcupti's (dlsym RTLD_NEXT)
// unless a test has set a result for them to return instead.
#include <cupti_profiler_host.h>
#include <dlfcn.h>

#include <climits>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "bench/cupti_range_profiler.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace {

// One interposed call's injected failure: `result` for the next `times` calls, then CUPTI's own.
// (The profiler calls CUPTI's host API on the test's thread only.)
struct Fault {
  CUptiResult result = CUPTI_SUCCESS;
  int times = 0;
};
Fault get_metric_properties_fault, config_add_metrics_fault;
// Host objects an injected ConfigAddMetrics failure has spoiled (below).
std::set<CUpti_Profiler_Host_Object*> spoiled_hosts;

// The injected result of this call, or CUPTI_SUCCESS: pass through.
CUptiResult Take(Fault& f) {
  if (f.times <= 0) return CUPTI_SUCCESS;
  --f.times;
  return f.result;
}

template <typename Fn>
Fn Real(const char* name) {
  static_assert(std::is_pointer_v<Fn>);
  return reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
}

}  // namespace

extern "C" CUptiResult CUPTIAPI
cuptiProfilerHostGetMetricProperties(CUpti_Profiler_Host_GetMetricProperties_Params* p) {
  if (const CUptiResult r = Take(get_metric_properties_fault); r != CUPTI_SUCCESS) return r;
  static const auto real = Real<decltype(&cuptiProfilerHostGetMetricProperties)>(
      "cuptiProfilerHostGetMetricProperties");
  return real != nullptr ? real(p) : CUPTI_ERROR_UNKNOWN;
}

// As CUPTI 13.0 does, a failed ConfigAddMetrics leaves its host object unusable: every later add
// to it fails, until the object is deinitialized.
extern "C" CUptiResult CUPTIAPI
cuptiProfilerHostConfigAddMetrics(CUpti_Profiler_Host_ConfigAddMetrics_Params* p) {
  if (spoiled_hosts.count(p->pHostObject) > 0) return CUPTI_ERROR_UNKNOWN;
  if (const CUptiResult r = Take(config_add_metrics_fault); r != CUPTI_SUCCESS) {
    spoiled_hosts.insert(p->pHostObject);
    return r;
  }
  static const auto real =
      Real<decltype(&cuptiProfilerHostConfigAddMetrics)>("cuptiProfilerHostConfigAddMetrics");
  return real != nullptr ? real(p) : CUPTI_ERROR_UNKNOWN;
}

extern "C" CUptiResult CUPTIAPI
cuptiProfilerHostDeinitialize(CUpti_Profiler_Host_Deinitialize_Params* p) {
  spoiled_hosts.erase(p->pHostObject);  // a new object may get its address
  static const auto real =
      Real<decltype(&cuptiProfilerHostDeinitialize)>("cuptiProfilerHostDeinitialize");
  return real != nullptr ? real(p) : CUPTI_ERROR_UNKNOWN;
}

namespace truthput {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The H100 and the H200 are both GH100.
TEST(CuptiMetricPlanTest, EveryTruthMetricIsKnownOnGH100InTwoPasses) {
  const std::vector<std::string> names = TruthMetricNames();
  ASSERT_EQ(names.size(), TruthMetrics().size());
  absl::StatusOr<CuptiRangeProfiler::MetricPlan> plan =
      CuptiRangeProfiler::PlanMetrics("GH100", names);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->supported, names);
  EXPECT_THAT(plan->unsupported, IsEmpty());
  EXPECT_EQ(plan->passes, 2);  // as cupti_range_profiler.h says
}

TEST(CuptiMetricPlanTest, UnknownNamesAreUnsupportedAndRepeatsDropped) {
  absl::StatusOr<CuptiRangeProfiler::MetricPlan> plan = CuptiRangeProfiler::PlanMetrics(
      "GH100", {"dram__bytes_read.sum", "no_such__metric.sum", "", "dram__bytes_read.sum",
                "sm__cycles_active.avg", "no_such__metric.sum"});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_THAT(plan->supported, ElementsAre("dram__bytes_read.sum", "sm__cycles_active.avg"));
  EXPECT_THAT(plan->unsupported, ElementsAre("no_such__metric.sum"));
  EXPECT_EQ(plan->passes, 1);
}

TEST(CuptiMetricPlanTest, NoKnownMetricIsNotFoundNamingThem) {
  const absl::Status st =
      CuptiRangeProfiler::PlanMetrics("GH100", {"no_such__metric.sum", "nor__this.avg"}).status();
  EXPECT_TRUE(absl::IsNotFound(st)) << st;
  EXPECT_THAT(st.message(), HasSubstr("GH100"));
  EXPECT_THAT(st.message(), HasSubstr("no_such__metric.sum, nor__this.avg"));
}

// A chip CUPTI does not know is the device's limit, said in the one-line form of a cell's
// "n/a (reason)", with the failing call after it.
TEST(CuptiMetricPlanTest, UnknownChipIsUnimplementedSayingSo) {
  const absl::Status st =
      CuptiRangeProfiler::PlanMetrics("NO_SUCH_CHIP", {"dram__bytes_read.sum"}).status();
  EXPECT_TRUE(absl::IsUnimplemented(st)) << st;
  EXPECT_TRUE(absl::StartsWith(st.message(),
                               "CUPTI cannot read counters on this device or configuration"))
      << st;
  EXPECT_THAT(st.message(), HasSubstr("CUPTI_ERROR_INVALID_CHIP_NAME]"));
  EXPECT_THAT(std::string(st.message()), ::testing::Not(HasSubstr("\n")));
}

// Injects a failure for the scope of a test: `result` for the next `times` calls.
class Inject {
 public:
  Inject(Fault& call, CUptiResult result, int times = INT_MAX) : call_(call) {
    call_ = {result, times};
  }
  ~Inject() { call_ = {}; }

 private:
  Fault& call_;
};

const std::vector<std::string> kTwoKnown = {"dram__bytes_read.sum", "sm__cycles_active.avg"};

// The interposed calls pass through: the plan is CUPTI's (and the tests above mean something).
TEST(CuptiMetricPlanFaultTest, NothingInjectedPassesThrough) {
  absl::StatusOr<CuptiRangeProfiler::MetricPlan> plan =
      CuptiRangeProfiler::PlanMetrics("GH100", kTwoKnown);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->supported, kTwoKnown);
}

// A failure that is the metric's own makes it unsupported; the plan goes on with the others (a
// failed add on a host object of its own: the failure spoiled the first one).
TEST(CuptiMetricPlanFaultTest, AMetricsOwnFailureMakesItUnsupported) {
  for (CUptiResult r : {CUPTI_ERROR_INVALID_METRIC_NAME, CUPTI_ERROR_NOT_SUPPORTED}) {
    for (Fault* call : {&get_metric_properties_fault, &config_add_metrics_fault}) {
      SCOPED_TRACE(absl::StrCat(r, call == &config_add_metrics_fault ? " (add)" : ""));
      Inject inject(*call, r, /*times=*/1);  // the first metric's
      absl::StatusOr<CuptiRangeProfiler::MetricPlan> plan =
          CuptiRangeProfiler::PlanMetrics("GH100", kTwoKnown);
      ASSERT_TRUE(plan.ok()) << plan.status();
      EXPECT_THAT(plan->supported, ElementsAre(kTwoKnown[1]));
      EXPECT_THAT(plan->unsupported, ElementsAre(kTwoKnown[0]));
    }
    Inject inject(get_metric_properties_fault, r);  // every metric's
    const absl::Status st = CuptiRangeProfiler::PlanMetrics("GH100", kTwoKnown).status();
    EXPECT_TRUE(absl::IsNotFound(st)) << st;  // none known
  }
}

// A failure that is not the metric's (no permission, counters busy, out of memory) fails the
// plan with its reason instead of passing for "not supported on the chip".
TEST(CuptiMetricPlanFaultTest, AFailureThatIsNotTheMetricsFailsThePlanWithItsReason) {
  const struct {
    CUptiResult r;
    absl::StatusCode code;
    const char* says;
  } cases[] = {
      {CUPTI_ERROR_INSUFFICIENT_PRIVILEGES, absl::StatusCode::kPermissionDenied,
       "no permission to read GPU counters"},
      {CUPTI_ERROR_VIRTUALIZED_DEVICE_INSUFFICIENT_PRIVILEGES,
       absl::StatusCode::kPermissionDenied, "the hypervisor does not allow reading"},
      {CUPTI_ERROR_HARDWARE_BUSY, absl::StatusCode::kUnavailable,
       "GPU counters are in use by another profiler"},
      {CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED, absl::StatusCode::kUnavailable,
       "another CUPTI client is attached"},
      {CUPTI_ERROR_OLD_PROFILER_API_INITIALIZED, absl::StatusCode::kUnavailable,
       "the legacy CUPTI profiler API is already in use"},
      {CUPTI_ERROR_OUT_OF_MEMORY, absl::StatusCode::kResourceExhausted,
       "CUPTI_ERROR_OUT_OF_MEMORY"},
  };
  for (const auto& c : cases) {
    for (Fault* call : {&get_metric_properties_fault, &config_add_metrics_fault}) {
      SCOPED_TRACE(absl::StrCat(c.says, call == &config_add_metrics_fault ? " (add)" : ""));
      Inject inject(*call, c.r);
      const absl::Status st = CuptiRangeProfiler::PlanMetrics("GH100", kTwoKnown).status();
      EXPECT_EQ(st.code(), c.code) << st;
      EXPECT_THAT(st.message(), HasSubstr(c.says));
    }
  }
}

RangeMetrics Range(std::map<std::string, double> values) {
  RangeMetrics m;
  m.values = std::move(values);
  return m;
}

TEST(ToTruthColumnsTest, SumsTheTensorFlopsAndLeavesTheRestUnset) {
  const TruthColumns c = ToTruthColumns(Range({
      {"dram__bytes_read.sum", 1.4e11},
      {"sm__ops_path_tensor_src_bf16_dst_fp32.sum", 3e12},
      {"sm__ops_path_tensor_src_fp8.sum", 1e12},
      {"gpu__time_duration.sum", 2.5e6},  // not a truth metric: read, but no column's
  }));
  EXPECT_EQ(c.dram_read_bytes, 1.4e11);
  EXPECT_EQ(c.tensor_flops, 4e12);
  // What was not read stays unset, not zero.
  EXPECT_FALSE(c.dram_write_bytes.has_value());
  EXPECT_FALSE(c.sm_active_pct.has_value());
  EXPECT_FALSE(c.l2_hit_pct.has_value());
}

TEST(ToTruthColumnsTest, TensorFlopsAreWhicheverKindWasRead) {
  EXPECT_EQ(ToTruthColumns(Range({{"sm__ops_path_tensor_src_fp8.sum", 7.0}})).tensor_flops, 7.0);
  EXPECT_FALSE(ToTruthColumns(Range({{"dram__bytes_read.sum", 1.0}})).tensor_flops.has_value());
}

// Every column of the table lands in its own field: a value per metric, each different.
TEST(ToTruthColumnsTest, EveryTruthMetricHasItsField) {
  std::map<std::string, double> values;
  double v = 1;
  for (const TruthMetric& m : TruthMetrics()) values[m.metric] = v++;
  const TruthColumns c = ToTruthColumns(Range(values));
  auto of = [&values](const char* metric) { return values.at(metric); };
  EXPECT_EQ(c.dram_read_bytes, of("dram__bytes_read.sum"));
  EXPECT_EQ(c.dram_write_bytes, of("dram__bytes_write.sum"));
  EXPECT_EQ(c.sm_active_pct, of("sm__cycles_active.avg.pct_of_peak_sustained_elapsed"));
  EXPECT_EQ(c.tensor_active_pct,
            of("sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_elapsed"));
  EXPECT_EQ(c.tensor_flops_bf16, of("sm__ops_path_tensor_src_bf16_dst_fp32.sum"));
  EXPECT_EQ(c.tensor_flops_fp8, of("sm__ops_path_tensor_src_fp8.sum"));
  EXPECT_EQ(c.occupancy_pct, of("sm__warps_active.avg.pct_of_peak_sustained_active"));
  EXPECT_EQ(c.l2_hit_pct, of("lts__t_sector_hit_rate.pct"));
}

}  // namespace
}  // namespace truthput
