// Printable names for cuBLASLt algorithm-configuration enum values (tile, stages, cluster and
// inner shapes), so a result file can say "tile 128x256" rather than "tile 23".
//
// cublaslt_names.cc is generated from cublasLt.h by scripts/gen_cublaslt_names.py. The values are
// ABI (never renumbered), so the tables stay right with later headers; each function returns
// nullptr for an id its table does not know (the caller prints the number).
#ifndef TRUTHPUT_KERNELS_CUBLASLT_NAMES_H_
#define TRUTHPUT_KERNELS_CUBLASLT_NAMES_H_

#include <cstdint>

namespace truthput {

const char* CublasLtTileName(uint32_t id);          // cublasLtMatmulTile_t: "128x256"
const char* CublasLtStagesName(uint32_t id);        // cublasLtMatmulStages_t: "64x4", "128xAUTO"
const char* CublasLtClusterShapeName(uint32_t id);  // cublasLtClusterShape_t: "2x1x1", "auto"
const char* CublasLtInnerShapeName(uint32_t id);    // cublasLtMatmulInnerShape_t: "mma16816"

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_CUBLASLT_NAMES_H_
