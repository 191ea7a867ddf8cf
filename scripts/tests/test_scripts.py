"""Tests of the report scripts (plot.py, compare.py, claims.py, make_report.sh).

Run: /usr/bin/python3 -m pytest -q scripts/tests

The result files under data/ are small synthetic RunResults written for these tests:
  h100-sxm/decode_70b_bf16_ctx2048.json          batches 1, 16, 1024 (memory, memory, compute);
                                                 20 / 300 / 4400 tok/s; batch 1: smi 100%,
                                                 MFU 0.283%; per-op times at batches 1 and 16
  h100-sxm/decode_70b_bf16_ctx2048_b1_eager.json batch 1, eager: step 53 ms vs 50 ms; small
                                                 ops 0.32 + 0.12 ms vs 0.24 + 0.09 ms (25%)
  h200/decode_70b_bf16_ctx2048.json              same batches, 28 / 420 / 4500 tok/s; no truth
                                                 columns; some uint64 fields as strings
"""

import copy
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.dirname(HERE)
REPO = os.path.dirname(SCRIPTS)
DATA = os.path.join(HERE, "data")
H100 = os.path.join(DATA, "h100-sxm", "decode_70b_bf16_ctx2048.json")
H100_EAGER = os.path.join(DATA, "h100-sxm", "decode_70b_bf16_ctx2048_b1_eager.json")
H200 = os.path.join(DATA, "h200", "decode_70b_bf16_ctx2048.json")

sys.path.insert(0, SCRIPTS)
import claims  # noqa: E402
import compare  # noqa: E402
import plot  # noqa: E402
import truthput_results as tr  # noqa: E402


def run_script(name, *args, cwd=None):
    return subprocess.run([sys.executable, os.path.join(SCRIPTS, name), *args],
                          capture_output=True, text=True, cwd=cwd or REPO, timeout=120)


def assert_one_line_refusal(r, *words):
    """Exit status 2, one line on stderr holding each of words, no traceback."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def write_variant(tmp_path, src, name, change):
    with open(src, encoding="utf-8") as f:
        raw = json.load(f)
    change(raw)
    path = tmp_path / name
    path.write_text(json.dumps(raw), encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------------ truthput_results


def test_load_fills_absent_fields_and_parses_string_numbers():
    run = tr.load(H200)
    p1 = tr.point_at(run, 1)
    assert p1["reps"] == 20                 # "20" in the file (uint64 as a string)
    assert run["predicted_ridge_batch"] == 650
    assert p1["smi_util_pct"] is None       # absent optional: None, never 0
    assert p1["sm_active_pct"] is None
    assert p1["ops"] == []
    assert run["unavailable"] == []
    assert run["config"]["seq_lens"] == []
    assert [p["batch"] for p in run["points"]] == [1, 16, 1024]
    assert p1["step_ms_samples"] == []      # files before 2026-11-29 have none


def test_load_keeps_the_step_samples_in_their_order(tmp_path):
    path = write_variant(tmp_path, H200, "samples.json", lambda d: d["points"][0].update(
        step_ms_samples=[36.25, "36.5", 36.125]))
    assert tr.point_at(tr.load(path), 1)["step_ms_samples"] == [36.25, 36.5, 36.125]


def test_load_reads_an_absent_price_as_none_and_a_zero_price_as_zero(tmp_path):
    priced = write_variant(tmp_path, H200, "priced.json",
                           lambda d: d["config"].update(usd_per_gpu_hour=3.79))
    assert tr.load(priced)["config"]["usd_per_gpu_hour"] == 3.79
    unpriced = write_variant(tmp_path, H200, "unpriced.json",
                             lambda d: d["config"].pop("usd_per_gpu_hour", None))
    assert tr.load(unpriced)["config"]["usd_per_gpu_hour"] is None
    free = write_variant(tmp_path, H200, "free.json",
                         lambda d: d["config"].update(usd_per_gpu_hour=0))
    assert tr.load(free)["config"]["usd_per_gpu_hour"] == 0


def test_labels():
    a, b, e = tr.load(H100), tr.load(H200), tr.load(H100_EAGER)
    assert tr.label(a) == "Llama-3.1-70B, NVIDIA H100 80GB HBM3, ctx 2048, bf16"
    assert tr.precision(b) == "bf16"
    assert tr.gpu_name(b) == "NVIDIA H200"
    assert tr.label(e).endswith(", eager")
    assert tr.peak_tflops(a) == 989.4 and tr.bandwidth_gbps(b) == 4800
    assert tr.parse_result_name("decode_70b_bf16_ctx2048_b1_eager.json") == {
        "phase": "decode", "model": "70b", "precision": "bf16", "context": 2048, "eager": True}
    assert tr.parse_result_name("notes.json") is None


def test_load_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(tr.ResultError) as e:
        tr.load(str(bad))
    assert "not valid JSON" in str(e.value)
    with pytest.raises(tr.ResultError):
        tr.load(str(tmp_path / "missing.json"))


@pytest.mark.parametrize("script", ["compare.py", "plot.py"])
def test_points_that_are_not_objects_are_a_one_line_error(tmp_path, script):
    bad = write_variant(tmp_path, H200, "bad.json", lambda d: d.update(points=[1, 2]))
    args = [H100, bad] if script == "compare.py" else [bad, "--out", str(tmp_path / "p")]
    r = run_script(script, *args)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "bad.json" in lines[0] and "not a truthput RunResult" in lines[0]
    with pytest.raises(tr.NotARunResult):
        tr.normalize({"config": {}, "points": [{"batch": 1, "ops": 5}]})


@pytest.mark.parametrize("change, field", [
    (lambda d: d["points"][0].update(batch=0), "points[0].batch"),
    (lambda d: d["points"][0].pop("batch"), "points[0].batch"),
    (lambda d: d["points"][0].update(batch="abc"), "points[0].batch"),
    (lambda d: d["points"][0].update(batch=-1), "points[0].batch"),
    (lambda d: d["points"][0].update(batch="NaN"), "points[0].batch"),
    (lambda d: d["points"][1].update(batch=d["points"][0]["batch"]), "appears twice"),
    (lambda d: d["points"][0].update(mfu="abc"), "points[0].mfu"),
    (lambda d: d["points"][0].update(bound_ms="Infinity"), "points[0].bound_ms"),
    (lambda d: d.update(unavailable=True), "unavailable"),
    (lambda d: d["config"].update(notes=[3]), "config.notes"),
    (lambda d: d["points"][0].update(step_ms_samples=[1.5, "NaN"]), "points[0].step_ms_samples"),
    (lambda d: d["points"][0].update(step_ms_samples=2.5), "points[0].step_ms_samples"),
    (lambda d: d["points"][0].update(step_ms_samples=[1.5, None]), "points[0].step_ms_samples[1]"),
    (lambda d: d["points"][0].update(step_ms_samples=[-1.5]), "points[0].step_ms_samples[0]"),
])
@pytest.mark.parametrize("script", ["compare.py", "plot.py"])
def test_fields_of_wrong_type_or_range_are_a_one_line_refusal(tmp_path, change, field, script):
    bad = write_variant(tmp_path, H200, "bad.json", change)
    args = [H100, bad, "--no-chart"] if script == "compare.py" else [bad, "--out", str(tmp_path)]
    r = run_script(script, *args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "bad.json" in lines[0] and field in lines[0], lines[0]


def test_claims_non_finite_mfu_is_not_measured(tmp_path):
    given = tmp_path / "runs"
    shutil.copytree(DATA, given)
    path = given / "h100-sxm" / "decode_70b_bf16_ctx2048.json"
    write_variant(given / "h100-sxm", path, path.name,
                  lambda d: [p.update(mfu=v) for p, v in zip(d["points"], ["NaN", "-Infinity",
                                                                           "NaN"])])
    rows = claims.check_all(str(given))
    for claim in ("c", "d"):
        h100 = [r for r in rows if r["claim"] == claim and r["gpu"].startswith("h100-sxm")]
        assert h100 and all(r["verdict"] == "not measured" for r in h100), h100


def test_nan_zero_or_negative_tokens_per_s_is_not_measured():
    for tps in ("NaN", 0, -3.0, "-Infinity"):
        p = tr.normalize({"points": [{"batch": 1, "tokens_per_s": tps}]})["points"][0]
        assert not tr.measured(p), tps
    p = tr.normalize({"points": [{"batch": 1, "tokens_per_s": "28.5"}]})["points"][0]
    assert tr.measured(p)


# ----------------------------------------------------------------------------------- plot


def test_plot_writes_png_and_svg(tmp_path):
    out = tmp_path / "plots"
    r = run_script("plot.py", H100, H100_EAGER, H200, "--out", str(out))
    assert r.returncode == 0, r.stderr
    names = set(os.listdir(out))
    for stem in ("h100-sxm_decode_70b_bf16_ctx2048", "decode_70b_bf16_ctx2048_b1_eager",
                 "h200_decode_70b_bf16_ctx2048"):
        for chart in ("throughput", "utilization", "op_share", "roofline"):
            for ext in ("png", "svg"):
                assert f"{stem}_{chart}.{ext}" in names
    assert "combined_decode_llama-3.1-70b_bf16_throughput.png" in names
    assert "combined_decode_llama-3.1-70b_bf16_roofline.svg" in names
    # 3 runs (the two with one file name led by their folder's name) -> 3 * 4 * 2 + 2 * 2
    assert len(names) == 28
    png = (out / "h100-sxm_decode_70b_bf16_ctx2048_roofline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    svg = (out / "h200_decode_70b_bf16_ctx2048_utilization.svg").read_text(encoding="utf-8")
    assert "<svg" in svg
    # The H200 file has no truth columns: its utilization chart names them as missing.
    assert "not measured in this file" in svg and "smi_util_pct" in svg


def test_plot_same_file_name_from_two_folders_does_not_overwrite(tmp_path):
    out = tmp_path / "plots"
    r = run_script("plot.py", "--formats", "png", H100, H200, H100_EAGER, "--out", str(out))
    assert r.returncode == 0, r.stderr
    names = set(os.listdir(out))
    written = r.stdout.split()
    assert len(written) == len(set(written)) == len(names)        # every file named was kept
    for chart in ("throughput", "utilization", "op_share", "roofline"):
        assert f"h100-sxm_decode_70b_bf16_ctx2048_{chart}.png" in names
        assert f"h200_decode_70b_bf16_ctx2048_{chart}.png" in names
        assert f"decode_70b_bf16_ctx2048_b1_eager_{chart}.png" in names   # no collision: as is
    assert len(names) == 3 * 4 + 2
    assert "replaced" not in r.stderr
    # Plotted again into the same folder: the same files, replaced, and named on stderr.
    again = run_script("plot.py", "--formats", "png", H100, H200, "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert set(os.listdir(out)) == names
    replaced = [line for line in again.stderr.splitlines() if "replaced" in line]
    assert len(replaced) == 1 and replaced[0].startswith("plot: replaced 10 existing file(s)")
    assert "h200_decode_70b_bf16_ctx2048_roofline.png" in replaced[0]
    # One folder (as make_report.sh plots): the names are the file stems.
    assert plot.chart_stems([tr.load(H100), tr.load(H100_EAGER)]) == [
        "decode_70b_bf16_ctx2048", "decode_70b_bf16_ctx2048_b1_eager"]


def test_plot_refuses_runs_it_cannot_name_apart(tmp_path):
    out = tmp_path / "plots"
    r = run_script("plot.py", H200, H200, "--out", str(out))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "same chart names" in lines[0], r.stderr
    assert not out.exists()                                       # nothing written


def test_plot_refuses_unreadable_file(tmp_path):
    r = run_script("plot.py", str(tmp_path / "nope.json"), "--out", str(tmp_path))
    assert r.returncode == 1
    assert "cannot read" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("formats, says", [("xyz", "xyz not a format matplotlib writes"),
                                           ("png,", None), ("", "empty"), (",", "empty")])
def test_plot_formats_are_checked_before_anything_is_written(tmp_path, formats, says):
    out = tmp_path / "plots"
    r = run_script("plot.py", f"--formats={formats}", H200, "--out", str(out))
    if says is None:                                  # a trailing comma is no format
        assert r.returncode == 0, r.stderr
        assert sorted(os.listdir(out)) and all(f.endswith(".png") for f in os.listdir(out))
        return
    assert_one_line_refusal(r, "plot: ", says, "it writes ", "png")
    assert not out.exists()


def test_deeply_nested_json_is_a_one_line_refusal(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000, encoding="utf-8")
    with pytest.raises(tr.ResultError, match="nested too deeply"):
        tr.load(str(deep))
    r = run_script("compare.py", H100, str(deep))
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "nested too deeply" in r.stderr


def test_plot_unwritable_out_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("keep\n", encoding="utf-8")
    for out in (blocker, blocker / "plots"):
        r = run_script("plot.py", "--formats", "png", H200, "--out", str(out))
        assert_one_line_refusal(r, "plot: ", "cannot write", "Not a directory")
        assert r.stdout == ""
    assert blocker.read_text(encoding="utf-8") == "keep\n"
    # A chart name taken by a folder: refused when that chart is saved.
    out = tmp_path / "plots"
    (out / "decode_70b_bf16_ctx2048_throughput.png").mkdir(parents=True)
    r = run_script("plot.py", "--formats", "png", H200, "--out", str(out))
    assert_one_line_refusal(r, "cannot write", "decode_70b_bf16_ctx2048_throughput.png",
                            "Is a directory")


# What the charts draw: each *_figure is looked at before saving; the expected numbers are read
# from the JSON file itself, not through truthput_results.


def raw_points(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)["points"]


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def bar_heights(ax):
    """Each bar series' heights, by label."""
    return {c.get_label(): [r.get_height() for r in c] for c in ax.containers}


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


