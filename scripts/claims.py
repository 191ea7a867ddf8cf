#!/usr/bin/python3
"""Check the claims of "Why Your GPU Utilization Numbers Lie" against truthput result files.

    scripts/claims.py RESULTS_DIR [--out FILE] [--overwrite]   (default FILE: RESULTS_DIR/CLAIMS.md)

Result files are found by name under RESULTS_DIR/<gpu>/:
    decode_<model>_<precision>_ctx<N>.json            (CUDA-graph sweep)
    decode_<model>_<precision>_ctx<N>_b1_eager.json   (batch 1, eager launches)
Each claim gets one row per GPU (or file) with the article's number, ours, a verdict (holds /
partly / does not hold / not measured) and the file it came from. A missing or unreadable file
gives a "not measured" row, never an error. The thresholds behind each verdict are written
under its table.

A RESULTS_DIR that is not there or holds no result file (a mistyped path), or an --out that
cannot be written, is one of the result files, or exists already (unless --overwrite), is
refused with one line on stderr and exit status 2; nothing is written.
"""

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import truthput_results as tr  # noqa: E402

HOLDS, PARTLY, FAILS, NOT_MEASURED = "holds", "partly", "does not hold", "not measured"

MODEL, PRECISION = "70b", "bf16"   # the article's model
SMALL_OP_US = 20.0                 # "small op": under this per launch in the graph run
SATURATED_GAIN = 1.25              # tokens/s gain per batch doubling below which it saturates

EXIT_BAD_PATH = 2                  # RESULTS_DIR missing or empty of results, --out not writable


# ------------------------------------------------------------------------------- discovery


def discover(results_dir):
    """{gpu: {(phase, model, precision, context, eager): path}} from the file names."""
    index = {}
    if not os.path.isdir(results_dir):
        return index
    for gpu in sorted(os.listdir(results_dir)):
        d = os.path.join(results_dir, gpu)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            info = tr.parse_result_name(name)
            if info:
                key = (info["phase"], info["model"], info["precision"], info["context"],
                       info["eager"])
                index.setdefault(gpu, {})[key] = os.path.join(d, name)
    return index


def gpu_order(index):
    """GPU directories, H100 first (the article's GPU), then by name."""
    return sorted(index, key=lambda g: (not g.startswith("h100"), g != "h100-sxm", g))


def show_path(path):
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


def expected(results_dir, gpu, model, context, eager=False):
    name = f"decode_{model}_{PRECISION}_ctx{context}{'_b1_eager' if eager else ''}.json"
    return os.path.join(results_dir, gpu, name)


class Loader:
    """Loads each file once; remembers why one could not be read."""

    def __init__(self):
        self.cache = {}

    def get(self, path):
        if path not in self.cache:
            try:
                self.cache[path] = (tr.load(path), None)
            except tr.ResultError as e:
                self.cache[path] = (None, str(e))
        return self.cache[path]


def row(claim, gpu, article, ours, verdict, source):
    return {"claim": claim, "gpu": gpu, "article": article, "ours": ours, "verdict": verdict,
            "file": source}


def missing_row(claim, gpu, article, path, why="file not found"):
    return row(claim, gpu, article, f"not measured ({why})", NOT_MEASURED,
               f"`{show_path(path)}` (missing)" if why == "file not found"
               else f"`{show_path(path)}`")


def name_mismatch(run, path):
    """What `run` holds that its file name does not say ("" where they agree). Claims are found by
    file name; a run saved under another's name (an 8B sweep as decode_70b_...) must not judge the
    claim that name stands for."""
    info = tr.parse_result_name(path)
    if not info:
        return ""
    cfg = run["config"]
    diffs = []
    if cfg.get("phase") and cfg["phase"] != info["phase"]:
        diffs.append(cfg["phase"])
    want = info["model"].lower()
    arg = (cfg.get("model_arg") or "").lower()
    name = (cfg["model"].get("name") or "").lower()
    if want not in (arg, name) and not name.endswith("-" + want):
        diffs.append(tr.model_name(run))
    if tr.precision(run) != info["precision"]:
        diffs.append(f"{tr.precision(run)} weights")
    if (cfg.get("context") or 0) != info["context"]:
        diffs.append(f"context {cfg.get('context') or 0}")
    if info["eager"] == cfg.get("graph", True):
        diffs.append("CUDA graphs" if info["eager"] else "eager launches")
    return ", ".join(diffs)


