// GPU tests of the small-batch decode GEMMs (gemv.h, fp8_weights.h) against ReferenceGemm, a
// plain fp32 GEMM that shares no code with them. Every projection shape of Llama-3.1 8B, 70B and
// 405B at TP 1 and TP 8 (from the op list), plus shapes that are no multiple of any tile, at
// m = 1 to 32; bf16 weights, and fp8 weights against the reference on their values (exact in
// bf16) with the per-channel scales applied to its fp32 sums, as the kernel applies them. The
// kernels run on weights packed by PackSkinnyGemmWeights and the reference on the row-major
// originals, so the packing is checked with the kernel (the layout alone: gemv_plan_test). Inputs
// come from fresh seeds (printed on failure); outputs are poisoned with NaN first, so an element
// the kernel skips shows. One zeroed workspace serves all calls of a shape, so a split-K counter
// left non-zero by one call breaks the next; two shapes called in turn, each on its own workspace
// region, must not disturb each other. W8A8 (SkinnyGemmW8A8) runs on x quantized per token by
// QuantizeWeightsFp8; its reference multiplies the e4m3 values of x and W (exact in bf16) and
// applies both scales to the fp32 sums.
#include "kernels/gemv.h"

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/fp8_weights.h"
#include "kernels/gpu_test_util.h"
#include "kernels/random_fill.h"
#include "kernels/reference_gemm.h"
#include "workloads/model_registry.h"
#include "workloads/workload.h"

