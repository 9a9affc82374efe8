"""Solving a sweep: every point's instance validated, solved deterministically, turned into a row.

Points are solved like batch instances (:class:`~solver.runners.batch.run.BatchOptions`: one
CP-SAT worker, a fixed seed, a deterministic time limit), so a row does not depend on the machine,
the number of jobs or the backend; rows come back in point order. A row is a plain JSON-able dict
(the contract with reports and plots, docs/sweep.md); a point that crashes is an ``error`` row.
"""

from __future__ import annotations

import json
import time
import traceback
from typing import Any

from ...api import plan, plan_capacity
from ...input.catalog import reload_catalog
from ...input.errors import InputError
from ...problem import Problem, build_problem, parse_instance
from ...search.planner import SolveParams, VerificationError
from ..backends import RayOptions, map_ordered
from ..batch.run import BatchOptions
from .pareto import mark_pareto
from .spec import Axis, apply_point

# The row contract (docs/sweep.md); every row has exactly these keys.
ROW_KEYS = (
    "index", "point", "status", "error", "gpu", "strategy", "gpus_used", "cost_per_hour_usd",
    "cost_per_million_output_tokens_usd", "ttft_ms", "tpot_ms", "ttft_p99_ms", "tpot_p99_ms",
    "output_tokens_per_s", "output_tokens_per_s_per_gpu", "request_rate", "objective", "objective_unit",
    "solve_s", "pareto",
)
# Fields that depend on the machine's speed; everything else is the same on every run.
TIMING_KEYS = ("solve_s",)


def describe_point(point: dict[str, Any]) -> str:
    """``workload.request_rate=4, cluster.gpu=h200-141gb`` (JSON for lists and objects)."""
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in point.items())


def _offers_candidates(data: dict[str, Any]) -> bool:
    cluster = data.get("cluster")
    return isinstance(cluster, dict) and cluster.get("candidates") is not None


def check_point(data: dict[str, Any], file: str | None) -> Problem | None:
    """A point's instance validated and resolved (InputError when it is bad input).

    ``file`` is the original instance's path, so relative references in it (``hf_config``,
    ``trace``, ``cost_model.include``) resolve as they do for the file itself. A cluster of
    candidate GPU types is validated only: the capacity planner resolves each type itself.
    """
    inst = parse_instance(data, file)
    return None if _offers_candidates(data) else build_problem(inst, file)


def _solve(data: dict[str, Any], file: str | None, params: SolveParams) -> Any:
    """What ``solve FILE`` does for one point: a plan, or a capacity plan over candidate GPU types."""
    if _offers_candidates(data):
        return plan_capacity(data, params, file=file, explain=False)
    # Rows show no proof, so none is built (an infeasible point's diagnosis costs seconds).
    return plan(check_point(data, file), params, explain=False)


def point_instances(data: dict[str, Any], file: str | None, axes: list[Axis], pts: list[dict[str, Any]],
                    objective: str | None = None) -> list[dict[str, Any]]:
    """The instance of every point, each checked by the loader before anything is solved.

    ``objective`` (``--objective``) replaces the instance's, under the varied fields (a varied
    ``objective`` wins). A point that is not a valid instance raises an InputError naming the
    option or file that set it, the point and the loader's message (path, value, accepted).
    """
    base = dict(data)
    if objective is not None:
        base["objective"] = objective
    out = []
    for i, point in enumerate(pts):
        inst = apply_point(base, axes, point)
        try:
            check_point(inst, file)
        except InputError as err:
            source = next((a.source for a in axes if err.path == a.path or err.path.startswith(a.path + ".")),
                          axes[0].source)
            raise InputError(None, "", None, f"{source}: point {i} ({describe_point(point)}) is not a valid "
                             f"instance: {err}") from None
        out.append(inst)
    return out


def empty_row(index: int, point: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """A row with nothing solved yet (status ``error`` until a report fills it)."""
    row: dict[str, Any] = dict.fromkeys(ROW_KEYS)
    rate = (data.get("workload") or {}).get("request_rate")
    row.update(index=index, point=point, status="error", request_rate=rate, pareto=[])
    return row


def row_from_document(row: dict[str, Any], doc: dict[str, Any]) -> None:
    """Fill a row from a plan's JSON document (absent figures stay None)."""
    metrics = doc.get("metrics") or {}
    simulated = doc.get("simulated") or {}
    solver = doc.get("solver") or {}
    row.update(
        status=doc.get("status"),
        gpu=doc.get("gpu"),
        strategy=doc.get("strategy"),
        objective=solver.get("objective"),
        objective_unit=solver.get("objective_unit"),
        ttft_p99_ms=(simulated.get("ttft_ms") or {}).get("p99"),
        tpot_p99_ms=(simulated.get("tpot_ms") or {}).get("p99"),
    )
    for key in ("gpus_used", "cost_per_hour_usd", "cost_per_million_output_tokens_usd", "ttft_ms", "tpot_ms",
                "output_tokens_per_s", "output_tokens_per_s_per_gpu"):
        row[key] = metrics.get(key)


def solve_point(index: int, point: dict[str, Any], data: dict[str, Any], file: str | None,
                opts: BatchOptions) -> dict[str, Any]:
    """Solve one point's instance into a row. Never raises: failures are ``error`` rows.

    Module-level so that worker processes and Ray workers import it by name.
    """
    row = empty_row(index, point, data)
    t0 = time.perf_counter()
    try:
        params = SolveParams(time_limit_s=opts.time_limit, workers=opts.workers, seed=opts.seed,
                             deterministic_time=opts.deterministic_time)
        report = _solve(data, file, params)
    except InputError as err:  # checked before solving; here only if a file changed meanwhile
        row["error"] = str(err)
    except VerificationError as err:
        # The solver decoded a plan its own exact check rejects: a bug, reported, not hidden.
        row["error"] = f"{type(err).__name__}: {err}"
    except Exception as err:  # noqa: BLE001 - one crashing point must not stop the sweep
        row["error"] = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=6)}"
    else:
        row_from_document(row, report.document)
    row["solve_s"] = round(time.perf_counter() - t0, 3)
    return row


def run_sweep(
    instances: list[dict[str, Any]],
    pts: list[dict[str, Any]],
    file: str | None,
    opts: BatchOptions,
    jobs: int,
    on_done: Any = None,
    ray: RayOptions | None = None,
) -> list[dict[str, Any]]:
    """Solve every point (``instances[i]`` is point ``pts[i]``'s instance); rows in point order,
    Pareto marks set. ``on_done(i, row)`` is called as each point finishes."""
    # Catalog cards are cached per process; the caller may have changed SOLVE_CATALOG_PATH.
    reload_catalog()
    tasks = [(i, pts[i], instances[i], file, opts) for i in range(len(pts))]

    def crashed(i: int, err: BaseException) -> dict[str, Any]:
        row = empty_row(i, pts[i], instances[i])
        row["error"] = f"worker failed: {type(err).__name__}: {err}"
        return row

    try:
        rows = map_ordered(solve_point, tasks, jobs, on_done=on_done, on_error=crashed, ray=ray)
    finally:
        reload_catalog()
    mark_pareto(rows)
    return rows
