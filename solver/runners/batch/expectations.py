"""Expectations: the ``expect`` block of each instance file, read and recorded.

Each instance file carries its own expectation (see :class:`solver.input.schema.ExpectSpec`), next to
the problem it describes, so that a re-recording (``--update-expected``) shows up as a small diff of
that file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...input.errors import InputError, load_json
from .run import PLAN_STATUSES


def read_expectation(path: Path) -> dict[str, Any] | None:
    """The raw ``expect`` block of an instance file, or None (absent, unreadable, not JSON)."""
    try:
        data = load_json(str(path))  # the solver's own reader: a byte-order mark, duplicate keys alike
    except InputError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("expect"), dict):
        return None
    return data["expect"]


def expectation_from_row(row: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``expect`` block that records ``row``; None when the row must not be recorded (a crash).

    A user's ``rel_tol`` is kept, and so is an ``error_contains`` that still matches.
    """
    old = old or {}
    kind = row.get("error_kind")
    if kind in ("crash", "verification"):
        return None
    if kind == "input" and str(row.get("error_path") or "").startswith("expect"):
        return None  # a typo in the expect block itself is to be fixed, not recorded as expected
    if kind == "input":
        needle = old.get("error_contains")
        if not needle or needle not in (row.get("error") or ""):
            needle = row.get("error_stable") or row.get("error")
        new: dict[str, Any] = {"status": "error", "error_contains": needle}
    elif row["status"] in PLAN_STATUSES:
        new = {
            "status": row["status"],
            "strategy": row.get("strategy"),
            "layers_per_stage": row.get("layers_per_stage"),
            "objective": row.get("objective"),
            "metrics": row.get("metrics"),
        }
        new = {k: v for k, v in new.items() if v is not None}
    elif row["status"] == "infeasible":
        new = {"status": "infeasible"}
        if row.get("conflict_rules"):
            new["conflict_rules"] = row["conflict_rules"]
    else:
        new = {"status": row["status"]}
    if "rel_tol" in old:
        new["rel_tol"] = old["rel_tol"]
    return new


def write_expectation(path: Path, expect: dict[str, Any]) -> bool:
    """Store ``expect`` in the instance file, other keys and their order untouched.

    Returns False when the file is not a JSON object (it cannot hold an expectation).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    if not isinstance(data, dict):
        return False
    data["expect"] = expect  # replaces in place when present, so the key keeps its position
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def update_expectations(rows: list[dict[str, Any]]) -> list[str]:
    """Record every recordable row into its file; returns warnings for the rows left out."""
    warnings = []
    for row in rows:
        new = expectation_from_row(row, row.get("expected"))
        if new is None:
            warnings.append(
                f"{row['name']}: not recorded ({row.get('error_kind')}: {row.get('error')})"
            )
            continue
        if not write_expectation(Path(row["file"]), new):
            warnings.append(f"{row['name']}: not recorded (the file is not a JSON object)")
            continue
        row["recorded"] = new
    return warnings
