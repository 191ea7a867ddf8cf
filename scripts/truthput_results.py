"""Shared reading of truthput RunResult JSON files (results/results.proto) for the report scripts.

A result file uses the proto field names (snake_case). Optional fields a run did not measure
are absent; uint64/int64 values and special doubles ("NaN", "Infinity") may be strings. `load`
turns a file into plain dicts and lists where every field of the schema is present: scalars
that were absent get the proto3 default, optional (measured) fields that were absent are None,
so "not measured" never reads as zero.

Only the standard library is used here; plotting lives in plot.py / compare.py.
"""

import json
import math
import os
import re

# Optional (proto3 `optional`) numeric fields: absent -> None.
POINT_OPTIONAL = (
    "step_ms_p50", "step_ms_p99", "step_rel_spread", "step_ms_p50_rel_ci", "reps",
    "tokens_per_s", "achieved_gbps",
    "mbu", "achieved_tflops", "mfu", "roofline_eff", "usd_per_mtok",
    "attention_time_share", "attention_flops_share", "mbu_measured", "mfu_measured",
    "smi_util_pct", "smi_mem_util_pct", "gpm_sm_util_pct", "gpm_tensor_util_pct",
    "gpm_dram_bw_util_pct", "sm_clock_mhz", "power_w", "joules_per_token",
    "sm_active_pct", "tensor_active_pct", "dram_read_gbytes", "dram_write_gbytes", "dram_gbps",
    "dram_bytes_over_model", "hw_tflops", "tensor_flops_over_model", "occupancy_pct",
    "l2_hit_pct", "gpu_temp_c",
)
# Plain numeric fields: absent -> 0 (proto3 default).
POINT_NUMBERS = (
    "batch", "context", "seq_len", "tokens", "model_gbytes", "model_gflops", "bound_ms",
    "bound_tokens_per_s", "intensity", "footprint_gbytes", "tp_needed",
)
POINT_STRINGS = ("bound", "residency", "skip_reason", "throttle")
POINT_BOOLS = ("fits", "skipped")

OP_OPTIONAL = (
    "measured_ms", "share", "achieved_gbps", "achieved_tflops", "dram_read_gbytes",
    "dram_write_gbytes", "sm_active_pct", "tensor_active_pct", "hw_tflops",
)
OP_NUMBERS = ("count", "gbytes", "gflops", "bound_ms")
OP_STRINGS = ("name", "kind", "bound", "implementation")

CONFIG_NUMBERS = ("context", "tp")
CONFIG_OPTIONAL = ("usd_per_gpu_hour",)  # absent: no price was known
CONFIG_STRINGS = ("tool", "phase", "model_arg", "gemm", "command_line", "profile")
CONFIG_BOOLS = ("predict_only", "graph", "verify")

MODEL_NUMBERS = (
    "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim", "ffn_size",
    "vocab_size", "rope_theta", "max_context", "rms_norm_eps", "num_experts",
    "experts_per_token",
)
MODEL_STRINGS = ("name", "source")

GPU_NUMBERS = (
    "bf16_tflops", "fp8_tflops", "fp32_tflops", "mem_bandwidth_gbps", "memory_gbytes",
    "l2_mbytes", "sm_count", "usd_per_hour",
)
GPU_STRINGS = ("id", "display_name", "source")

MACHINE_NUMBERS = ("sm_count", "memory_gbytes", "l2_mbytes", "sm_clock_mhz_max",
                   "mem_clock_mhz_max")
MACHINE_STRINGS = ("gpu_name", "compute_capability", "driver_version", "cuda_runtime_version",
                   "cublas_version", "gpu_uuid", "hostname")

# workloads/model_spec.proto DType, as JSON writes it (name) or as a number.
DTYPE_NAMES = {0: "DTYPE_UNSPECIFIED", 1: "BF16", 2: "FP16", 3: "FP8_E4M3", 4: "FP32"}
DTYPE_SHORT = {"BF16": "bf16", "FP16": "fp16", "FP8_E4M3": "fp8", "FP32": "fp32"}

