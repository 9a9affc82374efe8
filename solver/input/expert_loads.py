"""Per-layer expert load profiles: how many tokens each routed expert of each MoE layer receives.

The expert-to-GPU assignment (:mod:`solver.search.experts`) balances these loads. Accepted inputs:

- **Plain JSON**: ``{"layers": [[tokens per expert, ...], ...]}`` (optionally ``"layer_ids"``: the
  model layer index of each row, e.g. ``[3, 4, ..., 60]`` for DeepSeek-V3 whose first 3 layers are
  dense) or a bare list of lists. Counts are non-negative numbers (token counts, or any weights).
- **CSV**: one row per layer, one column per expert, an optional header row (any non-numeric first
  row); an optional first column named ``layer`` gives the layer ids.
- **SGLang expert-distribution recorder** (``--expert-distribution-recorder-mode stat``), the dict it
  dumps, ``{"logical_count": [...]}`` with shape ``[layers, experts]`` or
  ``[steps, layers, experts]`` (summed over steps, as SGLang's own ``init_by_eplb`` does). SGLang
  writes it with ``torch.save`` (``expert_distribution_recorder_<time>.pt``): a ``.pt`` file is read
  when torch is installed, otherwise the error says how to convert it to JSON (the same dict as
  JSON is also what ``--init-expert-location`` accepts). SGLang's rows are all hidden layers; rows
  that are all zero (dense layers, which route nothing) are dropped and ``layer_ids`` keeps the
  original indices. The ``per_pass`` / ``per_token`` recorder modes (``records`` of physical counts)
  are not read.
- **TensorRT-LLM expert statistics** (``EXPERT_STATISTIC_PATH``): a directory with
  ``meta_info.json`` and ``rank*.safetensors`` whose tensors are named ``<iteration>_<layer>`` with
  one count per expert; summed over ranks and iterations, read without torch.
- **vLLM**: not accepted. vLLM's EPLB keeps its load window in memory and only logs
  ``avg_tokens``, ``max_tokens`` and ``balancedness`` per step (no per-expert numbers); saving the
  window to a file was proposed (vllm-project/vllm PRs #26176, closed, and #41141, open) without a
  settled format. Dump the window yourself as plain JSON.

The stated default when no file is given: Zipf over experts (:func:`zipf_loads`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, closest, parse_json_text

# The stated default of a Zipf profile: its seed and the tokens per layer. Any fixed seed works; 0 is
# the one documented in docs/experts.md so a profile can be regenerated anywhere.
ZIPF_SEED = 0
# Tokens per layer of a generated profile: large enough that integer rounding (when written to a
# file) changes each expert's share by < 1e-4 of the coldest expert's load at alpha <= 1.4, E <= 256.
ZIPF_TOKENS_PER_LAYER = 1_000_000

ACCEPTED = ("a JSON file {\"layers\": [[tokens per expert, ...], ...]} or a bare list of lists, a CSV "
            "(rows = layers, columns = experts, optional header), SGLang's recorder dump "
            "{\"logical_count\": ...} (.json, or .pt with torch installed), or a TensorRT-LLM "
            "expert-statistic directory (meta_info.json + rank*.safetensors)")


@dataclass(frozen=True)
class ExpertLoads:
    """Tokens routed to each expert of each MoE layer.

    ``counts[l, e]`` is the load of expert ``e`` in the ``l``-th profiled layer (non-negative float);
    ``layer_ids[l]`` is that layer's index in the model (engine files are keyed by it).
    """

    layers: int
    experts: int
    counts: np.ndarray
    source: str
    layer_ids: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        counts = np.asarray(self.counts, dtype=np.float64)
        if counts.shape != (self.layers, self.experts):
            raise ValueError(f"counts has shape {counts.shape}, expected ({self.layers}, {self.experts})")
        object.__setattr__(self, "counts", counts)
        if not self.layer_ids:
            object.__setattr__(self, "layer_ids", tuple(range(self.layers)))
        if len(self.layer_ids) != self.layers:
            raise ValueError(f"{len(self.layer_ids)} layer ids for {self.layers} layers")

    def layer(self, l: int) -> np.ndarray:
        """The loads of the ``l``-th profiled layer."""
        return self.counts[l]

    def to_json(self, description: str | None = None, generated_by: str | None = None) -> str:
        """The plain JSON format (integers where every count is whole), one layer per line."""
        whole = bool(np.all(self.counts == np.round(self.counts)))
        head = [("source", self.source), ("description", description), ("generated_by", generated_by),
                ("layer_ids", list(self.layer_ids))]
        lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head if v is not None]
        rows = ",\n".join("  " + json.dumps([int(v) if whole else float(v) for v in row], separators=(",", ":"))
                           for row in self.counts)
        return "{\n" + "\n".join(lines) + '\n "layers": [\n' + rows + "\n ]\n}\n"


# ---------------------------------------------------------------------------------------------
# The stated default: Zipf over experts with a seeded per-layer permutation.


def _splitmix64(state: int) -> tuple[int, int]:
    """One step of splitmix64 (Steele et al. 2014): (new state, 64-bit output). Fully specified, so
    a profile is the same on every platform and NumPy version (NumPy's Generator promises no stream
    compatibility across releases)."""
    mask = (1 << 64) - 1
    state = (state + 0x9E3779B97F4A7C15) & mask
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return state, z ^ (z >> 31)


def layer_permutation(experts: int, seed: int, layer: int) -> list[int]:
    """``perm[e]``: the Zipf rank (0 = hottest) of expert ``e`` in ``layer``.

    Fisher-Yates over ``range(experts)`` driven by splitmix64 seeded with ``seed * 1_000_003 + layer``
    (index ``i`` from the top swaps with ``output % (i + 1)``; the modulo bias is below 2^-50).
    """
    state = (seed * 1_000_003 + layer) & ((1 << 64) - 1)
    perm = list(range(experts))
    for i in range(experts - 1, 0, -1):
        state, out = _splitmix64(state)
        j = out % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def zipf_loads(alpha: float, layers: int, experts: int, seed: int = ZIPF_SEED,
               tokens_per_layer: float = ZIPF_TOKENS_PER_LAYER, integer: bool = False) -> ExpertLoads:
    """Zipf over experts: expert ``e`` of layer ``l`` gets ``1 / (rank + 1) ** alpha``, normalised to
    ``tokens_per_layer``, where ``rank = layer_permutation(experts, seed, l)[e]``.

    Why Zipf: measured routing counts of DeepSeek-V3/R1 and Qwen3 MoE layers are heavy-tailed, a few
    hot experts per layer, different ones per layer (hence the per-layer permutation). ``integer``
    rounds to whole tokens (largest remainder, ties to the lower expert id) as a file would hold them.
    """
    if not (alpha >= 0 and math.isfinite(alpha)):
        raise InputError("--zipf", "alpha", alpha, "a finite Zipf exponent >= 0 (0 is uniform load)")
    if layers < 1 or experts < 1:
        raise InputError("--zipf", "layers" if layers < 1 else "experts", layers if layers < 1 else experts,
                         "at least 1 layer and 1 expert")
    counts = np.empty((layers, experts))
    for l in range(layers):
        rank = np.array(layer_permutation(experts, seed, l), dtype=np.float64)
        w = 1.0 / (rank + 1.0) ** alpha
        counts[l] = w * (tokens_per_layer / w.sum())
        if integer:
            counts[l] = _round_preserving_total(counts[l], int(round(tokens_per_layer)))
    return ExpertLoads(layers, experts, counts, f"zipf(alpha={alpha:g}, seed={seed})")


def _round_preserving_total(values: np.ndarray, total: int) -> np.ndarray:
    floor = np.floor(values)
    short = total - int(floor.sum())
    order = sorted(range(len(values)), key=lambda i: (-(values[i] - floor[i]), i))
    for i in order[:short]:
        floor[i] += 1
    return floor


# ---------------------------------------------------------------------------------------------
# Files.


def read_expert_loads(path: str | Path) -> ExpertLoads:
    """Read a load profile in any accepted format (see the module docstring); :class:`InputError`
    names the file, the place in it, the value and what is accepted."""
    p = Path(path)
    where = str(path)
    if p.is_dir():
        return _read_trtllm_statistics(p)
    if not p.exists():
        raise InputError(where, "", None, f"file not found; expected {ACCEPTED}")
    suffix = p.suffix.lower()
    if suffix in (".pt", ".pth"):
        return _read_torch(p)
    if suffix == ".safetensors":
        raise InputError(where, "", None, "a single .safetensors file is not a profile; pass the TensorRT-LLM "
                         "statistic directory (meta_info.json + rank*.safetensors)")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(where, "", None, f"cannot read the file ({exc.__class__.__name__}); expected {ACCEPTED}") from None
    if suffix == ".csv" or (suffix not in (".json",) and not text.lstrip().startswith(("{", "["))):
        return _from_csv(text, where)
    return from_document(parse_json_text(text, where), where)


# Keys of the plain JSON format: the counts, their model layer ids, and free text about them.
_PLAIN_KEYS = ("layers", "layer_ids", "source", "description", "generated_by")


def from_document(doc: Any, where: str) -> ExpertLoads:
    """A load profile from parsed JSON: ``{"layers": ...}``, a bare list of lists, or SGLang's
    ``{"logical_count": ...}``."""
    if isinstance(doc, list):
        return _from_rows(doc, where, "", None)
    if not isinstance(doc, dict):
        raise InputError(where, "", doc, f"expected {ACCEPTED}")
    if "logical_count" in doc:
        return _from_sglang(doc["logical_count"], where)
    if "layers" not in doc:
        keys = ", ".join(sorted(map(str, doc))) or "none"
        raise InputError(where, "layers", None, f"required: the per-layer counts (keys found: {keys}); expected {ACCEPTED}")
    unknown = sorted(set(map(str, doc)) - set(_PLAIN_KEYS))
    if unknown:
        raise InputError(where, unknown[0], None, f"unknown key '{unknown[0]}'{closest(unknown[0], _PLAIN_KEYS)} "
                         f"(accepted keys: {', '.join(_PLAIN_KEYS)})")
    ids = doc.get("layer_ids")
    return _from_rows(doc["layers"], where, "layers", ids, source=str(doc.get("source") or where))


def _number(v: Any, where: str, path: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise InputError(where, path, v, "a token count: a finite number >= 0")
    return float(v)


def _matrix(rows: Any, where: str, path: str) -> np.ndarray:
    """A [layers, experts] list of lists of token counts, checked: non-empty, rectangular, numbers >= 0."""
    if not isinstance(rows, list) or not rows:
        raise InputError(where, path, rows, "a non-empty list of layers, each a list of tokens per expert")
    width = None
    counts: list[list[float]] = []
    for l, row in enumerate(rows):
        at = f"{path}[{l}]"
        if not isinstance(row, list) or not row:
            raise InputError(where, at, row, "a non-empty list of tokens per expert")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise InputError(where, at, f"{len(row)} experts", f"every layer has the same number of experts "
                             f"({width} in the first layer)")
        counts.append([_number(v, where, f"{at}[{e}]") for e, v in enumerate(row)])
    return np.array(counts, dtype=np.float64)


def _from_rows(rows: Any, where: str, path: str, layer_ids: Any, source: str | None = None,
               drop_empty: bool = False) -> ExpertLoads:
    arr = _matrix(rows, where, path)
    ids = _layer_ids(layer_ids, len(arr), where)
    if drop_empty:
        keep = [l for l in range(len(arr)) if arr[l].sum() > 0]
        if not keep:
            raise InputError(where, path, None, "every layer is all zeros: no MoE layer routed any token")
        arr, ids = arr[keep], tuple(ids[l] for l in keep)
    for l in range(len(arr)):
        if arr[l].sum() <= 0:
            raise InputError(where, f"{path}[{l}]", None, "a layer with no tokens at all: drop it (a dense "
                             "layer routes nothing) or give its counts")
    return ExpertLoads(len(arr), arr.shape[1], arr, source or where, ids)


def _layer_ids(ids: Any, n: int, where: str) -> tuple[int, ...]:
    if ids is None:
        return tuple(range(n))
    if (not isinstance(ids, list) or len(ids) != n
            or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids) or len(set(ids)) != n):
        raise InputError(where, "layer_ids", ids, f"a list of {n} distinct model layer indices >= 0, one per row")
    return tuple(ids)


def _from_sglang(logical: Any, where: str) -> ExpertLoads:
    """SGLang's ``logical_count``: [layers, experts] or [steps, layers, experts] (summed over steps)."""
    three_d = (isinstance(logical, list) and logical
               and all(isinstance(x, list) and x and isinstance(x[0], list) for x in logical))
    if three_d:
        total: np.ndarray | None = None
        for s, step in enumerate(logical):
            part = _matrix(step, where, f"logical_count[{s}]")
            if total is not None and part.shape != total.shape:
                raise InputError(where, f"logical_count[{s}]", f"shape {list(part.shape)}",
                                 f"every step has the shape of the first ({list(total.shape)})")
            total = part if total is None else total + part
        logical = total.tolist()  # type: ignore[union-attr]
    return _from_rows(logical, where, "logical_count", None, source=f"sglang:{where}", drop_empty=True)


