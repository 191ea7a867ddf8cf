// GPU tests of the embedding lookup and the token ids it is fed: rows gathered bit for bit on
// both copy paths (16-byte and element-wise), zeros for ids outside the table, and ids in range.
#include "kernels/embedding.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/gpu_test_util.h"
#include "kernels/random_fill.h"

namespace truthput {
namespace {

std::vector<uint16_t> Bits(const __nv_bfloat16* d, int64_t n) {
  std::vector<uint16_t> h(static_cast<size_t>(n));
  EXPECT_EQ(cudaMemcpy(h.data(), d, n * sizeof(uint16_t), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

TEST(EmbeddingGather, CopiesTheRowsOfTheIdsAndZerosForBadIds) {
  TestStream stream;
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  // 8192 and 64: the 16-byte path; 13 and 100: element by element.
  for (int cols : {8192, 64, 13, 100}) {
    SCOPED_TRACE(testing::Message() << "cols " << cols);
    constexpr int kVocab = 37;
    const std::vector<int32_t> ids = {0, 36, 5, 5, -1, 37, 1 << 30, 17};
    const int rows = static_cast<int>(ids.size());
    DevicePtr<__nv_bfloat16> table = DeviceAlloc<__nv_bfloat16>(int64_t{kVocab} * cols);
    DevicePtr<__nv_bfloat16> out = DeviceAlloc<__nv_bfloat16>(int64_t{rows} * cols);
    DevicePtr<int32_t> d_ids = DeviceAlloc<int32_t>(rows);
    ASSERT_TRUE(table && out && d_ids);
    ASSERT_OK(FillRandomBf16(table.get(), int64_t{kVocab} * cols, seed + cols, 1.0f, stream.get()));
    ASSERT_OK(FillBf16(out.get(), int64_t{rows} * cols, NAN, stream.get()));
    ASSERT_CUDA(cudaMemcpyAsync(d_ids.get(), ids.data(), rows * sizeof(int32_t),
                                cudaMemcpyHostToDevice, stream.get()));
    ASSERT_OK(EmbeddingGather(table.get(), d_ids.get(), out.get(), rows, cols, kVocab,
                              stream.get()));
    ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
    const std::vector<uint16_t> t = Bits(table.get(), int64_t{kVocab} * cols);
    const std::vector<uint16_t> got = Bits(out.get(), int64_t{rows} * cols);
    for (int r = 0; r < rows; ++r) {
      const bool valid = ids[r] >= 0 && ids[r] < kVocab;
      for (int c = 0; c < cols; ++c) {
        const uint16_t want = valid ? t[static_cast<size_t>(ids[r]) * cols + c] : 0;
        ASSERT_EQ(got[static_cast<size_t>(r) * cols + c], want)
            << "row " << r << " (id " << ids[r] << ") col " << c;
      }
    }
  }
}

TEST(EmbeddingGather, RefusesBadShapesAndMisalignedRows) {
  DevicePtr<__nv_bfloat16> table = DeviceAlloc<__nv_bfloat16>(64);
  DevicePtr<__nv_bfloat16> out = DeviceAlloc<__nv_bfloat16>(64);
  DevicePtr<int32_t> ids = DeviceAlloc<int32_t>(1);
  ASSERT_TRUE(table && out && ids);
  EXPECT_EQ(EmbeddingGather(table.get(), ids.get(), out.get(), -1, 8, 4, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EmbeddingGather(table.get(), ids.get(), out.get(), 1, 0, 4, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EmbeddingGather(table.get(), ids.get(), out.get(), 1, 8, 0, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EmbeddingGather(table.get() + 1, ids.get(), out.get(), 1, 8, 4, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(FillRandomTokenIds, IdsAreInRangeAndSpread) {
  TestStream stream;
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  constexpr int kN = 4099, kVocab = 128256;
  DevicePtr<int32_t> ids = DeviceAlloc<int32_t>(kN);
  ASSERT_TRUE(ids);
  ASSERT_CUDA(cudaMemsetAsync(ids.get(), 0xFF, kN * sizeof(int32_t), stream.get()));  // -1
  ASSERT_OK(FillRandomTokenIds(ids.get(), kN, kVocab, seed, stream.get()));
  std::vector<int32_t> h(kN);
  ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
  ASSERT_CUDA(cudaMemcpy(h.data(), ids.get(), kN * sizeof(int32_t), cudaMemcpyDeviceToHost));
  std::vector<int> per_eighth(8, 0);
  for (int i = 0; i < kN; ++i) {
    ASSERT_GE(h[i], 0) << i;
    ASSERT_LT(h[i], kVocab) << i;
    ++per_eighth[static_cast<size_t>(h[i]) * 8 / kVocab];
  }
  // Uniform ids put about 512 in each eighth of the vocabulary; a constant or a stuck high bit
  // would not (the bound is more than 8 standard deviations wide).
  for (int e = 0; e < 8; ++e) EXPECT_GT(per_eighth[e], 320) << "eighth " << e;
  // The same seed gives the same ids (the step's token ids are reproducible).
  DevicePtr<int32_t> again = DeviceAlloc<int32_t>(kN);
  ASSERT_TRUE(again);
  ASSERT_OK(FillRandomTokenIds(again.get(), kN, kVocab, seed, stream.get()));
  std::vector<int32_t> h2(kN);
  ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
  ASSERT_CUDA(cudaMemcpy(h2.data(), again.get(), kN * sizeof(int32_t), cudaMemcpyDeviceToHost));
  EXPECT_EQ(h, h2);
}

}  // namespace
}  // namespace truthput
