"""Verdicts: each report row judged against the expectation recorded in its instance file.

* ``pass``      everything recorded still holds (numbers within ``rel_tol``);
* ``improved``  a better objective than recorded (beyond the tolerance), or a proof where there was none;
* ``changed``   same objective, but another strategy, split, metric (beyond tolerance) or conflict;
* ``regressed`` worse objective, another status, or a plan that failed the solver's verification;
* ``error``     bad input or a crash (unless the instance expects to be rejected);
* ``new``       no expectation recorded yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .expectations import read_expectation
from .run import PLAN_STATUSES

VERDICTS = ("pass", "improved", "changed", "new", "regressed", "error")
FAILING = ("regressed", "error")
MAXIMISED = ("max_throughput_per_gpu",)
DEFAULT_REL_TOL = 0.01


def _rel(got: float, want: float) -> float:
    """Signed relative difference of ``got`` from ``want`` (absolute when ``want`` is zero)."""
    return (got - want) / abs(want) if want else got - want


def judge(row: dict[str, Any], expect: dict[str, Any] | None) -> tuple[str, list[str]]:
    """The verdict of one row against its expectation, with the reasons in words."""
    kind = row.get("error_kind")
    if kind == "crash":
        return "error", [f"crash: {row.get('error')}"]
    if kind == "verification":
        return "regressed", [f"verification failure: {row.get('error')}"]
    if expect is None:
        if kind == "input":
            return "error", [f"bad input: {row.get('error')}"]
        return "new", ["no expectation recorded"]
    want = expect.get("status")
    if kind == "input":
        return _judge_rejection(row, expect)
    if want == "error":
        return "regressed", [f"status error (rejected as bad input) -> {row['status']}"]
    tol = float(expect.get("rel_tol", DEFAULT_REL_TOL))
    if want != row["status"]:
        verdict, reasons = _judge_status_change(row, want)
        if verdict != "pass":
            return verdict, reasons
    else:
        reasons = []
    if row["status"] in PLAN_STATUSES:
        return _judge_plan(row, expect, tol, reasons)
    if row["status"] == "infeasible":
        return _judge_conflict(row, expect)
    return "pass", reasons


def _judge_rejection(row: dict[str, Any], expect: dict[str, Any]) -> tuple[str, list[str]]:
    """A bad-input row: passes only when the instance expects exactly that rejection."""
    if expect.get("status") != "error":
        return "error", [f"bad input (expected {expect.get('status')}): {row.get('error')}"]
    needle = expect.get("error_contains")
    if needle and needle not in (row.get("error") or ""):
        return "changed", [
            f"rejected with another message: expected it to contain {needle!r}, got "
            f"{row.get('error')!r}"
        ]
    return "pass", []


def _judge_status_change(row: dict[str, Any], want: str) -> tuple[str, list[str]]:
    """Status differs. 'pass' means: not decisive, go on comparing (feasible -> optimal)."""
    got = row["status"]
    change = [f"status {want} -> {got}"]
    if want == "feasible" and got == "optimal":
        return "pass", [*change, "now proven optimal"]
    if want == "unknown" and got in (*PLAN_STATUSES, "infeasible"):
        return "improved", [*change, "an answer where there was none"]
    return "regressed", change


def _judge_plan(
    row: dict[str, Any], expect: dict[str, Any], tol: float, reasons: list[str]
) -> tuple[str, list[str]]:
    """A plan was found: objective first (direction-aware), then strategy, split and metrics."""
    want_obj, got_obj = expect.get("objective"), row.get("objective")
    unit = row.get("objective_unit") or ""
    if want_obj is not None and got_obj is not None:
        sign = 1.0 if row.get("objective_name") in MAXIMISED else -1.0
        better = sign * _rel(got_obj, want_obj)
        words = (
            f"objective {want_obj:,.6g} -> {got_obj:,.6g} {unit} ({_rel(got_obj, want_obj):+.2%})"
        )
        if better > tol:
            return "improved", [*reasons, f"{words}, better"]
        if better < -tol:
            return "regressed", [*reasons, f"{words}, worse"]
    elif want_obj is not None:
        return "regressed", [*reasons, "no objective value any more"]
    changes = _strategy_changes(row, expect) + _metric_changes(row, expect, tol)
    if changes:
        return "changed", [*reasons, *changes]
    return ("improved" if reasons else "pass"), reasons


def _strategy_changes(row: dict[str, Any], expect: dict[str, Any]) -> list[str]:
    """Differences in the recorded strategy fields and the layer split."""
    out = []
    got = row.get("strategy") or {}
    for key, want in (expect.get("strategy") or {}).items():
        if got.get(key) != want:
            out.append(f"strategy {key} {want} -> {got.get(key)}")
    want_split = expect.get("layers_per_stage")
    if want_split is not None and want_split != row.get("layers_per_stage"):
        out.append(
            f"layers {'+'.join(map(str, want_split))} -> "
            f"{'+'.join(map(str, row.get('layers_per_stage') or [])) or 'none'}"
        )
    return out


def _metric_changes(row: dict[str, Any], expect: dict[str, Any], tol: float) -> list[str]:
    """Key metrics that moved beyond the relative tolerance."""
    out = []
    got = row.get("metrics") or {}
    for key, want in (expect.get("metrics") or {}).items():
        value = got.get(key)
        if value is None:
            out.append(f"{key} {want} -> missing")
        elif abs(_rel(value, want)) > tol:
            out.append(f"{key} {want:,.6g} -> {value:,.6g} ({_rel(value, want):+.2%})")
    return out


def _judge_conflict(row: dict[str, Any], expect: dict[str, Any]) -> tuple[str, list[str]]:
    """Infeasible as expected: the first conflict must name the same rules (in any order)."""
    want = expect.get("conflict_rules")
    got = row.get("conflict_rules") or []
    if want is not None and sorted(want) != sorted(got):
        return "changed", [f"first conflict {', '.join(want)} -> {', '.join(got) or 'none'}"]
    return "pass", []


def judge_rows(rows: list[dict[str, Any]]) -> None:
    """Attach ``expected``, ``verdict`` and ``details`` to every row."""
    for row in rows:
        expect = read_expectation(Path(row["file"]))
        row["expected"] = expect
        row["verdict"], row["details"] = judge(row, expect)