@pytest.fixture
def figures():
    """Closes every figure a test made, passed or failed."""
    made = []
    yield made.append
    for fig in made:
        plot.plt.close(fig)


def test_plot_throughput_draws_measured_and_bound_of_the_file(figures):
    pts = raw_points(H200)
    fig = plot.throughput_figure([tr.load(H200)])
    figures(fig)
    ax = fig.axes[0]
    lines = lines_by_label(ax)
    measured = lines["measured (step p50)"]
    bound = lines["roofline bound (bound_tokens_per_s)"]
    assert list(measured.get_xdata()) == [p["batch"] for p in pts] == [1, 16, 1024]
    assert list(measured.get_ydata()) == [p["tokens_per_s"] for p in pts] == [28, 420, 4500]
    assert list(bound.get_xdata()) == [1, 16, 1024]
    assert list(bound.get_ydata()) == pytest.approx([p["bound_tokens_per_s"] for p in pts])
    assert legend_texts(ax) == ["roofline bound (bound_tokens_per_s)", "measured (step p50)"]
    assert ax.get_xlabel() == "batch (sequences decoded together)"
    assert ax.get_ylabel() == "throughput (tokens/s)"
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    # The file's predicted ridge ("650"): a vertical line there, and its note.
    assert any(list(line.get_xdata()) == [650, 650] for line in ax.get_lines())
    assert any("predicted ridge\nbatch 650" in t.get_text() for t in ax.texts)


def test_plot_throughput_of_prefill_has_a_curve_per_prompt_length(tmp_path, figures):
    def prefill(d):
        d["config"]["phase"] = "prefill"
        for p, seq in zip(d["points"], (128, 128, 512)):
            p["seq_len"] = seq
    path = write_variant(tmp_path, H100, "prefill.json", prefill)
    fig = plot.throughput_figure([tr.load(path)])
    figures(fig)
    ax = fig.axes[0]
    lines = lines_by_label(ax)
    assert list(lines["seq 128: measured (step p50)"].get_ydata()) == [20, 300]
    assert list(lines["seq 512: measured (step p50)"].get_ydata()) == [4400]
    assert ax.get_xlabel() == "batch (prompts processed together)"


def test_plot_utilization_and_roofline_of_prefill_draw_a_line_per_prompt_length(tmp_path,
                                                                                  figures):
    """A line through batch 1 at one prompt and batch 16 at another would draw a trend across
    batches that is a change of prompt: each prompt length is its own line."""
    def prefill(d):
        d["config"]["phase"] = "prefill"
        for p, seq in zip(d["points"], (128, 512, 128)):
            p["seq_len"] = seq
    run = tr.load(write_variant(tmp_path, H100, "prefill.json", prefill))
    pts = raw_points(H100)
    fig = plot.utilization_figure(run)
    figures(fig)
    mfu = {line.get_label(): line for line in fig.axes[0].get_lines()
           if line.get_label().startswith("MFU")}
    assert sorted(mfu) == ["MFU (FLOPs / time / peak) — batch 1, seq 128: 0.28%",
                           "MFU (FLOPs / time / peak) — batch 16, seq 512: 4.2%"]
    seq128 = mfu["MFU (FLOPs / time / peak) — batch 1, seq 128: 0.28%"]
    assert list(seq128.get_xdata()) == [1, 1024]
    assert list(seq128.get_ydata()) == pytest.approx([pts[0]["mfu"] * 100, pts[2]["mfu"] * 100])
    assert seq128.get_linestyle() != mfu["MFU (FLOPs / time / peak) — batch 16, seq 512: 4.2%"
                                         ].get_linestyle()

    fig = plot.roofline_figure([run])
    figures(fig)
    measured = [line for line in fig.axes[0].get_lines() if line.get_marker() == "o"]
    assert sorted(tuple(line.get_ydata()) for line in measured) == [(2.8, 616), (42,)]
    assert [line.get_label() for line in measured].count("measured (model FLOPs / step p50)") == 1


def test_plot_combined_throughput_overlays_each_runs_values(figures):
    runs = [tr.load(H100), tr.load(H200)]
    fig = plot.throughput_figure(runs)
    figures(fig)
    ax = fig.axes[0]
    measured = [tuple(line.get_ydata()) for line in ax.get_lines() if line.get_marker() == "o"]
    assert measured == [(20, 300, 4400), (28, 420, 4500)]
    names = plot.run_names(runs)
    assert names[0] != names[1]
    assert legend_texts(ax) == names + ["measured (step p50)", "roofline bound"]


def test_plot_utilization_draws_each_truth_column_in_percent(figures):
    pts = raw_points(H100)
    fig = plot.utilization_figure(tr.load(H100))
    figures(fig)
    ax = fig.axes[0]
    by_series = {}
    for line in ax.get_lines():
        series = line.get_label().split(" — ")[0]
        by_series[series] = line
    for label, field, scale in [("nvidia-smi utilization", "smi_util_pct", 1),
                                ("SM active (CUPTI)", "sm_active_pct", 1),
                                ("tensor active (CUPTI)", "tensor_active_pct", 1),
                                ("MBU (bytes / time / peak BW)", "mbu", 100),
                                ("MFU (FLOPs / time / peak)", "mfu", 100)]:
        line = by_series[label]
        assert list(line.get_xdata()) == [1, 16, 1024], label
        assert list(line.get_ydata()) == pytest.approx([p[field] * scale for p in pts]), label
    assert "nvidia-smi utilization — batch 1: 100%" in legend_texts(ax)
    assert "MFU (FLOPs / time / peak) — batch 1: 0.28%" in legend_texts(ax)
    assert ax.get_ylim() == (0, 105)


def test_plot_utilization_leaves_out_columns_the_file_lacks(figures):
    fig = plot.utilization_figure(tr.load(H200))       # no truth columns
    figures(fig)
    ax = fig.axes[0]
    drawn = [line.get_label().split(" — ")[0] for line in ax.get_lines()]
    assert drawn == ["MBU (bytes / time / peak BW)", "MFU (FLOPs / time / peak)"]
    notes = [t.get_text() for t in fig.texts]
    assert ("not measured in this file: smi_util_pct, sm_active_pct, tensor_active_pct"
            in notes)


def test_plot_op_share_stacks_each_ops_share(figures):
    pts = raw_points(H100)[:2]                          # batch 1024 has no per-op times
    share = {n: [next(o["share"] * 100 for o in p["ops"] if o["name"] == n) for p in pts]
             for n in ("gate_up_proj", "down_proj", "attn_norm", "attn_residual")}
    fig = plot.op_share_figure(tr.load(H100))
    figures(fig)
    ax = fig.axes[0]
    bars = bar_heights(ax)
    # Under 3% at every batch: attn_norm and attn_residual are one "other" bar.
    assert list(bars) == ["gate_up_proj", "down_proj", "other (attn_norm, attn_residual)",
                          "not attributed (step − Σ ops timed alone)"]
    assert bars["gate_up_proj"] == pytest.approx(share["gate_up_proj"])
    assert bars["down_proj"] == pytest.approx(share["down_proj"])
    assert bars["other (attn_norm, attn_residual)"] == pytest.approx(
        [a + b for a, b in zip(share["attn_norm"], share["attn_residual"])])
    assert [sum(h) for h in zip(*bars.values())] == pytest.approx([100, 100])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "16"]
    assert ax.get_xlabel() == "batch"


def test_plot_roofline_draws_points_under_the_datasheets_roof(figures):
    pts = raw_points(H100)
    fig = plot.roofline_figure([tr.load(H100)])
    figures(fig)
    ax = fig.axes[0]
    lines = lines_by_label(ax)
    measured = lines["measured (model FLOPs / step p50)"]
    assert list(measured.get_xdata()) == [p["intensity"] for p in pts]
    assert list(measured.get_ydata()) == [p["achieved_tflops"] for p in pts] == [2.8, 42, 616]
    roof = lines["roof h100-sxm (989.4 TFLOP/s bf16, 3350 GB/s)"]
    assert max(roof.get_ydata()) == 989.4
    # Below the ridge the roof is the bandwidth: intensity x 3350 GB/s.
    x0, y0 = roof.get_xdata()[0], roof.get_ydata()[0]
    assert y0 == pytest.approx(x0 * 3.35)
    bound = ax.collections[0]
    assert bound.get_label() == "roofline bound of the step"
    assert [tuple(xy) for xy in bound.get_offsets()] == pytest.approx(
        [(p["intensity"], p["model_gflops"] / p["bound_ms"]) for p in pts])
    assert ax.get_xlabel() == "arithmetic intensity (FLOP per byte of DRAM traffic)"
    assert ax.get_ylabel() == "achieved (TFLOP/s)"


