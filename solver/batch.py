"""Batch mode: solve many instances, compare each with its recorded expectation, report.

``solve instances/ --check`` is the project's regression gate. Each instance file carries its own
expectation in an ``expect`` block (see :class:`solver.schema.ExpectSpec`), next to the problem it
describes, so that a re-recording (``--update-expected``) shows up as a small diff of that file.

Runs are deterministic: one CP-SAT worker per instance, a fixed seed and a limit in CP-SAT's
deterministic time, so a verdict does not flip with machine load. Instances run in parallel
processes (``--jobs``), each row is judged against its expectation and given a verdict:

* ``pass``      everything recorded still holds (numbers within ``rel_tol``);
* ``improved``  a better objective than recorded (beyond the tolerance), or a proof where there was none;
* ``changed``   same objective, but another strategy, split, metric (beyond tolerance) or conflict;
* ``regressed`` worse objective, another status, or a plan that failed the solver's verification;
* ``error``     bad input or a crash (unless the instance expects to be rejected);
* ``new``       no expectation recorded yet.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

VERDICTS = ("pass", "improved", "changed", "new", "regressed", "error")
FAILING = ("regressed", "error")
KEY_METRICS = ("ttft_ms", "tpot_ms", "output_tokens_per_s_per_gpu")
PLAN_STATUSES = ("optimal", "feasible")
MAXIMISED = ("max_throughput_per_gpu",)
DEFAULT_REL_TOL = 0.01
# Deterministic-time units are roughly seconds of one core; 30 leaves the 60 s wall-clock limit
# as a safety net that a loaded machine does not reach first (which would make verdicts flaky).
DEFAULT_DETERMINISTIC_TIME = 30.0
EXIT_CHECK_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2

_SHORT_UNITS = {"output tokens/s per GPU": "tok/s/GPU"}


@dataclass(frozen=True)
class BatchOptions:
    """How every instance of a batch is solved (the same for all, so runs are comparable)."""

    time_limit: float = 60.0
    deterministic_time: float = DEFAULT_DETERMINISTIC_TIME
    seed: int = 0
    workers: int = 1


# ---------------------------------------------------------------------------------------------
# Collecting and running
# ---------------------------------------------------------------------------------------------


def collect_instances(paths: list[str] | tuple[str, ...]) -> list[Path]:
    """The instance files named by ``paths``: files as given, directories' ``*.json`` by name.

    Directories are not searched recursively: sub-folders (e.g. ``instances/configs/``) hold
    model configs that instances refer to, not instances. A path that does not exist is kept, so
    that it becomes an ``error`` row instead of silently vanishing.
    """
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted((f for f in p.glob("*.json") if f.is_file()), key=lambda f: f.name))
        else:
            out.append(p)
    return out


def solve_row(path: str, opts: BatchOptions) -> dict[str, Any]:
    """Solve one instance into a report row (no verdict yet). Never raises: failures become rows."""
    from .cli import solve_document
    from .errors import InputError
    from .planner import VerificationError

    row: dict[str, Any] = {"file": path, "name": Path(path).stem, "status": "error"}
    t0 = time.perf_counter()
    try:
        code, doc = solve_document(
            path,
            time_limit=opts.time_limit,
            workers=opts.workers,
            seed=opts.seed,
            deterministic_time=opts.deterministic_time,
        )
    except InputError as err:
        row.update(
            error_kind="input",
            error=str(err),
            error_path=err.path,
            error_stable=_stable_error_text(err),
        )
    except VerificationError as err:
        # The solver decoded a plan that its own exact check rejects: a solver bug, a regression.
        row.update(error_kind="verification", error=f"{type(err).__name__}: {err}")
    except Exception as err:  # noqa: BLE001 - one crashing instance must not stop the batch
        row.update(
            error_kind="crash",
            error=f"{type(err).__name__}: {err}",
            traceback=traceback.format_exc(limit=8),
        )
    else:
        row.update(_row_from_document(code, doc))
    row["wall_s"] = round(time.perf_counter() - t0, 3)
    return row


def _row_from_document(code: int, doc: dict[str, Any]) -> dict[str, Any]:
    """The fields of a report row that come from a solve's JSON document."""
    solver = doc.get("solver") or {}
    metrics = doc.get("metrics") or {}
    out: dict[str, Any] = {
        "exit_code": code,
        "instance": doc.get("instance"),
        "status": doc.get("status"),
        "objective_name": doc.get("objective_name"),
        "objective": solver.get("objective"),
        "objective_unit": solver.get("objective_unit"),
        "solver_time_s": solver.get("time_s"),
        "strategy": doc.get("strategy"),
        "layers_per_stage": None,
        "metrics": {k: metrics[k] for k in KEY_METRICS if metrics.get(k) is not None} or None,
        "conflict_rules": None,
    }
    stages = doc.get("stages") or []
    if doc.get("status") in PLAN_STATUSES and stages:
        out["layers_per_stage"] = [s["layers"][1] - s["layers"][0] + 1 for s in stages]
    proof = doc.get("proof") or {}
    conflicts = proof.get("conflicts") or []
    if conflicts:
        out["conflict_rules"] = list(conflicts[0].get("rules") or [])
    elif proof.get("conflict"):
        out["conflict_rules"] = [m.get("rule") for m in proof["conflict"]]
    return out


