"""Fidelity of the disaggregated model: predicted TTFT and TPOT against measured prefill/decode-pool runs.

Every ``disagg`` row of the shared latency file (``shared/calibration/latency/measured_latency.csv``:
``prefill_*`` and ``decode_*`` columns give each pool's workers and parallelism; closed loops of C
clients, InferenceX lengths uniform on [0.8 len, len], 10 x C requests) that the model can express
is predicted by the project's own chain: the row becomes an instance with the engine's default
caps, the pools a prefill and a decode placement (even layer split), the KV transfer
:func:`solver.physics.disagg.kv_transfer_s`, and the two-pool simulator
(:func:`solver.simulate.disagg.simulate_disagg`, the closed loop as a fixed point) serves the
requests. No factor is fitted to these rows. The figure of merit is the median absolute error.

Rows not covered are counted with the reason (attention data parallelism in a pool, no model
card, pipeline pools, a pool that cannot hold the model).

Usage: ``python benchmarks/disagg_fidelity.py [--rows] [--limit N]``.
"""

from __future__ import annotations

import argparse
import csv
import math
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
    if _int(row, "prefill_attention_dp_size") > 1 or _int(row, "decode_attention_dp_size") > 1:
        return None, "attention data parallelism is not modelled"
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
    pep, dep = _int(row, "prefill_moe_ep_size"), _int(row, "decode_moe_ep_size")
    if max(ptp, dtp) > GPUS_PER_NODE or pep > ptp or dep > dtp:
        return None, "workers beyond 8 GPUs (multi-node NVLink domains) are not in the catalog layouts"
    px, dx = _int(row, "prefill_num_workers"), _int(row, "decode_num_workers")
    kv = "bf16" if weights == "bf16" else "fp8"
    isl, osl = int(row["isl"]), int(row["osl"])
    ttft, tpot = float(row["silicon_ttft_ms"]), float(row["silicon_tpot_ms"])
    if not (math.isfinite(ttft) and math.isfinite(tpot) and ttft > 0 and tpot > 0):
        return None, "no measurement"
    caps = engine(row["backend"]).defaults(resolve_gpu(gpu).memory_GiB, gpu)
    gpus = px * ptp + dx * dtp
    decode_cap = max(int(caps["max_num_seqs"]), math.ceil(clients / dx))
    inst = {
        "name": row["id"], "model": card,
        "cluster": {"gpu": gpu, "gpus_per_node": GPUS_PER_NODE, "nodes": max(1, math.ceil(gpus / GPUS_PER_NODE))},
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
    pcfg, dcfg = Config(ptp, 1, px, pep, weights, kv), Config(dtp, 1, dx, dep, weights, kv)
    layers = (a.layers,)
    for cfg in (pcfg, dcfg):
        if kv_capacity_tokens(problem.ctx, cfg, layers) < isl + osl:
            return None, "a pool's KV cache cannot hold one request under the model's memory accounting"
    transfer = kv_transfer_s(problem.ctx, pcfg, dcfg, isl, transfer_link(problem.ctx, gpus))
    lo = lambda n: max(1, int(n * INFERENCEX_RANGE_RATIO))  # noqa: E731
    reqs = closed_loop(clients, INFERENCEX_PROMPTS_PER_CLIENT * clients, (lo(isl), isl), (lo(osl), osl), seed=0)
    return (problem, (pcfg, tuple(even_split(a.layers, 1))), (dcfg, layers), decode_cap, transfer, reqs,
            ttft, tpot), ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--rows", action="store_true", help="print every predicted row")
    ap.add_argument("--limit", type=int, default=0, help="predict at most N rows (0: all)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with open(args.data, encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["mode"] == "disagg"]
    skipped: Counter[str] = Counter()
    results = []
    for row in rows:
        if args.limit and len(results) >= args.limit:
            break
        case, why = _case(row)
        if case is None:
            skipped[why] += 1
            continue
        problem, pre, dec, cap, transfer, reqs, ttft, tpot = case
        sim = simulate_disagg(problem, pre, dec, cap, transfer, reqs)
        if sim.completed == 0:
            skipped["the simulated pools complete no request"] += 1
            continue
        results.append((row, sim.ttft_ms.mean, sim.tpot_ms.mean, ttft, tpot))
    print(f"Disaggregated fidelity: {len(results)} rows predicted, {sum(skipped.values())} not covered, "
          f"{len(rows)} disaggregated rows in {Path(args.data).name}; simulated mean vs measured\n")

    def errs(sel):
        te = [abs(p - m) / m for _, p, _, m, _ in sel]
        pe = [abs(p - m) / m for _, _, p, _, m in sel]
        st = [(p - m) / m for _, p, _, m, _ in sel]
        sp = [(p - m) / m for _, _, p, _, m in sel]
        return (f"TPOT {statistics.median(pe):6.1%} ({statistics.median(sp):+6.1%})   "
                f"TTFT {statistics.median(te):6.1%} ({statistics.median(st):+6.1%})")

    if results:
        print(f"  {'all':48s} {len(results):5d}   {errs(results)}")
        groups = defaultdict(list)
        for r in results:
            row = r[0]
            groups[f"{row['backend']} {MODEL_CARDS[row['model_path']]} {GPU_CARDS[row['system']]}"].append(r)
        for key in sorted(groups):
            print(f"  {key:48s} {len(groups[key]):5d}   {errs(groups[key])}")
    if args.rows:
        for row, pt, pp, mt, mp in results:
            print(f"  {row['id'][:70]:70s} TTFT {pt:8.1f} / {mt:8.1f}  TPOT {pp:7.2f} / {mp:7.2f}")
    print("\nNot covered")
    for why, n in skipped.most_common():
        print(f"  {n:5d}  {why}")
    print(f"\n{time.perf_counter() - t0:.1f} s")



if __name__ == "__main__":
    main()
