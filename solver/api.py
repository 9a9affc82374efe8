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

import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .diagnose import diagnose as _diagnose
from .diagnose.disagg import disagg_bounds, disagg_repairs
from .diagnose.proof import percentile_proof
from .input.errors import InputError, from_validation_error, load_json
from .input.prices import apply_prices
from .input.schema import Instance, StrategyPins
from .input.strategy import is_disaggregated, parse_disagg_strategy, parse_strategy
from .problem import Problem, build_problem, mark_cli_price, parse_instance
from .report import document, render_text, to_json
from .report.document import disaggregated_document, disaggregated_json
from .search.disagg import disagg_placement, plan_disagg
from .search.objectives import OBJECTIVE_UNITS, disagg_objective, exact_objective, is_maximised
from .search.params import with_deadline
from .search.planner import PlanResult, SolveParams
from .search.planner import plan as _plan
from .verify import Evaluation, complete_strategy, evaluate, evaluate_disagg

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
    # A capacity answer that is a mix of GPU types has no one evaluation; its objective is stated here.
    objective_value: float | None = None

    @property
    def status(self) -> str:
        """``optimal``, ``feasible``, ``infeasible`` or ``unknown``."""
        return self.document["status"]

    @property
    def objective(self) -> float | None:
        """The plan's objective from the exact physics, in :attr:`objective_unit` (None without a plan)."""
        if self.objective_value is not None:
            return self.objective_value
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


def read_instance(source: str | Path | dict[str, Any], *, objective: str | None = None,
                  prices: dict[str, float] | None = None, file: str | None = None) -> tuple[Instance, dict[str, str]]:
    """Read and validate an instance with the command line's overrides, not yet resolved.

    Returns the instance and a note per GPU type whose price ``prices`` (``--price``) replaced.
    ``file``: where a dict instance's relative paths resolve from.
    """
    if not isinstance(source, dict):
        file = str(source)
    data = source if isinstance(source, dict) else load_json(file)
    inst = parse_instance(data, file)
    if objective:
        inst = inst.model_copy(update={"objective": objective})
    notes: dict[str, str] = {}
    if prices:
        inst, notes = apply_prices(inst, prices)
    return inst, notes


def load_instance(source: str | Path | dict[str, Any], *, objective: str | None = None,
                  strategy: str | dict[str, Any] | None = None, prices: dict[str, float] | None = None,
                  file: str | None = None) -> Problem:
    """Read, validate and resolve an instance (a file path or the JSON as a dict).

    ``objective`` overrides the instance's objective; ``strategy`` adds pins, as ``tp=2,pp=4`` text
    (the ``--strategy`` syntax) or a dict of :class:`~solver.input.schema.StrategyPins` fields;
    ``prices`` (``--price``) replaces GPU-hour prices, by card name or ``"*"`` for all.
    Raises :class:`InputError` on bad input (and for a cluster of candidate GPU types, which
    :func:`solver.capacity.plan_capacity` plans; :func:`solve_file` routes it there).
    """
    inst, notes = read_instance(source, objective=objective, prices=prices, file=file)
    file = file if isinstance(source, dict) else str(source)
    problem = build_problem(inst, file)
    if notes:
        problem = mark_cli_price(problem, notes)
    if strategy is None:
        return problem
    return with_pins(problem, strategy)


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


def plan(problem: Problem, params: SolveParams | None = None, *, explain: bool = True) -> Report:
    """The best placement, proven optimal when the limits allow, or a proof of infeasibility.

    Pinned fields (the instance's ``strategy``) constrain the search, and the report then compares
    the plan with the unpinned optimum. Exit codes as the CLI's: 0 plan, 1 infeasible, 3 unknown.
    ``explain=False`` skips the diagnosis of an infeasible instance (sweeps, where rows show no
    proof): the status is the same, the proof block only says it was not asked for. With
    ``search.serving`` ``auto`` or ``disaggregated`` the best disaggregated plan is searched too and
    reported beside the aggregated one (``serving`` block); the better under the objective is the plan.
    """
    params = with_deadline(params or SolveParams())
    # Forced disaggregation shows the aggregated plan for reference only: no proof of why it fails.
    report = _plan_aggregated(problem, params, explain and problem.search.serving != "disaggregated")
    if problem.search.serving == "aggregated":
        return report
    return _with_disaggregation(problem, params, report)


