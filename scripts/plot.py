#!/usr/bin/python3
"""Pictures of truthput runs.

    scripts/plot.py RESULT.json [more.json ...] --out DIR

For every file, four charts (PNG and SVG each), and a fifth where the file has step samples,
named after the file's stem (led by its folder's name, e.g. h200_<stem>, where files of two
folders share a name):
  <stem>_throughput   tokens/s vs batch (log-log), with the roofline bound (bound_tokens_per_s)
  <stem>_utilization  MBU, MFU, SM active, tensor active and nvidia-smi utilization vs batch
                      (log-x, 0..100%): what nvidia-smi says beside what the GPU did
  <stem>_op_share     each op's share of the step time vs batch, stacked; small ops as "other"
  <stem>_roofline     arithmetic intensity vs achieved TFLOP/s, under the datasheet's roof
  <stem>_steps        each measured point's timed steps in the order timed, in % above or below
                      their median, p99 in the legend: a tail or a drift shows (only where the
                      file has step_ms_samples; older files have none)
Where several files share a model, precision and phase, also
  combined_<phase>_<model>_<precision>_throughput and ..._roofline (those runs overlaid).

Series a file does not have (older runs without the truth columns, predictions without any
measurement) are left out and named in a note on the chart, never drawn as zero.

An --out that cannot be written (a file, a folder without write permission) is refused with one
line on stderr and exit status 2. Charts already in --out under the same names are replaced (they
are made again from the results at will) and named in one line on stderr.
"""

import argparse
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogFormatter  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import truthput_results as tr  # noqa: E402

FIGSIZE = (9, 5.5)
DPI = 150
OTHER_BELOW = 0.03  # ops whose share never reaches this at any batch are grouped as "other"

plt.rcParams.update({
    "svg.fonttype": "none",     # text stays text in the SVG
    "svg.hashsalt": "truthput",  # stable ids: regenerated files do not churn
    "axes.grid": True,
    "grid.alpha": 0.35,
    "axes.titlesize": 11,
    "legend.fontsize": 8.5,
})


def _num_formatter(v, _pos):
    if v <= 0:
        return "0"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 1:
        return f"{v:g}"
    return f"{v:.3g}"


class _PlainLogFormatter(LogFormatter):
    """matplotlib's choice of which log ticks to label, with plain numbers (61,500 not 6.15e4)."""

    def _num_to_string(self, x, vmin, vmax):
        return _num_formatter(x, None)


def _log_y(ax):
    """Log y axis with plain numbers; minor ticks labelled only where matplotlib would."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(_num_formatter))
    ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False,
                                                    minor_thresholds=(1, 0.4)))


def _batch_axis(ax, batches):
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    if batches:
        lo, hi = min(batches), max(batches)
        if lo == hi:
            ax.set_xlim(lo / 2, hi * 2)
        else:
            ax.set_xlim(lo / 1.25, hi * 1.25)
        ticks = sorted(set(batches))
        if len(ticks) <= 16:
            ax.set_xticks(ticks)
            ax.minorticks_off()


def _title(runs):
    """Model, GPU and context of the runs; parts that differ between runs are listed. Non-default
    settings (a TP shard, eager launches), which change what a step is, are named where every run
    has the same ones; where they differ, the legend's run names say which run has which."""
    def join(values):
        out = []
        for v in values:
            if v not in out:
                out.append(v)
        return ", ".join(out)
    models = join(tr.model_name(r) for r in runs)
    gpus = join(tr.gpu_name(r) for r in runs)
    ctx = join(tr.context_label(r) for r in runs)
    prec = join(tr.precision(r) for r in runs)
    phases = join(r["config"].get("phase") or "decode" for r in runs)
    shared = {", ".join(tr.knobs(r["config"])) for r in runs}
    settings = shared.pop() if len(shared) == 1 else ""
    return f"{models} {phases}, {prec}{', ' + settings if settings else ''} — {gpus} — {ctx}"


def _set_title(ax, what, runs):
    ax.set_title(f"{what}\n{_title(runs)}", fontsize=10.5)


def _note(fig, text):
    if text:
        fig.text(0.01, 0.01, text, fontsize=7, color="0.35", ha="left", va="bottom", wrap=True)


