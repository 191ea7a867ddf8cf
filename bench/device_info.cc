#include "bench/device_info.h"

#include <cuda_runtime_api.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "kernels/cublaslt_gemm.h"
#include "kernels/cuda_status.h"

namespace truthput {
namespace {

// CUDA encodes versions as 1000 * major + 10 * minor.
std::string CudaVersionString(int v) { return absl::StrCat(v / 1000, ".", (v % 1000) / 10); }

std::string UuidString(const cudaUUID_t& uuid) {
  const auto* b = reinterpret_cast<const unsigned char*>(uuid.bytes);
  std::string s = "GPU-";
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    absl::StrAppendFormat(&s, "%02x", b[i]);
  }
  return s;
}

std::string ReadFileOrEmpty(const char* path) {
  std::ifstream in(path);
  if (!in) return "";
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Where the attribute is unsupported (cudaErrorInvalidValue), the field stays 0 rather than
// failing the whole identity; any other error fails it, naming the attribute (a clock of 0 would
// change decode attention's split policy, DramPeakGbps).
absl::StatusOr<int> AttributeOrZero(cudaDeviceAttr attr, const char* name, int device) {
  int value = 0;
  const cudaError_t err = cudaDeviceGetAttribute(&value, attr, device);
  if (err == cudaErrorInvalidValue) {
    cudaGetLastError();  // Not sticky; don't leave it for the next caller to find.
    return 0;
  }
  TP_RETURN_IF_ERROR(
      CudaStatus(err, absl::StrCat("cudaDeviceGetAttribute(", name, ")").c_str()));
  return value;
}

}  // namespace

std::string ParseNvidiaDriverVersion(const std::string& proc_text) {
  // The first line reads "NVRM version: NVIDIA UNIX <arch> Kernel Module  <version>  <date>"
  // (open kernel modules: "NVIDIA UNIX Open Kernel Module for <arch>  <version>  <date>"): take
  // the first token after "Module" that looks like a dotted version.
  const std::string first_line(proc_text.substr(0, proc_text.find('\n')));
  const size_t module = first_line.find("Module");
  if (first_line.rfind("NVRM version:", 0) != 0 || module == std::string::npos) return "";
  for (absl::string_view token :
       absl::StrSplit(absl::string_view(first_line).substr(module), ' ', absl::SkipEmpty())) {
    if (!token.empty() && absl::ascii_isdigit(token[0]) &&
        token.find('.') != absl::string_view::npos) {
      return std::string(token);
    }
  }
  return "";
}

absl::StatusOr<DeviceIdentity> ReadDeviceIdentity(int device) {
  int count = 0;
  if (const cudaError_t err = cudaGetDeviceCount(&count); err != cudaSuccess || count == 0) {
    if (err != cudaSuccess) cudaGetLastError();
    return absl::FailedPreconditionError(absl::StrCat(
        "no CUDA GPU: ", err != cudaSuccess
                             ? absl::StrCat("cudaGetDeviceCount: ", cudaGetErrorName(err), " (",
                                            cudaGetErrorString(err), ")")
                             : "cudaGetDeviceCount found 0 devices"));
  }
  if (device < 0 || device >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("ReadDeviceIdentity: device ", device, " of ", count));
  }

  cudaDeviceProp prop{};
  TP_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device));
  DeviceIdentity id;
  id.name = prop.name;
  id.device = device;
  id.sm_count = prop.multiProcessorCount;
  id.cc_major = prop.major;
  id.cc_minor = prop.minor;
  id.memory_bytes = static_cast<int64_t>(prop.totalGlobalMem);
  id.l2_bytes = prop.l2CacheSize;
  id.mem_bus_width_bits = prop.memoryBusWidth;
  id.uuid = UuidString(prop.uuid);
  // CUDA 13 dropped cudaDeviceProp::clockRate and ::memoryClockRate; the attributes remain (kHz).
  absl::StatusOr<int> sm_khz = AttributeOrZero(cudaDevAttrClockRate, "ClockRate", device);
  if (!sm_khz.ok()) return sm_khz.status();
  absl::StatusOr<int> mem_khz =
      AttributeOrZero(cudaDevAttrMemoryClockRate, "MemoryClockRate", device);
  if (!mem_khz.ok()) return mem_khz.status();
  id.sm_clock_mhz_max = *sm_khz / 1000;
  id.mem_clock_mhz_max = *mem_khz / 1000;

  // cudaMemGetInfo reports on the current device: switch to ours for the call, then back.
  int previous = 0;
  TP_CUDA_RETURN_IF_ERROR(cudaGetDevice(&previous));
  TP_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  const absl::Cleanup restore = [previous] { cudaSetDevice(previous); };
  size_t free_bytes = 0, total_bytes = 0;
  TP_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
  id.free_bytes = static_cast<int64_t>(free_bytes);

  int runtime = 0;
  TP_CUDA_RETURN_IF_ERROR(cudaRuntimeGetVersion(&runtime));
  id.cuda_runtime_version = CudaVersionString(runtime);
  id.driver_version = ParseNvidiaDriverVersion(ReadFileOrEmpty("/proc/driver/nvidia/version"));
  id.cublas_version = CublasLtGemm::Version();

  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) == 0) id.hostname = host;
  return id;
}

double DramPeakGbps(const DeviceIdentity& id) {
  if (id.mem_clock_mhz_max <= 0 || id.mem_bus_width_bits <= 0) return 0.0;
  return 2.0 * id.mem_clock_mhz_max * 1e6 * (id.mem_bus_width_bits / 8.0) / 1e9;
}

}  // namespace truthput