def _with_disaggregation(problem: Problem, params: SolveParams, agg: Report) -> Report:
    """The aggregated answer and the best disaggregated plan side by side; the better one chosen."""
    t0 = time.perf_counter()
    res = plan_disagg(problem, time_limit_s=min(params.time_limit_s, 10.0), seed=params.seed)
    mode = problem.search.serving
    agg_value = agg.objective if agg.status in ("optimal", "feasible") else None
    dis_value = disagg_objective(problem, res.evaluation.metrics) if res.evaluation is not None else None
    if dis_value is None:
        chosen = "aggregated" if mode == "auto" and agg_value is not None else "none"
    elif mode == "disaggregated" or agg_value is None:
        chosen = "disaggregated"
    else:  # ties go to aggregated serving: one pool is simpler to run
        gain = dis_value - agg_value if is_maximised(problem.instance.objective) else agg_value - dis_value
        chosen = "disaggregated" if gain > 1e-9 * abs(agg_value) else "aggregated"
    unit = OBJECTIVE_UNITS[problem.instance.objective]
    block: dict[str, Any] = {
        "mode": mode, "chosen": chosen,
        "aggregated": {"status": agg.status, "objective": None if agg_value is None else round(agg_value, 6),
                       "strategy": agg.document.get("strategy"),
                       "gpus_used": (agg.document.get("metrics") or {}).get("gpus_used"),
                       "ttft_ms": (agg.document.get("metrics") or {}).get("ttft_ms"),
                       "tpot_ms": (agg.document.get("metrics") or {}).get("tpot_ms")},
        "disaggregated": None if res.evaluation is None else disaggregated_json(problem, res.evaluation),
        "disaggregated_status": res.status, "disaggregated_note": res.note, "refuted": res.refuted,
        # Why none exists, in numbers that bound every pool layout searched (solver.diagnose.disagg).
        "disaggregated_bounds": disagg_bounds(problem, res.designs) if res.status == "infeasible" else [],
        "designs": {"prefill": res.prefill_designs, "decode": res.decode_designs},
        "objective_unit": unit, "time_s": round(time.perf_counter() - t0, 4),
    }
    if block["disaggregated"] is not None:
        block["disaggregated"]["objective"] = round(dis_value, 6)
    if chosen == "disaggregated":
        solver_info = {**(agg.document.get("solver") or {}), "mode": "solve", "objective": round(dis_value, 6),
                       "objective_unit": unit, "bound": None, "gap": None,
                       "disaggregated_search": res.status}
        status = res.status if res.status in ("optimal", "feasible") else "feasible"
        if agg.status not in ("optimal", "infeasible"):
            status = "feasible"  # the aggregated side was not settled: the comparison is not proven
        doc = disaggregated_document(problem, status, res.evaluation, solver_info, extra={"serving": block})
        return Report(EXIT_OK, problem, doc, None, None, None, objective_value=dis_value)
    doc = dict(agg.document)
    doc["serving"] = block
    if chosen == "none" and mode == "disaggregated":
        doc["status"] = "infeasible" if res.status == "infeasible" else "unknown"
        bounds = block["disaggregated_bounds"]
        doc["proof"] = {"summary": "no disaggregated plan: " + ("; ".join(b["statement"] for b in bounds)
                                                                 or res.note or res.status),
                        "disaggregated_bounds": bounds, "aggregated": agg.document.get("proof"),
                        "repairs": disagg_repairs(problem, bounds)}
        code = EXIT_INFEASIBLE if res.status == "infeasible" else EXIT_UNKNOWN
        return Report(code, problem, doc, None, agg.result, doc["proof"])
    return Report(agg.exit_code, problem, doc, agg.evaluation, agg.result, agg.proof)