def test_plot_throughput_of_a_prediction_draws_only_the_bound_and_says_so(tmp_path, figures):
    """A prediction (no tokens/s) is never drawn as a measurement, a point without a bound (0)
    is left off the bound line, and the chart says there was nothing measured."""
    def predict(d):
        d["config"]["predict_only"] = True
        for p in d["points"]:
            for k in ("tokens_per_s", "step_ms_p50", "step_ms_p99", "mbu", "mfu"):
                p.pop(k, None)
        d["points"][2]["bound_tokens_per_s"] = 0
    fig = plot.throughput_figure([tr.load(write_variant(tmp_path, H200, "pred.json", predict))])
    figures(fig)
    ax = fig.axes[0]
    lines = lines_by_label(ax)
    assert "measured (step p50)" not in lines
    bound = lines["roofline bound (bound_tokens_per_s)"]
    assert list(bound.get_xdata()) == [1, 16]
    assert [t.get_text() for t in fig.texts] == ["no measured points (prediction only)"]
    # A measured file has no such note.
    fig = plot.throughput_figure([tr.load(H200)])
    figures(fig)
    assert not any("prediction only" in t.get_text() for t in fig.texts)


def test_plot_throughput_notes_the_measured_knee_apart_from_the_predicted_ridge(tmp_path,
                                                                                  figures):
    path = write_variant(tmp_path, H200, "knee.json",
                         lambda d: d.update(measured_knee_batch=16))
    fig = plot.throughput_figure([tr.load(path)])
    figures(fig)
    assert [t.get_text() for t in fig.texts] == ["measured knee at batch 16"]
    ax = fig.axes[0]
    assert any(list(line.get_xdata()) == [650, 650] for line in ax.get_lines())   # the ridge


def test_plot_utilization_names_what_the_file_says_is_unavailable(tmp_path, figures):
    long = "gpm: " + "x" * 150
    path = write_variant(tmp_path, H200, "unavail.json", lambda d: d.update(
        unavailable=["cupti: no permission", long, "nvml: no GPM", "fourth"]))
    fig = plot.utilization_figure(tr.load(path))
    figures(fig)
    notes = [t.get_text() for t in fig.texts]
    assert len(notes) == 1
    parts = notes[0].split("; ")
    assert parts == ["not measured in this file: smi_util_pct, sm_active_pct, tensor_active_pct",
                     "cupti: no permission", long[:107] + "...", "nvml: no GPM"]


def test_plot_roofline_marks_the_datasheets_ridge_even_beyond_the_points(tmp_path, figures):
    """Points only at low intensity: the chart still reaches the ridge (989.4 TFLOP/s over
    3350 GB/s = 295 FLOP/byte), where the roof turns flat, and names it."""
    path = write_variant(tmp_path, H100, "low.json", lambda d: d["points"].pop())
    fig = plot.roofline_figure([tr.load(path)])
    figures(fig)
    ax = fig.axes[0]
    ridge = 989.4 * 1000 / 3350
    assert ax.get_xlim()[1] >= ridge * 3 - 1e-6
    assert "h100-sxm ridge 295 FLOP/B" in [t.get_text() for t in ax.texts]
    assert any(list(line.get_xdata()) == pytest.approx([ridge, ridge])
               for line in ax.get_lines())
    roof = lines_by_label(ax)["roof h100-sxm (989.4 TFLOP/s bf16, 3350 GB/s)"]
    assert max(roof.get_ydata()) == 989.4


def test_plot_roofline_leaves_out_skipped_points_and_tags_each_measured_one(tmp_path, figures):
    pts = raw_points(H100)
    path = write_variant(tmp_path, H100, "skip.json",
                         lambda d: d["points"][1].update(skipped=True, skip_reason="oom"))
    fig = plot.roofline_figure([tr.load(path)])
    figures(fig)
    ax = fig.axes[0]
    assert [tuple(xy) for xy in ax.collections[0].get_offsets()] == pytest.approx(
        [(p["intensity"], p["model_gflops"] / p["bound_ms"]) for p in (pts[0], pts[2])])
    assert list(lines_by_label(ax)["measured (model FLOPs / step p50)"].get_xdata()) == [
        pts[0]["intensity"], pts[2]["intensity"]]
    assert [t.get_text() for t in ax.texts if t.get_text().startswith("b")] == ["b1", "b1024"]

    def prefill(d):
        d["config"]["phase"] = "prefill"
        for p, seq in zip(d["points"], (128, 512, 128)):
            p["seq_len"] = seq
    fig = plot.roofline_figure([tr.load(write_variant(tmp_path, H100, "prefill.json", prefill))])
    figures(fig)
    tags = [t.get_text() for t in fig.axes[0].texts if t.get_text().startswith("b")]
    assert sorted(tags) == ["b1/s128", "b1024/s128", "b16/s512"]


def test_plot_combined_roofline_draws_one_roof_per_datasheet(figures):
    def roofs(runs):
        fig = plot.roofline_figure(runs)
        figures(fig)
        return [line.get_label() for line in fig.axes[0].get_lines()
                if line.get_label().startswith("roof ")]
    assert roofs([tr.load(H100), tr.load(H100_EAGER)]) == [
        "roof h100-sxm (989.4 TFLOP/s bf16, 3350 GB/s)"]
    assert roofs([tr.load(H100), tr.load(H200)]) == [
        "roof h100-sxm (989.4 TFLOP/s bf16, 3350 GB/s)",
        "roof h200 (989.4 TFLOP/s bf16, 4800 GB/s)"]


def test_plot_utilization_draws_only_measured_points(tmp_path, figures):
    """Batch 1024's tokens/s is 0 (no measurement): its columns are not drawn, though present."""
    path = write_variant(tmp_path, H100, "unmeasured.json",
                         lambda d: d["points"][2].update(tokens_per_s=0))
    fig = plot.utilization_figure(tr.load(path))
    figures(fig)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 5
    assert all(list(line.get_xdata()) == [1, 16] for line in lines)


def op_share_bars(figures, run):
    fig = plot.op_share_figure(run)
    figures(fig)
    return bar_heights(fig.axes[0])


def test_plot_op_share_groups_as_other_only_ops_small_at_every_batch(tmp_path, figures):
    """attn_norm reaches 5% at batch 16: its own bar, though under 3% at batch 1."""
    def change(d):
        next(o for o in d["points"][1]["ops"] if o["name"] == "attn_norm")["share"] = 0.05
    bars = op_share_bars(figures, tr.load(write_variant(tmp_path, H100, "norm.json", change)))
    assert list(bars) == ["attn_norm", "gate_up_proj", "down_proj", "other (attn_residual)",
                          "not attributed (step − Σ ops timed alone)"]
    assert bars["attn_norm"] == pytest.approx([0.48, 5.0])


def test_plot_op_share_leaves_out_ops_without_a_share_and_sums_ops_of_one_name(tmp_path,
                                                                                figures):
    """An op timed without a share (share absent) is not drawn, the chart is still made; an op
    listed twice in one point is one bar of both shares; more than four small ops are counted,
    not named."""
    def change(d):
        ops = d["points"][0]["ops"]
        ops.append({"name": "lm_head", "kind": "gemm", "count": 1, "gbytes": 2.1,
                    "gflops": 2.1, "bound": "memory", "bound_ms": 0.6})        # no share
        ops.append(dict(ops[3], share=0.04))                       # down_proj again: 0.36 + 0.04
        for k, name in enumerate(("rope", "softmax", "embed")):
            ops.append({"name": name, "count": 1, "gbytes": 0, "gflops": 0, "bound_ms": 0,
                        "share": 0.001 * (k + 1)})
    bars = op_share_bars(figures, tr.load(write_variant(tmp_path, H100, "ops.json", change)))
    assert "lm_head" not in " ".join(bars)
    assert bars["down_proj"] == pytest.approx([40.0, 34.687])
    small = [n for n in bars if n.startswith("other")]
    assert small == ["other (5 small ops)"]
    assert bars["other (5 small ops)"] == pytest.approx(
        [0.48 + 0.18 + 0.6, 0.562 + 0.225])


def test_plot_op_share_stacks_unattributed_time_above_half_a_percent(tmp_path, figures):
    """The ops add up to 96.66% and 97% of the step: the rest (3.34%, 3%) is drawn as not
    attributed, so each stack reaches 100%; where they add up to 99.8%, no such bar."""
    def share_of(d, batch_index, name, share):
        next(o for o in d["points"][batch_index]["ops"] if o["name"] == name)["share"] = share
    fill = write_variant(tmp_path, H100, "fill.json", lambda d: share_of(d, 1, "gate_up_proj",
                                                                         0.61526))
    bars = op_share_bars(figures, tr.load(fill))
    rest = bars["not attributed (step − Σ ops timed alone)"]
    assert rest == pytest.approx([3.34, 3.0])
    assert [sum(h) for h in zip(*bars.values())] == pytest.approx([100, 100])

    def full(d):
        share_of(d, 0, "gate_up_proj", 0.63140)
        share_of(d, 1, "gate_up_proj", 0.64326)
    bars = op_share_bars(figures, tr.load(write_variant(tmp_path, H100, "full.json", full)))
    assert list(bars) == ["gate_up_proj", "down_proj", "other (attn_norm, attn_residual)"]


def with_step_samples(d):
    """Samples on batches 1 and 16 of the H200 file (medians 36 and 38 ms); batch 1024 none."""
    d["points"][0]["step_ms_samples"] = [36.0, 36.0, 39.6, 32.4, 36.0]       # +0 +0 +10 -10 +0
    d["points"][0]["step_ms_p99"] = 37.8                                    # +5%
    d["points"][1]["step_ms_samples"] = [38.0, 38.38, 37.62]                # +0 +1 -1
    d["points"][1].pop("step_ms_p99")                                       # under 100 steps


