// Host-only tests (no GPU needed): the decode split policy, the workspace size, and argument
// validation, which DecodeAttention does before any CUDA call.
#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/decode_attention.h"

namespace truthput {
namespace {

TEST(ChooseDecodeSplitsTest, Properties) {
  for (double gbps : {0.0, 2039.0, 3352.0, 4917.0, 8000.0}) {
    for (int sms : {1, 8, 78, 114, 132, 148}) {
      for (int batch : {1, 2, 3, 8, 16, 17, 64, 256}) {
        for (int hkv : {1, 2, 8, 16}) {
          for (int kv_len : {1, 7, 255, 256, 511, 1000, 2048, 4097, 32768, 131072}) {
            SCOPED_TRACE(testing::Message() << "gbps=" << gbps << " sms=" << sms << " batch="
                                            << batch << " hkv=" << hkv << " kv_len=" << kv_len);
            const int s = ChooseDecodeSplits(batch, hkv, kv_len, sms, gbps);
            ASSERT_GE(s, 1);
            EXPECT_LE(s, kDecodeMaxSplits);
            const int64_t ctas = static_cast<int64_t>(batch) * hkv;
            if (ctas >= sms || (ctas >= kDecodeNoSplitCtas && ctas * kDecodeCtaGbps >= gbps)) {
              EXPECT_EQ(s, 1);  // enough CTAs to fill the SMs or to drain the memory
            }
            if (s > 1) {
              EXPECT_LE(ctas * s, sms);                        // about one CTA per SM
              EXPECT_GE(kv_len / s, kDecodeMinKeysPerSplit);    // splits are not tiny
              if (ctas >= kDecodeNoSplitCtas) EXPECT_GE(kv_len / s, kDecodeMinKeysPerDrainSplit);
            }
            // Faster memory never means fewer splits.
            EXPECT_GE(ChooseDecodeSplits(batch, hkv, kv_len, sms, gbps + 1000), s);
          }
        }
      }
    }
  }
}

TEST(ChooseDecodeSplitsTest, TypicalLlama70BShapes) {
  // 8 KV heads on 132 SMs: one sequence takes 16 splits (128 CTAs) from 1024 keys, fewer below;
  // 2 and 4 sequences 8 and 4; on an H100 (3352 GB/s) 8 sequences (64 CTAs) and more none, on
  // an H200 (4917 GB/s) 8 sequences 2 from 1024 keys and 16 none. Degenerate arguments give 1;
  // 0 SMs means an H100, unknown bandwidth the H100's policy.
  struct Case {
    int batch, kv_len, sms;
    double gbps;
    int want;
  };
  for (const Case& c :
       {Case{1, 131072, 132, 3352, 16}, Case{1, 1024, 132, 3352, 16}, Case{1, 512, 132, 3352, 8},
        Case{1, 100, 132, 3352, 1}, Case{2, 4096, 132, 3352, 8}, Case{3, 4097, 132, 3352, 5},
        Case{4, 4096, 132, 3352, 4}, Case{7, 4096, 132, 3352, 2}, Case{8, 4096, 132, 3352, 1},
        Case{16, 4096, 132, 3352, 1}, Case{0, 4096, 132, 3352, 1}, Case{1, 0, 132, 3352, 1},
        Case{4, 131072, 0, 3352, 4}, Case{8, 4096, 132, 4917, 2}, Case{8, 512, 132, 4917, 1},
        Case{8, 1024, 132, 4917, 2}, Case{16, 4096, 132, 4917, 1}, Case{1, 4096, 132, 4917, 16},
        Case{8, 4096, 132, 0, 1}, Case{8, 4096, 132, -1, 1}, Case{1, 4096, 132, 0, 16}}) {
    EXPECT_EQ(ChooseDecodeSplits(c.batch, 8, c.kv_len, c.sms, c.gbps), c.want)
        << "batch=" << c.batch << " kv_len=" << c.kv_len << " sms=" << c.sms
        << " gbps=" << c.gbps;
  }
}

TEST(ChooseDecodeSplitsTest, NoKvHeadsGiveOneSplit) {
  EXPECT_EQ(ChooseDecodeSplits(1, 0, 4096, 132, 3352), 1);
  EXPECT_EQ(ChooseDecodeSplits(1, -8, 4096, 132, 3352), 1);
}

// From kDecodeNoSplitCtas CTAs, a split only where the memory is faster than the CTAs drain: 65
// CTAs drain 65 * 57 GB/s. Just past that, 2 splits (132 / 65 CTAs per SM; 4096 / 512 keys).
TEST(ChooseDecodeSplitsTest, SplitsOnlyWhereMemoryOutrunsTheCtas) {
  EXPECT_EQ(ChooseDecodeSplits(65, 1, 4096, 132, 65 * kDecodeCtaGbps), 1);
  EXPECT_EQ(ChooseDecodeSplits(65, 1, 4096, 132, 65 * kDecodeCtaGbps + 1), 2);
  // Below kDecodeNoSplitCtas the bandwidth does not matter: 60 CTAs split in 2 on an H100 too,
  // though 60 * 57 GB/s is past its 3352.
  EXPECT_EQ(ChooseDecodeSplits(60, 1, 4096, 132, 3352), 2);
}

TEST(DecodeAttentionWorkspaceBytesTest, Sizes) {
  EXPECT_EQ(DecodeAttentionWorkspaceBytes(4, 64, 128, 1), 0u);
  EXPECT_EQ(DecodeAttentionWorkspaceBytes(4, 64, 128, 7), 4u * 64 * 7 * 130 * sizeof(float));
  EXPECT_EQ(DecodeAttentionWorkspaceBytes(1, 8, 64, 2), 1u * 8 * 2 * 66 * sizeof(float));
}

TEST(DecodeAttentionTest, RejectsBadArguments) {
  // Never dereferenced: validation fails first.
  auto* p = reinterpret_cast<__nv_bfloat16*>(uintptr_t{1} << 20);
  auto* ws = reinterpret_cast<float*>(uintptr_t{1} << 21);
  auto call = [&](int hq, int hkv, int d, int kv_len, int cap, int splits, float* w) {
    return DecodeAttention(p, p, p, p, 1, hq, hkv, d, kv_len, cap, 0.1f, splits, w, nullptr)
        .code();
  };
  constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(call(64, 8, 128, 0, 16, 1, nullptr), kInvalid);    // kv_len = 0
  EXPECT_EQ(call(64, 8, 128, 17, 16, 1, nullptr), kInvalid);   // kv_len > capacity
  EXPECT_EQ(call(64, 8, 96, 16, 16, 1, nullptr), kInvalid);    // head_dim
  EXPECT_EQ(call(64, 6, 128, 16, 16, 1, nullptr), kInvalid);   // Hq % Hkv
  EXPECT_EQ(call(64, 8, 128, 16, 16, 0, nullptr), kInvalid);   // num_splits
  EXPECT_EQ(call(64, 8, 128, 16, 16, 2, nullptr), kInvalid);   // no workspace
  EXPECT_EQ(call(64, 8, 128, 16, 16, kDecodeMaxSplits + 1, ws), kInvalid);
  EXPECT_EQ(DecodeAttention(p + 1, p, p, p, 1, 64, 8, 128, 16, 16, 0.1f, 2, ws, nullptr).code(),
            kInvalid);  // misaligned q
  EXPECT_EQ(DecodeAttention(p, p + 4, p, p, 1, 64, 8, 128, 16, 16, 0.1f, 2, ws, nullptr).code(),
            kInvalid);  // misaligned K cache
  EXPECT_EQ(DecodeAttention(p, p, p, p + 4, 1, 64, 8, 128, 16, 16, 0.1f, 2, ws, nullptr).code(),
            kInvalid);  // out not 16-byte aligned (as the caches must be)
  EXPECT_EQ(DecodeAttention(p, p, p, p, 1, 64, 8, 128, 16, 16, 0.1f, 2, ws + 1, nullptr).code(),
            kInvalid);  // workspace not 16-byte aligned
  EXPECT_EQ(DecodeAttention(p, p, p + 4, p, 1, 64, 8, 128, 16, 16, 0.1f, 2, ws, nullptr).code(),
            kInvalid);  // misaligned V cache
  for (int i = 0; i < 4; ++i) {
    __nv_bfloat16* ptrs[4] = {p, p, p, p};
    ptrs[i] = nullptr;
    EXPECT_EQ(DecodeAttention(ptrs[0], ptrs[1], ptrs[2], ptrs[3], 1, 64, 8, 128, 16, 16, 0.1f, 1,
                              nullptr, nullptr)
                  .code(),
              kInvalid)
        << "null pointer " << i;
  }
  // 2^28 sequences x 8 KV heads is 2^31 CTAs, one past what a grid holds.
  EXPECT_EQ(
      DecodeAttention(p, p, p, p, 1 << 28, 64, 8, 128, 16, 16, 0.1f, 1, nullptr, nullptr).code(),
      kInvalid);
}

// An empty batch is valid and touches nothing, so validation's bounds can be checked on the host
// with null pointers: what it lets through returns OK.
TEST(DecodeAttentionTest, EmptyBatchValidatesItsArguments) {
  auto call = [](int d, int kv_len, int splits, float scale) {
    return DecodeAttention(nullptr, nullptr, nullptr, nullptr, 0, 64, 8, d, kv_len, 16, scale,
                           splits, nullptr, nullptr)
        .code();
  };
  EXPECT_EQ(call(64, 16, 1, 0.1f), absl::StatusCode::kOk);  // kv_len == cache_capacity
  EXPECT_EQ(call(128, 1, kDecodeMaxSplits, 0.1f), absl::StatusCode::kOk);
  EXPECT_EQ(call(128, 16, 1, std::nanf("")), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(call(128, 16, 1, std::numeric_limits<float>::infinity()),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(call(128, 17, 1, 0.1f), absl::StatusCode::kInvalidArgument);  // still checked
}

}  // namespace
}  // namespace truthput
