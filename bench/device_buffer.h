// DeviceBuffer: an owned cudaMalloc allocation, freed on destruction.
#ifndef TRUTHPUT_BENCH_DEVICE_BUFFER_H_
#define TRUTHPUT_BENCH_DEVICE_BUFFER_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"

namespace truthput {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  static absl::StatusOr<DeviceBuffer> Allocate(int64_t bytes, const char* what) {
    DeviceBuffer b;
    if (bytes <= 0) return b;
    cudaError_t err = cudaMalloc(&b.ptr_, static_cast<size_t>(bytes));
    if (err != cudaSuccess) {
      b.ptr_ = nullptr;
      return CudaStatus(err, absl::StrCat("cudaMalloc(", what, ", ", bytes, " bytes)").c_str());
    }
    b.bytes_ = bytes;
    return b;
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      Reset();
      ptr_ = std::exchange(o.ptr_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  ~DeviceBuffer() { Reset(); }

  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }
  void* get() const { return ptr_; }
  int64_t bytes() const { return bytes_; }

 private:
  void Reset() {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  void* ptr_ = nullptr;
  int64_t bytes_ = 0;
};

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_DEVICE_BUFFER_H_
