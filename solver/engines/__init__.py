"""Serving engines: one module per engine (vLLM, SGLang, TensorRT-LLM) with what the planner must know of it.

Each module owns its engine's launch flags, the layout rules it imposes (how expert parallelism maps
onto the TP group) and the defaults its benchmarks run with. This package imports only
:mod:`solver.input` and :mod:`solver.physics`; the report builds a :class:`LaunchInput` from a plan
and asks here for the commands. Adding an engine: a module with ``NAME``, ``ep_layout_ok``,
``EP_LAYOUT_RULE`` (and ``launch`` when it can be launched), listed in ``ENGINES``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from . import sglang, trtllm, vllm
from .base import LaunchInput

ENGINES: dict[str, ModuleType] = {m.NAME: m for m in (vllm, sglang, trtllm)}


def engine(name: str) -> ModuleType:
    """The module of engine ``name`` (one of :data:`ENGINES`)."""
    return ENGINES[name]


def launch_commands(li: LaunchInput) -> dict[str, Any]:
    """vLLM and SGLang command lines for a plan (with VLLM_PP_LAYER_PARTITION when uneven)."""
    vllm_cmd, env, notes = vllm.launch(li)
    sglang_cmd, sglang_notes = sglang.launch(li)
    return {"vllm": vllm_cmd, "env": env, "sglang": sglang_cmd, "notes": notes + sglang_notes}


__all__ = ["ENGINES", "LaunchInput", "engine", "launch_commands"]