def _save(fig, out_dir, name, formats):
    paths = []
    for ext in formats:
        path = os.path.join(out_dir, f"{name}.{ext}")
        meta = {"Date": None} if ext == "svg" else None
        fig.savefig(path, dpi=DPI, metadata=meta)
        paths.append(path)
    plt.close(fig)
    return paths


# --------------------------------------------------------------------------------- charts


def run_names(runs):
    """Legend names: the short label, with the file stem where two runs would read the same."""
    names = [tr.short_label(r) for r in runs]
    if len({tr.model_name(r) for r in runs}) > 1:
        names = [f"{tr.model_name(r)} {n}" for n, r in zip(names, runs)]
    return [f"{n} ({tr.stem(r)})" if names.count(n) > 1 else n for n, r in zip(names, runs)]


def _style_legend(ax, runs, names, colors, styles):
    """Combined charts: one entry per run (its color) and one per line style."""
    handles = [Line2D([], [], color=colors[i % len(colors)], lw=2, marker="o", ms=4)
               for i in range(len(runs))]
    labels = list(names)
    for lbl, kw in styles:
        handles.append(Line2D([], [], color="0.3", **kw))
        labels.append(lbl)
    ax.legend(handles, labels, loc="upper left", fontsize=8)


def draw_throughput(ax, run, color, combined=False):
    curves = tr.series(run)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (suffix, pts) in enumerate(curves):
        pre = f"{suffix}: " if suffix else ""
        if len(curves) > 1 and not combined:
            color = palette[k % len(palette)]
        bpts = [p for p in pts if p["bound_tokens_per_s"] > 0]
        if bpts:
            ax.plot([p["batch"] for p in bpts], [p["bound_tokens_per_s"] for p in bpts],
                    ls="--", lw=1.3, color=color, alpha=0.75,
                    label=None if combined else f"{pre}roofline bound (bound_tokens_per_s)")
        mpts = [p for p in pts if tr.measured(p)]
        if mpts:
            ax.plot([p["batch"] for p in mpts], [p["tokens_per_s"] for p in mpts],
                    marker="o", ms=4.5, lw=1.8, color=color,
                    label=None if combined else f"{pre}measured (step p50)")


def throughput_figure(runs):
    fig, ax = plt.subplots(figsize=FIGSIZE)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    combined = len(runs) > 1
    names = run_names(runs)
    batches = []
    for i, run in enumerate(runs):
        draw_throughput(ax, run, colors[i % len(colors)], combined)
        batches += [p["batch"] for p in run["points"] if not p.get("skipped")]
    _batch_axis(ax, batches)
    _log_y(ax)
    ax.set_xlabel(tr.batch_label(runs))
    ax.set_ylabel("throughput (tokens/s)")
    _set_title(ax, "Tokens/s vs batch, measured and roofline bound", runs)
    notes = []
    for i, run in enumerate(runs):
        ridge = run.get("predicted_ridge_batch")
        who = f"{names[i]}: " if combined else ""
        if ridge:
            ax.axvline(ridge, color=colors[i % len(colors)] if combined else "0.5", ls=":",
                       lw=1)
            ax.annotate(f"{who}predicted ridge\nbatch {ridge:g} ", (ridge, 0.03),
                        xycoords=("data", "axes fraction"), fontsize=7.5, color="0.35",
                        ha="right", va="bottom")
        knee = run.get("measured_knee_batch")
        if knee:
            notes.append(f"{who}measured knee at batch {knee:.0f}")
        if not tr.measured_points(run):
            notes.append(f"{who}no measured points (prediction only)")
    if combined:
        _style_legend(ax, runs, names, colors,
                      [("measured (step p50)", dict(lw=1.8, marker="o", ms=4)),
                       ("roofline bound", dict(lw=1.3, ls="--"))])
    elif ax.has_data():
        ax.legend(loc="upper left")
    _note(fig, "; ".join(notes))
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


# (label, point field, scale to %, style) — the lie first, then the truths.
UTIL_SERIES = (
    ("nvidia-smi utilization", "smi_util_pct", 1.0,
     dict(color="tab:red", lw=2.6, ls="--", marker="s")),
    ("SM active (CUPTI)", "sm_active_pct", 1.0, dict(color="tab:orange", marker="^")),
    ("tensor active (CUPTI)", "tensor_active_pct", 1.0, dict(color="tab:purple", marker="v")),
    ("MBU (bytes / time / peak BW)", "mbu", 100.0, dict(color="tab:blue", marker="o")),
    ("MFU (FLOPs / time / peak)", "mfu", 100.0, dict(color="tab:green", marker="D")),
)


