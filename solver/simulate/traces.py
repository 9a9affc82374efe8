"""Request traces for the simulator: arrival times and lengths from a file.

Accepted formats (the first that fits the file is used; bad entries raise
:class:`~solver.input.errors.InputError` naming the file and the line or JSON path):

* JSONL, one request per line: ``{"arrival_s": 0.12, "input_tokens": 812, "output_tokens": 164}``
  (``timestamp`` or ``arrival_time`` for the time, in seconds; ``input_length`` / ``prompt_tokens``
  and ``output_length`` / ``completion_tokens`` for the lengths). Without times it is a list of
  lengths, served at the workload's rate or concurrency.
* a ``vllm bench serve --save-result --save-detailed`` JSON: ``input_lens``, ``output_lens`` and,
  when present, ``start_times`` (send times, made relative to the first);
* an SGLang ``bench_serving --output-file --output-details`` JSONL line: ``input_lens``,
  ``output_lens`` (no times).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..input.errors import InputError

_TIME_KEYS = ("arrival_s", "timestamp", "arrival_time")
_IN_KEYS = ("input_tokens", "input_length", "prompt_tokens", "input_len")
_OUT_KEYS = ("output_tokens", "output_length", "completion_tokens", "output_len")
# A trace longer than this is a mistake, not a workload (and would not simulate in seconds).
MAX_TRACE_REQUESTS = 2_000_000


def _first(entry: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for k in keys:
        if k in entry:
            return k, entry[k]
    return None, None


def _at(where: str, key: str) -> str:
    return f"{where}.{key}".strip(".") if key else where


def _count(value: Any, file: str, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000_000:
        raise InputError(file, _at(where, key), value, "expected a token count from 1 to 10,000,000")
    return value


def _time(value: Any, file: str, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InputError(file, _at(where, key), value, "expected a time in seconds (>= 0)")
    return float(value)


def read_trace(path: str | Path) -> tuple[list[float] | None, list[int], list[int]]:
    """(arrival times or None, input tokens, output tokens) of every request in a trace file."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(file, "", None, f"cannot read the trace ({exc.__class__.__name__})") from None
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict) and "input_lens" in whole:
        return _from_result(whole, file, "")
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise InputError(file, "", None, "the trace is empty")
    if len(lines) > MAX_TRACE_REQUESTS:
        raise InputError(file, "", None, f"more than {MAX_TRACE_REQUESTS:,} requests")
    entries = []
    for n, line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(file, f"line {n}", line[:60], f"not valid JSON: {exc.msg}") from None
        if not isinstance(entry, dict):
            raise InputError(file, f"line {n}", entry, "each line must be a JSON object")
        entries.append((n, entry))
    if len(entries) == 1 and "input_lens" in entries[0][1]:
        return _from_result(entries[0][1], file, "line 1")
    times: list[float] = []
    ins, outs = [], []
    for n, entry in entries:
        where = f"line {n}"
        k_in, v_in = _first(entry, _IN_KEYS)
        k_out, v_out = _first(entry, _OUT_KEYS)
        if k_in is None or k_out is None:
            raise InputError(file, where, entry, f"a request needs one of {list(_IN_KEYS)} and one of "
                             f"{list(_OUT_KEYS)} (and optionally one of {list(_TIME_KEYS)})")
        ins.append(_count(v_in, file, where, k_in))
        outs.append(_count(v_out, file, where, k_out))
        k_t, v_t = _first(entry, _TIME_KEYS)
        if k_t is not None:
            times.append(_time(v_t, file, where, k_t))
        elif times:
            raise InputError(file, where, entry, "either every request has an arrival time or none does")
    if times and len(times) != len(ins):
        raise InputError(file, f"line {entries[0][0]}", None, "either every request has an arrival time or none does")
    return (times or None), ins, outs


def _from_result(run: dict[str, Any], file: str, where: str) -> tuple[list[float] | None, list[int], list[int]]:
    ins, outs = run.get("input_lens"), run.get("output_lens")
    if not isinstance(ins, list) or not isinstance(outs, list) or len(ins) != len(outs) or not ins:
        raise InputError(file, f"{where}.input_lens".lstrip("."), None, "input_lens and output_lens must be lists of "
                         "the same length (save the result with --save-detailed / --output-details)")
    ins = [_count(v, file, f"{where}.input_lens[{i}]", "") for i, v in enumerate(ins)]
    # A request that generated nothing still took a slot; count it as one token.
    outs = [max(1, _count(v, file, f"{where}.output_lens[{i}]", "") if v else 1) for i, v in enumerate(outs)]
    starts = run.get("start_times")
    if isinstance(starts, list) and len(starts) == len(ins):
        times = [_time(v, file, f"{where}.start_times[{i}]", "") for i, v in enumerate(starts)]
        t0 = min(times)
        return [t - t0 for t in times], ins, outs
    return None, ins, outs
