"""The same instance gives the same plan however loaded the machine: every phase has a deterministic limit."""

from __future__ import annotations

import itertools

from solver import SolveParams, load_instance, plan
from tests.conftest import INSTANCES


def _strip(doc):
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items() if k not in ("time_s", "wall_s")}
    return [_strip(v) for v in doc] if isinstance(doc, list) else doc


def test_a_slowed_clock_does_not_change_the_plan(monkeypatch):
    path = INSTANCES / "llama405b_2x8_h100.json"
    normal = plan(load_instance(path))
    from solver.search import planner

    ticks = itertools.count(step=50.0)  # every reading of the clock 50 s later: a very loaded machine
    monkeypatch.setattr(planner.time, "perf_counter", lambda: next(ticks))
    slowed = plan(load_instance(path))
    assert _strip(slowed.document) == _strip(normal.document)
    assert normal.document["solver"]["tie_breaks"] == "complete"


def test_a_phase_that_stops_at_its_limit_is_reported_and_repeatable():
    path = INSTANCES / "llama405b_2x8_h100.json"
    params = SolveParams(deterministic_time=1e-3)  # the primary proves optimality; a tie-break cannot
    first = plan(load_instance(path), params)
    second = plan(load_instance(path), params)
    assert _strip(first.document) == _strip(second.document)
    assert first.status == "optimal"
    assert first.document["solver"]["tie_breaks"].startswith("incomplete")
    assert "tie-breaks incomplete" in first.to_text()
    starved = plan(load_instance(path), SolveParams(deterministic_time=1e-4))
    assert starved.status == "unknown" and starved.exit_code == 3
