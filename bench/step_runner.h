// StepRunner: the op list of one step on real GPU buffers. It allocates the layer buffers the
// residency plan allows, fills everything with random data, and launches a real kernel for each
// op of the Workload, in the Workload's order: the same list the roofline prediction uses.
//
// FP8 weights (ModelSpec weight_dtype FP8_E4M3): the blocks' linear layers hold e4m3 weights with
// one fp32 scale per output channel (kernels/fp8_weights.h), quantized from random bf16 at
// start-up. The project's skinny GEMM reads them directly (bf16 activations); cuBLASLt (and the
// skinny GEMM's W8A8 form) runs them as W8A8 on activations quantized per token, and an fp8 GEMM
// applies both scale vectors. The op before such a GEMM writes the quantized copy in place of its
// bf16 output, which nothing else reads (RMSNorm before qkv and gate_up, SiluMul before down);
// o_proj, after attention, quantizes in a small kernel of its own. The runner's workload() counts
// those bytes (Workload::CountE4m3Activations) once --gemm=auto has chosen. The embedding table
// and the LM head stay bf16.
#ifndef TRUTHPUT_BENCH_STEP_RUNNER_H_
#define TRUTHPUT_BENCH_STEP_RUNNER_H_

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/device_buffer.h"
#include "bench/residency.h"
#include "kernels/cublaslt_fp8_gemm.h"
#include "kernels/cublaslt_gemm.h"
#include "workloads/workload.h"

namespace truthput {

class StepRunner {
 public:
  // A GEMM op's buffers in a layer, exactly as Launch uses them (GemmBuffersOf).
  struct GemmBuffers {
    const __nv_bfloat16* x;
    const void* w;         // bf16 [n,k], or e4m3 [n,k] when w_scales is set
    const float* w_scales;  // fp8 weights: one per output channel; null for bf16
    __nv_bfloat16* y;
  };

  struct Options {
    int64_t free_bytes = 0;  // GPU memory the runner may use
    int64_t l2_bytes = 0;
    int sm_count = 0;
    double dram_gbps = 0;  // peak (DramPeakGbps); sets decode attention's split policy
    uint64_t seed = 1;
    // Who runs the projections: "cublaslt"; "own" (the project's skinny GEMM where a GEMM has
    // at most 32 rows, cuBLASLt elsewhere); "auto": where both can, both are timed on the
    // step's buffers and the faster runs. With fp8 weights, cuBLASLt means its W8A8 fp8 GEMM,
    // "own" the skinny GEMM on bf16 activations, "own_w8a8" the skinny GEMM on activations
    // quantized per token (SkinnyGemmW8A8, cuBLASLt's numerics; "own" where k % 16 != 0), and
    // auto times all three. With bf16 weights "own_w8a8" is "own".
    std::string gemm = "auto";
    // Each GEMM, as chosen for this step's shape (plan, cuBLASLt algorithm), checked on layer 0's
    // operands against ReferenceGemmScaled before Create returns (rows 0-255, or the first and
    // last 128): the shapes of a sweep's points run plans and tuned algorithms that the reduced
    // step of VerifyStep, at its small batch, never ran.
    bool check_gemms = true;
    // For tests: runs in each of those checks after the reference (and the own GEMM's packing),
    // right before the launch, on the check's stream. One that changes the operands must make
    // Create fail, whoever runs the GEMM.
    std::function<absl::Status(const Op& op, const GemmBuffers& b, cudaStream_t)>
        TEST_before_checked_launch;
  };

  // Sizes of the buffers, for the residency plan; no GPU needed.
  static ResidencyInput Sizes(const Workload& w, const Options& options);

  // ResourceExhausted (with the reason) when the step cannot run honestly in the free memory;
  // Unimplemented for ops without a kernel yet; NotFound where cuBLASLt has no fp8 algorithm for
  // a shape that needs one. Leaves the buffers filled with random data.
  static absl::StatusOr<std::unique_ptr<StepRunner>> Create(const Workload& w, CublasLtGemm* gemm,
                                                            const Options& options,
                                                            cudaStream_t stream);

  // The whole step: every op, every layer (layer l uses layer buffer l % layer_buffers).
  absl::Status EnqueueStep(cudaStream_t stream) const;
  // All `count` executions of op `op_index`, as in the step but with nothing else between them.
  absl::Status EnqueueOp(size_t op_index, cudaStream_t stream) const;
  // One execution of op `op_index` in layer `layer` (0 for ops outside the layers).
  absl::Status EnqueueOpOnce(size_t op_index, int64_t layer, cudaStream_t stream) const;

