"""Fidelity of the disaggregated model: predicted TTFT and TPOT against measured prefill/decode-pool runs.

Every ``disagg`` row of the shared latency file (``shared/calibration/latency/measured_latency.csv``:
``prefill_*`` and ``decode_*`` columns give each pool's workers and parallelism; closed loops of C
clients, InferenceX lengths, 10 x C requests) that the model can express is predicted by the
project's own chain: the row becomes an instance with the engine's default caps, the pools a
prefill and a decode placement (each worker's TP, attention-DP ranks and EP; even layer split; a
GB200 / GB300 rack is one NVLink domain of 72 GPUs), the KV transfer
:func:`solver.physics.disagg.kv_transfer_s`, and the two-pool simulator
(:func:`solver.simulate.disagg.simulate_disagg`, the closed loop as a fixed point) serves the
requests with the engine's hand-off and decode polling (``kv_handoff_ms``,
``disagg_step_overhead_us``: solver/engines/*.py). The figure of merit is the median absolute error,
reported on the rows those two factors were fitted on (every third covered row, ``--fit``) and on
the others.

Rows not covered are counted with the reason. Most sweeps leave the worker counts blank: such a
row's pools have unknown sizes, so it is not covered rather than read as one worker each.

Usage: ``python benchmarks/disagg_fidelity.py [--rows] [--fit] [--jobs N]``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import multiprocessing
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from solver.calibrate.measurements import (  # noqa: E402
    GPU_CARDS,
    INFERENCEX_PROMPTS_PER_CLIENT,
    INFERENCEX_RANGE_RATIO,
    MODEL_CARDS,
    RANGE_RATIO_BY_ENGINE,
    _weights,
)
from solver.engines import engine  # noqa: E402
from solver.input.catalog import resolve_gpu  # noqa: E402
from solver.input.errors import InputError  # noqa: E402
from solver.physics import Config, even_split, kv_capacity_tokens  # noqa: E402
from solver.physics.disagg import kv_transfer_s, transfer_link  # noqa: E402
from solver.problem import build_problem, parse_instance  # noqa: E402
from solver.simulate.disagg import simulate_disagg  # noqa: E402
from solver.simulate.workload import closed_loop  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "calibration" / "latency" / "measured_latency.csv"
GPUS_PER_NODE = 8
# GB200 / GB300 NVL72 racks: one NVLink domain of 72 GPUs (solver/catalog_data/gpu/gb200-186gb.json), so
# a worker of 16 or 32 GPUs (wide attention DP and EP) sits inside it and the KV crosses NVLink.
NVLINK_DOMAIN_GPUS = {"gb200": 72, "gb300": 72}


def _int(row: dict[str, str], key: str, default: int = 1) -> int:
    text = (row.get(key) or "").strip()
    return int(text) if text else default


def _case(row: dict[str, str]):
    """(problem, prefill, decode, decode cap, transfer, requests) of a row, or (None, reason)."""
    card = MODEL_CARDS.get(row["model_path"])
    if card is None:
        return None, f"no catalog card for {row['model_path']}"
    gpu = GPU_CARDS.get(row["system"])
    if gpu is None:
        return None, f"no GPU card for {row['system']}"
    if not (row.get("prefill_num_workers") or "").strip() or not (row.get("decode_num_workers") or "").strip():
        # Most sweeps leave the worker counts blank: the pools' sizes (and so their load) are unknown,
        # and reading a blank as one worker would price a different deployment.
        return None, "the row does not give its worker counts (the pools' sizes are unknown)"
    if _int(row, "prefill_pp_size") > 1 or _int(row, "decode_pp_size") > 1:
        return None, "pipeline pools are not in the sample"
    weights = _weights(row.get("precision", ""), row.get("gemm_quant_mode", ""), row["model_path"])
    if weights is None:
        return None, f"weight format {row.get('gemm_quant_mode')!r} is not modelled"
    match = re.search(r"_c(\d+)_", row["id"])
    if not match:
        return None, "no concurrency in the row id"
    clients = int(match.group(1))
    ptp, dtp = _int(row, "prefill_tp_size"), _int(row, "decode_tp_size")
    padp, dadp = _int(row, "prefill_attention_dp_size"), _int(row, "decode_attention_dp_size")
    pep, dep = _int(row, "prefill_moe_ep_size"), _int(row, "decode_moe_ep_size")
    domain = NVLINK_DOMAIN_GPUS.get(row["system"], GPUS_PER_NODE)
    if max(ptp * padp, dtp * dadp) > domain or pep > ptp * padp or dep > dtp * dadp:
        return None, "a worker larger than the GPU's NVLink domain"
    px, dx = _int(row, "prefill_num_workers"), _int(row, "decode_num_workers")
    kv = "bf16" if weights == "bf16" else "fp8"
    isl, osl = int(row["isl"]), int(row["osl"])
    ttft, tpot = float(row["silicon_ttft_ms"]), float(row["silicon_tpot_ms"])
    if not (math.isfinite(ttft) and math.isfinite(tpot) and ttft > 0 and tpot > 0):
        return None, "no measurement"
    caps = engine(row["backend"]).defaults(resolve_gpu(gpu).memory_GiB, gpu)
    gpus = px * ptp * padp + dx * dtp * dadp
    decode_cap = max(int(caps["max_num_seqs"]), math.ceil(clients / dx))
    inst = {
        "name": row["id"], "model": card,
        "cluster": {"gpu": gpu, "gpus_per_node": domain, "nodes": max(1, math.ceil(gpus / domain))},
        "precision": {"weights": [weights], "kv_cache": [kv]},
        "workload": {"input_tokens": isl, "output_tokens": osl, "concurrency": clients},
        "limits": {"memory_utilization": caps["memory_utilization"], "max_num_seqs": decode_cap,
                   "max_num_batched_tokens": max(int(caps["max_num_batched_tokens"]), decode_cap)},
        "search": {"engine": row["backend"]},
    }
    try:
        problem = build_problem(parse_instance(inst))
    except InputError as err:
        return None, f"not an instance: {err.accepted[:60]}"
    a = problem.arch
    eng = engine(row["backend"])
    if not (eng.attention_dp_ok(a.is_moe, ptp, padp) and eng.attention_dp_ok(a.is_moe, dtp, dadp)):
        return None, "attention data parallelism the engine does not run at this TP degree"
    pcfg, dcfg = Config(ptp, 1, px, pep, weights, kv, padp), Config(dtp, 1, dx, dep, weights, kv, dadp)
    layers = (a.layers,)
    for cfg in (pcfg, dcfg):
        if kv_capacity_tokens(problem.ctx, cfg, layers) < isl + osl:
            return None, "a pool's KV cache cannot hold one request under the model's memory accounting"
    transfer = kv_transfer_s(problem.ctx, pcfg, dcfg, isl, transfer_link(problem.ctx, gpus))
    ratio = RANGE_RATIO_BY_ENGINE.get(row["backend"], INFERENCEX_RANGE_RATIO)
    lo = lambda n: max(1, int(n * ratio))  # noqa: E731
    reqs = closed_loop(clients, INFERENCEX_PROMPTS_PER_CLIENT * clients, (lo(isl), isl), (lo(osl), osl), seed=0)
    return (problem, (pcfg, tuple(even_split(a.layers, 1))), (dcfg, layers), decode_cap, transfer, reqs,
            ttft, tpot), ""


_CASES: list = []  # (row, case) of every covered row, shared with the worker processes (fork)
FIT_STRIDE = 3  # --fit fits on every third covered row, in file order; the others are never seen by it
ENGINES = ("sglang", "trtllm", "vllm")


def _predict(args):
    """Simulated mean (TTFT, TPOT) of covered row ``index``, its engine's disagg factors optionally replaced."""
    index, handoff_ms, step_us = args
    row, (problem, pre, dec, cap, transfer, reqs, _, _) = _CASES[index]
    if handoff_ms is not None or step_us is not None:
        eff = problem.ctx.eff
        eff = dataclasses.replace(eff, kv_handoff_s=eff.kv_handoff_s if handoff_ms is None else handoff_ms * 1e-3,
                                  disagg_step_overhead_s=(eff.disagg_step_overhead_s if step_us is None
                                                          else step_us * 1e-6))
        problem = dataclasses.replace(problem, ctx=dataclasses.replace(problem.ctx, eff=eff))
    sim = simulate_disagg(problem, pre, dec, cap, transfer, reqs)
    if sim.completed == 0:
        return None
    return sim.ttft_ms.mean, sim.tpot_ms.mean


