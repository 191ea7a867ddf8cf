// bench_decode: decode steps (one new token per sequence) across batch sizes.
#include <cstdint>

#include "absl/flags/flag.h"
#include "bench/bench_main.h"

ABSL_FLAG(int64_t, context, 2048, "tokens already in each sequence's KV cache");

int main(int argc, char** argv) {
  return truthput::BenchMain("bench_decode", truthput::Phase::kDecode, argc, argv,
                             [](truthput::BenchFlagValues& f) {
                               f.context = absl::GetFlag(FLAGS_context);
                             });
}
