// The correctness check of a StepRunner: every kernel of a step, checked against a double-precision
// CPU reference (bench/reference_ops.h) on the very inputs it read. A benchmark that times wrong
// results, or zeros, measures nothing; this is what makes the GPU numbers worth reporting.
//
// Meant for a reduced model (ReducedForVerification: 2 layers, a small vocabulary, small batch and
// context), since every weight is copied to the host and every GEMM is redone on the CPU.
#ifndef TRUTHPUT_BENCH_STEP_VERIFIER_H_
#define TRUTHPUT_BENCH_STEP_VERIFIER_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bench/step_runner.h"
#include "workloads/model_spec.pb.h"

namespace truthput {

// Runs the whole step in StepRunner::EnqueueStep's order (the ops before the layers, every layer's
// ops for layer 0, 1, ..., the ops after), one execution at a time on `stream`, and checks each:
//   1. copies the op's inputs to the host and rejects them if all zero or not finite;
//   2. fills its outputs with NaN (so an output the kernel fails to write cannot pass); in-place
//      ops (the residual adds) instead keep a host copy of x from before;
//   3. launches it with runner.EnqueueOpOnce and synchronizes;
//   4. compares the outputs with ref::Compare against the reference computed from the copied
//      inputs (fp8 weights dequantized with their scales; for a W8A8 GEMM the activations also
//      go through the GPU's per-token e4m3 quantization, redone on the host, or are read from
//      the e4m3 copy the op before wrote): rtol 2e-2 for the bf16 element-wise ops, 7e-2 for a
//      norm or SiluMul that writes only an e4m3 copy (StepRunner::QuantizesForNextGemm; its
//      per-token scales 1e-2 against max |ref row| / 448), 3e-2 for GEMMs and attention, exact
//      for copies (embedding rows, appended V rows).
//      rope_kv_append also must leave every cache position outside the appended ones bit-for-bit
//      unchanged.
// All shapes come from the ops and runner.cache_capacity(). Blocks the host (it synchronizes
// after every op); leaves the buffers as one EnqueueStep would.
//
// Errors: Internal on the first mismatch, naming the op, the layer and the worst element, e.g.
// "verification failed: op down_proj (layer 1): |err| 0.53 at [0, 17] (got 1.2, want 0.67), rtol
// 0.03; ..."; FailedPrecondition for inputs that are all zero or non-finite, or token ids out of
// range; Unimplemented for an op the verifier has no reference for; CUDA errors as Internal.
absl::Status VerifyStep(const StepRunner& runner, cudaStream_t stream);

// For tests: `hook` runs after each launch of every VerifyStep in the process, on its stream,
// with the runner, the op's index and its layer; its error is VerifyStep's. A hook that corrupts
// an output must make VerifyStep fail. Process-wide so that a test can reach the check a whole
// run makes (RunOnGpu). Null removes it. Not thread-safe: set it while no VerifyStep runs.
using VerifyStepHook = std::function<absl::Status(const StepRunner& runner, size_t op_index,
                                                  int64_t layer, cudaStream_t stream)>;
void SetVerifyStepHookForTesting(VerifyStepHook hook);

// `model` cut down so that VerifyStep runs in seconds: min(num_layers, 2) layers (two, so that a
// layer's ops also run on the state another layer left) and min(vocab_size, 4096) vocabulary.
// Everything else (hidden size, heads, FFN, dtypes, RoPE theta, eps) is unchanged, so every GEMM
// and attention shape of a layer is the real model's. ValidateModelSpec's error if `model` is not
// valid.
absl::StatusOr<ModelSpec> ReducedForVerification(const ModelSpec& model);

// The step VerifyStep checks for a run whose first step is `first`: the same phase, TP and
// (capped) shape, small enough for a double-precision CPU reference of every op and odd enough
// to cross tiles: decode batch <= 3 at context <= 129, prefill batch <= 2 of prompts <= 37.
StepConfig ReducedStepForVerification(const StepConfig& first);

// The StepRunner::Options::gemm values whose kernels a run with --gemm=`gemm` may launch, each of
// which must be verified: "auto" may pick any ("own", with fp8 weights "own_w8a8", "cublaslt");
// the others only themselves ("own_w8a8" is "own" with bf16 weights).
std::vector<std::string> GemmVariantsToVerify(const std::string& gemm, bool fp8_weights);

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_STEP_VERIFIER_H_
