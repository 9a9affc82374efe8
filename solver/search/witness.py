"""Checks on the integer tables without CP-SAT: the even-split grid answer, hints, witnesses, bounds.

The one place outside CP-SAT where the dynamic rules are checked on the integer tables; the grid
search, the hints and the diagnosis's feasibility witnesses use it, and tests/bruteforce.py
re-implements it independently.
"""

from __future__ import annotations

from ..physics import even_split, stage_counts
from ..problem import Problem
from .facts import facts_for
from .objectives import objective_chain
from .options import Option, capacity_MiB, cycle_bounds, stage_table, ttft_limit


def split_values(problem: Problem, o: Option, split: list[int], rules: frozenset[str] | None = None,
                 evaluated: dict | None = None) -> list[dict[str, int]] | None:
    """The integer stage values of ``o`` on ``split`` when they meet every rule (of ``rules``), else None.

    The one place outside CP-SAT where the dynamic rules are checked on the integer tables (the
    grid search, hints and witnesses use it); tests/bruteforce.py re-implements it independently.
    """

    enforce = (lambda r: True) if rules is None else (lambda r: r in rules)
    counts = stage_counts(problem.arch.layer_kinds(), split)
    if any(enforce(f.rule) and f.broken_by(split, counts) for f in facts_for(problem.learned, o.cfg, o.batch)):
        return None  # the exact physics already rejected this split
    if evaluated is None:
        vals = evaluate_int(o, counts)
    else:
        # Replicas of one shape share their tables (the same objects): evaluate them once.
        key = (id(o.stages), tuple(split))
        vals = evaluated.get(key)
        if vals is None:
            vals = evaluated[key] = evaluate_int(o, counts)
    cap = capacity_MiB(problem, o.units)
    if any(v["mem"] > cap for s, v in enumerate(vals) if enforce(f"mem_cap[stage={s}]")):
        return None
    bounds = [b for r, b in cycle_bounds(problem, o).items() if enforce(r)]
    if any(v["cycle"] > b for v in vals for b in bounds):
        return None
    limit = ttft_limit(problem, o.units)
    if limit is not None and enforce("slo.ttft_ms") and max(v["ttft"] for v in vals) > limit:
        return None
    return vals


def best_even_split(problem: Problem, options: list[Option]) -> tuple[Option, list[int], int] | None:
    """The grid-search answer: the best option under the engine's even split, scored by the same tables.

    Returns (option, split, primary objective in model units) or None when no even split is feasible.
    """
    obj_name = objective_chain(problem)[0]
    best = None
    evaluated: dict = {}
    for o in options:
        if problem.pins.layers_per_stage is not None:
            split = list(problem.pins.layers_per_stage)
            if len(split) != o.cfg.pp:
                continue
        else:
            split = even_split(problem.arch.layers, o.cfg.pp)
        vals = split_values(problem, o, split, evaluated=evaluated)
        if vals is None:
            continue
        score = o.cfg.gpus if obj_name == "gpus" else max(v[obj_name] for v in vals)
        key = (score, o.index)
        if best is None or key < best[0]:
            best = (key, o, split)
    if best is None:
        return None
    return best[1], best[2], best[0][0]


