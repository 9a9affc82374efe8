"""``solve calibrate``: fit the cost model's named factors to a user's own benchmark results.

Given measured runs (the calibration CSV format, or the JSON / JSONL that ``vllm bench serve`` and
SGLang's ``bench_serving`` save) and the deployment they measured, it predicts every run with the
engine simulator, fits the chosen factors (:mod:`solver.calibrate.fit`), prints the error before
and after, and writes a cost-model file that an instance includes with
``"cost_model": {"include": "fitted.json"}``.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import click

from ..api import EXIT_BAD_INPUT
from ..calibrate.fit import FACTORS, Param, current_value, fit, predictions
from ..calibrate.measurements import (
    Deployment,
    Measurement,
    read_benchmark_results,
    read_latency_csv,
)
from ..calibrate.predict import resolve
from ..input.errors import InputError, closest, load_json

DEFAULT_FACTORS = ("compute_efficiency", "memory_efficiency", "step_overhead_us", "request_overhead_ms")
_DEPLOYMENT_KEYS = {"model": str, "gpu": str, "engine": str, "tp": int, "pp": int, "dp": int, "ep": int,
                    "weights": str, "kv": str, "gpus_per_node": int}


def parse_deployment(text: str) -> Deployment:
    """``model=llama3.1-70b-instruct,gpu=h100-sxm-80gb,engine=vllm,tp=4,weights=fp8,kv=fp8``."""
    fields: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in _DEPLOYMENT_KEYS:
            raise InputError("--deployment", key, part, f"expected key=value with keys {sorted(_DEPLOYMENT_KEYS)}"
                             + closest(key, _DEPLOYMENT_KEYS))
        try:
            fields[key] = _DEPLOYMENT_KEYS[key](value.strip())
        except ValueError:
            raise InputError("--deployment", key, value, "expected an integer") from None
    for need in ("model", "gpu", "engine"):
        if need not in fields:
            raise InputError("--deployment", need, None, "required: the model card, the GPU card and the engine")
    if "kv" in fields:
        fields["kv_cache"] = fields.pop("kv")
    return Deployment(**fields)


def deployment_of_instance(path: str) -> Deployment:
    """The deployment an instance pins: model, GPU, engine, its strategy pins and first precisions."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("model"), str):
        raise InputError(path, "model", data.get("model") if isinstance(data, dict) else None,
                         "--instance needs an instance whose model is a catalog card name")
    cluster, pins = data.get("cluster") or {}, data.get("strategy") or {}
    prec = data.get("precision") or {}
    gpu = cluster.get("gpu")
    if not isinstance(gpu, str):
        raise InputError(path, "cluster.gpu", gpu, "--instance needs a catalog GPU name")
    return Deployment(model=data["model"], gpu=gpu, engine=(data.get("search") or {}).get("engine", "vllm"),
                      tp=pins.get("tp", 1), pp=pins.get("pp", 1), dp=pins.get("dp", 1), ep=pins.get("ep", 1),
                      weights=pins.get("weights") or (prec.get("weights") or ["bf16"])[0],
                      kv_cache=pins.get("kv_cache") or (prec.get("kv_cache") or ["bf16"])[0],
                      gpus_per_node=cluster.get("gpus_per_node", 8))


def _errors(preds) -> tuple[float, float]:
    tpot = [abs(p.tpot_error) for p in preds if p.tpot_error is not None]
    ttft = [abs(p.ttft_error) for p in preds if p.ttft_error is not None]
    return (statistics.median(ttft) if ttft else math.nan, statistics.median(tpot) if tpot else math.nan)


@click.command("calibrate", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--deployment", default=None,
              help="What the result files measured: model=CARD,gpu=CARD,engine=vllm|sglang|trtllm,tp=,pp=,dp=,ep=,"
                   "weights=,kv= (not needed for a calibration CSV, whose rows say it).")
@click.option("--instance", "instance_path", default=None, type=click.Path(),
              help="Take the deployment from an instance (its model, GPU, engine, strategy pins, precisions).")
@click.option("--fit", "factors", default=",".join(DEFAULT_FACTORS), show_default=True,
              help=f"Factors to fit, comma-separated; any of {', '.join(FACTORS)}.")
@click.option("--statistic", type=click.Choice(["mean", "median"]), default="mean", show_default=True,
              help="Which of the results' TTFT / TPOT summaries to match.")
