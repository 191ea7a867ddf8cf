#include "kernels/cublaslt_gemm.h"

#include <algorithm>
#include <cstdint>
#include <vector>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "kernels/cublaslt_algo.h"
#include "kernels/cuda_status.h"

namespace truthput {
namespace {

// The alignment Run checks and the heuristic is told it may rely on. 16 bytes is what the
// vectorized and TMA paths need; asking for more would exclude nothing useful on Hopper.
constexpr uint32_t kAlignmentBytes = 16;
constexpr int kHeuristicResults = 8;

bool Aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % kAlignmentBytes == 0; }

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

std::string Describe(const cublasLtMatmulHeuristicResult_t& result) {
  return absl::StrCat("cublasLt", CublasLtAlgoAttributes(result));
}

}  // namespace

struct CublasLtGemm::Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr;  // W as column-major [k, n], ld k.
  cublasLtMatrixLayout_t b = nullptr;  // x as column-major [k, m], ld k.
  cublasLtMatrixLayout_t c = nullptr;  // y as column-major [n, m], ld n (also D).
  cublasLtMatmulAlgo_t algo{};
  std::string description;
  // Every usable heuristic result, best first, for Autotune.
  std::vector<cublasLtMatmulHeuristicResult_t> candidates;
  bool tuned = false;

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    // Destroy calls only fail for null arguments; nothing useful to do with an error here.
    if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (op != nullptr) cublasLtMatmulDescDestroy(op);
  }
};

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
  // cuBLASLt is column-major. Read as column-major, the row-major buffers are their transposes:
  // W is [k,n], x is [k,m], y is [n,m]. So y = x · W^T becomes y^T[n,m] = op_T(W) · op_N(x):
  // A = W (op T, lda k), B = x (op N, ldb k), C = D = y (ldc n).
  TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&plan->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans_a = CUBLAS_OP_T;
  const cublasOperation_t trans_b = CUBLAS_OP_N;
  TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA,
                                                           &trans_a, sizeof(trans_a)));
  TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB,
                                                           &trans_b, sizeof(trans_b)));
  TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_16BF, k, n, k));
  TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_16BF, k, m, k));
  TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->c, CUDA_R_16BF, n, m, n));

  cublasLtMatmulPreference_t pref = nullptr;
  TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref));
  const absl::Cleanup destroy_pref = [pref] { cublasLtMatmulPreferenceDestroy(pref); };
  const uint64_t max_workspace = workspace_bytes_;
  TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_workspace, sizeof(max_workspace)));
  for (cublasLtMatmulPreferenceAttributes_t attr :
       {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
    TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceSetAttribute(pref, attr, &kAlignmentBytes,
                                                                   sizeof(kAlignmentBytes)));
  }

  cublasLtMatmulHeuristicResult_t results[kHeuristicResults] = {};
  int returned = 0;
  TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulAlgoGetHeuristic(handle_, plan->op, plan->a, plan->b,
                                                           plan->c, plan->c, pref,
                                                           kHeuristicResults, results, &returned));
  // Results come best first; take the first one cuBLASLt marks usable within our workspace.
  const cublasLtMatmulHeuristicResult_t* chosen = nullptr;
  for (int i = 0; i < returned; ++i) {
    if (results[i].state == CUBLAS_STATUS_SUCCESS && results[i].workspaceSize <= workspace_bytes_) {
      if (chosen == nullptr) chosen = &results[i];
      plan->candidates.push_back(results[i]);
    }
  }
  if (chosen == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "cublasLtMatmulAlgoGetHeuristic: no algorithm for bf16 GEMM m=", m, " n=", n, " k=", k,
        " with ", workspace_bytes_, " workspace bytes (", returned, " candidates)"));
  }
  plan->algo = chosen->algo;
  plan->description = Describe(*chosen);
  plans_.emplace(shape, std::move(plan));
  return absl::OkStatus();
}

absl::Status CublasLtGemm::Run(const bf16* x, const bf16* w, bf16* y, int64_t m, int64_t n,
                               int64_t k, cudaStream_t stream) {
  if (!Aligned(x) || !Aligned(w) || !Aligned(y)) {
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
  if (plan.tuned) return absl::OkStatus();
  if (plan.candidates.size() < 2) {
    plan.tuned = true;
    plan.description += " autotuned=1/1";
    return absl::OkStatus();
  }
  const float alpha = 1.0f, beta = 0.0f;
  absl::StatusOr<size_t> fastest = FastestCublasLtCandidate(
      plan.candidates.size(), operands.size(),
      [&](size_t c, size_t i) -> absl::Status {
        const Operands& o = operands[i];
        TP_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(handle_, plan.op, &alpha, o.w, plan.a, o.x,
                                                 plan.b, &beta, o.y, plan.c, o.y, plan.c,
                                                 &plan.candidates[c].algo, workspace_,
                                                 workspace_bytes_, stream));
        return absl::OkStatus();
      },
      stream);
  if (!fastest.ok()) return fastest.status();
  const size_t best = *fastest;
  plan.algo = plan.candidates[best].algo;
  plan.tuned = true;
  plan.description = absl::StrCat(Describe(plan.candidates[best]), " autotuned=", best + 1, "/",
                                   plan.candidates.size());
  return absl::OkStatus();
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