def _load_or_row(loader, claim, gpu, article, path):
    if not path or not os.path.exists(path):
        return None, missing_row(claim, gpu, article, path)
    run, err = loader.get(path)
    if run is None:
        return None, missing_row(claim, gpu, article, path, f"unreadable: {err}")
    if differs := name_mismatch(run, path):
        return None, missing_row(claim, gpu, article, path,
                                 f"the file holds a run of {differs}, not what its name says")
    return run, None


def _tps(v):
    return f"{tr.fmt(v)} tok/s"


# --------------------------------------------------------------------------------- claims

def claim_a(results_dir, index, loader):
    rows = []
    gpus = [g for g in gpu_order(index) if g.startswith("h100")] or ["h100-sxm"]
    for gpu in gpus:
        path = index.get(gpu, {}).get(("decode", MODEL, PRECISION, 2048, False)) or \
            expected(results_dir, gpu, MODEL, 2048)
        run, bad = _load_or_row(loader, "a", gpu, "~24 tok/s bound at batch 1", path)
        if bad:
            rows.append(bad)
            continue
        p = tr.point_at(run, 1)
        if p is None or p.get("skipped") or not p.get("bound_tokens_per_s"):
            rows.append(row("a", gpu, "~24 tok/s", "not measured (no batch-1 point)",
                            NOT_MEASURED, f"`{show_path(path)}`"))
            continue
        bound = p["bound_tokens_per_s"]
        meas = tr.measured_tps(p)
        near = abs(bound - 24) / 24
        ours = (f"bound {_tps(bound)} ({p['bound'] or '?'}-bound, "
                f"{tr.fmt(p['model_gbytes'])} GB per step); ")
        if meas is None:
            ours += "measured: not measured (prediction only)"
            verdict = PARTLY if near <= 0.25 else FAILS
        else:
            ours += f"measured {_tps(meas)} ({meas / bound:.0%} of the bound)"
            if near <= 0.10 and meas <= bound * 1.02:
                verdict = HOLDS
            elif near <= 0.25:
                verdict = PARTLY
            else:
                verdict = FAILS
        rows.append(row("a", gpu, "~24 tok/s", ours, verdict, f"`{show_path(path)}`"))
    return rows


def per_doubling(b0, t0, b1, t1):
    """Tokens/s gain per doubling of the batch between two points."""
    if t0 <= 0 or t1 <= 0 or b1 <= b0:
        return None
    return (t1 / t0) ** (1 / math.log2(b1 / b0))


def claim_b(results_dir, index, loader):
    rows = []
    article = "×2 tok/s per batch doubling while memory-bound"
    for gpu in gpu_order(index) or ["h100-sxm"]:
        for ctx in (0, 2048):
            path = index.get(gpu, {}).get(("decode", MODEL, PRECISION, ctx, False)) or \
                expected(results_dir, gpu, MODEL, ctx)
            label = f"{gpu}, ctx {ctx}"
            run, bad = _load_or_row(loader, "b", label, article, path)
            if bad:
                rows.append(bad)
                continue
            pts = tr.measured_points(run)
            if len(pts) < 2:
                rows.append(row("b", label, article,
                                "not measured (fewer than two measured batches)",
                                NOT_MEASURED, f"`{show_path(path)}`"))
                continue
            mem = [p for p in pts if p["bound"] == "memory"]
            first, last = pts[0], pts[-1]
            parts = [f"{_tps(first['tokens_per_s'])} at batch {first['batch']} → "
                     f"{_tps(last['tokens_per_s'])} at batch {last['batch']} "
                     f"(×{last['tokens_per_s'] / first['tokens_per_s']:.0f})"]
            gain = None
            if len(mem) >= 2:
                gain = per_doubling(mem[0]["batch"], mem[0]["tokens_per_s"],
                                    mem[-1]["batch"], mem[-1]["tokens_per_s"])
                parts.append(f"×{gain:.2f} per doubling while memory-bound (batch "
                             f"{mem[0]['batch']}–{mem[-1]['batch']})")
            sat = None
            for p, q in zip(pts, pts[1:]):
                g = per_doubling(p["batch"], p["tokens_per_s"], q["batch"], q["tokens_per_s"])
                if g is not None and g < SATURATED_GAIN:
                    sat = (p, q, g)
                    break
            if sat:
                p, q = sat[0], sat[1]
                parts.append(f"saturates from batch {p['batch']} (batch {p['batch']}→"
                             f"{q['batch']}: ×{q['tokens_per_s'] / p['tokens_per_s']:.2f})")
            else:
                g_last = per_doubling(pts[-2]["batch"], pts[-2]["tokens_per_s"],
                                      pts[-1]["batch"], pts[-1]["tokens_per_s"])
                parts.append(f"does not saturate up to batch {last['batch']} (last step "
                             f"×{g_last:.2f} per doubling)")
            parts.append("why: " + why_saturates(run, pts, sat))
            if gain is None:
                verdict = NOT_MEASURED
            elif gain >= 1.7:
                verdict = HOLDS
            elif gain >= 1.4:
                verdict = PARTLY
            else:
                verdict = FAILS
            rows.append(row("b", label, article, "; ".join(parts), verdict,
                            f"`{show_path(path)}`"))
    return rows


