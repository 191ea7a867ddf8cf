#!/usr/bin/env bash
# The main job: setup, build, and the Llama-3.1-70B decode sweep (batch 1..256, context 2048)
# on this machine's GPU. Extra arguments go to bench_decode (e.g. --csv=out.csv --json=out.json).
# On a machine without a GPU it says so and prints the roofline prediction for an H100 SXM.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# Set up and build in the repository; run in the caller's folder, so that relative paths in the
# arguments (--csv=out.csv, --model=./my.textproto) mean what they say there.
(cd "$root" && scripts/setup.sh && scripts/build.sh >/dev/null)
decode="$root/build/bench/bench_decode"
if nvidia-smi -L >/dev/null 2>&1; then
  exec "$decode" --model=70b --batch=1..256 --context=2048 "$@"
fi
echo "run: no NVIDIA GPU here; printing the roofline prediction for an H100 SXM instead"
exec "$decode" --model=70b --batch=1..256 --context=2048 --predict --gpu=h100-sxm "$@"
