// Helpers shared by the GPU tests (gtest, test code only; header-only): fatal assertions on an
// absl::Status or a cudaError_t, owned device allocations, bf16 copies back to the host, fresh
// random seeds, the SM count, test streams, the operands of a checked GEMM, and the bound the GEMM
// tests check a bf16 output against an fp32 reference with.
#ifndef TRUTHPUT_KERNELS_GPU_TEST_UTIL_H_
#define TRUTHPUT_KERNELS_GPU_TEST_UTIL_H_

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/cuda_status.h"
#include "kernels/random_fill.h"

// Fatal failure unless `expr` (an absl::Status) is OK; prints the expression and the status.
#define ASSERT_OK(expr)                            \
  do {                                             \
    const absl::Status _st = (expr);               \
    ASSERT_TRUE(_st.ok()) << #expr << ": " << _st; \
  } while (0)

// Fatal failure unless `expr` (a cudaError_t) is cudaSuccess; prints the expression and the error.
#define ASSERT_CUDA(expr)                                                      \
  do {                                                                         \
    const cudaError_t _err = (expr);                                           \
    ASSERT_EQ(_err, cudaSuccess) << #expr << ": " << cudaGetErrorString(_err); \
  } while (0)

namespace truthput {

// A stream owned by one test (non-blocking unless told otherwise), destroyed however the test
// ends, early returns of fatal assertions included.
class TestStream {
 public:
  explicit TestStream(unsigned flags = cudaStreamNonBlocking) {
    const cudaError_t err = cudaStreamCreateWithFlags(&s_, flags);
    if (err != cudaSuccess) {
      ADD_FAILURE() << "cudaStreamCreateWithFlags: " << cudaGetErrorString(err);
    }
  }
  ~TestStream() {
    if (s_ != nullptr) cudaStreamDestroy(s_);
  }
  TestStream(const TestStream&) = delete;
  TestStream& operator=(const TestStream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

struct CudaFree {
  void operator()(void* p) const { cudaFree(p); }
};

// An owned cudaMalloc allocation of T.
template <typename T>
using DevicePtr = std::unique_ptr<T, CudaFree>;

// count elements of T on the device (at least one byte, so count 0 still gives a pointer), or
// null where cudaMalloc fails: callers assert on the result.
template <typename T>
DevicePtr<T> DeviceAlloc(int64_t count) {
  void* p = nullptr;
  if (cudaMalloc(&p, std::max<size_t>(1, static_cast<size_t>(count) * sizeof(T))) != cudaSuccess) {
    return nullptr;
  }
  return DevicePtr<T>(static_cast<T*>(p));
}

// The activations and outputs of one checked GEMM y[m, n] = x[m, k] . W^T: x random
// (FillRandomBf16 with `seed` and `x_scale`), y and the fp32 reference poisoned with NaN, so that
// an element the kernel or the reference skips can never pass.
struct GemmOperands {
  DevicePtr<__nv_bfloat16> x, y;
  DevicePtr<float> ref;
};
inline absl::Status MakeGemmOperands(int64_t m, int64_t n, int64_t k, uint64_t seed,
                                     float x_scale, cudaStream_t stream, GemmOperands* out) {
  out->x = DeviceAlloc<__nv_bfloat16>(m * k);
  out->y = DeviceAlloc<__nv_bfloat16>(m * n);
  out->ref = DeviceAlloc<float>(m * n);
  if (!out->x || !out->y || !out->ref) return absl::ResourceExhaustedError("GEMM operands");
  TP_RETURN_IF_ERROR(FillRandomBf16(out->x.get(), m * k, seed, x_scale, stream));
  TP_RETURN_IF_ERROR(FillBf16(out->y.get(), m * n, NAN, stream));
  return CudaStatus(cudaMemsetAsync(out->ref.get(), 0xFF, m * n * sizeof(float), stream),
                    "cudaMemsetAsync (NaN reference)");
}

// An untyped device allocation of `bytes` bytes (none, and a null pointer, for 0), freed on
// destruction. A failed cudaMalloc is a non-fatal test failure and leaves the pointer null.
class DeviceMem {
 public:
  explicit DeviceMem(size_t bytes) {
    if (bytes > 0) {
      EXPECT_EQ(cudaMalloc(&p_, bytes), cudaSuccess);
    }
  }
  ~DeviceMem() { cudaFree(p_); }
  DeviceMem(const DeviceMem&) = delete;
  DeviceMem& operator=(const DeviceMem&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
};

// n bf16 values from the device, widened to float. Synchronous: the device is synchronized first,
// so no stream ordering is assumed.
inline std::vector<float> ToHost(const __nv_bfloat16* d, int64_t n) {
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<__nv_bfloat16> h(n);
  EXPECT_EQ(cudaMemcpy(h.data(), d, n * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost),
            cudaSuccess);
  std::vector<float> f(n);
  for (int64_t i = 0; i < n; ++i) f[i] = __bfloat162float(h[i]);
  return f;
}

// Seeds of fresh random data. Each test draws them from its own base (random, or
// TRUTHPUT_TEST_SEED when set), which gpu_test_main prints as the test starts:
// "TRUTHPUT_TEST_SEED=N" with --gtest_filter=THAT.TEST replays the test's every draw.
struct TestSeeds {
  uint64_t base = 0;
  uint64_t drawn = 0;
};
inline TestSeeds test_seeds;

// The next seed of the running test (SplitMix64 of its base and how many it has drawn): a
// different one each call, the same sequence for the same base. Tests print it on failure.
inline uint64_t FreshSeed() {
  uint64_t z = test_seeds.base + 0x9e3779b97f4a7c15ULL * ++test_seeds.drawn;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The SM count of the current device.
inline int SmCount() {
  int device = 0, sms = 0;
  EXPECT_EQ(cudaGetDevice(&device), cudaSuccess);
  EXPECT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), cudaSuccess);
  return sms;
}

// Checks y (bf16, row-major m x n, from the GEMM under test) against ref (fp32, from
// ReferenceGemm):
//   |y - ref| <= 2^-7 |ref| + 2^-6 rms(ref) * partials_factor   per element,
//   relative L2 error <= 2^-7 * partials_factor.
// The relative term covers rounding the output to bf16 (unit roundoff 2^-8) with a factor 2 of
// slack; the absolute term covers fp32 summation-order differences and whatever else the caller
// documents (split-K partials rounded to bf16, through partials_factor >= 1; the reference's
// rounding of dequantized fp8 weights to bf16). A wrong index, a missed k-step, a lost partial or
// a missing tile gives errors of order rms(ref). NaN or Inf anywhere never passes.
inline void ExpectCloseToReference(const std::vector<__nv_bfloat16>& y,
                                   const std::vector<float>& ref, int64_t m, int64_t n,
                                   double partials_factor = 1.0) {
  double sum_sq_ref = 0;
  for (float r : ref) {
    ASSERT_TRUE(std::isfinite(r)) << "reference output not finite";
    sum_sq_ref += static_cast<double>(r) * r;
  }
  const double rms = std::sqrt(sum_sq_ref / static_cast<double>(ref.size()));
  ASSERT_GT(rms, 0.0);
  const double abs_bound = std::ldexp(rms, -6) * partials_factor;
  double sum_sq_err = 0;
  int64_t bad = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      const double g = __bfloat162float(y[i * n + j]);
      const double r = ref[i * n + j];
      const double err = std::fabs(g - r);
      const bool ok = std::isfinite(g) && err <= std::ldexp(std::fabs(r), -7) + abs_bound;
      if (std::isfinite(g)) sum_sq_err += err * err;
      if (!ok && ++bad <= 5) {
        testing::Message msg;
        msg << "y[" << i << "," << j << "] = " << g << ", reference " << r << " (rms " << rms;
        if (partials_factor != 1.0) msg << ", partials factor " << partials_factor;
        ADD_FAILURE() << msg << ")";
      }
    }
  }
  EXPECT_EQ(bad, 0) << "elements out of bound, of " << m * n;
  const double rel_l2 = std::sqrt(sum_sq_err / sum_sq_ref);
  EXPECT_LE(rel_l2, std::ldexp(1.0, -7) * partials_factor) << "relative L2 error";
}

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_GPU_TEST_UTIL_H_
