#!/usr/bin/env bash
# Builds truthput here and packs what a GPU box needs to run it into one folder: the bench
# binaries, the GPU test binaries, and the non-CUDA shared libraries they link (Abseil,
# Protobuf, Google Benchmark, GoogleTest), so that a machine with only the NVIDIA driver and
# CUDA 13 runs them.
#
#   scripts/gpu_bundle.sh [DIR]         # default DIR: .gpu_bundle
#   copy DIR to the GPU box, then there:
#   DIR/run_gpu_tests.sh                # every GPU test; exit 0 when all pass
#   DIR/run bench_decode --model=70b --batch=1..256 --json=out.json
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.gpu_bundle}
BUILD_DIR=${BUILD_DIR:-build}
if [[ -z "${SKIP_BUILD:-}" ]]; then
  scripts/setup.sh
  BUILD_DIR=$BUILD_DIR scripts/build.sh >/dev/null
fi
rm -rf "$DIR"
mkdir -p "$DIR/bin" "$DIR/lib"

# GPU tests as ctest knows them (label gpu): their executables.
tests=$(ctest --test-dir "$BUILD_DIR" -L gpu --show-only=json-v1 | python3 -c '
import json, sys
for t in json.load(sys.stdin)["tests"]:
    print(t["command"][0])')
bins=("$BUILD_DIR/bench/bench_decode" "$BUILD_DIR/bench/bench_prefill"
      "$BUILD_DIR/bench/bench_ceilings" "$BUILD_DIR/bench/bench_kernels")
for t in $tests; do bins+=("$t"); done
for b in "${bins[@]}"; do
  [[ -f "$b" ]] || continue
  cp "$b" "$DIR/bin/"
  strip "$DIR/bin/$(basename "$b")"
done

# Shared libraries that a bare CUDA machine lacks. CUDA's own (cudart, cuBLAS, CUPTI) and the
# C/C++ runtime come from that machine.
for b in "$DIR"/bin/*; do
  ldd "$b" | awk '/=> \// {print $3}' | grep -E 'libabsl|libprotobuf|libbenchmark|libgtest|libgmock|libz\.' || true
done | sort -u | while read -r lib; do cp -L "$lib" "$DIR/lib/"; done

cat >"$DIR/run" <<'RUN'
#!/usr/bin/env bash
# DIR/run PROGRAM ARGS...: runs one of the bundled programs with the bundled libraries.
here=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH="$here/lib:${CUDA_HOME:-/usr/local/cuda}/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
prog=$1; shift
exec "$here/bin/$prog" "$@"
RUN
cat >"$DIR/run_gpu_tests.sh" <<'TESTS'
#!/usr/bin/env bash
# Runs every bundled GPU test; prints one line per test and exits non-zero if any failed.
here=$(cd "$(dirname "$0")" && pwd)
pass=0; fail=0; skip=0
for t in "$here"/bin/*_test; do
  name=$(basename "$t")
  log=${TEST_LOG_DIR:-/tmp}/$name.log
  "$here/run" "$name" >"$log" 2>&1; rc=$?
  case $rc in
    0) pass=$((pass+1))
       echo "PASS $name ($(grep -c '^\[       OK \]' "$log") tests, $(grep -c '^\[  SKIPPED \] .* ms)$' "$log") skipped)";;
    77) skip=$((skip+1)); echo "SKIP $name: $(grep -m1 '^SKIPPED' "$log" || head -1 "$log")";;
    *) fail=$((fail+1)); echo "FAIL $name (rc=$rc), log $log:"; grep -E 'Failure|FAILED|error' -A4 "$log" | head -40;;
  esac
done
echo "GPU tests: $pass passed, $fail failed, $skip skipped"
[[ $fail -eq 0 && $pass -gt 0 ]]
TESTS
chmod +x "$DIR/run" "$DIR/run_gpu_tests.sh"
echo "bundle: $DIR ($(du -sh "$DIR" | cut -f1), $(ls "$DIR/bin" | wc -l) programs, $(ls "$DIR/lib" | wc -l) libraries)"