def test_step_deviations_are_percent_from_the_samples_median():
    devs, p99 = plot.step_deviations([10, 10, 11, 9, 10], p99=10.5)
    assert devs == pytest.approx([0, 0, 10, -10, 0]) and p99 == pytest.approx(5)
    devs, p99 = plot.step_deviations([2, 4, 8, 1], p99=None)         # median 3 (of 2 and 4)
    assert devs == pytest.approx([-100 / 3, 100 / 3, 500 / 3, -200 / 3]) and p99 is None
    assert plot.step_deviations([], p99=3.0) == ([], None)
    assert plot.step_deviations([0.0, 0.0], p99=1.0) == ([], None)   # no median to divide by
    point = {"batch": 64, "seq_len": 512, "step_ms_samples": [10, 10, 11, 9, 10],
             "step_ms_p99": 10.13}
    label, devs = plot.step_series(point)
    assert label == "batch 64: p99 +1.3%" and devs == pytest.approx([0, 0, 10, -10, 0])
    assert plot.step_series(point, prefill=True)[0] == "batch 64, seq 512: p99 +1.3%"
    assert plot.step_series(dict(point, step_ms_p99=None))[0] == "batch 64: p99 n/a"
    assert plot.step_series(dict(point, step_ms_p99=9.9))[0] == "batch 64: p99 -1.0%"


def test_plot_steps_draws_each_measured_points_samples_against_its_median(tmp_path, figures):
    def change(d):
        with_step_samples(d)
        d["points"][2]["step_ms_samples"] = [1.0, 2.0]
        d["points"][2]["skipped"] = True                          # not measured: not drawn
    fig = plot.steps_figure(tr.load(write_variant(tmp_path, H200, "steps.json", change)))
    figures(fig)
    ax = fig.axes[0]
    lines = lines_by_label(ax)
    assert legend_texts(ax) == ["batch 1: p99 +5.0%", "batch 16: p99 n/a"]
    assert list(lines["batch 1: p99 +5.0%"].get_xdata()) == [0, 1, 2, 3, 4]
    assert list(lines["batch 1: p99 +5.0%"].get_ydata()) == pytest.approx([0, 0, 10, -10, 0])
    assert list(lines["batch 16: p99 n/a"].get_ydata()) == pytest.approx([0, 1, -1])
    assert any(list(line.get_ydata()) == [0, 0] for line in ax.get_lines())   # the median
    assert ax.get_xlabel() == "step, in the order timed"
    assert ax.get_ylabel() == "step time vs its median (%)"
    assert "NVIDIA H200" in ax.get_title()
    assert plot.steps_figure(tr.load(H200)) is None                   # no samples: no chart


def test_plot_titles_name_a_tp_shard_and_eager_launches(tmp_path, figures):
    """A run of one TP shard times a smaller step than the model's, and an eager run times
    launches a graph would hide: a chart that leaves the setting out describes another run."""
    def shard(d):
        d["config"]["tp"] = 8
        d["config"]["graph"] = False
    run = tr.load(write_variant(tmp_path, H200, "tp8.json", shard))
    for fig in (plot.utilization_figure(run), plot.roofline_figure([run])):
        figures(fig)
        assert "bf16, tp 8, eager — NVIDIA H200" in fig.axes[0].get_title()
    fig = plot.throughput_figure([run, run])
    figures(fig)
    assert "bf16, tp 8, eager — NVIDIA H200" in fig.axes[0].get_title()
    for runs in ([run, tr.load(H200)], [tr.load(H200), run]):    # the legend tells them apart
        fig = plot.throughput_figure(runs)
        figures(fig)
        assert "bf16 — NVIDIA H200" in fig.axes[0].get_title()
        assert "h200 ctx 2048 bf16 tp 8 eager" in legend_texts(fig.axes[0])
    fig = plot.utilization_figure(tr.load(H200))
    figures(fig)
    assert "bf16 — NVIDIA H200" in fig.axes[0].get_title()


def test_plot_steps_names_the_points_without_samples(tmp_path, figures):
    fig = plot.steps_figure(tr.load(write_variant(tmp_path, H200, "steps.json",
                                                  with_step_samples)))
    figures(fig)
    assert legend_texts(fig.axes[0]) == ["batch 1: p99 +5.0%", "batch 16: p99 n/a"]
    assert [t.get_text() for t in fig.texts] == [
        "one line per measured point: its timed steps over their median; "
        "no step samples: batch 1024"]


def test_plot_writes_the_steps_chart_where_the_run_has_samples(tmp_path):
    path = write_variant(tmp_path, H200, "decode_70b_bf16_ctx2048.json", with_step_samples)
    out = tmp_path / "plots"
    r = run_script("plot.py", "--formats", "png", path, "--out", str(out))
    assert r.returncode == 0, r.stderr
    steps = out / "decode_70b_bf16_ctx2048_steps.png"
    assert str(steps) in r.stdout.split()
    png = steps.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert len(os.listdir(out)) == 5 == len(r.stdout.split())


def test_plot_writes_no_steps_chart_where_no_point_has_samples(tmp_path):
    out = tmp_path / "plots"
    r = run_script("plot.py", "--formats", "png", H200, "--out", str(out))
    assert r.returncode == 0, r.stderr
    written = sorted(os.path.basename(p) for p in r.stdout.split())
    assert written == sorted(os.listdir(out)) == [
        f"decode_70b_bf16_ctx2048_{c}.png"
        for c in ("op_share", "roofline", "throughput", "utilization")]
    assert r.stderr == ""


def test_plot_combines_only_runs_of_one_model_precision_and_phase(tmp_path):
    def fp8(d):
        d["config"]["model"]["weight_dtype"] = "FP8_E4M3"

    def prefill(d):
        d["config"]["phase"] = "prefill"
    runs = [tr.load(H100), tr.load(H200),
            tr.load(write_variant(tmp_path, H100, "fp8_a.json", fp8)),
            tr.load(write_variant(tmp_path, H200, "fp8_b.json", fp8)),
            tr.load(write_variant(tmp_path, H200, "prefill.json", prefill))]
    groups = [(slug, [os.path.basename(r["path"]) for r in group])
              for slug, group in plot.combined_groups(runs)]
    assert groups == [
        ("decode_llama-3.1-70b_bf16", ["decode_70b_bf16_ctx2048.json"] * 2),
        ("decode_llama-3.1-70b_fp8", ["fp8_a.json", "fp8_b.json"])]
    assert plot.combined_groups(runs[:1] + runs[2:3]) == []


def test_plot_run_names_tell_apart_runs_that_would_read_the_same(tmp_path):
    copy = write_variant(tmp_path, H200, "other.json", lambda d: None)
    assert plot.run_names([tr.load(H200), tr.load(copy)]) == [
        "h200 ctx 2048 bf16 (decode_70b_bf16_ctx2048)", "h200 ctx 2048 bf16 (other)"]
    small = write_variant(tmp_path, H100, "8b.json",
                          lambda d: d["config"]["model"].update(name="Llama-3.1-8B"))
    assert plot.run_names([tr.load(H100), tr.load(small)]) == [
        "Llama-3.1-70B h100-sxm ctx 2048 bf16", "Llama-3.1-8B h100-sxm ctx 2048 bf16"]


def test_plot_refuses_when_skip_other_leaves_nothing_to_plot(tmp_path):
    other = tmp_path / "ceilings.json"
    other.write_text(json.dumps({"read_gbps": 3000.0}), encoding="utf-8")
    out = tmp_path / "p"
    r = run_script("plot.py", "--skip-other", str(other), "--out", str(out))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines()[-1] == "plot: no RunResult to plot"
    assert not out.exists()


def test_plot_formats_are_read_without_case_or_leading_dot(tmp_path):
    out = tmp_path / "plots"
    r = run_script("plot.py", "--formats", "PNG, .Svg", H200, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == sorted(
        f"decode_70b_bf16_ctx2048_{c}.{ext}" for c in ("throughput", "utilization", "op_share",
                                                       "roofline") for ext in ("png", "svg"))


# -------------------------------------------------------------------------------- compare


def test_compare_ratios_against_datasheets():
    a, b = tr.load(H100), tr.load(H200)
    assert compare.mismatches(a, b) == []
    rows = {r["key"]: r for r in compare.compare_rows(a, b)}
    assert sorted(rows) == [1, 16, 1024]
    r1 = rows[1]
    assert r1["tps_ratio"] == pytest.approx(28.0 / 20.0)
    assert r1["ms_ratio"] == pytest.approx((1000 / 28) / 50.0, rel=1e-4)
    assert r1["mbu_ratio"] == pytest.approx(b["points"][0]["mbu"] / a["points"][0]["mbu"])
    assert r1["mfu_ratio"] == pytest.approx(1.4, rel=1e-3)
    assert r1["predicted"] == pytest.approx(4800 / 3350)          # memory-bound: bandwidth
    assert r1["basis"].startswith("memory")
    assert r1["off_pct"] == pytest.approx((1.4 / (4800 / 3350) - 1) * 100)   # -2.29%
    r3 = rows[1024]
    assert r3["predicted"] == pytest.approx(1.0)                  # compute-bound: bf16 peak
    assert r3["tps_ratio"] == pytest.approx(4500 / 4400)
    assert r3["off_pct"] == pytest.approx((4500 / 4400 - 1) * 100)


def test_compare_table_sets_each_cards_clock_and_power_side_by_side():
    a, b = tr.load(H100), tr.load(H200)
    a["points"][0].update(sm_clock_mhz=1980.4, power_w=575.2)
    b["points"][0].update(sm_clock_mhz=1455.6, power_w=699.5)
    b["points"][1].update(sm_clock_mhz=1701.0)
    md = compare.markdown(a, b, compare.compare_rows(a, b))
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].endswith("| SM MHz A/B | W A/B |")
    assert rows[1].startswith("| 1 |") and rows[1].endswith("| 1980/1456 | 575/700 |")
    assert rows[2].startswith("| 16 |") and rows[2].endswith("| —/1701 | —/— |")
    assert rows[3].endswith("| —/— | —/— |")
    # Every row has the header's number of cells, the separator too.
    cells = {line.count("|") for line in md.splitlines() if line.startswith("|")}
    assert cells == {19}


def test_compare_chart_labels_keep_small_differences_visible():
    assert compare.off_label(-0.3) == "-0.3%"     # not "-0%"
    assert compare.off_label(2.27) == "+2.3%"
    assert compare.off_label(-19.46) == "-19%"


@pytest.mark.parametrize("phase, xlabel", [("decode", "batch (sequences decoded together)"),
                                           ("prefill", "batch (prompts processed together)")])
def test_compare_chart_x_label_follows_the_phase(tmp_path, figures, phase, xlabel):
    a, b = (tr.load(write_variant(tmp_path, src, f"{name}.json",
                                  lambda d: d["config"].update(phase=phase)))
            for src, name in ((H100, "a"), (H200, "b")))
    fig, base = compare.chart_figure(a, [(b, compare.compare_rows(a, b))])
    figures(fig)
    ax = fig.axes[0]
    assert ax.get_xlabel() == xlabel
    lines = lines_by_label(ax)
    measured = lines["h200 / h100-sxm: measured tokens/s ratio"]
    assert list(measured.get_xdata()) == [1, 16, 1024]
    assert list(measured.get_ydata()) == pytest.approx([28 / 20, 420 / 300, 4500 / 4400])
    predicted = lines["h200 / h100-sxm: predicted by datasheets"]
    assert list(predicted.get_ydata()) == pytest.approx([4800 / 3350, 4800 / 3350, 1.0])
    assert base == "compare_h100-sxm_vs_h200_a"


