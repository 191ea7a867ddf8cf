#include "kernels/cublaslt_fp8_gemm.h"

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "kernels/cublaslt_algo.h"
#include "kernels/cuda_status.h"

namespace truthput {
namespace {

constexpr size_t kMaxCandidates = 32;  // what Autotune times per shape

absl::Status CheckShape(int64_t m, int64_t n, int64_t k) {
  if (m <= 0 || n <= 0 || k <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("CublasLtFp8Gemm: non-positive shape m=", m, " n=", n, " k=", k));
  }
  if (n % 16 != 0 || k % 16 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CublasLtFp8Gemm: n and k must be multiples of 16 (16-byte fp8 rows); got n=", n,
        " k=", k));
  }
  return absl::OkStatus();
}

absl::Status CheckOperands(const CublasLtFp8Gemm::ScaledOperands& o, bool per_row,
                           const char* who) {
  if (!CublasLtAligned(o.x) || !CublasLtAligned(o.w) || !CublasLtAligned(o.y)) {
    return absl::InvalidArgumentError(
        absl::StrCat("CublasLtFp8Gemm::", who, ": x, w and y must be 16-byte aligned"));
  }
  if (per_row && (o.x_scales == nullptr || o.w_scales == nullptr || !CublasLtAligned(o.x_scales) ||
                  !CublasLtAligned(o.w_scales))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CublasLtFp8Gemm::", who, ": x_scales and w_scales must be non-null and 16-byte aligned"));
  }
  return absl::OkStatus();
}

}  // namespace

// W and x are e4m3; y is bf16.
struct CublasLtFp8Gemm::Plan : CublasLtMatmulPlan {
  Scaling scaling = Scaling::kUnit;
  bool expanded = false;  // candidates hold CublasLtCandidates' variants too
};

absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> CublasLtFp8Gemm::Create(const Options& options) {
  int device = 0;
  TP_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  cublasLtHandle_t handle = nullptr;
  TP_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&handle));
  absl::Cleanup destroy_handle = [handle] { cublasLtDestroy(handle); };
  void* scale_raw = nullptr;
  TP_CUDA_RETURN_IF_ERROR(cudaMalloc(&scale_raw, sizeof(float)));
  auto* scale = static_cast<float*>(scale_raw);
  absl::Cleanup free_scale = [scale] { cudaFree(scale); };
  const float one = 1.0f;
  TP_CUDA_RETURN_IF_ERROR(cudaMemcpy(scale, &one, sizeof(one), cudaMemcpyHostToDevice));
  void* workspace = nullptr;
  if (options.workspace_bytes > 0) {
    TP_CUDA_RETURN_IF_ERROR(cudaMalloc(&workspace, options.workspace_bytes));
  }
  std::move(destroy_handle).Cancel();
  std::move(free_scale).Cancel();
  return std::unique_ptr<CublasLtFp8Gemm>(new CublasLtFp8Gemm(
      handle, workspace, options.workspace_bytes, scale, options.fast_accum, device));
}

CublasLtFp8Gemm::CublasLtFp8Gemm(cublasLtHandle_t handle, void* workspace, size_t workspace_bytes,
                                 float* scale, bool fast_accum, int device)
    : handle_(handle),
      workspace_(workspace),
      workspace_bytes_(workspace_bytes),
      scale_(scale),
      fast_accum_(fast_accum),
      device_(device) {}

CublasLtFp8Gemm::~CublasLtFp8Gemm() {
  plans_.clear();
  // cudaFree synchronizes the device: no Run in flight still reads the workspace or the scale.
  if (workspace_ != nullptr) cudaFree(workspace_);
  cudaFree(scale_);
  cublasLtDestroy(handle_);
}

absl::Status CublasLtFp8Gemm::BuildDescriptors(Plan& plan, int64_t m, int64_t n, int64_t k,
                                               Scaling scaling) const {
  plan.scaling = scaling;
  plan.label = absl::StrCat("cublasLt fp8", scaling == Scaling::kPerRow ? " per_row" : "",
                            fast_accum_ ? " fast_accum" : "");
  TP_RETURN_IF_ERROR(plan.CreateDescriptors(CUDA_R_8F_E4M3, m, n, k));
  if (scaling == Scaling::kPerRow) {
    // A's vector has cuBLASLt's M = our n entries (w_scales), B's has N = our m (x_scales).
    const int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan.op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode, sizeof(mode)));
    TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan.op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode, sizeof(mode)));
  }
  // kPerRow: a placeholder until Enqueue sets the caller's vectors, so that the heuristic sees
  // the descriptor Run will use (scale pointers set); it dereferences nothing.
  const void* scale = scale_;
  TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      plan.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &scale, sizeof(scale)));
  TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      plan.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &scale, sizeof(scale)));
  const int8_t fast_accum = fast_accum_ ? 1 : 0;
  TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      plan.op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast_accum, sizeof(fast_accum)));
  return absl::OkStatus();
}