def _plan_aggregated(problem: Problem, params: SolveParams, explain: bool) -> Report:
    """The aggregated answer: plan, proof or unknown (see :func:`plan`)."""
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
        proof = _diagnose(problem, params) if explain else {
            "summary": "infeasible; the proof was not asked for (explain=False): solve the instance alone for it"}
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
    if isinstance(strategy, str) and is_disaggregated(strategy):
        return verify_disaggregated(problem, strategy)
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


def verify_disaggregated(problem: Problem, strategy: str) -> Report:
    """Check a proposed disaggregated layout (``prefill=1xtp4,decode=1xtp2``) against every rule.

    Not given: the precision (the first allowed pair that passes, else the first allowed), each
    pool's even layer split, the prompts per prefill step (what one step's token budget holds) and
    the decode batch (the load's operating point: the smallest level whose capacity carries the
    rate). Exit code 0 when it passes, 1 when a rule fails (the failing rules are the proof).
    """
    inst = problem.instance
    if inst.workload.mode != "request_rate":
        raise InputError("--strategy", "prefill", strategy, "a disaggregated layout is checked at a request rate "
                         "(workload.request_rate); this workload has none")
    spec = parse_disagg_strategy(strategy)
    filled: dict[str, str] = {}
    pairs = [(w, kv) for w in inst.precision.weights for kv in inst.precision.kv_cache]
    if "weights" in spec:
        pairs = [(w, kv) for w, kv in pairs if w == spec["weights"]] or [(spec["weights"], inst.precision.kv_cache[0])]
    if "kv_cache" in spec:
        pairs = [(w, kv) for w, kv in pairs if kv == spec["kv_cache"]] or [(pairs[0][0], spec["kv_cache"])]
    candidates = [disagg_placement(problem, spec["prefill"], spec["decode"], w, kv) for w, kv in pairs]
    evaluations = [evaluate_disagg(problem, c, simulate=False) for c in candidates]
    pick = next((i for i, e in enumerate(evaluations) if e.feasible), 0)
    chosen = candidates[pick]
    ev = evaluate_disagg(problem, chosen, simulate=inst.simulation.enabled)
    if "weights" not in spec or "kv_cache" not in spec:
        why = "the first allowed that passes" if evaluations[pick].feasible else "no allowed pair passes: the first"
        filled["precision"] = f"{chosen.decode.cfg.weights}/{chosen.decode.cfg.kv_cache} ({why})"
    filled["prompts_per_prefill_step"] = f"{chosen.prefill.batch} (what max_num_batched_tokens holds)"
    filled["decode_batch"] = f"{chosen.decode.batch} sequences per worker (the load's operating point)"
    status = "feasible" if ev.feasible else "infeasible"
    proof = None if ev.feasible else {
        "summary": f"the proposed layout fails {len(ev.failed())} rule(s): {', '.join(r.rule for r in ev.failed())}",
        "conflict": [{"rule": r.rule, "statement": r.statement} for r in ev.failed()]}
    doc = disaggregated_document(problem, status, ev, {"mode": "verify"},
                                 extra={"strategy_defaults": filled, "proof": proof, "proposed": strategy})
    return Report(EXIT_OK if ev.feasible else EXIT_INFEASIBLE, problem, doc, None, None, proof)


def diagnose(problem: Problem, params: SolveParams | None = None) -> dict[str, Any]:
    """The proof block for an infeasible problem: minimal conflicts in numbers, bounds, verified repairs.

    :func:`plan` calls it by itself when nothing is feasible; call it directly to explain why a set
    of requirements (pins included) cannot hold together.
    """
    return _diagnose(problem, with_deadline(params or SolveParams()))


def solve_file(path: str, strategy: str | None = None, objective: str | None = None,
               params: SolveParams | None = None, prices: dict[str, float] | None = None) -> Report:
    """What ``solve FILE`` does: plan the instance (a capacity plan for candidate GPU types), or verify ``strategy``."""
    params = with_deadline(params or SolveParams())  # the limit counts from here, loading included
    inst, notes = read_instance(path, objective=objective, prices=prices)
    if inst.cluster.candidates is not None:
        if strategy is not None:
            raise InputError("--strategy", "", strategy, "a proposed strategy is verified on one GPU type; this "
                             "instance offers candidates (set cluster.gpu, or pin fields in the instance's strategy)")
        return _capacity_report(inst, str(path), params, notes)
    problem = mark_cli_price(build_problem(inst, str(path)), notes)
    if strategy is not None:
        return verify_strategy(problem, strategy, params)
    return plan(problem, params)


