"""Expert placements in the files engines read, readers for them, and the compact per-GPU text.

A placement here is ``gpu_experts[layer][gpu]``: the logical experts GPU ``gpu`` (EP rank) holds in
that MoE layer, in slot order, and ``layer_ids[layer]``: the layer's index in the model.

- **SGLang** ``--init-expert-location FILE`` (``sglang/srt/eplb/expert_location.py``): a ``.json`` (or
  ``.pt``) holding ``{"physical_to_logical_map": [[...]]}`` of shape ``[num_hidden_layers,
  num_physical_experts]``; physical expert ``p`` lives on EP rank ``p // (num_physical / ep_size)``.
  SGLang passes the dict's keys as arguments (``init_by_mapping(**data)``), so the file must hold
  that one key. ``num_physical = E + --ep-num-redundant-experts`` and must divide by the EP size.
  Rows cover every hidden layer: a dense layer's row (not in ``layer_ids``) gets SGLang's own
  trivial map (``p % E``). SGLang also accepts ``{"logical_count": ...}`` there (it then runs its
  own EPLB): that is a load profile, read by :mod:`solver.input.expert_loads`.
- **TensorRT-LLM** MoE load balancer (``examples/ep_load_balancer``; ``moe_load_balancer: FILE`` in
  ``extra_llm_api_options``): YAML with ``num_slots`` (slots over all EP ranks),
  ``initial_global_assignments`` (model layer index -> expert id of every slot, rank-major: rank
  ``r`` holds slots ``r * num_slots / ep_size`` onwards) and ``layer_updates_per_iter`` (0: static).

Both need every slot to hold an expert, the same number per GPU: a placement with an empty slot
cannot be written (solve with ``fill``, as ``solve experts`` does when asked for these files).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..input.errors import InputError, parse_json_text

Placement = Sequence[Sequence[Sequence[int]]]  # [layer][gpu] -> experts in slot order


class ExportError(ValueError):
    """A placement that an engine's file cannot express (uneven or empty slots)."""


def _slots(gpu_experts: Placement) -> int:
    counts = {len(g) for layer in gpu_experts for g in layer}
    if len(counts) != 1:
        raise ExportError(f"engines need the same number of experts on every GPU in every layer (found "
                          f"{sorted(counts)}): solve with every slot filled (--fill)")
    return counts.pop()


# ---------------------------------------------------------------------------------------------
# SGLang


def sglang_expert_location(gpu_experts: Placement, layer_ids: Sequence[int], experts: int,
                           num_layers: int | None = None) -> dict[str, list[list[int]]]:
    """The ``--init-expert-location`` document; ``num_layers``: the model's hidden layers (default
    the last MoE layer + 1)."""
    per_gpu = _slots(gpu_experts)
    gpus = len(gpu_experts[0])
    physical = gpus * per_gpu
    total = num_layers if num_layers is not None else max(layer_ids) + 1
    if total <= max(layer_ids):
        raise ExportError(f"num_layers {total} does not reach MoE layer {max(layer_ids)}")
    rows = [[p % experts for p in range(physical)] for _ in range(total)]
    for layer, lid in zip(gpu_experts, layer_ids, strict=True):
        rows[lid] = [int(e) for gpu in layer for e in gpu]
    return {"physical_to_logical_map": rows}


def write_sglang(path: str | Path, gpu_experts: Placement, layer_ids: Sequence[int], experts: int,
                 num_layers: int | None = None) -> None:
    doc = sglang_expert_location(gpu_experts, layer_ids, experts, num_layers)
    # One row per line: readable, and diffable between two plans.
    rows = ",\n".join("  " + json.dumps(r, separators=(",", ":")) for r in doc["physical_to_logical_map"])
    Path(path).write_text('{"physical_to_logical_map": [\n' + rows + "\n]}\n", encoding="utf-8")


