#!/usr/bin/env bash
# The binaries' command line, end to end: --predict output and files, and one clear line and a
# non-zero exit for every kind of bad input. Needs no GPU.
set -uo pipefail
decode=$1
prefill=$2
to_csv=$3
results=$4  # the committed results/ folder
kernels=$5
ceilings=$6
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

expect_error() {  # expect_error "substring" cmd...
  local want=$1; shift
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [[ $rc -eq 0 ]] || [[ "$out" != *"$want"* ]] || [[ $(printf '%s\n' "$out" | wc -l) -gt 2 ]]; then
    echo "FAIL: $* -> rc=$rc, output: $out (wanted one line with '$want')"; fail=1
  else
    echo "ok: $* -> $out"
  fi
}

# Prediction: table, CSV with the published columns, JSON; H200/H100 at batch 1 = 4.8/3.35.
"$decode" --model=70b --batch=1..256 --predict --gpu=h100-sxm --context=0 --csv="$tmp/h100.csv" \
  --json="$tmp/h100.json" >"$tmp/out.txt" || { echo "FAIL: predict h100"; fail=1; }
"$decode" --model=70b --batch=1..256 --predict --gpu=h200 --context=0 --csv="$tmp/h200.csv" \
  >/dev/null || { echo "FAIL: predict h200"; fail=1; }
head -1 "$tmp/h100.csv" | grep -q '^batch,context,model_gbytes,model_gflops,bound,bound_ms,bound_tokens_per_s,intensity' \
  || { echo "FAIL: CSV header: $(head -1 "$tmp/h100.csv")"; fail=1; }
[[ $(wc -l <"$tmp/h100.csv") -eq 10 ]] || { echo "FAIL: expected 9 rows"; fail=1; }
ratio=$(awk -F, 'NR==FNR && FNR==2 {a=$7} NR!=FNR && FNR==2 {b=$7} END {printf "%.4f", b/a}' \
  "$tmp/h100.csv" "$tmp/h200.csv")
[[ "$ratio" == "1.4328" ]] || { echo "FAIL: h200/h100 batch-1 bound ratio $ratio, want 1.4328"; fail=1; }
grep -q '"points"' "$tmp/h100.json" || { echo "FAIL: JSON has no points"; fail=1; }
# The JSON holds everything the CSV does: converting it back gives the same file.
"$to_csv" "$tmp/h100.json" "$tmp/back.csv" && cmp -s "$tmp/h100.csv" "$tmp/back.csv" \
  || { echo "FAIL: result_to_csv of the JSON differs from --csv"; fail=1; }
grep -q 'Llama-3.1-70B' "$tmp/out.txt" || { echo "FAIL: table lacks the model"; fail=1; }
"$prefill" --model=8b --batch=1,8 --seq=512..2048 --predict --gpu=h100 >"$tmp/prefill.txt" \
  || { echo "FAIL: predict prefill"; fail=1; }
[[ $(grep -cE '^ +(1|8) +(512|1024|2048) ' "$tmp/prefill.txt") -eq 6 ]] \
  || { echo "FAIL: prefill rows"; cat "$tmp/prefill.txt"; fail=1; }

# A projection for a GPU not at hand, scaled by the efficiency measured on the H100.
"$decode" --model=70b --batch=1..256 --predict --gpu=b200 \
  --calibrate="$results/h100-sxm/decode_70b_bf16_ctx2048.json" --csv="$tmp/b200.csv" >/dev/null \
  || { echo "FAIL: calibrated projection"; fail=1; }
head -1 "$tmp/b200.csv" | grep -q 'calibration_eff,calibration_batch,projected_tokens_per_s' \
  || { echo "FAIL: projection columns: $(head -1 "$tmp/b200.csv")"; fail=1; }
expect_error "its model is Llama-3.1-70B" "$decode" --model=8b --predict --gpu=b200 \
  --calibrate="$results/h100-sxm/decode_70b_bf16_ctx2048.json"