@click.option("--out", "out_file", default="cost_model.json", show_default=True, type=click.Path(dir_okay=False),
              help="The cost-model file to write (include it with \"cost_model\": {\"include\": FILE}).")
def calibrate_command(files: tuple[str, ...], deployment: str | None, instance_path: str | None, factors: str,
                      statistic: str, out_file: str) -> None:
    """Fit the cost model's efficiency factors to your own benchmark results.

    \b
    solve calibrate results/*.json --deployment model=llama3.1-70b-instruct,gpu=h100-sxm-80gb,engine=vllm,tp=4
    solve calibrate my_runs.csv --fit compute_efficiency,step_overhead_us --out fitted.json

    Exit codes: 0 fitted and written, 2 bad input (the file and line or field, and what is accepted).
    """
    try:
        code = _calibrate(files, deployment, instance_path, factors, statistic, out_file)
    except InputError as err:
        click.echo(f"error: {err}", err=True)
        code = EXIT_BAD_INPUT
    raise SystemExit(code)


def _calibrate(files, deployment, instance_path, factors, statistic, out_file) -> int:
    names = [f.strip() for f in factors.split(",") if f.strip()]
    for name in names:
        if name not in FACTORS:
            raise InputError("--fit", name, name, f"unknown factor{closest(name, FACTORS)}; accepted: {', '.join(FACTORS)}")
    dep = parse_deployment(deployment) if deployment else deployment_of_instance(instance_path) if instance_path \
        else None
    measurements: list[Measurement] = []
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise InputError(f, "", None, "file not found")
        if path.suffix.lower() == ".csv":
            rows, skipped = read_latency_csv(path)
            for rid, why in skipped:
                click.echo(f"skipped {rid}: {why}", err=True)
            measurements += rows
        else:
            if dep is None:
                raise InputError(f, "", None, "a benchmark result file does not say what it measured: pass "
                                 "--deployment model=...,gpu=...,engine=...,tp=... or --instance FILE")
            measurements += read_benchmark_results(path, dep, statistic)
    if not measurements:
        raise InputError(files[0], "", None, "no measurement the model can express")
    cases = [resolve(m) for m in measurements]
    params = [Param(n, current_value(cases[0], n)) for n in names]
    before = predictions(cases, [], statistic)
    result = fit(cases, params, statistic, steps=(2.0, 1.41, 1.19, 1.09, 1.04, 1.02, 1.01, 1.005), rounds=12,
                 reduce="mean")
    after = predictions(cases, params, statistic)
    click.echo(f"{len(cases)} measurement(s); fitted {', '.join(names)} ({result.evaluations} evaluations)")
    click.echo(f"  {'measurement':<40} {'TTFT ms: measured  before  after':>34}   {'TPOT ms: measured  before  after':>34}")
    for m, b, a in zip(measurements, before, after, strict=True):
        click.echo(f"  {m.id[:40]:<40} {m.ttft_ms or math.nan:16.1f} {b.ttft_ms:7.1f} {a.ttft_ms:7.1f}   "
                   f"{m.tpot_ms or math.nan:16.2f} {b.tpot_ms:7.2f} {a.tpot_ms:7.2f}")
    ttft_b, tpot_b = _errors(before)
    ttft_a, tpot_a = _errors(after)
    click.echo(f"median |error|: TTFT {100 * ttft_b:.1f}% -> {100 * ttft_a:.1f}%, "
               f"TPOT {100 * tpot_b:.1f}% -> {100 * tpot_a:.1f}%")
    doc = {
        "description": f"Fitted by solve calibrate on {len(cases)} measurement(s) from {', '.join(files)}",
        "cost_model": {p.factor: round(p.value, 6) for p in params},
        "error_before": {"ttft": round(ttft_b, 6), "tpot": round(tpot_b, 6)},
        "error_after": {"ttft": round(ttft_a, 6), "tpot": round(tpot_a, 6)},
        "measurements": [m.id for m in measurements],
    }
    try:
        Path(out_file).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InputError(out_file, "", None, f"cannot write the cost-model file ({exc.strerror})") from None
    for p in params:
        click.echo(f"  {p.factor} = {p.value:.6g}")
    click.echo(f"wrote {out_file}; use it with \"cost_model\": {{\"include\": \"{out_file}\"}}")
    return 0
