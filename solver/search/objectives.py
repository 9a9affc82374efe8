"""Objectives: the lexicographic chain of model quantities per objective, units, and exact values."""

from __future__ import annotations

from ..physics.cost import cost_per_hour_usd, cost_per_million_tokens_usd
from ..problem import Problem
from ..verify import Evaluation
from .options import Units

# Objective -> the lexicographic chain of model quantities to minimise after the primary
# ("-gpus" maximises GPUs used: at equal throughput per GPU, more replicas serve more in total).
# The primary of the throughput objective is GPU-picoseconds per output token (its inverse is
# tokens/s per GPU). Every chain ends with the canonical option rank and the split key.
OBJECTIVE_VARS = {
    "max_throughput_per_gpu": ("z", "-gpus", "cycle"),
    "min_tpot": ("cycle", "z", "-gpus"),
    "min_ttft": ("ttft", "z", "-gpus"),
    "min_gpus": ("gpus", "z", "cycle"),
    # One GPU type per problem: dollars per hour are GPUs x price, so the chain is min_gpus'.
    "min_cost": ("gpus", "z", "cycle"),
    # Dollars per token are price / (tokens/s per GPU): the throughput chain; at a request rate the
    # tokens served are fixed and the served chain applies (see objective_chain).
    "min_cost_per_token": ("z", "-gpus", "cycle"),
}
OBJECTIVE_UNITS = {
    "max_throughput_per_gpu": "output tokens/s per GPU",
    "min_tpot": "ms TPOT",
    "min_ttft": "ms TTFT",
    "min_gpus": "GPUs",
    "min_cost": "USD per hour",
    "min_cost_per_token": "USD per million output tokens",
}
# Objectives whose best value is the largest (every other is minimised).
MAXIMISED = ("max_throughput_per_gpu",)


# With a request rate every plan that carries it serves the same tokens, so tokens/s per GPU served =
# rate x output tokens / GPUs: fewer GPUs first, then lower TPOT (which also picks the operating
# point, the smallest batch level whose capacity carries the rate), then more capacity per GPU.
SERVED_THROUGHPUT_VARS = ("gpus", "cycle", "z")


def serves_a_rate(problem: Problem) -> bool:
    """A per-token objective at a request rate counts the tokens served, not the capacity."""
    return (problem.instance.objective in ("max_throughput_per_gpu", "min_cost_per_token")
            and problem.instance.workload.mode == "request_rate")


def objective_chain(problem: Problem) -> tuple[str, ...]:
    """The model quantities to minimise, primary first (see :data:`OBJECTIVE_VARS`)."""
    return SERVED_THROUGHPUT_VARS if serves_a_rate(problem) else OBJECTIVE_VARS[problem.instance.objective]


def served_tokens_per_s(problem: Problem) -> float:
    """Output tokens/s the workload asks for at its request rate (the whole deployment)."""
    wl = problem.instance.workload
    return wl.request_rate * wl.output_tokens


def objective_value(problem: Problem, units: Units, raw: float) -> float:
    """Convert an integer model objective to its user unit (OBJECTIVE_UNITS)."""
    name = problem.instance.objective
    if serves_a_rate(problem):
        # raw is GPUs: the served tokens are the rate's.
        if name == "min_cost_per_token":
            return _per_token(problem, raw, served_tokens_per_s(problem))
        return served_tokens_per_s(problem) / raw if raw > 0 else float("inf")
    quantity = objective_chain(problem)[0]
    value = units.to_user(quantity, raw, problem.instance.workload.output_tokens)
    if name == "min_cost":
        return cost_per_hour_usd(problem.price, 1) * value  # value: GPUs (a bound may be fractional)
    if name == "min_cost_per_token":
        return _per_token(problem, 1, value)  # value: output tokens/s per GPU
    return value


def _per_token(problem: Problem, gpus: float, tokens_per_s: float) -> float:
    return cost_per_million_tokens_usd(cost_per_hour_usd(problem.price, 1) * gpus, tokens_per_s)


def exact_objective(problem: Problem, ev: Evaluation) -> float:
    """The objective of an evaluated plan in user units, from the physics (not the solver)."""
    m = ev.metrics
    name = problem.instance.objective
    if serves_a_rate(problem):
        if name == "min_cost_per_token":
            return _per_token(problem, m.gpus, served_tokens_per_s(problem))
        return served_tokens_per_s(problem) / m.gpus
    if name == "min_cost":
        return cost_per_hour_usd(problem.price, m.gpus)
    if name == "min_cost_per_token":
        return _per_token(problem, m.gpus, m.output_tokens_per_s)
    return {
        "max_throughput_per_gpu": m.output_tokens_per_s_per_gpu,
        "min_tpot": m.tpot_ms,
        "min_ttft": m.ttft_ms,
        "min_gpus": float(m.gpus),
    }[name]


def is_maximised(name: str) -> bool:
    """True for an objective whose best value is the largest."""
    return name in MAXIMISED


def disagg_objective(problem: Problem, m) -> float:
    """The objective of a disaggregated plan (``solver.verify.DisaggMetrics``), in the same user units.

    Disaggregated plans are searched at a request rate: the tokens served are the rate's.
    """
    name = problem.instance.objective
    served = served_tokens_per_s(problem)
    return {
        "max_throughput_per_gpu": served / m.gpus,
        "min_gpus": float(m.gpus),
        "min_cost": cost_per_hour_usd(problem.price, m.gpus) if problem.price else float("nan"),
        "min_cost_per_token": _per_token(problem, m.gpus, served) if problem.price else float("nan"),
        "min_tpot": m.tpot_ms,
        "min_ttft": m.ttft_ms,
    }[name]
