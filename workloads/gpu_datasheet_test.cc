#include "workloads/gpu_datasheet.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace truthput {
namespace {

TEST(GpuDatasheet, HasTheRequiredGpusWithSources) {
  for (const char* id : {"a100-sxm", "h100-sxm", "h100-pcie", "h200", "b200", "l40s"}) {
    absl::StatusOr<GpuSpec> g = FindGpu(id);
    ASSERT_TRUE(g.ok()) << id;
    EXPECT_GT(g->bf16_tflops(), 0) << id;
    EXPECT_GT(g->fp32_tflops(), 0) << id;
    EXPECT_GT(g->mem_bandwidth_gbps(), 0) << id;
    EXPECT_GT(g->memory_gbytes(), 0) << id;
    EXPECT_GT(g->l2_mbytes(), 0) << id;
    EXPECT_GT(g->sm_count(), 0u) << id;
    EXPECT_FALSE(g->source().empty()) << id;
  }
}

TEST(GpuDatasheet, H100AndH200Figures) {
  GpuSpec h100 = *FindGpu("h100-sxm");
  EXPECT_DOUBLE_EQ(h100.mem_bandwidth_gbps(), 3350);
  EXPECT_NEAR(h100.bf16_tflops(), 989, 1);
  EXPECT_NEAR(h100.fp8_tflops(), 2 * h100.bf16_tflops(), 1);
  EXPECT_EQ(h100.sm_count(), 132u);
  GpuSpec h200 = *FindGpu("H200");
  EXPECT_DOUBLE_EQ(h200.mem_bandwidth_gbps(), 4800);
  // GB/s are decimal: 3350 GB/s is 3.35e12 bytes a second, not 3350 x 2^30.
  EXPECT_DOUBLE_EQ(PeakBytesPerSecond(h100), 3.35e12);
  EXPECT_DOUBLE_EQ(PeakBytesPerSecond(h200), 4.8e12);
  EXPECT_DOUBLE_EQ(PeakFlopsPerSecond(h100, FP8_E4M3), h100.fp8_tflops() * 1e12);
  EXPECT_DOUBLE_EQ(PeakFlopsPerSecond(h100, BF16), h100.bf16_tflops() * 1e12);
  // A100 has no fp8 tensor cores: fp8 weights fall back to the bf16 rate.
  GpuSpec a100 = *FindGpu("a100");
  EXPECT_DOUBLE_EQ(PeakFlopsPerSecond(a100, FP8_E4M3), a100.bf16_tflops() * 1e12);
}

// Predictions check a point against what a card reported (the driver keeps part of the
// marketed GiB), so that they agree with a GPU run's `fits`; other GPUs take the GiB.
TEST(GpuDatasheet, MemoryIsWhatALentCardReportedElseTheMarketedGib) {
  EXPECT_EQ(MemoryBytes(*FindGpu("h100-sxm")), 85017493504);  // GPU-224f00a3
  EXPECT_EQ(MemoryBytes(*FindGpu("h200")), 150109880320);     // GPU-6b153377
  EXPECT_EQ(MemoryBytes(*FindGpu("l40s")), int64_t{46068} << 20);  // nvidia-smi, GDDR6
  EXPECT_EQ(MemoryBytes(*FindGpu("a100-sxm")), int64_t{80} << 30);
  for (const std::string& id : KnownGpuIds()) {
    const GpuSpec g = *FindGpu(id);
    if (g.reported_memory_gbytes() == 0) continue;
    const double marketed = g.memory_gbytes() * 1073741824.0;
    EXPECT_LT(MemoryBytes(g), marketed) << id;
    EXPECT_GT(MemoryBytes(g), 0.9 * marketed) << id;  // L40S: 0.94
  }
}

TEST(GpuDatasheet, LooksUpByReportedDeviceName) {
  EXPECT_EQ(FindGpuByDeviceName("NVIDIA H100 80GB HBM3")->id(), "h100-sxm");
  EXPECT_EQ(FindGpuByDeviceName("NVIDIA H100 PCIe")->id(), "h100-pcie");
  EXPECT_EQ(FindGpuByDeviceName("NVIDIA H200")->id(), "h200");
  EXPECT_EQ(FindGpuByDeviceName("NVIDIA A100-SXM4-80GB")->id(), "a100-sxm");
  EXPECT_EQ(FindGpuByDeviceName("NVIDIA L40S")->id(), "l40s");
  absl::StatusOr<GpuSpec> unknown = FindGpuByDeviceName("NVIDIA GeForce RTX 4090");
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.status().message(), ::testing::HasSubstr("--gpu"));
  // A variant of a listed part is not that part: the H200 NVL runs at 600 W, not 700.
  for (const char* variant : {"NVIDIA H200 NVL", "NVIDIA H100 NVL", "NVIDIA L40S-48C"}) {
    EXPECT_EQ(FindGpuByDeviceName(variant).status().code(), absl::StatusCode::kNotFound)
        << variant;
  }
}