# Bad input: one line, non-zero exit.
expect_error "unknown model '71b'" "$decode" --model=71b --predict --gpu=h100
expect_error "--batch is empty" "$decode" --batch= --predict --gpu=h100
expect_error "out of range" "$decode" --batch=0 --predict --gpu=h100
expect_error "runs backwards" "$decode" --batch=64..1 --predict --gpu=h100
expect_error "--context must be >= 0" "$decode" --context=-5 --predict --gpu=h100
expect_error "context" "$decode" --context=abc --predict --gpu=h100
expect_error "tp 3 does not divide" "$decode" --tp=3 --predict --gpu=h100
expect_error "unknown GPU 'h300'" "$decode" --predict --gpu=h300
expect_error "exists; pass --overwrite" "$decode" --predict --gpu=h100 --csv="$tmp/h100.csv"
# An output folder that is not there is found before the run (GPU or not), not after it.
expect_error "no_such_folder does not exist" "$decode" --batch=1 --json="$tmp/no_such_folder/x.json"
expect_error "is a folder" "$prefill" --predict --gpu=h100 --csv="$tmp"
expect_error "--profile=deep" "$decode" --profile=deep --predict --gpu=h100
expect_error "--seq" "$prefill" --seq=0 --predict --gpu=h100
expect_error "unexpected argument" "$decode" 70b --predict --gpu=h100
# Sizes that would wrap a count are refused, never printed wrapped.
expect_error "out of range (1 to 4294967295)" "$decode" --batch=1099511627776 --predict --gpu=h100
expect_error "below 2^32" "$decode" --model=8b --context=9223372036854775807 --predict --gpu=h100
expect_error "pass 2^62 (4.6e18)" "$decode" --batch=100000000 --predict --gpu=h100
# One file named two ways, and a calibration file that is not a run: one line each.
expect_error "name the same file" "$decode" --predict --gpu=h100 --csv="$tmp/same.csv" \
  --json="$tmp/./same.csv"
[[ -e "$tmp/same.csv" ]] && { echo "FAIL: same.csv written"; fail=1; }
expect_error "not the JSON of a truthput run" "$decode" --predict --gpu=b200 \
  --calibrate="$results/h100-sxm/ceilings.json"
expect_error "is a folder" "$decode" --predict --gpu=b200 --calibrate="$tmp"
# A ceilings file that would not load is refused up front, by a prediction too (before any GPU).
printf 'garbage' >"$tmp/bad_ceilings.json"
expect_error "--ceilings=$tmp/bad_ceilings.json: " "$decode" --predict --gpu=h100 \
  --ceilings="$tmp/bad_ceilings.json"
expect_error "--ceilings=$tmp/bad_ceilings.json: " "$decode" --batch=1 \
  --ceilings="$tmp/bad_ceilings.json"
# A file that cannot be made (/proc takes none, not even root's) is found before the run, exit 2.
expect_error "/proc/version: cannot " "$decode" --predict --gpu=h100 --csv=/proc/version --overwrite
# Flags of a GPU run given to a prediction are named in a note, not dropped silently.
"$decode" --predict --gpu=h100 --batch=1 --ceilings=none --profile=off --gemm=own \
  --usd_per_gpu_hour=5 | grep -q \
  '^Note: --ceilings, --profile=off, --gemm=own, --usd_per_gpu_hour: for a GPU run' \
  || { echo "FAIL: ignored-flags note"; fail=1; }
"$decode" --predict --gpu=h100 --weights=FP8 --batch=1 | grep -q 'dense fp8' \
  || { echo "FAIL: --weights=FP8 (any case) not taken"; fail=1; }
expect_error "must be a finite price" "$decode" --predict --gpu=h100 --usd_per_gpu_hour=nan
# Standard output that cannot be written (a full disk) is an error, not a lost table or CSV.
if [[ -w /dev/full ]]; then
  expect_error "writing standard output failed" sh -c '"$0" --predict --gpu=h100 --batch=1 >/dev/full' "$decode"
  expect_error "writing standard output failed" sh -c '"$0" "$1" >/dev/full' "$to_csv" "$tmp/h100.json"