def _median_error(pool, indices, handoff_ms, step_us, which):
    preds = pool.map(_predict, [(i, handoff_ms, step_us) for i in indices])
    col = 0 if which == "ttft" else 1
    errs = [abs(p[col] - m) / m for i, p in zip(indices, preds, strict=True) if p is not None
            for m in (_CASES[i][1][6 + col],)]
    return statistics.median(errs) if errs else math.inf


def _fit(pool) -> dict[str, tuple[float, float]]:
    """Per engine, on the fitted third: the decode step overhead by TPOT, then the hand-off by TTFT."""
    out = {}
    for name in ENGINES:
        mine = [i for i in range(0, len(_CASES), FIT_STRIDE) if _CASES[i][0]["backend"] == name]
        if not mine:
            continue
        step = min(STEP_GRID_US, key=lambda v: _median_error(pool, mine, None, v, "tpot"))
        handoff = min(HANDOFF_GRID_MS, key=lambda v: _median_error(pool, mine, v, step, "ttft"))
        out[name] = (handoff, step)
        print(f"  fitted {name} on {len(mine)} rows: kv_handoff_ms {handoff:g}, disagg_step_overhead_us {step:g}")
    return out


STEP_GRID_US = (0.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0)
HANDOFF_GRID_MS = (0.0, 25.0, 50.0, 75.0, 100.0, 125.0, 150.0, 175.0, 200.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--rows", action="store_true", help="print every predicted row")
    ap.add_argument("--fit", action="store_true",
                    help="fit each engine's kv_handoff_ms and disagg_step_overhead_us on every third row")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    with open(args.data, encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["mode"] == "disagg"]
    skipped: Counter[str] = Counter()
    for row in rows:
        case, why = _case(row)
        if case is None:
            skipped[why] += 1
            continue
        _CASES.append((row, case))
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        fitted = _fit(pool) if args.fit else {}
        jobs = [(i, *fitted.get(c[0]["backend"], (None, None))) for i, c in enumerate(_CASES)]
        preds = pool.map(_predict, jobs)
    results = []
    for i, ((row, case), pred) in enumerate(zip(_CASES, preds, strict=True)):
        if pred is None:
            skipped["the simulated pools complete no request"] += 1
            continue
        results.append((row, pred[0], pred[1], case[6], case[7], i % FIT_STRIDE == 0))
    print(f"Disaggregated fidelity: {len(results)} rows predicted, {sum(skipped.values())} not covered, "
          f"{len(rows)} disaggregated rows in {Path(args.data).name}; simulated mean vs measured\n")

    def errs(sel):
        te = [abs(p - m) / m for _, p, _, m, _, _ in sel]
        pe = [abs(p - m) / m for _, _, p, _, m, _ in sel]
        st = [(p - m) / m for _, p, _, m, _, _ in sel]
        sp = [(p - m) / m for _, _, p, _, m, _ in sel]
        return (f"TPOT {statistics.median(pe):6.1%} ({statistics.median(sp):+6.1%})   "
                f"TTFT {statistics.median(te):6.1%} ({statistics.median(st):+6.1%})")

    if results:
        print(f"  {'all':48s} {len(results):5d}   {errs(results)}")
        seen = [r for r in results if r[5]]
        unseen = [r for r in results if not r[5]]
        print(f"  {'rows the factors are fitted on (every third)':48s} {len(seen):5d}   {errs(seen)}")
        print(f"  {'rows never seen by the fit':48s} {len(unseen):5d}   {errs(unseen)}")
        groups = defaultdict(list)
        for r in results:
            row = r[0]
            groups[f"{row['backend']} {MODEL_CARDS[row['model_path']]} {GPU_CARDS[row['system']]}"].append(r)
        for key in sorted(groups):
            print(f"  {key:48s} {len(groups[key]):5d}   {errs(groups[key])}")
    if args.rows:
        for row, pt, pp, mt, mp, _ in results:
            print(f"  {row['id'][:70]:70s} TTFT {pt:8.1f} / {mt:8.1f}  TPOT {pp:7.2f} / {mp:7.2f}")
    print("\nNot covered")
    for why, n in skipped.most_common():
        print(f"  {n:5d}  {why}")
    print(f"\n{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