# decode_<model>_<precision>_ctx<N>[_b1_eager].json (and prefill_..., same shape).
RESULT_NAME = re.compile(
    r"^(?P<phase>decode|prefill)_(?P<model>[A-Za-z0-9.\-]+)_(?P<precision>[A-Za-z0-9]+)"
    r"_ctx(?P<context>\d+)(?P<eager>_b1_eager)?\.json$")


class ResultError(Exception):
    """A result file that cannot be read or is not a RunResult."""


class NotARunResult(ResultError):
    """Valid JSON, but some other message (e.g. a bench_ceilings file)."""


def to_number(value):
    """A JSON number, or a string holding one (int64 and special doubles), as int or float."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        s = value.strip()
        special = {"nan": math.nan, "infinity": math.inf, "-infinity": -math.inf,
                   "inf": math.inf, "-inf": -math.inf}
        if s.lower() in special:
            return special[s.lower()]
        try:
            return int(s)
        except ValueError:
            try:
                return float(s)
            except ValueError:
                return None
    return None


class _Bad(Exception):
    """A field of the wrong type or range; normalize names the file and field."""


def _number(value, field, optional):
    """A field's number. A value that is not a number is refused (_Bad); so is a non-finite one
    in a plain field. In an optional (measured) field NaN or ±Infinity reads as None: not
    measured, as an absent field, so no table or verdict does arithmetic on it."""
    v = to_number(value)
    if value is not None and (v is None or isinstance(v, bool)):
        raise _Bad(f"{field}: not a number ({value!r})")
    if v is not None and not math.isfinite(v):
        if optional:
            return None
        raise _Bad(f"{field}: not a finite number ({value!r})")
    return v


def _fill(src, numbers=(), optional=(), strings=(), bools=(), lists=(), where=""):
    src = src if isinstance(src, dict) else {}
    out = dict(src)  # keep fields this module does not know (newer schema)
    for k in numbers:
        v = _number(src.get(k), where + k, False)
        out[k] = 0 if v is None else v
    for k in optional:
        out[k] = _number(src.get(k), where + k, True)
    for k in strings:
        v = src.get(k)
        out[k] = "" if v is None else str(v)
    for k in bools:
        out[k] = bool(src.get(k, False))
    for k in lists:
        v = src.get(k)
        out[k] = list(v) if isinstance(v, list) else []
    return out


def _strings(value, field):
    """A list of strings (absent: empty); anything else is refused."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Bad(f"{field}: not a list of strings ({value!r})"[:200])
    return list(value)


def _dtype(value):
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, int):
        return DTYPE_NAMES.get(value, str(value))
    return value or "DTYPE_UNSPECIFIED"


def normalize(raw, path=""):
    """A parsed RunResult JSON object -> plain dicts with every schema field present."""
    if (not isinstance(raw, dict) or not ("config" in raw or "points" in raw)
            or not isinstance(raw.get("points", []), list)):
        raise NotARunResult(f"{path or 'input'}: not a truthput RunResult (no config/points)")
    if not all(isinstance(p, dict) and isinstance(p.get("ops", []), (list, type(None)))
               for p in raw.get("points", [])):
        raise NotARunResult(f"{path or 'input'}: not a truthput RunResult (a point that is "
                            f"not an object, or its ops not a list)")
    try:
        cfg, points = _config(raw), _points(raw)
        unavailable = _strings(raw.get("unavailable"), "unavailable")
        datasheet = _fill(raw.get("datasheet"), GPU_NUMBERS, (), GPU_STRINGS, (),
                          ("aliases", "device_names"), "datasheet.")
        machine = _fill(raw.get("machine"), MACHINE_NUMBERS, (), MACHINE_STRINGS, (), (),
                        "machine.")
        ridge = _number(raw.get("predicted_ridge_batch"), "predicted_ridge_batch", True)
        knee = _number(raw.get("measured_knee_batch"), "measured_knee_batch", True)
    except _Bad as e:
        raise ResultError(f"{path or 'input'}: {e}") from None
    run = {
        "path": path,
        "truthput_version": str(raw.get("truthput_version", "")),
        # The commit the binary was built from ("" in files before the field): see results.proto.
        "truthput_build": str(raw.get("truthput_build", "")),
        "started_at": str(raw.get("started_at", "")),
        "config": cfg,
        "datasheet": datasheet,
        "machine": machine,
        "has_machine": isinstance(raw.get("machine"), dict) and bool(raw.get("machine")),
        "points": points,
        "predicted_ridge_batch": ridge,
        "measured_knee_batch": knee,
        "unavailable": unavailable,
    }
    return run


