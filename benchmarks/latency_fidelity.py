"""Fidelity of the latency model: predicted TTFT and TPOT against measured serving runs.

Every row of the shared latency file (``shared/calibration/latency/measured_latency.csv``, closed
loops of C clients at full parallel layouts) that the model can express, and the published
request-rate rows of ``benchmarks/data/online_serving.json``, is predicted by the project's own
chain: the row becomes an instance (:mod:`solver.calibrate.predict`: the engine's default caps,
the engines' even layer split), the load the requests the benchmark sent (InferenceX: 10 x C
requests, lengths uniform on [0.8 len, len]), and the engine simulator serves them with the step
times of :mod:`solver.physics`. The figure of merit is the median absolute percentage error.

Rows the model does not cover are counted with the reason (disaggregated pools, attention data
parallelism, models without a card, a KV cache that cannot hold one request under the model's
memory accounting). ``--holdout`` re-fits the named latency factors with one model left out at a
time and reports the error on the model left out: the check on rows the factors have not seen.

Usage: ``python benchmarks/latency_fidelity.py [--rows] [--statistic mean|median] [--fit]
[--holdout] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from solver.calibrate.fit import Param, current_value, fit, predictions  # noqa: E402
from solver.calibrate.measurements import read_latency_csv, read_online_serving  # noqa: E402
from solver.calibrate.predict import Case, Prediction, predict, resolve  # noqa: E402
from solver.input.errors import InputError  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "calibration" / "latency" / "measured_latency.csv"
DEFAULT_ONLINE = ROOT / "benchmarks" / "data" / "online_serving.json"

# The latency factors the project ships, one per GPU family or engine (solver/physics/efficiency.py
# and solver/engines/*.py); --fit and --holdout search these.
LATENCY_PARAMS = [
    ("layer_overhead_us", "family=hopper"), ("layer_overhead_us", "family=blackwell"),
    ("allreduce_per_peer", "family=hopper"), ("allreduce_per_peer", "family=blackwell"),
    ("step_overhead_us", "engine=vllm"), ("step_overhead_us", "engine=sglang"), ("step_overhead_us", "engine=trtllm"),
    # TensorRT-LLM's front end is one figure before 1.1 and another from it: one fitted value would flatten them.
    ("request_overhead_ms", "engine=vllm"), ("request_overhead_ms", "engine=sglang"),
    ("token_overhead_us", "engine=vllm"), ("token_overhead_us", "engine=sglang"), ("token_overhead_us", "engine=trtllm"),
    ("moe_layer_overhead_us", "engine=vllm"), ("moe_layer_overhead_us", "engine=sglang"),
    ("moe_layer_overhead_us", "engine=trtllm"),
    ("moe_compute_efficiency", "family=hopper"), ("moe_compute_efficiency", "family=blackwell"),
]

_CASES: list[Case] = []
FIT_STRIDE = 3  # benchmarks/fit_factors.py fits on every third covered closed-loop row


def _work(args):
    index, eff, statistic = args
    return predict(_CASES[index], eff, statistic)


class _PoolMap:
    """``map`` over the cases in forked workers that already hold them (only indices travel)."""

    def __init__(self, pool):
        self.pool = pool
        self.index = {id(c): i for i, c in enumerate(_CASES)}

    def __call__(self, fn, items):
        del fn
        return self.pool.map(_work, [(self.index[id(c)], e, s) for c, e, s in items], chunksize=16)


def _median_abs(values: list[float]) -> float:
    return statistics.median(abs(v) for v in values) if values else math.nan


def _summary(preds: list[Prediction]) -> tuple[int, float, float, float, float]:
    tpot = [p.tpot_error for p in preds if p.tpot_error is not None]
    ttft = [p.ttft_error for p in preds if p.ttft_error is not None]
    return (len(preds), _median_abs(tpot), statistics.median(tpot) if tpot else math.nan,
            _median_abs(ttft), statistics.median(ttft) if ttft else math.nan)


def _line(label: str, preds: list[Prediction]) -> str:
    n, tpot, tpot_bias, ttft, ttft_bias = _summary(preds)
    return (f"  {label:<48} {n:5d}   TPOT {100 * tpot:5.1f}% ({100 * tpot_bias:+5.1f}%)   "
            f"TTFT {100 * ttft:5.1f}% ({100 * ttft_bias:+5.1f}%)")


def resolve_all(measurements) -> tuple[list[Case], list[tuple[str, str]]]:
    """Cases the model covers, and (id, reason) for the rest."""
    cases, skipped = [], []
    for m in measurements:
        try:
            case = resolve(m)
        except InputError as err:
            skipped.append((m.id, f"bad input: {err}"))
            continue
        p = predict(case)
        if not (math.isfinite(p.ttft_ms) and math.isfinite(p.tpot_ms)):
            skipped.append((m.id, "the model's KV cache cannot hold one request of this row"))
            continue
        cases.append(case)
    return cases, skipped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--online", type=Path, default=DEFAULT_ONLINE)
    ap.add_argument("--statistic", choices=["mean", "median"], default="mean",
                    help="which simulated statistic is compared with the measured figures")
    ap.add_argument("--rows", action="store_true", help="print every row")
    ap.add_argument("--fit", action="store_true", help="re-fit the latency factors on every covered row")
    ap.add_argument("--holdout", action="store_true", help="fit with each model left out, report on it")
    ap.add_argument("--holdout-factors", default="", metavar="F[,F]",
                    help="with --holdout: move only these factors (e.g. moe_layer_overhead_us), the others "
                    "stay at their shipped values")
    ap.add_argument("--holdout-models", default="", metavar="M[,M]",
                    help="with --holdout: leave out only these models (default every model in turn)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.data.is_file():
        print(f"latency data not found: {args.data} (pass --data)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    closed, skipped = read_latency_csv(args.data)
    online, skipped_online = read_online_serving(args.online) if args.online.is_file() else ([], [])
    cases, not_covered = resolve_all(closed + online)
    skipped += skipped_online + not_covered
    _CASES.extend(cases)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(args.jobs) as pool:
        mapper = _PoolMap(pool)
        preds = list(mapper(None, [(c, None, args.statistic) for c in cases]))
        by_id = {c.measurement.id: (c, p) for c, p in zip(cases, preds, strict=True)}
        closed_preds = [by_id[m.id][1] for m in closed if m.id in by_id]
        print(f"Latency fidelity: {len(cases)} rows predicted ({len(closed_preds)} closed-loop, "
              f"{len(cases) - len(closed_preds)} at a request rate), {len(skipped)} not covered; "
              f"simulated {args.statistic} vs measured")
        print("\nMedian absolute error (median signed error in brackets), closed-loop rows")
        print(_line("all", closed_preds))
        # benchmarks/fit_factors.py fits the shipped factors on every third covered row.
        print(_line("rows the factors were fitted on (every third)", closed_preds[::FIT_STRIDE]))
        print(_line("rows the fit never saw (the other two thirds)",
                    [p for i, p in enumerate(closed_preds) if i % FIT_STRIDE]))
        groups = defaultdict(lambda: defaultdict(list))
        for p in closed_preds:
            d = by_id[p.id][0].measurement.deployment
            family = by_id[p.id][0].problem.ctx.hw.gpu.family
            for kind, key in (("engine", d.engine), ("model", d.model), ("GPU", d.gpu), ("family", family),
                              ("model x GPU x engine", f"{d.model} {d.gpu} {d.engine}")):
                groups[kind][key].append(p)
        for kind, table in groups.items():
            print(f"\n  by {kind}")
            for key in sorted(table):
                print(_line(key, table[key]))
        print("\nRequest-rate rows (published online-serving tables; TPOT within 20% is the target)")
        for m in online:
            if m.id not in by_id:
                continue
            p = by_id[m.id][1]
            d = m.deployment
            load = f"{m.request_rate:g} req/s" if m.request_rate else f"all {m.concurrency} at once"
            ttft = "" if p.measured_ttft_ms is None else f"  TTFT {p.ttft_ms:8.1f} / {p.measured_ttft_ms:8.1f} ms"
            tpot = "" if p.measured_tpot_ms is None else \
                f"TPOT {p.tpot_ms:6.1f} / {p.measured_tpot_ms:6.1f} ms ({100 * p.tpot_error:+5.1f}%)"
            print(f"  {m.id} {d.engine:6} {d.model} tp{d.tp} {d.gpu} {m.input_tokens}/{m.output_tokens} {load:>14}: "
                  f"{tpot}{ttft}")
        if args.rows:
            print("\nEvery row: predicted / measured")
            for c, p in zip(cases, preds, strict=True):
                m = c.measurement
                d = m.deployment
                load = f"c{m.concurrency}" if m.concurrency else f"{m.request_rate:g}/s"
                print(f"  {m.id[:70]:70} {d.engine:6} tp{d.tp} {d.weights:5} {m.input_tokens}/{m.output_tokens} "
                      f"{load:>6}  TTFT {p.ttft_ms:8.1f} / {p.measured_ttft_ms or math.nan:8.1f}  "
                      f"TPOT {p.tpot_ms:7.2f} / {p.measured_tpot_ms or math.nan:7.2f}")
        reasons = defaultdict(int)
        for _, why in skipped:
            reasons[why] += 1
        print("\nNot covered")
        for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            print(f"  {n:5d}  {why}")
        out = {"statistic": args.statistic, "rows": len(cases), "closed_loop": _summary(closed_preds),
               "predictions": [p.__dict__ for p in preds]}
        if args.fit or args.holdout:
            out.update(_refit(cases, closed, args, mapper))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=float) + "\n", encoding="utf-8")
    print(f"\n{time.perf_counter() - t0:.1f} s")
    return 0


def _start_params(cases: list[Case]) -> list[Param]:
    """The shipped factors as the start of a search (read off a case in each scope)."""
    params = []
    for factor, scope in LATENCY_PARAMS:
        p = Param(factor, 0.0, scope)
        inside = [c for c in cases if p.applies(c)]
        if inside:
            p.value = current_value(inside[0], factor)
            params.append(p)
    return params


def _refit(cases: list[Case], closed, args, mapper) -> dict:
    ids = {m.id for m in closed}
    train = [c for c in cases if c.measurement.id in ids]
    out: dict = {}
    if args.fit:
        params = _start_params(train)
        res = fit(train, params, args.statistic, mapper)
        print(f"\nFit on {len(train)} closed-loop rows: loss {res.loss_before:.4f} -> {res.loss_after:.4f} "
              f"({res.evaluations} evaluations)")
        for p in params:
            print(f"  {p.label:<40} {p.value:10.4g}")
        out["fit"] = {p.label: p.value for p in params}
    if args.holdout:
        only = {f for f in args.holdout_factors.split(",") if f}
        print("\nHeld out: factors fitted without the model, error on it"
              + (f" (moving only {', '.join(sorted(only))})" if only else ""))
        models = sorted({c.measurement.deployment.model for c in train})
        if args.holdout_models:
            models = [m for m in models if m in args.holdout_models.split(",")]
        held = {}
        for model in models:
            rest = [c for c in train if c.measurement.deployment.model != model]
            test = [c for c in train if c.measurement.deployment.model == model]
            params = _start_params(rest)
            moving = [p for p in params if not only or p.factor in only]
            print(_line(f"{model} (shipped factors)", predictions(test, params, args.statistic, mapper)))
            fit(rest, moving, args.statistic, mapper, rounds=2, steps=(1.41, 1.19))
            preds = predictions(test, params, args.statistic, mapper)
            print(_line(f"{model} (fitted on the {len(rest)} others)", preds))
            print("    " + ", ".join(f"{p.label} {p.value:.4g}" for p in moving))
            held[model] = _summary(preds)
        out["holdout"] = held
    return out


if __name__ == "__main__":
    raise SystemExit(main())
