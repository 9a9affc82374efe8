"""``solve PATH...`` over a folder or several files: solve, judge, record, report, and the exit code."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click

from ..backends import BackendError, RayOptions, import_ray
from .expectations import update_expectations
from .reports import render_junit, render_markdown, render_table, report_document
from .run import (
    DEFAULT_DETERMINISTIC_TIME,
    BatchOptions,
    Progress,
    collect_instances,
    run_instances,
    show_progress,
)
from .verdicts import judge_rows

EXIT_CHECK_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2

def _write(path: str | None, text: str) -> None:
    if path:
        Path(path).write_text(text, encoding="utf-8")


def run_batch(
    paths: list[str] | tuple[str, ...],
    opts: BatchOptions,
    jobs: int,
    update_expected: bool = False,
    progress: bool = False,
    ray: RayOptions | None = None,
) -> tuple[list[dict[str, Any]], float, list[str]]:
    """Solve, judge and (optionally) record: returns (rows, wall seconds, warnings)."""
    files = collect_instances(paths)
    t0 = time.perf_counter()
    bar = Progress(len(files), progress)
    try:
        rows = run_instances(files, opts, jobs, bar, ray=ray)
    finally:
        bar.close()
    judge_rows(rows)
    warnings = update_expectations(rows) if update_expected else []
    return rows, time.perf_counter() - t0, warnings


def check_failed(rows: list[dict[str, Any]], update_expected: bool, strict: bool = False) -> list[str]:
    """Names of the rows that fail ``--check`` (a just-recorded regression no longer fails).

    With ``strict``, any difference from the recording fails too: improved and changed rows.
    """
    failing = ("regressed", "improved", "changed") if strict else ("regressed",)
    return [
        r["name"]
        for r in rows
        if r["verdict"] == "error"
        or (r["verdict"] in failing and not (update_expected and r.get("recorded")))
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
    strict: bool = False,
    update_expected: bool = False,
    report_json: str | None = None,
    junit: str | None = None,
    markdown: str | None = None,
    out_file: str | None = None,
    strategy: str | None = None,
    objective: str | None = None,
    use_ray: bool = False,
    ray_address: str | None = None,
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
    jobs_given = jobs
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
    ray = None
    if use_ray or ray_address:
        # One Ray task per instance; a local Ray started here gets --jobs CPUs when given.
        ray = RayOptions(address=ray_address, num_cpus=jobs_given, cpus_per_task=workers,
                         flag="--ray-address" if ray_address else "--ray")
    try:
        if ray is not None:
            import_ray(ray.flag)
        rows, wall_s, warnings = run_batch(paths, opts, jobs, update_expected, progress=show_progress(), ray=ray)
    except BackendError as err:
        click.echo(f"error: {err}", err=True)
        return EXIT_USAGE
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
    failed = check_failed(rows, update_expected, strict)
    if check and failed:
        click.echo(f"check failed: {', '.join(failed)}", err=True)
        return EXIT_CHECK_FAILED
    return EXIT_CHECK_OK