def why_saturates(run, pts, sat):
    ridge, knee = run.get("predicted_ridge_batch"), run.get("measured_knee_batch")
    compute = [p for p in run["points"] if p["bound"] == "compute" and not p.get("skipped")]
    bits = []
    if compute:
        bits.append(f"the bound column turns compute from batch {compute[0]['batch']}")
    if ridge:
        bits.append(f"predicted ridge batch {ridge:g}")
    if knee:
        bits.append(f"measured knee batch {knee:.0f}")
    if not compute:
        b0, b1 = pts[0], pts[-1]
        bits.append(f"every point is memory-bound (no ridge): bytes per step grow "
                    f"{tr.fmt(b0['model_gbytes'])} → {tr.fmt(b1['model_gbytes'])} GB from batch "
                    f"{b0['batch']} to {b1['batch']}, the KV cache read growing with the batch")
        if sat:
            p = sat[0]
            bits.append(f"roofline efficiency {tr.fmt(p.get('roofline_eff'), 2)} at batch "
                        f"{p['batch']}")
    return ", ".join(bits)


def interpolate_log(x, x0, y0, x1, y1):
    """y at x on the straight line through (x0, y0), (x1, y1) in log-log space."""
    if x0 == x1:
        return y0
    t = math.log(x / x0) / math.log(x1 / x0)
    return math.exp(math.log(y0) + t * (math.log(y1) - math.log(y0)))


def mfu_at_tps(pts, target):
    """(MFU at target tok/s, how it was found) from measured points (sorted by batch)."""
    pts = [p for p in pts if p.get("mfu")]
    if not pts:
        return None, ""
    for p in pts:
        if abs(p["tokens_per_s"] - target) / target < 0.01:
            return p["mfu"], f"batch {p['batch']} ({_tps(p['tokens_per_s'])})"
    by_tps = sorted(pts, key=lambda p: p["tokens_per_s"])
    for p, q in zip(by_tps, by_tps[1:]):
        if p["tokens_per_s"] <= target <= q["tokens_per_s"]:
            m = interpolate_log(target, p["tokens_per_s"], p["mfu"], q["tokens_per_s"], q["mfu"])
            return m, (f"interpolated between batch {p['batch']} ({_tps(p['tokens_per_s'])}, "
                       f"MFU {tr.pct(p['mfu'])}) and batch {q['batch']} "
                       f"({_tps(q['tokens_per_s'])}, MFU {tr.pct(q['mfu'])})")
    near = min(pts, key=lambda p: abs(math.log(p["tokens_per_s"] / target)))
    return near["mfu"], (f"nearest point batch {near['batch']} ({_tps(near['tokens_per_s'])}); "
                         f"50 tok/s is outside the measured range")