  // The op list it runs, with the activation bytes of the GEMMs' chosen paths: the one to
  // predict and rate this run with.
  const Workload& workload() const { return workload_; }
  const ResidencyPlan& residency() const { return plan_; }
  // What ran op `op_index`: the project's kernel, or cuBLASLt and its algorithm.
  std::string Implementation(size_t op_index) const;
  // Whether GEMM op `op_index` quantizes its activations to e4m3 per token before the product
  // (fp8 weights through cuBLASLt or SkinnyGemmW8A8): its reference must too.
  bool QuantizesActivations(size_t op_index) const;
  // Whether op `op_index` (an RMSNorm or SiluMul) writes its output quantized to e4m3 per token,
  // and no bf16 output, for the GEMM right after it, which quantizes activations (above) and then
  // has no quantizer of its own (rows the kernel cannot quantize in place, E4m3CopyIsFused: the
  // GEMM quantizes). --gemm=auto times such GEMMs with that op before them.
  bool QuantizesForNextGemm(size_t op_index) const;
  // Whether GEMM op `op_index` reads that copy from the op before it (which QuantizesForNextGemm),
  // rather than quantizing its activations in its own launch or reading them in bf16.
  bool ReadsCopyFromPreviousOp(size_t op_index) const;
  // Whether GEMM op `op_index` runs the own skinny GEMM, whose weights the runner packed in place
  // (gemv.h): its reference must read them through SkinnyGemmPackedOffset.
  bool PacksWeights(size_t op_index) const;
  // Whether GEMM op `op_index` runs on cuBLASLt's fp8 fast accumulation, whose error grows with
  // k: its check allows for it (ref::CompareGemm).
  bool FastAccumulation(size_t op_index) const;

  // The buffers, for the correctness check.
  struct LayerBuffers {
    __nv_bfloat16 *attn_norm_w, *ffn_norm_w;
    void *w_qkv, *w_o, *w_gate_up, *w_down;   // bf16, or e4m3 with fp8 weights
    float *s_qkv, *s_o, *s_gate_up, *s_down;  // fp8 weights' per-channel scales; else null
    __nv_bfloat16 *k_cache, *v_cache;  // [batch][kv_heads][cache_capacity][head_dim]
  };
  struct Activations {
    int32_t* ids;
    int32_t* last_ids;       // prefill: row of each prompt's last token
    __nv_bfloat16* x_last;   // prefill: those rows of x, gathered for the final norm
    __nv_bfloat16* r_last;   // and of the last block's output (tmp_h), which it adds to them
    __nv_bfloat16 *embedding, *lm_head, *final_norm_w;
    __nv_bfloat16 *x, *xn, *qkv, *q, *attn_out, *tmp_h, *gate_up, *act, *logits;
    __nv_fp8_e4m3* xq;  // W8A8: a GEMM's activations quantized per token; else null
    float* x_scales;    // their scales, one per token
  };
  // Op's GemmBuffers in `layer`; InvalidArgument for an op that is not one of the step's GEMMs.
  absl::StatusOr<GemmBuffers> GemmBuffersOf(const Op& op, int64_t layer) const;
  const LayerBuffers& layer_buffers(int64_t layer) const {
    return layers_[layer % plan_.layer_buffers];
  }
  const Activations& activations() const { return act_; }
  int64_t cache_capacity() const { return cache_capacity_; }
  int num_splits() const { return num_splits_; }

 private:
  StepRunner(const Workload& w, CublasLtGemm* gemm) : workload_(w), gemm_(gemm) {}
  absl::Status Launch(const Op& op, int64_t layer, cudaStream_t stream) const;
  absl::Status LaunchGemm(const Op& op, int64_t layer, cudaStream_t stream) const;
  // Whether op `op_index` writes exactly the x of the GEMM right after it (RMSNorm before qkv and
  // gate_up, SiluMul before down), and so can quantize it.
  bool FeedsNextGemm(size_t op_index) const;
  // The op --gemm=auto times GEMM op `op_index` with, or null: with fp8 weights, the op before
  // it if that op can quantize for it, so that a W8A8 candidate carries the quantization it
  // moves there.
  const Op* CalibratedWith(size_t op_index) const;
  // Tunes cuBLASLt (bf16 or W8A8 fp8) for GEMM op `op_index` on the step's buffers.
  absl::Status AutotuneCublasLt(size_t op_index, cudaStream_t stream);
  // Options::check_gemms for op op_index: the reference of its chosen implementation's product
  // on layer 0, then pack() (the own GEMM's weights, which the reference reads unpacked), then
  // the launch, compared. Internal, naming the op and its implementation, on a mismatch.
  absl::Status CheckGemm(size_t op_index, const std::function<absl::Status()>& pack,
                         cudaStream_t stream);
  // Per call of op `op_index` as configured now, over up to 8 distinct layer buffers (each call
  // after the op CalibratedWith names, where it names one).
  absl::StatusOr<double> TimeRotated(size_t op_index, size_t layers, cudaStream_t stream) const;

  struct GemmChoice {
    bool own = false;         // the project's skinny GEMM, else cuBLASLt
    bool w8a8 = false;        // with own: SkinnyGemmW8A8 (fp8 weights, e4m3 activations)
    std::string calibration;  // what --gemm=auto measured
  };

  Workload workload_;
  CublasLtGemm* gemm_;
  std::unique_ptr<CublasLtFp8Gemm> fp8_gemm_;  // fp8 weights only
  ResidencyPlan plan_;
  int64_t cache_capacity_ = 0;
  int num_splits_ = 1;
  DeviceBuffer shared_;
  std::vector<DeviceBuffer> layer_memory_;
  std::vector<LayerBuffers> layers_;
  Activations act_{};
  float* attn_workspace_ = nullptr;
  void* gemm_workspace_ = nullptr;
  size_t gemm_workspace_bytes_ = 0;
  std::vector<int64_t> gemm_workspace_offsets_;  // per op: its own region (see gemv.h)
  int sm_count_ = 0;
  std::vector<GemmChoice> gemm_choice_;  // parallel to workload_.ops()
};

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_STEP_RUNNER_H_