def _config(raw):
    cfg = _fill(raw.get("config"), CONFIG_NUMBERS, CONFIG_OPTIONAL, CONFIG_STRINGS, CONFIG_BOOLS,
                ("batches", "seq_lens"), "config.")
    cfg["notes"] = _strings(cfg.get("notes"), "config.notes")
    cfg["batches"] = [_number(b, "config.batches", False) for b in cfg["batches"]]
    cfg["seq_lens"] = [_number(s, "config.seq_lens", False) for s in cfg["seq_lens"]]
    model = _fill(cfg.get("model"), MODEL_NUMBERS, (), MODEL_STRINGS, ("tied_embeddings",),
                  (), "config.model.")
    model["weight_dtype"] = _dtype(model.get("weight_dtype"))
    model["kv_dtype"] = _dtype(model.get("kv_dtype"))
    cfg["model"] = model
    return cfg


def _points(raw):
    """The points, sorted by batch; each batch a positive integer, none twice (per prompt
    length), since every script looks points up by batch."""
    points, seen = [], set()
    for i, p in enumerate(raw.get("points", [])):
        where = f"points[{i}]."
        batch = to_number(p.get("batch"))
        if isinstance(batch, float) and batch.is_integer():
            batch = int(batch)
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise _Bad(f"{where}batch: not a positive integer ({p.get('batch')!r})")
        q = _fill(p, POINT_NUMBERS, POINT_OPTIONAL, POINT_STRINGS, POINT_BOOLS, (), where)
        q["batch"] = batch
        q["notes"] = _strings(p.get("notes"), where + "notes")
        # Every timed step in the order timed (older files: none); each a time, so a number
        # >= 0, as bench/report.cc holds a loaded file's samples to.
        samples = p.get("step_ms_samples")
        if samples is not None and not isinstance(samples, list):
            raise _Bad(f"{where}step_ms_samples: not a list ({samples!r})"[:200])
        q["step_ms_samples"] = []
        for j, v in enumerate(samples or []):
            ms = _number(v, f"{where}step_ms_samples[{j}]", False)
            if ms is None or ms < 0:
                raise _Bad(f"{where}step_ms_samples[{j}]: not a time ({v!r})")
            q["step_ms_samples"].append(ms)
        key = (batch, q["seq_len"])
        if key in seen:
            raise _Bad(f"{where}batch: batch {batch}"
                       f"{f' (seq {key[1]})' if key[1] else ''} appears twice")
        seen.add(key)
        q["ops"] = [_fill(o, OP_NUMBERS, OP_OPTIONAL, OP_STRINGS, (), (), f"{where}ops[{j}].")
                    for j, o in enumerate(p.get("ops") or [])]
        points.append(q)
    points.sort(key=lambda q: (q["batch"], q["seq_len"], q["context"]))
    return points


