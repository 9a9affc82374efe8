"""CP-SAT solution -> :class:`~solver.verify.Placement`."""

from __future__ import annotations

from ortools.sat.python import cp_model

from ..verify import Placement
from .model import BuiltModel
from .options import Option


def decode(built: BuiltModel, solver: cp_model.CpSolver) -> tuple[Placement, Option]:
    """The chosen option and the layers on each stage of a solved model, as a placement."""
    chosen = [o for o, lit in zip(built.options, built.opt, strict=True) if solver.boolean_value(lit)]
    if len(chosen) != 1:
        raise AssertionError(f"the solution selects {len(chosen)} options; the model requires exactly one")
    opt = chosen[0]
    stages = [solver.value(v) for v in built.stage]
    layers = tuple(stages.count(s) for s in range(opt.cfg.pp))
    if sum(layers) != len(stages):
        raise AssertionError(f"layers placed beyond stage {opt.cfg.pp - 1}: {stages}")
    return Placement(opt.cfg, opt.batch, layers), opt
