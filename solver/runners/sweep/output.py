"""A sweep's rows for people and machines: the plain-text table, CSV, the JSON document, progress.

The table is plain aligned text (no colour, no terminal width games), so it reads the same in a
terminal, a log or a file. The CSV has one column per varied path, then the result columns
(docs/sweep.md lists them).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from .pareto import FRONTIERS, SHORT_NAMES
from .spec import Axis

STATUSES = ("optimal", "feasible", "infeasible", "unknown", "error")
FRONTIER_TEXT = {
    "cost_vs_ttft_p99": "lowest $/h against lowest p99 TTFT (the linear model's TTFT without simulation)",
    "throughput_per_gpu_vs_tpot": "highest output tokens/s per GPU against lowest TPOT",
    "gpus_vs_rate": "fewest GPUs against highest request rate",
}
CSV_RESULT_COLUMNS = (
    "status", "gpu", "strategy", "tp", "pp", "dp", "ep", "attention_dp", "weights", "kv_cache", "max_num_seqs", "gpus_used",
    "cost_per_hour_usd", "cost_per_million_output_tokens_usd", "ttft_ms", "ttft_p99_ms", "tpot_ms",
    "tpot_p99_ms", "output_tokens_per_s", "output_tokens_per_s_per_gpu", "request_rate", "objective",
    "objective_unit", "solve_s", "pareto", "error",
)
_STRATEGY_FIELDS = ("tp", "pp", "dp", "ep", "attention_dp", "weights", "kv_cache", "max_num_seqs")


def counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Rows per status, every status listed (zero included)."""
    out = dict.fromkeys(STATUSES, 0)
    for row in rows:
        out[row["status"] if row["status"] in out else "error"] += 1
    return out


def strategy_text(strategy: dict[str, Any] | None) -> str:
    """``tp4 pp1 dp2 ep1 fp8/fp8`` (degrees, then weight / KV-cache precision); ``-`` without a plan."""
    if not strategy:
        return "-"
    adp = f" adp{strategy['attention_dp']}" if (strategy.get("attention_dp") or 1) > 1 else ""
    return (f"tp{strategy.get('tp')} pp{strategy.get('pp')} dp{strategy.get('dp')}{adp} ep{strategy.get('ep')} "
            f"{strategy.get('weights')}/{strategy.get('kv_cache')}")


