// The GPU datasheet table (workloads/gpus.textproto): peak rates every efficiency is measured
// against, looked up by short name ("h100-sxm") or by the name the CUDA driver reports.
#ifndef TRUTHPUT_WORKLOADS_GPU_DATASHEET_H_
#define TRUTHPUT_WORKLOADS_GPU_DATASHEET_H_

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "workloads/model_spec.pb.h"

namespace truthput {

// The built-in table, parsed once.
const GpuTable& BuiltinGpuTable();

// By id or alias, case-insensitive ("h100-sxm", "H100", "h200").
absl::StatusOr<GpuSpec> FindGpu(absl::string_view name);

// By cudaGetDeviceProperties().name, e.g. "NVIDIA H100 80GB HBM3", exactly: a variant the table
// does not list ("NVIDIA H200 NVL", lower clocks and power than the H200 SXM) is NotFound, so its
// figures are never an SXM part's unless --gpu says so. So is a MIG instance ("NVIDIA H100 80GB
// HBM3 MIG 1g.10gb"), with its own message: it has a share of the GPU's SMs and bandwidth.
absl::StatusOr<GpuSpec> FindGpuByDeviceName(absl::string_view device_name);

// Empty where `sheet` is the datasheet of the device that reported `device_name` and `sm_count`
// (one of its device_names and, where both are known (> 0), its SM count); else a phrase that
// says why not, for a note or an error. Efficiencies against another GPU's datasheet (--gpu=ID
// on a GPU the table lacks, or a MIG instance against its whole GPU) are against peaks that
// device does not have, and a reader must be told.
std::string DatasheetMismatch(const GpuSpec& sheet, absl::string_view device_name, int sm_count);

std::vector<std::string> KnownGpuIds();

// Peak dense tensor rate in FLOP/s for weights of `dtype` (bf16/fp16 or fp8).
double PeakFlopsPerSecond(const GpuSpec& gpu, DType dtype);
inline double PeakBytesPerSecond(const GpuSpec& gpu) { return gpu.mem_bandwidth_gbps() * 1e9; }
// The card's memory in bytes: what a lent card of this model reported, where the table has it
// (the H100 SXM's 85.02e9 bytes, 99% of 80 x 2^30: the driver keeps part), else the marketed
// size taken as binary, as HBM sizes are (an "80GB" H100 has 80 GiB), which a point near the
// limit may then exceed on the card (a GPU run uses the card's own figure).
inline int64_t MemoryBytes(const GpuSpec& gpu) {
  if (gpu.reported_memory_gbytes() > 0) {
    return std::llround(gpu.reported_memory_gbytes() * 1e9);
  }
  return std::llround(gpu.memory_gbytes() * 1073741824.0);
}

}  // namespace truthput

#endif  // TRUTHPUT_WORKLOADS_GPU_DATASHEET_H_
