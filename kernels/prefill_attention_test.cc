// GPU tests of PrefillAttention (both kernels) against a double-precision CPU softmax attention
// computed from the same bf16 q/K/V. The output is poisoned with NaN and cache positions
// [kv_len, cache_capacity) are set to NaN, so any output element the kernel skips and any key it
// reads past the context shows. Large cases compare a sample of query rows (which rows depends on
// the head, so together the heads cover every row position) and check every row for NaN.
#include "kernels/prefill_attention.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/attention_test_util.h"
#include "kernels/gpu_test_util.h"
#include "kernels/random_fill.h"

namespace truthput {
namespace {

using bf16 = __nv_bfloat16;

const char* KernelName(PrefillAttentionKernel k) {
  switch (k) {
    case PrefillAttentionKernel::kAuto:
      return "auto";
    case PrefillAttentionKernel::kMmaSync:
      return "mma.sync";
    case PrefillAttentionKernel::kWgmma:
      return "wgmma";
  }
  return "?";
}

struct PrefillCase {
  PrefillAttentionKernel kernel;
  int batch, q_len, start_pos, hq, hkv, head_dim;
  bool causal;
  float q_scale = 1.0f;  // larger: peakier softmax (exercises the running-max rescaling)
};

std::ostream& operator<<(std::ostream& os, const PrefillCase& c) {
  return os << KernelName(c.kernel) << " batch=" << c.batch << " q_len=" << c.q_len
            << " start_pos=" << c.start_pos << " Hq=" << c.hq << " Hkv=" << c.hkv
            << " d=" << c.head_dim << (c.causal ? " causal" : " full") << " q_scale=" << c.q_scale;
}

// Test names such as "wgmma_b3_q129_s0_h64x8_d128_causal", so --gtest_filter can pick a kernel.
std::string CaseName(const testing::TestParamInfo<PrefillCase>& info) {
  const PrefillCase& c = info.param;
  const char* kernel = c.kernel == PrefillAttentionKernel::kWgmma     ? "wgmma"
                       : c.kernel == PrefillAttentionKernel::kMmaSync ? "mma"
                                                                      : "auto";
  return absl::StrCat(kernel, "_b", c.batch, "_q", c.q_len, "_s", c.start_pos, "_h", c.hq, "x",
                      c.hkv, "_d", c.head_dim, c.causal ? "_causal" : "_full",
                      c.q_scale != 1.0f ? "_peaky" : "");
}

// One case's inputs (the cache 5 positions longer than the context) and its reference check.
class PrefillFixture : public AttentionInputs {
 public:
  PrefillFixture(const PrefillCase& c, uint64_t seed, cudaStream_t stream)
      : AttentionInputs(c.batch, c.q_len, c.hq, c.hkv, c.head_dim, c.start_pos + c.q_len,
                        c.start_pos + c.q_len + 5, c.q_scale, seed, stream),
        c_(c),
        kv_len_(c.start_pos + c.q_len) {}

  // Whether row t of (b, h) is compared with the reference: all rows of small cases; in large
  // ones every stride-th row (offset by head, so that the heads together cover all positions)
  // plus the first and last row.
  bool Checked(int b, int h, int t) const {
    const double cost = 2.0 * c_.batch * c_.hq * static_cast<double>(c_.q_len) * kv_len_ *
                        c_.head_dim * (c_.causal ? 0.5 : 1.0);
    const int64_t stride = std::max<int64_t>(1, static_cast<int64_t>(cost / 4e7));
    if (t == 0 || t == c_.q_len - 1) return true;
    return (t + 13 * (static_cast<int64_t>(b) * c_.hq + h)) % stride == 0;
  }

  // Every element written (no NaN left from the poison), and the checked rows against
  // softmax(scale * q.K^T) V in double over the keys each row may see.
  void ExpectMatchesReference(const std::vector<float>& got) const {
    ASSERT_EQ(static_cast<int64_t>(got.size()), q_elems());
    int64_t nan_count = 0;
    for (float x : got) nan_count += std::isnan(x) ? 1 : 0;
    EXPECT_EQ(nan_count, 0) << "NaN outputs of " << q_elems();

    const int d = c_.head_dim;
    std::vector<double> want, o(d);
    std::vector<float> have;
    for (int b = 0; b < c_.batch; ++b) {
      for (int h = 0; h < c_.hq; ++h) {
        for (int t = 0; t < c_.q_len; ++t) {
          if (!Checked(b, h, t)) continue;
          ReferenceRow(b, t, h, c_.causal ? c_.start_pos + t + 1 : kv_len_, o.data());
          const int64_t row = Row(b, t, h);
          for (int i = 0; i < d; ++i) {
            want.push_back(o[i]);
            have.push_back(got[row + i]);
          }
        }
      }
    }
    ExpectAttentionClose(have, want, d);
  }