fi
expect_error "usage: result_to_csv" "$to_csv" "$tmp/h100.json" "$tmp/extra.csv" extra
[[ ! -e "$tmp/extra.csv" ]] || { echo "FAIL: result_to_csv with an extra argument wrote"; fail=1; }
# A device or pipe is written into, without --overwrite: /dev/null, and /dev/stdout on a pipe.
out=$("$decode" --predict --gpu=h100 --batch=1 --csv="$tmp/piped.csv" --json=/dev/stdout 2>&1) \
  && grep -q '"points"' <<<"$out" && [[ -s "$tmp/piped.csv" ]] \
  || { echo "FAIL: --json=/dev/stdout on a pipe: $out"; fail=1; }
"$decode" --predict --gpu=h100 --batch=1 --json=/dev/null >/dev/null 2>&1 \
  && [[ -c /dev/null ]] || { echo "FAIL: --json=/dev/null"; fail=1; }
# --help lists every flag of the binary (the shared ones live in bench_main.cc), once named.
help=$("$decode" --help 2>&1)
for flag in --model --batch --context --predict --json; do
  grep -q -- "^    $flag " <<<"$help" || { echo "FAIL: --help lacks $flag"; fail=1; }
done
# Flags are grouped by source file, named from the project root, not the build machine's path.
grep -qx "  Flags from bench/bench_main.cc:" <<<"$help" || { echo "FAIL: --help file names"; fail=1; }
[[ $(head -1 <<<"$help") == "bench_decode: decode steps"* ]] \
  || { echo "FAIL: help: $(head -1 <<<"$help")"; fail=1; }
"$decode" --version 2>&1 | grep -q '^truthput ' || { echo "FAIL: --version"; fail=1; }
# A GPU without fp8 tensor cores: the header names the rate the bounds use.
"$decode" --predict --gpu=a100 --weights=fp8 --batch=1 | grep -q '312 TFLOP/s dense bf16 (no fp8' \
  || { echo "FAIL: a100 fp8 header"; fail=1; }
# The exit codes the README gives: 2 for a value truthput refuses, 1 for a flag Abseil's parser
# refuses and for no GPU.
expect_rc() {  # expect_rc CODE cmd...
  local want=$1; shift
  "$@" >/dev/null 2>&1; local rc=$?
  [[ $rc -eq $want ]] || { echo "FAIL: $* -> rc=$rc, wanted $want"; fail=1; }
}
expect_rc 2 "$decode" --model=nope --predict --gpu=h100-sxm
expect_rc 2 "$prefill" --batch=0 --predict --gpu=h100-sxm
expect_rc 2 "$decode" --predict --gpu=h100 --csv=/proc/version --overwrite
expect_rc 2 "$decode" --predict --gpu=h100 --ceilings="$tmp/bad_ceilings.json"
expect_rc 1 "$decode" --contxt=5 --predict --gpu=h100-sxm
expect_rc 1 "$decode" --context=abc --predict --gpu=h100-sxm
# Without a GPU (CI), a run that needs one says so and points to --predict.
if ! nvidia-smi -L >/dev/null 2>&1; then
  expect_error "--predict" "$decode" --batch=1
  expect_rc 1 "$decode" --batch=1
  expect_error "no CUDA GPU" "$kernels" --benchmark_filter=StreamRead
  expect_error "no CUDA GPU" "$kernels" --benchmark_list_tests=false
  expect_error "no CUDA GPU" "$ceilings" --quick