def _from_csv(text: str, where: str) -> ExpertLoads:
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        raise InputError(where, "", None, f"empty file; expected {ACCEPTED}")
    header = rows[0]
    has_header = not all(_is_number(c) for c in header)
    with_ids = bool(header) and header[0].strip().lower() in ("layer", "layer_id", "layers")
    body = rows[1:] if has_header else rows
    if not body:
        raise InputError(where, "row 1", None, "a header but no layers")
    ids: list[int] | None = [] if with_ids else None
    counts: list[list[float]] = []
    for i, row in enumerate(body):
        line = i + 1 + (1 if has_header else 0)
        cells = [c.strip() for c in row]
        if with_ids:
            try:
                ids.append(int(cells[0]))  # type: ignore[union-attr]
            except ValueError:
                raise InputError(where, f"line {line} column 1", cells[0], "a layer index (integer)") from None
            cells = cells[1:]
        vals = []
        for j, c in enumerate(cells):
            if not _is_number(c):
                raise InputError(where, f"line {line} column {j + 1 + (1 if with_ids else 0)}", c,
                                 "a token count: a finite number >= 0")
            vals.append(float(c))
        counts.append(vals)
    return _from_rows(counts, where, "", ids, source=where)


def _is_number(cell: str) -> bool:
    try:
        v = float(cell)
    except ValueError:
        return False
    return math.isfinite(v)


