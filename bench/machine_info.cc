#include "bench/machine_info.h"

#include "absl/strings/str_cat.h"

namespace truthput {

MachineInfo ToMachineInfo(const DeviceIdentity& id) {
  MachineInfo m;
  m.set_gpu_name(id.name);
  m.set_sm_count(id.sm_count);
  m.set_memory_gbytes(id.memory_bytes / 1e9);
  m.set_l2_mbytes(id.l2_bytes / double{1 << 20});
  m.set_sm_clock_mhz_max(id.sm_clock_mhz_max);
  m.set_mem_clock_mhz_max(id.mem_clock_mhz_max);
  m.set_compute_capability(absl::StrCat(id.cc_major, ".", id.cc_minor));
  m.set_driver_version(id.driver_version);
  m.set_cuda_runtime_version(id.cuda_runtime_version);
  m.set_cublas_version(id.cublas_version);
  m.set_gpu_uuid(id.uuid);
  m.set_hostname(id.hostname);
  return m;
}

}  // namespace truthput
