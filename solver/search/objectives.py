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


def objective_value(problem: Problem, units: Units, raw: float) -> float:
    """Convert an integer model objective to its user unit (OBJECTIVE_UNITS)."""
    quantity = OBJECTIVE_VARS[problem.instance.objective][0]
    return units.to_user(quantity, raw, problem.instance.workload.output_tokens)


def exact_objective(problem: Problem, ev: Evaluation) -> float:
    """The objective of an evaluated plan in user units, from the physics (not the solver)."""
    m = ev.metrics
    return {
        "max_throughput_per_gpu": m.output_tokens_per_s_per_gpu,
        "min_tpot": m.tpot_ms,
        "min_ttft": m.ttft_ms,
        "min_gpus": float(m.gpus),
    }[problem.instance.objective]