def _stable_error_text(err: Any) -> str:
    """A substring of a bad-input message that survives cost-model tuning and copies of the file.

    The file name is dropped (copies live elsewhere) and the reason is cut before its first
    decimal number, which is usually computed (e.g. "its architecture implies 0.075 B").
    """
    message = str(err)
    prefix = f"{err.file}: " if getattr(err, "file", None) else ""
    core = message[len(prefix) :] if message.startswith(prefix) else message
    reason = getattr(err, "accepted", "") or ""
    cut = re.search(r"[\s(]*[-+]?\d+\.\d+", reason)
    if cut and core.endswith(reason):
        core = core[: len(core) - len(reason) + cut.start()].rstrip(" ,;:(")
    return core


def run_instances(
    files: list[Path], opts: BatchOptions, jobs: int, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """Solve every file, in parallel processes when ``jobs`` > 1; rows in the order of ``files``."""
    from .catalog import reload_catalog

    # Catalog cards are cached per process; the caller may have changed SOLVE_CATALOG_PATH.
    reload_catalog()
    rows: list[dict[str, Any] | None] = [None] * len(files)
    try:
        if jobs <= 1 or len(files) <= 1:
            for i, f in enumerate(files):
                rows[i] = solve_row(str(f), opts)
                _tick(progress, rows[i])
        else:
            # spawn: a fresh interpreter per worker, never a fork of a process holding solver threads.
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(jobs, len(files)), mp_context=ctx) as pool:
                futures = {pool.submit(solve_row, str(f), opts): i for i, f in enumerate(files)}
                for fut in as_completed(futures):
                    i = futures[fut]
                    try:
                        rows[i] = fut.result()
                    except Exception as err:  # noqa: BLE001 - a dead worker is one error row
                        rows[i] = {
                            "file": str(files[i]),
                            "name": files[i].stem,
                            "status": "error",
                            "error_kind": "crash",
                            "error": f"{type(err).__name__}: {err}",
                        }
                    _tick(progress, rows[i])
    finally:
        # Leave no card cached from a catalog path that the caller may be about to drop.
        reload_catalog()
    return [r for r in rows if r is not None]


def _tick(progress: Progress | None, row: dict[str, Any] | None) -> None:
    if progress is not None and row is not None:
        progress.update(row)


class Progress:
    """A one-line progress display on stderr, for terminals only."""

    def __init__(self, total: int, enabled: bool):
        self.total = total
        self.done = 0
        self.enabled = enabled

    def update(self, row: dict[str, Any]) -> None:
        """One more instance finished."""
        self.done += 1
        if self.enabled:
            line = f"[{self.done}/{self.total}] {row['name']}: {row.get('status')}"
            click.echo("\r\x1b[2K" + line[:120], nl=False, err=True)

    def close(self) -> None:
        """Clear the progress line."""
        if self.enabled and self.done:
            click.echo("\r\x1b[2K", nl=False, err=True)


def show_progress() -> bool:
    """Progress only on an interactive terminal: not in CI, not when stderr is a file or pipe."""
    return sys.stderr.isatty() and not os.environ.get("CI")


# ---------------------------------------------------------------------------------------------
# Expectations and verdicts
# ---------------------------------------------------------------------------------------------


def read_expectation(path: Path) -> dict[str, Any] | None:
    """The raw ``expect`` block of an instance file, or None (absent, unreadable, not JSON)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("expect"), dict):
        return None
    return data["expect"]


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


def judge_rows(rows: list[dict[str, Any]]) -> None:
    """Attach ``expected``, ``verdict`` and ``details`` to every row."""
    for row in rows:
        expect = read_expectation(Path(row["file"]))
        row["expected"] = expect
        row["verdict"], row["details"] = judge(row, expect)


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


# ---------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------


def summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Count of rows per verdict (every verdict present, zero included)."""
    counts = {v: 0 for v in VERDICTS}
    for row in rows:
        counts[row["verdict"]] += 1
    return counts


