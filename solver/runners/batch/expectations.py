"""Expectations: the ``expect`` block of each instance file, read and recorded.

Each instance file carries its own expectation (see :class:`solver.input.schema.ExpectSpec`), next to
the problem it describes, so that a re-recording (``--update-expected``) shows up as a small diff of
that file.
"""

from __future__ import annotations

import contextlib
import json
import os
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


def _top_level_spans(text: str) -> tuple[dict[str, tuple[int, int]], int]:
    """Where each top-level key's value lies in a JSON object's text, and where its closing brace is."""
    decoder = json.JSONDecoder()
    ws = " \t\r\n"
    i = 0
    while text[i] in ws:
        i += 1
    if text[i] != "{":
        raise ValueError("not a JSON object")
    i += 1
    spans: dict[str, tuple[int, int]] = {}
    while True:
        while text[i] in ws + ",":
            i += 1
        if text[i] == "}":
            return spans, i
        key, i = decoder.raw_decode(text, i)
        while text[i] in ws + ":":
            i += 1
        start = i
        _, i = decoder.raw_decode(text, i)
        spans[key] = (start, i)


def expectation_text(original: str, expect: dict[str, Any]) -> str:
    """The file's text with only its ``expect`` block replaced (or added at the end).

    Everything else stays byte for byte: indentation, escapes, number spellings, line endings.
    """
    bom = "\ufeff" if original.startswith("\ufeff") else ""
    body = original[len(bom):]
    newline = "\r\n" if "\r\n" in body else "\n"
    spans, close = _top_level_spans(body)
    block = json.dumps(expect, indent=2, ensure_ascii=False).replace("\n", newline + "  ")
    if "expect" in spans:
        start, end = spans["expect"]
        return bom + body[:start] + block + body[end:]
    # A new last key, after the last value: keep whatever follows the closing brace.
    last = max((e for _, e in spans.values()), default=None)
    if last is None:
        return bom + body[:close] + f"{newline}  \"expect\": {block}{newline}" + body[close:]
    return bom + body[:last] + f",{newline}  \"expect\": {block}" + body[last:]


def write_expectation(path: Path, expect: dict[str, Any]) -> str:
    """Store ``expect`` in the instance file; returns "written", "unchanged" or why it could not.

    Only the ``expect`` block's text changes, and only when the expectation does; the file is
    replaced atomically (a temporary file beside it, renamed over it), so an interrupt leaves the
    old file or the new one, never a partial one.
    """
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read the file ({exc.__class__.__name__})"
    try:
        data = load_json(str(path))
    except InputError as err:
        return f"not valid JSON ({err.accepted})"
    if not isinstance(data, dict):
        return "the file is not a JSON object"
    if data.get("expect") == expect:
        return "unchanged"
    try:
        new_text = expectation_text(text, expect)
    except (ValueError, IndexError):
        return "the file's JSON could not be edited in place"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(new_text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        if not os.access(path, os.W_OK):
            raise PermissionError(f"{path} is read-only")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return f"cannot write the file ({exc.__class__.__name__}: {exc})"
    return "written"


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
        outcome = write_expectation(Path(row["file"]), new)
        if outcome not in ("written", "unchanged"):
            warnings.append(f"{row['name']}: not recorded ({outcome})")
            row["record_error"] = outcome
            row["verdict"], row["details"] = "error", [*row.get("details", []), f"could not record: {outcome}"]
            continue
        row["recorded"] = new
        row["record_outcome"] = outcome
    return warnings
