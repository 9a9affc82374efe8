"""The ``solve`` command.

Exit codes: 0 a plan was found (or a proposed strategy passes every requirement); 1 proven
infeasible (or the proposed strategy fails a requirement); 2 bad input; 3 no answer within limits.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .errors import InputError
from .schema import KV_DTYPES, WEIGHT_DTYPES

EXIT_OK, EXIT_INFEASIBLE, EXIT_BAD_INPUT, EXIT_UNKNOWN = 0, 1, 2, 3

_STRATEGY_KEYS = {"tp": "tp", "pp": "pp", "dp": "dp", "ep": "ep", "layers": "layers_per_stage",
                  "layers_per_stage": "layers_per_stage", "weights": "weights", "kv": "kv_cache",
                  "kv_cache": "kv_cache", "batch": "max_num_seqs", "max_num_seqs": "max_num_seqs"}


def parse_strategy(text: str) -> dict[str, Any]:
    """``tp=2,pp=4,layers=19+21+21+19,weights=fp8,kv=fp8,batch=64`` -> strategy pin fields."""
    out: dict[str, Any] = {}
    if not text.strip():
        raise InputError("--strategy", "", text, f"empty; give key=value pairs, keys: {', '.join(sorted(_STRATEGY_KEYS))}")
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise InputError("--strategy", part, part, f"expected key=value; keys: {', '.join(sorted(_STRATEGY_KEYS))}")
        key, value = (s.strip() for s in part.split("=", 1))
        field = _STRATEGY_KEYS.get(key)
        if field is None:
            from .errors import closest

            raise InputError("--strategy", key, value,
                             f"unknown key '{key}'{closest(key, _STRATEGY_KEYS)} (keys: {', '.join(sorted(_STRATEGY_KEYS))})")
        if field in out:
            raise InputError("--strategy", key, value, f"{key} is given twice")
        if field in ("weights", "kv_cache"):
            accepted = WEIGHT_DTYPES if field == "weights" else KV_DTYPES
            if value not in accepted:
                raise InputError("--strategy", key, value, f"expected one of {', '.join(accepted)}")
            out[field] = value
        elif field == "layers_per_stage":
            try:
                layers = [int(x) for x in value.split("+")]
            except ValueError:
                raise InputError("--strategy", key, value, "expected layer counts joined by '+', e.g. 19+21+21+19") from None
            if any(n <= 0 for n in layers):
                raise InputError("--strategy", key, value, "every stage needs at least one layer")
            out[field] = layers
        else:
            try:
                n = int(value)
            except ValueError:
                raise InputError("--strategy", key, value, "expected a positive integer") from None
            if n <= 0:
                raise InputError("--strategy", key, value, "expected a positive integer")
            out[field] = n
    if "layers_per_stage" in out and "pp" not in out:
        out["pp"] = len(out["layers_per_stage"])
    if "layers_per_stage" in out and out["pp"] != len(out["layers_per_stage"]):
        raise InputError("--strategy", "layers", value, f"{len(out['layers_per_stage'])} stages given but pp = {out['pp']}")
    return out


def _ortools_version() -> str:
    from ortools import __version__

    return __version__


def solve_document(path: str, strategy: str | None = None, objective: str | None = None,
                   time_limit: float = 60.0, workers: int = 1, seed: int = 0,
                   deterministic_time: float | None = None) -> tuple[int, dict[str, Any]]:
    """Run one instance; return (exit code, JSON document). Raises :class:`InputError` on bad input."""
    from .errors import load_json
    from .planner import OBJECTIVE_UNITS, SolveParams, plan
    from .problem import build_problem, parse_instance
    from .report import document

    data = load_json(path)
    inst = parse_instance(data, path)
    if objective:
        inst = inst.model_copy(update={"objective": objective})
    params = SolveParams(time_limit_s=time_limit, workers=workers, seed=seed, deterministic_time=deterministic_time)
    if strategy is not None:
        pins = {**inst.strategy.model_dump(exclude_none=True), **parse_strategy(strategy)}
        try:
            inst = parse_instance({**data, "strategy": pins, **({"objective": objective} if objective else {})}, path)
            problem = build_problem(inst, path)
        except InputError as err:
            if err.path.startswith("strategy"):  # the value came from the command line
                raise InputError("--strategy", err.path.removeprefix("strategy."), err.value, err.accepted) from None
            raise
        return _verify_strategy(problem, params)
    problem = build_problem(inst, path)
    result = plan(problem, params)
    solver_info = {
        "mode": "solve",
        "time_s": round(result.time_s, 4),
        "objective": None if result.objective is None else round(result.objective, 6),
        "objective_unit": OBJECTIVE_UNITS[problem.instance.objective],
        "bound": None if result.bound is None else round(_bound_side(problem, result), 6),
        "gap": None if result.gap is None else round(result.gap, 8),
        "ortools": _ortools_version(),
        "workers": workers,
        "seed": seed,
        "options_considered": result.options_considered,
        "options_in_model": result.options_in_model,
        "phases": [{**p, "wall_s": round(p["wall_s"], 4)} for p in result.phases],
    }
    extra: dict[str, Any] = {"binding": result.binding}
    if result.status in ("optimal", "feasible"):
        if not problem.pins.is_empty():
            extra["optimum"] = _compare_with_optimum(problem, result.evaluation, params)
        return EXIT_OK, document(problem, result.status, result.evaluation, solver_info, extra=extra)
    if result.status == "infeasible":
        from .diagnose import diagnose

        proof = diagnose(problem, params)
        return EXIT_INFEASIBLE, document(problem, "infeasible", None, solver_info, proof=proof, extra=extra)
    return EXIT_UNKNOWN, document(problem, "unknown", None, solver_info, extra=extra)


def _bound_side(problem, result) -> float:
    """The bound in user units, never on the wrong side of the exact objective.

    The bound is the model's (integer tables rounded up); the objective is the exact physics. They
    differ by the rounding, which could put a maximisation's bound below its objective.
    """
    if problem.instance.objective == "max_throughput_per_gpu":
        return max(result.bound, result.objective)
    return min(result.bound, result.objective)


def _verify_strategy(problem, params) -> tuple[int, dict[str, Any]]:
    from .report import document
    from .verify import complete_strategy, evaluate

    placement, filled = complete_strategy(problem)
    ev = evaluate(problem, placement)
    status = "feasible" if ev.feasible else "infeasible"
    extra: dict[str, Any] = {"strategy_defaults": filled,
                             "optimum": _compare_with_optimum(problem, ev if ev.feasible else None, params)}
    proof = None
    if not ev.feasible:
        from .diagnose import diagnose

        proof = diagnose(problem, params, evaluation=ev)
    return (EXIT_OK if ev.feasible else EXIT_INFEASIBLE,
            document(problem, status, ev, {"mode": "verify"}, proof=proof, extra=extra))


def _compare_with_optimum(problem, ev, params) -> dict[str, Any]:
    """The optimum with every pin dropped, against the proposed / pinned plan."""
    from .planner import OBJECTIVE_UNITS, exact_objective, plan
    from .problem import build_problem
    from .schema import StrategyPins

    free = problem.instance.model_copy(update={"strategy": StrategyPins()})
    res = plan(build_problem(free, problem.file), params)
    unit = OBJECTIVE_UNITS[problem.instance.objective]
    if res.objective is None:
        return {"status": res.status, "statement": f"without the pins the instance is {res.status}"}
    best = res.objective
    st = res.placement.strategy()
    desc = f"tp={st['tp']} pp={st['pp']} dp={st['dp']} ep={st['ep']} {st['weights']}/{st['kv_cache']} " \
           f"layers {'+'.join(map(str, res.placement.layers_per_stage))}"
    out = {"status": res.status, "objective": round(best, 6), "strategy": st,
           "layers_per_stage": list(res.placement.layers_per_stage)}
    if ev is None:
        out["statement"] = f"the optimum without pins is {best:,.2f} {unit} with {desc}"
        return out
    mine = exact_objective(problem, ev)
    worse = (best - mine) / best if problem.instance.objective == "max_throughput_per_gpu" else (mine - best) / best
    out["proposed_objective"] = round(mine, 6)
    out["relative_distance"] = round(worse, 6)
    out["statement"] = (f"proposed {mine:,.2f} {unit}; optimum without pins {best:,.2f} {unit} with {desc} "
                        f"({worse:.1%} {'worse' if worse > 1e-9 else 'off: the proposal is optimal'})")
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--strategy", "strategy", default=None,
              help="Verify a proposed strategy, e.g. tp=2,pp=4 (keys: tp, pp, dp, ep, layers=19+21+21+19, "
                   "weights, kv, batch). Evaluated with the exact cost model, no solver.")
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
              help="Batch: CP-SAT limit per solve in deterministic time units, so verdicts do not depend "
                   "on machine load [default: 30].")
@click.option("--check", is_flag=True,
              help="Batch: exit 1 when any instance is regressed or error against its `expect` block.")
@click.option("--update-expected", is_flag=True,
              help="Batch: record the current results in the `expect` block of every instance run.")
@click.option("--report-json", type=click.Path(dir_okay=False), default=None,
              help="Batch: write every row with its verdict and details to FILE (JSON).")
@click.option("--junit", type=click.Path(dir_okay=False), default=None,
              help="Batch: write a JUnit XML report to FILE (one test case per instance).")
@click.option("--markdown", type=click.Path(dir_okay=False), default=None,
              help="Batch: write a Markdown summary to FILE (for pull-request comments).")
def main(paths: tuple[str, ...], strategy: str | None, objective: str | None, fmt: str, out_file: str | None,
         time_limit: float, workers: int, seed: int, jobs: int | None, deterministic_time: float | None,
         check: bool, update_expected: bool, report_json: str | None, junit: str | None,
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
    batch_options = check or update_expected or report_json or junit or markdown or jobs is not None \
        or deterministic_time is not None
    # A regression option on one file runs the batch path over that file (a batch of one).
    if len(paths) != 1 or Path(paths[0]).is_dir() or batch_options:
        from .batch import run_batch_cli

        sys.exit(run_batch_cli(paths, fmt=fmt, time_limit=time_limit, seed=seed, jobs=jobs, workers=workers,
                               deterministic_time=deterministic_time, check=check,
                               update_expected=update_expected, report_json=report_json, junit=junit,
                               markdown=markdown, out_file=out_file, strategy=strategy, objective=objective))
    from .report import render_text, to_json

    try:
        code, doc = solve_document(paths[0], strategy=strategy, objective=objective, time_limit=time_limit,
                                   workers=workers, seed=seed)
    except InputError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    text = to_json(doc) + "\n" if fmt == "json" else render_text(doc, md=(fmt == "markdown"))
    if out_file:
        try:
            Path(out_file).write_text(text, encoding="utf-8")
        except OSError as exc:
            click.echo(f"error: --out {out_file}: cannot write the report ({exc.strerror})", err=True)
            sys.exit(EXIT_BAD_INPUT)
    else:
        click.echo(text, nl=False)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