def plan_capacity(source: str | Path | dict[str, Any], params: SolveParams | None = None, *,
                  objective: str | None = None, prices: dict[str, float] | None = None,
                  file: str | None = None, explain: bool = True) -> Report:
    """Which GPU type and how many (or which mix of types) serves the instance best, every type's best beside it.

    Works on any instance: a ``cluster.candidates`` list, or a plain one-type cluster (one offer).
    The report's document is the chosen plan's, with a ``capacity`` block (README "Capacity planning").
    """
    params = with_deadline(params or SolveParams())
    inst, notes = read_instance(source, objective=objective, prices=prices, file=file)
    return _capacity_report(inst, file if isinstance(source, dict) else str(source), params, notes, explain)


def _capacity_report(inst: Instance, file: str | None, params: SolveParams, notes: dict[str, str],
                     explain: bool = True) -> Report:
    from .capacity import plan_capacity as _plan_capacity
    from .capacity.document import capacity_document

    t0 = time.perf_counter()
    result = _plan_capacity(inst, file, params, partial(plan, explain=explain), notes)
    solver_info = {"mode": "capacity", "time_s": round(time.perf_counter() - t0, 4),
                   "offers": len(result.offers), "designs": len(result.designs)}
    doc = capacity_document(result, solver_info)
    if result.mix is not None:
        cap = doc["capacity"]["mix"]
        value = cap["cost_per_hour_usd"] if inst.objective == "min_cost" else cap["cost_per_million_output_tokens_usd"]
        doc["solver"]["objective"] = value
        first = result.mix[0].report
        return Report(EXIT_OK, first.problem, doc, None, None, None, objective_value=value)
    chosen = result.best or result.offers[0]
    base = chosen.report
    doc["solver"]["objective_unit"] = OBJECTIVE_UNITS[inst.objective]
    if result.best is not None:
        doc["solver"]["objective"] = (doc["solver"].get("chosen") or {}).get("objective")
    if result.best is not None:
        code = EXIT_OK
    else:
        code = EXIT_UNKNOWN if result.status == "unknown" else EXIT_INFEASIBLE
    return Report(code, base.problem, doc, base.evaluation, base.result, doc.get("proof"))


def _bound_side(problem: Problem, result: PlanResult) -> float:
    """The bound in user units, never on the wrong side of the exact objective.

    The bound is the model's (integer tables rounded up); the objective is the exact physics. They
    differ by the rounding, which could put a maximisation's bound below its objective.
    """
    if is_maximised(problem.instance.objective):
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
    adp = f" attention_dp={st['attention_dp']}" if st.get("attention_dp", 1) > 1 else ""
    desc = f"tp={st['tp']} pp={st['pp']} dp={st['dp']}{adp} ep={st['ep']} {st['weights']}/{st['kv_cache']} " \
           f"layers {'+'.join(map(str, res.placement.layers_per_stage))}"
    out = {"status": res.status, "objective": round(best, 6), "strategy": st,
           "layers_per_stage": list(res.placement.layers_per_stage)}
    if ev is None:
        out["statement"] = f"the optimum without pins is {best:,.2f} {unit} with {desc}"
        return out
    mine = exact_objective(problem, ev)
    worse = (best - mine) / best if is_maximised(problem.instance.objective) else (mine - best) / best
    out["proposed_objective"] = round(mine, 6)
    out["relative_distance"] = round(worse, 6)
    out["statement"] = (f"proposed {mine:,.2f} {unit}; optimum without pins {best:,.2f} {unit} with {desc} "
                        f"({worse:.1%} {'worse' if worse > 1e-9 else 'off: the proposal is optimal'})")
    return out
