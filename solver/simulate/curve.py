"""Latency against load for one fixed plan: the engine simulator re-run at several request rates.

A plan is chosen for one request rate; the curve shows how much room it has: mean and p99 TTFT and
TPOT from well below the workload's rate to past the point where the queue grows without bound.
Every point serves the same requests with their arrival times scaled to the rate (Poisson arrivals
from one seed: a standard exponential gap divided by the rate), so the points differ by the load
alone and the curve is smooth rather than noisy from point to point.

This module sits below :mod:`solver.verify` (it must not import it, nor ortools): it takes any
placement-like object with ``cfg``, ``batch`` and ``layers_per_stage`` and uses the physics and the
simulator directly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..physics import (
    max_batch_that_fits,
    replica_seq_cap,
    serving_metrics,
    stage_coefficients,
    stage_counts,
    step_model,
)
from ..problem import Problem
from .engine import run_replica
from .plan import latency_targets_ms, plan_requests, plan_scheduler
from .stats import summarise
from .workload import Requests, poisson

# Requests simulated per point: enough that every replica's batch cap turns over four times (a
# shorter run admits everything at once and never shows the queue), at least CURVE_REQUESTS so
# the p99 rests on ten requests' tail, at most CURVE_MAX_REQUESTS to bound the time.
CURVE_REQUESTS, CURVE_MAX_REQUESTS, CURVE_TURNOVERS = 1000, 8000, 4
# Default points: this many rates evenly from LOW to HIGH times the plan's capacity at the engine's
# batch cap, so the curve reaches past saturation where latency turns up.
CURVE_POINTS, CURVE_LOW, CURVE_HIGH = 10, 0.10, 1.20
# A point is saturated when, over the second half of its arrivals, first tokens come out at under
# this fraction of the arrival rate: the queue grows through the run instead of settling.
SATURATION_RATIO = 0.95


def _engine_cap(problem: Problem, placement: Any) -> int:
    """The engine's max_num_seqs per replica at a request rate.

    The same rule as :func:`solver.verify.engine_max_num_seqs` (this module sits below verify, so
    it cannot import it; tests/test_plots.py checks the two agree): the pinned cap, or else the
    largest batch the KV cache holds within limits.max_num_seqs, never below the operating batch.
    """
    batch, layers = placement.batch, list(placement.layers_per_stage)
    if problem.pins.max_num_seqs is not None:
        return max(batch, problem.pins.max_num_seqs)
    fit = max_batch_that_fits(problem.ctx, placement.cfg, layers) if sum(layers) == problem.arch.layers else batch
    return max(batch, min(fit, replica_seq_cap(problem.instance.limits.max_num_seqs, placement.cfg)))


def capacity_request_rate(problem: Problem, placement: Any, max_num_seqs: int | None = None) -> float:
    """Requests/s the plan sustains with every replica at the engine's batch cap (the cost model).

    The document's ``max_request_rate`` is the rate at the operating batch the load sets; under more
    load the engine batches more, up to ``max_num_seqs``, so the simulator saturates only near this
    higher rate.
    """
    cap = max_num_seqs or _engine_cap(problem, placement)
    ctx, cfg = problem.ctx, placement.cfg
    coef = stage_coefficients(ctx, cfg, cap)
    counts = stage_counts(ctx.arch.layer_kinds(), list(placement.layers_per_stage))
    values = [coef.stage_values(c, s) for s, c in enumerate(counts)]
    return serving_metrics(coef, values, problem.instance.workload).max_request_rate


def default_rates(problem: Problem, placement: Any) -> list[float]:
    """CURVE_POINTS rates from CURVE_LOW to CURVE_HIGH of the capacity, plus the workload's own rate."""
    top = capacity_request_rate(problem, placement)
    rates = [top * (CURVE_LOW + (CURVE_HIGH - CURVE_LOW) * i / (CURVE_POINTS - 1)) for i in range(CURVE_POINTS)]
    own = problem.instance.workload.request_rate
    if own is not None:
        rates.append(float(own))
    return sorted({round(r, 6) for r in rates if r > 0})


def curve_requests(dp: int, max_num_seqs: int) -> int:
    """Requests simulated per point of a plan with ``dp`` replicas of ``max_num_seqs`` sequences each."""
    return min(CURVE_MAX_REQUESTS, max(CURVE_REQUESTS, CURVE_TURNOVERS * dp * max_num_seqs))


