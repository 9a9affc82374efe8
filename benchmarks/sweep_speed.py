"""Speed of ``solve sweep``: 200 points of the flagship instance through the command's own code path.

The grid is a capacity-planning question for Llama-3-70B-Instruct on one node of 8 GPUs
(instances/llama70b_h100.json, 2048 in / 256 out, TTFT <= 1.5 s): 5 GPU types x 20 request rates
(0.5 to 10 req/s) x 2 TPOT targets (50, 100 ms) = 200 points, each solved with the batch
runner's deterministic settings and simulated with the instance's default 2,000 requests (nothing
is lowered). Target: at most 60 s on a 2-core machine with the local process pool.

Prints the wall time, points per second, counts by status, the solve time per point by status
(where the time goes) and the CPU seconds used; writes the table, CSV, JSON and the Pareto figure
into the output folder (a temporary one unless ``--out DIR``).

Usage: ``python benchmarks/sweep_speed.py [--jobs N] [--out DIR] [--ray]``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from solver.runners.cli import main as solve_main  # noqa: E402

INSTANCE = ROOT / "instances" / "llama70b_h100.json"
VARY = (
    "cluster.gpu=h100-sxm-80gb,h200-141gb,b200-180gb,b300-288gb,mi300x-192gb",
    "workload.request_rate=0.5:10:+0.5",
    "slo.tpot_ms=50,100",
)
POINTS = 200
TARGET_S = 60.0


def _cpu_s() -> float:
    """CPU seconds of this process and of its finished children (the pool's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: a temporary one)")
    ap.add_argument("--ray", action="store_true", help="run the points on a local Ray instead of the process pool")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="sweep_speed_"))
    out.mkdir(parents=True, exist_ok=True)
    files = {k: out / f"sweep.{k}" for k in ("csv", "json", "png", "txt")}

    try:
        from solver.report import plots

        has_plot = hasattr(plots, "sweep_figure")
    except ImportError:
        has_plot = False
    if not has_plot:  # the figure is optional here: the benchmark times the sweep
        files.pop("png")
    argv = ["sweep", str(INSTANCE), *(x for v in VARY for x in ("--vary", v)), "-j", str(args.jobs),
            "--csv", str(files["csv"]), "--json", str(files["json"])]
    if has_plot:
        argv += ["--plot", str(files["png"])]
    if args.ray:
        argv.append("--ray")

    print(f"instance   {INSTANCE.relative_to(ROOT)}")
    print(f"vary       {' x '.join(VARY)}")
    print(f"settings   {args.jobs} job(s), {'Ray' if args.ray else 'local process pool'}, 1 CP-SAT worker and "
          "deterministic time 30 per solve phase (the batch runner's settings), simulation.requests 2,000 "
          "(the instance's default; nothing lowered)")
    cpu0, t0 = _cpu_s(), time.perf_counter()
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        try:
            solve_main(argv, standalone_mode=False)
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
    wall, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    files["txt"].write_text(table.getvalue(), encoding="utf-8")
    if code != 0:
        print(f"solve sweep exited {code}; see {files['txt']}")
        return 1

    doc = json.loads(files["json"].read_text())
    rows = doc["rows"]
    assert len(rows) == POINTS, f"{len(rows)} points, expected {POINTS}"
    by_status: dict[str, list[float]] = collections.defaultdict(list)
    for r in rows:
        by_status[r["status"]].append(r["solve_s"])
    solve_sum = sum(r["solve_s"] for r in rows)
    print(f"\npoints     {len(rows)}: " + ", ".join(f"{n} {s}" for s, n in doc["counts"].items() if n))
    print(f"wall       {wall:.1f} s for the whole command ({len(rows) / wall:.2f} points/s); the solve phase "
          f"{doc['wall_s']:.1f} s")
    print(f"cpu        {cpu:.1f} s in this process and its workers ({cpu / wall:.2f} cores busy on average)")
    print("per point  status        n   total s  mean s  median s   max s")
    for status, times in sorted(by_status.items()):
        print(f"           {status:<11} {len(times):>3}  {sum(times):8.1f}  {statistics.mean(times):6.3f}  "
              f"{statistics.median(times):8.3f}  {max(times):6.2f}")
    overhead = doc["wall_s"] - solve_sum / args.jobs
    print(f"           the solves sum to {solve_sum:.1f} s; the solve phase's wall beyond sum / jobs "
          f"({overhead:+.1f} s) is worker start-up, waiting for the last point and load from other processes")
    slow = sorted(rows, key=lambda r: -r["solve_s"])[:3]
    print("slowest    " + "; ".join(f"{', '.join(f'{k}={v}' for k, v in r['point'].items())}: {r['solve_s']:.2f} s"
                                    for r in slow))
    frontiers = collections.Counter(name for r in rows for name in r["pareto"])
    print("pareto     " + ", ".join(f"{name} {n}" for name, n in sorted(frontiers.items())))
    print("wrote      " + ", ".join(str(p) for p in files.values()))
    met = wall <= TARGET_S
    print(f"\n{len(rows)} points in {wall:.1f} s (target <= {TARGET_S:.0f} s on a 2-core machine): "
          f"{'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