 private:
  PrefillCase c_;
  int kv_len_;
};

class PrefillAttentionTest : public ::testing::TestWithParam<PrefillCase> {
 protected:
  const TestStream owned_stream_{cudaStreamDefault};
  const cudaStream_t stream_ = owned_stream_.get();
};

TEST_P(PrefillAttentionTest, MatchesReference) {
  const PrefillCase& c = GetParam();
  SCOPED_TRACE(testing::Message() << c);
  if (c.kernel == PrefillAttentionKernel::kWgmma && !PrefillAttentionWgmmaAvailable()) {
    GTEST_SKIP() << "wgmma kernel not available on this device/build";
  }
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  PrefillFixture f(c, seed, stream_);
  ASSERT_OK(FillBf16(f.out(), f.q_elems(), NAN, stream_));
  ASSERT_OK(PrefillAttentionWithKernel(c.kernel, f.q(), f.k(), f.v(), f.out(), c.batch, c.q_len,
                                       c.start_pos, c.hq, c.hkv, c.head_dim, f.capacity(), f.scale(),
                                       c.causal, stream_));
  ASSERT_CUDA(cudaStreamSynchronize(stream_));
  f.ExpectMatchesReference(ToHost(f.out(), f.q_elems()));
}

std::vector<PrefillAttentionKernel> Kernels() {
  return {PrefillAttentionKernel::kMmaSync, PrefillAttentionKernel::kWgmma};
}

struct Heads {
  int hq, hkv;
};

// head_dim 128, start_pos 0: every q_len x causal/full x GQA shape x batch 1 and 3.
std::vector<PrefillCase> D128Cases() {
  std::vector<PrefillCase> cases;
  for (PrefillAttentionKernel k : Kernels()) {
    for (int q_len : {1, 7, 64, 65, 127, 128, 129, 1000, 2048}) {
      for (bool causal : {true, false}) {
        for (Heads hs : {Heads{64, 8}, Heads{8, 8}, Heads{16, 2}}) {
          for (int batch : {1, 3}) {
            cases.push_back({k, batch, q_len, 0, hs.hq, hs.hkv, 128, causal});
          }
        }
      }
    }
  }
  return cases;
}
INSTANTIATE_TEST_SUITE_P(D128, PrefillAttentionTest, testing::ValuesIn(D128Cases()),
                         CaseName);

// Continuing a sequence: queries sit at start_pos + t, keys before start_pos are all visible.
std::vector<PrefillCase> StartPosCases() {
  struct Pos {
    int q_len, start_pos;
  };
  std::vector<PrefillCase> cases;
  for (PrefillAttentionKernel k : Kernels()) {
    for (Pos ps : {Pos{65, 100}, Pos{1, 1000}, Pos{7, 4093}, Pos{129, 37}, Pos{128, 128},
                   Pos{1000, 3000}, Pos{300, 64}}) {
      for (bool causal : {true, false}) {
        cases.push_back({k, 3, ps.q_len, ps.start_pos, 64, 8, 128, causal});
        cases.push_back({k, 1, ps.q_len, ps.start_pos, 16, 2, 128, causal});
      }
    }
  }
  return cases;
}
INSTANTIATE_TEST_SUITE_P(StartPos, PrefillAttentionTest, testing::ValuesIn(StartPosCases()),
                         CaseName);

// head_dim 64 (the mma.sync kernel; kAuto picks it for d = 64).
std::vector<PrefillCase> D64Cases() {
  std::vector<PrefillCase> cases;
  for (int q_len : {1, 7, 65, 129, 1000}) {
    for (bool causal : {true, false}) {
      cases.push_back({PrefillAttentionKernel::kMmaSync, 3, q_len, 0, 16, 2, 64, causal});
      cases.push_back({PrefillAttentionKernel::kAuto, 1, q_len, 0, 8, 8, 64, causal});
    }
  }
  cases.push_back({PrefillAttentionKernel::kMmaSync, 2, 77, 500, 32, 8, 64, true});
  cases.push_back({PrefillAttentionKernel::kMmaSync, 2, 77, 500, 32, 8, 64, false});
  return cases;
}
INSTANTIATE_TEST_SUITE_P(D64, PrefillAttentionTest, testing::ValuesIn(D64Cases()),
                         CaseName);

// Peaky softmax: large scores make the running max move a lot between tiles.
std::vector<PrefillCase> PeakyCases() {
  std::vector<PrefillCase> cases;
  for (PrefillAttentionKernel k : {PrefillAttentionKernel::kMmaSync, PrefillAttentionKernel::kWgmma,
                                   PrefillAttentionKernel::kAuto}) {
    for (bool causal : {true, false}) {
      cases.push_back({k, 2, 777, 0, 16, 2, 128, causal, 8.0f});
      cases.push_back({k, 1, 300, 2000, 8, 8, 128, causal, 8.0f});
    }
  }
  return cases;
}
INSTANTIATE_TEST_SUITE_P(Peaky, PrefillAttentionTest, testing::ValuesIn(PeakyCases()),
                         CaseName);

// kAuto (what bench_prefill runs) takes the wgmma kernel wherever it can run: on a compute
// capability 9.0 GPU, which a build without sm_90a would leave on the slower mma.sync kernel.
TEST(PrefillAttentionAutoTest, PicksWgmmaOnSm90) {
  int device = 0, major = 0, minor = 0;
  ASSERT_CUDA(cudaGetDevice(&device));
  ASSERT_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  ASSERT_CUDA(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  const bool sm90 = major == 9 && minor == 0;
#if defined(TRUTHPUT_PREFILL_SM90A)
  EXPECT_EQ(PrefillAttentionWgmmaAvailable(), sm90);
#else
  EXPECT_FALSE(PrefillAttentionWgmmaAvailable());
  EXPECT_FALSE(sm90) << "a compute capability 9.0 GPU with a build without sm_90a "
                        "(CMAKE_CUDA_ARCHITECTURES): prefill attention runs the mma.sync kernel";
#endif
  EXPECT_EQ(PrefillAttentionAutoKernel(128), PrefillAttentionWgmmaAvailable()
                                                 ? PrefillAttentionKernel::kWgmma
                                                 : PrefillAttentionKernel::kMmaSync);
  EXPECT_EQ(PrefillAttentionAutoKernel(64), PrefillAttentionKernel::kMmaSync);
}

TEST(PrefillAttentionArgsTest, RejectsBadArguments) {
  bf16* p = reinterpret_cast<bf16*>(uintptr_t{256});  // never dereferenced: validation fails
  auto call = [&](int batch, int q_len, int start_pos, int hq, int hkv, int d, int cap,
                  float scale) {
    return PrefillAttention(p, p, p, p, batch, q_len, start_pos, hq, hkv, d, cap, scale, true,
                            nullptr);
  };
  EXPECT_EQ(call(1, 8, 0, 64, 8, 96, 8, 0.1f).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(call(1, 8, 0, 12, 8, 128, 8, 0.1f).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(call(1, 8, 1, 64, 8, 128, 8, 0.1f).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(call(1, -1, 0, 64, 8, 128, 8, 0.1f).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(call(1, 8, 0, 64, 8, 128, 8, 0.0f).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(call(1, 8, 0, 64, 8, 128, 8, NAN).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(call(0, 8, 0, 64, 8, 128, 8, 0.1f).ok());  // empty batch: nothing to do
  EXPECT_TRUE(call(2, 0, 5, 64, 8, 128, 8, 0.1f).ok());  // empty step
  bf16* odd = reinterpret_cast<bf16*>(uintptr_t{258});
  EXPECT_EQ(PrefillAttention(odd, p, p, p, 1, 8, 0, 64, 8, 128, 8, 0.1f, true, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PrefillAttentionWithKernel(PrefillAttentionKernel::kWgmma, p, p, p, p, 1, 8, 0, 64, 8,
                                       64, 8, 0.1f, true, nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PrefillAttentionGraphTest, CapturesInCudaGraph) {
  const PrefillCase c{PrefillAttentionKernel::kAuto, 2, 300, 50, 64, 8, 128, true};
  const TestStream owned_stream(cudaStreamDefault);  // orders with the legacy default stream
  cudaStream_t stream = owned_stream.get();
  PrefillFixture f(c, 4711, stream);
  // First call outside capture (sets the kernel attributes once per device).
  ASSERT_OK(PrefillAttention(f.q(), f.k(), f.v(), f.out(), c.batch, c.q_len, c.start_pos, c.hq,
                             c.hkv, c.head_dim, f.capacity(), f.scale(), c.causal, stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));

  cudaGraph_t graph;
  ASSERT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  const absl::Status fill = FillBf16(f.out(), f.q_elems(), NAN, stream);
  const absl::Status attn =
      PrefillAttention(f.q(), f.k(), f.v(), f.out(), c.batch, c.q_len, c.start_pos, c.hq, c.hkv,
                       c.head_dim, f.capacity(), f.scale(), c.causal, stream);
  ASSERT_CUDA(cudaStreamEndCapture(stream, &graph));
  ASSERT_OK(fill);
  ASSERT_OK(attn);
  cudaGraphExec_t exec;
  ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 2; ++i) {
    ASSERT_CUDA(cudaGraphLaunch(exec, stream));
    ASSERT_CUDA(cudaStreamSynchronize(stream));
    f.ExpectMatchesReference(ToHost(f.out(), f.q_elems()));
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

}  // namespace
}  // namespace truthput