def value_text(value: Any) -> str:
    """A point's value as the user would write it: text as is, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


TABLE_RESULT_HEADER = ("status", "gpu", "strategy", "GPUs", "$/h", "$/M tok", "TTFT ms", "TTFT p99",
                       "TPOT ms", "TPOT p99", "tok/s/GPU", "pareto")


def table_cells(row: dict[str, Any], axes: list[Axis]) -> list[str]:
    """One table line of a row, as strings."""
    return [
        str(row["index"]),
        *(value_text(row["point"].get(a.path)) for a in axes),
        row.get("status") or "-",
        row.get("gpu") or "-",
        strategy_text(row.get("strategy")),
        _num(row.get("gpus_used"), "d"),
        _num(row.get("cost_per_hour_usd"), ",.2f"),
        _num(row.get("cost_per_million_output_tokens_usd"), ",.3f"),
        _num(row.get("ttft_ms"), ",.1f"),
        _num(row.get("ttft_p99_ms"), ",.1f"),
        _num(row.get("tpot_ms"), ",.2f"),
        _num(row.get("tpot_p99_ms"), ",.2f"),
        _num(row.get("output_tokens_per_s_per_gpu"), ",.1f"),
        ",".join(SHORT_NAMES[n] for n in row.get("pareto") or []) or "-",
    ]


def render_table(rows: list[dict[str, Any]], axes: list[Axis], wall_s: float | None = None) -> str:
    """The plain-text table (numbers right-aligned), the counts, the Pareto legend, the errors."""
    header = ["#", *(a.path for a in axes), *TABLE_RESULT_HEADER]
    body = [table_cells(r, axes) for r in rows]
    widths = [max(len(line[c]) for line in [header, *body]) for c in range(len(header))]
    # Numbers (the index and the result figures) read best right-aligned; names left-aligned.
    numeric = {0} | {i for i, h in enumerate(header) if h in ("GPUs", "$/h", "$/M tok", "TTFT ms", "TTFT p99",
                                                              "TPOT ms", "TPOT p99", "tok/s/GPU")}

    def fmt(line: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(line, widths, strict=True))).rstrip()

    lines = [fmt(header), fmt(["-" * w for w in widths]), *(fmt(b) for b in body), ""]
    parts = ", ".join(f"{n} {s}" for s, n in counts(rows).items() if n)
    took = f" in {wall_s:.1f} s" if wall_s is not None else ""
    lines.append(f"{len(rows)} point(s){took}: {parts or 'none'}")
    lines.append("pareto: " + "; ".join(f"{SHORT_NAMES[n]} = {n} ({FRONTIER_TEXT[n]})" for n in FRONTIERS))
    for row in rows:
        if row.get("error"):
            lines.append(f"point {row['index']}: {row['error'].splitlines()[0]}")
    return "\n".join(lines) + "\n"


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | list | dict):
        return json.dumps(value)
    return repr(value) if isinstance(value, float) else str(value)


def csv_columns(axes: list[Axis]) -> list[str]:
    """The CSV header: ``index``, one column per varied path, then :data:`CSV_RESULT_COLUMNS`.

    A varied path spelled like a result column (``objective``) is written ``point.objective``.
    """
    vary = [f"point.{a.path}" if a.path in CSV_RESULT_COLUMNS or a.path == "index" else a.path for a in axes]
    return ["index", *vary, *CSV_RESULT_COLUMNS]


def render_csv(rows: list[dict[str, Any]], axes: list[Axis]) -> str:
    """The rows as CSV (empty cells for absent figures; lists, objects and booleans as JSON)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(csv_columns(axes))
    for row in rows:
        st = row.get("strategy") or {}
        results = {
            **{k: row.get(k) for k in CSV_RESULT_COLUMNS},
            **{k: st.get(k) for k in _STRATEGY_FIELDS},
            "strategy": strategy_text(row.get("strategy")) if row.get("strategy") else None,
            "pareto": ";".join(row.get("pareto") or []) or None,
            "error": (row.get("error") or "").splitlines()[0] if row.get("error") else None,
        }
        writer.writerow([_csv_value(v) for v in (row["index"], *(row["point"].get(a.path) for a in axes),
                                                 *(results[k] for k in CSV_RESULT_COLUMNS))])
    return buf.getvalue()


def sweep_document(rows: list[dict[str, Any]], axes: list[Axis], *, instance: str | None,
                   objective: str | None, settings: dict[str, Any], wall_s: float | None) -> dict[str, Any]:
    """The JSON document of ``--json FILE`` / ``--format json``: the sweep, its settings and the rows."""
    return {
        "schema_version": 1,
        "instance": instance,
        "sweep": {
            "vary": [{"path": a.path, "values": list(a.values), "source": a.source} for a in axes],
            "objective": objective,
            "points": len(rows),
        },
        "settings": settings,
        "frontiers": dict(FRONTIER_TEXT),
        "counts": counts(rows),
        "wall_s": None if wall_s is None else round(wall_s, 3),
        "rows": rows,
    }


class SweepProgress:
    """A rich progress bar on stderr while points finish; nothing at all when disabled."""

    def __init__(self, total: int, enabled: bool):
        self._bar = None
        if enabled and total:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.description}"), console=Console(stderr=True), transient=True)
            self._task = self._bar.add_task("", total=total)
            self._bar.start()

    def update(self, index: int, row: dict[str, Any]) -> None:
        """One more point finished."""
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=f"point {index}: {row.get('status')}")

    def close(self) -> None:
        """Remove the bar (it is transient: the table follows on stdout)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