# A prefill sweep's prompt lengths, one line style each (the colors are the metrics').
SEQ_STYLES = ("-", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))


def utilization_figure(run):
    fig, ax = plt.subplots(figsize=FIGSIZE)
    pts = tr.measured_points(run)
    # One line per metric and prompt length: a line through batch 1 at 8192 tokens and batch 8
    # at 512 would draw a trend across batches that is a change of prompt.
    curves = [(suffix, [p for p in spts if tr.measured(p)]) for suffix, spts in tr.series(run)]
    missing = []
    for lbl, field, scale, style in UTIL_SERIES:
        drawn = False
        for k, (suffix, cpts) in enumerate(curves):
            xs = [p["batch"] for p in cpts if p.get(field) is not None]
            ys = [p[field] * scale for p in cpts if p.get(field) is not None]
            if not xs:
                continue
            kw = dict(lw=1.8, ms=5)
            kw.update(style)
            if len(curves) > 1:
                kw["ls"] = SEQ_STYLES[k % len(SEQ_STYLES)]
            first = f"{ys[0]:.0f}%" if ys[0] >= 10 else f"{ys[0]:.2g}%"
            at = f"batch {xs[0]}" + (f", {suffix}" if suffix else "")
            ax.plot(xs, ys, label=f"{lbl} — {at}: {first}", **kw)
            drawn = True
        if not drawn:
            missing.append(field)
    _batch_axis(ax, [p["batch"] for p in pts])
    ax.set_ylim(0, 105)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.0f}%"))
    ax.set_xlabel(tr.batch_label([run]))
    ax.set_ylabel("utilization / efficiency (% of peak or of time)")
    _set_title(ax, "What nvidia-smi says vs what the GPU does", [run])
    if ax.has_data():
        # Middle left is empty: at small batches every series sits near 100% or near 0%.
        ax.legend(loc="center left")
    else:
        ax.text(0.5, 0.5, "no measured points in this file", transform=ax.transAxes,
                ha="center", va="center", color="0.4")
    notes = []
    if missing:
        notes.append("not measured in this file: " + ", ".join(missing))
    for u in run.get("unavailable", [])[:3]:
        notes.append(u if len(u) < 110 else u[:107] + "...")
    _note(fig, "; ".join(notes))
    fig.tight_layout(rect=(0, 0.04 if notes else 0, 1, 1))
    return fig


def op_shares(pts):
    """[(op name, [share per point])] with small ops folded into "other", in step order."""
    order, table = [], {}
    for i, p in enumerate(pts):
        for o in p["ops"]:
            if o.get("share") is None:
                continue
            if o["name"] not in table:
                order.append(o["name"])
                table[o["name"]] = [0.0] * len(pts)
            table[o["name"]][i] += o["share"]
    big = [n for n in order if max(table[n]) >= OTHER_BELOW]
    small = [n for n in order if n not in big]
    rows = [(n, table[n]) for n in big]
    if small:
        rows.append(("other (" + ", ".join(small) + ")" if len(small) <= 4 else
                     f"other ({len(small)} small ops)",
                     [sum(table[n][i] for n in small) for i in range(len(pts))]))
    return rows


