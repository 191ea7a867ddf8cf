// GPU test of StreamRead, the ceiling bench_kernels rates every kernel against: a read that
// skipped part of its buffer would raise the ceiling and lower every percentage beside it. In a
// buffer of zeros, one word set to kStreamReadSinkTrigger makes the thread that reads it write
// the sink, so the sink shows whether that place was read.
#include "kernels/stream_read.h"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/gpu_test_util.h"

namespace truthput {
namespace {

class StreamReadTest : public ::testing::Test {
 protected:
  // The sink's bits after one StreamRead of the buffer with `word` (a 32-bit word index, or -1
  // for none) set to `value`; the sink starts as all ones, which the kernel never writes.
  uint32_t SinkAfterRead(uint8_t* buf, int64_t bytes, uint32_t* sink, int64_t word,
                         uint32_t value) {
    uint32_t bits = 0xFFFFFFFFu;
    EXPECT_EQ(cudaMemsetAsync(buf, 0, bytes, stream_.get()), cudaSuccess);
    EXPECT_EQ(cudaMemcpyAsync(sink, &bits, 4, cudaMemcpyHostToDevice, stream_.get()), cudaSuccess);
    if (word >= 0) {
      EXPECT_EQ(cudaMemcpyAsync(buf + 4 * word, &value, 4, cudaMemcpyHostToDevice, stream_.get()),
                cudaSuccess);
    }
    const absl::Status st = StreamRead(buf, bytes, reinterpret_cast<float*>(sink), stream_.get());
    EXPECT_TRUE(st.ok()) << st;
    EXPECT_EQ(cudaMemcpyAsync(&bits, sink, 4, cudaMemcpyDeviceToHost, stream_.get()), cudaSuccess);
    EXPECT_EQ(cudaStreamSynchronize(stream_.get()), cudaSuccess);
    return bits;
  }

  TestStream stream_;
};

TEST_F(StreamReadTest, ReadsEveryPlaceOfTheBuffer) {
  // The grid is 2 CTAs of 1024 threads per SM; each thread takes 4 vectors a stride apart per
  // iteration, then one at a time, then block 0 takes the byte tail. Cover all three.
  const int64_t stride = int64_t{2} * 1024 * SmCount();
  const int64_t vecs = 9 * stride + 5;  // two unrolled iterations, one vector per thread, 5 more
  const int64_t bytes = 16 * vecs + 11;
  DevicePtr<uint8_t> buf = DeviceAlloc<uint8_t>(bytes);
  DevicePtr<uint32_t> sink = DeviceAlloc<uint32_t>(1);
  ASSERT_TRUE(buf && sink);
  EXPECT_EQ(SinkAfterRead(buf.get(), bytes, sink.get(), -1, 0), 0xFFFFFFFFu)
      << "zeros must not write the sink";

  std::vector<int64_t> words = {0, 3, 4 * stride - 1, 4 * stride, 8 * stride + 7,
                                4 * (8 * stride) + 1, 4 * (9 * stride) - 1, 4 * (9 * stride),
                                4 * vecs - 1};
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 24; ++i) words.push_back(static_cast<int64_t>(rng() % (4 * vecs)));
  for (int64_t w : words) {
    EXPECT_EQ(SinkAfterRead(buf.get(), bytes, sink.get(), w, kStreamReadSinkTrigger),
              kStreamReadSinkTrigger)
        << "word " << w << " of " << 4 * vecs << " was not read";
    // The same place holding another value must leave the sink alone (the write is the fold's).
    EXPECT_EQ(SinkAfterRead(buf.get(), bytes, sink.get(), w, kStreamReadSinkTrigger ^ 1),
              0xFFFFFFFFu)
        << "word " << w;
  }
}

TEST_F(StreamReadTest, FoldsTheByteTail) {
  // 16 * 3 + 7 bytes: thread t < 7 of block 0 reads vector t (if any) and tail byte t. Vector 2's
  // first word holds the trigger with its low byte cleared; tail byte 2 supplies it.
  constexpr int64_t kBytes = 16 * 3 + 7;
  DevicePtr<uint8_t> buf = DeviceAlloc<uint8_t>(64);
  DevicePtr<uint32_t> sink = DeviceAlloc<uint32_t>(1);
  ASSERT_TRUE(buf && sink);
  const uint32_t low = kStreamReadSinkTrigger & 0xFFu;
  ASSERT_NE(low, 0u);
  uint32_t bits = 0xFFFFFFFFu;
  const uint32_t high = kStreamReadSinkTrigger & ~0xFFu;
  const uint8_t tail_byte = static_cast<uint8_t>(low);
  ASSERT_CUDA(cudaMemset(buf.get(), 0, 64));
  ASSERT_CUDA(cudaMemcpy(sink.get(), &bits, 4, cudaMemcpyHostToDevice));
  ASSERT_CUDA(cudaMemcpy(buf.get() + 32, &high, 4, cudaMemcpyHostToDevice));
  ASSERT_CUDA(cudaMemcpy(buf.get() + 48 + 2, &tail_byte, 1, cudaMemcpyHostToDevice));
  ASSERT_OK(StreamRead(buf.get(), kBytes, reinterpret_cast<float*>(sink.get()), stream_.get()));
  ASSERT_CUDA(cudaStreamSynchronize(stream_.get()));
  ASSERT_CUDA(cudaMemcpy(&bits, sink.get(), 4, cudaMemcpyDeviceToHost));
  EXPECT_EQ(bits, kStreamReadSinkTrigger) << "tail byte 2 was not folded";
}

TEST_F(StreamReadTest, RefusesBadArguments) {
  DevicePtr<uint8_t> buf = DeviceAlloc<uint8_t>(64);
  DevicePtr<uint32_t> sink = DeviceAlloc<uint32_t>(1);
  ASSERT_TRUE(buf && sink);
  float* s = reinterpret_cast<float*>(sink.get());
  EXPECT_EQ(StreamRead(buf.get(), -1, s, stream_.get()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StreamRead(buf.get() + 4, 16, s, stream_.get()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StreamRead(buf.get(), 16, nullptr, stream_.get()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(StreamRead(buf.get(), 0, s, stream_.get()).ok());
}

}  // namespace
}  // namespace truthput