def claim_c(results_dir, index, loader):
    rows = []
    for gpu in gpu_order(index) or ["h100-sxm"]:
        files = index.get(gpu, {})
        path = files.get(("decode", MODEL, PRECISION, 2048, False))
        if path is None:  # another context of the same model, lowest first
            others = sorted(k for k in files if k[:3] == ("decode", MODEL, PRECISION)
                            and not k[4])
            path = files[others[0]] if others else expected(results_dir, gpu, MODEL, 2048)
        run, bad = _load_or_row(loader, "c", gpu, "~0.7% MFU at 50 tok/s", path)
        if bad:
            rows.append(bad)
            continue
        mfu, how = mfu_at_tps(tr.measured_points(run), 50.0)
        if mfu is None:
            rows.append(row("c", gpu, "~0.7%", "not measured (no measured MFU)", NOT_MEASURED,
                            f"`{show_path(path)}`"))
            continue
        off = abs(mfu * 100 - 0.7) / 0.7
        verdict = HOLDS if off <= 0.25 else PARTLY if off <= 0.5 else FAILS
        p1 = tr.point_at(run, 1)
        implied = ""
        if p1 and p1["tokens"] and tr.peak_tflops(run):
            implied = (f"; arithmetic check: 50 tok/s × {tr.fmt(p1['model_gflops'] / p1['tokens'])}"
                       f" GFLOP/token / {tr.peak_tflops(run):g} TFLOP/s = "
                       f"{tr.pct(50 * p1['model_gflops'] / p1['tokens'] / 1000 / tr.peak_tflops(run))}")
        rows.append(row("c", gpu, "~0.7%", f"MFU {tr.pct(mfu)} at 50 tok/s ({how}){implied}",
                        verdict, f"`{show_path(path)}`"))
    return rows


def claim_d(results_dir, index, loader):
    rows = []
    article = "~100% (nvidia-smi) while MFU is ~1% or less"
    for gpu in gpu_order(index) or ["h100-sxm"]:
        keys = sorted((k for k in index.get(gpu, {}) if k[0] == "decode" and not k[4]),
                      key=lambda k: (k[1] != MODEL, k[1], -k[3]))
        if not keys:
            rows.append(missing_row("d", gpu, article, expected(results_dir, gpu, MODEL, 2048)))
            continue
        for key in keys:
            path = index[gpu][key]
            label = f"{gpu}, {key[1]}, ctx {key[3]}"
            run, bad = _load_or_row(loader, "d", label, article, path)
            if bad:
                rows.append(bad)
                continue
            p = tr.point_at(run, 1)
            if p is None or not tr.measured(p):
                rows.append(row("d", label, article, "not measured (no measured batch-1 point)",
                                NOT_MEASURED, f"`{show_path(path)}`"))
                continue
            smi, mfu = p.get("smi_util_pct"), p.get("mfu")
            if smi is None or mfu is None:
                what = "smi_util_pct" if smi is None else "mfu"
                rows.append(row("d", label, article,
                                f"{what} not measured in this file (batch 1 MFU "
                                f"{tr.pct(mfu)})", NOT_MEASURED, f"`{show_path(path)}`"))
                continue
            extra = [f"MBU {tr.pct(p.get('mbu'), 2)}"]
            if p.get("sm_active_pct") is not None:
                extra.append(f"SM active {tr.fmt(p['sm_active_pct'], 2)}%")
            if p.get("tensor_active_pct") is not None:
                extra.append(f"tensor active {tr.fmt(p['tensor_active_pct'], 2)}%")
            ours = (f"batch 1: nvidia-smi {tr.fmt(smi, 3)}% vs MFU {tr.pct(mfu)} "
                    f"({', '.join(extra)})")
            if smi >= 80 and mfu < 0.05:
                verdict = HOLDS
            elif smi >= 50 and mfu < 0.2:
                verdict = PARTLY
            else:
                verdict = FAILS
            rows.append(row("d", label, article, ours, verdict, f"`{show_path(path)}`"))
    return rows


def small_op_overhead(graph_pt, eager_pt):
    """(aggregate overhead, [(op, overhead)], names) over ops under SMALL_OP_US per launch."""
    eager_ops = {o["name"]: o for o in eager_pt["ops"]}
    small, sum_g, sum_e = [], 0.0, 0.0
    for o in graph_pt["ops"]:
        e = eager_ops.get(o["name"])
        if not e or o.get("measured_ms") is None or e.get("measured_ms") is None:
            continue
        per_launch_us = o["measured_ms"] * 1000 / max(1, o["count"] or 1)
        if per_launch_us >= SMALL_OP_US or e["measured_ms"] <= 0:
            continue
        small.append((o["name"], (e["measured_ms"] - o["measured_ms"]) / e["measured_ms"]))
        sum_g += o["measured_ms"]
        sum_e += e["measured_ms"]
    if not small or sum_e <= 0:
        return None, [], []
    return (sum_e - sum_g) / sum_e, small, [n for n, _ in small]


