"""The CP-SAT model: one-hot option choice, contiguous layer-to-stage booleans, guarded rules.

Variables
  ``opt[i]``      option i (configuration + batch) is chosen; exactly one.
  ``x[l][s]``     decoder layer l sits on pipeline stage s; ``stage[l] = sum_s s * x[l][s]``.
  ``used[s]``     stage s exists (the chosen option has pp > s).
Rules are enforced through named guard literals (DESIGN rule 3): in a normal solve every guard is the
constant true; in a diagnosis solve they are free literals passed as assumptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from ..physics import KINDS, even_split
from ..problem import Problem
from .facts import facts_for
from .options import Option, Units, capacity_MiB, cycle_bounds, rules_of, stage_table, ttft_limit


def mem_rule(stage: int) -> str:
    """Guard name of the memory cap on one stage."""
    return f"mem_cap[stage={stage}]"


@dataclass
class BuiltModel:
    """A CP-SAT model with handles on its variables."""

    model: cp_model.CpModel
    options: list[Option]
    opt: list[cp_model.IntVar]
    x: list[list[cp_model.IntVar]]
    stage: list[cp_model.IntVar]
    used: list[cp_model.IntVar]
    guards: dict[str, cp_model.IntVar]
    objectives: dict[str, cp_model.IntVar] = field(default_factory=dict)
    rank: cp_model.LinearExpr | None = None
    split_key: cp_model.LinearExpr | None = None
    max_pp: int = 1
    counts: list[dict[str, cp_model.IntVar]] = field(default_factory=list)
    problem: Problem | None = None

    def objective(self, name: str) -> cp_model.IntVar:
        """A variable equal to the chosen option's quantity ``name`` (links added on first use).

        In the options' :class:`~solver.options.Units`: ``z`` GPU-time per output token, ``cycle``
        (D = TPOT x output tokens), ``ttft``, ``inv_rate`` time per request, ``inv_tok`` time per
        output token; ``gpus``; ``mem[s]`` MiB.
        For per-stage quantities the value is the maximum over the option's stages.
        """
        if name in self.objectives:
            return self.objectives[name]
        m = self.model
        pairs = list(zip(self.options, self.opt, strict=True))
        if name == "gpus":
            var = m.new_int_var(0, max((o.cfg.gpus for o in self.options), default=0), "obj_gpus")
            m.add(var == sum(o.cfg.gpus * lit for o, lit in pairs))
        elif name == "mem_max":  # the fullest stage's memory (MiB): less is more headroom
            kinds = self.problem.arch.layer_kinds()
            var = m.new_int_var(0, _upper_bound(self.options, "mem[0]", kinds), "obj_mem_max")
            for o, lit in pairs:
                for s in range(o.cfg.pp):
                    m.add(var >= _stage_quantity(self.problem, o, s, "mem[0]", self.counts[s])).only_enforce_if(lit)
        else:
            kinds = self.problem.arch.layer_kinds()
            var = m.new_int_var(0, _upper_bound(self.options, name, kinds), f"obj_{name}")
            for o, lit in pairs:
                stages = [int(name[4:-1])] if name.startswith("mem[") else range(o.cfg.pp)
                for s in stages:
                    if s < o.cfg.pp:
                        m.add(var >= _stage_quantity(self.problem, o, s, name, self.counts[s])).only_enforce_if(lit)
        self.objectives[name] = var
        return var


def _expr(per_layer: dict[str, int], const: int, counts: dict[str, cp_model.LinearExpr]) -> cp_model.LinearExpr:
    return sum(per_layer[k] * counts[k] for k in KINDS if per_layer[k] and k in counts) + const


def build_model(problem: Problem, options: list[Option], diagnose: bool = False, facts: list | None = None
                ) -> BuiltModel:
    """Build the model over ``options``. With ``diagnose`` every guard is a free literal.

    The problem's learned facts are added, and ``facts`` (local cuts of one search) with them.
    """
    m = cp_model.CpModel()
    arch = problem.arch
    kinds = arch.layer_kinds()
    n_layers = arch.layers
    max_pp = max((o.cfg.pp for o in options), default=1)
    guards: dict[str, cp_model.IntVar] = {}
    true = m.new_constant(1)

    def guard(name: str) -> cp_model.IntVar:
        if name not in guards:
            guards[name] = m.new_bool_var(name) if diagnose else true
        return guards[name]

    opt = [m.new_bool_var(f"opt[{o.index}]") for o in options]
    if opt:
        m.add_exactly_one(opt)
    else:
        m.add_bool_or([])  # no candidate at all: trivially infeasible

    # Static rules: a broken rule's guard forbids the option.
    for o, lit in zip(options, opt, strict=True):
        for rule in o.violations:
            m.add_bool_or([lit.Not(), *(guard(r).Not() for r in rules_of(rule))])

    # Contiguous layer-to-stage assignment.
    x = [[m.new_bool_var(f"x[{l},{s}]") for s in range(max_pp)] for l in range(n_layers)]
    stage = [m.new_int_var(0, max_pp - 1, f"stage[{l}]") for l in range(n_layers)]
    for l in range(n_layers):
        m.add_exactly_one(x[l])
        m.add(stage[l] == sum(s * x[l][s] for s in range(max_pp)))
    m.add(stage[0] == 0)
    for l in range(n_layers - 1):
        m.add(stage[l + 1] - stage[l] >= 0)
        m.add(stage[l + 1] - stage[l] <= 1)
    used = [m.new_bool_var(f"used[{s}]") for s in range(max_pp)]
    for s in range(max_pp):
        m.add(used[s] == sum(lit for o, lit in zip(options, opt, strict=True) if o.cfg.pp > s))
        layers_on = sum(x[l][s] for l in range(n_layers))
        m.add(layers_on >= 1).only_enforce_if(used[s])
        m.add(layers_on == 0).only_enforce_if(used[s].Not())

    # Layers of each kind per stage as integer variables: the per-option rules then have 2-3 terms.
    counts = []
    for s in range(max_pp):
        row = {}
        for k in KINDS:
            members = [x[l][s] for l in range(n_layers) if kinds[l] == k]
            if members:
                row[k] = m.new_int_var(0, len(members), f"n[{s},{k}]")
                m.add(row[k] == sum(members))
        counts.append(row)

    # Pinned split.
    pins = problem.pins
    if pins.layers_per_stage is not None:
        g = guard("pin.layers_per_stage")
        start = 0
        for s, n in enumerate(pins.layers_per_stage):
            for l in range(start, start + n):
                if s < max_pp:
                    m.add(stage[l] == s).only_enforce_if(g)
                else:
                    m.add_bool_or([g.Not()])
            start += n
    if not problem.search.uneven_layers:
        g = guard("search.uneven_layers")
        for o, lit in zip(options, opt, strict=True):
            for s, n in enumerate(even_split(n_layers, o.cfg.pp)):
                m.add(sum(x[l][s] for l in range(n_layers)) == n).only_enforce_if([lit, g])

    units = options[0].units if options else Units()
    cap = capacity_MiB(problem, units)
    limit_ttft = ttft_limit(problem, units)
    for o, lit in zip(options, opt, strict=True):
        bounds = cycle_bounds(problem, o)
        _bound_clauses(m, o, lit, guard)
        for s in range(o.cfg.pp):
            st = o.stages[s]
            c = counts[s]
            m.add(_expr(*st.mem_MiB, c) <= cap).only_enforce_if([lit, guard(mem_rule(s))])
            cycle = _expr(*st.cycle_t, c)
            for rule, bound in bounds.items():
                m.add(cycle <= bound).only_enforce_if([lit, guard(rule)])
            if limit_ttft is not None:
                ttft = o.ttft_const_t + o.cfg.pp * _expr(*st.dec_t, c)
                m.add(ttft <= limit_ttft).only_enforce_if([lit, guard("slo.ttft_ms")])

    _fact_clauses(m, [*problem.learned, *(facts or [])], options, opt, x, counts, guard)

    built = BuiltModel(m, options, opt, x, stage, used, guards, max_pp=max_pp, counts=counts, problem=problem)
    built.rank = sum(o.index * lit for o, lit in zip(options, opt, strict=True))
    # Front-loaded splits first: a deterministic, lexicographic preference among equal plans.
    built.split_key = sum(stage[l] for l in range(n_layers))
    return built


def _fact_clauses(m, facts: list, options: list[Option], opt, x, counts, guard) -> None:
    """Learned facts (:mod:`solver.search.facts`), each behind the guard of its rule."""
    if not facts:
        return
    below: dict[tuple[int, str, int], cp_model.IntVar] = {}

    def fewer(s: int, k: str, n: int) -> cp_model.IntVar:
        # A literal equivalent to "stage s holds fewer than n layers of kind k".
        if (s, k, n) not in below:
            b = m.new_bool_var(f"n[{s},{k}]<{n}")
            m.add(counts[s][k] <= n - 1).only_enforce_if(b)
            m.add(counts[s][k] >= n).only_enforce_if(b.Not())
            below[(s, k, n)] = b
        return below[(s, k, n)]

    for o, lit in zip(options, opt, strict=True):
        for f in facts_for(facts, o.cfg, o.batch):
            if f.split is not None:
                stage_of = [s for s, n in enumerate(f.split) for _ in range(n)]
                escape = [x[l][s].Not() for l, s in enumerate(stage_of)]
            else:
                escape = [fewer(f.stage, k, n) for k, n in f.counts if n > 0 and k in counts[f.stage]]
            m.add_bool_or([lit.Not(), guard(f.rule).Not(), *escape])


def _bound_clauses(m, o: Option, lit, guard) -> None:
    """Redundant clauses from split-independent bounds, so infeasibility propagates instead of searched.

    Sound: :func:`solver.options.bound_violations` only lists rules no split of ``o`` can meet.
    """
    for rule in o.bound_violations:
        m.add_bool_or([lit.Not(), guard(rule).Not()])
    if o.memory_sum_exceeds:
        m.add_bool_or([lit.Not(), *(guard(mem_rule(s)).Not() for s in range(o.cfg.pp))])


def _stage_quantity(problem: Problem, o: Option, s: int, name: str, c: dict) -> cp_model.LinearExpr:
    """The linear expression of quantity ``name`` on stage ``s`` of option ``o``."""
    if name == "ttft":
        return o.ttft_const_t + o.cfg.pp * _expr(*stage_table(problem, o, s, "dec"), c)
    return _expr(*stage_table(problem, o, s, name), c)


def _upper_bound(options: list[Option], name: str, kinds: tuple[str, ...]) -> int:
    """A safe upper bound of an objective: every layer on one stage of the worst option."""
    n = {k: kinds.count(k) for k in KINDS}
    ub = 1
    for o in options:
        for st in o.stages:
            key = "mem" if name.startswith("mem[") else name
            table = {"z": st.zcost, "cycle": st.cycle_t, "ttft": st.dec_t, "inv_rate": st.cycle_t,
                     "inv_tok": st.cycle_t, "mem": st.mem_MiB}[key]
            per, const = table
            v = sum(per[k] * n[k] for k in KINDS) + const
            if name == "ttft":
                v = o.ttft_const_t + o.cfg.pp * v
            ub = max(ub, v)
    return ub