# The starts of the notes bench_decode and bench_prefill put on a point whose step time is not
# a settled one (measured_columns.cc's StepTimingNotes).
TIMING_NOTE_STARTS = ("step median not settled", "some timing rounds ran ungated")
# The fewest samples a ~95% confidence interval of a median can come from (bench/stats.h).
MIN_REPS_FOR_MEDIAN_CI = 6


def timing_caveats(point):
    """The point's notes that qualify its step time (empty for a settled, gated timing). Files
    made before those notes existed (2026-11-28) get one where their own reps show a median
    too few steps could settle."""
    caveats = [n for n in point.get("notes", []) if n.startswith(TIMING_NOTE_STARTS)]
    reps = point.get("reps")
    if (reps and reps < MIN_REPS_FOR_MEDIAN_CI
            and not any(n.startswith(TIMING_NOTE_STARTS[0]) for n in caveats)):
        caveats.append(f"step median of {reps:g} steps, too few for a ~95% interval of it")
    return caveats


EXIT_CANNOT_WRITE = 2  # the scripts' exit status for an output they cannot write


def write_text(path, text):
    """Writes text to path, making its folder first. Raises OSError (see cannot_write)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def output_refusal(path, inputs=(), overwrite=False):
    """Why an output may not be written to path (one line), or None where it may: never onto an
    input file (the table would replace a result), nor onto an existing file unless overwrite."""
    for src in inputs:
        if os.path.exists(path) and os.path.exists(src) and os.path.samefile(path, src):
            return f"{path}: is the input {src}; not overwriting it"
    if os.path.lexists(path) and not overwrite and not os.path.isdir(path):
        return f"{path}: already exists (pass --overwrite to replace it)"
    return None


def cannot_write(error, path):
    """One line for an OSError met writing an output: "<path>: cannot write (<why>)".

    A file where a folder must be (os.makedirs raises "File exists") reads "Not a directory"."""
    why = "Not a directory" if isinstance(error, FileExistsError) else error.strerror or error
    return f"{error.filename or path}: cannot write ({why})"


def load(path):
    """Read one RunResult JSON file. Raises ResultError with a one-line reason on failure."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except OSError as e:
        raise ResultError(f"{path}: cannot read ({e.strerror or e})") from e
    except ValueError as e:
        raise ResultError(f"{path}: not valid JSON ({e})") from e
    except RecursionError as e:  # nesting deeper than the parser's stack: not a result either
        raise ResultError(f"{path}: not valid JSON (nested too deeply)") from e
    return normalize(raw, path)


# ----------------------------------------------------------------------------------- labels


def model_name(run):
    m = run["config"]["model"]
    return m.get("name") or run["config"].get("model_arg") or "unknown model"


def gpu_name(run):
    """The GPU the run measured (machine.gpu_name), else the datasheet's name."""
    return (run["machine"].get("gpu_name") or run["datasheet"].get("display_name")
            or run["datasheet"].get("id") or "unknown GPU")


def different_cards(a, b):
    """(A's GPU UUID, B's) where both runs name their card and the cards differ, else None."""
    ua, ub = a["machine"].get("gpu_uuid"), b["machine"].get("gpu_uuid")
    return (ua, ub) if ua and ub and ua != ub else None


def gpu_id(run):
    return run["datasheet"].get("id") or gpu_name(run)


def precision(run):
    """Weight precision, short: "bf16", "fp8", ..."""
    dt = run["config"]["model"].get("weight_dtype", "")
    return DTYPE_SHORT.get(dt, (dt or "?").lower())


def batch_label(runs):
    """A batch axis's name: a prefill batch is prompts, a decode batch sequences."""
    if all(r["config"].get("phase") == "prefill" for r in runs):
        return "batch (prompts processed together)"
    return "batch (sequences decoded together)"


def context_label(run):
    cfg = run["config"]
    if cfg.get("phase") == "prefill":
        seqs = sorted({p["seq_len"] for p in run["points"]}) or cfg.get("seq_lens") or []
        return "prompt " + ",".join(str(s) for s in seqs) if seqs else "prefill"
    return f"ctx {cfg.get('context', 0)}"


