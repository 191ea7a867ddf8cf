#!/usr/bin/python3
"""Compare truthput runs of the same workload on different GPUs (or builds), batch by batch.

    scripts/compare.py A.json B.json [C.json ...] [--allow-mismatch] [--out DIR] [--md FILE]
                       [--overwrite]

A is the baseline; every other file is compared with it. For each batch both runs have:
tokens/s, step p50 (ms), MBU and MFU of each, their ratios B/A, and the ratio the datasheets
predict: the bandwidth ratio where the point is memory-bound, the dense tensor peak ratio
(bf16 for bf16 weights) where it is compute-bound (each point's `bound`); where A and B are
bound by different resources, or differ in weight precision (fp8 vs bf16), model or context
(compared with --allow-mismatch), the ratio of their roofline bounds (bound_tokens_per_s). The
last column says how far the measured tokens/s ratio is from the predicted one, in percent. A
tokens/s of "NaN", 0 or below counts as not measured (—). Batches only one run has, or skipped
in either, are named in a note. A run with no measured point (a prediction) is refused.

Runs of different models (weight precision, or any other model field the files record but
`source`: dimensions, KV dtype), phase, context or TP degree, or with no batch
in common, are refused with one line and exit status 2, unless --allow-mismatch; so is an
--md or --out that cannot be written, an --md that is one of the inputs, or an --md that
exists already (unless --overwrite).
Prints a markdown table per pair; writes a chart of the measured and predicted ratios vs batch
to --out (default: the current directory), replacing one of the same name there (said on stderr:
"chart: PATH (replaced an existing file)").
"""

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import truthput_results as tr  # noqa: E402

EXIT_MISMATCH = 2


def point_key(run, p):
    return (p["batch"], p["seq_len"]) if run["config"].get("phase") == "prefill" else p["batch"]


def key_label(key):
    return f"{key[0]} / seq {key[1]}" if isinstance(key, tuple) else str(key)


def usable_points(run):
    return {point_key(run, p): p for p in run["points"] if not p.get("skipped")}


def workload_diffs(a, b):
    """(what, A's, B's) for the model, weight precision, other model fields, context and TP
    degree where A and B differ: a step of other bytes or FLOPs."""
    ca, cb = a["config"], b["config"]
    fields = [("model", tr.model_name(a), tr.model_name(b)),
              ("weight precision", tr.precision(a), tr.precision(b))]
    if fields[0][1] == fields[0][2]:
        # One name can hide other dimensions or KV dtype (an edited config): compare every model
        # field recorded, as bench's --calibrate does (all but `source`). Under another name they
        # differ anyway, and the name says so.
        ma, mb = ca["model"], cb["model"]
        fields += [(k, ma.get(k), mb.get(k)) for k in sorted(set(ma) | set(mb))
                   if k not in ("name", "weight_dtype", "source")]
    fields += [("context", ca.get("context", 0), cb.get("context", 0)),
               ("tp", ca.get("tp") or 1, cb.get("tp") or 1)]
    return [(what, x, y) for what, x, y in fields if x != y]


def mismatches(a, b):
    """Reasons A and B are not the same workload (empty list when they are)."""
    out = [f"{what} {x} vs {y}" for what, x, y in workload_diffs(a, b)]
    ca, cb = a["config"], b["config"]
    if (ca.get("phase") or "decode") != (cb.get("phase") or "decode"):
        out.append(f"phase {ca.get('phase')} vs {cb.get('phase')}")
    ka, kb = set(usable_points(a)), set(usable_points(b))
    if not ka & kb:
        def show(keys):
            return ",".join(key_label(k) for k in sorted(keys)) or "none"
        out.append(f"no batch in common (A: {show(ka)}; B: {show(kb)})")
    return out


def _ratio(x, y):
    """y / x, or None where either is missing or not finite ("NaN") or x is zero."""
    if x is None or y is None or x == 0 or not math.isfinite(x) or not math.isfinite(y):
        return None
    return y / x


def _either(x, y):
    """x where the runs agree, else "y vs x" (B's first, as the GPUs in the title)."""
    return x if x == y else f"{y} vs {x}"