absl::Status CublasLtFp8Gemm::Prepare(int64_t m, int64_t n, int64_t k, Scaling scaling) {
  TP_RETURN_IF_ERROR(CheckShape(m, n, k));
  const Key key{m, n, k, scaling};
  if (plans_.contains(key)) return absl::OkStatus();

  auto plan = std::make_unique<Plan>();
  TP_RETURN_IF_ERROR(BuildDescriptors(*plan, m, n, k, scaling));

  const bool per_row = scaling == Scaling::kPerRow;
  absl::StatusOr<CublasLtHeuristicAnswer> answer =
      AskCublasLtHeuristic(handle_, *plan, workspace_bytes_);
  if (!answer.ok()) return answer.status();
  // NOT_SUPPORTED here means no fp8 kernel for this GPU or shape: say so as NotFound, below. A
  // cuBLASLt without per-row kernels for this GPU may say INVALID_VALUE instead: the same.
  const cublasStatus_t heuristic = answer->status;
  if (heuristic != CUBLAS_STATUS_NOT_SUPPORTED &&
      !(per_row && heuristic == CUBLAS_STATUS_INVALID_VALUE)) {
    TP_RETURN_IF_ERROR(CublasStatus(heuristic, "cublasLtMatmulAlgoGetHeuristic(fp8)"));
  }
  if (plan->candidates.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "cublasLtMatmulAlgoGetHeuristic: no fp8 e4m3 algorithm",
        per_row ? " with per-row scales (OUTER_VEC_32F)" : "", " for m=", m, " n=", n, " k=", k,
        " with ", workspace_bytes_, " workspace bytes (", cublasLtGetStatusName(heuristic), ", ",
        answer->returned, " candidates; fp8 needs compute capability 8.9 or later)"));
  }
  plans_.emplace(key, std::move(plan));
  return absl::OkStatus();
}

absl::StatusOr<CublasLtFp8Gemm::Plan*> CublasLtFp8Gemm::FindOrPrepare(const Key& key,
                                                                     cudaStream_t stream) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second.get();
  const auto& [m, n, k, scaling] = key;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  TP_CUDA_RETURN_IF_ERROR(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone) {
    return absl::FailedPreconditionError(
        absl::StrCat("CublasLtFp8Gemm::Run: shape m=", m, " n=", n, " k=", k,
                     scaling == Scaling::kPerRow ? " (per-row scales)" : "",
                     " not prepared before stream capture; call Prepare first"));
  }
  TP_RETURN_IF_ERROR(Prepare(m, n, k, scaling));
  return plans_.find(key)->second.get();
}

absl::Status CublasLtFp8Gemm::Enqueue(Plan& plan, const cublasLtMatmulAlgo_t& algo,
                                      const ScaledOperands& o, cudaStream_t stream) {
  if (plan.scaling == Scaling::kPerRow) {
    // cublasLtMatmul reads the descriptor when it enqueues, so each call (and a captured graph)
    // keeps the vectors set here.
    const void* a_scale = o.w_scales;
    const void* b_scale = o.x_scales;
    TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale, sizeof(a_scale)));
    TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale, sizeof(b_scale)));
  }
  const float alpha = 1.0f;
  const float beta = 0.0f;  // y's prior contents (even NaN) are never read.
  TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(handle_, plan.op, &alpha, o.w, plan.a, o.x, plan.b,
                                           &beta, o.y, plan.c, o.y, plan.c, &algo, workspace_,
                                           workspace_bytes_, stream));
  return absl::OkStatus();
}

absl::Status CublasLtFp8Gemm::Run(const fp8_e4m3* x, const fp8_e4m3* w, __nv_bfloat16* y, int64_t m,
                                  int64_t n, int64_t k, cudaStream_t stream) {
  const ScaledOperands o{x, nullptr, w, nullptr, y};
  TP_RETURN_IF_ERROR(CheckOperands(o, /*per_row=*/false, "Run"));
  absl::StatusOr<Plan*> plan = FindOrPrepare(Key{m, n, k, Scaling::kUnit}, stream);
  if (!plan.ok()) return plan.status();
  return Enqueue(**plan, (*plan)->algo, o, stream);
}

