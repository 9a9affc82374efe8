"""What a sweep varies: ``--vary PATH=SPEC`` and sweep files, checked against the instance schema.

A sweep is a list of :class:`Axis` (a dotted instance path and its values); its points are the
Cartesian product of the axes, the first axis the outermost loop. Every error is an
:class:`~solver.input.errors.InputError` naming where the text came from (``--vary`` or the sweep
file), the path, the value and what is accepted, so the command prints one line and exits 2.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ...input.errors import InputError, load_json
from ...input.schema import Instance

# A sweep far beyond this is a typo in a range (a step of 0.001 for 0.01), not a plan: refuse it
# before building millions of points.
MAX_POINTS = 100_000

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^({_NUM}):({_NUM}):(x|\+)?({_NUM})$")
# A number, a colon and no comma is meant as a range, even when it is a broken one (1:32, 1:32:y2):
# it gets a range error, not a silent string value.
_RANGE_LIKE = re.compile(r"^[-+.\d][-+.\deE]*:[^,]*$")
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")

RANGE_HELP = "a:b:xk (geometric, times k until > b), a:b:+k or a:b:k (step k), inclusive of b"
SPEC_HELP = f"a comma list of values (JSON or text) or a range {RANGE_HELP}"


@dataclass(frozen=True)
class Axis:
    """One varied field: ``path`` as written (``workload.request_rate``, ``search.tp[0]``), its values."""

    path: str
    parts: tuple[str | int, ...]
    values: tuple[Any, ...]
    source: str = "--vary"  # where it was given (the flag or the sweep file), for error messages


# ---------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------


def parse_path(text: str, source: str) -> tuple[str | int, ...]:
    """``a.b[0].c`` or ``a.b.0.c`` as segments; digits are list indices."""
    parts: list[str | int] = []
    for piece in text.split("."):
        pos = 0
        if not piece:
            raise InputError(source, text, None, "an empty segment in the path; write fields with dots, "
                             "e.g. workload.request_rate")
        while pos < len(piece):
            m = _SEGMENT.match(piece, pos)
            if not m or (m.group(1) is not None and pos > 0):
                raise InputError(source, text, None, "not a dotted instance path; write e.g. "
                                 "workload.request_rate or search.tp[0]")
            name, index = m.group(1), m.group(2)
            if index is not None:
                parts.append(int(index))
            else:
                parts.append(int(name) if name.isdigit() else name)
            pos = m.end()
    return tuple(parts)


def _members(tp: Any) -> list[Any]:
    """The concrete types a field annotation may hold (Annotated and unions unwrapped, None dropped)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _members(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [m for a in typing.get_args(tp) for m in _members(a)]
    return [] if tp is type(None) else [tp]


def _step(tp: Any, seg: str | int) -> list[Any]:
    """The types reached from ``tp`` through one path segment (none: the schema has no such field)."""
    if tp is Any:
        return [Any]
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(seg) if isinstance(seg, str) else None
        return [] if field is None else _members(field.annotation)
    if origin in (list, tuple) and isinstance(seg, int):
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return _members(args[seg]) if seg < len(args) else []
        return _members(args[0]) if args else [Any]
    if origin is dict and isinstance(seg, str):
        args = typing.get_args(tp)
        return _members(args[1]) if len(args) == 2 else [Any]
    if tp is dict:
        return [Any] if isinstance(seg, str) else []
    return []


def _accepted_here(state: list[Any]) -> str:
    """What the schema accepts after the path walked so far (for the error message)."""
    names: list[str] = []
    for tp in state:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            names.extend(n for n in tp.model_fields if n not in names)
    if names:
        return "fields: " + ", ".join(names)
    if any(typing.get_origin(tp) in (list, tuple) for tp in state):
        return "a list index (0, 1, ...)"
    return "nothing: it is a single value"


def check_path(text: str, source: str) -> tuple[str | int, ...]:
    """The segments of ``text`` when the instance schema has that field, else an InputError."""
    parts = parse_path(text, source)
    state: list[Any] = [Instance]
    for depth, seg in enumerate(parts):
        nxt = [t for tp in state for t in _step(tp, seg)]
        if not nxt:
            where = f"`{_render(parts[:depth])}`" if depth else "the instance"
            raise InputError(source, text, None, f"the instance schema has no `{seg}` in {where}; "
                             f"{where} takes {_accepted_here(state)}")
        state = nxt
    return parts


def _render(parts: tuple[str | int, ...] | list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(name)  # NaN / Infinity are not JSON; such text stays a string


def parse_value(text: str) -> Any:
    """One list item: JSON when it parses (numbers, true/false, null, arrays, objects), else the text."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text


def split_list(text: str) -> list[str]:
    """Split at commas outside brackets, braces and double quotes (JSON arrays stay whole)."""
    items, depth, quoted, escaped, start = [], 0, False, False, 0
    for i, ch in enumerate(text):
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [s.strip() for s in items]


def _number(text: str) -> int | float:
    return int(text) if re.fullmatch(r"[-+]?\d+", text) else float(text)


def _tidy(v: float) -> float:
    # a + i*k in binary floating point gives 0.30000000000000004; 12 significant digits keep
    # every value the user could mean and drop that noise, so points print and compare cleanly.
    return float(f"{v:.12g}")


def parse_range(text: str, source: str, path: str) -> list[int | float]:
    """``a:b:xk``, ``a:b:+k`` or ``a:b:k`` as its values (integers when a, b and k are)."""
    m = _RANGE.match(text)
    if not m:
        raise InputError(source, path, text, f"not a range; a range is {RANGE_HELP}")
    a, b, kind, k = _number(m.group(1)), _number(m.group(2)), m.group(3), _number(m.group(4))
    integral = all(isinstance(x, int) for x in (a, b, k))
    if a > b:
        raise InputError(source, path, text, f"an empty range: the start {a} is above the end {b} "
                         f"(ranges run upwards: {RANGE_HELP})")
    slack = 1e-9 * max(abs(a), abs(b), 1.0)  # so that 0.1:0.3:0.1 keeps 0.3
    values: list[int | float] = []
    if kind == "x":
        if a <= 0 or k <= 1:
            raise InputError(source, path, text, "a geometric range a:b:xk needs a > 0 and a factor k > 1")
        v = a
        while v <= b + slack:
            values.append(v if integral else _tidy(v))
            v = v * k
            if len(values) > MAX_POINTS:
                break
    else:
        if k <= 0:
            raise InputError(source, path, text, "the step k of a range a:b:+k must be > 0")
        count = math.floor((b - a + slack) / k) + 1
        if count > MAX_POINTS:
            raise InputError(source, path, text, f"{count:,} values; a sweep takes at most {MAX_POINTS:,} points")
        values = [a + i * k if integral else _tidy(a + i * k) for i in range(count)]
    if len(values) > MAX_POINTS:
        raise InputError(source, path, text, f"over {MAX_POINTS:,} values; a sweep takes at most {MAX_POINTS:,} points")
    return values


def parse_spec(text: str, source: str, path: str) -> list[Any]:
    """The values of one SPEC: a range, or a comma list of JSON values / text."""
    text = text.strip()
    if not text:
        raise InputError(source, path, text, f"no values; give {SPEC_HELP}")
    if _RANGE_LIKE.match(text):
        return parse_range(text, source, path)
    items = split_list(text)
    if any(not s for s in items):
        raise InputError(source, path, text, f"an empty item in the list; give {SPEC_HELP}")
    return [parse_value(s) for s in items]


def parse_vary(text: str, source: str = "--vary") -> Axis:
    """One ``--vary PATH=SPEC`` option as an axis (the path checked against the schema)."""
    path, eq, spec = text.partition("=")
    path = path.strip()
    if not eq or not path:
        raise InputError(source, "", text, f"write PATH=SPEC, e.g. workload.request_rate=1:32:x2; SPEC is {SPEC_HELP}")
    parts = check_path(path, source)
    return Axis(path, parts, tuple(parse_spec(spec, source, path)), source)


def load_sweep_file(file: str) -> tuple[list[Axis], str | None]:
    """A sweep file: ``{"vary": {PATH: [values] or "SPEC", ...}, "objective": NAME}`` (objective optional)."""
    data = load_json(file)
    if not isinstance(data, dict):
        raise InputError(file, "", None, 'a sweep file is a JSON object: {"vary": {"PATH": [values] or "SPEC"}}')
    unknown = sorted(set(data) - {"vary", "objective", "description"})
    if unknown:
        raise InputError(file, unknown[0], None, "unknown key; a sweep file takes vary, objective, description")
    vary = data.get("vary")
    if not isinstance(vary, dict) or not vary:
        raise InputError(file, "vary", vary, 'an object of PATH: [values] or "SPEC", with at least one path')
    axes = []
    for path, spec in vary.items():
        parts = check_path(path, file)
        if isinstance(spec, str):
            values = parse_spec(spec, file, f"vary.{path}")
        elif isinstance(spec, list) and spec:
            values = list(spec)
        else:
            raise InputError(file, f"vary.{path}", spec, f"a non-empty list of values or a SPEC string ({SPEC_HELP})")
        axes.append(Axis(path, parts, tuple(values), file))
    objective = data.get("objective")
    if objective is not None and not isinstance(objective, str):
        raise InputError(file, "objective", objective, "an objective name")
    return axes, objective


def check_axes(axes: list[Axis]) -> None:
    """Refuse a path given twice (or overlapping another) and sweeps beyond :data:`MAX_POINTS`."""
    for i, a in enumerate(axes):
        for b in axes[:i]:
            short, long_ = sorted((a.parts, b.parts), key=len)
            if long_[: len(short)] == short:
                raise InputError(a.source, a.path, None, f"varied twice (also as `{b.path}`); give each path once")
    total = math.prod(len(a.values) for a in axes)
    if total > MAX_POINTS:
        raise InputError(axes[-1].source, axes[-1].path, None, f"{total:,} points; a sweep takes at most {MAX_POINTS:,}")


# ---------------------------------------------------------------------------------------------
# Points
# ---------------------------------------------------------------------------------------------


def points(axes: list[Axis]) -> list[dict[str, Any]]:
    """Every combination of the axes' values as ``{path: value}``, the first axis the outermost loop."""
    return [dict(zip([a.path for a in axes], combo, strict=True))
            for combo in itertools.product(*(a.values for a in axes))]


def apply_point(data: dict[str, Any], axes: list[Axis], point: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of the instance ``data`` with each varied field set (``null`` removes a key).

    Missing objects on the way are created (``slo.ttft_p99_ms`` on an instance without ``slo``);
    a path through a value that is not an object (``model.config`` when ``model`` is a catalog
    name) or past the end of a list is an error naming the instance's value there.
    """
    out = copy.deepcopy(data)
    for axis in axes:
        value = point[axis.path]
        node: Any = out
        for depth, seg in enumerate(axis.parts):
            last = depth == len(axis.parts) - 1
            where = _render(axis.parts[: depth + 1])
            if isinstance(seg, int):
                if not isinstance(node, list) or seg >= len(node):
                    held = _render(axis.parts[:depth])
                    raise InputError(axis.source, axis.path, value, f"the instance's `{held}` is {_held(node)}; "
                                     f"index {seg} is not in it")
            elif not isinstance(node, dict):
                held = _render(axis.parts[:depth])
                raise InputError(axis.source, axis.path, value, f"the instance's `{held}` is {_held(node)}, not an "
                                 f"object, so `{where}` cannot be set")
            if last:
                if value is None and isinstance(node, dict):
                    node.pop(seg, None)  # null: the field's default applies
                else:
                    node[seg] = copy.deepcopy(value)
            else:
                if isinstance(node, dict) and node.get(seg) is None:
                    if isinstance(axis.parts[depth + 1], int):
                        raise InputError(axis.source, axis.path, value, f"the instance has no `{where}` list to "
                                         f"index; vary the whole list instead (--vary {where}=[...])")
                    node[seg] = {}
                node = node[seg]
    out.pop("expect", None)  # a point is a new question; the file's recorded verdict is not its own
    return out


def _held(node: Any) -> str:
    text = json.dumps(node)
    return text if len(text) <= 40 else text[:37] + "..."