def claim_e(results_dir, index, loader):
    rows = []
    article = "10–30% launch overhead for small ops"
    found = False
    for gpu in gpu_order(index):
        files = index[gpu]
        for key in sorted(k for k in files if k[0] == "decode" and k[4]):
            gkey = key[:4] + (False,)
            label = f"{gpu}, {key[1]} {key[2]}, ctx {key[3]}, batch 1"
            found = True
            epath = files[key]
            gpath = files.get(gkey) or expected(results_dir, gpu, key[1], key[3])
            erun, bad = _load_or_row(loader, "e", label, article, epath)
            if bad:
                rows.append(bad)
                continue
            grun, bad = _load_or_row(loader, "e", label, article, gpath)
            if bad:
                rows.append(bad)
                continue
            ep, gp = tr.point_at(erun, 1), tr.point_at(grun, 1)
            source = f"`{show_path(epath)}` vs `{show_path(gpath)}`"
            if not (ep and gp and ep.get("step_ms_p50") and gp.get("step_ms_p50")):
                rows.append(row("e", label, article, "not measured (no timed batch-1 point in "
                                "both files)", NOT_MEASURED, source))
                continue
            step = (ep["step_ms_p50"] - gp["step_ms_p50"]) / ep["step_ms_p50"]
            ours = (f"whole step: {step:+.1%} (eager {tr.fmt(ep['step_ms_p50'])} ms vs graph "
                    f"{tr.fmt(gp['step_ms_p50'])} ms)")
            cards = tr.different_cards(erun, grun)
            if cards:
                e_gpu, g_gpu = cards
                # Lent GPUs of one model differ by about 1% in step time, as much as the
                # whole-step overhead; a small op's tens of percent stand regardless.
                ours += (f" — measured on two GPUs (eager {e_gpu[:12]}, graph {g_gpu[:12]}), "
                         "so the whole-step figure carries their difference too")
            agg, per_op, names = small_op_overhead(gp, ep)
            if agg is not None:
                lo = min(v for _, v in per_op)
                hi = max(v for _, v in per_op)
                ours += (f"; small ops (<{SMALL_OP_US:g} µs per launch: {', '.join(names)}): "
                         f"{agg:+.1%} together, {lo:+.0%} to {hi:+.0%} each")
                judged = agg
            else:
                ours += "; per-op times not in both files, judged on the whole step"
                judged = step
            if 0.10 <= judged <= 0.30:
                verdict = HOLDS
            elif judged > 0.30:
                verdict = PARTLY  # overhead real, larger than the article's range
                ours += " — larger than the article's range"
            elif judged >= 0.05:
                verdict = PARTLY
            else:
                verdict = FAILS
            rows.append(row("e", label, article, ours, verdict, source))
    if not found:
        rows.append(missing_row("e", "any", article,
                                os.path.join(results_dir, "<gpu>",
                                             f"decode_<model>_{PRECISION}_ctx<N>_b1_eager.json")))
    return rows


# ---------------------------------------------------------------------------------- report

