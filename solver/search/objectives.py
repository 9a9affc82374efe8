"""Objectives: the lexicographic chain of model quantities per objective, units, and exact values."""

from __future__ import annotations

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
}
OBJECTIVE_UNITS = {
    "max_throughput_per_gpu": "output tokens/s per GPU",
    "min_tpot": "ms TPOT",
    "min_ttft": "ms TTFT",
    "min_gpus": "GPUs",
}


# With a request rate every plan that carries it serves the same tokens, so tokens/s per GPU served =
# rate x output tokens / GPUs: fewer GPUs first, then lower TPOT (which also picks the operating
# point, the smallest batch level whose capacity carries the rate), then more capacity per GPU.
SERVED_THROUGHPUT_VARS = ("gpus", "cycle", "z")


def serves_a_rate(problem: Problem) -> bool:
    """The throughput objective at a request rate counts the tokens served, not the capacity."""
    return problem.instance.objective == "max_throughput_per_gpu" and problem.instance.workload.mode == "request_rate"


def objective_chain(problem: Problem) -> tuple[str, ...]:
    """The model quantities to minimise, primary first (see :data:`OBJECTIVE_VARS`)."""
    return SERVED_THROUGHPUT_VARS if serves_a_rate(problem) else OBJECTIVE_VARS[problem.instance.objective]


def served_tokens_per_s(problem: Problem) -> float:
    """Output tokens/s the workload asks for at its request rate (the whole deployment)."""
    wl = problem.instance.workload
    return wl.request_rate * wl.output_tokens


def objective_value(problem: Problem, units: Units, raw: float) -> float:
    """Convert an integer model objective to its user unit (OBJECTIVE_UNITS)."""
    if serves_a_rate(problem):
        return served_tokens_per_s(problem) / raw if raw > 0 else float("inf")
    quantity = objective_chain(problem)[0]
    return units.to_user(quantity, raw, problem.instance.workload.output_tokens)


def exact_objective(problem: Problem, ev: Evaluation) -> float:
    """The objective of an evaluated plan in user units, from the physics (not the solver)."""
    m = ev.metrics
    if serves_a_rate(problem):
        return served_tokens_per_s(problem) / m.gpus
    return {
        "max_throughput_per_gpu": m.output_tokens_per_s_per_gpu,
        "min_tpot": m.tpot_ms,
        "min_ttft": m.ttft_ms,
        "min_gpus": float(m.gpus),
    }[problem.instance.objective]
