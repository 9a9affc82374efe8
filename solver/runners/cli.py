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
from ..search.planner import SolveParams
from .batch.command import run_batch_cli
from .calibrate import calibrate_command


@click.command("plan", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--strategy", "strategy", default=None,
              help="Verify a proposed strategy, e.g. tp=2,pp=4 (keys: tp, pp, dp, ep, layers=19+21+21+19, "
                   "weights, kv, batch). Fields not given are the best under the pins; checked with the exact cost model.")
@click.option("--objective", type=click.Choice(["max_throughput_per_gpu", "min_gpus", "min_tpot", "min_ttft"]),
              default=None, help="Override the instance's objective.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None, help="Write the report to FILE.")
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
def plan_command(paths: tuple[str, ...], strategy: str | None, objective: str | None, fmt: str, out_file: str | None,
         time_limit: float, workers: int, seed: int, jobs: int | None, deterministic_time: float | None,
         check: bool, strict: bool, update_expected: bool, report_json: str | None, junit: str | None,
         markdown: str | None) -> None:
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
    # A regression option on one file runs the batch path over that file (a batch of one).
    if len(paths) != 1 or Path(paths[0]).is_dir() or batch_options:
        sys.exit(run_batch_cli(paths, fmt=fmt, time_limit=time_limit, seed=seed, jobs=jobs, workers=workers,
                               deterministic_time=deterministic_time, check=check, strict=strict,
                               update_expected=update_expected, report_json=report_json, junit=junit,
                               markdown=markdown, out_file=out_file, strategy=strategy, objective=objective))
    params = SolveParams(time_limit_s=time_limit, workers=workers, seed=seed,
                         **({} if deterministic_time is None else {"deterministic_time": deterministic_time}))
    try:
        report = solve_file(paths[0], strategy=strategy, objective=objective, params=params)
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
    sys.exit(report.exit_code)


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

    `solve plan --help` lists the planning options. Exit codes: 0 plan found (or the proposal
    passes), 1 proven infeasible (or the proposal fails), 2 bad input, 3 no answer within limits.
    """


main.add_command(plan_command)
main.add_command(calibrate_command)


if __name__ == "__main__":  # pragma: no cover
    main()