def op_share_figure(run):
    fig, ax = plt.subplots(figsize=FIGSIZE)
    pts = [p for p in tr.measured_points(run) if any(o.get("share") is not None for o in p["ops"])]
    prefill = run["config"].get("phase") == "prefill"
    xlabels = [f"{p['batch']}" + (f"\nseq {p['seq_len']}" if prefill else "") for p in pts]
    xs = list(range(len(pts)))
    rows = op_shares(pts)
    cmap = plt.get_cmap("tab20")
    bottom = [0.0] * len(pts)
    for k, (op, shares) in enumerate(rows):
        vals = [s * 100 for s in shares]
        color = "0.65" if op.startswith("other") else cmap(k % 20)
        ax.bar(xs, vals, bottom=bottom, width=0.75, label=op, color=color, edgecolor="white",
               linewidth=0.4)
        bottom = [b + v for b, v in zip(bottom, vals)]
    if pts:
        rest = [max(0.0, 100 - b) for b in bottom]
        if any(r > 0.5 for r in rest):
            ax.bar(xs, rest, bottom=bottom, width=0.75, color="white", edgecolor="0.6",
                   hatch="///", linewidth=0.4,
                   label="not attributed (step − Σ ops timed alone)")
        ax.set_xticks(xs)
        ax.set_xticklabels(xlabels)
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], labels[::-1], loc="center left", bbox_to_anchor=(1.01, 0.5),
                  fontsize=8)
    else:
        ax.text(0.5, 0.5, "no per-op times in this file", transform=ax.transAxes,
                ha="center", va="center", color="0.4")
        ax.set_xticks([])
    ax.set_ylim(0, 105)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.0f}%"))
    ax.set_xlabel("batch" + (" / prompt length" if prefill else ""))
    ax.set_ylabel("share of step time (%)")
    _set_title(ax, "Where the step time goes (share of step per op)", [run])
    _note(fig, f"each op kind timed alone (all its executions per step); ops under "
               f"{OTHER_BELOW:.0%} at every batch grouped as other")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def roof_line(ax, run, xmin, xmax, color, name):
    peak, bw = tr.peak_tflops(run), tr.bandwidth_gbps(run)
    if not peak or not bw:
        return None
    ridge = peak * 1000.0 / bw  # FLOP/byte where bandwidth*intensity meets the peak
    n = 200
    xs = [xmin * (xmax / xmin) ** (i / (n - 1)) for i in range(n)]
    xs = sorted(set(xs + [ridge] if xmin < ridge < xmax else xs))
    ys = [min(peak, x * bw / 1000.0) for x in xs]
    ds = run["datasheet"]
    roof_name = ds.get("id") or ds.get("display_name") or "datasheet"
    ax.plot(xs, ys, color=color, lw=2.2, alpha=0.8,
            label=f"{name + ': ' if name else ''}roof {roof_name} "
                  f"({peak:g} TFLOP/s {tr.precision(run)}, {bw:g} GB/s)")
    if xmin < ridge < xmax:
        ax.axvline(ridge, color=color, ls=":", lw=1, alpha=0.6)
        ax.annotate(f"{roof_name} ridge {ridge:.0f} FLOP/B", (ridge, 0.45),
                    xycoords=("data", "axes fraction"), textcoords="offset points",
                    xytext=(-3, 0), fontsize=7.5, color=color, ha="right", va="center",
                    rotation=90)
    return ridge