// CUDA names a MIG instance after its GPU ("... MIG 1g.10gb"); it has a share of the GPU's SMs
// and bandwidth, so the whole GPU's datasheet is not its own, and the error says so.
TEST(GpuDatasheet, AMigInstanceHasNoDatasheetAndIsToldSo) {
  absl::StatusOr<GpuSpec> mig = FindGpuByDeviceName("NVIDIA H100 80GB HBM3 MIG 1g.10gb");
  ASSERT_EQ(mig.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(mig.status().message(), ::testing::HasSubstr("is a MIG instance"));
  EXPECT_THAT(mig.status().message(), ::testing::HasSubstr("mbu_measured"));
  EXPECT_THAT(FindGpuByDeviceName("NVIDIA GeForce RTX 4090").status().message(),
              ::testing::Not(::testing::HasSubstr("MIG")));
}

TEST(GpuDatasheet, SaysWhenADatasheetIsNotTheDevicesOwn) {
  const GpuSpec h100 = *FindGpu("h100-sxm");
  EXPECT_EQ(DatasheetMismatch(h100, "NVIDIA H100 80GB HBM3", 132), "");
  EXPECT_EQ(DatasheetMismatch(h100, "NVIDIA H100 SXM5 80GB", 132), "");
  EXPECT_EQ(DatasheetMismatch(h100, "NVIDIA H100 80GB HBM3", 0), "");  // SMs not recorded
  EXPECT_EQ(DatasheetMismatch(*FindGpu("h200"), "NVIDIA H200", 132), "");
  GpuSpec no_sms = h100;  // a datasheet that does not record its SMs checks the name alone
  no_sms.clear_sm_count();
  EXPECT_EQ(DatasheetMismatch(no_sms, "NVIDIA H100 80GB HBM3", 132), "");

  EXPECT_EQ(DatasheetMismatch(h100, "NVIDIA H100 80GB HBM3 MIG 1g.10gb", 16),
            "NVIDIA H100 80GB HBM3 MIG 1g.10gb (16 SMs, a MIG instance: a share of its GPU's SMs "
            "and memory bandwidth) is not the GPU of datasheet h100-sxm (NVIDIA H100 SXM5 80GB, "
            "132 SMs)");
  // Another GPU's datasheet, by name even with the same SM count (the H100 NVL's 3.9 TB/s is
  // not the SXM's 3.35), or by SM count under a listed name.
  EXPECT_EQ(DatasheetMismatch(h100, "NVIDIA H100 NVL", 132),
            "NVIDIA H100 NVL (132 SMs) is not the GPU of datasheet h100-sxm (NVIDIA H100 SXM5 "
            "80GB, 132 SMs)");
  EXPECT_THAT(DatasheetMismatch(h100, "NVIDIA H100 80GB HBM3", 114),
              ::testing::StartsWith("NVIDIA H100 80GB HBM3 (114 SMs) is not the GPU"));
  EXPECT_THAT(DatasheetMismatch(*FindGpu("h200"), "NVIDIA H100 80GB HBM3", 132),
              ::testing::HasSubstr("datasheet h200"));
  EXPECT_THAT(DatasheetMismatch(h100, "NVIDIA H100 NVL", 0), ::testing::HasSubstr("(? SMs)"));
}

TEST(GpuDatasheet, UnknownNameListsKnownIds) {
  absl::StatusOr<GpuSpec> g = FindGpu("h300");
  ASSERT_FALSE(g.ok());
  EXPECT_THAT(g.status().message(), ::testing::HasSubstr("unknown GPU 'h300'"));
  EXPECT_THAT(g.status().message(), ::testing::HasSubstr("h100-sxm"));
}

}  // namespace
}  // namespace truthput