def read_sglang(path: str | Path, gpus: int) -> list[list[list[int]]]:
    """Every row of an ``--init-expert-location`` JSON as experts per GPU (``gpus`` EP ranks)."""
    where = str(path)
    try:
        doc = parse_json_text(Path(path).read_text(encoding="utf-8"), where)
    except OSError as exc:
        raise InputError(where, "", None, f"cannot read the file ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict) or "physical_to_logical_map" not in doc:
        raise InputError(where, "physical_to_logical_map", None, "required: SGLang's expert location map "
                         "[layers][physical experts]")
    extra = sorted(set(doc) - {"physical_to_logical_map"})
    if extra:
        raise InputError(where, extra[0], None, "SGLang passes every key to init_by_mapping: only "
                         "physical_to_logical_map may be present")
    rows = doc["physical_to_logical_map"]
    if not isinstance(rows, list) or not rows:
        raise InputError(where, "physical_to_logical_map", rows, "a non-empty list of layers")
    out = []
    for l, row in enumerate(rows):
        at = f"physical_to_logical_map[{l}]"
        if not isinstance(row, list) or not row or len(row) % gpus:
            raise InputError(where, at, f"{len(row) if isinstance(row, list) else row}",
                             f"a list of physical experts divisible by the {gpus} EP ranks")
        if any(isinstance(e, bool) or not isinstance(e, int) or e < 0 for e in row):
            raise InputError(where, at, row, "logical expert ids (integers >= 0)")
        if len(row) != len(rows[0]):
            raise InputError(where, at, len(row), f"every layer has {len(rows[0])} physical experts")
        per = len(row) // gpus
        out.append([row[g * per:(g + 1) * per] for g in range(gpus)])
    return out


def sglang_flags(path: str, gpus: int, experts: int, slots_per_gpu: int) -> str:
    """The SGLang flags that load the map (EP size and redundant experts must match its shape)."""
    return (f"--ep-size {gpus} --ep-num-redundant-experts {gpus * slots_per_gpu - experts} "
            f"--init-expert-location {path}")


# ---------------------------------------------------------------------------------------------
# TensorRT-LLM


def trtllm_load_balancer(gpu_experts: Placement, layer_ids: Sequence[int]) -> dict[str, Any]:
    """The MoE load balancer config: ``num_slots``, ``initial_global_assignments``, static updates."""
    per_gpu = _slots(gpu_experts)
    gpus = len(gpu_experts[0])
    return {"num_slots": gpus * per_gpu,
            "initial_global_assignments": {int(lid): [int(e) for gpu in layer for e in gpu]
                                           for layer, lid in zip(gpu_experts, layer_ids, strict=True)},
            "layer_updates_per_iter": 0}


def write_trtllm(path: str | Path, gpu_experts: Placement, layer_ids: Sequence[int]) -> None:
    """YAML as TensorRT-LLM's generate_eplb_config.py writes it (lists inline, keys sorted)."""
    cfg = trtllm_load_balancer(gpu_experts, layer_ids)
    lines = ["initial_global_assignments:"]
    for lid, slots in cfg["initial_global_assignments"].items():
        lines.append(f"  {lid}: [{', '.join(map(str, slots))}]")
    lines.append(f"layer_updates_per_iter: {cfg['layer_updates_per_iter']}")
    lines.append(f"num_slots: {cfg['num_slots']}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


_INLINE = re.compile(r"^\[\s*(-?\d+(\s*,\s*-?\d+)*)?\s*\]$")


def _parse_yaml_subset(text: str, where: str) -> dict[str, Any]:
    """The YAML TensorRT-LLM's script writes: ``key: int``, ``key:`` with indented ``int: [ints]``.
    JSON (a YAML subset) is read as JSON."""
    if text.lstrip().startswith("{"):
        doc = parse_json_text(text, where)
        if not isinstance(doc, dict):
            raise InputError(where, "", None, "a mapping with num_slots and initial_global_assignments")
        return doc
    out: dict[str, Any] = {}
    section: dict[int, list[int]] | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        indented = line[0] in " \t"
        key, sep, value = line.strip().partition(":")
        if not sep:
            raise InputError(where, f"line {n}", raw, "key: value lines (the YAML TensorRT-LLM writes)")
        value = value.strip()
        if indented:
            if section is None or not key.strip().isdigit() or not _INLINE.match(value):
                raise InputError(where, f"line {n}", raw, "under initial_global_assignments: `<layer>: [expert, ...]`")
            section[int(key)] = [int(v) for v in value.strip("[] ").split(",") if v.strip()]
            continue
        section = None
        if value == "":
            section = {}
            out[key.strip()] = section
        elif re.fullmatch(r"-?\d+", value):
            out[key.strip()] = int(value)
        else:
            raise InputError(where, f"line {n}", raw, "an integer value or a nested mapping")
    return out


def _full_yaml(text: str) -> dict[str, Any] | None:
    """Other YAML styles (block lists, ...) when PyYAML is installed; None otherwise."""
    try:
        import yaml  # noqa: PLC0415 - optional: the files this module writes need no YAML library
    except ImportError:
        return None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return doc if isinstance(doc, dict) else None


def read_trtllm(path: str | Path, gpus: int) -> tuple[list[int], list[list[list[int]]]]:
    """A load balancer config as (layer ids, experts per GPU per layer) for ``gpus`` EP ranks."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(where, "", None, f"cannot read the file ({exc.__class__.__name__})") from None
    try:
        doc = _parse_yaml_subset(text, where)
    except InputError:
        doc = _full_yaml(text)
        if doc is None:
            raise
    slots = doc.get("num_slots")
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1 or slots % gpus:
        raise InputError(where, "num_slots", slots, f"the slots over all EP ranks, divisible by the {gpus} ranks")
    assign = doc.get("initial_global_assignments")
    if not isinstance(assign, dict) or not assign:
        raise InputError(where, "initial_global_assignments", assign, "a mapping of layer index -> expert per slot")
    per = slots // gpus
    ids, out = [], []
    for key in sorted(assign, key=int):
        row = assign[key]
        at = f"initial_global_assignments.{key}"
        if not isinstance(row, list) or len(row) != slots or any(not isinstance(e, int) or e < 0 for e in row):
            raise InputError(where, at, row, f"{slots} expert ids (num_slots), integers >= 0")
        ids.append(int(key))
        out.append([row[g * per:(g + 1) * per] for g in range(gpus)])
    return ids, out


# ---------------------------------------------------------------------------------------------
# Text


def compact_experts(held: Sequence[int], replicas: Sequence[int]) -> str:
    """``[0, 1, 2, 3, 17, 200]`` with expert 200 held 3 times in all -> ``0-3,17,200(r3)``: runs of
    experts that have one replica as ranges, a replicated one with its replica count."""
    parts: list[str] = []
    run: list[int] = []

    def flush() -> None:
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
            run.clear()

    for e in sorted(held):
        if replicas[e] > 1:
            flush()
            parts.append(f"{e}(r{replicas[e]})")
        elif run and e == run[-1] + 1:
            run.append(e)
        else:
            flush()
            run.append(e)
    flush()
    return ",".join(parts)


def render_gpu_map(gpu_experts: Sequence[Sequence[int]], replicas: Sequence[int],
                   loads: Sequence[float] | None = None, mean: float | None = None) -> list[str]:
    """One line per GPU: ``GPU 0: 0-3,17,200(r3)`` (and its load / mean when given)."""
    width = len(str(len(gpu_experts) - 1))
    lines = []
    for g, held in enumerate(gpu_experts):
        tail = f"  load {loads[g] / mean:.3f}" if loads is not None and mean else ""
        lines.append(f"GPU {g:>{width}}: {compact_experts(held, replicas)}{tail}")
    return lines
