"""The model's prediction of a measurement: the same deployment and load, through the engine simulator.

There is no second cost model here: a measurement becomes an instance (the engine's own defaults
for its caps, stated in :mod:`solver.engines`), its deployment a placement with the engines' even
layer split, and its load the requests a benchmark sends; :func:`~solver.simulate.simulate` does the
rest with the step times of :mod:`solver.physics`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engines import engine, scheduler_gate
from ..input.catalog import resolve_gpu
from ..input.errors import InputError
from ..physics import Config, Efficiency, even_split, kv_capacity_tokens, step_model
from ..problem import Problem, build_problem, parse_instance
from ..simulate import Requests, Scheduler, SimulationResult, simulate
from ..simulate.workload import draw_lengths
from .measurements import Measurement

# Fixed seed of the request draws: a prediction is a deterministic function of the measurement.
SEED = 0


@dataclass
class Case:
    """A measurement resolved once: its problem, placement, scheduler and requests."""

    measurement: Measurement
    problem: Problem
    cfg: Config
    layers: tuple[int, ...]
    scheduler: Scheduler
    requests: Requests


@dataclass(frozen=True)
class Prediction:
    """Predicted and measured TTFT / TPOT of one measurement (ms)."""

    id: str
    ttft_ms: float
    tpot_ms: float
    measured_ttft_ms: float | None
    measured_tpot_ms: float | None

    @property
    def ttft_error(self) -> float | None:
        """Relative error (prediction - measurement) / measurement; None without a measurement."""
        if self.measured_ttft_ms is None:
            return None
        return (self.ttft_ms - self.measured_ttft_ms) / self.measured_ttft_ms

    @property
    def tpot_error(self) -> float | None:
        if self.measured_tpot_ms is None:
            return None
        return (self.tpot_ms - self.measured_tpot_ms) / self.measured_tpot_ms


def instance_of(m: Measurement, cost_model: dict[str, Any] | None = None) -> dict[str, Any]:
    """The instance a measurement describes (JSON form), with the engine's default caps."""
    d = m.deployment
    gpu = resolve_gpu(d.gpu)
    caps = engine(d.engine).defaults(gpu.memory_GiB, gpu.name)
    seqs = max(int(caps["max_num_seqs"]), m.concurrency or 1)
    gpus = d.tp * d.pp * d.dp * d.adp
    load: dict[str, Any] = {"concurrency": m.concurrency} if m.concurrency else {"request_rate": m.request_rate}
    return {
        "name": m.id,
        "model": d.model,
        "cluster": {"gpu": d.gpu, "gpus_per_node": d.gpus_per_node, "nodes": max(1, math.ceil(gpus / d.gpus_per_node))},
        "precision": {"weights": [d.weights], "kv_cache": [d.kv_cache]},
        "workload": {"input_tokens": m.input_tokens, "output_tokens": m.output_tokens, **load},
        "limits": {"memory_utilization": caps["memory_utilization"], "max_num_seqs": seqs,
                   "max_num_batched_tokens": max(int(caps["max_num_batched_tokens"]), seqs),
                   **({"scheduler_recv_interval": d.scheduler_recv_interval} if d.scheduler_recv_interval > 1 else {}),
                   **({"attention_dp_balance_iters": d.adp_balance_timeout_iters}
                      if d.adp_balance_timeout_iters > 0 else {}),
                   **({"batch_wait_timeout_iters": d.batch_wait_timeout_iters,
                       "batch_wait_max_tokens_ratio": d.batch_wait_max_tokens_ratio}
                      if d.batch_wait_timeout_iters > 0 else {})},
        "search": {"engine": d.engine, **({"engine_version": d.engine_version} if d.engine_version else {})},
        "cost_model": cost_model or {},
    }


def _lengths(length: int, ratio: float, n: int, rng: np.random.Generator) -> np.ndarray:
    lo = max(1, int(length * ratio)) if ratio < 1.0 else length
    return draw_lengths((lo, length) if lo < length else length, n, rng)


def resolve(m: Measurement, cost_model: dict[str, Any] | None = None) -> Case:
    """Build the problem, placement, scheduler and requests of a measurement (raises InputError)."""
    problem = build_problem(parse_instance(instance_of(m, cost_model)))
    d = m.deployment
    cfg = Config(d.tp, d.pp, d.dp, d.ep, d.weights, d.kv_cache, d.adp)
    layers = tuple(even_split(problem.arch.layers, d.pp))
    a = problem.arch
    # A row whose layout the model itself rules out (e.g. a "tp" that is a worker's GPU count, not a
    # divisor of the heads) describes some other deployment: not predicted as if it ran.
    if a.heads % cfg.tp or (a.is_moe and a.experts % cfg.ep):
        raise InputError(None, "tp_size", cfg.tp, f"row {m.id}: not a layout of {a.name}: {a.heads} attention heads and "
                         f"{a.experts} experts over tp {cfg.tp}, ep {cfg.ep}")
    limits = problem.instance.limits
    gate = scheduler_gate(d.engine, cfg, limits)
    sched = Scheduler(policy=engine(d.engine).SCHEDULER_POLICY, max_num_seqs=limits.max_num_seqs,
                      max_num_batched_tokens=limits.max_num_batched_tokens * cfg.adp,
                      kv_capacity_tokens=kv_capacity_tokens(problem.ctx, cfg, layers),
                      admission_delay_s=problem.ctx.eff.request_overhead_s, **gate)
    rng = np.random.default_rng(SEED)
    n = m.num_prompts
    ins = _lengths(m.input_tokens, m.range_ratio, n, rng)
    outs = _lengths(m.output_tokens, m.range_ratio, n, rng)
    if m.concurrency:
        reqs = Requests(ins, outs, None, m.concurrency)
    else:
        reqs = Requests(ins, outs, np.cumsum(rng.exponential(1.0 / m.request_rate, size=n)))
    return Case(m, problem, cfg, layers, sched, reqs)


def run_case(case: Case, eff: Efficiency | None = None) -> SimulationResult:
    """Simulate a resolved measurement, optionally with other efficiency factors."""
    ctx = case.problem.ctx if eff is None else dataclasses.replace(case.problem.ctx, eff=eff)
    sched = dataclasses.replace(case.scheduler, admission_delay_s=ctx.eff.request_overhead_s)
    return simulate(step_model(ctx, case.cfg, case.layers), sched, case.requests, replicas=case.cfg.dp)


def predict(case: Case, eff: Efficiency | None = None, statistic: str = "mean") -> Prediction:
    """Predicted TTFT and TPOT (the ``statistic``: mean or median) against the measured ones."""
    sim = run_case(case, eff)
    key = "mean" if statistic == "mean" else "p50"
    m = case.measurement
    return Prediction(m.id, getattr(sim.ttft_ms, key), getattr(sim.tpot_ms, key), m.ttft_ms, m.tpot_ms)
