// StreamGate: holds a stream shut while the host enqueues a batch of work, then opens it, so the
// GPU runs the batch back to back. Timing each item with its own event pair then measures GPU
// time alone: no item's interval contains the GPU idling while the host catches up (which
// otherwise inflates at least the first item of every batch, and every item of a batch whose
// host-side enqueue is slower than its GPU execution).
//
// Close() enqueues a one-thread kernel that spins on a flag in mapped pinned host memory; Open()
// sets the flag from the host. The kernel gives up after a timeout measured on the GPU's global
// timer, so a host that blocks before Open() (the launch queue filled, or the work it enqueued
// synchronizes) costs a timeout, never a hang; TimedOut() reports it afterwards.
//
// Only put work whose kernels are already loaded behind a closed gate: with CUDA's lazy module
// loading (the default), the first launch of a kernel may wait for the context to go idle, i.e.
// for the gate's timeout. TimeGpuWork gates only graph launches after warm-up.
#ifndef TRUTHPUT_BENCH_STREAM_GATE_H_
#define TRUTHPUT_BENCH_STREAM_GATE_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace truthput {

class StreamGate {
 public:
  static absl::StatusOr<std::unique_ptr<StreamGate>> Create();
  // Opens the gate and waits for the stream it last closed, then frees the flag memory.
  ~StreamGate();
  StreamGate(const StreamGate&) = delete;
  StreamGate& operator=(const StreamGate&) = delete;

  // Enqueues the gate kernel on stream: work enqueued after it waits until Open() or until
  // timeout_ns passed on the GPU. Call Open() before synchronizing on the stream.
  absl::Status Close(cudaStream_t stream, int64_t timeout_ns);
  // Releases the gate kernel. Safe to call when not closed.
  void Open();
  // Whether the last Close() ended by timeout rather than Open(). Valid once the stream has
  // synchronized past the gate kernel.
  bool TimedOut() const;

 private:
  StreamGate(volatile int* host, int* device) : host_(host), device_(device) {}

  volatile int* host_;  // [0]: open flag (host writes), [1]: timed-out flag (GPU writes).
  int* device_;         // The same two ints as the GPU addresses them.
  cudaStream_t closed_stream_ = nullptr;
  bool closed_ = false;
};

// Enqueues a one-thread kernel that busy-waits for `nanoseconds` on the GPU's global timer
// (independent of SM clock speed): a GPU workload of known duration, for testing timers.
absl::Status LaunchSpinKernel(int64_t nanoseconds, cudaStream_t stream);

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_STREAM_GATE_H_