def roofline_figure(runs):
    fig, ax = plt.subplots(figsize=FIGSIZE)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    combined = len(runs) > 1
    names = run_names(runs)
    intens = [p["intensity"] for r in runs for p in r["points"] if p["intensity"] > 0]
    ridges = [tr.peak_tflops(r) * 1000.0 / tr.bandwidth_gbps(r) for r in runs
              if tr.peak_tflops(r) and tr.bandwidth_gbps(r)]
    span = intens + ridges
    xmin = min(span) / 3 if span else 0.3
    xmax = max(span) * 3 if span else 3000
    roofs = []
    for run in runs:
        key = (tr.peak_tflops(run), tr.bandwidth_gbps(run))
        if key not in [k for k, _ in roofs]:
            roofs.append((key, run))
    roof_colors = ["0.25", "0.55", "0.4", "0.7"]
    for j, (_key, run) in enumerate(roofs):
        roof_line(ax, run, xmin, xmax, roof_colors[j % len(roof_colors)], "")
    for i, run in enumerate(runs):
        color = colors[i % len(colors)]
        bpts = [p for p in run["points"] if not p.get("skipped") and p["intensity"] > 0
                and p["bound_ms"] > 0]
        if bpts:
            ax.scatter([p["intensity"] for p in bpts],
                       [p["model_gflops"] / p["bound_ms"] for p in bpts],
                       facecolors="none", edgecolors=color, s=30, lw=1, alpha=0.7,
                       label=None if combined else "roofline bound of the step")
        # One line per prompt length (tr.series): points of other prompts are other steps.
        labelled = combined
        for _suffix, spts in tr.series(run):
            mpts = [p for p in spts if tr.measured(p)
                    and p["intensity"] > 0 and (p.get("achieved_tflops") or 0) > 0]
            if not mpts:
                continue
            ax.plot([p["intensity"] for p in mpts], [p["achieved_tflops"] for p in mpts],
                    marker="o", ms=5, lw=1, color=color,
                    label=None if labelled else "measured (model FLOPs / step p50)")
            labelled = True
            # Combined: only the ends of each run are labelled, to stay legible.
            tagged = mpts if not combined else [mpts[0], mpts[-1]][:len(mpts)]
            for p in tagged:
                tag = f"b{p['batch']}" + (f"/s{p['seq_len']}"
                                          if run["config"].get("phase") == "prefill" else "")
                ax.annotate(tag, (p["intensity"], p["achieved_tflops"]),
                            textcoords="offset points", xytext=(5, -10), fontsize=7.5,
                            color=color)
    ax.set_xscale("log")
    _log_y(ax)
    ax.set_xlim(xmin, xmax)
    ax.xaxis.set_major_formatter(FuncFormatter(_num_formatter))
    ax.set_xlabel("arithmetic intensity (FLOP per byte of DRAM traffic)")
    ax.set_ylabel("achieved (TFLOP/s)")
    _set_title(ax, "Roofline: achieved TFLOP/s vs arithmetic intensity", runs)
    if combined:
        roof_handles = [(h, l) for h, l in zip(*ax.get_legend_handles_labels())]
        _style_legend(ax, runs, names, colors,
                      [("measured", dict(lw=1, marker="o", ms=5)),
                       ("roofline bound of the step", dict(lw=0, marker="o", ms=5,
                                                           markerfacecolor="none"))])
        leg = ax.get_legend()
        ax.add_artist(leg)
        if roof_handles:
            ax.legend([h for h, _ in roof_handles], [l for _, l in roof_handles],
                      loc="lower right", fontsize=7.5)
    elif ax.has_data():
        ax.legend(loc="upper left", fontsize=8)
    _note(fig, "roof = min(peak, intensity × bandwidth) from the datasheet; step FLOPs and "
               "bytes are the model's minimum (README: model_gflops, model_gbytes)")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def step_deviations(samples, p99=None):
    """One point's step times in % above (+) or below (-) the median of those samples, in the
    order given, and p99 (ms) in % over that median: (deviations, p99 % or None).
    ([], None) without samples or where their median is not above 0."""
    if not samples:
        return [], None
    med = statistics.median(samples)
    if not med > 0:
        return [], None
    devs = [(s - med) / med * 100.0 for s in samples]
    return devs, (None if p99 is None else (p99 - med) / med * 100.0)


def step_series(point, prefill=False):
    """(legend label, deviations) of one point for the steps chart: "batch 64: p99 +1.3%"
    ("p99 n/a" where the file has none; ", seq N" for a prefill prompt length)."""
    devs, p99 = step_deviations(point.get("step_ms_samples"), point.get("step_ms_p99"))
    at = f"batch {point['batch']}"
    if prefill and point.get("seq_len", 0) > 0:
        at += f", seq {point['seq_len']}"
    return f"{at}: p99 {p99:+.1f}%" if p99 is not None else f"{at}: p99 n/a", devs


def steps_figure(run):
    """Each measured point's timed steps against their median; None where no point has samples
    (older files), so no chart is made."""
    prefill = run["config"].get("phase") == "prefill"
    curves, without = [], []
    for p in tr.measured_points(run):
        label, devs = step_series(p, prefill)
        if devs:
            curves.append((label, devs))
        else:
            without.append(label.split(":")[0])
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=FIGSIZE)
    if len(curves) <= 10:
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    else:
        cmap = plt.get_cmap("viridis")
        colors = [cmap(i / (len(curves) - 1)) for i in range(len(curves))]
    ax.axhline(0, color="0.3", lw=1)
    for k, (label, devs) in enumerate(curves):
        ax.plot(range(len(devs)), devs, lw=1, alpha=0.85, color=colors[k % len(colors)],
                marker="o" if len(devs) <= 50 else None, ms=2.5, label=label)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:+g}%"))
    ax.set_xlabel("step, in the order timed")
    ax.set_ylabel("step time vs its median (%)")
    _set_title(ax, "Each timed step against its point's median", [run])
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    notes = ["one line per measured point: its timed steps over their median"]
    if without:
        notes.append("no step samples: " + ", ".join(without))
    _note(fig, "; ".join(notes))
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


# Each chart is built by its *_figure function and saved by its chart_* one, so a test can look
# at what a chart draws (lines, labels, legend) before any file is written.


def chart_throughput(runs, out_dir, name, formats):
    return _save(throughput_figure(runs), out_dir, name, formats)


