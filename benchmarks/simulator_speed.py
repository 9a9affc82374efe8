"""Speed of the engine simulator: 10,000 requests of the flagship plan, per arrival process and policy.

Target (issue: latency at load): 10,000 requests in at most 1 s on a 2-core machine. Prints the
median of 5 runs for each case.

Usage: ``python benchmarks/simulator_speed.py``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from solver.api import load_instance  # noqa: E402
from solver.physics import Config, kv_capacity_tokens, step_model  # noqa: E402
from solver.simulate import Scheduler, closed_loop, poisson, simulate  # noqa: E402

REQUESTS = 10_000
TARGET_S = 1.0


def main() -> int:
    problem = load_instance(ROOT / "instances" / "llama70b_h100.json")
    cfg = Config(2, 1, 4, 1, "fp8", "fp8")
    model = step_model(problem.ctx, cfg, [80])
    kv = kv_capacity_tokens(problem.ctx, cfg, [80])
    cases = [
        ("Poisson 12 req/s, 4 replicas, fixed 2048/256", "mixed", lambda: poisson(12, REQUESTS, 2048, 256), 4),
        ("Poisson 1 req/s, 1 replica, 128-10240 in, 16-512 out", "mixed",
         lambda: poisson(1, REQUESTS, (128, 10240), (16, 512)), 1),
        ("closed loop of 64 clients, 1 replica, 2048/256", "mixed", lambda: closed_loop(64, REQUESTS, 2048, 256), 1),
        ("closed loop of 256 clients, prefill-first (SGLang)", "prefill_first",
         lambda: closed_loop(256, REQUESTS, (512, 4096), (64, 1024)), 2),
    ]
    worst = 0.0
    print(f"{'case':<58} {'median s':>9}")
    for label, policy, make, replicas in cases:
        sched = Scheduler(policy, 256, 8192, kv)
        reqs = make()
        times = []
        for _ in range(5):
            t = time.perf_counter()
            res = simulate(model, sched, reqs, replicas=replicas)
            times.append(time.perf_counter() - t)
        med = statistics.median(times)
        worst = max(worst, med)
        print(f"{label:<58} {med:9.3f}   p99 TTFT {res.ttft_ms.p99:9.1f} ms, mean TPOT {res.tpot_ms.mean:6.2f} ms")
    print(f"\nslowest: {worst:.3f} s for {REQUESTS:,} requests (target <= {TARGET_S} s): "
          f"{'met' if worst <= TARGET_S else 'MISSED'}")
    return 0 if worst <= TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
