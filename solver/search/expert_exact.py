"""Exact packing of fixed replicas onto GPUs by branch and bound (small layers; no ortools).

Given every replica's size (expert ``e`` with ``r_e`` replicas of ``w_e / r_e``), find a placement
with at most ``S`` replicas per GPU, one copy of an expert per GPU, and the smallest maximum load
below a given incumbent, or prove there is none. Used by :mod:`solver.search.experts` for each
replica-count vector of a small layer: on 16-replica layers CP-SAT's packing model needed up to a
second to prove a vector hopeless (measured on DeepSeek's EPLB README example), this search
milliseconds. Symmetry: GPUs with the same load, count and relevant contents are interchangeable
(only the first is tried), and the replicas of one expert go to increasing GPU indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Search nodes before giving up on one vector (then the caller reports the layer as unproven).
DEFAULT_NODE_LIMIT = 200_000


@dataclass
class PackResult:
    """``on`` is the best placement found below the incumbent (None if none); ``complete`` means
    the search finished, so no placement beats ``best`` (or the incumbent, when ``on`` is None)."""

    on: np.ndarray | None
    best: float
    complete: bool
    nodes: int = 0


def exact_pack(w: np.ndarray, r: np.ndarray, gpus: int, slots: int, below: float,
               node_limit: int = DEFAULT_NODE_LIMIT) -> PackResult:
    """Minimise the busiest GPU for counts ``r``, considering only maxima below ``below``. (With
    ``sum r = gpus x slots`` every GPU ends full: filling every slot needs no extra rule.)"""
    w = np.asarray(w, dtype=np.float64)
    E = len(w)
    items = [(float(w[e] / r[e]), e) for e in range(E) for _ in range(int(r[e]))]
    items.sort(key=lambda it: (-it[0], it[1]))
    n = len(items)
    suffix = [0.0] * (n + 1)
    for i in range(n - 1, -1, -1):
        suffix[i] = suffix[i + 1] + items[i][0]
    # Experts still to come after position i: only they make two GPUs' contents differ for the future.
    later: list[frozenset[int]] = [frozenset()] * (n + 1)
    for i in range(n - 1, -1, -1):
        later[i] = later[i + 1] | {items[i][1]}
    load = [0.0] * gpus
    count = [0] * gpus
    holds: list[set[int]] = [set() for _ in range(gpus)]
    where = [-1] * n
    state = {"best": below, "on": None, "nodes": 0, "aborted": False, "total": 0.0}
    eps = 1e-12

    def rec(i: int, top: float) -> None:
        if state["aborted"]:
            return
        state["nodes"] += 1
        if state["nodes"] > node_limit:
            state["aborted"] = True
            return
        best = state["best"]
        if i == n:
            if top < best * (1 - eps):
                state["best"] = top
                on = np.zeros((E, gpus), dtype=bool)
                for k, (_, e) in enumerate(items):
                    on[e, where[k]] = True
                state["on"] = on
            return
        # The average of what is left cannot fall below the best already found.
        if (state["total"] + suffix[i]) / gpus >= best * (1 - eps):
            return
        size, e = items[i]
        start = where[i - 1] + 1 if i > 0 and items[i - 1][1] == e else 0
        seen: set[tuple] = set()
        # Least-loaded GPUs first: the first leaf is the LPT packing, so good maxima come early.
        order = sorted((g for g in range(start, gpus) if count[g] < slots and e not in holds[g]),
                       key=lambda g: (load[g], g))
        for g in order:
            new = load[g] + size
            if new >= state["best"] * (1 - eps):
                break  # sorted by load: every later GPU is at least as full
            key = (load[g], count[g], frozenset(holds[g] & later[i]))
            if key in seen:
                continue
            seen.add(key)
            state["total"] += size
            load[g] = new
            count[g] += 1
            holds[g].add(e)
            where[i] = g
            rec(i + 1, max(top, new))
            holds[g].discard(e)
            count[g] -= 1
            load[g] -= size
            state["total"] -= size
            if state["aborted"]:
                return

    rec(0, 0.0)
    return PackResult(on=state["on"], best=state["best"], complete=not state["aborted"], nodes=state["nodes"])
