"""The cheapest set of replicas, of one or several GPU types, that carries a request rate (CP-SAT).

Variables: for each design d (a replica layout of one GPU type, :mod:`.designs`) a count ``n_d``
of its replicas and a literal ``use_d`` (a group: replicas sharing one plan and one launch
command). The GPUs of a type's groups stay within what it offers; replica sizes are powers of two
that divide the node or are whole nodes, so a total within the offer always packs into its nodes.
The router splits the rate over replicas in proportion to their capacities, so every replica runs
at the same fraction ``rate / sum(n_d * rate_d)`` of its capacity, within its targets when the sum
carries the rate. Minimised lexicographically: dollars per hour, then GPUs, then groups, then
spare capacity (most).

Integer tables (DESIGN rule 2): capacities round down and the rate up (a solution always carries
the exact rate), prices to 1e-4 USD per GPU-hour (the catalog's precision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ortools.sat.python import cp_model

from ..search.params import solve_lexicographic
from .designs import Design

RATE_SCALE = 10_000  # capacity units per req/s: 1e-4 req/s resolution
PRICE_SCALE = 10_000  # units per USD


@dataclass(frozen=True)
class Mix:
    """A solution: replicas per design, with the model's own figures."""

    counts: tuple[tuple[Design, int], ...]
    status: str  # optimal or feasible (the cost phase's status)

    @property
    def usd_per_hour(self) -> float:
        return sum(d.gpus * n * d.usd_per_gpu_hour for d, n in self.counts)

    @property
    def gpus(self) -> int:
        return sum(d.gpus * n for d, n in self.counts)

    @property
    def capacity(self) -> float:
        return sum(d.rate * n for d, n in self.counts)

    @property
    def types(self) -> int:
        return len({d.offer for d, _ in self.counts})

    def describe(self) -> str:
        return " + ".join(f"{n * d.gpus} {d.gpu} ({n} x {d.gpus}-GPU replica{'s' if n > 1 else ''})"
                          for d, n in self.counts)


def cheapest_mix(designs: list[Design], rate: float, available: dict[int, int], *,
                 exclude: list[tuple[tuple[int, int], ...]] = (), time_limit_s: float = 10.0, seed: int = 0,
                 ignore_availability: bool = False) -> Mix | None:
    """The cheapest replicas carrying ``rate`` req/s; None when none does.

    ``available``: GPUs offered per offer index. ``exclude``: solutions already refuted (each a
    tuple of (design index, count)), cut from the model. ``ignore_availability``: any number of
    GPUs (a repair's question: what would it take).
    """
    if not designs:
        return None
    m = cp_model.CpModel()
    need = math.ceil(rate * RATE_SCALE)
    caps = [math.floor(d.rate * RATE_SCALE) for d in designs]
    prices = [round(d.usd_per_gpu_hour * PRICE_SCALE) * d.gpus for d in designs]
    uppers = []
    for d, c in zip(designs, caps, strict=True):
        most = math.ceil(need / c) if c > 0 else 0
        uppers.append(most if ignore_availability else min(d.max_replicas, most))
    n = [m.new_int_var(0, u, f"n{i}") for i, u in enumerate(uppers)]
    use = [m.new_bool_var(f"use{i}") for i in range(len(designs))]
    for i, u in enumerate(uppers):
        m.add(n[i] <= u * use[i])
        m.add(n[i] >= use[i])
    if not ignore_availability:
        by_offer: dict[int, list[int]] = {}
        for i, d in enumerate(designs):
            by_offer.setdefault(d.offer, []).append(i)
        for offer, idx in by_offer.items():
            m.add(sum(designs[i].gpus * n[i] for i in idx) <= available[offer])
    m.add(sum(c * x for c, x in zip(caps, n, strict=True)) >= need)
    for k, cut in enumerate(exclude):
        # Not exactly this assignment again: some count differs.
        chosen = dict(cut)
        same = []
        for i in range(len(designs)):
            lit = m.new_bool_var(f"same{k}_{i}")
            m.add(n[i] == chosen.get(i, 0)).only_enforce_if(lit)
            m.add(n[i] != chosen.get(i, 0)).only_enforce_if(lit.Not())
            same.append(lit)
        m.add_bool_or([s.Not() for s in same])
    phases = [
        (sum(p * x for p, x in zip(prices, n, strict=True)), 1),
        (sum(d.gpus * x for d, x in zip(designs, n, strict=True)), 1),
        (sum(use), 1),
        (sum(c * x for c, x in zip(caps, n, strict=True)), -1),
    ]
    found = solve_lexicographic(m, phases, lambda solver: [solver.value(x) for x in n], n,
                                time_limit_s=time_limit_s, seed=seed)
    if found is None:
        return None
    status_name, best = found
    counts = tuple((designs[i], v) for i, v in enumerate(best) if v > 0)
    return Mix(counts, status_name)


def assignment_key(designs: list[Design], mix: Mix) -> tuple[tuple[int, int], ...]:
    """A mix as (design index, count) pairs, for :func:`cheapest_mix`'s ``exclude``."""
    index = {id(d): i for i, d in enumerate(designs)}
    return tuple(sorted((index[id(d)], k) for d, k in mix.counts))
