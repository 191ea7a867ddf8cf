// Test inputs and the double-precision reference shared by the decode and prefill attention
// tests (GPU tests only).
#ifndef TRUTHPUT_KERNELS_ATTENTION_TEST_UTIL_H_
#define TRUTHPUT_KERNELS_ATTENTION_TEST_UTIL_H_

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/gpu_test_util.h"
#include "kernels/random_fill.h"

namespace truthput {

// One case's inputs on the device, plus host copies: q [batch, q_len, hq, d] random (times
// q_scale: larger means a peakier softmax), K and V caches [batch, hkv, capacity, d] random at
// positions [0, kv_len) and NaN past them (a key read past the context shows), and an output
// buffer the size of q.
class AttentionInputs {
 public:
  AttentionInputs(int batch, int q_len, int hq, int hkv, int head_dim, int kv_len, int capacity,
                  float q_scale, uint64_t seed, cudaStream_t stream)
      : q_len_(q_len),
        hq_(hq),
        hkv_(hkv),
        d_(head_dim),
        cap_(capacity),
        q_n_(static_cast<int64_t>(batch) * q_len * hq * head_dim),
        cache_n_(static_cast<int64_t>(batch) * hkv * capacity * head_dim),
        q_(q_n_ * sizeof(__nv_bfloat16)),
        k_(cache_n_ * sizeof(__nv_bfloat16)),
        v_(cache_n_ * sizeof(__nv_bfloat16)),
        out_(q_n_ * sizeof(__nv_bfloat16)) {
    EXPECT_TRUE(FillRandomBf16(q(), q_n_, seed, q_scale, stream).ok());
    EXPECT_TRUE(FillRandomBf16(k(), cache_n_, seed + 1, 1.0f, stream).ok());
    EXPECT_TRUE(FillRandomBf16(v(), cache_n_, seed + 2, 1.0f, stream).ok());
    for (int64_t bh = 0; bh < static_cast<int64_t>(batch) * hkv; ++bh) {
      const int64_t tail = (bh * cap_ + kv_len) * d_;
      EXPECT_TRUE(FillBf16(k() + tail, (cap_ - kv_len) * d_, NAN, stream).ok());
      EXPECT_TRUE(FillBf16(v() + tail, (cap_ - kv_len) * d_, NAN, stream).ok());
    }
    hq_host_ = ToHost(q(), q_n_);
    hk_host_ = ToHost(k(), cache_n_);
    hv_host_ = ToHost(v(), cache_n_);
  }

  __nv_bfloat16* q() const { return q_.as<__nv_bfloat16>(); }
  __nv_bfloat16* k() const { return k_.as<__nv_bfloat16>(); }
  __nv_bfloat16* v() const { return v_.as<__nv_bfloat16>(); }
  __nv_bfloat16* out() const { return out_.as<__nv_bfloat16>(); }
  int capacity() const { return cap_; }
  int64_t q_elems() const { return q_n_; }
  float scale() const { return 1.0f / std::sqrt(static_cast<float>(d_)); }
  // Offset of query row (b, t, h) in q and out.
  int64_t Row(int b, int t, int h) const {
    return ((static_cast<int64_t>(b) * q_len_ + t) * hq_ + h) * d_;
  }

  // softmax(scale * q.K^T) in double for query row (b, t, h) over keys [0, keys).
  std::vector<double> Weights(int b, int t, int h, int keys) const {
    const float* qr = hq_host_.data() + Row(b, t, h);
    const int64_t head = Head(b, h);
    std::vector<double> p(keys);
    double mx = -INFINITY;
    for (int j = 0; j < keys; ++j) {
      const float* kr = hk_host_.data() + head + static_cast<int64_t>(j) * d_;
      double s = 0;
      for (int i = 0; i < d_; ++i) s += static_cast<double>(qr[i]) * kr[i];
      p[j] = s * static_cast<double>(scale());
      mx = std::max(mx, p[j]);
    }
    double den = 0;
    for (int j = 0; j < keys; ++j) den += (p[j] = std::exp(p[j] - mx));
    for (double& w : p) w /= den;
    return p;
  }

  // softmax(scale * q.K^T) V in double for query row (b, t, h) over keys [0, keys), into o[d].
  void ReferenceRow(int b, int t, int h, int keys, double* o) const {
    const std::vector<double> p = Weights(b, t, h, keys);
    const int64_t head = Head(b, h);
    std::fill(o, o + d_, 0.0);
    for (int j = 0; j < keys; ++j) {
      const float* vr = hv_host_.data() + head + static_cast<int64_t>(j) * d_;
      for (int i = 0; i < d_; ++i) o[i] += p[j] * vr[i];
    }
  }

 private:
  // Offset of query head h's KV head of sequence b in the caches.
  int64_t Head(int b, int h) const {
    return (static_cast<int64_t>(b) * hkv_ + h / (hq_ / hkv_)) * cap_ * d_;
  }

  int q_len_, hq_, hkv_, d_, cap_;
  int64_t q_n_, cache_n_;
  DeviceMem q_, k_, v_, out_;
  std::vector<float> hq_host_, hk_host_, hv_host_;
};

// |got - want| <= 2e-2 |want| + 1e-2 max|want| element by element (got and want in the same
// order, rows of head_dim): bf16 rounding of the output and of the softmax weights fed to the
// tensor cores is ~0.4%; outputs near zero are judged on the case's scale. NaN never passes.
// Over the whole case, the relative L2 error is at most 2^-7: bf16 rounding of the output alone
// gives about 2^-9 / sqrt(3), so an error spread over every element that the per-element bound
// would let through (a scale off by 1%) fails here.
inline void ExpectAttentionClose(const std::vector<float>& got, const std::vector<double>& want,
                                 int head_dim) {
  ASSERT_EQ(got.size(), want.size());
  double ref_scale = 0;
  for (double w : want) ref_scale = std::max(ref_scale, std::fabs(w));
  int64_t bad = 0;
  double worst = 0, sum_sq_err = 0, sum_sq_want = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    sum_sq_err += err * err;  // NaN makes the sum NaN, which fails the bound below
    sum_sq_want += want[i] * want[i];
    if (!(err <= 2e-2 * std::fabs(want[i]) + 1e-2 * ref_scale)) {
      if (bad < 5) {
        ADD_FAILURE() << "element " << i << " (compared row " << i / head_dim << ", dim "
                      << i % head_dim << "): got " << got[i] << ", want " << want[i];
      }
      ++bad;
    }
    if (!(err <= worst)) worst = err;
  }
  EXPECT_EQ(bad, 0) << "of " << got.size() << " compared; worst |err| " << worst
                    << ", max|ref| " << ref_scale;
  const double rel_l2 = std::sqrt(sum_sq_err / sum_sq_want);
  std::printf("  relative L2 error %.2e (bound %.2e)\n", rel_l2, std::ldexp(1.0, -7));
  EXPECT_LE(rel_l2, std::ldexp(1.0, -7)) << "relative L2 error over " << got.size();
}

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_ATTENTION_TEST_UTIL_H_
