"""Solver speed: every instance solved by CP-SAT, next to an even-split grid search (peer tools' way).

For each feasible instance of ``instances/`` (or the paths given), prints the CP-SAT solve time
(options, model, all lexicographic phases, decoding and verification), its status and objective,
and, in the same run, a grid search over the same candidates with the engine's even layer split,
scored by the same integer tables from solver.physics: its time and objective. Targets (issue):
every instance up to 64 GPUs proven optimal in under 10 s, and never a worse objective than the
grid. Also reports instances the solver finds feasible where the grid finds nothing.

    python benchmarks/solver_speed.py [PATHS...] [--repeat N] [--workers W]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from solver.input.errors import InputError
from solver.problem import load_problem
from solver.search.objectives import OBJECTIVE_UNITS, objective_value
from solver.search.options import enumerate_options
from solver.search.planner import SolveParams, plan
from solver.search.witness import best_even_split

ROOT = Path(__file__).resolve().parents[1]


def _grid(problem) -> tuple[float, float | None]:
    """Time and objective (user units) of the even-split grid search."""
    t0 = time.perf_counter()
    options = enumerate_options(problem)
    options = [o for o in options if not o.bound_violations and not o.memory_sum_exceeds]
    best = best_even_split(problem, options)
    elapsed = time.perf_counter() - t0
    if best is None:
        return elapsed, None
    return elapsed, objective_value(problem, best[0].units, best[2])


def _better(objective: str, a: float, b: float) -> bool:
    """a strictly better than b (beyond 1e-9 relative)."""
    if objective == "max_throughput_per_gpu":
        return a > b * (1 + 1e-9)
    return a < b * (1 - 1e-9)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", help="instance files (default: instances/*.json)")
    ap.add_argument("--repeat", type=int, default=3, help="solves per instance; the median time is shown")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    paths = [Path(p) for p in args.paths] or sorted((ROOT / "instances").glob("*.json"))
    params = SolveParams(time_limit_s=60, workers=args.workers)
    header = (f"{'instance':28s} {'GPUs':>4s} {'opts':>6s} {'status':9s} {'CP-SAT s':>9s} {'objective':>12s} "
              f"{'grid s':>7s} {'grid obj':>12s} {'vs grid':>9s}  unit")
    print(header)
    print("-" * len(header))
    worst_time, losses, slow, wins = 0.0, 0, 0, 0
    for path in paths:
        try:
            problem = load_problem(str(path))
        except InputError:
            continue  # bad-input instances (the consistency check) are not solver benchmarks
        times, result = [], None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = plan(problem, params)
            times.append(time.perf_counter() - t0)
        if result.status not in ("optimal", "feasible"):
            continue  # infeasible instances: see benchmarks/diagnosis_speed.py
        t = statistics.median(times)
        grid_t, grid_obj = _grid(problem)
        obj = problem.instance.objective
        if grid_obj is None:
            vs = "grid: none"
            wins += 1
        elif _better(obj, grid_obj, result.objective):
            vs = "WORSE"
            losses += 1
        else:
            gain = (result.objective - grid_obj) / grid_obj if obj == "max_throughput_per_gpu" else \
                (grid_obj - result.objective) / grid_obj
            vs = f"{gain:+.1%}"
            wins += gain >= 1e-3
        worst_time = max(worst_time, t)
        slow += t >= 10 or result.status != "optimal"
        print(f"{path.stem:28s} {problem.ctx.hw.total_gpus:4d} {result.options_considered:6d} {result.status:9s} "
              f"{t:9.3f} {result.objective:12.2f} {grid_t:7.3f} "
              f"{'-' if grid_obj is None else f'{grid_obj:12.2f}':>12s} {vs:>9s}  {OBJECTIVE_UNITS[obj]}")
    print(f"\nslowest solve {worst_time:.3f} s; not optimal or >= 10 s: {slow}; worse than the grid: {losses}; "
          f"better than the grid by 0.1% or more: {wins}")
    if not args.paths:
        large(params)
    return 0 if losses == 0 and slow == 0 else 1


def large(params: SolveParams) -> None:
    """Llama-3.1-405B on 16 to 128 nodes of 8 H100 with ``search.pp`` 1-16 and every dp up to the GPUs.

    The enumeration-speed case of the audit (target: 1024 GPUs in 3 s, options and solve together).
    """
    import json

    from solver.input.schema import Instance
    from solver.problem import build_problem

    base = json.loads((ROOT / "instances" / "llama405b_2x8_h100.json").read_text())
    base.pop("expect", None)
    print(f"\n{'405B, pp 1-16, every dp':28s} {'GPUs':>4s} {'options':>8s} {'status':9s} {'total s':>8s}")
    for nodes in (16, 64, 128):
        data = json.loads(json.dumps(base))
        data["cluster"]["nodes"] = nodes
        data.setdefault("search", {}).update({"pp": list(range(1, 17)), "dp": list(range(1, 8 * nodes + 1))})
        t0 = time.perf_counter()
        result = plan(build_problem(Instance.model_validate(data)), params)
        print(f"{'':28s} {8 * nodes:4d} {result.options_considered:8d} {result.status:9s} "
              f"{time.perf_counter() - t0:8.2f}")


if __name__ == "__main__":
    sys.exit(main())
