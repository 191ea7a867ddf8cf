// The generated name tables against cublasLt.h's own enum names: a value's name is its
// enumerator's suffix (lower case where it is a word), so a shifted or swapped table shows here.
#include "kernels/cublaslt_names.h"

#include <cublasLt.h>

#include "gtest/gtest.h"

namespace truthput {
namespace {

#define EXPECT_TILE(x) EXPECT_STREQ(CublasLtTileName(CUBLASLT_MATMUL_TILE_##x), #x)
#define EXPECT_STAGES(x) EXPECT_STREQ(CublasLtStagesName(CUBLASLT_MATMUL_STAGES_##x), #x)
#define EXPECT_CLUSTER(x) EXPECT_STREQ(CublasLtClusterShapeName(CUBLASLT_CLUSTER_SHAPE_##x), #x)

TEST(CublasLtNames, NamesAreTheHeadersEnumerators) {
  EXPECT_STREQ(CublasLtTileName(CUBLASLT_MATMUL_TILE_UNDEFINED), "undefined");
  EXPECT_TILE(8x8);
  EXPECT_TILE(64x128);
  EXPECT_TILE(128x64);
  EXPECT_TILE(128x160);
  EXPECT_TILE(176x128);
  EXPECT_TILE(192x192);
  EXPECT_TILE(256x128);
  EXPECT_STREQ(CublasLtStagesName(CUBLASLT_MATMUL_STAGES_UNDEFINED), "undefined");
  EXPECT_STAGES(64x4);
  EXPECT_STAGES(64xAUTO);
  EXPECT_STAGES(128xAUTO);
  EXPECT_STREQ(CublasLtClusterShapeName(CUBLASLT_CLUSTER_SHAPE_AUTO), "auto");
  EXPECT_CLUSTER(1x1x1);
  EXPECT_CLUSTER(2x1x1);
  EXPECT_CLUSTER(1x2x1);
  EXPECT_STREQ(CublasLtInnerShapeName(CUBLASLT_MATMUL_INNER_SHAPE_UNDEFINED), "undefined");
  EXPECT_STREQ(CublasLtInnerShapeName(CUBLASLT_MATMUL_INNER_SHAPE_MMA16816), "mma16816");
}

// An id a table does not know (a later cuBLASLt's) is null: the caller prints the number.
TEST(CublasLtNames, UnknownIdsAreNull) {
  EXPECT_EQ(CublasLtTileName(1u << 20), nullptr);
  EXPECT_EQ(CublasLtStagesName(1u << 20), nullptr);
  EXPECT_EQ(CublasLtClusterShapeName(1u << 20), nullptr);
  EXPECT_EQ(CublasLtInnerShapeName(1u << 20), nullptr);
}

}  // namespace
}  // namespace truthput
