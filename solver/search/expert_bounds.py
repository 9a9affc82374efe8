"""Lower bounds on the busiest GPU's load of one MoE layer, valid for every placement.

Setting: expert ``e`` has load ``w_e``; a placement gives it ``r_e >= 1`` replicas on distinct GPUs
(``r_e <= G``), at most ``N = min(E + R, G x S)`` replicas in all, at most ``S`` per GPU, and each
replica carries ``w_e / r_e``. ``M`` is the busiest GPU's load. For every placement:

- **average**: ``M >= W / G`` (``W = sum w``). This is the LP relaxation's value: fractional
  placements ``x[e, g] = 1 / G`` put ``E / G <= S`` expert-units and exactly ``W / G`` on every GPU,
  so the LP relaxation of the assignment model can prove nothing more.
- **replica**: ``M >= T_rep = min over integer counts (sum r <= N, 1 <= r_e <= G) of max_e w_e/r_e``,
  since the GPU holding the largest replica carries at least it. ``T_rep`` is the smallest ``t``
  with ``sum_e max(1, ceil(w_e / t)) <= N`` and ``w_e / G <= t`` for all e; it is one of the values
  ``w_e / k``, found by bisection.
- **full**: with no replica to spare (``N = E``) every GPU holds at least ``E - (G - 1) S`` experts, so
  the hottest expert's GPU carries it and the ``E - (G - 1) S - 1`` lightest others.
- **target tests** (bisection on a target ``T`` between the bounds above and an achieved maximum):
  ``T`` is ruled out when a necessary condition of a placement with ``M <= T`` fails. A condition
  that every placement with ``M <= T`` meets holds at every ``T >= M*`` (the optimum is a witness),
  so each ``T`` it rules out is below ``M*``: the bisection returns such a ``T`` and it is a bound
  whether or not the condition is monotone in ``T``. Two conditions, both on counts
  ``r_e >= lo_e = max(1, ceil(w_e / T))`` with ``sum r <= N`` (the slack ``N - sum lo`` is what the
  counts may add):

  - *pairs*: two replicas larger than ``T / 2`` never share a GPU, so at most ``G`` exist. An
    expert leaves that class at ``ceil(2 w_e / T)`` replicas; ruled out when even the LP relaxation
    of the cheapest upgrade (fractional knapsack: slots spent per big replica removed) exceeds
    the slack.
  - *slots*: a GPU holding a replica of size ``b > T / 2`` has room ``T - b`` for its other
    replicas, each of a distinct expert ``f`` and no smaller than ``mu_f = w_f / min(G, lo_f +
    slack)``; so it holds at most ``1 + min(S - 1, m(T - b))`` replicas, ``m(x)`` the most of the
    smallest ``mu`` summing to at most ``x``. Big replicas sit on distinct GPUs, so the slots a
    placement can use are at most ``G S - sum over big replicas of (S - 1 - min(S - 1, m))``, which
    must cover ``sum r``. Experts that cannot be big keep ``lo_e`` (more replicas only use slots);
    for the others a dynamic programme over the slack finds the counts that waste fewest slots.
    Ruled out when even those need more than ``G x S`` slots. The slack is shared: a placement
    spends some ``y`` of it on experts that cannot be big and at most ``slack - y`` on the others,
    so ``mu_f`` uses ``lo_f + y`` or ``lo_f + slack - y`` (and the programme ``slack - y``); the
    target is ruled out when every ``y`` fails. This is what binds when the redundant slots are
    scarce and the hottest experts' GPUs are too full to take a cold expert (Zipf 1.2 on 64 GPUs
    with 32 redundant slots: without the split the bound is 1.0858 x the mean, with it 1.0988).

:func:`lower_bound` returns the largest, named. CP-SAT's own proven bound, when a whole-layer model
ran (:mod:`solver.search.experts`), may be higher and is combined there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Relative slack in the ceil() of replica counts so that a share equal to the target up to float
# noise counts as within it (never rules out a target that an exact computation would admit).
_FLOAT_SLACK = 1e-12
# Bisection stops at this relative width: far below the 1e-4 at which max / mean is reported.
_BISECT_RTOL = 1e-7


@dataclass(frozen=True)
class Bound:
    """A lower bound on the busiest GPU's load (same units as the loads) and which argument gave it."""

    value: float
    name: str  # average | replica | full | target | cp-sat
    parts: dict[str, float]


