"""``solve sweep INSTANCE --vary PATH=SPEC ...``: the command-line flow and its exit code."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from ...input.errors import InputError, load_json
from ...input.schema import OBJECTIVE_NAMES
from ..backends import BackendError, RayOptions, import_ray
from ..batch.run import DEFAULT_DETERMINISTIC_TIME, BatchOptions, show_progress
from .output import SweepProgress, render_csv, render_table, sweep_document
from .run import point_instances, run_sweep
from .spec import Axis, check_axes, load_sweep_file, parse_vary, points

EXIT_OK, EXIT_POINT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
PLOT_SUFFIXES = (".png", ".svg")


class _Usage(Exception):
    """A bad option or file: printed as one ``error:`` line, exit code 2."""


@click.command("sweep", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("instance", type=click.Path(dir_okay=False))
@click.option("--vary", "vary", multiple=True, metavar="PATH=SPEC",
              help="Vary an instance field: PATH is dotted (workload.request_rate, cluster.gpu, precision.weights, "
                   "search.tp[0]); SPEC a comma list (JSON values or text) or a range a:b:xk, a:b:+k, a:b:k. "
                   "Repeat for a Cartesian product (the first is the outermost loop).")
@click.option("--sweep-file", type=click.Path(dir_okay=False), default=None,
              help='JSON file {"vary": {"PATH": [values] or "SPEC", ...}, "objective": NAME}; its paths come '
                   "before the --vary ones.")
@click.option("--objective", type=click.Choice(OBJECTIVE_NAMES), default=None,
              help="Override the instance's objective at every point (a varied `objective` wins).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True,
              help="What is printed on stdout.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False), default=None, help="Write the rows as CSV.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), default=None,
              help="Write the rows, the sweep and the solve settings as JSON.")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False), default=None,
              help="Write the Pareto figure (PNG or SVG, by the suffix).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Points solved in parallel processes (or Ray CPUs with --ray) [default: the number of cores].")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="CP-SAT workers per point (1 is deterministic).")
@click.option("--seed", type=int, default=0, show_default=True, help="CP-SAT random seed.")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Wall-clock seconds per point, a safety net.")
@click.option("--deterministic-time", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_DETERMINISTIC_TIME, show_default=True,
              help="CP-SAT limit per solve phase in deterministic time units (answers do not depend on load).")
@click.option("--ray", "use_ray", is_flag=True, help="Run the points as Ray tasks on a local Ray (started if needed).")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="Run the points as Ray tasks on an existing Ray cluster (e.g. ray://head:10001 or auto).")
def sweep_command(instance: str, vary: tuple[str, ...], sweep_file: str | None, objective: str | None, fmt: str,
                  csv_file: str | None, json_file: str | None, plot_file: str | None, jobs: int | None,
                  workers: int, seed: int, time_limit: float, deterministic_time: float, use_ray: bool,
                  ray_address: str | None) -> None:
    """Solve an instance at every point of a grid of changed fields; one row per point, Pareto marks.

    \b
    solve sweep instances/llama70b_h100.json --vary workload.request_rate=1:32:x2 \\
        --vary cluster.gpu=h100-sxm-80gb,h200-141gb,l40s-48gb --csv sweep.csv --plot sweep.png

    \b
    Exit codes:
      0  every point was solved (a point may be infeasible or unknown: that is its answer)
      1  a point failed (an `error` row: a crash or a failed verification; a bug to report)
      2  bad input (the message names the option or file, the path, the value and what is accepted)
    """
    try:
        sys.exit(_run(instance, vary, sweep_file, objective, fmt, csv_file, json_file, plot_file, jobs, workers,
                      seed, time_limit, deterministic_time, use_ray, ray_address))
    except (InputError, BackendError, _Usage) as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_BAD_INPUT)


def _axes(vary: tuple[str, ...], sweep_file: str | None) -> tuple[list[Axis], str | None]:
    axes: list[Axis] = []
    file_objective = None
    if sweep_file:
        axes, file_objective = load_sweep_file(sweep_file)
    axes += [parse_vary(text) for text in vary]
    if not axes:
        raise _Usage("nothing to sweep: give --vary PATH=SPEC (e.g. workload.request_rate=1:32:x2) or --sweep-file FILE")
    check_axes(axes)
    return axes, file_objective


def _check_output(flag: str, path: str | None, suffixes: tuple[str, ...] | None = None) -> None:
    """Refuse an output the sweep could not write, before the sweep runs rather than after."""
    if path is None:
        return
    if suffixes and Path(path).suffix.lower() not in suffixes:
        raise _Usage(f"{flag} {path}: unknown figure format {Path(path).suffix or '(no suffix)'}; "
                     f"accepted: {', '.join(suffixes)}")
    parent = Path(path).parent
    if not parent.is_dir():
        raise _Usage(f"{flag} {path}: the folder {parent} does not exist")


def _write(flag: str, path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _Usage(f"{flag} {path}: cannot write the file ({exc.strerror})") from None


def _run(instance: str, vary: tuple[str, ...], sweep_file: str | None, objective: str | None, fmt: str,
         csv_file: str | None, json_file: str | None, plot_file: str | None, jobs: int | None, workers: int,
         seed: int, time_limit: float, deterministic_time: float, use_ray: bool, ray_address: str | None) -> int:
    axes, file_objective = _axes(vary, sweep_file)
    objective = objective or file_objective
    for flag, path in (("--csv", csv_file), ("--json", json_file)):
        _check_output(flag, path)
    _check_output("--plot", plot_file, PLOT_SUFFIXES)
    ray = None
    if use_ray or ray_address:
        ray = RayOptions(address=ray_address, num_cpus=jobs, cpus_per_task=workers,
                         flag="--ray-address" if ray_address else "--ray")
        import_ray(ray.flag)  # fail now, not after validating thousands of points
    data = load_json(instance)
    if not isinstance(data, dict):
        raise InputError(instance, "", data, "an instance must be a JSON object")
    pts = points(axes)
    instances = point_instances(data, instance, axes, pts, objective)

    cores = os.cpu_count() or 1
    jobs = max(1, jobs if jobs is not None else cores)
    if ray is None and jobs * workers > cores:
        click.echo(f"warning: --jobs {jobs} x --workers {workers} = {jobs * workers} solver threads on {cores} "
                   "core(s): points will compete for cores", err=True)
    opts = BatchOptions(time_limit=time_limit, deterministic_time=deterministic_time, seed=seed, workers=workers)
    t0 = time.perf_counter()
    bar = SweepProgress(len(pts), show_progress())
    try:
        rows = run_sweep(instances, pts, instance, opts, jobs, on_done=bar.update, ray=ray)
    finally:
        bar.close()
    wall_s = time.perf_counter() - t0

    settings = _settings(opts, jobs, ray)
    doc = sweep_document(rows, axes, instance=instance, objective=objective, settings=settings, wall_s=wall_s)
    if csv_file:
        _write("--csv", csv_file, render_csv(rows, axes))
    if json_file:
        _write("--json", json_file, json.dumps(doc, indent=2) + "\n")
    if plot_file:
        _plot(rows, axes, plot_file, data)
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2))
    elif fmt == "csv":
        click.echo(render_csv(rows, axes), nl=False)
    else:
        click.echo(render_table(rows, axes, wall_s), nl=False)
    failed = [r["index"] for r in rows if r["status"] == "error"]
    if failed:
        click.echo(f"error: {len(failed)} point(s) failed: {', '.join(map(str, failed))}", err=True)
        return EXIT_POINT_FAILED
    return EXIT_OK


def _settings(opts: BatchOptions, jobs: int, ray: RayOptions | None) -> dict[str, Any]:
    """How the points were solved (the same for all; recorded so a sweep can be rerun as it was)."""
    backend = "local processes" if ray is None else f"ray ({ray.address or 'local'})"
    return {"time_limit_s": opts.time_limit, "deterministic_time": opts.deterministic_time, "seed": opts.seed,
            "workers": opts.workers, "jobs": jobs, "backend": backend}


def _plot(rows: list[dict[str, Any]], axes: list[Axis], path: str, data: dict[str, Any]) -> None:
    # Lazy: matplotlib is only needed for the figure.
    from ...report import plots

    try:
        plots.sweep_figure(rows, path, vary=[a.path for a in axes], slo=data.get("slo") or {})
    except OSError as exc:
        raise _Usage(f"--plot {path}: cannot write the figure ({exc.strerror})") from None
