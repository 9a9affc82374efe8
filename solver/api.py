"""The public Python API: load an instance, plan it, verify a proposed strategy, diagnose it.

The ``solve`` command and the batch runner are built on these functions, so the API and the CLI
cannot drift apart: :meth:`Report.to_json` is exactly what ``solve FILE --format json`` prints.

>>> from solver import load_instance, plan
>>> report = plan(load_instance("instances/llama70b_h100.json"))
>>> report.status, round(report.objective, 1), report.objective_unit
('optimal', 523.3, 'output tokens/s per GPU')

Bad input raises :class:`~solver.input.errors.InputError` whose ``str()`` is the message the CLI
prints (file, JSON path, value, what is accepted). A plan that fails the solver-independent check
raises :class:`~solver.search.planner.VerificationError`: a bug, never a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .diagnose import diagnose as _diagnose
from .diagnose.proof import percentile_proof
from .input.errors import InputError, from_validation_error, load_json
from .input.schema import StrategyPins
from .input.strategy import parse_strategy
from .problem import Problem, build_problem, parse_instance
from .report import document, render_text, to_json
from .search.objectives import OBJECTIVE_UNITS, exact_objective
from .search.params import with_deadline
from .search.planner import PlanResult, SolveParams
from .search.planner import plan as _plan
from .verify import Evaluation, complete_strategy, evaluate

EXIT_OK, EXIT_INFEASIBLE, EXIT_BAD_INPUT, EXIT_UNKNOWN = 0, 1, 2, 3


@dataclass
class Report:
    """The answer to one question about one instance: a plan, a verdict on a strategy, or a proof.

    ``document`` is the stable JSON document (README "Output (JSON)"); the typed objects it was
    rendered from are kept beside it: ``evaluation`` (the plan checked by the exact physics),
    ``result`` (the solver's own record) and ``proof``.
    """

    exit_code: int
    problem: Problem
    document: dict[str, Any]
    evaluation: Evaluation | None = None
    result: PlanResult | None = None
    proof: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def status(self) -> str:
        """``optimal``, ``feasible``, ``infeasible`` or ``unknown``."""
        return self.document["status"]

    @property
    def objective(self) -> float | None:
        """The plan's objective from the exact physics, in :attr:`objective_unit` (None without a plan)."""
        if self.evaluation is None:
            return None
        return exact_objective(self.problem, self.evaluation)

    @property
    def objective_unit(self) -> str:
        return OBJECTIVE_UNITS[self.problem.instance.objective]

    @property
    def strategy(self) -> dict[str, Any] | None:
        """``tp``, ``pp``, ``dp``, ``ep``, ``weights``, ``kv_cache``, ``max_num_seqs`` of the plan."""
        return self.document.get("strategy")

    @property
    def metrics(self) -> dict[str, Any] | None:
        """Predicted TTFT, TPOT, throughput and capacity (the JSON ``metrics`` block)."""
        return self.document.get("metrics")

    def to_json(self) -> str:
        """Exactly the document ``solve ... --format json`` prints (without its final newline)."""
        return to_json(self.document)

    def to_text(self, markdown: bool = False) -> str:
        """The report people read (``--format text`` or ``--format markdown``)."""
        return render_text(self.document, md=markdown)


def load_instance(source: str | Path | dict[str, Any], *, objective: str | None = None,
                  strategy: str | dict[str, Any] | None = None) -> Problem:
    """Read, validate and resolve an instance (a file path or the JSON as a dict).

    ``objective`` overrides the instance's objective; ``strategy`` adds pins, as ``tp=2,pp=4`` text
    (the ``--strategy`` syntax) or a dict of :class:`~solver.input.schema.StrategyPins` fields.
    Raises :class:`InputError` on bad input.
    """
    file = None if isinstance(source, dict) else str(source)
    data = source if isinstance(source, dict) else load_json(file)
    inst = parse_instance(data, file)
    if objective:
        inst = inst.model_copy(update={"objective": objective})
    if strategy is None:
        return build_problem(inst, file)
    return with_pins(build_problem(inst, file), strategy)


def with_pins(problem: Problem, strategy: str | dict[str, Any]) -> Problem:
    """``problem`` with more strategy fields pinned; errors in the pins are reported against ``--strategy``."""
    added = parse_strategy(strategy) if isinstance(strategy, str) else dict(strategy)
    pins = {**problem.instance.strategy.model_dump(exclude_none=True), **added}
    try:
        try:
            validated = StrategyPins.model_validate(pins)
        except ValidationError as err:
            raise from_validation_error(err, StrategyPins, "--strategy") from None
        inst = problem.instance.model_copy(update={"strategy": validated})
        return build_problem(inst, problem.file)
    except InputError as err:
        if err.file == "--strategy":
            raise InputError("--strategy", err.path or "strategy", err.value, err.accepted) from None
        if err.path.startswith("strategy"):  # the value came from the pins just added
            raise InputError("--strategy", err.path.removeprefix("strategy."), err.value, err.accepted) from None
        raise


def _ortools_version() -> str:
    from ortools import __version__

    return __version__


def plan(problem: Problem, params: SolveParams | None = None) -> Report:
    """The best placement, proven optimal when the limits allow, or a proof of infeasibility.

    Pinned fields (the instance's ``strategy``) constrain the search, and the report then compares
    the plan with the unpinned optimum. Exit codes as the CLI's: 0 plan, 1 infeasible, 3 unknown.
    """
    params = with_deadline(params or SolveParams())
    result = _plan(problem, params)
    solver_info = {
        "mode": "solve",
        "time_s": round(result.time_s, 4),
        "objective": None if result.objective is None else round(result.objective, 6),
        "objective_unit": OBJECTIVE_UNITS[problem.instance.objective],
        "bound": None if result.bound is None else round(_bound_side(problem, result), 6),
        "gap": None if result.gap is None else round(result.gap, 8),
        "ortools": _ortools_version(),
        "workers": params.workers,
        "seed": params.seed,
        "options_considered": result.options_considered,
        "options_in_model": result.options_in_model,
        "phases": [{**p, "wall_s": round(p["wall_s"], 4)} for p in result.phases],
        "deterministic_time_per_phase": params.deterministic_time,
        "tie_breaks": ("complete" if not result.incomplete else
                       f"incomplete: {', '.join(result.incomplete)} stopped at its limit"),
    }
    extra: dict[str, Any] = {"binding": result.binding}
    if result.exact:
        solver_info["exact"] = result.exact
    if result.lazy.get("candidates"):
        solver_info["percentile_cuts"] = len(result.lazy["candidates"])
    if result.status in ("optimal", "feasible"):
        if result.evaluation.simulation is None and problem.instance.simulation.enabled:
            result.evaluation = evaluate(problem, result.evaluation.placement, simulate=True)
        if not problem.pins.is_empty():
            extra["optimum"] = _compare_with_optimum(problem, result.evaluation, params)
        doc = document(problem, result.status, result.evaluation, solver_info, extra=extra)
        return Report(EXIT_OK, problem, doc, result.evaluation, result)
    if result.lazy.get("candidates"):
        # The linear model admits plans, but every one simulated misses a percentile target.
        proof = percentile_proof(problem, result.lazy)
        code = EXIT_INFEASIBLE if result.status == "infeasible" else EXIT_UNKNOWN
        doc = document(problem, result.status, None, solver_info, proof=proof, extra=extra)
        return Report(code, problem, doc, None, result, proof)
    if result.status == "infeasible":
        proof = _diagnose(problem, params)
        doc = document(problem, "infeasible", None, solver_info, proof=proof, extra=extra)
        return Report(EXIT_INFEASIBLE, problem, doc, None, result, proof)
    return Report(EXIT_UNKNOWN, problem, document(problem, "unknown", None, solver_info, extra=extra), None, result)


def verify_strategy(problem: Problem, strategy: str | dict[str, Any] | None = None,
                    params: SolveParams | None = None) -> Report:
    """Every requirement of a proposed strategy with its slack, pass or fail, and the optimum beside it.

    The proposal is the instance's pins plus ``strategy`` (``tp=2,pp=4`` text or a dict); fields
    not given are the best under the pins (a solve with the pins as constraints), or plain defaults
    when nothing under the pins passes, and are listed under ``strategy_defaults``. A failing proposal carries a
    proof of why. Exit code 0 when it passes, 1 when it fails.
    """
    params = with_deadline(params or SolveParams())
    if strategy is not None:
        problem = with_pins(problem, strategy)
    # The fields not given are the best under the pins (the planner with the pins as constraints);
    # only when no completion passes are they filled with plain defaults, to show what fails.
    best = _plan(problem, params, tie_breaks=True)
    placement, filled = (best.placement, {}) if best.placement is not None else complete_strategy(problem)
    ev = evaluate(problem, placement, simulate=problem.instance.simulation.enabled)
    if best.placement is not None:
        pins = problem.pins
        for k, v in ev.strategy().items():
            if getattr(pins, k, None) is None and not (k == "pp" and pins.layers_per_stage):
                filled[k] = f"{v} (the best under the pins)"
        if placement.batch != ev.max_num_seqs:
            filled["max_num_seqs"] = (f"{ev.max_num_seqs} (the engine's cap; the load sets the operating batch, "
                                      f"{placement.batch} per replica)")
        if pins.layers_per_stage is None:
            filled["layers_per_stage"] = f"{'+'.join(map(str, placement.layers_per_stage))} (the best under the pins)"
    status = "feasible" if ev.feasible else "infeasible"
    extra: dict[str, Any] = {"strategy_defaults": filled,
                             "optimum": _compare_with_optimum(problem, ev if ev.feasible else None, params)}
    proof = None if ev.feasible else _diagnose(problem, params, evaluation=ev)
    doc = document(problem, status, ev, {"mode": "verify"}, proof=proof, extra=extra)
    return Report(EXIT_OK if ev.feasible else EXIT_INFEASIBLE, problem, doc, ev, None, proof)


def diagnose(problem: Problem, params: SolveParams | None = None) -> dict[str, Any]:
    """The proof block for an infeasible problem: minimal conflicts in numbers, bounds, verified repairs.

    :func:`plan` calls it by itself when nothing is feasible; call it directly to explain why a set
    of requirements (pins included) cannot hold together.
    """
    return _diagnose(problem, with_deadline(params or SolveParams()))


def solve_file(path: str, strategy: str | None = None, objective: str | None = None,
               params: SolveParams | None = None) -> Report:
    """What ``solve FILE`` does: plan the instance, or verify ``strategy`` on it."""
    params = with_deadline(params or SolveParams())  # the limit counts from here, loading included
    problem = load_instance(path, objective=objective)
    if strategy is not None:
        return verify_strategy(problem, strategy, params)
    return plan(problem, params)


def _bound_side(problem: Problem, result: PlanResult) -> float:
    """The bound in user units, never on the wrong side of the exact objective.

    The bound is the model's (integer tables rounded up); the objective is the exact physics. They
    differ by the rounding, which could put a maximisation's bound below its objective.
    """
    if problem.instance.objective == "max_throughput_per_gpu":
        return max(result.bound, result.objective)
    return min(result.bound, result.objective)


def _compare_with_optimum(problem: Problem, ev: Evaluation | None, params: SolveParams) -> dict[str, Any]:
    """The optimum with every pin dropped, against the proposed / pinned plan."""
    free = problem.instance.model_copy(update={"strategy": StrategyPins()})
    res = _plan(build_problem(free, problem.file), params)
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
