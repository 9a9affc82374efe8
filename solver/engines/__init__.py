"""Serving engines: one module per engine (vLLM, SGLang, TensorRT-LLM) with what the planner must know of it.

Each module owns its engine's launch flags, the layout rules it imposes (how expert parallelism maps
onto the TP group), the defaults its benchmarks run with, and how each release counts memory
(``DEFAULT_VERSION``, ``memory_conventions(version)``: :class:`solver.physics.MemoryConventions`). This package imports only
:mod:`solver.input` and :mod:`solver.physics`; the report builds a :class:`LaunchInput` from a plan
and asks here for the commands. Adding an engine: a module with ``NAME``, ``ep_layout_ok``,
``EP_LAYOUT_RULE``, ``attention_dp_ok``, ``ATTENTION_DP_RULE``, ``DEFAULT_VERSION``,
``memory_conventions``, ``request_overhead_ms`` (and ``launch`` when it can be launched), listed
in ``ENGINES``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ..input.schema import LimitsSpec
from ..physics import Config, MemoryConventions
from . import sglang, trtllm, vllm
from .base import LaunchInput, release_tuple

ENGINES: dict[str, ModuleType] = {m.NAME: m for m in (vllm, sglang, trtllm)}


def engine(name: str) -> ModuleType:
    """The module of engine ``name`` (one of :data:`ENGINES`)."""
    return ENGINES[name]


def memory_conventions(name: str, version: str | None = None) -> MemoryConventions:
    """How release ``version`` of engine ``name`` (default: its ``DEFAULT_VERSION``) counts memory."""
    return ENGINES[name].memory_conventions(version)


def scheduler_gate(name: str, cfg: Config, limits: LimitsSpec) -> dict[str, Any]:
    """The simulator's scheduler gates (:class:`solver.simulate.engine.Scheduler` fields) of engine
    ``name`` for a replica of ``cfg`` under the instance's ``limits`` (each engine reads its own)."""
    return ENGINES[name].admission_gate(
        cfg, limits.scheduler_recv_interval, limits.attention_dp_balance_iters,
        batch_wait_timeout_iters=limits.batch_wait_timeout_iters,
        batch_wait_max_tokens_ratio=limits.batch_wait_max_tokens_ratio,
        max_num_batched_tokens=limits.max_num_batched_tokens)


def launch_commands(li: LaunchInput, primary: str = "vllm") -> dict[str, Any]:
    """Command lines for a plan on every engine, the instance's own first (``primary``).

    vLLM's carries VLLM_PP_LAYER_PARTITION for an uneven split; TensorRT-LLM's comes with the YAML of
    its extra options. ``versions`` says which release each command's flags were checked against.
    """
    vllm_cmd, env, notes = vllm.launch(li)
    sglang_cmd, sglang_notes = sglang.launch(li)
    trtllm_cmd, trtllm_yaml, trtllm_notes = trtllm.launch(li)
    return {"engine": primary, "vllm": vllm_cmd, "env": env, "sglang": sglang_cmd, "trtllm": trtllm_cmd,
            "trtllm_extra_llm_api_options": trtllm_yaml, "notes": notes + sglang_notes + trtllm_notes,
            "versions": {m.NAME: m.FLAGS_VERSION for m in (vllm, sglang, trtllm)}}


__all__ = ["ENGINES", "LaunchInput", "engine", "launch_commands", "memory_conventions", "release_tuple",
           "scheduler_gate"]
