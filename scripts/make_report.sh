#!/usr/bin/env bash
# Regenerate the report from the committed result files:
#   results/<gpu>/plots/        charts of every result file of that GPU (scripts/plot.py)
#   results/compare/            GPU-vs-GPU tables and charts, for each decode or prefill file
#                               name that two or more GPU directories have (scripts/compare.py;
#                               the baseline is h100-sxm where it has the file, else the first
#                               GPU by name), and each fp8 result against its bf16 twin
#   results/CLAIMS.md           the article's claims checked (scripts/claims.py)
#
#   scripts/make_report.sh [RESULTS_DIR]      (default: results)
#
# Needs Debian's python3 with python3-matplotlib; PYTHON overrides the interpreter,
# PLOT_FORMATS the chart formats (default png,svg).
set -euo pipefail
# A RESULTS_DIR argument names a folder of the caller's, so resolve it before the cd; after it,
# name it relative to the repository where it lies inside (the reports name their files so).
RESULTS=${1:+$(realpath -ms -- "$1")}
cd "$(dirname "$0")/.."
RESULTS=$(realpath -ms --relative-base=. -- "${RESULTS:-results}")
PY=${PYTHON:-/usr/bin/python3}
FORMATS=${PLOT_FORMATS:-png,svg}
shopt -s nullglob

if ! "$PY" -c 'import matplotlib' 2>/dev/null; then
  echo "make_report: $PY has no matplotlib (apt-get install python3-matplotlib, or set PYTHON)" >&2
  exit 1
fi

gpus=()
for dir in "$RESULTS"/*/; do
  dir=${dir%/}
  files=("$dir"/*.json)
  [ ${#files[@]} -gt 0 ] || continue
  gpus+=("$(basename "$dir")")
  # Plot into a fresh folder, then replace only the formats made, and only once they are all
  # made: a PLOT_FORMATS=png run or a failed one leaves the other charts (committed SVGs) alone.
  new=$(mktemp -d "$dir/.plots.XXXXXX")
  if "$PY" scripts/plot.py --skip-other --formats "$FORMATS" "${files[@]}" --out "$new" \
      >/dev/null; then
    mkdir -p "$dir/plots"
    for ext in ${FORMATS//,/ }; do rm -f "$dir"/plots/*."$ext"; done
    made=("$new"/*)
    [ ${#made[@]} -eq 0 ] || mv -f "${made[@]}" "$dir/plots/"
    echo "plots: $dir/plots ($(find "$dir/plots" -maxdepth 1 -type f | wc -l) files)"
  else
    echo "make_report: no plots for $dir" >&2
  fi
  rm -rf "$new"
done

# Comparisons: the same decode or prefill file name (CUDA-graph runs) under two or more GPUs.
names=()
for gpu in "${gpus[@]}"; do
  for f in "$RESULTS/$gpu"/decode_*.json "$RESULTS/$gpu"/prefill_*.json; do
    name=$(basename "$f")
    [[ $name == *_eager.json ]] && continue
    names+=("$name")
  done
done
if [ ${#names[@]} -gt 0 ]; then
  mapfile -t names < <(printf '%s\n' "${names[@]}" | sort -u)
fi
compared=0
for name in "${names[@]}"; do
  have=()
  for gpu in "${gpus[@]}"; do
    [ -f "$RESULTS/$gpu/$name" ] && have+=("$gpu")
  done
  [ ${#have[@]} -ge 2 ] || continue
  base=${have[0]}
  for gpu in "${have[@]}"; do
    if [ "$gpu" = h100-sxm ]; then base=h100-sxm; fi
  done
  others=()
  for gpu in "${have[@]}"; do
    [ "$gpu" = "$base" ] || others+=("$RESULTS/$gpu/$name")
  done
  if [ $compared -eq 0 ]; then
    mkdir -p "$RESULTS/compare"
    rm -f "$RESULTS"/compare/*.png "$RESULTS"/compare/*.svg "$RESULTS"/compare/*.md
  fi
  md="$RESULTS/compare/${name%.json}.md"
  if "$PY" scripts/compare.py "$RESULTS/$base/$name" "${others[@]}" \
      --out "$RESULTS/compare" --md "$md" --overwrite >/dev/null 2>"$RESULTS/compare/.stderr"; then
    echo "compare: $md (baseline $base)"
    compared=$((compared + 1))
  else
    echo "make_report: skipped comparing $name: $(grep -v '^chart:' "$RESULTS/compare/.stderr")" >&2
  fi
  rm -f "$RESULTS/compare/.stderr"
done
[ $compared -gt 0 ] || echo "compare: no result file under two GPUs; nothing to compare"

# Precisions: each fp8 result against the bf16 one of the same GPU and configuration.
for f8 in "$RESULTS"/*/decode_*_fp8_*.json "$RESULTS"/*/prefill_*_fp8_*.json; do
  f16=${f8/_fp8_/_bf16_}
  [ -f "$f16" ] || continue
  gpu=$(basename "$(dirname "$f8")")
  mkdir -p "$RESULTS/compare"
  md="$RESULTS/compare/${gpu}_$(basename "${f8%.json}")_vs_bf16.md"
  if "$PY" scripts/compare.py "$f16" "$f8" --allow-mismatch --out "$RESULTS/compare" --md "$md" \
      --overwrite >/dev/null 2>"$RESULTS/compare/.stderr"; then
    echo "compare: $md (fp8 vs bf16 on $gpu)"
  else
    echo "make_report: skipped comparing $f8: $(grep -v '^chart:' "$RESULTS/compare/.stderr")" >&2
  fi
  rm -f "$RESULTS/compare/.stderr"
done

"$PY" scripts/claims.py "$RESULTS" --out "$RESULTS/CLAIMS.md" --overwrite | tail -n 1