def test_compare_chart_of_prefill_draws_a_line_per_prompt_length(tmp_path, figures):
    # Points 1, 16 at prompts of 128 and 1024 at 512 (scripts/tests/data: batches 1, 16, 1024):
    # one line per prompt length over batch, never one line zigzagging between them.
    def prefill(d):
        d["config"]["phase"] = "prefill"
        for p, seq in zip(d["points"], (128, 128, 512)):
            p["seq_len"] = seq
    a, b = (tr.load(write_variant(tmp_path, src, f"{name}.json", prefill))
            for src, name in ((H100, "a"), (H200, "b")))
    fig, _base = compare.chart_figure(a, [(b, compare.compare_rows(a, b))])
    figures(fig)
    lines = lines_by_label(fig.axes[0])
    seq128 = lines["h200 / h100-sxm, seq 128: measured tokens/s ratio"]
    assert list(seq128.get_xdata()) == [1, 16]
    assert list(seq128.get_ydata()) == pytest.approx([28 / 20, 420 / 300])
    seq512 = lines["h200 / h100-sxm, seq 512: measured tokens/s ratio"]
    assert list(seq512.get_xdata()) == [1024]
    assert list(seq512.get_ydata()) == pytest.approx([4500 / 4400])
    assert "h200 / h100-sxm, seq 512: predicted by datasheets" in lines


