#include "workloads/gpu_datasheet.h"

#include <cstdlib>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/text_format.h"
#include "workloads/embedded_specs.h"

namespace truthput {

namespace {

// CUDA names a MIG instance after its GPU and profile: "NVIDIA H100 80GB HBM3 MIG 1g.10gb".
bool IsMigInstance(absl::string_view device_name) {
  return absl::StrContains(device_name, " MIG ");
}

}  // namespace

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
  if (IsMigInstance(device_name)) {
    return absl::NotFoundError(absl::StrCat(
        "GPU '", device_name,
        "' is a MIG instance, with a share of its GPU's SMs and memory bandwidth, and no "
        "datasheet describes it; pass --gpu=ID to compare against a whole GPU's datasheet (the "
        "result notes it) and read mbu_measured and mfu_measured (unless --ceilings=none), "
        "which are against this instance's own measured ceilings"));
  }
  return absl::NotFoundError(absl::StrCat("GPU '", device_name,
                                          "' is not in the datasheet table "
                                          "(workloads/gpus.textproto); pass --gpu=ID to pick "
                                          "the datasheet to compare against"));
}

std::string DatasheetMismatch(const GpuSpec& sheet, absl::string_view device_name, int sm_count) {
  const bool named = absl::c_linear_search(sheet.device_names(), device_name);
  const bool sms = sm_count <= 0 || sheet.sm_count() == 0 ||
                   static_cast<uint32_t>(sm_count) == sheet.sm_count();
  if (named && sms) return "";
  return absl::StrCat(device_name, " (", sm_count > 0 ? absl::StrCat(sm_count) : "?", " SMs",
                      IsMigInstance(device_name)
                          ? ", a MIG instance: a share of its GPU's SMs and memory bandwidth"
                          : "",
                      ") is not the GPU of datasheet ", sheet.id(), " (", sheet.display_name(),
                      ", ", sheet.sm_count(), " SMs)");
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