def _base_requests(problem: Problem, n: int) -> tuple[Requests, float]:
    """``n`` requests of the workload (a trace: its own, at most ``n``) and the rate of their arrival times."""
    wl, sim = problem.instance.workload, problem.instance.simulation
    if wl.trace is None:
        ins = tuple(wl.input_tokens_range) if wl.input_tokens_range else wl.input_tokens
        outs = tuple(wl.output_tokens_range) if wl.output_tokens_range else wl.output_tokens
        return poisson(wl.request_rate, n, ins, outs, seed=sim.seed), float(wl.request_rate)
    reqs = plan_requests(problem)
    n = min(n, len(reqs))
    arrival = reqs.arrival_s[:n]
    rate = float(wl.request_rate)
    if n > 1 and arrival[-1] > arrival[0]:
        # A recorded trace keeps its own timing: scale from the rate it was recorded at.
        rate = (n - 1) / float(arrival[-1] - arrival[0])
    return Requests(reqs.input_tokens[:n], reqs.output_tokens[:n], arrival), rate


def _saturated(arrival: np.ndarray, first: np.ndarray) -> bool:
    """True when first tokens fall behind arrivals over the second half of the run."""
    if len(arrival) < 4:
        return False
    t_mid, t_end = float(np.median(arrival)), float(arrival.max())
    if t_end <= t_mid:
        return False
    arrived = int(np.sum((arrival > t_mid) & (arrival <= t_end)))
    served = int(np.sum((first > t_mid) & (first <= t_end)))  # NaN (never served) compares False
    return arrived > 0 and served < SATURATION_RATIO * arrived


def latency_curve(problem: Problem, placement: Any, rates: list[float] | None = None) -> list[dict]:
    """Mean and p99 TTFT and TPOT of a fixed plan at several request rates (the engine simulator).

    ``placement`` is a :class:`solver.verify.Placement` (or anything with ``cfg``, ``batch`` and
    ``layers_per_stage``). ``rates`` default to :func:`default_rates`. Each point simulates
    :func:`curve_requests` requests (the same ones, arrival times scaled to the rate) with the
    engine's batch cap, and returns
    ``{request_rate, ttft_ms_mean, ttft_ms_p99, tpot_ms_mean, tpot_ms_p99, saturated}`` in ms, sorted
    by rate; a latency is None when no request completed. Only a request-rate workload has a
    curve, and only a plan whose layers cover the model and whose KV cache holds a sequence: for
    anything else the answer is ``[]``.
    """
    wl = problem.instance.workload
    layers = tuple(placement.layers_per_stage)
    if wl.mode != "request_rate" or sum(layers) != problem.arch.layers or min(layers, default=0) < 1:
        return []
    cap = _engine_cap(problem, placement)
    if cap < 1 or max_batch_that_fits(problem.ctx, placement.cfg, list(layers)) < 1:
        return []
    if rates is None:
        rates = default_rates(problem, placement)
    base, base_rate = _base_requests(problem, curve_requests(placement.cfg.dp, cap))
    model = step_model(problem.ctx, placement.cfg, layers)
    sched = plan_scheduler(problem, placement.cfg, layers, cap)
    targets = latency_targets_ms(problem)
    out = []
    for rate in sorted(float(r) for r in rates):
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"a request rate must be positive and finite; got {rate}")
        reqs = Requests(base.input_tokens, base.output_tokens, base.arrival_s * (base_rate / rate))
        runs = [run_replica(model, sched, part) for part in reqs.split(max(1, placement.cfg.dp))]
        sim = summarise(runs, targets)
        arrival = np.concatenate([r.arrival_s for r in runs])
        first = np.concatenate([r.first_token_s for r in runs])
        out.append({
            "request_rate": round(rate, 6),
            "ttft_ms_mean": _ms(sim.ttft_ms.mean),
            "ttft_ms_p99": _ms(sim.ttft_ms.p99),
            "tpot_ms_mean": _ms(sim.tpot_ms.mean),
            "tpot_ms_p99": _ms(sim.tpot_ms.p99),
            "saturated": _saturated(arrival, first),
        })
    return out


def _ms(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 3)
