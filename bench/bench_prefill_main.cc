// bench_prefill: prefill steps (B prompts of S tokens from an empty cache) across batch sizes
// and prompt lengths.
#include <string>

#include "absl/flags/flag.h"
#include "bench/bench_main.h"

ABSL_FLAG(std::string, seq, "512..8192", "prompt lengths, same syntax as --batch");

int main(int argc, char** argv) {
  return truthput::BenchMain("bench_prefill", truthput::Phase::kPrefill, argc, argv,
                             [](truthput::BenchFlagValues& f) { f.seq = absl::GetFlag(FLAGS_seq); });
}