def predicted_ratio(a, b, pa, pb, diffs=None):
    """(tokens/s ratio B/A the datasheets predict for this point, basis string). diffs:
    workload_diffs(a, b), where the caller has it."""
    ba, bb = pa.get("bound") or "", pb.get("bound") or ""
    if diffs is None:
        diffs = workload_diffs(a, b)
    if diffs:
        # "ctx 0 vs ctx 2048"; a model or precision alone.
        prefix = {"context": "ctx ", "tp": "tp "}
        diffs = [f"{prefix.get(w, '')}{x} vs {prefix.get(w, '')}{y}" for w, x, y in diffs]
        # Different bytes or FLOPs per step (another precision, model or context): the datasheet
        # ratio alone says nothing; the ratio of the two roofline bounds (each the run's own
        # bytes and FLOPs) does.
        r = _ratio(pa.get("bound_tokens_per_s") or None, pb.get("bound_tokens_per_s") or None)
        return r, f"{', '.join(diffs)}: roofline bound"
    if ba == bb == "memory":
        r = _ratio(tr.bandwidth_gbps(a), tr.bandwidth_gbps(b))
        return r, "memory: bandwidth"
    if ba == bb == "compute":
        r = _ratio(tr.peak_tflops(a), tr.peak_tflops(b))
        return r, f"compute: {tr.precision(b)} TFLOP/s"
    r = _ratio(pa.get("bound_tokens_per_s") or None, pb.get("bound_tokens_per_s") or None)
    return r, f"mixed ({ba or '?'}/{bb or '?'}): roofline bound"


def compare_rows(a, b):
    pa_all, pb_all = usable_points(a), usable_points(b)
    diffs = workload_diffs(a, b)
    rows = []
    for key in sorted(set(pa_all) & set(pb_all)):
        pa, pb = pa_all[key], pb_all[key]
        pred, basis = predicted_ratio(a, b, pa, pb, diffs)
        tps_a, tps_b = tr.measured_tps(pa), tr.measured_tps(pb)
        tps = _ratio(tps_a, tps_b)
        rows.append({
            "key": key,
            "tps_a": tps_a, "tps_b": tps_b, "tps_ratio": tps,
            "ms_a": pa.get("step_ms_p50"), "ms_b": pb.get("step_ms_p50"),
            "ms_ratio": _ratio(pa.get("step_ms_p50"), pb.get("step_ms_p50")),
            "mbu_a": pa.get("mbu"), "mbu_b": pb.get("mbu"),
            "mbu_ratio": _ratio(pa.get("mbu"), pb.get("mbu")),
            "mfu_a": pa.get("mfu"), "mfu_b": pb.get("mfu"),
            "mfu_ratio": _ratio(pa.get("mfu"), pb.get("mfu")),
            "bound_a": pa.get("bound"), "bound_b": pb.get("bound"),
            "clock_a": pa.get("sm_clock_mhz"), "clock_b": pb.get("sm_clock_mhz"),
            "power_a": pa.get("power_w"), "power_b": pb.get("power_w"),
            "predicted": pred, "basis": basis,
            "off_pct": (tps / pred - 1) * 100 if tps is not None and pred else None,
        })
    return rows


def _x(v):
    return "—" if v is None else f"{v:.3f}×"


def _signed(v):
    return "—" if v is None else f"{v:+.1f}%"


def _pair(x, y):
    """Two clocks or powers as "A/B" ("1980/1455"), "—" for one not measured."""
    return f"{tr.fmt(x)}/{tr.fmt(y)}"


def off_label(pct):
    """A chart label for measured vs predicted: one decimal under 10%, so -0.3 is not "-0%"."""
    return f"{pct:+.1f}%" if abs(pct) < 10 else f"{pct:+.0f}%"


def _peak_text(a, b):
    """The two tensor peaks, each named by its own precision where the runs differ in it."""
    pa, pb = tr.precision(a), tr.precision(b)
    if pa == pb:
        return f"{pa} peak {tr.peak_tflops(a):g} → {tr.peak_tflops(b):g} TFLOP/s"
    return f"tensor peak {tr.peak_tflops(a):g} ({pa}) → {tr.peak_tflops(b):g} TFLOP/s ({pb})"