def test_compare_cli_prefill_chart_says_prompts(tmp_path):
    a, b = (write_variant(tmp_path, src, f"{name}.json",
                          lambda d: d["config"].update(phase="prefill"))
            for src, name in ((H100, "a"), (H200, "b")))
    r = run_script("compare.py", a, b, "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    svg = (tmp_path / "compare_h100-sxm_vs_h200_a.svg").read_text(encoding="utf-8")
    assert ">batch (prompts processed together)<" in svg and "decoded" not in svg


def test_compare_mixed_bounds_use_roofline_ratio():
    a, b = tr.load(H100), tr.load(H200)
    pa, pb = copy.deepcopy(a["points"][1]), copy.deepcopy(b["points"][1])
    pb["bound"] = "compute"
    ratio, basis = compare.predicted_ratio(a, b, pa, pb)
    assert ratio == pytest.approx(pb["bound_tokens_per_s"] / pa["bound_tokens_per_s"])
    assert basis.startswith("mixed")


def test_compare_precisions_use_roofline_ratio():
    a = tr.load(H100)
    b = copy.deepcopy(a)
    b["config"]["model"]["weight_dtype"] = "FP8_E4M3"
    pa, pb = a["points"][0], b["points"][0]
    pb["bound_tokens_per_s"] = 1.96 * pa["bound_tokens_per_s"]
    ratio, basis = compare.predicted_ratio(a, b, pa, pb)
    assert ratio == pytest.approx(1.96)       # not the bandwidth ratio of one GPU with itself
    assert basis == "bf16 vs fp8: roofline bound"
    # The header names each run's precision and tensor peak.
    md = compare.markdown(a, b, compare.compare_rows(a, b))
    assert md.splitlines()[0].endswith(", fp8 vs bf16")
    assert tr.peak_tflops(b) == pytest.approx(2 * tr.peak_tflops(a), rel=1e-3)
    assert (f"tensor peak {tr.peak_tflops(a):g} (bf16) → {tr.peak_tflops(b):g} TFLOP/s (fp8)"
            in md)
    same = compare.markdown(a, a, compare.compare_rows(a, a))
    assert f"bf16 peak {tr.peak_tflops(a):g} → {tr.peak_tflops(a):g} TFLOP/s" in same
    assert same.splitlines()[0].endswith(", bf16")


def test_compare_cli_prints_table_and_writes_chart(tmp_path):
    md = tmp_path / "cmp.md"
    r = run_script("compare.py", H100, H200, "--out", str(tmp_path), "--md", str(md))
    assert r.returncode == 0, r.stderr
    assert "| 1 | 20.0 | 28.0 | 1.400× |" in r.stdout
    assert "1.433× (memory: bandwidth)" in r.stdout
    assert "-2.3%" in r.stdout and "+2.3%" in r.stdout
    assert md.read_text(encoding="utf-8").strip() == r.stdout.strip()
    assert (tmp_path / "compare_h100-sxm_vs_h200_decode_70b_bf16_ctx2048.png").exists()
    assert (tmp_path / "compare_h100-sxm_vs_h200_decode_70b_bf16_ctx2048.svg").exists()
    assert "replaced" not in r.stderr
    # The same chart again: replaced, and said so (the --md is refused without --overwrite).
    r = run_script("compare.py", H100, H200, "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    charts = [line for line in r.stderr.splitlines() if line.startswith("chart: ")]
    assert len(charts) == 2 and all(line.endswith("(replaced an existing file)") for line in charts)


@pytest.mark.parametrize("change, reason", [
    (lambda d: d["config"].update(context=0), "context 2048 vs 0"),
    (lambda d: d["config"]["model"].update(name="Llama-3.1-8B"), "model Llama-3.1-70B vs"),
    (lambda d: d["config"].update(phase="prefill"), "phase decode vs prefill"),
    (lambda d: d["config"].update(tp=2), "tp 1 vs 2"),
    (lambda d: [p.update(batch=p["batch"] * 3) for p in d["points"]], "no batch in common"),
])
def test_compare_refuses_mismatch(tmp_path, change, reason):
    other = write_variant(tmp_path, H200, "other.json", change)
    r = run_script("compare.py", H100, other, "--out", str(tmp_path))
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert reason in lines[0] and "--allow-mismatch" in lines[0]
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("which", ["--md", "--out"])
def test_compare_unwritable_output_is_a_one_line_error(tmp_path, which):
    blocker = tmp_path / "blocker"
    blocker.write_text("keep\n", encoding="utf-8")
    if which == "--md":
        md = tmp_path / "cmp.md"
        md.mkdir()                                  # a folder where the file goes
        args = ["--md", str(md), "--out", str(tmp_path / "charts")]
        words = (str(md), "Is a directory")
    else:
        args = ["--md", str(tmp_path / "cmp.md"), "--out", str(blocker)]  # a file as the folder
        words = (str(blocker), "Not a directory")
    r = run_script("compare.py", H100, H200, *args, cwd=str(tmp_path))
    assert_one_line_refusal(r, "compare: ", "cannot write", *words)
    assert blocker.read_text(encoding="utf-8") == "keep\n"
    assert not list(tmp_path.rglob("*.png")) and not list(tmp_path.rglob("*.svg"))
    r = run_script("compare.py", H100, H200, "--no-chart", "--md",
                   str(blocker / "cmp.md"), cwd=str(tmp_path))
    assert_one_line_refusal(r, "cannot write", "Not a directory")


def test_compare_md_never_overwrites_an_input_and_an_existing_file_only_when_asked(tmp_path):
    a = tmp_path / "a.json"
    shutil.copy(H100, a)
    before = a.read_text(encoding="utf-8")
    for extra in ([], ["--overwrite"]):
        r = run_script("compare.py", str(a), H200, "--no-chart", "--md", str(a), *extra)
        assert_one_line_refusal(r, "is the input")
        assert a.read_text(encoding="utf-8") == before
    md = tmp_path / "t.md"
    md.write_text("keep\n", encoding="utf-8")
    r = run_script("compare.py", H100, H200, "--no-chart", "--md", str(md))
    assert_one_line_refusal(r, "already exists", "--overwrite")
    assert md.read_text(encoding="utf-8") == "keep\n"
    r = run_script("compare.py", H100, H200, "--no-chart", "--md", str(md), "--overwrite")
    assert r.returncode == 0, r.stderr
    assert md.read_text(encoding="utf-8").startswith("### ")


def test_compare_refuses_runs_with_nothing_measured(tmp_path):
    def predict(d):
        d["config"]["predict_only"] = True
        for p in d["points"]:
            for k in ("tokens_per_s", "step_ms_p50", "mbu", "mfu"):
                p.pop(k, None)
    pred = write_variant(tmp_path, H200, "pred.json", predict)
    for args in ([pred, H100], [H100, pred]):
        r = run_script("compare.py", *args, "--no-chart")
        assert_one_line_refusal(r, "nothing was measured in", "pred.json")
        assert r.stdout == ""


def test_compare_into_a_closed_pipe_is_quiet(tmp_path):
    md = tmp_path / "t.md"
    r = subprocess.run(f"{sys.executable} {os.path.join(SCRIPTS, 'compare.py')} {H100} {H200} "
                       f"--no-chart --md {md} | true", shell=True, capture_output=True,
                       text=True, timeout=120)
    assert "Traceback" not in r.stderr and "Broken" not in r.stderr, r.stderr
    assert md.read_text(encoding="utf-8").startswith("### ")


def test_compare_allow_mismatch(tmp_path):
    other = write_variant(tmp_path, H200, "other.json", lambda d: d["config"].update(context=0))
    r = run_script("compare.py", H100, other, "--allow-mismatch", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "mismatch allowed: context 2048 vs 0" in r.stdout


@pytest.mark.parametrize("field, value", [("kv_dtype", "FP8_E4M3"), ("hidden_size", 4096),
                                          ("tied_embeddings", True)])
def test_compare_refuses_same_model_name_with_other_fields(tmp_path, field, value):
    other = write_variant(tmp_path, H200, "other.json",
                          lambda d: d["config"]["model"].update({field: value}))
    r = run_script("compare.py", H100, other, "--no-chart")
    assert_one_line_refusal(r, f"{field} ", "--allow-mismatch")
    # `source` (where the config came from) is no part of the workload.
    other = write_variant(tmp_path, H200, "src.json",
                          lambda d: d["config"]["model"].update(source="elsewhere"))
    assert run_script("compare.py", H100, other, "--no-chart").returncode == 0


def test_compare_notes_two_cards_of_one_model():
    a = tr.load(H100)
    b = copy.deepcopy(a)
    b["config"]["model"]["weight_dtype"] = "FP8_E4M3"
    a["machine"]["gpu_uuid"] = "GPU-aaaaaaaa-1111"
    b["machine"]["gpu_uuid"] = "GPU-bbbbbbbb-2222"
    notes = compare.pair_notes(a, b, compare.mismatches(a, b))
    assert "mismatch allowed: weight precision bf16 vs fp8" in notes
    assert any(n.startswith("two cards of one model (GPU-aaaaaaaa vs GPU-bbbbbbbb)")
               for n in notes), notes
    b["machine"]["gpu_uuid"] = a["machine"]["gpu_uuid"]           # one card: no such note
    assert not any("two cards" in n for n in compare.pair_notes(a, b, []))
    h200 = tr.load(H200)                                          # two models: expected to differ
    h200["machine"]["gpu_uuid"] = "GPU-cccccccc-3333"
    assert not any("two cards" in n for n in compare.pair_notes(a, h200, []))


def test_compare_notes_two_builds():
    a = tr.load(H100)
    b = copy.deepcopy(a)
    assert not any("build" in n for n in compare.pair_notes(a, b, []))    # files without builds
    a["truthput_build"] = "0123456789abcdef0123456789abcdef01234567"
    b["truthput_build"] = a["truthput_build"]
    assert not any("build" in n for n in compare.pair_notes(a, b, []))    # one clean build
    b["truthput_build"] = "fedcba9876543210fedcba9876543210fedcba98"
    assert ("two builds (0123456789ab vs fedcba987654): the ratios include what changed between "
            "them") in compare.pair_notes(a, b, [])
    b["truthput_build"] = a["truthput_build"] = a["truthput_build"] + "-dirty"
    assert ("two builds (0123456789ab-dirty vs 0123456789ab-dirty): the ratios include what "
            "changed between them, uncommitted changes included") in compare.pair_notes(a, b, [])
    b["truthput_build"] = ""                                               # one names none
    assert not any("build" in n for n in compare.pair_notes(a, b, []))


def test_compare_notes_an_incomplete_sweep():
    a = tr.load(H100)
    b = copy.deepcopy(a)
    assert not any("incomplete" in n for n in compare.pair_notes(a, b, []))
    stop = "incomplete: interrupted (Ctrl-C) before batch 32, context 2048; the points listed ..."
    b["config"].setdefault("notes", []).append(stop)
    assert f"B {stop}" in compare.pair_notes(a, b, [])


def test_compare_names_each_compared_point_whose_timing_is_not_settled():
    a = tr.load(H100)
    b = copy.deepcopy(a)
    assert not any("settled" in n or "ungated" in n for n in compare.pair_notes(a, b, []))
    unsettled = ("step median not settled when the timing stopped at its time or repetition "
                 "cap (its ~95% CI +-1.23%, 40 reps)")
    b["points"][1]["notes"] = ["NVML utilization: read in 49 of 52 samples", unsettled]
    a["points"][0]["notes"] = ["some timing rounds ran ungated (the host took too long ...)"]
    notes = compare.pair_notes(a, b, [])
    assert f"B batch 16: {unsettled}" in notes
    assert "A batch 1: some timing rounds ran ungated (the host took too long ...)" in notes
    assert not any("NVML" in n for n in notes)   # a note about another column is not the ratio's
    b["points"][1]["skipped"] = True              # a point left out of the table is not named
    assert not any(n.startswith("B batch 16") for n in compare.pair_notes(a, b, []))


def test_a_median_of_too_few_steps_is_a_caveat_where_no_note_says_so():
    point = {"reps": 4, "notes": []}
    assert tr.timing_caveats(point) == [
        "step median of 4 steps, too few for a ~95% interval of it"]
    assert tr.timing_caveats({"reps": 6, "notes": []}) == []
    assert tr.timing_caveats({"reps": None, "notes": []}) == []
    said = "step median not settled when the timing stopped at its time or repetition cap (...)"
    assert tr.timing_caveats({"reps": 4, "notes": [said]}) == [said]  # said once, not twice
    # The order-statistic interval [x_(1), x_(n)] misses the median with probability 2 * 0.5^n:
    # n = 6 is the first with a miss of at most 5% (bench/stats.cc).
    assert tr.MIN_REPS_FOR_MEDIAN_CI == next(n for n in range(1, 20) if 2 * 0.5 ** n <= 0.05)


def test_timing_note_starts_are_the_notes_the_benchmarks_write():
    # compare.py finds a point's timing notes by how they start; a reworded note in C++ would
    # make it name nothing.
    with open(os.path.join(REPO, "bench", "measured_columns.cc")) as f:
        source = f.read()
    for start in tr.TIMING_NOTE_STARTS:
        assert f'"{start}' in source, start


def test_point_notes_that_are_not_strings_are_a_one_line_refusal(tmp_path):
    bad = write_variant(tmp_path, H100, "bad.json", lambda d: d["points"][0].update(notes="x"))
    with pytest.raises(tr.ResultError, match=r"points\[0\]\.notes: not a list of strings"):
        tr.load(bad)


@pytest.mark.parametrize("bad_tps", ["NaN", 0, -5.0])
def test_compare_nan_or_nonpositive_tokens_per_s_is_not_measured(tmp_path, bad_tps):
    other = write_variant(tmp_path, H200, "other.json",
                          lambda d: d["points"][1].update(tokens_per_s=bad_tps))
    r = run_script("compare.py", H100, other, "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    row16 = [line for line in r.stdout.splitlines() if line.startswith("| 16 |")]
    assert len(row16) == 1
    cells = [c.strip() for c in row16[0].split("|")[1:-1]]
    assert cells[1] == "300" and cells[2] == "—" and cells[3] == "—"   # tok/s B, B/A
    assert cells[15] == "—"                                            # measured vs predicted
    assert not [line for line in r.stdout.splitlines()
                if line.startswith("|") and "nan" in line.lower()]
    assert "| 1 | 20.0 | 28.0 | 1.400× |" in r.stdout                 # other batches as before
    assert (tmp_path / "compare_h100-sxm_vs_h200_decode_70b_bf16_ctx2048.png").exists()
    rows = {row["key"]: row for row in compare.compare_rows(tr.load(H100), tr.load(other))}
    assert rows[16]["tps_b"] is None and rows[16]["tps_ratio"] is None
    assert rows[16]["off_pct"] is None


def test_compare_notes_batches_left_out(tmp_path):
    def change(d):
        d["points"][0].update(skipped=True, skip_reason="does not fit")   # batch 1
        d["points"][2]["batch"] = 2048                                    # 1024 -> 2048

    other = write_variant(tmp_path, H200, "other.json", change)
    r = run_script("compare.py", H100, other, "--no-chart")
    assert r.returncode == 0, r.stderr
    assert ("- note: batches left out: 1 (skipped in B); 1024 (only in A); 2048 (only in B)"
            in r.stdout.splitlines())
    a, b = tr.load(H100), tr.load(other)
    a["points"][0]["skipped"] = True
    assert "batches left out: 1 (skipped in both); 1024 (only in A); 2048 (only in B)" in \
        compare.pair_notes(a, b, [])
    # Nothing left out: no such note.
    r = run_script("compare.py", H100, H200, "--no-chart")
    assert "left out" not in r.stdout


def test_compare_allow_mismatch_of_models_predicts_from_each_runs_bound():
    a = tr.load(H100)
    b = copy.deepcopy(a)
    b["config"]["model"]["name"] = "Llama-3.1-8B"
    b["config"]["context"] = 0
    for p in b["points"]:
        p["bound_tokens_per_s"] *= 8
    rows = compare.compare_rows(a, b)
    assert rows[0]["predicted"] == pytest.approx(8.0)           # not 1.000x (one GPU)
    assert rows[0]["basis"] == ("Llama-3.1-70B vs Llama-3.1-8B, ctx 2048 vs ctx 0: "
                                "roofline bound")
    md = compare.markdown(a, b, rows)
    assert md.splitlines()[0] == ("### h100-sxm vs h100-sxm: Llama-3.1-8B vs Llama-3.1-70B, "
                                  "ctx 0 vs ctx 2048, bf16")


# --------------------------------------------------------------------------------- claims


def verdicts(md):
    """{(claim, run): verdict} from CLAIMS.md."""
    out, claim = {}, None
    for line in md.splitlines():
        m = re.match(r"## \((\w)\)", line)
        if m:
            claim = m.group(1)
            continue
        m = re.match(r"\| ([^|]+) \| .* \| \*\*([a-z ]+)\*\* \|", line)
        if claim and m:
            out[(claim, m.group(1).strip())] = m.group(2)
    return out


def test_claims_verdicts(tmp_path):
    out = tmp_path / "CLAIMS.md"
    r = run_script("claims.py", DATA, "--out", str(out))
    assert r.returncode == 0, r.stderr
    md = out.read_text(encoding="utf-8")
    v = verdicts(md)
    assert v[("a", "h100-sxm")] == "holds"                    # bound 23.9, measured 20.0
    assert v[("b", "h100-sxm, ctx 2048")] == "holds"          # x1.97 per doubling
    assert v[("b", "h100-sxm, ctx 0")] == "not measured"      # no ctx0 file
    assert v[("c", "h100-sxm")] == "holds"                    # 0.71% at 50 tok/s
    assert v[("d", "h100-sxm, 70b, ctx 2048")] == "holds"     # smi 100%, MFU 0.28%
    assert v[("d", "h200, 70b, ctx 2048")] == "not measured"
    assert v[("e", "h100-sxm, 70b bf16, ctx 2048, batch 1")] == "holds"   # small ops 25%
    assert "smi_util_pct not measured in this file" in md
    assert "MFU 0.71% at 50 tok/s" in md
    assert "+25.0% together" in md and "whole step: +5.7%" in md
    assert "(missing)" in md
    assert "decode_70b_bf16_ctx2048.json" in md


def test_claims_launch_overhead_names_two_gpus(tmp_path):
    gpu = tmp_path / "results" / "h100-sxm"
    gpu.mkdir(parents=True)

    def on(uuid):
        return lambda raw: raw["machine"].update(gpu_uuid=uuid)

    write_variant(gpu, H100, "decode_70b_bf16_ctx2048.json", on("GPU-aaaaaaaa-1111"))
    write_variant(gpu, H100_EAGER, "decode_70b_bf16_ctx2048_b1_eager.json",
                  on("GPU-bbbbbbbb-2222"))
    rows = claims.check_all(str(tmp_path / "results"))
    e = [r for r in rows if r["claim"] == "e"]
    assert len(e) == 1
    assert "two GPUs (eager GPU-bbbbbbbb, graph GPU-aaaaaaaa)" in e[0]["ours"], e[0]["ours"]
    # The same GPU in both files: no such remark.
    write_variant(gpu, H100_EAGER, "decode_70b_bf16_ctx2048_b1_eager.json",
                  on("GPU-aaaaaaaa-1111"))
    e = [r for r in claims.check_all(str(tmp_path / "results")) if r["claim"] == "e"]
    assert "two GPUs" not in e[0]["ours"]


@pytest.mark.parametrize("edit, holds", [
    (lambda c: (c.update(model_arg="8b"), c["model"].update(name="Llama-3.1-8B")),
     "a run of Llama-3.1-8B,"),
    (lambda c: c.update(context=4096), "a run of context 4096,"),
    (lambda c: c["model"].update(weight_dtype="FP8_E4M3"), "a run of fp8 weights,"),
    (lambda c: c.update(graph=False), "a run of eager launches,"),
])
def test_claims_refuse_a_run_its_file_name_misnames(tmp_path, edit, holds):
    """Claims find runs by file name; a run saved under another's name judges nothing."""
    gpu = tmp_path / "results" / "h100-sxm"
    gpu.mkdir(parents=True)
    write_variant(gpu, H100, "decode_70b_bf16_ctx2048.json", lambda d: edit(d["config"]))
    rows = [r for r in claims.check_all(str(tmp_path / "results"))
            if r["file"].endswith("decode_70b_bf16_ctx2048.json`")]
    assert {r["claim"] for r in rows} == set("abcd"), rows
    assert all(r["verdict"] == "not measured" for r in rows), rows
    assert all(f"the file holds {holds} not what its name says" in r["ours"] for r in rows), rows
    # The file as its name says: judged.
    write_variant(gpu, H100, "decode_70b_bf16_ctx2048.json", lambda d: None)
    rows = [r for r in claims.check_all(str(tmp_path / "results")) if r["claim"] == "a"]
    assert rows[0]["verdict"] == "holds", rows


def test_claims_low_smi_and_high_mfu_does_not_hold(tmp_path):
    gpu = tmp_path / "results" / "h100-sxm"
    gpu.mkdir(parents=True)
    write_variant(gpu, H100, "decode_70b_bf16_ctx2048.json",
                  lambda d: d["points"][0].update(smi_util_pct=30.0, mfu=0.3))
    rows = claims.check_all(str(tmp_path / "results"))
    d = [r for r in rows if r["claim"] == "d"]
    assert [r["verdict"] for r in d] == ["does not hold"]


def test_claims_nan_tokens_per_s_is_not_measured(tmp_path):
    gpu = tmp_path / "results" / "h100-sxm"
    gpu.mkdir(parents=True)
    write_variant(gpu, H100, "decode_70b_bf16_ctx2048.json",
                  lambda d: d["points"][0].update(tokens_per_s="NaN"))
    a = [r for r in claims.check_all(str(tmp_path / "results")) if r["claim"] == "a"]
    assert "measured: not measured" in a[0]["ours"] and "nan" not in a[0]["ours"], a[0]


@pytest.mark.parametrize("what, reason", [
    ("missing", "no such folder"),
    ("empty", "holds no result files"),
    ("other files", "holds no result files"),   # results/ itself or one GPU's folder given
    ("a file", "not a folder"),
])
def test_claims_refuses_a_results_dir_without_results(tmp_path, what, reason):
    # A results/CLAIMS.md of the working directory holds an earlier table: a mistyped RESULTS_DIR
    # must neither overwrite it nor leave a new one, there or in RESULTS_DIR.
    default_out = tmp_path / "results" / "CLAIMS.md"
    default_out.parent.mkdir()
    default_out.write_text("earlier table\n", encoding="utf-8")
    given = tmp_path / "given"
    if what == "empty":
        given.mkdir()
    elif what == "other files":
        given.mkdir()
        shutil.copy(H100, given / "decode_70b_bf16_ctx2048.json")   # not under a <gpu>/ folder
        (given / "h100-sxm").mkdir()
        (given / "h100-sxm" / "notes.json").write_text("{}", encoding="utf-8")
    elif what == "a file":
        given.write_text("", encoding="utf-8")
    r = run_script("claims.py", str(given), cwd=str(tmp_path))
    line = assert_one_line_refusal(r, reason, str(given))
    assert line.startswith("claims: ") and r.stdout == ""
    assert default_out.read_text(encoding="utf-8") == "earlier table\n"
    assert os.listdir(tmp_path / "results") == ["CLAIMS.md"]
    assert not (given / "CLAIMS.md").exists()
    # --out given: not created either.
    out = tmp_path / "new" / "CLAIMS.md"
    r = run_script("claims.py", str(given), "--out", str(out), cwd=str(tmp_path))
    assert_one_line_refusal(r, reason)
    assert not out.parent.exists()


def test_make_report_refuses_a_missing_results_dir(tmp_path):
    missing = tmp_path / "nope"
    r = subprocess.run(["bash", os.path.join(SCRIPTS, "make_report.sh"), str(missing)],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHON=sys.executable, PLOT_FORMATS="png"))
    assert r.returncode != 0
    assert "no such folder" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not missing.exists()                     # no CLAIMS.md of "not measured" rows


def test_claims_writes_beside_its_results_by_default(tmp_path):
    # Run from a folder that has a results/CLAIMS.md of its own (the repository's): the table of
    # another RESULTS_DIR goes into that folder and leaves the committed one alone.
    (tmp_path / "results").mkdir()
    committed = tmp_path / "results" / "CLAIMS.md"
    committed.write_text("committed table\n", encoding="utf-8")
    given = tmp_path / "runs"
    shutil.copytree(DATA, given)
    r = run_script("claims.py", str(given), cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert committed.read_text(encoding="utf-8") == "committed table\n"
    assert "| holds |" in (given / "CLAIMS.md").read_text(encoding="utf-8")
    assert r.stdout.rstrip().endswith(f"wrote {given / 'CLAIMS.md'}")


@pytest.mark.parametrize("where", ["folder", "under a file"])
def test_claims_unwritable_out_is_a_one_line_error(tmp_path, where):
    if where == "folder":
        out = tmp_path / "CLAIMS.md"
        out.mkdir()
        why = "Is a directory"
    else:
        blocker = tmp_path / "blocker"
        blocker.write_text("keep\n", encoding="utf-8")
        out = blocker / "CLAIMS.md"
        why = "Not a directory"
    r = run_script("claims.py", DATA, "--out", str(out), cwd=str(tmp_path))
    assert_one_line_refusal(r, "claims: ", "cannot write", why)
    assert not (tmp_path / "results").exists()      # nothing at the default --out instead
    if where == "folder":
        assert os.listdir(out) == []
    else:
        assert blocker.read_text(encoding="utf-8") == "keep\n"


def test_claims_out_never_overwrites_a_result_and_an_existing_file_only_when_asked(tmp_path):
    given = tmp_path / "runs"
    shutil.copytree(DATA, given)
    result = given / "h200" / "decode_70b_bf16_ctx2048.json"
    before = result.read_text(encoding="utf-8")
    r = run_script("claims.py", str(given), "--out", str(result), "--overwrite")
    assert_one_line_refusal(r, "is the input")
    assert result.read_text(encoding="utf-8") == before
    out = tmp_path / "C.md"
    out.write_text("keep\n", encoding="utf-8")
    r = run_script("claims.py", str(given), "--out", str(out))
    assert_one_line_refusal(r, "already exists", "--overwrite")
    assert out.read_text(encoding="utf-8") == "keep\n"
    r = run_script("claims.py", str(given), "--out", str(out), "--overwrite")
    assert r.returncode == 0, r.stderr
    assert "| holds |" in out.read_text(encoding="utf-8")


def test_claims_unreadable_file_is_not_measured(tmp_path):
    gpu = tmp_path / "h100-sxm"
    gpu.mkdir()
    (gpu / "decode_70b_bf16_ctx2048.json").write_text("{", encoding="utf-8")
    rows = claims.check_all(str(tmp_path))
    a = [r for r in rows if r["claim"] == "a"]
    assert a[0]["verdict"] == "not measured" and "unreadable" in a[0]["ours"]


def test_mfu_interpolation():
    pts = [{"batch": 1, "tokens_per_s": 20.0, "mfu": 0.002},
           {"batch": 4, "tokens_per_s": 80.0, "mfu": 0.008}]
    mfu, how = claims.mfu_at_tps(pts, 40.0)
    assert mfu == pytest.approx(0.004)
    assert "interpolated" in how
    # A point within 1% of the target is taken as it is; one 6% off is not.
    near = [{"batch": 2, "tokens_per_s": 40.3, "mfu": 0.005}] + pts[1:]
    mfu, how = claims.mfu_at_tps(near, 40.0)
    assert mfu == 0.005 and how == "batch 2 (40.3 tok/s)"
    off = [pts[0], {"batch": 2, "tokens_per_s": 37.6, "mfu": 0.005}, pts[1]]
    mfu, how = claims.mfu_at_tps(off, 40.0)
    assert mfu == pytest.approx(claims.interpolate_log(40.0, 37.6, 0.005, 80.0, 0.008))
    assert how.startswith("interpolated between batch 2")


def test_peak_of_a_precision_the_datasheet_lacks_is_the_bf16_peak():
    run = copy.deepcopy(tr.load(H100))
    run["config"]["model"]["weight_dtype"] = "FP8_E4M3"
    assert tr.peak_tflops(run) == run["datasheet"]["fp8_tflops"] != 989.4
    run["datasheet"].pop("fp8_tflops")  # an A100: no fp8 tensor cores
    assert tr.peak_tflops(run) == 989.4


# Each verdict's thresholds, just inside and just outside (and exactly on them where the float
# comes out exact), on a copy of data/ with the fields the claim reads edited.

GRAPH_FILE = "h100-sxm/decode_70b_bf16_ctx2048.json"
EAGER_FILE = "h100-sxm/decode_70b_bf16_ctx2048_b1_eager.json"


def claim_row(tmp_path, claim, run, changes):
    """The row of `claim` for `run` (its GPU / run column) from a copy of data/ with each
    {file under data/: change(raw JSON)} applied."""
    given = tmp_path / "results"
    shutil.copytree(DATA, given)
    for rel, change in changes.items():
        path = given / rel
        write_variant(path.parent, path, path.name, change)
    rows = [r for r in claims.check_all(str(given)) if r["claim"] == claim and r["gpu"] == run]
    assert len(rows) == 1, rows
    return rows[0]


@pytest.mark.parametrize("bound, tps, verdict", [
    (24 * 1.099, 20.0, "holds"),             # bound within 10% of 24 ...
    (24 * 1.101, 20.0, "partly"),            # ... or not
    (24 * 0.901, 20.0, "holds"),
    (24 * 0.899, 20.0, "partly"),
    (24.0, 24.48, "holds"),                  # measured exactly 2% over the bound: inclusive
    (24.0, 24 * 1.021, "partly"),            # more: a measurement above its own bound
    (24 * 1.249, 20.0, "partly"),            # bound within 25%
    (30.0, 20.0, "partly"),                  # exactly 25%: inclusive
    (24 * 1.251, 20.0, "does not hold"),
    (24 * 0.749, 20.0, "does not hold"),
    (24.0, "NaN", "partly"),                 # no measurement: partly at best
    (18.0, "NaN", "partly"),                 # exactly 25%
    (24 * 0.749, "NaN", "does not hold"),
])
def test_claims_a_thresholds(tmp_path, bound, tps, verdict):
    row = claim_row(tmp_path, "a", "h100-sxm", {
        GRAPH_FILE: lambda d: d["points"][0].update(bound_tokens_per_s=bound, tokens_per_s=tps)})
    assert row["verdict"] == verdict, row["ours"]
    assert f"bound {tr.fmt(bound)} tok/s" in row["ours"]


@pytest.mark.parametrize("gain, verdict", [
    (1.7 * 1.001, "holds"), (1.7 * 0.999, "partly"),
    (1.4 * 1.001, "partly"), (1.4 * 0.999, "does not hold"),
])
def test_claims_b_thresholds(tmp_path, gain, verdict):
    # Batches 1 and 16 are the memory-bound ones: four doublings from 20 tok/s.
    row = claim_row(tmp_path, "b", "h100-sxm, ctx 2048", {
        GRAPH_FILE: lambda d: d["points"][1].update(tokens_per_s=20.0 * gain ** 4)})
    assert row["verdict"] == verdict, row["ours"]
    assert f"×{gain:.2f} per doubling while memory-bound (batch 1–16)" in row["ours"]


@pytest.mark.parametrize("gain, says", [
    (1.25 * 0.999, "saturates from batch 16 (batch 16→1024"),
    (1.25, "does not saturate up to batch 1024"),          # exactly x1.25: not less
    (1.25 * 1.001, "does not saturate up to batch 1024"),
])
def test_claims_b_saturation_threshold(tmp_path, gain, says):
    # The rule's x1.25 written out (not claims.SATURATED_GAIN), so a changed constant fails.
    # Batch 16 -> 1024 is six doublings from 300 tok/s; batch 1 -> 16 stays at x1.97.
    row = claim_row(tmp_path, "b", "h100-sxm, ctx 2048", {
        GRAPH_FILE: lambda d: d["points"][2].update(tokens_per_s=300.0 * gain ** 6)})
    assert says in row["ours"], row["ours"]
    assert row["verdict"] == "holds"


@pytest.mark.parametrize("off, verdict", [
    (0.249, "holds"), (-0.249, "holds"), (0.251, "partly"), (-0.251, "partly"),
    (0.499, "partly"), (-0.499, "partly"), (0.501, "does not hold"), (-0.501, "does not hold"),
])
def test_claims_c_thresholds(tmp_path, off, verdict):
    # Batch 1 at 50 tok/s: its MFU is the one judged, `off` from the article's 0.7%.
    mfu = 0.007 * (1 + off)
    row = claim_row(tmp_path, "c", "h100-sxm", {
        GRAPH_FILE: lambda d: d["points"][0].update(tokens_per_s=50.0, mfu=mfu)})
    assert row["verdict"] == verdict, row["ours"]
    assert row["ours"].startswith(f"MFU {tr.pct(mfu)} at 50 tok/s (batch 1 ")


@pytest.mark.parametrize("smi, mfu, verdict", [
    (80, 0.0499, "holds"),                   # smi >= 80 (inclusive), MFU < 5%
    (79.9, 0.0499, "partly"),
    (80, 0.05, "partly"),                    # MFU exactly 5%: not under it
    (50, 0.1999, "partly"),                  # smi >= 50 (inclusive), MFU < 20%
    (49.9, 0.1, "does not hold"),
    (100, 0.2, "does not hold"),             # MFU exactly 20%
])
def test_claims_d_thresholds(tmp_path, smi, mfu, verdict):
    row = claim_row(tmp_path, "d", "h100-sxm, 70b, ctx 2048", {
        GRAPH_FILE: lambda d: d["points"][0].update(smi_util_pct=smi, mfu=mfu)})
    assert row["verdict"] == verdict, row["ours"]


def eager_small_ops(overhead):
    """A change giving the eager file's two small ops `overhead` over the graph file's
    (attn_norm 0.24 ms, attn_residual 0.09 ms per step)."""
    graph_ms = {"attn_norm": 0.24, "attn_residual": 0.09}

    def change(d):
        for o in d["points"][0]["ops"]:
            if o["name"] in graph_ms:
                o["measured_ms"] = graph_ms[o["name"]] / (1 - overhead)
    return change


@pytest.mark.parametrize("overhead, verdict", [
    (0.099, "partly"), (0.101, "holds"),     # 10-30%: holds
    (0.299, "holds"), (0.301, "partly"),     # above: real, but larger than the article says
    (0.051, "partly"), (0.049, "does not hold"),
    (-0.1, "does not hold"),
])
def test_claims_e_thresholds(tmp_path, overhead, verdict):
    row = claim_row(tmp_path, "e", "h100-sxm, 70b bf16, ctx 2048, batch 1",
                    {EAGER_FILE: eager_small_ops(overhead)})
    assert row["verdict"] == verdict, row["ours"]
    assert f"{overhead:+.1%} together" in row["ours"]
    assert ("larger than the article's range" in row["ours"]) == (overhead > 0.3)


@pytest.mark.parametrize("overhead, verdict", [(0.101, "holds"), (0.099, "partly"),
                                               (0.049, "does not hold")])
def test_claims_e_whole_step_thresholds(tmp_path, overhead, verdict):
    # No per-op times in the eager file: the whole step is judged, by the same thresholds.
    def change(d):
        d["points"][0].update(ops=[], step_ms_p50=50.0 / (1 - overhead))
    row = claim_row(tmp_path, "e", "h100-sxm, 70b bf16, ctx 2048, batch 1", {EAGER_FILE: change})
    assert row["verdict"] == verdict, row["ours"]
    assert "judged on the whole step" in row["ours"]


@pytest.mark.parametrize("per_launch_us, names, verdict", [
    (19.9, "attn_norm, attn_residual", "partly"),     # 49% together
    (20.0, "attn_residual", "holds"),                 # "under 20 µs": 20 is not; 25% alone
    (20.1, "attn_residual", "holds"),
])
def test_claims_e_small_op_threshold(tmp_path, per_launch_us, names, verdict):
    # The rule's 20 µs written out (not claims.SMALL_OP_US), so a changed constant fails.
    # attn_norm's 80 launches at per_launch_us each in the graph run, twice that eager (50%).
    graph_ms = per_launch_us * 80 / 1000
    row = claim_row(tmp_path, "e", "h100-sxm, 70b bf16, ctx 2048, batch 1", {
        GRAPH_FILE: lambda d: d["points"][0]["ops"][0].update(measured_ms=graph_ms),
        EAGER_FILE: lambda d: d["points"][0]["ops"][0].update(measured_ms=2 * graph_ms)})
    assert row["verdict"] == verdict, row["ours"]
    assert f"per launch: {names}): " in row["ours"], row["ours"]


# ---------------------------------------------------------------------------- make_report


def test_make_report(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(DATA, results)
    r = subprocess.run(["bash", os.path.join(SCRIPTS, "make_report.sh"), str(results)],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHON=sys.executable, PLOT_FORMATS="png"))
    assert r.returncode == 0, r.stderr
    assert (results / "h100-sxm" / "plots" / "decode_70b_bf16_ctx2048_roofline.png").exists()
    assert (results / "h200" / "plots" / "decode_70b_bf16_ctx2048_utilization.png").exists()
    assert (results / "compare" / "decode_70b_bf16_ctx2048.md").exists()
    assert (results / "compare" / "compare_h100-sxm_vs_h200_decode_70b_bf16_ctx2048.png").exists()
    assert "holds" in (results / "CLAIMS.md").read_text(encoding="utf-8")


def make_report(results, cwd=None, script=os.path.join(SCRIPTS, "make_report.sh")):
    return subprocess.run(["bash", script, results], capture_output=True, text=True,
                          timeout=120, cwd=cwd,
                          env=dict(os.environ, PYTHON=sys.executable, PLOT_FORMATS="png"))


def test_make_report_resolves_results_dir_against_the_callers_folder(tmp_path):
    # A copy of the scripts in a repository of its own, so a failure cannot touch the real one.
    repo = tmp_path / "repo"
    shutil.copytree(SCRIPTS, repo / "scripts", ignore=shutil.ignore_patterns("tests"))
    shutil.copytree(DATA, repo / "results")
    caller = tmp_path / "caller"
    shutil.copytree(DATA, caller / "results")
    r = make_report("results", cwd=str(caller), script="../repo/scripts/make_report.sh")
    assert r.returncode == 0, r.stderr
    assert (caller / "results" / "CLAIMS.md").exists()
    assert not (repo / "results" / "CLAIMS.md").exists()
    assert not (repo / "results" / "h200" / "plots").exists()


def test_make_report_keeps_formats_it_does_not_make_and_reruns(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(DATA, results)
    plots = results / "h200" / "plots"
    plots.mkdir()
    (plots / "committed.svg").write_text("<svg/>", encoding="utf-8")
    (plots / "stale.png").write_text("old", encoding="utf-8")
    for _ in range(2):  # the second run replaces its own CLAIMS.md and compare tables
        r = make_report(str(results))
        assert r.returncode == 0, r.stderr
    assert (plots / "committed.svg").exists()          # PLOT_FORMATS=png: SVGs left alone
    assert not (plots / "stale.png").exists()          # PNGs regenerated
    assert (plots / "decode_70b_bf16_ctx2048_utilization.png").exists()
    assert not list(results.glob("h200/.plots*"))


def test_plot_skips_other_json_only_when_asked(tmp_path):
    other = tmp_path / "ceilings.json"
    other.write_text(json.dumps({"read_gbps": 3000.0, "machine": {"gpu_name": "x"}}),
                     encoding="utf-8")
    r = run_script("plot.py", str(other), H200, "--out", str(tmp_path / "p"))
    assert r.returncode == 1 and "not a truthput RunResult" in r.stderr
    r = run_script("plot.py", "--skip-other", "--formats", "png", str(other), H200,
                   "--out", str(tmp_path / "p"))
    assert r.returncode == 0, r.stderr
    assert "skipping" in r.stderr
    assert (tmp_path / "p" / "decode_70b_bf16_ctx2048_throughput.png").exists()


GB_COMPARE = "/usr/share/benchmark/compare.py"  # Google Benchmark's own, libbenchmark-tools


def test_google_benchmarks_compare_tool_reads_bench_kernels_json(tmp_path):
    """bench_kernels writes Google Benchmark's JSON (--benchmark_out), so that tool's compare.py
    pairs two runs point by point: here the committed H100 and H200 kernel files."""
    if not os.path.exists(GB_COMPARE):
        pytest.skip(f"{GB_COMPARE} not installed (scripts/setup.sh installs libbenchmark-tools)")
    a = os.path.join(REPO, "results", "h100-sxm", "bench_kernels_gemm_impls_70b_h100.json")
    b = os.path.join(REPO, "results", "h200", "bench_kernels_gemm_impls_70b_h200.json")
    out = tmp_path / "compared.json"
    r = subprocess.run([sys.executable, GB_COMPARE, "--no-color", "--no-utest", "-d", str(out),
                        "benchmarks", a, b], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    runs = []
    for path in (a, b):
        with open(path, encoding="utf-8") as f:
            runs.append({x["name"]: x for x in json.load(f)["benchmarks"]})
    # Every point both files hold, and no other, each with both files' times (and the tool's own
    # geometric-mean row).
    compared = [c for c in json.loads(out.read_text(encoding="utf-8"))
                if c["name"] != "OVERALL_GEOMEAN"]
    assert {c["name"] for c in compared} == set(runs[0]) & set(runs[1])
    assert len(compared) >= 100
    for c in compared:
        m = c["measurements"][0]
        old, new = runs[0][c["name"]]["real_time"], runs[1][c["name"]]["real_time"]
        assert m["real_time"] == old and m["real_time_other"] == new
        assert m["time"] == pytest.approx((new - old) / old)
        assert c["name"] in r.stdout
