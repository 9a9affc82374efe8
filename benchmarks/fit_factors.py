"""Where the shipped efficiency factors come from: one joint fit on the offline and the latency rows.

The cost model's named factors (``solver/physics/efficiency.py`` per GPU family,
``solver/engines/*.py`` per engine) are fitted together, because each affects both kinds of data:

* offline throughput: the TensorRT-LLM tables of ``shared/calibration/published_measurements.json``
  (``benchmarks/fidelity.py``: 126 rows, Hopper and Blackwell);
* latency at a concurrency: the closed-loop rows of ``shared/calibration/latency`` the model covers
  (``benchmarks/latency_fidelity.py``: about 1,400 rows, vLLM, SGLang and TensorRT-LLM).

The loss is the median |log error| of offline throughput (weight 2) plus the medians of TTFT and
TPOT on every third covered latency row (the other two thirds stay unseen by the fit). The search is a coordinate search from the shipped values; it prints the
values to ship and the loss before and after. It is slow (tens of minutes on two cores): run it
after a change to the physics, then copy the printed factors into the two places above.

Usage: ``python benchmarks/fit_factors.py [--rounds 2] [--only engine=sglang] [--factor NAME]``
(``--only``: move just the factors of that scope; ``--factor``: just that factor; the others stay at
their shipped values).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import fidelity  # noqa: E402
import latency_fidelity as lf  # noqa: E402

from solver.calibrate.fit import FACTORS, Param, current_value, efficiency_with, loss  # noqa: E402
from solver.calibrate.measurements import read_latency_csv  # noqa: E402
from solver.input.catalog import gpu_card  # noqa: E402

OFFLINE_WEIGHT = 2.0
FIT_STRIDE = lf.FIT_STRIDE
FAMILY_FACTORS = ("compute_efficiency", "memory_efficiency", "moe_compute_efficiency", "layer_overhead_us",
                  "allreduce_per_peer")
ENGINE_FACTORS = ("step_overhead_us", "request_overhead_ms", "token_overhead_us", "moe_layer_overhead_us")
# Factors one value cannot stand for: TensorRT-LLM's front end differs by release (REQUEST_OVERHEAD_MS
# before 1.1, REQUEST_OVERHEAD_MS_SINCE_1_1 from it), so one fitted value would flatten the two.
NOT_FITTED = {("request_overhead_ms", "trtllm")}


def _offline_loss(rows, params: list[Param]) -> float:
    errs = []
    for row in rows:
        gpu = gpu_card(fidelity.GPU_MAP[row["gpu"]])
        base = fidelity.engine_efficiency(gpu)
        changes = {}
        for p in params:
            kind, _, name = p.scope.partition("=")
            if (kind == "family" and name == gpu.family) or (kind == "engine" and name == "trtllm"):
                attr, scale, _ = FACTORS[p.factor]
                changes[attr] = p.value * scale
        pred = fidelity.predict(row, dataclasses.replace(base, **changes))
        errs.append(abs(math.log(pred.predicted / pred.published)))
    return statistics.median(errs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", action="append", default=[], metavar="SCOPE",
                    help="move only the factors of this scope (e.g. engine=sglang, family=hopper); repeatable")
    ap.add_argument("--factor", action="append", default=[], metavar="NAME",
                    help="move only this factor (e.g. moe_compute_efficiency); repeatable")
    args = ap.parse_args(argv)
    offline = [r for r in fidelity.load_rows(fidelity.DEFAULT_DATA) if fidelity.skip_reason(r) is None]
    closed, _ = read_latency_csv(lf.DEFAULT_DATA)
    # Fit on every third covered row (by position in the file); the other two thirds are rows the
    # factors have not seen, which benchmarks/latency_fidelity.py --unseen reports on.
    cases = lf.resolve_all(closed)[0][::FIT_STRIDE]
    lf._CASES.extend(cases)
    params = []
    for family in ("hopper", "blackwell"):
        for f in FAMILY_FACTORS:
            inside = [c for c in cases if c.problem.ctx.hw.gpu.family == family]
            params.append(Param(f, current_value(inside[0], f), f"family={family}"))
    for eng in ("vllm", "sglang", "trtllm"):
        for f in ENGINE_FACTORS:
            if (f, eng) in NOT_FITTED:
                continue
            inside = [c for c in cases if c.measurement.deployment.engine == eng]
            params.append(Param(f, current_value(inside[0], f), f"engine={eng}"))
    ctx = multiprocessing.get_context("fork")
    t0 = time.perf_counter()
    with ctx.Pool(args.jobs) as pool:
        mapper = lf._PoolMap(pool)

        def total() -> tuple[float, float, float]:
            preds = list(mapper(None, [(c, efficiency_with(c, params), "mean") for c in cases]))
            lat = loss(preds)
            off = _offline_loss(offline, params)
            return lat + OFFLINE_WEIGHT * off, lat, off

        best, lat0, off0 = total()
        print(f"start: loss {best:.4f} (latency {lat0:.4f}, offline {off0:.4f})", flush=True)
        for _ in range(args.rounds):
            improved = False
            for p in params:
                if (args.only and p.scope not in args.only) or (args.factor and p.factor not in args.factor):
                    continue
                _, _, (lo, hi) = FACTORS[p.factor]
                for step in (1.41, 1.19, 1.09):
                    moved = True
                    while moved:
                        moved = False
                        start = p.value
                        for cand in (max(start * step, (hi - lo) * 1e-3 if start == 0 else 0), start / step):
                            cand = min(max(cand, lo), hi)
                            if cand == start:
                                continue
                            p.value = cand
                            trial, lat, off = total()
                            if trial < best - 1e-6:
                                best, moved, improved = trial, True, True
                                print(f"  {p.label} = {cand:.4g}: loss {trial:.4f} (latency {lat:.4f}, "
                                      f"offline {off:.4f})", flush=True)
                                break
                            p.value = start
            if not improved:
                break
    print(f"\nfitted in {time.perf_counter() - t0:.0f} s; loss {best:.4f}")
    for p in params:
        print(f"  {p.label:<44} {p.value:.4g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