def _strategy_text(row: dict[str, Any]) -> str:
    st = row.get("strategy")
    if not st:
        # An infeasible row shows what its proof blames instead.
        # Rule families (mem_cap[stage=2] -> mem_cap) keep the column narrow; the report has all.
        families = list(dict.fromkeys(r.split("[")[0] for r in row.get("conflict_rules") or []))
        return f"conflict: {', '.join(families)}" if families else "-"
    return f"tp{st['tp']} pp{st['pp']} dp{st['dp']} ep{st['ep']} {st['weights']}/{st['kv_cache']}"


def _num(value: Any, fmt: str = ",.1f") -> str:
    return "-" if value is None else format(value, fmt)


def _objective_text(row: dict[str, Any]) -> str:
    if row.get("objective") is None:
        return "-"
    unit = row.get("objective_unit") or ""
    return f"{row['objective']:,.2f} {_SHORT_UNITS.get(unit, unit)}".strip()


TABLE_HEADER = (
    "instance",
    "status",
    "strategy",
    "objective",
    "TTFT ms",
    "TPOT ms",
    "tok/s/GPU",
    "time s",
    "verdict",
)


def table_cells(row: dict[str, Any]) -> list[str]:
    """One table line of a row, as strings."""
    m = row.get("metrics") or {}
    return [
        row["name"],
        row.get("status") or "-",
        _strategy_text(row),
        _objective_text(row),
        _num(m.get("ttft_ms")),
        _num(m.get("tpot_ms"), ",.2f"),
        _num(m.get("output_tokens_per_s_per_gpu")),
        _num(row.get("wall_s"), ".2f"),
        row["verdict"],
    ]


def _summary_line(rows: list[dict[str, Any]], wall_s: float) -> str:
    counts = summary(rows)
    parts = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    return f"{len(rows)} instance(s) in {wall_s:.1f} s: {parts or 'none'}"


def render_table(rows: list[dict[str, Any]], wall_s: float) -> str:
    """The plain-text table, then the reasons of every verdict other than pass."""
    lines = [list(TABLE_HEADER)] + [table_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(TABLE_HEADER))]
    numeric = {4, 5, 6, 7}
    out = []
    for n, line in enumerate(lines):
        out.append(
            "  ".join(
                c.rjust(w) if i in numeric else c.ljust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    out.append("")
    for row in rows:
        if row["verdict"] not in ("pass", "new"):
            out.append(f"{row['name']}: {row['verdict']}: {'; '.join(row['details'])}")
    fresh = [r["name"] for r in rows if r["verdict"] == "new"]
    if fresh:
        out.append(f"no expectation recorded (new): {', '.join(fresh)}")
    out.append(_summary_line(rows, wall_s))
    return "\n".join(out) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(rows: list[dict[str, Any]], wall_s: float) -> str:
    """A Markdown summary for a pull-request comment: counts, table, then the reasons."""
    counts = summary(rows)
    failing = sum(counts[v] for v in FAILING)
    head = "### Placement regression: " + ("failed" if failing else "passed")
    out = [
        head,
        "",
        _summary_line(rows, wall_s),
        "",
        "| " + " | ".join(TABLE_HEADER) + " |",
        "|"
        + "|".join("---:" if i in (4, 5, 6, 7) else "---" for i in range(len(TABLE_HEADER)))
        + "|",
    ]
    for row in rows:
        cells = table_cells(row)
        cells[-1] = f"**{cells[-1]}**" if row["verdict"] != "pass" else cells[-1]
        out.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    notes = [r for r in rows if r["verdict"] != "pass"]
    if notes:
        out += ["", "<details><summary>Details</summary>", ""]
        out += [
            f"- `{r['name']}` **{r['verdict']}**: {_md_escape('; '.join(r['details']))}"
            for r in notes
        ]
        out += ["", "</details>"]
    return "\n".join(out) + "\n"


def report_document(
    rows: list[dict[str, Any]], wall_s: float, opts: BatchOptions, jobs: int
) -> dict[str, Any]:
    """The JSON report: settings, counts and every row with its verdict and details."""
    return {
        "kind": "solve-batch-report",
        "version": 1,
        "settings": {
            "jobs": jobs,
            "workers": opts.workers,
            "seed": opts.seed,
            "time_limit_s": opts.time_limit,
            "deterministic_time": opts.deterministic_time,
        },
        "wall_s": round(wall_s, 3),
        "summary": summary(rows),
        "ok": not any(r["verdict"] in FAILING for r in rows),
        "rows": rows,
    }


def render_junit(rows: list[dict[str, Any]], wall_s: float) -> str:
    """JUnit XML: one testcase per instance; regressed is a failure, error an error."""
    counts = summary(rows)
    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="instances",
        tests=str(len(rows)),
        failures=str(counts["regressed"]),
        errors=str(counts["error"]),
        skipped="0",
        time=f"{wall_s:.3f}",
    )
    for row in rows:
        case = ET.SubElement(
            suite,
            "testcase",
            classname="instances",
            name=row["name"],
            time=f"{row.get('wall_s') or 0:.3f}",
        )
        text = "; ".join(row["details"])
        if row["verdict"] == "regressed":
            ET.SubElement(case, "failure", message=text[:500], type="regressed").text = text
        elif row["verdict"] == "error":
            ET.SubElement(
                case, "error", message=text[:500], type=row.get("error_kind") or "error"
            ).text = row.get("traceback") or text
        out = f"verdict: {row['verdict']}" + (f"; {text}" if text else "")
        ET.SubElement(case, "system-out").text = out
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _write(path: str | None, text: str) -> None:
    if path:
        Path(path).write_text(text, encoding="utf-8")


def run_batch(
    paths: list[str] | tuple[str, ...],
    opts: BatchOptions,
    jobs: int,
    update_expected: bool = False,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], float, list[str]]:
    """Solve, judge and (optionally) record: returns (rows, wall seconds, warnings)."""
    files = collect_instances(paths)
    t0 = time.perf_counter()
    bar = Progress(len(files), progress)
    try:
        rows = run_instances(files, opts, jobs, bar)
    finally:
        bar.close()
    judge_rows(rows)
    warnings = update_expectations(rows) if update_expected else []
    return rows, time.perf_counter() - t0, warnings


