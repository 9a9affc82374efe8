"""The engine simulator: continuous batching of requests on a plan's replicas, step by step.

Owns the discrete-event model of a running engine (``engine``: admission, chunked prefill, how
each engine mixes prefill and decode in a step), the requests it serves (``workload``: Poisson
arrivals, closed loops of clients, traces; fixed or ranged lengths), trace and benchmark-result
files (``traces``), and the summaries (``stats``: mean and percentiles of TTFT, TPOT, ITL and
end-to-end latency, throughput, goodput, queue length). Step times come from
:mod:`solver.physics`; it never imports ortools, and it is the only source of percentiles.
"""

from __future__ import annotations

from ..physics import StepModel
from .engine import Policy, ReplicaRun, Scheduler, run_replica
from .stats import Distribution, SimulationResult, summarise
from .workload import Requests, closed_loop, from_records, poisson


def simulate(model: StepModel, scheduler: Scheduler, requests: Requests, replicas: int = 1,
             targets_ms: dict[str, float] | None = None) -> SimulationResult:
    """Serve ``requests`` on ``replicas`` identical replicas behind a round-robin router."""
    runs = [run_replica(model, scheduler, part) for part in requests.split(max(1, replicas))]
    return summarise(runs, targets_ms)


__all__ = ["Distribution", "Policy", "ReplicaRun", "Requests", "Scheduler", "SimulationResult", "closed_loop",
           "from_records", "poisson", "run_replica", "simulate", "summarise"]
