// GPU tests of DecodeAttention against a double-precision CPU softmax attention computed from the
// same bf16 q/K/V. The output is poisoned with NaN, the fp32 workspace filled with NaN bytes and
// cache positions [kv_len, cache_capacity) set to NaN, so any element the kernels skip, any
// workspace slot the merge reads without it being written, and any key read past kv_len shows.
#include "kernels/decode_attention.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <random>
#include <set>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bench/device_info.h"
#include "gtest/gtest.h"
#include "kernels/attention_test_util.h"
#include "kernels/gpu_test_util.h"
#include "kernels/random_fill.h"

namespace truthput {
namespace {

using bf16 = __nv_bfloat16;

// The current device's peak DRAM bandwidth, as the benchmarks give it to the split policy.
double PeakGbps() {
  int device = 0;
  EXPECT_EQ(cudaGetDevice(&device), cudaSuccess);
  absl::StatusOr<DeviceIdentity> id = ReadDeviceIdentity(device);
  EXPECT_TRUE(id.ok()) << id.status();
  return id.ok() ? DramPeakGbps(*id) : 0.0;
}

struct AttnCase {
  int batch, hq, hkv, head_dim, kv_len;
  int splits;            // 0: ChooseDecodeSplits
  float q_scale = 1.0f;  // larger: peakier softmax (exercises the running-max rescaling)
};

std::ostream& operator<<(std::ostream& os, const AttnCase& c) {
  return os << "batch=" << c.batch << " Hq=" << c.hq << " Hkv=" << c.hkv << " d=" << c.head_dim
            << " kv_len=" << c.kv_len << " splits=" << c.splits << " q_scale=" << c.q_scale;
}

// One case's inputs (the cache 3 positions longer than the context) and its reference.
class AttnFixture : public AttentionInputs {
 public:
  AttnFixture(const AttnCase& c, uint64_t seed, cudaStream_t stream)
      : AttentionInputs(c.batch, /*q_len=*/1, c.hq, c.hkv, c.head_dim, c.kv_len, c.kv_len + 3,
                        c.q_scale, seed, stream),
        c_(c) {}

  // softmax(scale * q.K^T) V in double over keys [0, kv_len), every row.
  std::vector<double> Reference() const {
    std::vector<double> out(q_elems());
    for (int b = 0; b < c_.batch; ++b) {
      for (int h = 0; h < c_.hq; ++h) ReferenceRow(b, 0, h, c_.kv_len, out.data() + Row(b, 0, h));
    }
    return out;
  }