def _read_torch(p: Path) -> ExpertLoads:
    where = str(p)
    try:
        import torch  # noqa: PLC0415 - optional: only SGLang's .pt dumps need it
    except ImportError:
        raise InputError(where, "", None, "a .pt file (SGLang's torch.save dump) needs torch, which is not "
                         "installed; convert it where torch is: python -c \"import json,torch; d=torch.load('"
                         f"{p.name}'); print(json.dumps({{'logical_count': d['logical_count'].tolist()}}))\" "
                         "> loads.json") from None
    try:
        data = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable pickle is bad input, never a traceback
        raise InputError(where, "", None, f"torch cannot read it ({type(exc).__name__}); expected SGLang's "
                         "expert-distribution dump") from None
    if not isinstance(data, dict) or "logical_count" not in data:
        found = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise InputError(where, "logical_count", None, f"required: SGLang's stat-mode dump has `logical_count` "
                         f"(found {found}); the per_pass / per_token modes are not read")
    return _from_sglang(data["logical_count"].tolist(), where)


# TensorRT-LLM statistic files: safetensors read with numpy (dtype names of the safetensors spec).
_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
                       "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8"}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file (8-byte little-endian header size, JSON header, raw data)."""
    where = str(path)
    data = path.read_bytes()
    if len(data) < 8:
        raise InputError(where, "", None, "not a safetensors file (shorter than its 8-byte header size)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise InputError(where, "", None, "not a safetensors file (its header size exceeds the file)")
    try:
        header = json.loads(data[8:8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(where, "", None, "not a safetensors file (its header is not JSON)") from None
    out: dict[str, np.ndarray] = {}
    body = data[8 + n:]
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(info.get("dtype")) if isinstance(info, dict) else None
        if dtype is None:
            raise InputError(where, name, info, f"a tensor of dtype {sorted(_SAFETENSORS_DTYPES)}")
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(body[begin:end], dtype=dtype).reshape(info["shape"]).astype(np.float64)
    return out


def _read_trtllm_statistics(d: Path) -> ExpertLoads:
    where = str(d)
    meta = d / "meta_info.json"
    files = sorted(d.glob("rank*.safetensors"))
    if not meta.is_file() or not files:
        raise InputError(where, "", None, f"a directory must be TensorRT-LLM's expert statistics (meta_info.json "
                         f"+ rank*.safetensors); expected {ACCEPTED}")
    info = parse_json_text(meta.read_text(encoding="utf-8"), str(meta))
    experts = info.get("num_experts") if isinstance(info, dict) else None
    if isinstance(experts, bool) or not isinstance(experts, int) or experts < 1:
        raise InputError(str(meta), "num_experts", experts, "the number of routed experts (integer >= 1)")
    per_layer: dict[int, np.ndarray] = {}
    for f in files:
        for key, tensor in read_safetensors(f).items():
            it, sep, layer = key.partition("_")
            if not sep or not it.isdigit() or not layer.isdigit():
                raise InputError(str(f), key, None, "tensors named <iteration>_<layer>")
            if tensor.shape != (experts,):
                raise InputError(str(f), key, f"shape {list(tensor.shape)}", f"one count per expert ({experts})")
            lid = int(layer)
            per_layer[lid] = per_layer.get(lid, np.zeros(experts)) + tensor
    if not per_layer:
        raise InputError(where, "", None, "the statistic files hold no tensors")
    ids = sorted(per_layer)
    return _from_rows([per_layer[i].tolist() for i in ids], where, "", ids, source=f"trtllm:{where}",
                      drop_empty=True)
