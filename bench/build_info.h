// kTruthputVersion: truthput's release, recorded in every result (truthput_version).
// kTruthputBuild: the source the binaries were built from, recorded in every result
// (RunResult's and MeasuredCeilings' truthput_build, bench_kernels' context) so that a figure can
// be traced to its code: the git commit (40 hex digits), with "-dirty" where tracked files
// differed from it when it was built, or "unknown" where the source is not a git checkout.
// Written at build time by cmake/build_info.cmake.

#ifndef TRUTHPUT_BENCH_BUILD_INFO_H_
#define TRUTHPUT_BENCH_BUILD_INFO_H_

#include <string>

namespace truthput {

inline constexpr char kTruthputVersion[] = "0.1.0";
extern const char kTruthputBuild[];

// What --version prints: "truthput 0.1.0 (build <commit>)\n".
inline std::string VersionLine() {
  return std::string("truthput ") + kTruthputVersion + " (build " + kTruthputBuild + ")\n";
}

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_BUILD_INFO_H_
