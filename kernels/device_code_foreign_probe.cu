#include "kernels/device_code_foreign_probe.h"

namespace truthput {
namespace {

__global__ void ForeignProbe() {}

}  // namespace

const void* ForeignArchitectureProbe() { return reinterpret_cast<const void*>(&ForeignProbe); }

}  // namespace truthput
