"""Diagnosis speed: proof and repair times of every proven-infeasible instance.

For each instance of ``instances/`` (or the paths given) that the planner proves infeasible,
prints the time of the planner's verdict, of the minimal conflicts with their certificates, and of
the verified repairs; the conflicts found; the number of CP-SAT solves; and whether minimality was
re-checked. The whole ``solve`` command for llama70b_t4 (process start included) is also timed.

    python benchmarks/diagnosis_speed.py [PATHS...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from solver.diagnose import diagnose
from solver.input.errors import InputError
from solver.problem import load_problem
from solver.search.planner import SolveParams, plan

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", help="instance files (default: instances/*.json)")
    args = ap.parse_args(argv)
    paths = [Path(p) for p in args.paths] or sorted((ROOT / "instances").glob("*.json"))
    params = SolveParams(time_limit_s=60)
    header = (f"{'instance':26s} {'plan s':>7s} {'proof s':>8s} {'repairs s':>9s} {'total s':>8s} {'solves':>6s} "
              f"{'minimal':>7s}  conflicts")
    print(header)
    print("-" * len(header))
    for path in paths:
        try:
            problem = load_problem(str(path))
        except InputError:
            continue
        t0 = time.perf_counter()
        if plan(problem, params).status != "infeasible":
            continue
        t_plan = time.perf_counter() - t0
        t1 = time.perf_counter()
        proof = diagnose(problem, params, with_repairs=False)
        t_proof = time.perf_counter() - t1
        t2 = time.perf_counter()
        full = diagnose(problem, params)
        t_full = time.perf_counter() - t2
        t_repairs = max(0.0, t_full - t_proof)
        conflicts = " | ".join(", ".join(c["rules"]) for c in proof["conflicts"])
        print(f"{path.stem:26s} {t_plan:7.3f} {t_proof:8.3f} {t_repairs:9.3f} {t_plan + t_full:8.3f} "
              f"{full['diagnosis']['solves']:6d} {str(full['verified']):>7s}  {conflicts}")
    t3 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "solver.runners.cli", str(ROOT / "instances" / "llama70b_t4.json")],
                   stdout=subprocess.DEVNULL, check=False)
    print(f"\nsolve instances/llama70b_t4.json as a command (process start, imports, proof and repairs): "
          f"{time.perf_counter() - t3:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
