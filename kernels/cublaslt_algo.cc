#include "kernels/cublaslt_algo.h"

#include <algorithm>
#include <cstdint>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "kernels/cublaslt_names.h"
#include "kernels/cuda_status.h"

namespace truthput {
namespace {

// Appends " name=value", the printable name through `namer` where one is given and knows the
// value, or " name=?" where cuBLASLt will not say: the description is informational, so an
// unreadable field must not fail a benchmark.
template <typename T>
void AppendAttr(std::string* out, const char* name, const cublasLtMatmulAlgo_t& algo,
                cublasLtMatmulAlgoConfigAttributes_t attr,
                const char* (*namer)(uint32_t) = nullptr) {
  T value{};
  size_t written = 0;
  if (cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &value, sizeof(value), &written) !=
          CUBLAS_STATUS_SUCCESS ||
      written != sizeof(value)) {
    absl::StrAppend(out, " ", name, "=?");
    return;
  }
  const char* s = namer != nullptr ? namer(static_cast<uint32_t>(value)) : nullptr;
  if (s != nullptr) {
    absl::StrAppend(out, " ", name, "=", s);
  } else if (namer != nullptr) {
    absl::StrAppend(out, " ", name, "=#", value);  // an id the name table does not know
  } else {
    absl::StrAppend(out, " ", name, "=", value);
  }
}

const char* ReductionName(uint32_t scheme) {
  switch (scheme) {
    case CUBLASLT_REDUCTION_SCHEME_NONE:
      return "none";
    case CUBLASLT_REDUCTION_SCHEME_INPLACE:
      return "inplace";
    case CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE:
      return "compute_type";
    case CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE:
      return "output_type";
    default:
      return nullptr;
  }
}

}  // namespace

std::string CublasLtAlgoAttributes(const cublasLtMatmulHeuristicResult_t& result) {
  const cublasLtMatmulAlgo_t& algo = result.algo;
  std::string s;
  AppendAttr<int32_t>(&s, "algo", algo, CUBLASLT_ALGO_CONFIG_ID);
  AppendAttr<uint32_t>(&s, "tile", algo, CUBLASLT_ALGO_CONFIG_TILE_ID, CublasLtTileName);
  AppendAttr<uint32_t>(&s, "stages", algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, CublasLtStagesName);
  AppendAttr<int32_t>(&s, "splitk", algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM);
  AppendAttr<uint32_t>(&s, "reduction", algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME,
                       ReductionName);
  AppendAttr<uint32_t>(&s, "swizzle", algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING);
  AppendAttr<uint32_t>(&s, "custom", algo, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION);
  AppendAttr<uint16_t>(&s, "inner", algo, CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID,
                       CublasLtInnerShapeName);
  AppendAttr<uint16_t>(&s, "cluster", algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID,
                       CublasLtClusterShapeName);
  absl::StrAppend(&s, " workspace=", result.workspaceSize, " waves=", result.wavesCount);
  return s;
}

absl::StatusOr<size_t> FastestCublasLtCandidate(
    size_t candidates, size_t operand_sets,
    const std::function<absl::Status(size_t candidate, size_t set)>& enqueue,
    cudaStream_t stream) {
  cudaEvent_t start = nullptr, stop = nullptr;
  TP_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  const absl::Cleanup destroy_start = [start] { cudaEventDestroy(start); };
  TP_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  const absl::Cleanup destroy_stop = [stop] { cudaEventDestroy(stop); };
  const size_t per_round = std::min<size_t>(operand_sets, 8);
  const int reps = std::max<int>(3, static_cast<int>(12 / std::max<size_t>(per_round, 1)));
  float best_ms = 0;
  size_t best = 0;
  for (size_t c = 0; c < candidates; ++c) {
    auto run_round = [&]() -> absl::Status {
      for (size_t i = 0; i < per_round; ++i) TP_RETURN_IF_ERROR(enqueue(c, i));
      return absl::OkStatus();
    };
    TP_RETURN_IF_ERROR(run_round());  // warm-up (and a check that the algorithm runs at all)
    float round_best = 0;
    for (int r = 0; r < reps; ++r) {
      TP_CUDA_RETURN_IF_ERROR(cudaEventRecord(start, stream));
      TP_RETURN_IF_ERROR(run_round());
      TP_CUDA_RETURN_IF_ERROR(cudaEventRecord(stop, stream));
      TP_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop));
      float ms = 0;
      TP_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start, stop));
      if (r == 0 || ms < round_best) round_best = ms;
    }
    if (c == 0 || round_best < best_ms) {
      best_ms = round_best;
      best = c;
    }
  }
  return best;
}

}  // namespace truthput