def option_lower_bound(problem: Problem, o: Option, name: str) -> int:
    """A lower bound of objective ``name`` for option ``o`` over every split.

    The bottleneck stage is at least the mean over stages (perfect balance) and at least each
    stage's split-independent constant; for TTFT the same holds for the decode term.
    """
    if name == "gpus":
        return o.cfg.gpus
    table = "dec" if name == "ttft" else name
    kinds = problem.arch.layer_kinds()
    per_layer, _ = stage_table(problem, o, 0, table)  # per-layer coefficients are the same on every stage
    layer_sum = sum(per_layer[k] * kinds.count(k) for k in per_layer)
    consts = [stage_table(problem, o, s, table)[1] for s in range(o.cfg.pp)]
    pp = o.cfg.pp
    lb = max(-(-(layer_sum + sum(consts)) // pp), max(consts))
    if name == "ttft":
        return o.ttft_const_t + pp * lb
    return lb


def stage_values(problem: Problem, o: Option, counts: list[dict[str, int]], name: str) -> list[int]:
    """Quantity ``name`` of each stage of ``o`` on a split's layer counts, on the integer tables."""
    out = []
    for s, c in enumerate(counts):
        per, const = stage_table(problem, o, s, "dec" if name == "ttft" else name)
        v = sum(per[k] * c.get(k, 0) for k in per) + const
        out.append(o.ttft_const_t + o.cfg.pp * v if name == "ttft" else v)
    return out


def evaluate_int(o: Option, counts: list[dict[str, int]]) -> list[dict[str, int]]:
    """The integer tables of option ``o`` evaluated on a split (brute force and hints use this)."""
    out = []
    for s, c in enumerate(counts):
        st = o.stages[s]

        def ev(table: tuple[dict[str, int], int], c=c) -> int:
            per, const = table
            return sum(per[k] * c.get(k, 0) for k in per) + const

        dec = ev(st.dec_t)
        out.append({"mem": ev(st.mem_MiB), "cycle": ev(st.cycle_t), "z": ev(st.zcost),
                    "ttft": o.ttft_const_t + o.cfg.pp * dec})
    return out


def _memory_filled_split(o: Option, layers: int, cap: int, rules: frozenset[str] | None) -> list[int] | None:
    """A split giving each stage at most the layers its memory cap admits, excess trimmed from the fullest.

    Only a candidate: :func:`witness` checks it against every rule on the integer tables.
    """
    per = max(o.stages[0].mem_MiB[0].values())  # the heaviest layer kind, so the count is safe
    room = []
    for s, st in enumerate(o.stages):
        if rules is None or f"mem_cap[stage={s}]" in rules:
            room.append(min(layers, (cap - st.mem_MiB[1]) // per) if per else layers)
        else:
            room.append(layers)
    if min(room) < 1 or sum(room) < layers:
        return None
    return _trim_fullest(room, layers)


def _trim_fullest(room: list[int], layers: int) -> list[int]:
    """``room`` less one layer at a time from the fullest stage (ties: the first) until ``layers``.

    Closed form of that loop: with ``L`` the smallest level whose ``min(room, L)`` still holds the
    layers, every stage is cut to ``L`` and the excess taken from the first stages at ``L``.
    """
    lo, hi = 0, max(room)
    while lo < hi:
        mid = (lo + hi) // 2
        if sum(min(r, mid) for r in room) >= layers:
            hi = mid
        else:
            lo = mid + 1
    split = [min(r, lo) for r in room]
    excess = sum(split) - layers
    for i, v in enumerate(split):
        if excess == 0:
            break
        if v == lo:
            split[i] -= 1
            excess -= 1
    return split


def witness(problem: Problem, options: list[Option], rules: frozenset[str] | None = None
            ) -> tuple[Option, list[int]] | None:
    """A candidate and a split meeting every rule (of ``rules`` when given): feasibility without a solve.

    Tries the engine's even split and a memory-filled split per candidate, checked on the same
    integer tables the CP-SAT model uses, so a witness is a model solution. None when none is found
    (which proves nothing: the solver decides then).
    """

    for o in options:
        for split in candidate_splits(problem, o, rules):
            if len(split) == o.cfg.pp and split_values(problem, o, split, rules) is not None:
                return o, split
    return None


def known_split_feasible(problem: Problem, o: Option, splits: list[list[int]], evaluated: dict) -> bool:
    """True when one of ``splits`` (:func:`candidate_splits`) meets every rule on ``o``'s tables.

    ``evaluated`` caches the stage values per tables and split (replicas of a shape share both)."""
    return any(len(split) == o.cfg.pp and split_values(problem, o, split, evaluated=evaluated) is not None
               for split in splits)


def candidate_splits(problem: Problem, o: Option, rules: frozenset[str] | None) -> list[list[int]]:
    """The pinned split, or the engine's even split and the memory-filled one (when uneven splits are allowed)."""
    layers = problem.arch.layers
    enforce = (lambda r: True) if rules is None else (lambda r: r in rules)
    pinned = problem.pins.layers_per_stage
    if pinned is not None and enforce("pin.layers_per_stage"):
        return [list(pinned)]
    candidates = [even_split(layers, o.cfg.pp)]
    even_only = not problem.search.uneven_layers and enforce("search.uneven_layers")
    filled = None if even_only else _memory_filled_split(o, layers, capacity_MiB(problem, o.units), rules)
    if filled is not None and filled != candidates[0]:
        candidates.append(filled)
    return candidates


def best_witness_value(problem: Problem, options: list[Option], rules: frozenset[str] | None, quantity: str
                       ) -> int | None:
    """The best value of ``quantity`` (gpus or a per-stage one) over the options' engine splits that meet ``rules``.

    A known plan's value: an option whose lower bound is worse cannot hold the minimum, which is
    how the diagnosis keeps its optimisation models small. None when no such split meets them.
    """
    enforce = (lambda r: True) if rules is None else (lambda r: r in rules)
    pinned = problem.pins.layers_per_stage
    best = None
    for o in options:
        split = list(pinned) if pinned is not None and enforce("pin.layers_per_stage") else \
            even_split(problem.arch.layers, o.cfg.pp)
        if len(split) != o.cfg.pp:
            continue
        vals = split_values(problem, o, split, rules)
        if vals is None:
            continue
        value = o.cfg.gpus if quantity == "gpus" else \
            max(stage_values(problem, o, stage_counts(problem.arch.layer_kinds(), split), quantity))
        best = value if best is None else min(best, value)
    return best
