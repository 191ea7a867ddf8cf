// NvtxRange: a named NVTX range for the life of a scope, so that nsys and ncu show the harness's
// structure (one range per step, one per op) around the kernels they see.
#ifndef TRUTHPUT_BENCH_NVTX_RANGE_H_
#define TRUTHPUT_BENCH_NVTX_RANGE_H_

#include <string>

#include "nvtx3/nvToolsExt.h"

namespace truthput {

class NvtxRange {
 public:
  explicit NvtxRange(const char* name) { nvtxRangePushA(name); }
  explicit NvtxRange(const std::string& name) : NvtxRange(name.c_str()) {}
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
  ~NvtxRange() { nvtxRangePop(); }
};

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_NVTX_RANGE_H_
