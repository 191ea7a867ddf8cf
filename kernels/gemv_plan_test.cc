// Host-only tests (no GPU needed) of the skinny GEMM's plan and of its packed weight layout
// (gemv.h): pure host code, run by CI. The GPU side is in gemv_test.cc.
#include <cstdint>
#include <string>
#include <tuple>
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
// grid stays within the CTAs an SM holds, row-split blocks are dealt evenly, and the workspace is
// needed exactly when a tile is split.
TEST(PlanSkinnyGemm, CoversTheWorkExactly) {
  for (int sms : {132, 114, 78, 1}) {
    for (int64_t n : {1, 8, 127, 128, 1000, 1024, 1280, 8192, 57344, 128256}) {
      for (int64_t k : {8, 24, 1024, 1032, 4096, 8192, 28672, 53248}) {
        for (int bytes : {1, 2}) {
          for (int64_t m : {1, 8, 9, 16, 17, 32}) {
            SCOPED_TRACE(absl::StrCat("sms=", sms, " n=", n, " k=", k, " bytes=", bytes));
            const SkinnyGemmPlan p = PlanSkinnyGemm(m, n, k, bytes, sms);
            ASSERT_GE(p.ctas, 1);
            EXPECT_LE(p.ctas, 4 * sms);
            EXPECT_EQ(p.row_tiles, (n + 127) / 128);
            EXPECT_EQ(p.ksteps_per_tile, (k * bytes + 63) / 64);
            if (p.rows_per_cta == 256) {  // wide split: 3/4 of 2 CTAs per SM
              const int64_t blocks = (n + 255) / 256;
              EXPECT_TRUE(m > 8 && (bytes == 1 || m <= 24)) << "fp8 at 9-32 tokens, bf16 at 9-24";
              EXPECT_EQ((blocks + p.ctas - 1) / p.ctas, p.blocks_per_cta);
              EXPECT_GE(blocks / p.ctas, p.blocks_per_cta - 1);
              EXPECT_LE(p.ctas, 2 * sms);
              EXPECT_GE(4 * p.ctas, 3 * 2 * sms);
              EXPECT_EQ(p.ksteps_per_cta, p.ksteps_per_tile);
              EXPECT_GE(p.ksteps_per_tile, 4);
              EXPECT_TRUE(p.two_slice);
              EXPECT_FALSE(p.split);
            } else if (p.rows_per_cta > 0) {  // one wave of blocks, or 3+ (bf16) / 4+ per CTA
              EXPECT_TRUE(p.rows_per_cta == 16 || p.rows_per_cta == 32 || p.rows_per_cta == 64);
              const int64_t blocks = (n + p.rows_per_cta - 1) / p.rows_per_cta;
              // Block b goes to CTA b % ctas: every CTA has blocks_per_cta or one fewer.
              ASSERT_GE(p.blocks_per_cta, 1);
              EXPECT_EQ((blocks + p.ctas - 1) / p.ctas, p.blocks_per_cta);
              EXPECT_GE(blocks / p.ctas, p.blocks_per_cta - 1);
              if (p.blocks_per_cta > 1) {
                EXPECT_EQ(p.rows_per_cta, 32);
                // bf16 with two n-tiles: 3 CTAs per SM; else 2.
                EXPECT_LE(p.ctas, (bytes == 2 && m > 8 && m <= 16 ? 3 : 2) * sms);
                EXPECT_GE(p.blocks_per_cta, bytes == 2 ? 3 : 4);
                EXPECT_TRUE(bytes == 2 || m <= 8) << "fp8 with 2+ n-tiles stays on Stream-K";
              } else {
                EXPECT_EQ(p.ctas, blocks);
                // fp8: 4 CTAs per SM with one n-tile, 3 with two; bf16: 4 with two, 3 with
                // three; else 2.
                const int per_sm = bytes == 1 ? (m <= 8 ? 4 : m <= 16 ? 3 : 2)
                                              : (m <= 8 ? 2 : m <= 16 ? 4 : m <= 24 ? 3 : 2);
                EXPECT_LE(p.ctas, per_sm * sms);
              }
              // 16-row blocks only at 4 CTAs per SM.
              EXPECT_TRUE(p.rows_per_cta != 16 || (bytes == 1 && m <= 8) ||
                          (bytes == 2 && m > 8 && m <= 16));
              EXPECT_TRUE(p.rows_per_cta != 64 || m <= 8);
              EXPECT_EQ(p.ksteps_per_cta, p.ksteps_per_tile);
              // Each of a CTA's 8 * 16 / rows_per_cta k-parts gets a ring's worth (4) of k-steps.
              EXPECT_GE(p.ksteps_per_tile, 128 / p.rows_per_cta * 4);
              EXPECT_FALSE(p.split);
              // Two-slice warps: exactly the one-wave 32-row blocks of fp8 at 25-32 tokens.
              EXPECT_EQ(p.two_slice,
                        bytes == 1 && m > 24 && p.rows_per_cta == 32 && p.blocks_per_cta == 1);
              // Its 8 k-parts each get two k-steps, the ring's depth in flight.
              if (p.two_slice) EXPECT_GE(p.ksteps_per_tile, 8 * 2);
            } else {
              EXPECT_FALSE(p.two_slice);
              EXPECT_GE(static_cast<int64_t>(p.ctas) * p.ksteps_per_cta, p.total_ksteps);
              EXPECT_LT(static_cast<int64_t>(p.ctas - 1) * p.ksteps_per_cta, p.total_ksteps);
            }
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
  EXPECT_EQ(PlanSkinnyGemm(16, 128256, 16384, 1, 132).ctas, 251);
  EXPECT_EQ(PlanSkinnyGemm(0, 1024, 1024, 2, 132).ctas, 0);
}

// Where whole rows per CTA fill the GPU, the plan is a row split (no cross-CTA reduction); Llama
// 3.1 70B on 132 SMs.
TEST(PlanSkinnyGemm, RowSplitWhereWholeRowsFillTheGpu) {
  const SkinnyGemmPlan o = PlanSkinnyGemm(1, 8192, 8192, 2, 132);  // o_proj: 256 CTAs of 32 rows
  EXPECT_EQ(o.rows_per_cta, 32);
  EXPECT_EQ(o.ctas, 256);
  EXPECT_EQ(o.workspace_bytes, 0u);
  EXPECT_EQ(PlanSkinnyGemm(32, 8192, 8192, 1, 132).rows_per_cta, 32);
  // o and down with fp8 at 25-32 tokens: two-slice warps (not at 16 tokens, not with bf16).
  EXPECT_TRUE(PlanSkinnyGemm(32, 8192, 8192, 1, 132).two_slice);
  EXPECT_TRUE(PlanSkinnyGemm(25, 8192, 28672, 1, 132).two_slice);
  EXPECT_FALSE(PlanSkinnyGemm(24, 8192, 28672, 1, 132).two_slice);
  EXPECT_FALSE(PlanSkinnyGemm(32, 8192, 8192, 2, 132).two_slice);
  EXPECT_NE(SkinnyGemmPlanDescription(PlanSkinnyGemm(32, 8192, 8192, 1, 132)).find("two-slice"),
            std::string::npos);
  // qkv: 64-row CTAs (160) with one n-tile; with fp8 weights 32-row ones (320, 4 per SM with
  // one n-tile, 3 with two).
  EXPECT_EQ(PlanSkinnyGemm(1, 10240, 8192, 2, 132).rows_per_cta, 64);
  EXPECT_EQ(PlanSkinnyGemm(1, 10240, 8192, 2, 132).ctas, 160);
  EXPECT_EQ(PlanSkinnyGemm(8, 10240, 8192, 2, 132).rows_per_cta, 64);
  // bf16 with two and three n-tiles: 320 CTAs of 32 (4 and 3 per SM); four: Stream-K.
  EXPECT_EQ(PlanSkinnyGemm(9, 10240, 8192, 2, 132).ctas, 320);
  EXPECT_EQ(PlanSkinnyGemm(9, 10240, 8192, 2, 132).rows_per_cta, 32);
  EXPECT_EQ(PlanSkinnyGemm(24, 10240, 8192, 2, 132).ctas, 320);
  EXPECT_EQ(PlanSkinnyGemm(25, 10240, 8192, 2, 132).rows_per_cta, 0);
  EXPECT_EQ(PlanSkinnyGemm(1, 10240, 8192, 1, 132).rows_per_cta, 32);
  EXPECT_EQ(PlanSkinnyGemm(8, 10240, 8192, 1, 132).ctas, 320);
  EXPECT_EQ(PlanSkinnyGemm(16, 10240, 8192, 1, 132).ctas, 320);
  EXPECT_EQ(PlanSkinnyGemm(17, 10240, 8192, 1, 132).rows_per_cta, 0);
  // o and down with fp8 and one n-tile: 512 CTAs of 16 rows.
  EXPECT_EQ(PlanSkinnyGemm(1, 8192, 8192, 1, 132).rows_per_cta, 16);
  EXPECT_EQ(PlanSkinnyGemm(8, 8192, 28672, 1, 132).ctas, 512);
  // ... and with bf16 and two n-tiles.
  EXPECT_EQ(PlanSkinnyGemm(16, 8192, 28672, 2, 132).ctas, 512);
  EXPECT_EQ(PlanSkinnyGemm(16, 8192, 28672, 2, 132).rows_per_cta, 16);
  // down_proj (896 k-steps of bf16): 32 rows at every m, both weight types past 8 tokens.
  EXPECT_EQ(PlanSkinnyGemm(1, 8192, 28672, 2, 132).rows_per_cta, 32);
  EXPECT_EQ(PlanSkinnyGemm(17, 8192, 28672, 2, 132).rows_per_cta, 32);
  EXPECT_EQ(PlanSkinnyGemm(17, 8192, 28672, 1, 132).rows_per_cta, 32);
  // gate_up and lm_head: 4+ blocks of 32 rows per CTA, as few CTAs as give the fewest rounds
  // (1792 blocks: 256 CTAs of 7; 4008: 251 of at most 16).
  const SkinnyGemmPlan gate_up = PlanSkinnyGemm(1, 57344, 8192, 2, 132);
  EXPECT_EQ(gate_up.rows_per_cta, 32);
  EXPECT_EQ(gate_up.ctas, 256);
  EXPECT_EQ(gate_up.blocks_per_cta, 7);
  EXPECT_EQ(PlanSkinnyGemm(1, 57344, 8192, 1, 132).ctas, 256);
  // bf16 with four n-tiles as well (251 CTAs of at most 16); with two and three, wide blocks
  // (below).
  EXPECT_EQ(PlanSkinnyGemm(32, 128256, 8192, 2, 132).ctas, 251);
  EXPECT_EQ(PlanSkinnyGemm(32, 57344, 8192, 2, 132).blocks_per_cta, 7);
  EXPECT_EQ(PlanSkinnyGemm(16, 57344, 8192, 2, 132).rows_per_cta, 256);
  EXPECT_EQ(PlanSkinnyGemm(24, 128256, 8192, 2, 132).rows_per_cta, 256);
  // fp8 with 2+ n-tiles (and bf16 with 2-3): each warp owns 32 rows of a 256-row block over all
  // of k, one wave for gate_up (224 CTAs), 2 blocks per CTA for the LM head (251 CTAs).
  const SkinnyGemmPlan wide = PlanSkinnyGemm(9, 57344, 8192, 1, 132);
  EXPECT_EQ(wide.rows_per_cta, 256);
  EXPECT_EQ(wide.ctas, 224);
  EXPECT_EQ(wide.blocks_per_cta, 1);
  EXPECT_TRUE(wide.two_slice);
  EXPECT_EQ(PlanSkinnyGemm(32, 57344, 8192, 1, 132).ctas, 224);
  EXPECT_EQ(PlanSkinnyGemm(16, 128256, 8192, 1, 132).rows_per_cta, 256);
  EXPECT_EQ(PlanSkinnyGemm(16, 128256, 8192, 1, 132).ctas, 251);
  EXPECT_EQ(PlanSkinnyGemm(16, 128256, 8192, 1, 132).blocks_per_cta, 2);
  EXPECT_NE(SkinnyGemmPlanDescription(wide).find("rows/block=256"), std::string::npos);
  // gemv_test's partial wide blocks: 199 CTAs of one block, 198 of two.
  EXPECT_EQ(PlanSkinnyGemm(16, 50689, 1032, 1, 132).ctas, 199);
  EXPECT_EQ(PlanSkinnyGemm(16, 50689, 1032, 1, 132).rows_per_cta, 256);
  EXPECT_EQ(PlanSkinnyGemm(32, 101000, 1032, 1, 132).ctas, 198);
  EXPECT_EQ(PlanSkinnyGemm(24, 101000, 1032, 2, 132).blocks_per_cta, 2);
  // Not with one n-tile, nor where 256-row blocks leave a quarter of the slots empty: 8B's
  // gate_up (112 blocks) and 70B's qkv (40) stay on Stream-K.
  EXPECT_EQ(PlanSkinnyGemm(8, 57344, 8192, 1, 132).rows_per_cta, 32);
  EXPECT_EQ(PlanSkinnyGemm(16, 28672, 4096, 1, 132).rows_per_cta, 0);
  EXPECT_EQ(PlanSkinnyGemm(32, 10240, 8192, 1, 132).rows_per_cta, 0);
  // Llama-3.1-8B with bf16: one wave from 3/8 of the slots (qkv 192 CTAs of 32 rows, o and down
  // 128), the strided split from 3 blocks per slot (gate_up: 896 blocks, 224 CTAs of 4); fp8
  // with one n-tile needs 4 per slot (gate_up: one wave of 448 blocks of 64 rows).
  EXPECT_EQ(PlanSkinnyGemm(1, 6144, 4096, 2, 132).ctas, 192);
  EXPECT_EQ(PlanSkinnyGemm(1, 4096, 4096, 2, 132).rows_per_cta, 32);
  EXPECT_EQ(PlanSkinnyGemm(1, 4096, 14336, 2, 132).ctas, 128);
  EXPECT_EQ(PlanSkinnyGemm(1, 28672, 4096, 2, 132).ctas, 224);
  EXPECT_EQ(PlanSkinnyGemm(1, 28672, 4096, 2, 132).blocks_per_cta, 4);
  EXPECT_EQ(PlanSkinnyGemm(1, 28672, 4096, 1, 132).blocks_per_cta, 1);
  // Too few blocks for one wave: Stream-K (64 blocks of 32 rows, 32 of 64).
  EXPECT_EQ(PlanSkinnyGemm(1, 2048, 4096, 2, 132).rows_per_cta, 0);
  // Too few k-steps for 4 k-parts of 4: Stream-K.
  EXPECT_EQ(PlanSkinnyGemm(1, 8192, 256, 2, 132).rows_per_cta, 0);
}

// Thresholds of the row split are inclusive (bf16, one token, 132 SMs: 264 slots of 2 CTAs per
// SM; 16-row blocks need 4 per SM, so 32 rows come first).
TEST(PlanSkinnyGemm, RowSplitThresholdsAreInclusive) {
  // One wave from 3/8 of the slots: 99 blocks of 32 rows (3168 rows) do; 98 do not, and their 49
  // blocks of 64 rows are under half the slots (132): Stream-K.
  EXPECT_EQ(PlanSkinnyGemm(1, 99 * 32, 4096, 2, 132).rows_per_cta, 32);
  EXPECT_EQ(PlanSkinnyGemm(1, 99 * 32, 4096, 2, 132).ctas, 99);
  EXPECT_EQ(PlanSkinnyGemm(1, 98 * 32, 4096, 2, 132).rows_per_cta, 0);
  // ... up to every slot: 264 blocks of 32 rows in 264 CTAs; one block more takes 64-row blocks
  // (ceil(8480 / 64) = 133).
  EXPECT_EQ(PlanSkinnyGemm(1, 264 * 32, 8192, 2, 132).rows_per_cta, 32);
  EXPECT_EQ(PlanSkinnyGemm(1, 264 * 32, 8192, 2, 132).ctas, 264);
  EXPECT_EQ(PlanSkinnyGemm(1, 265 * 32, 8192, 2, 132).rows_per_cta, 64);
  EXPECT_EQ(PlanSkinnyGemm(1, 265 * 32, 8192, 2, 132).ctas, 133);
  // 64-row blocks from half the slots, where 32-row ones lack k-steps (k = 256: 8 k-steps, enough
  // for the 2 k-parts of a 64-row block, not the 4 of a 32-row one): 132 blocks do, 131 do not.
  EXPECT_EQ(PlanSkinnyGemm(1, 132 * 64, 256, 2, 132).rows_per_cta, 64);
  EXPECT_EQ(PlanSkinnyGemm(1, 132 * 64, 256, 2, 132).ctas, 132);
  EXPECT_EQ(PlanSkinnyGemm(1, 131 * 64, 256, 2, 132).rows_per_cta, 0);
  // Each of 32-row blocks' 4 k-parts needs 4 k-steps: k = 512 gives 16, k = 480 15 (and 128
  // blocks of 64 rows are under 132).
  EXPECT_EQ(PlanSkinnyGemm(1, 8192, 512, 2, 132).rows_per_cta, 32);
  EXPECT_EQ(PlanSkinnyGemm(1, 8192, 480, 2, 132).rows_per_cta, 0);
  // The strided split from 3 blocks per slot: 792 blocks of 32 rows, 3 per CTA in 264 CTAs; 791
  // are neither strided nor one wave (396 blocks of 64 rows > 264): Stream-K.
  const SkinnyGemmPlan strided = PlanSkinnyGemm(1, 792 * 32, 4096, 2, 132);
  EXPECT_EQ(strided.rows_per_cta, 32);
  EXPECT_EQ(strided.blocks_per_cta, 3);
  EXPECT_EQ(strided.ctas, 264);
  EXPECT_EQ(PlanSkinnyGemm(1, 791 * 32, 4096, 2, 132).rows_per_cta, 0);
  // bf16 with two n-tiles strides over 3 CTAs per SM (396 slots), not one wave's 4: 1280 blocks
  // of 32 rows (n = 40960: 160 wide blocks, under 198) go 4 per CTA, ceil(1280 / 396), in 320.
  const SkinnyGemmPlan strided16 = PlanSkinnyGemm(16, 40960, 8192, 2, 132);
  EXPECT_EQ(strided16.rows_per_cta, 32);
  EXPECT_EQ(strided16.blocks_per_cta, 4);
  EXPECT_EQ(strided16.ctas, 320);
  // The wide split needs a ring's worth (4) of k-steps: fp8 k = 256 has 4 (224 blocks of 256
  // rows), k = 192 has 3 and, with fp8 at two n-tiles kept off 32-row blocks, runs Stream-K.
  EXPECT_EQ(PlanSkinnyGemm(16, 57344, 256, 1, 132).rows_per_cta, 256);
  EXPECT_EQ(PlanSkinnyGemm(16, 57344, 192, 1, 132).rows_per_cta, 0);
  // fp8 takes 64-row blocks up to 4 tokens only: 8B gate_up (448 blocks, 4 CTAs per SM) at 4
  // tokens; at 5, Stream-K (1792 and 896 blocks of 16 and 32 rows are more than 528 slots).
  EXPECT_EQ(PlanSkinnyGemm(4, 28672, 4096, 1, 132).rows_per_cta, 64);
  EXPECT_EQ(PlanSkinnyGemm(4, 28672, 4096, 1, 132).ctas, 448);
  EXPECT_EQ(PlanSkinnyGemm(5, 28672, 4096, 1, 132).rows_per_cta, 0);
}

// Stream-K: at most 2 CTAs per SM, each at least 4 k-steps, and a workspace of the tile counters
// (4 bytes each, 256-byte aligned) then 2 partial slots per CTA (a range can cut a tile at both
// ends), each 8 warps x n-tiles x 32 lanes x 16 bytes.
TEST(PlanSkinnyGemm, StreamKGridAndWorkspace) {
  // 1024 x 28672 bf16: 8 tiles of 896 k-steps (7168); 264 CTAs would take ceil(7168 / 264) = 28
  // each, so 256 CTAs, and 28 is no multiple of 896: split.
  const SkinnyGemmPlan p = PlanSkinnyGemm(1, 1024, 28672, 2, 132);
  EXPECT_EQ(p.rows_per_cta, 0);
  EXPECT_EQ(p.ksteps_per_cta, 28);
  EXPECT_EQ(p.ctas, 256);
  EXPECT_TRUE(p.split);
  // 256 + 256 * 2 * 8 * 1 * 32 * 16.
  EXPECT_EQ(p.workspace_bytes, 256u + 2097152u);
  // At 32 tokens (4 n-tiles, no row split for bf16) the same grid, four times the partials; fp8
  // (3584 k-steps, 14 per CTA) the same, so SkinnyGemmWorkspaceBytes too.
  EXPECT_EQ(PlanSkinnyGemm(32, 1024, 28672, 2, 132).workspace_bytes, 256u + 8388608u);
  EXPECT_EQ(SkinnyGemmWorkspaceBytes(32, 1024, 28672, 132), 256u + 8388608u);
  EXPECT_EQ(SkinnyGemmWorkspaceBytes(1, 1024, 28672, 132), 256u + 2097152u);
  // 512 tiles of 8 k-steps (k = 256, too few for 32-row blocks): 16 per CTA, two whole tiles.
  const SkinnyGemmPlan whole = PlanSkinnyGemm(32, 65536, 256, 2, 132);
  EXPECT_EQ(whole.ctas, 256);
  EXPECT_EQ(whole.ksteps_per_cta, 16);
  EXPECT_FALSE(whole.split);
  EXPECT_EQ(whole.workspace_bytes, 0u);
}

TEST(PlanSkinnyGemm, NonPositiveSmCountMeansAnH100) {
  // 70B o_proj: 256 blocks of 32 rows fill one wave of 264 slots only with 132 SMs.
  for (int sms : {0, -1}) {
    const SkinnyGemmPlan p = PlanSkinnyGemm(1, 8192, 8192, 2, sms);
    EXPECT_EQ(p.rows_per_cta, 32) << sms;
    EXPECT_EQ(p.ctas, 256) << sms;
  }
}

TEST(PlanSkinnyGemm, InvalidArgumentsGiveAZeroPlan) {
  for (auto [m, n, k, bytes] : {std::tuple<int64_t, int64_t, int64_t, int>{0, 1024, 1024, 2},
                                {33, 1024, 1024, 2}, {1, 0, 1024, 2}, {1, 1024, 0, 2},
                                {1, 1024, 4, 2}, {1, 1024, 1024, 0}, {1, 1024, 1024, 4}}) {
    SCOPED_TRACE(absl::StrCat("m=", m, " n=", n, " k=", k, " bytes=", bytes));
    const SkinnyGemmPlan p = PlanSkinnyGemm(m, n, k, bytes, 132);
    EXPECT_EQ(p.ctas, 0);
    EXPECT_EQ(p.workspace_bytes, 0u);
  }
}

TEST(SkinnyGemmPlanDescription, NamesTheSplit) {
  EXPECT_EQ(SkinnyGemmPlanDescription(PlanSkinnyGemm(1, 1024, 28672, 2, 132)),
            "ctas=256 ksteps/cta=28 tiles=8x896 split");
  EXPECT_EQ(SkinnyGemmPlanDescription(PlanSkinnyGemm(32, 65536, 256, 2, 132)),
            "ctas=256 ksteps/cta=16 tiles=512x8 whole-tiles");
  // 70B o_proj and gate_up (1792 blocks, 7 per CTA) with bf16 at one token.
  EXPECT_EQ(SkinnyGemmPlanDescription(PlanSkinnyGemm(1, 8192, 8192, 2, 132)),
            "ctas=256 rows/block=32 blocks/cta=1 tiles=64x256 row-split");
  EXPECT_EQ(SkinnyGemmPlanDescription(PlanSkinnyGemm(1, 57344, 8192, 2, 132)),
            "ctas=256 rows/block=32 blocks/cta=7 tiles=448x256 row-split");
}

}  // namespace
}  // namespace truthput