def markdown(a, b, rows, notes=()):
    la, lb = tr.label(a), tr.label(b)
    lines = [
        f"### {tr.gpu_id(b)} vs {tr.gpu_id(a)}: {_either(tr.model_name(a), tr.model_name(b))}, "
        f"{_either(tr.context_label(a), tr.context_label(b))}, "
        f"{_either(tr.precision(a), tr.precision(b))}",
        "",
        f"- A: {la} — `{a['path']}`",
        f"- B: {lb} — `{b['path']}`",
        f"- datasheets: bandwidth {tr.bandwidth_gbps(a):g} → {tr.bandwidth_gbps(b):g} GB/s "
        f"({_x(_ratio(tr.bandwidth_gbps(a), tr.bandwidth_gbps(b)))}), "
        f"{_peak_text(a, b)} ({_x(_ratio(tr.peak_tflops(a), tr.peak_tflops(b)))})",
    ]
    lines += [f"- note: {n}" for n in notes]
    lines += [
        "",
        "| batch | tok/s A | tok/s B | B/A | step ms A | step ms B | B/A | MBU A | MBU B | B/A "
        "| MFU A | MFU B | B/A | bound A/B | predicted B/A (basis) | measured vs predicted "
        "| SM MHz A/B | W A/B |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        bound = r["bound_a"] if r["bound_a"] == r["bound_b"] else f"{r['bound_a']}/{r['bound_b']}"
        lines.append(
            f"| {key_label(r['key'])} | {tr.fmt(r['tps_a'])} | {tr.fmt(r['tps_b'])} | "
            f"{_x(r['tps_ratio'])} | {tr.fmt(r['ms_a'])} | {tr.fmt(r['ms_b'])} | "
            f"{_x(r['ms_ratio'])} | {tr.fmt(r['mbu_a'], 2)} | {tr.fmt(r['mbu_b'], 2)} | "
            f"{_x(r['mbu_ratio'])} | {tr.fmt(r['mfu_a'], 2)} | {tr.fmt(r['mfu_b'], 2)} | "
            f"{_x(r['mfu_ratio'])} | {bound} | {_x(r['predicted'])} ({r['basis']}) | "
            f"{_signed(r['off_pct'])} | {_pair(r['clock_a'], r['clock_b'])} | "
            f"{_pair(r['power_a'], r['power_b'])} |")
    if not rows:
        lines.append("| (no batch in common) | | | | | | | | | | | | | | | | | |")
    lines += ["", "Ratios are B/A (step ms B/A below 1 means B is faster). Predicted: datasheet "
              "ratio for the resource that bounds the point; measured vs predicted = tok/s "
              "ratio / predicted − 1. SM MHz, W: NVML's mean SM clock and board power while "
              "the point's steps ran back to back (— where not measured), side by side because "
              "a card held to its power limit runs below its top clock.",
              ""]
    return "\n".join(lines)


def annotate(ax, pm, rows, color):
    """Each measured ratio's distance from its prediction, beside its point."""
    for (xi, yi), r in zip(pm, [r for r in rows if r["tps_ratio"] is not None]):
        if r["off_pct"] is not None:
            # Below the point when measured < predicted, so the line never hides a sign.
            below = r["off_pct"] < 0
            ax.annotate(off_label(r["off_pct"]), (xi, yi), textcoords="offset points",
                        xytext=(0, -12 if below else 7), ha="center", fontsize=7.5,
                        color=color)


def chart_figure(a, pairs):
    """(figure, file name stem) of tokens/s ratio vs batch for each B, with its predicted ratio
    dashed; chart() saves it, a test can look at it first."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter
    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "truthput"})

    # The precision joins the GPU in labels and file name where the runs differ in it.
    mixed = len({tr.precision(r) for r in [a] + [b for b, _ in pairs]}) > 1

    def name(r):
        return tr.gpu_id(r) + (" " + tr.precision(r) if mixed else "")

    fig, ax = plt.subplots(figsize=(9, 5.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    xs_all = []
    markers = ("o", "s", "^", "D", "v")
    for i, (b, all_rows) in enumerate(pairs):
        color = colors[i % len(colors)]
        # Prefill keys are (batch, prompt length): one line per prompt length, over batch.
        seqs = sorted({r["key"][1] for r in all_rows if isinstance(r["key"], tuple)})
        groups = [(s, [r for r in all_rows if r["key"][1] == s]) for s in seqs] or \
            [(None, all_rows)]
        for j, (seq, rows) in enumerate(groups):
            x = [r["key"][0] if isinstance(r["key"], tuple) else r["key"] for r in rows]
            xs_all += x
            pm = [(xi, r["tps_ratio"]) for xi, r in zip(x, rows) if r["tps_ratio"] is not None]
            pp = [(xi, r["predicted"]) for xi, r in zip(x, rows) if r["predicted"] is not None]
            label = f"{name(b)} / {name(a)}" + (f", seq {seq}" if len(groups) > 1 else "")
            marker = markers[j % len(markers)]
            if pp:
                ax.plot([p[0] for p in pp], [p[1] for p in pp], ls="--", lw=1.5, color=color,
                        marker="x", ms=5, label=f"{label}: predicted by datasheets")
            if pm:
                ax.plot([p[0] for p in pm], [p[1] for p in pm], lw=2, color=color,
                        marker=marker, ms=5, label=f"{label}: measured tokens/s ratio")
            annotate(ax, pm, rows, color)
    ax.axhline(1.0, color="0.5", lw=1, ls=":")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    if xs_all:
        lo, hi = min(xs_all), max(xs_all)
        pad = 1.4 if lo != hi else 2
        ax.set_xlim(lo / pad, hi * pad)
        ticks = sorted(set(xs_all))
        if len(ticks) <= 16:
            ax.set_xticks(ticks)
            ax.minorticks_off()
    ys = [v for _b, rows in pairs for r in rows for v in (r["tps_ratio"], r["predicted"])
          if v is not None]
    if ys:
        ax.set_ylim(min(0.9, min(ys) * 0.9), max(ys) * 1.12)
    ax.grid(True, alpha=0.35)
    ax.set_xlabel(tr.batch_label([a] + [b for b, _ in pairs]))
    ax.set_ylabel("tokens/s ratio (B / A)")
    bs = ", ".join(tr.gpu_name(b) + (f" {tr.precision(b)}" if mixed else "") for b, _ in pairs)
    ax.set_title(f"Measured vs datasheet-predicted speedup over {tr.gpu_name(a)}\n"
                 f"{tr.model_name(a)}, {tr.context_label(a)}, {tr.precision(a)} — B: {bs}",
                 fontsize=10.5)
    ax.legend(loc="best", fontsize=8)
    fig.text(0.01, 0.01, "labels: measured vs predicted; predicted = bandwidth ratio "
             "(memory-bound) or tensor peak ratio (compute-bound); the roofline-bound ratio across "
             "precisions or mixed bounds", fontsize=7, color="0.35")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    base = "compare_" + name(a) + "_vs_" + "_".join(name(b) for b, _ in pairs)
    base += "_" + tr.stem(a)
    base = "".join(c if c.isalnum() or c in "-_." else "_" for c in base)
    return fig, base


def chart(a, pairs, out_dir, formats=("png", "svg")):
    """Writes chart_figure(a, pairs) to out_dir in each format; returns the paths."""
    fig, base = chart_figure(a, pairs)
    import matplotlib.pyplot as plt  # after chart_figure has chosen the Agg backend
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for ext in formats:
        path = os.path.join(out_dir, f"{base}.{ext}")
        fig.savefig(path, dpi=150, metadata={"Date": None} if ext == "svg" else None)
        paths.append(path)
    plt.close(fig)
    return paths


def left_out(a, b):
    """The batches a pair's table leaves out, and why: "1024 (only in A); 1 (skipped in B)"."""
    ka = {point_key(a, p): p.get("skipped") for p in a["points"]}
    kb = {point_key(b, p): p.get("skipped") for p in b["points"]}
    out = []
    for key in sorted(set(ka) | set(kb)):
        if key not in kb:
            why = "only in A"
        elif key not in ka:
            why = "only in B"
        elif ka[key] or kb[key]:
            why = "skipped in " + ("both" if ka[key] and kb[key] else "A" if ka[key] else "B")
        else:
            continue
        out.append(f"{key_label(key)} ({why})")
    return "; ".join(out)


def _short_build(build):
    """A build as a short commit: "0123456789ab", "0123456789ab-dirty", or "unknown"."""
    commit, dirty, _ = build.partition("-dirty")
    return commit[:12] + dirty


def pair_notes(a, b, bad):
    """Lines that qualify a pair's ratios: allowed mismatches, batches left out, launch mode,
    GEMM choice, builds, cards, sweeps that stopped early, compared points whose timing did not
    settle or ran ungated."""
    notes = [f"mismatch allowed: {m}" for m in bad]
    dropped = left_out(a, b)
    if dropped:
        notes.append(f"batches left out: {dropped}")
    if a["config"].get("graph", True) != b["config"].get("graph", True):
        notes.append("one run used eager launches, the other CUDA graphs")
    if a["config"].get("gemm") != b["config"].get("gemm"):
        notes.append(f"GEMM implementation {a['config'].get('gemm') or '?'} vs "
                     f"{b['config'].get('gemm') or '?'}")
    # Files that name their builds: two commits, or uncommitted changes on either side, may be
    # two versions of the kernels. Older files name none and get no note.
    ba, bb = a.get("truthput_build", ""), b.get("truthput_build", "")
    if ba and bb and (ba != bb or ba.endswith("-dirty")):
        notes.append(f"two builds ({_short_build(ba)} vs {_short_build(bb)}): the ratios include "
                     "what changed between them" + (", uncommitted changes included"
                                                    if "-dirty" in ba + bb else ""))
    cards = tr.different_cards(a, b)
    if cards and tr.gpu_name(a) == tr.gpu_name(b):
        # Lent cards of one model differ by a few percent (clocks under the power cap, HBM), so
        # a same-model ratio from two cards is not a same-card figure.
        notes.append(f"two cards of one model ({cards[0][:12]} vs {cards[1][:12]}): the ratios "
                     "include their card-to-card difference")
    # A sweep that stopped early (a failed point, Ctrl-C) has only the points before the stop.
    for who, run in (("A", a), ("B", b)):
        notes += [f"{who} {n}" for n in run["config"].get("notes", [])
                  if n.startswith("incomplete:")]
    # A ratio is no firmer than its two medians: name each compared point whose timing is not a
    # settled one.
    common = set(usable_points(a)) & set(usable_points(b))
    for who, run in (("A", a), ("B", b)):
        for key, p in sorted(usable_points(run).items()):
            if key in common:
                notes += [f"{who} batch {key_label(key)}: {n}" for n in tr.timing_caveats(p)]
    return notes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("baseline", metavar="A.json")
    ap.add_argument("others", nargs="+", metavar="B.json")
    ap.add_argument("--allow-mismatch", action="store_true",
                    help="compare even when model, phase, context or TP differ")
    ap.add_argument("--out", default=".", metavar="DIR", help="directory for the chart")
    ap.add_argument("--md", metavar="FILE", help="also write the markdown tables to FILE")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --md FILE")
    ap.add_argument("--no-chart", action="store_true", help="print the table only")
    args = ap.parse_args(argv)
    if args.md:
        why = tr.output_refusal(args.md, [args.baseline] + args.others, args.overwrite)
        if why:
            print(f"compare: {why}", file=sys.stderr)
            return tr.EXIT_CANNOT_WRITE
    try:
        a = tr.load(args.baseline)
        others = [tr.load(p) for p in args.others]
    except tr.ResultError as e:
        print(f"compare: {e}", file=sys.stderr)
        return 1
    # Prediction-only runs (bench --predict) have no tokens/s: a table of "—" would pass for a
    # comparison. The bounds alone are plot.py's.
    for run in [a] + others:
        if not tr.measured_points(run):
            print(f"compare: nothing was measured in {run['path']} (no timed point); "
                  f"nothing to compare", file=sys.stderr)
            return EXIT_MISMATCH
    pairs, texts = [], []
    for b in others:
        bad = mismatches(a, b)
        if bad and not args.allow_mismatch:
            print(f"compare: {a['path']} and {b['path']} are not the same workload: "
                  f"{'; '.join(bad)} (pass --allow-mismatch to compare anyway)", file=sys.stderr)
            return EXIT_MISMATCH
        rows = compare_rows(a, b)
        if not rows:
            print(f"compare: {a['path']} and {b['path']} have no batch in common; "
                  f"nothing to compare", file=sys.stderr)
            return EXIT_MISMATCH
        pairs.append((b, rows))
        notes = pair_notes(a, b, bad)
        texts.append(markdown(a, b, rows, notes))
    text = "\n".join(texts)
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # The reader left (`| head`): no traceback; stdout to devnull so the flush at exit
        # does not fail again, and the --md and chart still get written.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    try:
        if args.md:
            where = args.md
            tr.write_text(args.md, text)
        if not args.no_chart:
            where = args.out
            before = set(os.listdir(args.out)) if os.path.isdir(args.out) else set()
            for p in chart(a, pairs, args.out):
                replaced = " (replaced an existing file)" if os.path.basename(p) in before else ""
                print(f"chart: {p}{replaced}", file=sys.stderr)
    except OSError as e:
        print(f"compare: {tr.cannot_write(e, where)}", file=sys.stderr)
        return tr.EXIT_CANNOT_WRITE
    return 0


if __name__ == "__main__":
    sys.exit(main())
