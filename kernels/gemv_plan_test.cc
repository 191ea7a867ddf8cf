// Host-only tests (no GPU needed) of the skinny GEMM's plan and of its packed weight layout
// (gemv.h): pure host code, run by CI. The GPU side is in gemv_test.cc.
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/gemv.h"

namespace truthput {
namespace {

// The packed layout on the host: every byte of W has its own place, inside the packed size, and
// the places no byte of W maps to (padding) are exactly the packed size minus W's size.
TEST(SkinnyGemmPackedLayout, OffsetsAreABijectionOntoThePackedBuffer) {
  for (auto [n, k] : {std::pair<int64_t, int64_t>{128, 32}, {200, 24}, {129, 1032}, {256, 64}}) {
    for (int bytes : {1, 2}) {
      SCOPED_TRACE(absl::StrCat("n=", n, " k=", k, " bytes=", bytes));
      const int64_t packed = static_cast<int64_t>(SkinnyGemmPackedBytes(n, k, bytes));
      ASSERT_GE(packed, n * k * bytes);
      std::vector<uint8_t> hit(packed, 0);
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t b = 0; b < k * bytes; ++b) {
          const int64_t at = SkinnyGemmPackedOffset(r, b, k, bytes);
          ASSERT_GE(at, 0);
          ASSERT_LT(at, packed);
          ASSERT_EQ(hit[at]++, 0) << "row " << r << " byte " << b << " lands on a taken place";
        }
      }
      EXPECT_EQ(packed == n * k * bytes, n % 128 == 0 && k * bytes % 64 == 0);
    }
  }
  // A k-step of a tile is its 128 rows' 64 bytes in row order.
  EXPECT_EQ(SkinnyGemmPackedOffset(0, 64, 1024, 2), 128 * 64);
  EXPECT_EQ(SkinnyGemmPackedOffset(1, 0, 1024, 2), 64);
  EXPECT_EQ(SkinnyGemmPackedOffset(128, 0, 1024, 2), 128 * 2048);
}

// The plan's invariants, over many shapes: the CTAs' ranges tile the k-step space exactly, the
// grid stays within two CTAs per SM, and the workspace is needed exactly when a tile is split.
TEST(PlanSkinnyGemm, CoversTheWorkExactly) {
  for (int sms : {132, 114, 78, 1}) {
    for (int64_t n : {1, 8, 127, 128, 1000, 1024, 1280, 8192, 57344, 128256}) {
      for (int64_t k : {8, 24, 1024, 1032, 4096, 8192, 28672, 53248}) {
        for (int bytes : {1, 2}) {
          for (int64_t m : {1, 9}) {
            SCOPED_TRACE(absl::StrCat("sms=", sms, " n=", n, " k=", k, " bytes=", bytes));
            const SkinnyGemmPlan p = PlanSkinnyGemm(m, n, k, bytes, sms);
            ASSERT_GE(p.ctas, 1);
            EXPECT_LE(p.ctas, 2 * sms);
            EXPECT_EQ(p.row_tiles, (n + 127) / 128);
            EXPECT_EQ(p.ksteps_per_tile, (k * bytes + 63) / 64);
            EXPECT_GE(static_cast<int64_t>(p.ctas) * p.ksteps_per_cta, p.total_ksteps);
            EXPECT_LT(static_cast<int64_t>(p.ctas - 1) * p.ksteps_per_cta, p.total_ksteps);
            EXPECT_EQ(p.split, p.workspace_bytes > 0);
            EXPECT_LE(p.workspace_bytes, SkinnyGemmWorkspaceBytes(m, n, k, sms));
          }
        }
      }
    }
  }
  // Small n at large k must be split to fill the GPU; a huge vocabulary fills it whole.
  EXPECT_TRUE(PlanSkinnyGemm(1, 1024, 28672, 2, 132).split);
  EXPECT_GE(PlanSkinnyGemm(1, 1024, 28672, 2, 132).ctas, 250);
  EXPECT_EQ(PlanSkinnyGemm(16, 128256, 16384, 2, 132).ctas, 264);
  EXPECT_EQ(PlanSkinnyGemm(0, 1024, 1024, 2, 132).ctas, 0);
}

}  // namespace
}  // namespace truthput
