"""Batch reports: the plain-text table, Markdown for pull requests, JUnit XML and the JSON report."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from .run import BatchOptions
from .verdicts import FAILING, VERDICTS

_SHORT_UNITS = {"output tokens/s per GPU": "tok/s/GPU"}


def summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Count of rows per verdict (every verdict present, zero included)."""
    counts = {v: 0 for v in VERDICTS}
    for row in rows:
        counts[row["verdict"]] += 1
    return counts


def _strategy_text(row: dict[str, Any]) -> str:
    st = row.get("strategy")
    if not st:
        # An infeasible row shows what its proof blames instead.
        # Rule families (mem_cap[stage=2] -> mem_cap) keep the column narrow; the report has all.
        families = list(dict.fromkeys(r.split("[")[0] for r in row.get("conflict_rules") or []))
        return f"conflict: {', '.join(families)}" if families else "-"
    adp = f" adp{st['attention_dp']}" if st.get("attention_dp", 1) > 1 else ""
    return f"tp{st['tp']} pp{st['pp']} dp{st['dp']}{adp} ep{st['ep']} {st['weights']}/{st['kv_cache']}"


def _num(value: Any, fmt: str = ",.1f") -> str:
    return "-" if value is None else format(value, fmt)


def _objective_text(row: dict[str, Any]) -> str:
    if row.get("objective") is None:
        return "-"
    unit = row.get("objective_unit") or ""
    return f"{row['objective']:,.2f} {_SHORT_UNITS.get(unit, unit)}".strip()


TABLE_HEADER = (
    "instance",
    "status",
    "strategy",
    "objective",
    "TTFT ms",
    "TPOT ms",
    "tok/s/GPU",
    "time s",
    "verdict",
)


def table_cells(row: dict[str, Any]) -> list[str]:
    """One table line of a row, as strings."""
    m = row.get("metrics") or {}
    return [
        row["name"],
        row.get("status") or "-",
        _strategy_text(row),
        _objective_text(row),
        _num(m.get("ttft_ms")),
        _num(m.get("tpot_ms"), ",.2f"),
        _num(m.get("output_tokens_per_s_per_gpu")),
        _num(row.get("wall_s"), ".2f"),
        row["verdict"],
    ]


def _summary_line(rows: list[dict[str, Any]], wall_s: float) -> str:
    counts = summary(rows)
    parts = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    return f"{len(rows)} instance(s) in {wall_s:.1f} s: {parts or 'none'}"


def render_table(rows: list[dict[str, Any]], wall_s: float) -> str:
    """The plain-text table, then the reasons of every verdict other than pass."""
    lines = [list(TABLE_HEADER)] + [table_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(TABLE_HEADER))]
    numeric = {4, 5, 6, 7}
    out = []
    for n, line in enumerate(lines):
        out.append(
            "  ".join(
                c.rjust(w) if i in numeric else c.ljust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    out.append("")
    for row in rows:
        if row["verdict"] not in ("pass", "new"):
            out.append(f"{row['name']}: {row['verdict']}: {'; '.join(row['details'])}")
    fresh = [r["name"] for r in rows if r["verdict"] == "new"]
    if fresh:
        out.append(f"no expectation recorded (new): {', '.join(fresh)}")
    out.append(_summary_line(rows, wall_s))
    return "\n".join(out) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(rows: list[dict[str, Any]], wall_s: float) -> str:
    """A Markdown summary for a pull-request comment: counts, table, then the reasons."""
    counts = summary(rows)
    failing = sum(counts[v] for v in FAILING)
    head = "### Placement regression: " + ("failed" if failing else "passed")
    out = [
        head,
        "",
        _summary_line(rows, wall_s),
        "",
        "| " + " | ".join(TABLE_HEADER) + " |",
        "|"
        + "|".join("---:" if i in (4, 5, 6, 7) else "---" for i in range(len(TABLE_HEADER)))
        + "|",
    ]
    for row in rows:
        cells = table_cells(row)
        cells[-1] = f"**{cells[-1]}**" if row["verdict"] != "pass" else cells[-1]
        out.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    notes = [r for r in rows if r["verdict"] != "pass"]
    if notes:
        out += ["", "<details><summary>Details</summary>", ""]
        out += [
            f"- `{r['name']}` **{r['verdict']}**: {_md_escape('; '.join(r['details']))}"
            for r in notes
        ]
        out += ["", "</details>"]
    return "\n".join(out) + "\n"


def report_document(
    rows: list[dict[str, Any]], wall_s: float, opts: BatchOptions, jobs: int
) -> dict[str, Any]:
    """The JSON report: settings, counts and every row with its verdict and details."""
    return {
        "kind": "solve-batch-report",
        "version": 1,
        "settings": {
            "jobs": jobs,
            "workers": opts.workers,
            "seed": opts.seed,
            "time_limit_s": opts.time_limit,
            "deterministic_time": opts.deterministic_time,
        },
        "wall_s": round(wall_s, 3),
        "summary": summary(rows),
        "ok": not any(r["verdict"] in FAILING for r in rows),
        "rows": rows,
    }


def render_junit(rows: list[dict[str, Any]], wall_s: float) -> str:
    """JUnit XML: one testcase per instance; regressed is a failure, error an error."""
    counts = summary(rows)
    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="instances",
        tests=str(len(rows)),
        failures=str(counts["regressed"]),
        errors=str(counts["error"]),
        skipped="0",
        time=f"{wall_s:.3f}",
    )
    for row in rows:
        case = ET.SubElement(
            suite,
            "testcase",
            classname="instances",
            name=row["name"],
            time=f"{row.get('wall_s') or 0:.3f}",
        )
        text = "; ".join(row["details"])
        if row["verdict"] == "regressed":
            ET.SubElement(case, "failure", message=text[:500], type="regressed").text = text
        elif row["verdict"] == "error":
            ET.SubElement(
                case, "error", message=text[:500], type=row.get("error_kind") or "error"
            ).text = row.get("traceback") or text
        out = f"verdict: {row['verdict']}" + (f"; {text}" if text else "")
        ET.SubElement(case, "system-out").text = out
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )
