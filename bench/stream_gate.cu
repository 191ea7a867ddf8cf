#include "bench/stream_gate.h"

#include <atomic>

#include "kernels/cuda_status.h"

namespace truthput {
namespace {

__device__ __forceinline__ uint64_t GlobalTimerNs() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void GateKernel(const volatile int* open, volatile int* timed_out, uint64_t timeout_ns) {
  const uint64_t start = GlobalTimerNs();
  while (*open == 0) {
    if (GlobalTimerNs() - start > timeout_ns) {
      *timed_out = 1;
      __threadfence_system();
      return;
    }
    // Each poll is a PCIe read anyway; sleeping a little keeps the bus quiet.
    __nanosleep(500);
  }
}

__global__ void SpinKernel(uint64_t nanoseconds) {
  const uint64_t start = GlobalTimerNs();
  while (GlobalTimerNs() - start < nanoseconds) {
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<StreamGate>> StreamGate::Create() {
  void* host = nullptr;
  TP_CUDA_RETURN_IF_ERROR(cudaHostAlloc(&host, 2 * sizeof(int), cudaHostAllocMapped));
  void* device = nullptr;
  if (absl::Status st = CudaStatus(cudaHostGetDevicePointer(&device, host, 0),
                                   "cudaHostGetDevicePointer");
      !st.ok()) {
    cudaFreeHost(host);
    return st;
  }
  volatile int* flags = static_cast<volatile int*>(host);
  flags[0] = 1;
  flags[1] = 0;
  return std::unique_ptr<StreamGate>(new StreamGate(flags, static_cast<int*>(device)));
}

StreamGate::~StreamGate() {
  // The gate kernel may still be polling the flag: release it and wait before freeing the memory.
  Open();
  if (closed_) cudaStreamSynchronize(closed_stream_);
  cudaFreeHost(const_cast<int*>(host_));
}

absl::Status StreamGate::Close(cudaStream_t stream, int64_t timeout_ns) {
  host_[0] = 0;
  host_[1] = 0;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  GateKernel<<<1, 1, 0, stream>>>(device_, device_ + 1,
                                  static_cast<uint64_t>(timeout_ns > 0 ? timeout_ns : 0));
  TP_RETURN_IF_ERROR(CudaStatus(cudaGetLastError(), "GateKernel<<<>>>"));
  closed_ = true;
  closed_stream_ = stream;
  return absl::OkStatus();
}

void StreamGate::Open() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  host_[0] = 1;
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

bool StreamGate::TimedOut() const { return host_[1] != 0; }

absl::Status LaunchSpinKernel(int64_t nanoseconds, cudaStream_t stream) {
  if (nanoseconds < 0) return absl::InvalidArgumentError("LaunchSpinKernel: negative duration");
  SpinKernel<<<1, 1, 0, stream>>>(static_cast<uint64_t>(nanoseconds));
  return CudaStatus(cudaGetLastError(), "SpinKernel<<<>>>");
}

}  // namespace truthput
