"""User-facing input errors: one message naming the file, the JSON path, the value and what is accepted."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError


class InputError(Exception):
    """Bad input. The CLI prints ``str(err)`` and exits with code 2; never a traceback."""

    def __init__(self, file: str | None, path: str, value: Any, accepted: str):
        self.file = file
        self.path = path
        self.value = value
        self.accepted = accepted
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"{self.file}: " if self.file else ""
        if not self.path and self.value is None:  # a file-level problem: no field, no value
            return f"{where}{self.accepted}"
        at = f"at `{self.path}`" if self.path else "at the top level"
        if self.value is None:  # a missing field, a duplicate key: no value to show
            return f"{where}{at}: {self.accepted}"
        return f"{where}{at}: value {_short(self.value)}: {self.accepted}"


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def closest(name: str, known: Iterable[str]) -> str:
    """A 'did you mean' suffix for ``name`` among ``known`` (empty when nothing is close)."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else ""


# Union branch tags that pydantic inserts in error locations (see schema discriminators).
_TAGS = {"name", "inline", "hf_config"}


def _clean_loc(loc: tuple[Any, ...]) -> list[Any]:
    out: list[Any] = []
    for i, part in enumerate(loc):
        if i > 0 and loc[i - 1] in ("model", "gpu") and part in _TAGS and (i == 1 or loc[0] == "cluster"):
            continue
        out.append(part)
    return out


def json_path(parts: Iterable[Any]) -> str:
    """Dotted JSON path with list indices in brackets: ``stages[2].layers``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _fields_at(model: type[BaseModel], parts: list[Any]) -> list[str]:
    """Field names accepted by the sub-model at ``parts`` (for unknown-key suggestions)."""
    current: Any = model
    for part in parts:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _submodel(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _submodel(annotation: Any) -> Any:
    """The BaseModel inside an annotation such as ``X | None`` or ``Annotated[...]`` (first found)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _submodel(arg)
        if found is not None:
            return found
    for meta in getattr(annotation, "__metadata__", ()) or ():
        found = _submodel(meta)
        if found is not None:
            return found
    origin = getattr(annotation, "__origin__", None)
    if origin is not None and origin is not annotation:
        return _submodel(origin)
    return None


def from_validation_error(err: ValidationError, model: type[BaseModel], file: str | None) -> InputError:
    """The first pydantic error as an :class:`InputError` that says what would be accepted."""
    first = err.errors()[0]
    parts = _clean_loc(tuple(first["loc"]))
    kind = first["type"]
    value = first.get("input")
    msg = first["msg"]
    if kind == "extra_forbidden":
        key = parts[-1]
        allowed = _fields_at(model, parts[:-1])
        accepted = f"unknown key '{key}'{closest(str(key), allowed)} (accepted keys: {', '.join(allowed)})"
        return InputError(file, json_path(parts), value, accepted)
    if kind == "missing":
        return InputError(file, json_path(parts), None, "required field is missing")
    if kind in ("literal_error", "enum"):
        expected = first.get("ctx", {}).get("expected", "")
        return InputError(file, json_path(parts), value, f"not accepted; expected one of {expected}")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return InputError(file, json_path(parts), value, msg[0].lower() + msg[1:] if msg else kind)


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def parse_json_text(text: str, where: str) -> Any:
    """JSON text to Python, rejecting duplicate keys (the last would win silently) and absurd nesting."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as dup:
        raise InputError(where, dup.key, None, f"duplicate key '{dup.key}': a JSON object gives each key once "
                         "(with two, which one is meant?)") from None
    except json.JSONDecodeError as exc:
        raise InputError(where, "", None, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InputError(where, "", None, "JSON nested too deeply to be an instance or a config") from None


def load_json(path: str) -> Any:
    """Read a JSON file (``-``: standard input), raising :class:`InputError` for a missing file or bad JSON."""
    if path == "-":
        import sys

        return parse_json_text(sys.stdin.read(), "<stdin>")
    try:
        with open(path, encoding="utf-8-sig") as fh:  # tolerate a byte-order mark
            text = fh.read()
    except FileNotFoundError:
        raise InputError(path, "", None, "file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError, OSError) as exc:
        raise InputError(path, "", None, f"cannot read the file ({exc.__class__.__name__})") from None
    return parse_json_text(text, path)