 private:
  AttnCase c_;
};

class DecodeAttentionTest : public ::testing::TestWithParam<AttnCase> {
 protected:
  const TestStream owned_stream_{cudaStreamDefault};
  const cudaStream_t stream_ = owned_stream_.get();
};

TEST_P(DecodeAttentionTest, MatchesReference) {
  const AttnCase& c = GetParam();
  SCOPED_TRACE(testing::Message() << c);
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  AttnFixture f(c, seed, stream_);
  const int splits =
      c.splits > 0 ? c.splits : ChooseDecodeSplits(c.batch, c.hkv, c.kv_len, SmCount(), PeakGbps());
  ASSERT_GE(splits, 1);
  const size_t ws_bytes = DecodeAttentionWorkspaceBytes(c.batch, c.hq, c.head_dim, splits);
  EXPECT_EQ(ws_bytes == 0, splits == 1);
  DeviceMem ws(ws_bytes);
  if (ws_bytes > 0) {
    ASSERT_CUDA(cudaMemsetAsync(ws.as<float>(), 0xFF, ws_bytes, stream_));
  }
  const std::vector<double> want = f.Reference();
  // Run twice: the second run must not depend on what the first left in the workspace.
  for (int run = 0; run < 2; ++run) {
    SCOPED_TRACE(testing::Message() << "run " << run << " splits=" << splits);
    ASSERT_OK(FillBf16(f.out(), f.q_elems(), NAN, stream_));
    ASSERT_OK(DecodeAttention(f.q(), f.k(), f.v(), f.out(), c.batch, c.hq, c.hkv, c.head_dim,
                              c.kv_len, f.capacity(), f.scale(), splits, ws.as<float>(), stream_));
    ASSERT_CUDA(cudaStreamSynchronize(stream_));
    ExpectAttentionClose(ToHost(f.out(), f.q_elems()), want, c.head_dim);
  }
}

std::vector<AttnCase> Llama70BCases() {
  std::vector<AttnCase> cases;
  for (int kv_len : {1, 7, 129, 1000, 2048, 4097}) {
    for (int batch : {1, 3}) {
      for (int splits : {0, 1, 7}) cases.push_back({batch, 64, 8, 128, kv_len, splits});
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Llama70B, DecodeAttentionTest, testing::ValuesIn(Llama70BCases()));

INSTANTIATE_TEST_SUITE_P(
    OtherShapes, DecodeAttentionTest,
    testing::Values(AttnCase{2, 8, 8, 128, 1000, 0},     // no GQA
                    AttnCase{2, 8, 8, 128, 1000, 3},     //
                    AttnCase{2, 32, 8, 64, 777, 0},      // head_dim 64, group 4
                    AttnCase{2, 32, 8, 64, 777, 5},      //
                    AttnCase{1, 16, 16, 64, 5000, 0},    // head_dim 64, no GQA
                    AttnCase{1, 128, 8, 128, 2049, 0},   // group 16 (Llama-405B)
                    AttnCase{1, 128, 8, 128, 2049, 1},   //
                    AttnCase{2, 48, 2, 128, 300, 1},     // group 24: two head tiles, one partial
                    AttnCase{2, 48, 2, 128, 300, 3},     //
                    AttnCase{2, 48, 2, 128, 5000, 16},   // two head tiles, the most splits
                    AttnCase{1, 64, 8, 128, 100, 16},    // more splits than tiles
                    AttnCase{1, 64, 8, 128, 32768, 0},   // long context, many splits
                    AttnCase{1, 8, 1, 128, 20000, 0},    // one KV head: chooser's cap
                    AttnCase{1, 8, 1, 64, 9000, 13},     // head_dim 64, splits not a power of 2
                    AttnCase{8, 64, 8, 128, 515, 0}));   // batch * Hkv < SMs, short context

INSTANTIATE_TEST_SUITE_P(
    Peaky, DecodeAttentionTest,
    testing::Values(AttnCase{3, 64, 8, 128, 4097, 0, 8.0f}, AttnCase{3, 64, 8, 128, 4097, 1, 8.0f},
                    AttnCase{3, 64, 8, 128, 4097, 7, 8.0f}, AttnCase{1, 8, 8, 64, 1500, 0, 8.0f}));

TEST(DecodeAttentionGraphTest, CapturesInCudaGraph) {
  const AttnCase c{3, 64, 8, 128, 1000, 7};
  const TestStream owned_stream(cudaStreamDefault);  // orders with the legacy default stream
  cudaStream_t stream = owned_stream.get();
  AttnFixture f(c, 77, stream);
  const size_t ws_bytes = DecodeAttentionWorkspaceBytes(c.batch, c.hq, c.head_dim, c.splits);
  DeviceMem ws(ws_bytes);
  // NaN in the workspace, as in the eager test: a graph must not read partials it did not write.
  ASSERT_CUDA(cudaMemsetAsync(ws.as<float>(), 0xFF, ws_bytes, stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));

  cudaGraph_t graph;
  ASSERT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  const absl::Status fill = FillBf16(f.out(), f.q_elems(), NAN, stream);
  const absl::Status attn =
      DecodeAttention(f.q(), f.k(), f.v(), f.out(), c.batch, c.hq, c.hkv, c.head_dim, c.kv_len,
                      f.capacity(), f.scale(), c.splits, ws.as<float>(), stream);
  ASSERT_CUDA(cudaStreamEndCapture(stream, &graph));
  ASSERT_OK(fill);
  ASSERT_OK(attn);
  cudaGraphExec_t exec;
  ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  const std::vector<double> want = f.Reference();
  for (int i = 0; i < 2; ++i) {
    ASSERT_CUDA(cudaGraphLaunch(exec, stream));
    ASSERT_CUDA(cudaStreamSynchronize(stream));
    ExpectAttentionClose(ToHost(f.out(), f.q_elems()), want, c.head_dim);
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

// Every key counted exactly once, at long contexts too. With V zero at every position but one
// (the needle, all ones), each output element is that key's softmax weight, about 1/kv_len: a key
// dropped or counted twice (at a split or tile boundary, in the context's partial last tile)
// moves it by 100%, where with random V it would move an output by about 1/kv_len of its scale,
// under any per-element bound. Needles at both ends, either side of every split boundary (a whole
// number of 16-key tiles, as DecodeAttention cuts the context) and of the first tile, and at
// random positions.
TEST(DecodeAttentionNeedleTest, CountsEveryKeyExactlyOnce) {
  const TestStream owned_stream(cudaStreamDefault);
  cudaStream_t stream = owned_stream.get();
  for (const AttnCase& c : {AttnCase{1, 64, 8, 128, 32768, 0}, AttnCase{1, 64, 8, 128, 32768, 7},
                            AttnCase{2, 64, 8, 128, 4097, 0}, AttnCase{2, 64, 8, 128, 4097, 16}}) {
    const uint64_t seed = FreshSeed();
    SCOPED_TRACE(testing::Message() << c << " seed " << seed);
    AttnFixture f(c, seed, stream);
    const int splits = c.splits > 0 ? c.splits
                                    : ChooseDecodeSplits(c.batch, c.hkv, c.kv_len, SmCount(),
                                                         PeakGbps());
    const size_t ws_bytes = DecodeAttentionWorkspaceBytes(c.batch, c.hq, c.head_dim, splits);
    DeviceMem ws(ws_bytes);
    // V of its own: zero over the context, NaN past it.
    const int64_t row = c.head_dim;
    const int64_t head_elems = static_cast<int64_t>(f.capacity()) * row;
    const int64_t heads = static_cast<int64_t>(c.batch) * c.hkv;
    DeviceMem v(heads * head_elems * sizeof(bf16));
    bf16* const vp = v.as<bf16>();
    ASSERT_OK(FillBf16(vp, heads * head_elems, NAN, stream));
    for (int64_t bh = 0; bh < heads; ++bh) {
      ASSERT_OK(FillBf16(vp + bh * head_elems, c.kv_len * row, 0.0f, stream));
    }
    std::vector<std::vector<double>> weights;  // [b * hq + h][key]
    for (int b = 0; b < c.batch; ++b) {
      for (int h = 0; h < c.hq; ++h) weights.push_back(f.Weights(b, 0, h, c.kv_len));
    }
    std::set<int> needles = {0, 1, 15, 16, c.kv_len - 2, c.kv_len - 1};
    const int keys_per_split = ((c.kv_len + splits - 1) / splits + 15) / 16 * 16;
    for (int s = 1; s < splits; ++s) {
      needles.insert({s * keys_per_split - 1, s * keys_per_split});
    }
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 8; ++i) needles.insert(static_cast<int>(rng() % c.kv_len));
    for (const int at : needles) {
      if (at < 0 || at >= c.kv_len) continue;
      SCOPED_TRACE(testing::Message() << "needle at key " << at << " of " << c.kv_len << ", "
                                      << splits << " splits");
      for (int64_t bh = 0; bh < heads; ++bh) {
        ASSERT_OK(FillBf16(vp + bh * head_elems + at * row, row, 1.0f, stream));
      }
      if (ws_bytes > 0) ASSERT_CUDA(cudaMemsetAsync(ws.as<float>(), 0xFF, ws_bytes, stream));
      ASSERT_OK(FillBf16(f.out(), f.q_elems(), NAN, stream));
      ASSERT_OK(DecodeAttention(f.q(), f.k(), vp, f.out(), c.batch, c.hq, c.hkv, c.head_dim,
                                c.kv_len, f.capacity(), f.scale(), splits, ws.as<float>(),
                                stream));
      ASSERT_CUDA(cudaStreamSynchronize(stream));
      std::vector<double> want(f.q_elems());
      for (int b = 0; b < c.batch; ++b) {
        for (int h = 0; h < c.hq; ++h) {
          std::fill_n(want.begin() + f.Row(b, 0, h), row, weights[b * c.hq + h][at]);
        }
      }
      ExpectAttentionClose(ToHost(f.out(), f.q_elems()), want, c.head_dim);
      if (HasFailure()) return;
      for (int64_t bh = 0; bh < heads; ++bh) {
        ASSERT_OK(FillBf16(vp + bh * head_elems + at * row, row, 0.0f, stream));
      }
    }
  }
}

}  // namespace
}  // namespace truthput