def _lo(w: np.ndarray, t: float) -> np.ndarray:
    return np.maximum(1, np.ceil(w / t * (1 - _FLOAT_SLACK))).astype(np.int64)


def replica_bound(w: np.ndarray, gpus: int, replicas: int) -> float:
    """``T_rep``: the smallest largest share over integer replica counts (see the module docstring)."""
    w = np.asarray(w, dtype=np.float64)
    floor = float(w.max()) / gpus  # an expert has at most G replicas
    if _needed(w, floor, gpus) <= replicas:
        return floor
    # The answer is one of the values w_e / k (the largest share at the optimum).
    cands = np.unique(np.concatenate([w[w > 0] / k for k in range(1, gpus + 1)]))
    cands = cands[cands >= floor]
    lo, hi = 0, len(cands) - 1  # at the largest candidate one replica each suffices
    while lo < hi:
        mid = (lo + hi) // 2
        if _needed(w, float(cands[mid]), gpus) <= replicas:
            hi = mid
        else:
            lo = mid + 1
    return float(cands[lo])


def _needed(w: np.ndarray, t: float, gpus: int) -> float:
    """Fewest replicas keeping every share within ``t`` (inf when some expert would need > G)."""
    if t <= 0:
        return math.inf if np.any(w > 0) else len(w)
    k = _lo(w, t)
    return math.inf if np.any(k > gpus) else int(k.sum())


def pairs_possible(w: np.ndarray, t: float, gpus: int, replicas: int) -> bool:
    """False when target ``t`` is impossible by the count of replicas larger than ``t / 2``."""
    k1 = _lo(w, t)
    if np.any(k1 > gpus) or k1.sum() > replicas:
        return False
    big_share = w / k1 > t / 2 * (1 + _FLOAT_SLACK)
    big = int(k1[big_share].sum())
    if big <= gpus:
        return True
    k2 = np.maximum(1, np.ceil(2 * w / t * (1 - _FLOAT_SLACK)))
    spare = float(replicas - int(k1.sum()))
    idx = np.flatnonzero(big_share & (k2 <= gpus))
    cost = (k2 - k1)[idx].astype(np.float64)
    saved = k1[idx].astype(np.float64)
    need = float(big - gpus)
    # Fractional knapsack: the LP relaxation admits every target the integer problem admits.
    for i in np.argsort(cost / saved, kind="stable"):
        if need <= 0:
            break
        take = min(1.0, need / saved[i])
        if cost[i] * take > spare:
            need -= saved[i] * (spare / cost[i])
            spare = 0.0
            break
        spare -= cost[i] * take
        need -= saved[i] * take
    return need <= 1e-9


def slots_possible(w: np.ndarray, t: float, gpus: int, slots: int, replicas: int) -> bool:
    """False when target ``t`` is impossible by the slot count (see *slots* in the module docstring)."""
    G = gpus
    lo = _lo(w, t)
    if np.any(lo > G) or lo.sum() > replicas:
        return False
    slack = int(replicas - lo.sum())
    half = t / 2 * (1 + _FLOAT_SLACK)
    maybe_big = w / lo > half
    # The slack is shared: a placement spends y of it on experts that cannot be big and at most
    # slack - y on the others, so for some y every replica is at least w / (lo + its part). The
    # loose test (each expert may take all the slack) first: it is cheap and rules out most targets.
    if not _slots_split(w, t, lo, maybe_big, half, slack, slack, G, slots):
        return False
    return any(_slots_split(w, t, lo, maybe_big, half, slack - y, y, G, slots) for y in range(slack + 1))