namespace truthput {
namespace {

using fp8 = __nv_fp8_e4m3;

constexpr float kXScale = 1.0f;
constexpr float kWScale = 0.05f;
constexpr int64_t kMs[] = {1, 2, 3, 5, 8, 12, 16, 17, 24, 31, 32};  // 1 to 4 n-tiles

// Outputs are checked with ExpectCloseToReference (gpu_test_util.h), with the bounds of
// cublaslt_gemm_test.cc without split-K in bf16 (these kernels reduce split-K partials in fp32).
// The fp8 reference is exact up to fp32 summation: it multiplies x by the e4m3 values themselves
// (every e4m3 value is a bf16 value) and scales the fp32 sums per channel. (A reference on
// weights dequantized to bf16 carries their rounding, 2^-9 each; with cancellation in a short
// dot product that alone broke the 2^-7 relative bound, seen at n = 1, k = 8.)

// The weights of one shape: bf16, their fp8 quantization (values and per-channel scales), the
// fp8 values unscaled as bf16 (exact), for the reference, and both packed for the kernels.
struct Weights {
  int64_t n = 0, k = 0;
  DevicePtr<bf16> w;
  DevicePtr<fp8> wq;
  DevicePtr<float> scales;
  DevicePtr<bf16> wq_values;
  std::vector<float> scales_host;
  DevicePtr<char> w_packed, wq_packed;
};

// Packs w (if any) and wq, already filled, into w_packed and wq_packed.
void PackWeights(Weights* w, cudaStream_t stream) {
  w->wq_packed = DeviceAlloc<char>(static_cast<int64_t>(SkinnyGemmPackedBytes(w->n, w->k, 1)));
  ASSERT_TRUE(w->wq_packed) << "out of device memory";
  ASSERT_OK(PackSkinnyGemmWeights(w->wq.get(), w->wq_packed.get(), w->n, w->k, 1, stream));
  if (w->w == nullptr) return;
  w->w_packed = DeviceAlloc<char>(static_cast<int64_t>(SkinnyGemmPackedBytes(w->n, w->k, 2)));
  ASSERT_TRUE(w->w_packed) << "out of device memory";
  ASSERT_OK(PackSkinnyGemmWeights(w->w.get(), w->w_packed.get(), w->n, w->k, 2, stream));
}

// Rows [rows,k] quantized per row (QuantizeWeightsFp8: weights per output channel, and x per
// token as the decode step does for W8A8), the e4m3 values unscaled as bf16 (exact) for the
// reference, and the scales on the host.
struct QuantizedRows {
  DevicePtr<fp8> codes;
  DevicePtr<float> scales;
  DevicePtr<bf16> values;
  std::vector<float> scales_host;
};

void QuantizeRows(const bf16* src, int64_t rows, int64_t k, cudaStream_t stream,
                  QuantizedRows* out) {
  out->codes = DeviceAlloc<fp8>(rows * k);
  out->scales = DeviceAlloc<float>(rows);
  out->values = DeviceAlloc<bf16>(rows * k);
  DevicePtr<float> ones = DeviceAlloc<float>(rows);
  ASSERT_TRUE(out->codes && out->scales && out->values && ones) << "out of device memory";
  ASSERT_OK(QuantizeWeightsFp8(src, out->codes.get(), out->scales.get(), rows, k, stream));
  const std::vector<float> ones_host(rows, 1.0f);
  ASSERT_CUDA(cudaMemcpyAsync(ones.get(), ones_host.data(), rows * sizeof(float),
                              cudaMemcpyHostToDevice, stream));
  ASSERT_OK(DequantizeWeightsFp8(out->codes.get(), ones.get(), out->values.get(), rows, k, stream));
  out->scales_host.resize(rows);
  ASSERT_CUDA(cudaMemcpyAsync(out->scales_host.data(), out->scales.get(), rows * sizeof(float),
                              cudaMemcpyDeviceToHost, stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));
}

void MakeWeights(int64_t n, int64_t k, uint64_t seed, cudaStream_t stream, Weights* out) {
  out->n = n;
  out->k = k;
  out->w = DeviceAlloc<bf16>(n * k);
  ASSERT_TRUE(out->w) << "out of device memory";
  ASSERT_OK(FillRandomBf16(out->w.get(), n * k, seed, kWScale, stream));
  QuantizedRows q;
  QuantizeRows(out->w.get(), n, k, stream, &q);
  if (testing::Test::HasFatalFailure()) return;
  out->wq = std::move(q.codes);
  out->scales = std::move(q.scales);
  out->wq_values = std::move(q.values);
  out->scales_host = std::move(q.scales_host);
  PackWeights(out, stream);
}

enum class Kind { kBf16, kFp8, kW8A8 };
const char* KindName(Kind kind) {
  return kind == Kind::kBf16 ? "bf16" : kind == Kind::kFp8 ? "fp8" : "w8a8";
}

// x is bf16, or for kW8A8 QuantizeRows's output.
absl::Status RunKernel(Kind kind, const Weights& w, const bf16* x, const QuantizedRows* xq,
                       bf16* y, int64_t m, void* workspace, size_t workspace_bytes,
                       cudaStream_t stream) {
  if (kind == Kind::kW8A8) {
    return SkinnyGemmW8A8(xq ? xq->codes.get() : nullptr, xq ? xq->scales.get() : nullptr,
                          reinterpret_cast<const fp8*>(w.wq_packed.get()), w.scales.get(), y, m,
                          w.n, w.k, workspace, workspace_bytes, stream);
  }
  if (kind == Kind::kBf16) {
    return SkinnyGemmBf16(x, reinterpret_cast<const bf16*>(w.w_packed.get()), y, m, w.n, w.k,
                          workspace, workspace_bytes, stream);
  }
  return SkinnyGemmFp8(x, reinterpret_cast<const fp8*>(w.wq_packed.get()), w.scales.get(), y, m,
                       w.n, w.k, workspace, workspace_bytes, stream);
}

// Applies the fp8 weights' per-channel scales (and x's per-token ones, if given) to a reference
// computed on their values.
void ScaleReference(const Weights& w, int64_t m, std::vector<float>* ref,
                    const QuantizedRows* xq = nullptr) {
  for (int64_t i = 0; i < m; ++i) {
    const float x_scale = xq != nullptr ? xq->scales_host[i] : 1.0f;
    for (int64_t j = 0; j < w.n; ++j) (*ref)[i * w.n + j] *= w.scales_host[j] * x_scale;
  }
}

// Runs the kernel and the reference (on the bf16 weights, or on the fp8 values with the scales
// applied to its sums) on fresh x.
void CheckProduct(Kind kind, const Weights& w, int64_t m, void* workspace, size_t workspace_bytes,
                  cudaStream_t stream) {
  const int64_t n = w.n, k = w.k;
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat(KindName(kind), " m=", m, " n=", n, " k=", k, " x seed=", seed));
  GemmOperands op;
  ASSERT_OK(MakeGemmOperands(m, n, k, seed, kXScale, stream, &op));
  QuantizedRows xq;
  if (kind == Kind::kW8A8) {
    QuantizeRows(op.x.get(), m, k, stream, &xq);
    if (testing::Test::HasFatalFailure()) return;
  }
  ASSERT_OK(
      RunKernel(kind, w, op.x.get(), &xq, op.y.get(), m, workspace, workspace_bytes, stream));
  const bf16* ref_w = kind == Kind::kBf16 ? w.w.get() : w.wq_values.get();
  const bf16* ref_x = kind == Kind::kW8A8 ? xq.values.get() : op.x.get();
  ASSERT_OK(ReferenceGemm(ref_x, ref_w, op.ref.get(), m, n, k, stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));
  std::vector<bf16> y_host(m * n);
  std::vector<float> ref_host(m * n);
  ASSERT_CUDA(
      cudaMemcpy(y_host.data(), op.y.get(), m * n * sizeof(bf16), cudaMemcpyDeviceToHost));
  ASSERT_CUDA(
      cudaMemcpy(ref_host.data(), op.ref.get(), m * n * sizeof(float), cudaMemcpyDeviceToHost));
  if (kind != Kind::kBf16) ScaleReference(w, m, &ref_host, kind == Kind::kW8A8 ? &xq : nullptr);
  ExpectCloseToReference(y_host, ref_host, m, n);
}

// A zeroed workspace big enough for every m at this shape.
DevicePtr<char> ZeroedWorkspace(int64_t n, int64_t k, size_t* bytes) {
  *bytes = 0;
  for (int64_t m = 1; m <= kSkinnyGemmMaxM; ++m) {
    *bytes = std::max(*bytes, SkinnyGemmWorkspaceBytes(m, n, k, SmCount()));
  }
  DevicePtr<char> ws = DeviceAlloc<char>(static_cast<int64_t>(*bytes));
  if (ws != nullptr) {
    EXPECT_EQ(cudaMemset(ws.get(), 0, std::max<size_t>(1, *bytes)), cudaSuccess);
    // The kernels run on non-blocking streams, which do not wait for the legacy stream.
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  return ws;
}

struct Shape {
  std::string name;
  int64_t n = 0, k = 0;
};

// Every distinct (n, k) of the GEMMs of a decode step of Llama-3.1 8B, 70B and 405B at TP 1 and
// 8, from the op list, plus shapes that are no multiple of any tile (n odd, k % 16 == 8, a single
// k-step). A model that fails to load gives a shape with n = 0, which fails its test.
std::vector<Shape> AllShapes() {
  std::vector<Shape> shapes;
  std::set<std::pair<int64_t, int64_t>> seen;
  for (const char* model_name : {"8b", "70b", "405b"}) {
    absl::StatusOr<ModelSpec> model = LoadModel(model_name);
    for (int64_t tp : {1, 8}) {
      absl::StatusOr<Workload> w =
          model.ok()
              ? Workload::Build(
                    *model, StepConfig{.phase = Phase::kDecode, .batch = 1, .context = 0, .tp = tp})
              : absl::StatusOr<Workload>(model.status());
      if (!w.ok()) {
        shapes.push_back({absl::StrCat("load_failed_", model_name, "_tp", tp), 0, 0});
        continue;
      }
      for (const Op& op : w->ops()) {
        if (op.kind != OpKind::kGemm || !seen.insert({op.n, op.k}).second) continue;
        shapes.push_back(
            {absl::StrCat("llama", model_name, "_tp", tp, "_", op.name, "_", op.n, "x", op.k), op.n,
             op.k});
      }
    }
  }
  for (auto [n, k] : {std::pair<int64_t, int64_t>{1000, 1032},
                      {8, 8},
                      {129, 4104},
                      {1, 8},
                      {1024, 28672},
                      {200, 24},
                      // Row splits with a partial last CTA and k-steps (33 bf16, 17 fp8) that
                      // the CTA's k-parts do not divide: 32 rows per CTA (bf16 at 9-16 tokens:
                      // 500 CTAs of 16); for 9000 rows 64 with bf16 (m <= 8), 282 CTAs of 32
                      // (3-4 per SM) with fp8 (m <= 16) and bf16 (9-24).
                      {8000, 1032},
                      {9000, 1032},
                      // 16-row CTAs (fp8 with one n-tile, bf16 with two): 500, the last with 11
                      // rows, 33 (fp8) or 65 k-steps.
                      {7995, 2056},
                      // Wide (256-row) blocks at 9-32 tokens with a partial last block: one wave
                      // of 199 CTAs, the last with one row; 198 CTAs of two blocks, the last
                      // block 136 rows (its second tile 8).
                      {50689, 1032},
                      {101000, 1032},
                      // k a multiple of 16 (so W8A8 runs) but not of 64: W8A8's last k-step is
                      // partial (16, 32 or 48 of its 64 bytes a lane), with the row splits above.
                      {1000, 1040},
                      {8000, 1056},
                      {50689, 1072}}) {
    if (seen.insert({n, k}).second) shapes.push_back({absl::StrCat("odd_", n, "x", k), n, k});
  }
  return shapes;
}

class SkinnyGemmShapeTest : public testing::TestWithParam<Shape> {};

TEST_P(SkinnyGemmShapeTest, MatchesReference) {
  const Shape shape = GetParam();
  ASSERT_GT(shape.n, 0) << shape.name;
  TestStream stream;
  const uint64_t w_seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat(shape.name, " w seed=", w_seed));
  Weights w;
  MakeWeights(shape.n, shape.k, w_seed, stream.get(), &w);
  if (HasFatalFailure()) return;
  size_t ws_bytes = 0;
  DevicePtr<char> ws = ZeroedWorkspace(shape.n, shape.k, &ws_bytes);
  ASSERT_TRUE(ws);
  for (int64_t m : kMs) {
    for (Kind kind : {Kind::kBf16, Kind::kFp8, Kind::kW8A8}) {
      if (kind == Kind::kW8A8 && shape.k % 16 != 0) {
        // x's rows are read 16 bytes at a time: refused, not read past.
        EXPECT_EQ(RunKernel(kind, w, nullptr, nullptr, nullptr, m, ws.get(), ws_bytes,
                            stream.get())
                      .code(),
                  absl::StatusCode::kInvalidArgument);
        continue;
      }
      const SkinnyGemmPlan plan =
          PlanSkinnyGemm(m, shape.n, shape.k, kind == Kind::kBf16 ? 2 : 1, SmCount());
      std::printf("%s %s m=%lld: %s\n", shape.name.c_str(), KindName(kind),
                  static_cast<long long>(m), SkinnyGemmPlanDescription(plan).c_str());
      CheckProduct(kind, w, m, ws.get(), ws_bytes, stream.get());
      if (HasFatalFailure()) return;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Llama31, SkinnyGemmShapeTest, testing::ValuesIn(AllShapes()),
                         [](const testing::TestParamInfo<Shape>& p) { return p.param.name; });

// The same calls captured into a CUDA graph and replayed twice (the second replay overwrites a
// re-poisoned y), for a split-K shape and a whole-tile one; then eager calls on the same
// workspace, which a replay that left a counter non-zero would break.
TEST(SkinnyGemm, RunsInsideGraphCaptureAndReplays) {
  TestStream stream;
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{5, 1024, 28672},
                         {16, 8192, 1024},
                         {3, 128256, 4096}}) {
    SCOPED_TRACE(absl::StrCat("m=", m, " n=", n, " k=", k));
    Weights w;
    MakeWeights(n, k, FreshSeed(), stream.get(), &w);
    if (HasFatalFailure()) return;
    size_t ws_bytes = 0;
    DevicePtr<char> ws = ZeroedWorkspace(n, k, &ws_bytes);
    DevicePtr<bf16> x = DeviceAlloc<bf16>(m * k);
    DevicePtr<bf16> y16 = DeviceAlloc<bf16>(m * n);
    DevicePtr<bf16> y8 = DeviceAlloc<bf16>(m * n);
    DevicePtr<bf16> y88 = DeviceAlloc<bf16>(m * n);
    DevicePtr<float> ref16 = DeviceAlloc<float>(m * n);
    DevicePtr<float> ref8 = DeviceAlloc<float>(m * n);
    DevicePtr<float> ref88 = DeviceAlloc<float>(m * n);
    ASSERT_TRUE(ws && x && y16 && y8 && y88 && ref16 && ref8 && ref88);
    ASSERT_OK(FillRandomBf16(x.get(), m * k, FreshSeed(), kXScale, stream.get()));
    QuantizedRows xq;
    QuantizeRows(x.get(), m, k, stream.get(), &xq);
    if (HasFatalFailure()) return;
    ASSERT_OK(ReferenceGemm(x.get(), w.w.get(), ref16.get(), m, n, k, stream.get()));
    ASSERT_OK(ReferenceGemm(x.get(), w.wq_values.get(), ref8.get(), m, n, k, stream.get()));
    ASSERT_OK(
        ReferenceGemm(xq.values.get(), w.wq_values.get(), ref88.get(), m, n, k, stream.get()));
    ASSERT_CUDA(cudaStreamSynchronize(stream.get()));

    ASSERT_CUDA(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
    const absl::Status run16 = RunKernel(Kind::kBf16, w, x.get(), nullptr, y16.get(), m, ws.get(),
                                         ws_bytes, stream.get());
    const absl::Status run8 = RunKernel(Kind::kFp8, w, x.get(), nullptr, y8.get(), m, ws.get(),
                                        ws_bytes, stream.get());
    const absl::Status run88 = RunKernel(Kind::kW8A8, w, nullptr, &xq, y88.get(), m, ws.get(),
                                         ws_bytes, stream.get());
    cudaGraph_t graph = nullptr;
    const cudaError_t end = cudaStreamEndCapture(stream.get(), &graph);
    const std::unique_ptr<CUgraph_st, cudaError_t (*)(cudaGraph_t)> graph_owner(graph,
                                                                                cudaGraphDestroy);
    ASSERT_OK(run16);
    ASSERT_OK(run8);
    ASSERT_OK(run88);
    ASSERT_CUDA(end);
    cudaGraphExec_t exec = nullptr;
    ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
    const std::unique_ptr<CUgraphExec_st, cudaError_t (*)(cudaGraphExec_t)> exec_owner(
        exec, cudaGraphExecDestroy);
    for (int replay = 0; replay < 2; ++replay) {
      ASSERT_OK(FillBf16(y16.get(), m * n, std::numeric_limits<float>::quiet_NaN(), stream.get()));
      ASSERT_OK(FillBf16(y8.get(), m * n, std::numeric_limits<float>::quiet_NaN(), stream.get()));
      ASSERT_OK(FillBf16(y88.get(), m * n, std::numeric_limits<float>::quiet_NaN(), stream.get()));
      ASSERT_CUDA(cudaGraphLaunch(exec, stream.get()));
    }
    ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
    std::vector<bf16> y_host(m * n);
    std::vector<float> ref_host(m * n);
    for (auto [y, ref] : {std::pair{y16.get(), ref16.get()}, std::pair{y8.get(), ref8.get()},
                          std::pair{y88.get(), ref88.get()}}) {
      ASSERT_CUDA(cudaMemcpy(y_host.data(), y, m * n * sizeof(bf16), cudaMemcpyDeviceToHost));
      ASSERT_CUDA(cudaMemcpy(ref_host.data(), ref, m * n * sizeof(float), cudaMemcpyDeviceToHost));
      if (y != y16.get()) ScaleReference(w, m, &ref_host, y == y88.get() ? &xq : nullptr);
      ExpectCloseToReference(y_host, ref_host, m, n);
    }
    // Eager calls after the replays, on the same workspace.
    for (Kind kind : {Kind::kBf16, Kind::kFp8, Kind::kW8A8}) {
      CheckProduct(kind, w, m, ws.get(), ws_bytes, stream.get());
      if (HasFatalFailure()) return;
    }
  }
}

// ReferenceGemmScaled (what bench_decode checks each chosen GEMM against) reads e4m3 and its
// scales itself; it must give what the bf16 reference on the exact values, scaled, gives here.
TEST(ReferenceGemmScaled, MatchesTheScaledReferenceOnExactValues) {
  TestStream stream;
  const int64_t m = 7, n = 300, k = 1040;
  Weights w;
  MakeWeights(n, k, FreshSeed(), stream.get(), &w);
  if (HasFatalFailure()) return;
  DevicePtr<bf16> x = DeviceAlloc<bf16>(m * k);
  DevicePtr<float> want = DeviceAlloc<float>(m * n), got = DeviceAlloc<float>(m * n);
  ASSERT_TRUE(x && want && got);
  ASSERT_OK(FillRandomBf16(x.get(), m * k, FreshSeed(), kXScale, stream.get()));
  QuantizedRows xq;
  QuantizeRows(x.get(), m, k, stream.get(), &xq);
  if (HasFatalFailure()) return;
  struct Case {
    const char* name;
    ReferenceOperand x, w;
    const bf16 *x_values, *w_values;
    bool scale_x, scale_w;
  };
  const Case cases[] = {
      {"bf16 x, bf16 w", {x.get()}, {w.w.get()}, x.get(), w.w.get(), false, false},
      {"bf16 x, e4m3 w", {x.get()}, {w.wq.get(), w.scales.get()}, x.get(), w.wq_values.get(),
       false, true},
      {"e4m3 x, e4m3 w", {xq.codes.get(), xq.scales.get()}, {w.wq.get(), w.scales.get()},
       xq.values.get(), w.wq_values.get(), true, true},
      {"e4m3 x, bf16 w", {xq.codes.get(), xq.scales.get()}, {w.w.get()}, xq.values.get(),
       w.w.get(), true, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_OK(ReferenceGemm(c.x_values, c.w_values, want.get(), m, n, k, stream.get()));
    ASSERT_OK(ReferenceGemmScaled(c.x, c.w, got.get(), m, n, k, stream.get()));
    ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
    std::vector<float> want_host(m * n), got_host(m * n);
    ASSERT_CUDA(cudaMemcpy(want_host.data(), want.get(), m * n * 4, cudaMemcpyDeviceToHost));
    ASSERT_CUDA(cudaMemcpy(got_host.data(), got.get(), m * n * 4, cudaMemcpyDeviceToHost));
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        float v = want_host[i * n + j];
        if (c.scale_x) v *= xq.scales_host[i];
        if (c.scale_w) v *= w.scales_host[j];
        // The same sums in the same order; only the scales' rounding may differ.
        ASSERT_NEAR(got_host[i * n + j], v, 1e-6f * std::abs(v) + 1e-30f) << i << ", " << j;
      }
    }
  }
}

// The workspace rule of gemv.h: a workspace serves only later calls of the same (m, n, k), so two
// shapes interleaved on one stream each get their own zero-filled region. Both regions are cut
// from one allocation, back to back (the second starts where the first ends, rounded up to 256
// bytes), so a call that wrote outside its region or left a counter non-zero breaks the other
// shape's next call. Calls go A, B, A, B, ...; every result must match the reference.
TEST(SkinnyGemm, TwoShapesWithTheirOwnWorkspacesInterleave) {
  struct Case {
    int64_t m, n, k;
  };
  constexpr Case kCases[] = {{5, 1024, 28672}, {16, 1280, 8192}};
  constexpr int kRounds = 4;
  TestStream stream;
  const int sms = SmCount();
  Weights w[2];
  size_t offset[2] = {0, 0}, bytes[2] = {0, 0}, total = 0;
  for (int s = 0; s < 2; ++s) {
    const auto [m, n, k] = kCases[s];
    SCOPED_TRACE(absl::StrCat("m=", m, " n=", n, " k=", k));
    ASSERT_TRUE(PlanSkinnyGemm(m, n, k, 2, sms).split) << "needs no workspace";
    MakeWeights(n, k, FreshSeed(), stream.get(), &w[s]);
    if (HasFatalFailure()) return;
    bytes[s] = SkinnyGemmWorkspaceBytes(m, n, k, sms);
    ASSERT_GT(bytes[s], 0u);
    offset[s] = total;
    total += (bytes[s] + 255) / 256 * 256;
  }
  DevicePtr<char> ws = DeviceAlloc<char>(static_cast<int64_t>(total));
  ASSERT_TRUE(ws);
  ASSERT_CUDA(cudaMemsetAsync(ws.get(), 0, total, stream.get()));
  for (int round = 0; round < kRounds; ++round) {
    for (int s = 0; s < 2; ++s) {
      SCOPED_TRACE(absl::StrCat("round ", round, ", shape ", s == 0 ? "A" : "B"));
      CheckProduct(Kind::kBf16, w[s], kCases[s].m, ws.get() + offset[s], bytes[s], stream.get());
      if (HasFatalFailure()) return;
    }
  }
}

// Split-K partials are summed in a fixed order whichever CTA arrives last: bitwise-identical
// results from run to run.
TEST(SkinnyGemm, IsDeterministic) {
  constexpr int64_t m = 7, n = 1280, k = 8192;
  TestStream stream;
  Weights w;
  MakeWeights(n, k, FreshSeed(), stream.get(), &w);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(PlanSkinnyGemm(m, n, k, 2, SmCount()).split);
  size_t ws_bytes = 0;
  DevicePtr<char> ws = ZeroedWorkspace(n, k, &ws_bytes);
  DevicePtr<bf16> x = DeviceAlloc<bf16>(m * k);
  DevicePtr<bf16> y = DeviceAlloc<bf16>(m * n);
  ASSERT_TRUE(ws && x && y);
  ASSERT_OK(FillRandomBf16(x.get(), m * k, FreshSeed(), kXScale, stream.get()));
  QuantizedRows xq;
  QuantizeRows(x.get(), m, k, stream.get(), &xq);
  if (HasFatalFailure()) return;
  std::vector<uint16_t> first(m * n), again(m * n);
  for (Kind kind : {Kind::kBf16, Kind::kFp8, Kind::kW8A8}) {
    for (int run = 0; run < 5; ++run) {
      ASSERT_OK(
          RunKernel(kind, w, x.get(), &xq, y.get(), m, ws.get(), ws_bytes, stream.get()));
      ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
      std::vector<uint16_t>& dst = run == 0 ? first : again;
      ASSERT_CUDA(cudaMemcpy(dst.data(), y.get(), m * n * sizeof(bf16), cudaMemcpyDeviceToHost));
      if (run > 0) {
        EXPECT_EQ(first, again) << KindName(kind) << " run " << run;
      }
    }
  }
}

// The fp8 -> bf16 conversion in registers is exact for every e4m3 code (zero, subnormals,
// normals, both signs; NaN excluded): row j of W holds code j once and zeros elsewhere, x is all
// ones and the scales are 1, so y[., j] must be exactly the code's value.
TEST(SkinnyGemmFp8, DecodesEveryCodeExactly) {
  constexpr int64_t n = 256, k = 64;
  TestStream stream;
  std::vector<uint8_t> codes(n * k, 0);
  std::vector<float> want(n, 0.0f);
  for (int64_t j = 0; j < n; ++j) {
    if ((j & 0x7F) == 0x7F) continue;  // NaN
    codes[j * k + (j * 7) % k] = static_cast<uint8_t>(j);
    __nv_fp8_e4m3 q;
    q.__x = static_cast<__nv_fp8_storage_t>(j);
    want[j] = static_cast<float>(q);
  }
  DevicePtr<fp8> wq = DeviceAlloc<fp8>(n * k);
  DevicePtr<fp8> wq_packed = DeviceAlloc<fp8>(n * k);  // n % 128 == 0, k = 64: the same size
  DevicePtr<float> scales = DeviceAlloc<float>(n);
  DevicePtr<bf16> x = DeviceAlloc<bf16>(kSkinnyGemmMaxM * k);
  DevicePtr<bf16> y = DeviceAlloc<bf16>(kSkinnyGemmMaxM * n);
  size_t ws_bytes = 0;
  DevicePtr<char> ws = ZeroedWorkspace(n, k, &ws_bytes);
  ASSERT_TRUE(wq && wq_packed && scales && x && y && ws);
  const std::vector<float> ones(n, 1.0f);
  ASSERT_CUDA(cudaMemcpy(wq.get(), codes.data(), n * k, cudaMemcpyHostToDevice));
  ASSERT_OK(PackSkinnyGemmWeights(wq.get(), wq_packed.get(), n, k, 1, stream.get()));
  ASSERT_CUDA(cudaMemcpy(scales.get(), ones.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  ASSERT_OK(FillBf16(x.get(), kSkinnyGemmMaxM * k, 1.0f, stream.get()));
  for (int64_t m : {int64_t{1}, int64_t{9}}) {
    ASSERT_OK(FillBf16(y.get(), m * n, std::numeric_limits<float>::quiet_NaN(), stream.get()));
    ASSERT_OK(SkinnyGemmFp8(x.get(), wq_packed.get(), scales.get(), y.get(), m, n, k, ws.get(),
                            ws_bytes, stream.get()));
    ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
    std::vector<bf16> y_host(m * n);
    ASSERT_CUDA(cudaMemcpy(y_host.data(), y.get(), m * n * sizeof(bf16), cudaMemcpyDeviceToHost));
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        ASSERT_EQ(__bfloat162float(y_host[i * n + j]), want[j])
            << "m=" << m << " token " << i << " code 0x" << std::hex << j;
      }
    }
  }
  // DequantizeWeightsFp8 decodes the same values.
  DevicePtr<bf16> deq = DeviceAlloc<bf16>(n * k);
  ASSERT_TRUE(deq);
  ASSERT_OK(DequantizeWeightsFp8(wq.get(), scales.get(), deq.get(), n, k, stream.get()));
  ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
  std::vector<bf16> deq_host(n * k);
  ASSERT_CUDA(cudaMemcpy(deq_host.data(), deq.get(), n * k * sizeof(bf16), cudaMemcpyDeviceToHost));
  for (int64_t j = 0; j < n; ++j) {
    ASSERT_EQ(__bfloat162float(deq_host[j * k + (j * 7) % k]), want[j]) << "code " << j;
  }
}

// Every element against the host's bf16(float(code) * scale): random codes over the whole e4m3
// range (no NaN), random scales and a zero one, into a NaN-filled output; a short and a long row
// length (k a multiple of 8, not of 16 or 64) and a grid-stride loop that wraps (300 x 8200).
TEST(DequantizeWeightsFp8, MatchesHostOnEveryElement) {
  TestStream stream;
  for (auto [n, k] : {std::pair<int64_t, int64_t>{37, 264}, {300, 8200}}) {
    const uint64_t seed = FreshSeed();
    SCOPED_TRACE(absl::StrCat("n=", n, " k=", k, " seed=", seed));
    std::mt19937_64 rng(seed);
    std::vector<uint8_t> codes(n * k);
    for (uint8_t& c : codes) {
      c = static_cast<uint8_t>(rng() % 256);
      if ((c & 0x7F) == 0x7F) c = 0;
    }
    std::uniform_real_distribution<float> scale_dist(1e-4f, 2.0f);
    std::vector<float> scales(n);
    for (float& sc : scales) sc = scale_dist(rng);
    scales[n / 2] = 0.0f;
    DevicePtr<fp8> wq = DeviceAlloc<fp8>(n * k);
    DevicePtr<float> scales_dev = DeviceAlloc<float>(n);
    DevicePtr<bf16> w = DeviceAlloc<bf16>(n * k);
    ASSERT_TRUE(wq && scales_dev && w);
    ASSERT_CUDA(cudaMemcpy(wq.get(), codes.data(), n * k, cudaMemcpyHostToDevice));
    ASSERT_CUDA(
        cudaMemcpy(scales_dev.get(), scales.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    ASSERT_OK(FillBf16(w.get(), n * k, std::numeric_limits<float>::quiet_NaN(), stream.get()));
    ASSERT_OK(DequantizeWeightsFp8(wq.get(), scales_dev.get(), w.get(), n, k, stream.get()));
    ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
    std::vector<bf16> got(n * k);
    ASSERT_CUDA(cudaMemcpy(got.data(), w.get(), n * k * sizeof(bf16), cudaMemcpyDeviceToHost));
    int64_t bad = 0;
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t i = 0; i < k; ++i) {
        __nv_fp8_e4m3 q;
        q.__x = static_cast<__nv_fp8_storage_t>(codes[j * k + i]);
        const float want = __bfloat162float(__float2bfloat16_rn(static_cast<float>(q) * scales[j]));
        const float g = __bfloat162float(got[j * k + i]);
        if (!(g == want) && ++bad <= 5) {
          ADD_FAILURE() << "w[" << j << "," << i << "] = " << g << ", want " << want << " (code 0x"
                        << std::hex << static_cast<int>(codes[j * k + i]) << std::dec
                        << ", scale " << scales[j] << ")";
        }
      }
    }
    EXPECT_EQ(bad, 0) << "of " << n * k;
  }
}

// Random codes over the whole e4m3 range (no NaN) with unit scales: checks the kernels' layout
// and conversion at large magnitudes; W8A8 (whose k must be a multiple of 16) on 1024 columns.
TEST(SkinnyGemmFp8, MatchesReferenceOnArbitraryCodes) {
  constexpr int64_t n = 384;
  TestStream stream;
  for (const int64_t k : {int64_t{1032}, int64_t{1024}}) {
    SCOPED_TRACE(absl::StrCat("k=", k));
    std::vector<uint8_t> codes(n * k);
    std::mt19937 rng(static_cast<uint32_t>(FreshSeed()));
    for (uint8_t& c : codes) {
      c = static_cast<uint8_t>(rng() % 256);
      if ((c & 0x7F) == 0x7F) c = 0;
    }
    Weights w;
    w.n = n;
    w.k = k;
    w.wq = DeviceAlloc<fp8>(n * k);
    w.scales = DeviceAlloc<float>(n);
    w.wq_values = DeviceAlloc<bf16>(n * k);
    ASSERT_TRUE(w.wq && w.scales && w.wq_values);
    const std::vector<float> ones(n, 1.0f);
    w.scales_host = ones;
    ASSERT_CUDA(cudaMemcpy(w.wq.get(), codes.data(), n * k, cudaMemcpyHostToDevice));
    ASSERT_CUDA(cudaMemcpy(w.scales.get(), ones.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    ASSERT_OK(
        DequantizeWeightsFp8(w.wq.get(), w.scales.get(), w.wq_values.get(), n, k, stream.get()));
    PackWeights(&w, stream.get());
    if (HasFatalFailure()) return;
    size_t ws_bytes = 0;
    DevicePtr<char> ws = ZeroedWorkspace(n, k, &ws_bytes);
    ASSERT_TRUE(ws);
    for (int64_t m : {int64_t{1}, int64_t{9}, int64_t{16}, int64_t{32}}) {
      CheckProduct(k % 16 == 0 ? Kind::kW8A8 : Kind::kFp8, w, m, ws.get(), ws_bytes, stream.get());
      if (HasFatalFailure()) return;
    }
  }
}

// Quantization: scales = max|row| / 448 and wq = RN_satfinite(w * lift * (448 / (max|row| *
// lift))) (fp8_weights.h), as the host computes them; an all-zero row gets scale 0 and zero
// codes, and a row of values below 1e-37 (lift 2^100: 448 / max|row| alone would overflow) codes
// up to +-448 as any other row. Few rows (1024-thread CTAs, as for a decode step's activations),
// rows longer than what a thread keeps in registers (1024 x 4 x 8 = 32768), and many rows
// (256-thread CTAs, as for weights).
TEST(QuantizeWeightsFp8, MatchesHostRounding) {
  TestStream stream;
  for (auto [n, k] : {std::pair<int64_t, int64_t>{37, 264}, {6, 40008}, {300, 8200}}) {
    SCOPED_TRACE(absl::StrCat("n=", n, " k=", k));
    DevicePtr<bf16> w = DeviceAlloc<bf16>(n * k);
    DevicePtr<fp8> wq = DeviceAlloc<fp8>(n * k);
    DevicePtr<float> scales = DeviceAlloc<float>(n);
    ASSERT_TRUE(w && wq && scales);
    ASSERT_OK(FillRandomBf16(w.get(), n * k, FreshSeed(), 3.0f, stream.get()));
    ASSERT_OK(FillBf16(w.get() + 5 * k, k, 0.0f, stream.get()));  // row 5: all zero
    ASSERT_OK(FillRandomBf16(w.get() + 4 * k, k, FreshSeed(), 1e-37f, stream.get()));  // tiny
    // Poisoned, so a code or scale the kernel skips shows.
    ASSERT_CUDA(cudaMemsetAsync(wq.get(), 0x7F, n * k, stream.get()));
    ASSERT_CUDA(cudaMemsetAsync(scales.get(), 0xFF, n * sizeof(float), stream.get()));  // NaN
    ASSERT_OK(QuantizeWeightsFp8(w.get(), wq.get(), scales.get(), n, k, stream.get()));
    ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
    std::vector<bf16> w_host(n * k);
    std::vector<uint8_t> q_host(n * k);
    std::vector<float> s_host(n);
    ASSERT_CUDA(cudaMemcpy(w_host.data(), w.get(), n * k * sizeof(bf16), cudaMemcpyDeviceToHost));
    ASSERT_CUDA(cudaMemcpy(q_host.data(), wq.get(), n * k, cudaMemcpyDeviceToHost));
    ASSERT_CUDA(
        cudaMemcpy(s_host.data(), scales.get(), n * sizeof(float), cudaMemcpyDeviceToHost));
    for (int64_t j = 0; j < n; ++j) {
      float amax = 0;
      for (int64_t i = 0; i < k; ++i)
        amax = std::max(amax, std::fabs(__bfloat162float(w_host[j * k + i])));
      ASSERT_EQ(s_host[j], amax / 448.0f) << "row " << j;
      const float lift = amax < 0x1p-100f ? 0x1p100f : 1.0f;
      const float mult = amax > 0 ? 448.0f / (amax * lift) : 0.0f;
      ASSERT_TRUE(std::isfinite(mult)) << "row " << j;
      int64_t at_max = 0;
      for (int64_t i = 0; i < k; ++i) {
        const float v = __bfloat162float(w_host[j * k + i]) * lift * mult;
        const uint8_t want = __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3);
        ASSERT_EQ(int{q_host[j * k + i]}, int{want}) << "row " << j << " col " << i;
        at_max += (want & 0x7F) == 0x7E;  // +-448
      }
      if (j != 5) EXPECT_GE(at_max, 1) << "row " << j << ": its largest value is not +-448";
    }
    EXPECT_EQ(s_host[5], 0.0f);
    EXPECT_GT(s_host[4], 0.0f);
    EXPECT_LT(s_host[4] * 448.0f, 448.0f / 3.4028235e38f);  // 448 / max|row 4| overflows
  }
}

TEST(SkinnyGemm, RejectsBadArguments) {
  DevicePtr<char> buf = DeviceAlloc<char>(1 << 20);
  ASSERT_TRUE(buf);
  bf16* x = reinterpret_cast<bf16*>(buf.get());
  bf16* w = x + 64 * 1024;
  bf16* y = w + 128 * 1024;
  fp8* wq = reinterpret_cast<fp8*>(y + 64 * 1024);
  float* scales = reinterpret_cast<float*>(wq + 128 * 1024);
  const auto code = [](const absl::Status& s) { return s.code(); };
  constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
  // m out of range, k not a multiple of 8, misaligned x or w.
  EXPECT_EQ(code(SkinnyGemmBf16(x, w, y, 0, 128, 64, nullptr, 0, nullptr)), kInvalid);
  EXPECT_EQ(code(SkinnyGemmBf16(x, w, y, kSkinnyGemmMaxM + 1, 128, 64, nullptr, 0, nullptr)),
            kInvalid);
  EXPECT_EQ(code(SkinnyGemmBf16(x, w, y, 1, 128, 60, nullptr, 0, nullptr)), kInvalid);
  EXPECT_EQ(code(SkinnyGemmBf16(x, w, y, 1, 0, 64, nullptr, 0, nullptr)), kInvalid);
  EXPECT_EQ(code(SkinnyGemmBf16(x + 4, w, y, 1, 128, 64, nullptr, 0, nullptr)), kInvalid);
  EXPECT_EQ(code(SkinnyGemmBf16(x, w + 4, y, 1, 128, 64, nullptr, 0, nullptr)), kInvalid);
  EXPECT_EQ(code(SkinnyGemmFp8(x, wq + 8, scales, y, 1, 128, 64, nullptr, 0, nullptr)), kInvalid);
  EXPECT_EQ(code(SkinnyGemmFp8(x, wq, nullptr, y, 1, 128, 64, nullptr, 0, nullptr)), kInvalid);
  // W8A8: k a multiple of 16 (x read 16 bytes at a time), x 16-byte aligned, x_scales given.
  const fp8* xq = wq + 64 * 1024;
  EXPECT_EQ(code(SkinnyGemmW8A8(xq, scales, wq, scales, y, 1, 128, 72, nullptr, 0, nullptr)),
            kInvalid);
  EXPECT_EQ(code(SkinnyGemmW8A8(xq + 8, scales, wq, scales, y, 1, 128, 64, nullptr, 0, nullptr)),
            kInvalid);
  EXPECT_EQ(code(SkinnyGemmW8A8(xq, nullptr, wq, scales, y, 1, 128, 64, nullptr, 0, nullptr)),
            kInvalid);
  // A split shape without (enough) workspace.
  const int sms = SmCount();
  ASSERT_TRUE(PlanSkinnyGemm(1, 128, 1024, 2, sms).split);
  const size_t need = SkinnyGemmWorkspaceBytes(1, 128, 1024, sms);
  ASSERT_GT(need, 0u);
  EXPECT_EQ(code(SkinnyGemmBf16(x, w, y, 1, 128, 1024, nullptr, 0, nullptr)), kInvalid);
  EXPECT_EQ(code(SkinnyGemmBf16(x, w, y, 1, 128, 1024, buf.get(), need - 1, nullptr)), kInvalid);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// PackSkinnyGemmWeights puts every byte where SkinnyGemmPackedOffset says and zeros everywhere
// else (the output is poisoned first), for rows that are no multiple of 16 bytes (fp8, k % 16 ==
// 8) and shapes that are no multiple of the tile; PackSkinnyGemmWeightsInPlace gives the same
// bytes over W itself (in a buffer of the packed size), through a scratch of 2.5 tiles.
TEST(SkinnyGemmPackedLayout, PackMatchesTheOffsets) {
  TestStream stream;
  for (auto [n, k, bytes] : {std::tuple<int64_t, int64_t, int>{200, 24, 1},
                             {129, 1032, 2},
                             {1024, 1088, 1},
                             {640, 512, 2},
                             {700, 1000, 2}}) {
    SCOPED_TRACE(absl::StrCat("n=", n, " k=", k, " bytes=", bytes));
    const int64_t size = n * k * bytes;
    const int64_t packed_size = static_cast<int64_t>(SkinnyGemmPackedBytes(n, k, bytes));
    std::vector<uint8_t> w(size);
    std::mt19937 rng(static_cast<uint32_t>(FreshSeed()));
    for (uint8_t& b : w) b = static_cast<uint8_t>(rng() % 255 + 1);  // never 0, like padding
    DevicePtr<char> w_dev = DeviceAlloc<char>(size);
    DevicePtr<char> packed_dev = DeviceAlloc<char>(packed_size);
    ASSERT_TRUE(w_dev && packed_dev);
    ASSERT_CUDA(cudaMemcpy(w_dev.get(), w.data(), size, cudaMemcpyHostToDevice));
    ASSERT_CUDA(cudaMemset(packed_dev.get(), 0xFF, packed_size));
    ASSERT_CUDA(cudaDeviceSynchronize());  // the stream below does not wait for the legacy one
    ASSERT_OK(PackSkinnyGemmWeights(w_dev.get(), packed_dev.get(), n, k, bytes, stream.get()));
    ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
    std::vector<uint8_t> got(packed_size);
    ASSERT_CUDA(cudaMemcpy(got.data(), packed_dev.get(), packed_size, cudaMemcpyDeviceToHost));
    std::vector<uint8_t> want(packed_size, 0);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t b = 0; b < k * bytes; ++b) {
        want[SkinnyGemmPackedOffset(r, b, k, bytes)] = w[r * k * bytes + b];
      }
    }
    ASSERT_EQ(got, want);
    // In place: W at the start of a buffer of the packed size, the rest poisoned.
    ASSERT_CUDA(cudaMemset(packed_dev.get(), 0xFF, packed_size));
    ASSERT_CUDA(cudaMemcpy(packed_dev.get(), w.data(), size, cudaMemcpyHostToDevice));
    ASSERT_CUDA(cudaDeviceSynchronize());
    const size_t tile = static_cast<size_t>(128 * k * bytes);
    DevicePtr<char> scratch = DeviceAlloc<char>(static_cast<int64_t>(tile * 5 / 2));
    ASSERT_TRUE(scratch);
    EXPECT_EQ(PackSkinnyGemmWeightsInPlace(packed_dev.get(), n, k, bytes, scratch.get(), tile - 1,
                                           stream.get())
                  .code(),
              absl::StatusCode::kInvalidArgument);
    ASSERT_OK(PackSkinnyGemmWeightsInPlace(packed_dev.get(), n, k, bytes, scratch.get(),
                                           tile * 5 / 2, stream.get()));
    ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
    ASSERT_CUDA(cudaMemcpy(got.data(), packed_dev.get(), packed_size, cudaMemcpyDeviceToHost));
    EXPECT_EQ(got, want);
  }
}

}  // namespace
}  // namespace truthput
