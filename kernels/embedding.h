// Embedding lookup: the rows of the new tokens gathered from the embedding table.
#ifndef TRUTHPUT_KERNELS_EMBEDDING_H_
#define TRUTHPUT_KERNELS_EMBEDDING_H_

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"

namespace truthput {

// out[r, :] = table[ids[r], :] for r < rows; table is [vocab, cols]. Ids outside [0, vocab)
// write zeros (the caller's ids are generated in range; this keeps a bad id from faulting).
// Graph-capturable.
absl::Status EmbeddingGather(const __nv_bfloat16* table, const int32_t* ids, __nv_bfloat16* out,
                             int rows, int cols, int vocab, cudaStream_t stream);

// ids[i] = a pseudo-random token id in [0, vocab) from (seed, i). Graph-capturable.
absl::Status FillRandomTokenIds(int32_t* ids, int n, int vocab, uint64_t seed, cudaStream_t stream);

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_EMBEDDING_H_