def _slots_split(w: np.ndarray, t: float, lo: np.ndarray, maybe_big: np.ndarray, half: float,
                 big_slack: int, small_slack: int, G: int, S: int) -> bool:
    """The *slots* test when experts that may be big spend at most ``big_slack`` extra replicas and
    the others at most ``small_slack``."""
    mu = np.sort(w / np.minimum(G, lo + np.where(maybe_big, big_slack, small_slack)))
    prefix = np.concatenate([[0.0], np.cumsum(mu)])
    used = float(lo[~maybe_big].sum())  # more replicas of these only use more slots
    # dp[x]: fewest slots the possibly-big experts use with x extra replicas spent on them.
    xs = np.arange(big_slack + 1)
    dp = np.full(big_slack + 1, np.inf)
    dp[0] = 0.0
    for e in np.flatnonzero(maybe_big):
        r = lo[e] + xs
        b = w[e] / r
        fit = np.searchsorted(prefix, (t - b) * (1 + _FLOAT_SLACK), side="right") - 1
        per_gpu = 1 + np.minimum(S - 1, np.maximum(fit, 0))
        cost = np.where(b > half, r * (S - per_gpu + 1), r).astype(np.float64)
        cost[r > G] = np.inf
        # min-plus convolution: new[x] = min_y dp[x - y] + cost[y]
        grid = dp[xs[:, None] - xs[None, :]] + cost[None, :]
        grid[xs[:, None] < xs[None, :]] = np.inf
        dp = grid.min(axis=1)
    return used + float(dp.min()) <= G * S


def target_possible(w: np.ndarray, t: float, gpus: int, slots: int, replicas: int) -> bool:
    """The target tests together (each a necessary condition of a placement with maximum <= t)."""
    if float(w.max()) / gpus > t * (1 + _FLOAT_SLACK) or float(w.sum()) / gpus > t * (1 + _FLOAT_SLACK):
        return False
    return pairs_possible(w, t, gpus, replicas) and slots_possible(w, t, gpus, slots, replicas)


def target_bound(w: np.ndarray, gpus: int, slots: int, replicas: int, lo: float, hi: float) -> float:
    """The largest target found impossible by bisection in ``[lo, hi]`` (``lo`` when ``lo`` passes).
    ``hi`` should be an achieved maximum; the result is a bound either way (module docstring)."""
    if target_possible(w, lo, gpus, slots, replicas):
        return lo
    a, b = lo, hi
    while b - a > _BISECT_RTOL * b:
        mid = (a + b) / 2
        if target_possible(w, mid, gpus, slots, replicas):
            b = mid
        else:
            a = mid
    return a


def lower_bound(weights: np.ndarray, gpus: int, slots: int, max_replicas: int,
                achieved: float | None = None) -> Bound:
    """The best of the bounds in the module docstring for one layer; the target tests run only when
    ``achieved`` (a placement's maximum) is above the closed-form bounds."""
    w = np.asarray(weights, dtype=np.float64)
    E = len(w)
    n = min(max_replicas, gpus * slots)
    parts = {"average": float(w.sum()) / gpus, "replica": replica_bound(w, gpus, n)}
    least = E - (gpus - 1) * slots  # experts on every GPU when none is replicated
    if n == E and least > 1:
        hottest = int(np.argmax(w))
        rest = np.sort(np.delete(w, hottest))[: least - 1]
        parts["full"] = float(w[hottest] + rest.sum())
    base = max(parts.values())
    if achieved is not None and achieved > base * (1 + 1e-9):
        parts["target"] = target_bound(w, gpus, slots, n, base, achieved)
    name = max(parts, key=lambda k: (parts[k], k))
    return Bound(value=parts[name], name=name, parts=parts)