SECTIONS = (
    ("a", "Single-request 70B on H100 is bounded near 24 tok/s",
     "holds: the batch-1 bound is within 10% of 24 tok/s and the measured tokens/s does not "
     "exceed it (2% slack); partly: bound within 25% (or no measurement to set beside it); "
     "does not hold: otherwise. Source: `decode_70b_bf16_ctx2048.json` of each H100."),
    ("b", "Batching amortizes the weight reads",
     "holds: while the roofline says memory-bound, tokens/s grows at least ×1.7 per batch "
     "doubling (geometric mean, ideal ×2); partly: at least ×1.4; does not hold: below. "
     f"'Saturates' = the first batch whose next doubling gains less than ×{SATURATED_GAIN}."),
    ("c", "\"50 tok/s on 70B is ~0.7% MFU\"",
     "MFU at 50 tok/s interpolated in log-log between the measured points around it "
     "(`decode_70b_bf16_ctx2048.json`). holds: within 25% of 0.7%; partly: within 50%; "
     "does not hold: otherwise."),
    ("d", "nvidia-smi shows high utilization while MFU is low",
     "batch 1 of each CUDA-graph decode file. holds: `smi_util_pct` ≥ 80% and MFU < 5%; "
     "partly: ≥ 50% and < 20%; does not hold: otherwise; not measured: the file has no "
     "`smi_util_pct` (runs before the truth columns)."),
    ("e", "Launch overhead is 10–30% for small ops (eager launches vs one CUDA graph)",
     f"overhead = (eager − graph) / eager at batch 1. Small ops: each op kind under "
     f"{SMALL_OP_US:g} µs per launch in the graph run (each op kind is timed alone, "
     f"all its launches). holds: small-op overhead 10–30%; partly: above 30% (the overhead is "
     f"real but larger than stated) or 5–10%; does not hold: under 5%. Without per-op times "
     f"the whole step is judged. The whole-step figure is shown beside it: launches are "
     f"asynchronous, so in a full eager step a small op's launch can overlap the kernels "
     f"queued before it, and the step loses less than its small ops do when timed alone."),
)


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(rows, results_dir):
    out = [
        "# The article's claims, checked against truthput results",
        "",
        "\"Why Your GPU Utilization Numbers Lie\": each claim below is set beside what the "
        f"committed result files under `{show_path(results_dir)}/` say. Generated by "
        "`scripts/claims.py` (run `scripts/make_report.sh`); do not edit by hand.",
        "",
        "| claim | holds | partly | does not hold | not measured |",
        "|---|---:|---:|---:|---:|",
    ]
    for cid, title, _how in SECTIONS:
        rs = [r for r in rows if r["claim"] == cid]
        counts = [sum(r["verdict"] == v for r in rs)
                  for v in (HOLDS, PARTLY, FAILS, NOT_MEASURED)]
        out.append(f"| ({cid}) {title} | " + " | ".join(str(c) for c in counts) + " |")
    out.append("")
    for cid, title, how in SECTIONS:
        out += [f"## ({cid}) {title}", "",
                "| GPU / run | article | ours | verdict | from |",
                "|---|---|---|---|---|"]
        for r in (r for r in rows if r["claim"] == cid):
            out.append(f"| {_cell(r['gpu'])} | {_cell(r['article'])} | {_cell(r['ours'])} | "
                       f"**{r['verdict']}** | {_cell(r['file'])} |")
        out += ["", f"Verdict rule: {how}", ""]
    return "\n".join(out)


def check_all(results_dir, index=None):
    if index is None:
        index = discover(results_dir)
    loader = Loader()
    rows = []
    for fn in (claim_a, claim_b, claim_c, claim_d, claim_e):
        rows += fn(results_dir, index, loader)
    return rows


def fail(message):
    print(f"claims: {message}", file=sys.stderr)
    return EXIT_BAD_PATH


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results_dir", metavar="RESULTS_DIR")
    # The table goes beside the files it was made from, not to a path of the working folder's,
    # where another RESULTS_DIR's table would replace the committed one.
    ap.add_argument("--out", metavar="FILE", help="default: RESULTS_DIR/CLAIMS.md")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing FILE")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = os.path.join(args.results_dir, "CLAIMS.md")
    # A mistyped RESULTS_DIR would otherwise give a table of "not measured" rows over the real
    # one, with exit status 0: refuse it before anything is written.
    results_dir = args.results_dir
    if not os.path.exists(results_dir):
        return fail(f"{results_dir}: no such folder")
    if not os.path.isdir(results_dir):
        return fail(f"{results_dir}: not a folder")
    try:
        index = discover(results_dir)
    except OSError as e:
        return fail(f"{e.filename or results_dir}: cannot read ({e.strerror or e})")
    if not index:
        return fail(f"{results_dir}: holds no result files "
                    f"(looked for <gpu>/decode_*.json and <gpu>/prefill_*.json)")
    inputs = [p for files in index.values() for p in files.values()]
    why = tr.output_refusal(args.out, inputs, args.overwrite)
    if why:
        return fail(why)
    rows = check_all(results_dir, index)
    text = render(rows, results_dir)
    try:
        tr.write_text(args.out, text)
    except OSError as e:
        return fail(tr.cannot_write(e, args.out))
    for r in rows:
        print(f"({r['claim']}) {r['gpu']}: {r['verdict']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
