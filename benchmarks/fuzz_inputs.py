"""Fuzz the `solve` command with mutated instances: no traceback, no exit code outside 0-3, no hang.

Each case takes a shipped instance, applies one to three seeded mutations (a value replaced by an
absurd one: null, negative, zero, huge, tiny, a string, a list, deep nesting; a key deleted or an
unknown one added; the file's text truncated or given a duplicate key or invalid UTF-8), writes it
and runs the command in-process, as `solve FILE --format json --time-limit 2 --deterministic-time
2`. A case fails when an exception escapes, the exit code is not 0-3, or it runs past
``--hang-s`` seconds. Prints the counts per exit code and every failure with its seed.

Usage: ``python benchmarks/fuzz_inputs.py [--count 10000] [--seed 0] [--hang-s 60]``.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import random
import sys
import tempfile
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from solver.runners.cli import main as cli_main  # noqa: E402

ABSURD = [None, 0, -1, 1, 2, 3, 7, 0.5, -0.0, 1e308, -1e308, 1e-320, 2**70, -(2**63), "x", "", "8", "true",
          True, False, [], {}, [1], [[1]], {"a": 1}, "nan", 4096, 4097, 10**9, 0.873197]


def _paths(node, prefix=()):
    yield prefix
    if len(prefix) > 12:  # below a nested mutation: not worth walking
        return
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _set(doc, path, value):
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


def _delete(doc, path):
    node = doc
    for p in path[:-1]:
        node = node[p]
    del node[path[-1]]


def mutate(doc: dict, rng: random.Random) -> tuple[dict | None, bytes | None]:
    """One to three mutations of an instance: a new document, or raw bytes for text-level damage."""
    doc = copy.deepcopy(doc)
    doc.pop("expect", None)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(doc) if p]
        kind = rng.random()
        path = rng.choice(paths) if paths else ()
        if kind < 0.55 and path:
            value = rng.choice(ABSURD)
            if rng.random() < 0.05:
                value = [value]
                for _ in range(rng.choice([10, 1000, 50_000])):
                    value = [value]
            _set(doc, path, value)
        elif kind < 0.7 and path:
            _delete(doc, path)
        elif kind < 0.8:
            target = doc
            for p in path[:-1] if path else ():
                target = target[p]
            if isinstance(target, dict):
                target[rng.choice(["typo", "nodez", "extra", "inpt_tokens"])] = rng.choice(ABSURD)
        elif kind < 0.9 and path and isinstance(doc.get(path[0]), int | float):
            _set(doc, path, doc[path[0]] * rng.choice([10, 1000, 1e6, -1, 0.001]))
        else:
            try:
                text = json.dumps(doc, default=str)
            except (RecursionError, ValueError):
                return None, ("[" * 100_000).encode()
            choice = rng.random()
            if choice < 0.3:
                return None, text[: rng.randint(0, len(text))].encode()
            if choice < 0.6:
                return None, (text[:-1] + ', "name": "again"}').encode()
            if choice < 0.8:
                return None, b"\xff\xfe" + text.encode()
            return None, ("\ufeff" + text).encode()
    return doc, None


def run_case(path: str, hang_s: float) -> tuple[int | str, float, str]:
    """(exit code or 'traceback', seconds, detail) of one command run in-process."""
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            cli_main.main(args=[path, "--format", "json", "--time-limit", "2", "--deterministic-time", "2"],
                          standalone_mode=False)
        code: int | str = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except Exception:  # noqa: BLE001 - the point: nothing may escape
        return "traceback", time.perf_counter() - t0, traceback.format_exc(limit=4)
    return code, time.perf_counter() - t0, err.getvalue()[-300:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hang-s", type=float, default=60.0)
    args = ap.parse_args(argv)
    bases = [json.loads(p.read_text()) for p in sorted((ROOT / "instances").glob("*.json"))]
    bases = [b for b in bases if isinstance(b.get("model"), str)]  # hf_config paths are relative
    rng = random.Random(args.seed)
    counts: dict[str, int] = {}
    failures = []
    slowest, slowest_case = 0.0, -1
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for case in range(args.count):
            doc, raw = mutate(rng.choice(bases), rng)
            path = Path(tmp) / f"case{case}.json"
            if raw is not None:
                path.write_bytes(raw)
            else:
                try:
                    path.write_text(json.dumps(doc))
                except (RecursionError, ValueError):
                    path.write_text("[" * 100_000)
            code, secs, detail = run_case(str(path), args.hang_s)
            if secs > slowest:
                slowest, slowest_case = secs, case
            counts[str(code)] = counts.get(str(code), 0) + 1
            if code == "traceback" or code not in (0, 1, 2, 3) or secs > args.hang_s:
                failures.append((case, code, round(secs, 1), detail))
            if (case + 1) % 500 == 0:
                print(f"  {case + 1} cases, {time.perf_counter() - t0:.0f} s: {counts}", flush=True)
    print(f"{args.count} mutated instances (seed {args.seed}) in {time.perf_counter() - t0:.0f} s; exit codes "
          f"{dict(sorted(counts.items()))}; slowest {slowest:.1f} s (case {slowest_case})")
    print(f"tracebacks: {counts.get('traceback', 0)}; exit codes outside 0-3: "
          f"{sum(n for c, n in counts.items() if c not in ('0', '1', '2', '3', 'traceback'))}; "
          f"past {args.hang_s:g} s: {sum(1 for f in failures if f[2] > args.hang_s)}")
    for case, code, secs, detail in failures[:20]:
        print(f"  case {case}: {code} in {secs} s: {detail.strip()[-400:]}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