fi
# Help and a mistyped flag are answered on any machine.
help=$("$kernels" --help 2>&1)
[[ "$help" == *benchmark_filter* ]] || { echo "FAIL: bench_kernels --help: $help"; fail=1; }
expect_error "unrecognized" "$kernels" --benchmark_fliter=StreamRead
# Google Benchmark's own answers to bad values (usage and exit 0, "maybe" as true, two lines for a
# bad number) are preceded by one line and exit 2.
expect_rc 2 "$kernels" --benchmark_format=xml
expect_error "--benchmark_format=xml: must be one of console, json, csv" "$kernels" --benchmark_format=xml
expect_error "--benchmark_out_format=xml: must be one of" "$kernels" --benchmark_out_format=xml
expect_error "--benchmark_time_unit=h: must be one of ns, us, ms, s" "$kernels" --benchmark_time_unit=h
expect_error "--benchmark_list_tests=maybe: must be true or false" "$kernels" --benchmark_list_tests=maybe
expect_error "--benchmark_repetitions=abc: must be a whole number" "$kernels" --benchmark_repetitions=abc
expect_error "--benchmark_min_time=-1: must be a number of seconds" "$kernels" --benchmark_min_time=-1
[[ $("$kernels" --version) == "truthput "*" (build "* ]] || { echo "FAIL: bench_kernels --version"; fail=1; }
# The benchmarks' names are listed on any machine: every family, each GEMM implementation.
list=$("$kernels" --benchmark_list_tests 2>/dev/null) || { echo "FAIL: kernels list"; fail=1; }
for name in StreamRead/2097152 Gemm/70b/qkv/b1/own_bf16 Gemm/405b/down/b256/cublaslt \
    Gemm/8b/o/b16/own_w8a8 Gemm/70b/lm_head/b8/cublas_default DecodeAttention/70b/b32/ctx32768 \
    PrefillAttention/70b/b1/s8192/mma_sync; do
  grep -qx "$name/manual_time" <<<"$list" \
    || { echo "FAIL: bench_kernels --benchmark_list_tests lacks $name"; fail=1; }
done
# Own kernels only up to batch 32 (kSkinnyGemmMaxM); 6 batches x 7 contexts of decode attention.
grep -q "/b64/own_" <<<"$list" && { echo "FAIL: an own GEMM listed past batch 32"; fail=1; }
grep -q "^Gemm/8b/qkv/b32/own_bf16/" <<<"$list" || { echo "FAIL: own GEMM at batch 32"; fail=1; }
[[ $(grep -c "^DecodeAttention/" <<<"$list") == 42 ]] || { echo "FAIL: attention count"; fail=1; }
[[ $(BENCHMARK_LIST_TESTS=true "$kernels" --benchmark_filter=DecodeAttention 2>/dev/null |
    wc -l) == 42 ]] \
  || { echo "FAIL: BENCHMARK_LIST_TESTS=true does not list"; fail=1; }
# A list is no result: --benchmark_out with it is refused and no file is left.
expect_error "writes no results" "$kernels" --benchmark_list_tests --benchmark_out="$tmp/l.json"
[[ -e "$tmp/l.json" ]] && { echo "FAIL: bench_kernels --benchmark_list_tests left l.json"; fail=1; }
# An existing --benchmark_out file is not truncated without --overwrite, on any machine.
echo keep >"$tmp/k.json"
expect_error "--benchmark_out=$tmp/k.json exists; pass --overwrite" "$kernels" \
  --benchmark_filter=StreamRead --benchmark_out="$tmp/k.json"
BENCHMARK_OUT="$tmp/k.json" expect_error "exists; pass --overwrite" "$kernels" \
  --benchmark_filter=StreamRead
[[ $(cat "$tmp/k.json") == keep ]] || { echo "FAIL: bench_kernels truncated k.json"; fail=1; }
expect_error "is a folder" "$kernels" --benchmark_out="$tmp"
if ! nvidia-smi -L >/dev/null 2>&1; then  # --overwrite is taken, not "unrecognized"
  expect_error "no CUDA GPU" "$kernels" --benchmark_out="$tmp/k.json" --overwrite
fi
exit $fail
