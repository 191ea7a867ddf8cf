#include "workloads/gpu_datasheet.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/text_format.h"
#include "workloads/embedded_specs.h"

namespace truthput {

const GpuTable& BuiltinGpuTable() {
  static const GpuTable* table = [] {
    auto* t = new GpuTable;
    for (const EmbeddedSpec& e : EmbeddedSpecs()) {
      if (e.path != "workloads/gpus.textproto") continue;
      // The table is part of the build; a broken one is a programming error.
      if (!google::protobuf::TextFormat::ParseFromString(std::string(e.text), t)) std::abort();
    }
    return t;
  }();
  return *table;
}

absl::StatusOr<GpuSpec> FindGpu(absl::string_view name) {
  const std::string wanted = absl::AsciiStrToLower(name);
  for (const GpuSpec& g : BuiltinGpuTable().gpu()) {
    if (g.id() == wanted) return g;
    for (const std::string& a : g.aliases()) {
      if (a == wanted) return g;
    }
  }
  return absl::NotFoundError(absl::StrCat("unknown GPU '", name,
                                          "'; known: ", absl::StrJoin(KnownGpuIds(), ", ")));
}

absl::StatusOr<GpuSpec> FindGpuByDeviceName(absl::string_view device_name) {
  for (const GpuSpec& g : BuiltinGpuTable().gpu()) {
    for (const std::string& d : g.device_names()) {
      if (d == device_name) return g;
    }
  }
  return absl::NotFoundError(absl::StrCat("GPU '", device_name,
                                          "' is not in the datasheet table "
                                          "(workloads/gpus.textproto); pass --gpu=ID to pick "
                                          "the datasheet to compare against"));
}

std::vector<std::string> KnownGpuIds() {
  std::vector<std::string> ids;
  for (const GpuSpec& g : BuiltinGpuTable().gpu()) ids.push_back(g.id());
  return ids;
}

double PeakFlopsPerSecond(const GpuSpec& gpu, DType dtype) {
  if (dtype == FP8_E4M3 && gpu.fp8_tflops() > 0) return gpu.fp8_tflops() * 1e12;
  return gpu.bf16_tflops() * 1e12;
}

}  // namespace truthput
