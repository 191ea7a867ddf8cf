#include "kernels/cublaslt_gemm.h"

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cublaslt_algo.h"
#include "kernels/cuda_status.h"

namespace truthput {
namespace {

absl::Status CheckShape(int64_t m, int64_t n, int64_t k) {
  if (m <= 0 || n <= 0 || k <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("CublasLtGemm: non-positive shape m=", m, " n=", n, " k=", k));
  }
  if (n % 8 != 0 || k % 8 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CublasLtGemm: n and k must be multiples of 8 (16-byte rows); got n=", n, " k=", k));
  }
  return absl::OkStatus();
}

}  // namespace

struct CublasLtGemm::Plan : CublasLtMatmulPlan {};

absl::StatusOr<std::unique_ptr<CublasLtGemm>> CublasLtGemm::Create(size_t workspace_bytes) {
  int device = 0;
  TP_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  cublasLtHandle_t handle = nullptr;
  TP_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&handle));
  void* workspace = nullptr;
  if (workspace_bytes > 0) {
    if (absl::Status st =
            CudaStatus(cudaMalloc(&workspace, workspace_bytes), "cudaMalloc(workspace)");
        !st.ok()) {
      cublasLtDestroy(handle);
      return st;
    }
  }
  return std::unique_ptr<CublasLtGemm>(
      new CublasLtGemm(handle, workspace, workspace_bytes, device));
}

CublasLtGemm::CublasLtGemm(cublasLtHandle_t handle, void* workspace, size_t workspace_bytes,
                           int device)
    : handle_(handle), workspace_(workspace), workspace_bytes_(workspace_bytes), device_(device) {}

CublasLtGemm::~CublasLtGemm() {
  plans_.clear();
  // cudaFree synchronizes the device, so no Run still in flight can touch the freed workspace.
  if (workspace_ != nullptr) cudaFree(workspace_);
  cublasLtDestroy(handle_);
}

absl::Status CublasLtGemm::Prepare(int64_t m, int64_t n, int64_t k) {
  TP_RETURN_IF_ERROR(CheckShape(m, n, k));
  const Shape shape{m, n, k};
  if (plans_.contains(shape)) return absl::OkStatus();

  auto plan = std::make_unique<Plan>();
  plan->label = "cublasLt";
  TP_RETURN_IF_ERROR(plan->CreateDescriptors(CUDA_R_16BF, m, n, k));
  absl::StatusOr<CublasLtHeuristicAnswer> answer =
      AskCublasLtHeuristic(handle_, *plan, workspace_bytes_);
  if (!answer.ok()) return answer.status();
  TP_RETURN_IF_ERROR(CublasStatus(answer->status, "cublasLtMatmulAlgoGetHeuristic"));
  if (plan->candidates.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "cublasLtMatmulAlgoGetHeuristic: no algorithm for bf16 GEMM m=", m, " n=", n, " k=", k,
        " with ", workspace_bytes_, " workspace bytes (", answer->returned, " candidates)"));
  }
  plans_.emplace(shape, std::move(plan));
  return absl::OkStatus();
}

absl::Status CublasLtGemm::Run(const bf16* x, const bf16* w, bf16* y, int64_t m, int64_t n,
                               int64_t k, cudaStream_t stream) {
  if (!CublasLtAligned(x) || !CublasLtAligned(w) || !CublasLtAligned(y)) {
    return absl::InvalidArgumentError("CublasLtGemm::Run: x, w and y must be 16-byte aligned");
  }
  auto it = plans_.find(Shape{m, n, k});
  if (it == plans_.end()) {
    // Preparing during capture would run host-side heuristics mid-capture and is easy to do by
    // accident in a timing loop; refuse, so the caller learns to Prepare first.
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    TP_CUDA_RETURN_IF_ERROR(cudaStreamIsCapturing(stream, &capture));
    if (capture != cudaStreamCaptureStatusNone) {
      return absl::FailedPreconditionError(
          absl::StrCat("CublasLtGemm::Run: shape m=", m, " n=", n, " k=", k,
                       " not prepared before stream capture; call Prepare first"));
    }
    TP_RETURN_IF_ERROR(Prepare(m, n, k));
    it = plans_.find(Shape{m, n, k});
  }
  const Plan& plan = *it->second;
  const float alpha = 1.0f;
  const float beta = 0.0f;  // C is y; with beta 0 its prior contents (even NaN) are never read.
  TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(handle_, plan.op, &alpha, w, plan.a, x, plan.b, &beta, y,
                                           plan.c, y, plan.c, &plan.algo, workspace_,
                                           workspace_bytes_, stream));
  return absl::OkStatus();
}

absl::Status CublasLtGemm::Autotune(int64_t m, int64_t n, int64_t k,
                                    const std::vector<Operands>& operands, cudaStream_t stream) {
  TP_RETURN_IF_ERROR(Prepare(m, n, k));
  if (operands.empty()) return absl::InvalidArgumentError("CublasLtGemm::Autotune: no operands");
  Plan& plan = *plans_.find(Shape{m, n, k})->second;
  const float alpha = 1.0f, beta = 0.0f;
  return TuneCublasLtPlan(
      plan, operands.size(),
      [&](const cublasLtMatmulAlgo_t& algo, size_t set) -> absl::Status {
        const Operands& o = operands[set];
        TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(handle_, plan.op, &alpha, o.w, plan.a, o.x,
                                                 plan.b, &beta, o.y, plan.c, o.y, plan.c, &algo,
                                                 workspace_, workspace_bytes_, stream));
        return absl::OkStatus();
      },
      stream);
}

std::string CublasLtGemm::AlgoDescription(int64_t m, int64_t n, int64_t k) const {
  auto it = plans_.find(Shape{m, n, k});
  return it == plans_.end() ? "not prepared" : it->second->description;
}

std::string CublasLtGemm::Version() {
  // cublasLtGetVersion is major * 10000 + minor * 100 + patch (as CUBLAS_VERSION).
  const size_t v = cublasLtGetVersion();
  return absl::StrCat(v / 10000, ".", (v / 100) % 100, ".", v % 100);
}

}  // namespace truthput