def check_failed(rows: list[dict[str, Any]], update_expected: bool) -> list[str]:
    """Names of the rows that fail ``--check`` (a just-recorded regression no longer fails)."""
    return [
        r["name"]
        for r in rows
        if r["verdict"] == "error"
        or (r["verdict"] == "regressed" and not (update_expected and r.get("recorded")))
    ]


def run_batch_cli(
    paths: list[str] | tuple[str, ...],
    fmt: str = "text",
    time_limit: float = 60.0,
    seed: int = 0,
    jobs: int | None = None,
    workers: int = 1,
    deterministic_time: float | None = None,
    check: bool = False,
    update_expected: bool = False,
    report_json: str | None = None,
    junit: str | None = None,
    markdown: str | None = None,
    out_file: str | None = None,
    strategy: str | None = None,
    objective: str | None = None,
) -> int:
    """``solve PATH...`` with several paths or a directory; returns the exit code."""
    if strategy is not None or objective is not None:
        click.echo(
            "error: --strategy and --objective apply to one instance, not to a batch", err=True
        )
        return EXIT_USAGE
    files = collect_instances(paths)
    if not files:
        click.echo(f"error: no *.json instance in {', '.join(paths)}", err=True)
        return EXIT_USAGE
    cores = os.cpu_count() or 1
    jobs = max(1, jobs if jobs is not None else cores)
    if jobs * workers > cores:
        click.echo(
            f"warning: --jobs {jobs} x --workers {workers} = {jobs * workers} solver threads on "
            f"{cores} core(s): runs will compete for cores",
            err=True,
        )
    opts = BatchOptions(
        time_limit=time_limit,
        seed=seed,
        workers=workers,
        deterministic_time=DEFAULT_DETERMINISTIC_TIME
        if deterministic_time is None
        else deterministic_time,
    )
    rows, wall_s, warnings = run_batch(paths, opts, jobs, update_expected, progress=show_progress())
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    doc = report_document(rows, wall_s, opts, jobs)
    _write(report_json, json.dumps(doc, indent=2) + "\n")
    _write(junit, render_junit(rows, wall_s))
    _write(markdown, render_markdown(rows, wall_s))
    if fmt == "json":
        text = json.dumps(doc, indent=2) + "\n"
    elif fmt == "markdown":
        text = render_markdown(rows, wall_s)
    else:
        text = render_table(rows, wall_s)
    if out_file:
        _write(out_file, text)
    else:
        click.echo(text, nl=False)
    if update_expected:
        click.echo(
            f"recorded the expectations of {sum(1 for r in rows if r.get('recorded'))} instance(s)",
            err=True,
        )
    failed = check_failed(rows, update_expected)
    if check and failed:
        click.echo(f"check failed: {', '.join(failed)}", err=True)
        return EXIT_CHECK_FAILED
    return EXIT_CHECK_OK
