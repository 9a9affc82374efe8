"""The ``solve`` command: one instance (plan, verify a strategy, proof) or a batch of them.

Exit codes: 0 a plan was found (or a proposed strategy passes every requirement); 1 proven
infeasible (or the proposed strategy fails a requirement); 2 bad input; 3 no answer within limits.
It uses the public API (:mod:`solver.api`) as a user would, and :mod:`solver.runners.batch` for
folders and regression runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..api import EXIT_BAD_INPUT, solve_file
from ..input.errors import InputError
from ..input.prices import parse_prices
from ..input.schema import OBJECTIVE_NAMES
from ..search.planner import SolveParams
from .batch.command import run_batch_cli
from .calibrate import calibrate_command
from .experts import experts_command
from .sweep.command import sweep_command


@click.command("plan", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--strategy", "strategy", default=None,
              help="Verify a proposed strategy, e.g. tp=2,pp=4 (keys: tp, pp, dp, ep, layers=19+21+21+19, "
                   "weights, kv, batch). Fields not given are the best under the pins; checked with the exact cost model.")
@click.option("--objective", type=click.Choice(OBJECTIVE_NAMES),
              default=None, help="Override the instance's objective.")
@click.option("--price", "prices", multiple=True, metavar="[GPU=]USD",
              help="GPU-hour price replacing the instance's and the catalog's: --price 2.5 (every type) or "
                   "--price h100-sxm-80gb=2.5 (repeat for several types).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None, help="Write the report to FILE.")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False), default=None,
              help="Write a picture of the plan to FILE (.png or .svg): memory per GPU against capacity, and "
                   "latency against request rate with the SLO lines when the workload has a rate.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False), default=None,
              help="Write a self-contained HTML report of the plan, its picture included, to FILE.")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Wall-clock seconds for each CP-SAT solve.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="CP-SAT workers (1 is deterministic; more is faster on big instances).")
@click.option("--seed", type=int, default=0, show_default=True, help="CP-SAT random seed.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Batch: instances solved in parallel processes [default: the number of cores].")
@click.option("--deterministic-time", type=click.FloatRange(min=0, min_open=True), default=None,
              help="CP-SAT limit per solve phase in deterministic time units, so answers do not depend "
                   "on machine load [default: 30].")
@click.option("--check", is_flag=True,
              help="Batch: exit 1 when any instance is regressed or error against its `expect` block.")
@click.option("--strict", is_flag=True,
              help="Batch, with --check: fail on improved and changed instances too (any difference).")
@click.option("--update-expected", is_flag=True,
              help="Batch: record the current results in the `expect` block of every instance run.")
@click.option("--report-json", type=click.Path(dir_okay=False), default=None,
              help="Batch: write every row with its verdict and details to FILE (JSON).")
@click.option("--junit", type=click.Path(dir_okay=False), default=None,
              help="Batch: write a JUnit XML report to FILE (one test case per instance).")
@click.option("--markdown", type=click.Path(dir_okay=False), default=None,
              help="Batch: write a Markdown summary to FILE (for pull-request comments).")
@click.option("--ray", "use_ray", is_flag=True,
              help="Batch: solve the instances as Ray tasks on a local Ray (started if needed; needs the ray extra).")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="Batch: solve the instances as Ray tasks on an existing Ray cluster at ADDR.")
def plan_command(paths: tuple[str, ...], strategy: str | None, objective: str | None, prices: tuple[str, ...],
         fmt: str, out_file: str | None,
         time_limit: float, workers: int, seed: int, jobs: int | None, deterministic_time: float | None,
         check: bool, strict: bool, update_expected: bool, report_json: str | None, junit: str | None,
         markdown: str | None, use_ray: bool = False, ray_address: str | None = None,
         plot_file: str | None = None, html_file: str | None = None) -> None:
    """Plan how to split an LLM across a GPU cluster, or prove it cannot be done.

    \b
    solve instances/llama70b_h100.json                  best placement, proven optimal
    solve instances/llama70b_h100.json --strategy tp=2,pp=4   verify a proposed strategy
    solve instances/llama70b_t4.json                    proof of infeasibility and repairs

    \b
    Exit codes:
      0  plan found (or the proposed strategy passes every requirement)
      1  proven infeasible (or the proposed strategy fails a requirement)
      2  bad input (the message names the file, the JSON path, the value and what is accepted)
      3  no answer within the limits
    """
    batch_options = check or strict or update_expected or report_json or junit or markdown or jobs is not None
    batch_options = batch_options or use_ray or ray_address is not None
    # A regression option on one file runs the batch path over that file (a batch of one).
    if len(paths) != 1 or Path(paths[0]).is_dir() or batch_options:
        if plot_file or html_file:
            flag = "--plot" if plot_file else "--html"
            click.echo(f"error: {flag} takes one instance (not a folder, several files or a batch option)", err=True)
            sys.exit(EXIT_BAD_INPUT)
        if prices:
            click.echo("error: --price applies to one instance; in a batch, write the price into each instance "
                       "(cluster.price_per_gpu_hour_usd)", err=True)
            sys.exit(EXIT_BAD_INPUT)
        sys.exit(run_batch_cli(paths, fmt=fmt, time_limit=time_limit, seed=seed, jobs=jobs, workers=workers,
                               deterministic_time=deterministic_time, check=check, strict=strict,
                               update_expected=update_expected, report_json=report_json, junit=junit,
                               markdown=markdown, out_file=out_file, strategy=strategy, objective=objective,
                               use_ray=use_ray, ray_address=ray_address))
    _check_picture_paths(plot_file, html_file)  # before the solve: a typo costs no solver time
    params = SolveParams(time_limit_s=time_limit, workers=workers, seed=seed,
                         **({} if deterministic_time is None else {"deterministic_time": deterministic_time}))
    try:
        price_map = parse_prices(prices) if prices else None
        report = solve_file(paths[0], strategy=strategy, objective=objective, params=params, prices=price_map)
    except InputError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except Exception as err:  # noqa: BLE001 - never a traceback, and never the exit code of a proof
        click.echo(f"error: internal error ({type(err).__name__}: {err}); the input may be outside what the "
                   "planner handles, please report it with the instance", err=True)
        sys.exit(EXIT_BAD_INPUT)
    text = report.to_json() + "\n" if fmt == "json" else report.to_text(markdown=(fmt == "markdown"))
    if out_file:
        try:
            Path(out_file).write_text(text, encoding="utf-8")
        except OSError as exc:
            click.echo(f"error: --out {out_file}: cannot write the report ({exc.strerror})", err=True)
            sys.exit(EXIT_BAD_INPUT)
    else:
        click.echo(text, nl=False)
    _write_pictures(report, plot_file, html_file)
    sys.exit(report.exit_code)


def _check_picture_paths(plot_file: str | None, html_file: str | None) -> None:
    """``--plot`` needs a .png or .svg name, and both a folder that exists; else exit 2 at once."""
    for flag, name in (("--plot", plot_file), ("--html", html_file)):
        if not name:
            continue
        suffix = Path(name).suffix.lower()
        if flag == "--plot" and suffix not in (".png", ".svg"):
            click.echo(f"error: --plot {name}: the picture's format comes from its suffix: use .png or .svg "
                       f"(got {suffix or 'no suffix'!r})", err=True)
            sys.exit(EXIT_BAD_INPUT)
        if not Path(name).resolve().parent.is_dir():
            click.echo(f"error: {flag} {name}: the folder {Path(name).parent} does not exist", err=True)
            sys.exit(EXIT_BAD_INPUT)


def _write_pictures(report, plot_file: str | None, html_file: str | None) -> None:
    """``--plot``: the plan's picture (with its latency curve at a request rate); ``--html``: the page.

    A document without GPUs (a proof) has no picture: a note on stderr, nothing written, and the
    exit code stays the proof's. matplotlib loads only here, so plain ``solve`` starts as fast as before.
    """
    if not plot_file and not html_file:
        return
    import tempfile

    from ..report.html import html_report
    from ..report.plots import plan_figure
    from ..simulate.curve import latency_curve

    doc = report.document
    drawable = bool(doc.get("gpus"))
    if plot_file and not drawable:
        click.echo(f"note: --plot {plot_file}: no plan to draw (status {doc.get('status')}); nothing written",
                   err=True)
    with tempfile.TemporaryDirectory() as tmp:
        figures = {}
        if drawable:
            ev = report.evaluation
            curve = latency_curve(report.problem, ev.placement) if ev is not None else []
            target = Path(plot_file) if plot_file else Path(tmp) / "plan.png"
            try:
                plan_figure(doc, target, curve)
            except (OSError, ValueError) as exc:
                where = f"--plot {plot_file}" if plot_file else f"--html {html_file}"
                click.echo(f"error: {where}: cannot write the picture ({exc})", err=True)
                sys.exit(EXIT_BAD_INPUT)
            caption = "memory per GPU against capacity" + (", latency against request rate" if curve else "")
            figures[caption] = target
        if html_file:
            try:
                html_report(doc, figures, html_file)
            except OSError as exc:
                click.echo(f"error: --html {html_file}: cannot write the report ({exc.strerror})", err=True)
                sys.exit(EXIT_BAD_INPUT)


class _Solve(click.Group):
    """``solve FILE ...`` plans (the default command); ``solve calibrate ...`` and others are named."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help", "--version"):
            args = ["plan", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_Solve, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llm-placement-solver", prog_name="solve")
def main() -> None:
    """Plan how to serve an LLM on GPUs, or prove it cannot be done.

    \b
    solve instances/llama70b_h100.json                  best placement (the default command, `plan`)
    solve instances/llama70b_h100.json --strategy tp=2,pp=4   verify a proposed strategy
    solve instances/ --check                            batch regression over a folder
    cat x.json | solve -                                an instance on standard input
    solve calibrate results.json --deployment ...       fit the cost model to your benchmark runs
    solve sweep x.json --vary workload.request_rate=1:32:x2   one row per point, Pareto marks (docs/sweep.md)

    `solve plan --help` lists the planning options. Exit codes: 0 plan found (or the proposal
    passes), 1 proven infeasible (or the proposal fails), 2 bad input, 3 no answer within limits.
    """


main.add_command(plan_command)
main.add_command(calibrate_command)
main.add_command(experts_command)
main.add_command(sweep_command)


if __name__ == "__main__":  # pragma: no cover
    main()
