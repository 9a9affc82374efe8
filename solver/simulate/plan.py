"""A plan's simulation: its replicas' step model, the engine's scheduler and the instance's requests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engines import engine, scheduler_gate
from ..input.errors import InputError
from ..physics import Config, kv_capacity_tokens, step_model
from ..problem import Problem
from . import simulate
from .engine import Scheduler
from .stats import SimulationResult
from .traces import read_trace
from .workload import Requests, closed_loop, from_records, poisson


def plan_requests(problem: Problem) -> Requests:
    """The requests a benchmark of this workload sends (``simulation.requests`` of them, seeded).

    A request rate is a Poisson process over the whole deployment; a concurrency is a closed loop
    of that many clients (``--max-concurrency``); offline queues every request at once.
    """
    wl, sim = problem.instance.workload, problem.instance.simulation
    if wl.trace is not None:
        return _trace_requests(problem)
    n = sim.requests
    ins = tuple(wl.input_tokens_range) if wl.input_tokens_range else wl.input_tokens
    outs = tuple(wl.output_tokens_range) if wl.output_tokens_range else wl.output_tokens
    if wl.mode == "request_rate":
        return poisson(wl.request_rate, n, ins, outs, seed=sim.seed)
    clients = wl.concurrency if wl.mode == "concurrency" else n
    # Enough requests that every client sends several: the first wave is not the whole run.
    return closed_loop(clients, max(n, 4 * clients), ins, outs, seed=sim.seed)


def _trace_requests(problem: Problem) -> Requests:
    """The trace's requests: its arrival times (or the workload's load), its lengths."""
    wl, sim = problem.instance.workload, problem.instance.simulation
    path = Path(wl.trace)
    if not path.is_absolute() and problem.file:
        path = Path(problem.file).resolve().parent / path
    if not path.is_file():
        raise InputError(problem.file, "workload.trace", wl.trace, "trace file not found")
    times, ins, outs = read_trace(path)
    if wl.mode == "request_rate":
        if times is None:
            rng = np.random.default_rng(sim.seed)
            times = list(np.cumsum(rng.exponential(1.0 / wl.request_rate, size=len(ins))))
        return from_records(times, ins, outs)
    clients = wl.concurrency if wl.mode == "concurrency" else len(ins)
    return from_records(None, ins, outs, clients=clients)


def plan_scheduler(problem: Problem, cfg: Config, layers_per_stage: tuple[int, ...], max_num_seqs: int) -> Scheduler:
    """The engine's scheduler for one replica of the plan: its policy, caps and KV cache in tokens."""
    eng = engine(problem.search.engine)
    return Scheduler(
        policy=eng.SCHEDULER_POLICY,
        max_num_seqs=max_num_seqs,
        # Every attention-DP rank schedules its own step of max_num_batched_tokens.
        max_num_batched_tokens=problem.instance.limits.max_num_batched_tokens * cfg.adp,
        kv_capacity_tokens=kv_capacity_tokens(problem.ctx, cfg, layers_per_stage),
        admission_delay_s=problem.ctx.eff.request_overhead_s,
        **scheduler_gate(problem.search.engine, cfg, problem.instance.limits),
    )


def latency_targets_ms(problem: Problem) -> dict[str, float]:
    """The mean targets that count towards goodput."""
    slo = problem.instance.slo
    out = {}
    if slo.ttft_ms is not None:
        out["ttft"] = slo.ttft_ms
    if slo.tpot_ms is not None:
        out["tpot"] = slo.tpot_ms
    return out


def simulate_plan(problem: Problem, cfg: Config, layers_per_stage: tuple[int, ...], max_num_seqs: int,
                  requests: Requests | None = None) -> SimulationResult:
    """Serve the instance's requests (or ``requests``) on the plan's ``cfg.dp`` replicas."""
    model = step_model(problem.ctx, cfg, layers_per_stage)
    sched = plan_scheduler(problem, cfg, layers_per_stage, max_num_seqs)
    reqs = requests if requests is not None else plan_requests(problem)
    return simulate(model, sched, reqs, replicas=cfg.dp, targets_ms=latency_targets_ms(problem))