def label(run, with_gpu=True):
    """One-line description of a run: model, GPU, context, precision (+ non-default knobs)."""
    cfg = run["config"]
    parts = [model_name(run)]
    if with_gpu:
        parts.append(gpu_name(run))
    parts.append(context_label(run))
    parts.append(precision(run))
    if cfg.get("phase") and cfg["phase"] != "decode":
        parts.append(cfg["phase"])
    return ", ".join(parts + knobs(cfg))


def short_label(run):
    """Label without the model (for legends of runs of one model)."""
    return " ".join([gpu_id(run), context_label(run), precision(run)] + knobs(run["config"]))


def knobs(cfg):
    """The non-default settings a label names: TP degree, prediction only, eager launches."""
    settings = [f"tp {cfg['tp']}"] if cfg.get("tp", 0) > 1 else []
    if cfg.get("predict_only"):
        settings.append("predicted")
    elif not cfg.get("graph", True):
        settings.append("eager")
    return settings


def stem(run):
    return os.path.splitext(os.path.basename(run["path"] or "run"))[0]


# ------------------------------------------------------------------------------- numerics


def peak_tflops(run):
    """Dense tensor peak of the run's weight precision, from its datasheet."""
    ds = run["datasheet"]
    if precision(run) == "fp8" and ds.get("fp8_tflops"):
        return ds["fp8_tflops"]
    if precision(run) == "fp32" and ds.get("fp32_tflops"):
        return ds["fp32_tflops"]
    return ds.get("bf16_tflops") or 0


def bandwidth_gbps(run):
    return run["datasheet"].get("mem_bandwidth_gbps") or 0


def measured(point):
    """True when the point was timed (not skipped, not a prediction): tokens/s a number above 0
    (a "NaN", 0 or negative tokens/s is no measurement)."""
    tps = point.get("tokens_per_s")
    return (not point.get("skipped") and isinstance(tps, (int, float)) and math.isfinite(tps)
            and tps > 0)


def measured_tps(point):
    """The point's tokens/s, or None where it was not measured (see measured)."""
    return point.get("tokens_per_s") if measured(point) else None


def measured_points(run):
    return [p for p in run["points"] if measured(p)]


def point_at(run, batch, seq_len=None):
    for p in run["points"]:
        if p["batch"] == batch and (seq_len is None or p["seq_len"] == seq_len):
            return p
    return None


def series(run):
    """Points split into curves along the batch axis: [(suffix, points)].

    Decode has one curve; prefill has one per prompt length.
    """
    pts = [p for p in run["points"] if not p.get("skipped")]
    seqs = sorted({p["seq_len"] for p in pts})
    if run["config"].get("phase") == "prefill" and len(seqs) > 1:
        return [(f"seq {s}", [p for p in pts if p["seq_len"] == s]) for s in seqs]
    return [("", pts)]


def parse_result_name(filename):
    """decode_70b_bf16_ctx2048[_b1_eager].json -> dict, or None if the name does not match."""
    m = RESULT_NAME.match(os.path.basename(filename))
    if not m:
        return None
    return {"phase": m["phase"], "model": m["model"], "precision": m["precision"],
            "context": int(m["context"]), "eager": bool(m["eager"])}


def fmt(value, digits=3, none="—"):
    """Compact number for tables: significant digits, no scientific notation for usual ranges."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return none
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()
                                  and abs(value) >= 10 ** digits):
        return f"{int(value)}"
    a = abs(value)
    if a == 0:
        return "0"
    if a >= 10 ** digits:
        return f"{value:.0f}"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(a))))
    return f"{value:.{decimals}f}"


def pct(fraction, digits=2, none="—"):
    """A fraction (0..1) as a percent string."""
    if fraction is None:
        return none
    return fmt(fraction * 100, digits) + "%"
