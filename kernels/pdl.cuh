// Programmatic dependent launch (PDL) for the decode step's chain of small kernels.
//
// A kernel launched with pdl::Launch may start (its CTAs become resident) while the kernel before
// it in the stream still runs, once every CTA of that kernel has called AllowNextLaunch (or
// exited). It must call WaitForPrevious before it touches memory another kernel writes or reads:
// that returns when the previous kernel has completed and its writes are visible, and since the
// previous kernel waited in turn, everything before it has too. What overlaps is the launch
// itself: in the 70B decode step at batch 1 (seven such kernels per layer besides the attention
// merge) about 0.9 us per kernel, 46.81 -> 46.33 ms bf16 and 25.92 -> 25.41 ms fp8 on an H100.
// Works in streams and in captured CUDA graphs (programmatic edges).
//
// The skinny GEMM is not launched this way, it only allows the next launch. Launched this way
// too, issuing its first weight k-steps before the wait (one-wave row splits at 2 CTAs per SM
// excepted), it gained on an H100 (fp8 step at batch 1 and 16: -1.1% and -3.9%) but lost on an
// H200 (fp8 batch 8 and 16: +4.9% and +8.4%, bf16 batch 16 +1.5-2.5%).
// results/h100-sxm/gemv_load_experiment.txt, section 17.
#ifndef TRUTHPUT_KERNELS_PDL_CUH_
#define TRUTHPUT_KERNELS_PDL_CUH_

#include <cuda_runtime.h>

#include <utility>

namespace truthput::pdl {

// Lets the next kernel in the stream, if it was launched with Launch, start launching now. Call
// it after WaitForPrevious: with both decode attention kernels allowing it before their own wait,
// decode_attention_test read partials that were not written yet (on an H100).
__device__ __forceinline__ void AllowNextLaunch() {
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

// Waits until the previous kernel in the stream has completed and its writes are visible. Returns
// at once in a kernel that was not launched with Launch.
__device__ __forceinline__ void WaitForPrevious() {
  asm volatile("griddepcontrol.wait;" ::: "memory");
}

// kernel<<<grid, block, smem, stream>>>(args...) as a programmatic dependent of the previous
// kernel in the stream. Returns the launch's error.
template <typename... Params, typename... Args>
cudaError_t Launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                   cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = attr;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace truthput::pdl

#endif  // TRUTHPUT_KERNELS_PDL_CUH_
