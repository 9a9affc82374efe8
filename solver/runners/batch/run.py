"""Running a batch: the instance files of the given paths, each solved into a report row, in parallel processes.

Runs are deterministic: one CP-SAT worker per instance, a fixed seed and a limit in CP-SAT's
deterministic time, so a verdict does not flip with machine load. A row is a plain dict (it crosses
process boundaries) with the figures the verdicts compare; failures become rows, never exceptions.
"""

from __future__ import annotations

import os
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ...api import solve_file
from ...input.catalog import reload_catalog
from ...input.errors import InputError
from ...search.planner import SolveParams, VerificationError
from ..backends import RayOptions, map_ordered

KEY_METRICS = ("ttft_ms", "tpot_ms", "output_tokens_per_s_per_gpu")
PLAN_STATUSES = ("optimal", "feasible")
# Deterministic-time units are roughly seconds of one core; 30 leaves the 60 s wall-clock limit
# as a safety net that a loaded machine does not reach first (which would make verdicts flaky).
DEFAULT_DETERMINISTIC_TIME = 30.0


@dataclass(frozen=True)
class BatchOptions:
    """How every instance of a batch is solved (the same for all, so runs are comparable)."""

    time_limit: float = 60.0
    deterministic_time: float = DEFAULT_DETERMINISTIC_TIME
    seed: int = 0
    workers: int = 1


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
    row: dict[str, Any] = {"file": path, "name": Path(path).stem, "status": "error"}
    t0 = time.perf_counter()
    try:
        params = SolveParams(time_limit_s=opts.time_limit, workers=opts.workers, seed=opts.seed,
                             deterministic_time=opts.deterministic_time)
        report = solve_file(path, params=params)
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
        row.update(_row_from_document(report.exit_code, report.document))
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
    files: list[Path], opts: BatchOptions, jobs: int, progress: Progress | None = None,
    ray: RayOptions | None = None,
) -> list[dict[str, Any]]:
    """Solve every file, in parallel processes when ``jobs`` > 1 (one Ray task per file with
    ``ray``); rows in the order of ``files``, the same rows whichever backend ran them."""
    # Catalog cards are cached per process; the caller may have changed SOLVE_CATALOG_PATH.
    reload_catalog()
    try:
        # One backend for batches and sweeps (solver/runners/backends.py): in this process, a spawn
        # process pool that stops its workers on Ctrl-C / SIGTERM, or Ray.
        rows = map_ordered(solve_row, [(str(f), opts) for f in files], jobs, ray=ray,
                           on_done=lambda i, row: _tick(progress, row),
                           on_error=lambda i, err: _crash_row(files[i], err))
    finally:
        # Leave no card cached from a catalog path that the caller may be about to drop.
        reload_catalog()
    return [r for r in rows if r is not None]


def _crash_row(file: Path, err: BaseException) -> dict[str, Any]:
    """The row of an instance whose worker died (or whose Ray task failed)."""
    return {"file": str(file), "name": file.stem, "status": "error", "error_kind": "crash",
            "error": f"{type(err).__name__}: {err}"}


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