def chart_utilization(run, out_dir, name, formats):
    return _save(utilization_figure(run), out_dir, name, formats)


def chart_op_share(run, out_dir, name, formats):
    return _save(op_share_figure(run), out_dir, name, formats)


def chart_roofline(runs, out_dir, name, formats):
    return _save(roofline_figure(runs), out_dir, name, formats)


def chart_steps(run, out_dir, name, formats):
    """[] (nothing written) where no point of the run has step samples."""
    fig = steps_figure(run)
    return [] if fig is None else _save(fig, out_dir, name, formats)


def chart_stems(runs):
    """Each run's chart name: its file stem, led by its folder's name where runs of two folders
    share a file name (h100-sxm/x.json, h200/x.json); None where that still names two alike."""
    stems = [tr.stem(r) for r in runs]
    out = [f"{os.path.basename(os.path.dirname(os.path.abspath(r['path'])))}_{s}"
           if stems.count(s) > 1 else s for s, r in zip(stems, runs)]
    return out if len(set(out)) == len(out) else None


def plot_run(run, out_dir, formats, s):
    paths = []
    paths += chart_throughput([run], out_dir, f"{s}_throughput", formats)
    paths += chart_utilization(run, out_dir, f"{s}_utilization", formats)
    paths += chart_op_share(run, out_dir, f"{s}_op_share", formats)
    paths += chart_roofline([run], out_dir, f"{s}_roofline", formats)
    paths += chart_steps(run, out_dir, f"{s}_steps", formats)
    return paths


def combined_groups(runs):
    """[(slug, runs)] for each model/precision/phase with more than one run."""
    groups = {}
    for run in runs:
        key = (run["config"].get("phase") or "decode", tr.model_name(run), tr.precision(run))
        groups.setdefault(key, []).append(run)
    out = []
    for key, group in groups.items():
        if len(group) > 1:
            slug = "_".join(key).lower()
            slug = "".join(c if c.isalnum() or c in "-." else "_" for c in slug)
            out.append((slug, group))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", metavar="RESULT.json")
    ap.add_argument("--out", required=True, metavar="DIR", help="directory for the charts")
    ap.add_argument("--formats", default="png,svg", help="comma list (default png,svg)")
    ap.add_argument("--skip-other", action="store_true",
                    help="skip JSON files that are not RunResults (e.g. ceilings) with a note")
    args = ap.parse_args(argv)
    formats = [f.strip().lstrip(".").lower() for f in args.formats.split(",") if f.strip()]
    supported = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    unknown = [f for f in formats if f not in supported]
    if not formats or unknown:
        print(f"plot: --formats={args.formats}: "
              + (f"{', '.join(unknown)} not a format matplotlib writes" if unknown else "empty")
              + f" (it writes {', '.join(sorted(supported))})", file=sys.stderr)
        return 2
    runs = []
    for path in args.results:
        try:
            runs.append(tr.load(path))
        except tr.NotARunResult as e:
            if not args.skip_other:
                print(f"plot: {e}", file=sys.stderr)
                return 1
            print(f"plot: skipping {e}", file=sys.stderr)
        except tr.ResultError as e:
            print(f"plot: {e}", file=sys.stderr)
            return 1
    if not runs:
        print("plot: no RunResult to plot", file=sys.stderr)
        return 1
    stems = chart_stems(runs)
    if stems is None:
        print("plot: two of the files would write the same chart names (one file given twice, "
              "or one name in two folders of one name); plot them separately", file=sys.stderr)
        return 1
    written = []
    try:
        os.makedirs(args.out, exist_ok=True)
        before = set(os.listdir(args.out))
        for run, s in zip(runs, stems):
            written += plot_run(run, args.out, formats, s)
        for slug, group in combined_groups(runs):
            written += chart_throughput(group, args.out, f"combined_{slug}_throughput", formats)
            written += chart_roofline(group, args.out, f"combined_{slug}_roofline", formats)
    except OSError as e:
        print(f"plot: {tr.cannot_write(e, args.out)}", file=sys.stderr)
        return tr.EXIT_CANNOT_WRITE
    for p in written:
        print(p)
    replaced = [p for p in written if os.path.basename(p) in before]
    if replaced:  # charts are made from the results again at will, but never replaced unsaid
        print(f"plot: replaced {len(replaced)} existing file(s) in {args.out}: "
              f"{', '.join(os.path.basename(p) for p in replaced)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