absl::Status CublasLtFp8Gemm::Run(const fp8_e4m3* x, const float* x_scales, const fp8_e4m3* w,
                                  const float* w_scales, __nv_bfloat16* y, int64_t m, int64_t n,
                                  int64_t k, cudaStream_t stream) {
  const ScaledOperands o{x, x_scales, w, w_scales, y};
  TP_RETURN_IF_ERROR(CheckOperands(o, /*per_row=*/true, "Run"));
  absl::StatusOr<Plan*> plan = FindOrPrepare(Key{m, n, k, Scaling::kPerRow}, stream);
  if (!plan.ok()) return plan.status();
  return Enqueue(**plan, (*plan)->algo, o, stream);
}

absl::Status CublasLtFp8Gemm::Autotune(int64_t m, int64_t n, int64_t k,
                                       const std::vector<Operands>& operands, cudaStream_t stream) {
  std::vector<ScaledOperands> unscaled;
  unscaled.reserve(operands.size());
  for (const Operands& o : operands) unscaled.push_back({o.x, nullptr, o.w, nullptr, o.y});
  return AutotuneImpl(Key{m, n, k, Scaling::kUnit}, unscaled, stream);
}

absl::Status CublasLtFp8Gemm::Autotune(int64_t m, int64_t n, int64_t k,
                                       const std::vector<ScaledOperands>& operands,
                                       cudaStream_t stream) {
  return AutotuneImpl(Key{m, n, k, Scaling::kPerRow}, operands, stream);
}

absl::StatusOr<CublasLtFp8Gemm::Plan*> CublasLtFp8Gemm::ExpandedPlan(const Key& key) {
  const auto& [m, n, k, scaling] = key;
  TP_RETURN_IF_ERROR(Prepare(m, n, k, scaling));
  Plan& plan = *plans_.find(key)->second;
  if (!plan.expanded) {
    plan.candidates = CublasLtCandidates(handle_, plan.op, plan.a, plan.b, plan.c,
                                         plan.candidates, workspace_bytes_, kMaxCandidates);
    plan.expanded = true;
  }
  return &plan;
}

absl::StatusOr<size_t> CublasLtFp8Gemm::CandidateCount(int64_t m, int64_t n, int64_t k,
                                                       Scaling scaling) {
  absl::StatusOr<Plan*> plan = ExpandedPlan(Key{m, n, k, scaling});
  if (!plan.ok()) return plan.status();
  return (*plan)->candidates.size();
}

absl::Status CublasLtFp8Gemm::UseCandidate(int64_t m, int64_t n, int64_t k, Scaling scaling,
                                           size_t index) {
  absl::StatusOr<Plan*> plan = ExpandedPlan(Key{m, n, k, scaling});
  if (!plan.ok()) return plan.status();
  Plan& p = **plan;
  if (index >= p.candidates.size()) {
    return absl::OutOfRangeError(absl::StrCat("CublasLtFp8Gemm::UseCandidate: index ", index,
                                              " of ", p.candidates.size(), " candidates"));
  }
  p.algo = p.candidates[index].algo;
  p.tuned = true;
  p.description =
      absl::StrCat(p.Describe(index), " candidate=", index + 1, "/", p.candidates.size());
  return absl::OkStatus();
}

absl::Status CublasLtFp8Gemm::AutotuneImpl(const Key& key,
                                           const std::vector<ScaledOperands>& operands,
                                           cudaStream_t stream) {
  const bool per_row = std::get<3>(key) == Scaling::kPerRow;
  if (operands.empty()) {
    return absl::InvalidArgumentError("CublasLtFp8Gemm::Autotune: no operands");
  }
  for (const ScaledOperands& o : operands) {
    TP_RETURN_IF_ERROR(CheckOperands(o, per_row, "Autotune"));
  }
  absl::StatusOr<Plan*> expanded = ExpandedPlan(key);
  if (!expanded.ok()) return expanded.status();
  Plan& plan = **expanded;
  return TuneCublasLtPlan(
      plan, operands.size(),
      [&](const cublasLtMatmulAlgo_t& algo, size_t set) {
        return Enqueue(plan, algo, operands[set], stream);
      },
      stream);
}

std::string CublasLtFp8Gemm::AlgoDescription(int64_t m, int64_t n, int64_t k,
                                             Scaling scaling) const {
  auto it = plans_.find(Key{m, n, k, scaling});
  return it == plans_.end() ? "not prepared" : it->second->description;
}

}  // namespace truthput
