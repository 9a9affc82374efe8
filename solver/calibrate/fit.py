"""Fitting a few named efficiency factors to measurements: a coordinate search on the median error.

The loss is the median absolute log error of TTFT plus that of TPOT over the measurements: a
median, so that a few odd rows do not pull the factors, and logs, so that a 2x miss counts the
same either way. Each factor is searched in turn with multiplicative steps that shrink, within
bounds, until no step improves the loss. Factors never depend on a row: a factor applies to every
measurement in its scope (a GPU family, an engine, or all).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..physics import Efficiency
from .predict import Case, Prediction, predict

# name -> (Efficiency attribute, multiplier from the user's unit to the attribute's, (lo, hi) in user units)
FACTORS: dict[str, tuple[str, float, tuple[float, float]]] = {
    "compute_efficiency": ("compute", 1.0, (0.05, 1.0)),
    # HBM streaming reaches about 90-95% of the datasheet bandwidth in practice: the search stops there.
    "memory_efficiency": ("memory", 1.0, (0.05, 0.95)),
    "moe_compute_efficiency": ("moe_compute", 1.0, (0.05, 1.0)),
    "link_efficiency": ("link", 1.0, (0.05, 1.0)),
    "step_overhead_us": ("step_overhead_s", 1e-6, (0.0, 50_000.0)),
    "layer_overhead_us": ("layer_overhead_s", 1e-6, (0.0, 1_000.0)),
    "token_overhead_us": ("token_overhead_s", 1e-6, (0.0, 10_000.0)),
    "allreduce_per_peer": ("allreduce_per_peer", 1.0, (0.0, 50.0)),
    "request_overhead_ms": ("request_overhead_s", 1e-3, (0.0, 5_000.0)),
    "moe_prefill_expert_us": ("moe_prefill_expert_s", 1e-6, (0.0, 1_000.0)),
    "moe_layer_overhead_us": ("moe_layer_overhead_s", 1e-6, (0.0, 1_000.0)),
}


@dataclass
class Param:
    """A factor being fitted, and which measurements it applies to."""

    factor: str  # a key of FACTORS
    value: float  # in the factor's user unit
    scope: str = "all"  # "all", "family=hopper", "engine=vllm"

    def applies(self, case: Case) -> bool:
        if self.scope == "all":
            return True
        kind, _, name = self.scope.partition("=")
        if kind == "family":
            return case.problem.ctx.hw.gpu.family == name
        if kind == "engine":
            return case.measurement.deployment.engine == name
        raise ValueError(f"unknown scope {self.scope!r}")

    @property
    def label(self) -> str:
        return self.factor if self.scope == "all" else f"{self.factor}[{self.scope}]"


def efficiency_with(case: Case, params: Iterable[Param]) -> Efficiency:
    """The case's efficiency factors with every applicable parameter's value."""
    eff = case.problem.ctx.eff
    changes = {}
    for p in params:
        if p.applies(case):
            attr, scale, _ = FACTORS[p.factor]
            changes[attr] = p.value * scale
    return dataclasses.replace(eff, **changes) if changes else eff


def current_value(case: Case, factor: str) -> float:
    """A factor's value for a case as resolved today (family, engine and instance defaults)."""
    attr, scale, _ = FACTORS[factor]
    return getattr(case.problem.ctx.eff, attr) / scale


def loss(preds: list[Prediction], reduce: str = "median") -> float:
    """Median (or mean) |log error| of TTFT plus that of TPOT (infinite when a prediction is missing).

    The median suits a large sample with odd rows; the mean, a user's few clean runs, where every
    run should pull and the minimum is unique.
    """
    agg = statistics.median if reduce == "median" else statistics.fmean
    good = [p for p in preds if p.ttft_ms > 0 and p.tpot_ms > 0 and math.isfinite(p.ttft_ms + p.tpot_ms)]
    if not good or len(good) < len(preds):
        return math.inf
    ttft = [abs(math.log(p.ttft_ms / p.measured_ttft_ms)) for p in good if p.measured_ttft_ms]
    tpot = [abs(math.log(p.tpot_ms / p.measured_tpot_ms)) for p in good if p.measured_tpot_ms]
    return (agg(ttft) if ttft else 0.0) + (agg(tpot) if tpot else 0.0)


def _predict_one(args: tuple[Case, Efficiency, str]) -> Prediction:
    case, eff, statistic = args
    return predict(case, eff, statistic)


def predictions(cases: list[Case], params: list[Param], statistic: str = "mean",
                mapper: Callable = map) -> list[Prediction]:
    """Every case predicted with the parameters applied (``mapper``: e.g. a process pool's map)."""
    return list(mapper(_predict_one, [(c, efficiency_with(c, params), statistic) for c in cases]))


@dataclass
class FitResult:
    params: list[Param]
    loss_before: float
    loss_after: float
    evaluations: int


def fit(cases: list[Case], params: list[Param], statistic: str = "mean", mapper: Callable = map,
        rounds: int = 4, steps: tuple[float, ...] = (2.0, 1.41, 1.19, 1.09, 1.04), reduce: str = "median"
        ) -> FitResult:
    """Coordinate search of ``params`` (changed in place) minimising :func:`loss` over ``cases``."""
    evaluations = 0

    def evaluate() -> float:
        nonlocal evaluations
        evaluations += 1
        return loss(predictions(cases, params, statistic, mapper), reduce)

    best = before = evaluate()
    for _ in range(rounds):
        improved = False
        for p in params:
            _, _, (lo, hi) = FACTORS[p.factor]
            for step in steps:
                moved = True
                while moved:
                    moved = False
                    start = p.value
                    floor = (hi - lo) * 1e-3 if start == 0 else 0.0  # a zero factor first tries a small value
                    for candidate in (max(start * step, floor), start / step):
                        candidate = min(max(candidate, lo), hi)
                        if candidate == start:
                            continue
                        p.value = candidate
                        trial = evaluate()
                        if trial < best - 1e-6:
                            best, moved, improved = trial, True, True
                            break
                        p.value = start
        if not improved:
            break
    return FitResult(params, before, best, evaluations)
