"""One self-contained HTML page of a plan: summary, metrics, memory, requirements, launch, proof, plots.

The page carries everything inline (CSS in a ``<style>`` element, pictures as base64 ``data:``
URIs), so it can be mailed, attached to a ticket or opened offline and always looks the same; it
loads nothing from anywhere. Every value from the document is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1240px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h3 { font-size: 1em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #1a7f37; font-weight: 600; } .fail { color: #cf222e; font-weight: 600; }
.status { display: inline-block; padding: 0.1em 0.6em; border-radius: 0.3em; background: #eee; font-weight: 600; }
.status.ok { background: #dafbe1; } .status.bad { background: #ffebe9; }
pre { background: #f6f8fa; padding: 0.7em; overflow-x: auto; font-size: 0.85em; white-space: pre-wrap; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; } .muted { color: #666; }
"""

_MIME = {".png": "image/png", ".svg": "image/svg+xml"}


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _fmt(x: Any) -> str:
    if isinstance(x, bool) or x is None:
        return "-" if x is None else str(x).lower()
    if isinstance(x, float):
        return f"{x:,.1f}" if abs(x) >= 100 else f"{x:.4g}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            if isinstance(cell, tuple):  # (html already escaped, css class)
                cells.append(f'<td class="{cell[1]}">{cell[0]}</td>')
            else:
                cls = ' class="num"' if i in numeric else ""
                cells.append(f"<td{cls}>{_e(_fmt(cell))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(name: str, path: Path) -> str:
    """A picture as a data: URI, so the page needs no file beside it."""
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"{path}: a picture for the HTML report must be .png or .svg")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{_e(name)}" src="data:{mime};base64,{data}">'
            f"<figcaption>{_e(name)}</figcaption></figure>")


def _summary(doc: dict[str, Any]) -> str:
    status = str(doc.get("status", "unknown"))
    cls = "ok" if status in ("optimal", "feasible") else "bad"
    sv = doc.get("solver") or {}
    mode = "verification of a proposed strategy" if sv.get("mode") == "verify" else "plan"
    st = doc.get("strategy")
    rows = [["instance", doc.get("instance")], ["file", doc.get("file")], ["model", doc.get("model")],
            ["GPU", f"{doc.get('cluster_gpus')} x {doc.get('gpu')} in the cluster"],
            ["objective", doc.get("objective_name")]]
    if st:
        rows.append(["strategy", f"tp={st.get('tp')} pp={st.get('pp')} dp={st.get('dp')} ep={st.get('ep')}, "
                                 f"weights {st.get('weights')}, KV cache {st.get('kv_cache')}, "
                                 f"max_num_seqs {st.get('max_num_seqs')} per replica"])
    stages = doc.get("stages") or []
    if stages:
        rows.append(["layers per stage", " + ".join(str(s["layers"][1] - s["layers"][0] + 1) for s in stages)])
    if sv.get("time_s") is not None:
        solved = f"{sv['time_s']:.2f} s"
        if sv.get("objective") is not None:
            solved += f"; objective {_fmt(sv['objective'])} {sv.get('objective_unit', '')}"
        if sv.get("gap") is not None:
            solved += f", gap {sv['gap']:.2%}"
        rows.append(["solver", solved])
    price = doc.get("price")
    if isinstance(price, dict) and price.get("usd_per_gpu_hour") is not None:
        rows.append(["price", f"${price['usd_per_gpu_hour']:g} per GPU-hour ({price.get('kind', '')}, from "
                              f"{price.get('origin', '')}{', ' + str(price['date']) if price.get('date') else ''})"])
    return (f'<p><span class="status {cls}">{_e(status.upper())}</span> <span class="muted">{_e(mode)}</span></p>'
            + _table(["", ""], rows))


_METRIC_NAMES = {
    "ttft_ms": "TTFT (ms, cost model)", "tpot_ms": "TPOT (ms, cost model)", "decode_step_ms": "decode step (ms)",
    "output_tokens_per_s": "output tokens/s served", "capacity_output_tokens_per_s": "output tokens/s capacity",
    "output_tokens_per_s_per_gpu": "output tokens/s per GPU (capacity)",
    "served_output_tokens_per_s_per_gpu": "output tokens/s per GPU (served)", "max_concurrency": "max concurrency",
    "kv_capacity_sequences": "KV cache holds (sequences)", "max_request_rate": "sustainable req/s at the batch",
    "batch_per_replica": "operating batch per replica", "gpus_used": "GPUs used",
    "cost_per_hour_usd": "cost (USD per hour)", "cost_per_million_output_tokens_usd": "USD per million output tokens",
}


def _metrics(doc: dict[str, Any]) -> str:
    m = doc.get("metrics") or {}
    out = ""
    if m:
        out += "<h2>Metrics</h2>" + _table(["metric", "value"],
                                           [[_METRIC_NAMES.get(k, k), v] for k, v in m.items()], {1})
    sim = doc.get("simulated")
    if sim:
        rows = [[name, *(sim.get(key, {}).get(s) for s in ("mean", "p50", "p90", "p99"))]
                for name, key in (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("ITL", "itl_ms"), ("end to end", "e2e_ms"))]
        out += (f"<h2>Simulated latency (ms)</h2><p class=\"muted\">{_e(sim.get('arrivals'))}, {_e(sim.get('requests'))} "
                f"requests, seed {_e(sim.get('seed'))}, {_e(sim.get('engine'))} scheduler; "
                f"{_e(_fmt(sim.get('output_tokens_per_s')))} output tokens/s, mean batch "
                f"{_e(_fmt(sim.get('mean_batch')))}</p>"
                + _table(["", "mean", "p50", "p90", "p99"], rows, {1, 2, 3, 4}))
    return out


def _memory(doc: dict[str, Any]) -> str:
    gpus = doc.get("gpus") or []
    if not gpus:
        return ""
    keys = ["weights", "kv_cache", "activations", "overhead", "total", "capacity"]
    extra = sorted({k for g in gpus for k in g.get("memory_GiB", {}) if k not in keys})
    keys = keys[:4] + extra + keys[4:]
    rows = []
    for g in gpus:
        mem = g.get("memory_GiB", {})
        over = mem.get("total") is not None and mem.get("capacity") is not None and mem["total"] > mem["capacity"]
        fit = ("over", "fail") if over else ("fits", "pass")
        rows.append([g.get("id"), g.get("node"), g.get("stage"), g.get("tp_rank"), g.get("dp_rank"),
                     *(mem.get(k) for k in keys), fit])
    first = 5
    return ("<h2>Memory per GPU (GiB)</h2>"
            + _table(["GPU", "node", "stage", "tp rank", "dp rank", *(k.replace("_", " ") for k in keys), ""],
                     rows, set(range(first, first + len(keys)))))


def _requirements(doc: dict[str, Any]) -> str:
    reqs = doc.get("requirements") or []
    if not reqs:
        return ""
    rows = [[r.get("rule"), r.get("statement"), r.get("value"), r.get("limit"), r.get("unit"), r.get("slack"),
             ("pass", "pass") if r.get("passed") else ("FAIL", "fail")] for r in reqs]
    return "<h2>Requirements</h2>" + _table(["rule", "statement", "value", "limit", "unit", "slack", ""], rows,
                                            {2, 3, 5})


def _commands(commands: dict[str, Any]) -> str:
    parts = []
    for key, value in commands.items():
        if key == "env" and value:
            parts.append("<p><b>environment</b></p><pre>" + _e("\n".join(f"{k}={v}" for k, v in value.items()))
                         + "</pre>")
        elif key == "notes" and value:
            parts.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in value) + "</ul>")
        elif key == "versions" and isinstance(value, dict):
            parts.append(f"<p class=\"muted\">for {_e(', '.join(str(v) for v in value.values()))}</p>")
        elif isinstance(value, str) and key != "engine":
            parts.append(f"<p><b>{_e(key)}</b></p><pre>{_e(value)}</pre>")
    return "".join(parts)


def _launch(doc: dict[str, Any]) -> str:
    """One plan's commands, or (a mix of GPU types) each group's."""
    launch = doc.get("launch")
    if not launch:
        return ""
    if isinstance(launch, dict):
        return "<h2>Launch</h2>" + _commands(launch)
    parts = ["<h2>Launch</h2>"]
    for item in launch:
        if isinstance(item, dict):
            parts.append(f"<h3>{_e(item.get('replicas'))} x {_e(item.get('gpu'))}</h3>"
                         + _commands(item.get("commands") or {}))
    return "".join(parts)


def _capacity(doc: dict[str, Any]) -> str:
    """A capacity plan's GPU types on offer, its choice, and the groups of a mix."""
    cap = doc.get("capacity")
    if not isinstance(cap, dict):
        return ""
    parts = ["<h2>Capacity plan</h2>"]
    choice = cap.get("choice") or {}
    if choice.get("statement"):
        parts.append(f"<p>{_e(choice['statement'])}</p>")
    offers = cap.get("offers") or []
    if offers:
        parts.append(_table(["GPU", "available", "USD per GPU-hour", "status", "GPUs used", "USD per hour",
                             "USD per M tokens", "TTFT ms", "TPOT ms"],
                            [[o.get("gpu"), o.get("available_gpus"), (o.get("price") or {}).get("usd_per_gpu_hour"),
                              o.get("status"), o.get("gpus_used"), o.get("cost_per_hour_usd"),
                              o.get("cost_per_million_output_tokens_usd"), o.get("ttft_ms"), o.get("tpot_ms")]
                             for o in offers], {1, 2, 4, 5, 6, 7, 8}))
    groups = (cap.get("mix") or {}).get("groups") or []
    if groups:
        parts.append(_table(["GPU", "replicas", "GPUs", "req/s", "strategy", "USD per hour"],
                            [[g.get("gpu"), g.get("replicas"), g.get("gpus"), g.get("request_rate"),
                              " ".join(f"{k}={v}" for k, v in (g.get("strategy") or {}).items()),
                              g.get("cost_per_hour_usd")] for g in groups], {1, 2, 3, 5}))
    return "".join(parts)


def _proof(doc: dict[str, Any]) -> str:
    proof = doc.get("proof")
    if not proof:
        return ""
    parts = ["<h2>Why it is infeasible</h2>"]
    if proof.get("summary"):
        parts.append(f"<p>{_e(proof['summary'])}</p>")
    for i, conflict in enumerate(proof.get("conflicts") or [{"members": proof.get("conflict") or []}]):
        members = conflict.get("members") or []
        if not members:
            continue
        parts.append(f"<p><b>conflict {i + 1}</b>{' (minimal)' if conflict.get('minimal') else ''}</p>")
        parts.append(_table(["rule", "statement", "numbers"],
                            [[m.get("rule"), m.get("statement"), json.dumps(m.get("numbers") or {}, default=str)]
                             for m in members]))
    bounds = proof.get("lower_bounds")
    if bounds:
        parts.append("<p><b>bounds</b></p>" + _table(["", ""], [[k, json.dumps(v, default=str) if isinstance(
            v, dict | list) else v] for k, v in bounds.items()]))
    repairs = proof.get("repairs") or []
    if repairs:
        parts.append("<p><b>cheapest changes that make it feasible</b></p>")
        parts.append(_table(["change", "result", "verified"],
                            [[r.get("change"), r.get("result"), r.get("verified")] for r in repairs]))
    return "".join(parts)


def html_report(document: dict, figures: dict[str, Path] | None, path) -> Path:
    """Write one self-contained HTML page of ``document`` (a plan, a verdict or a proof) to ``path``.

    ``figures`` maps a caption to a .png or .svg file (e.g. from
    :func:`solver.report.plots.plan_figure`), embedded as a base64 ``data:`` URI; the page loads
    nothing else. Sections: summary, pictures, the GPU types of a capacity plan, metrics, simulated
    latency, per-GPU memory, requirements with slack, launch commands, the proof when infeasible,
    and the whole JSON document (folded). Returns the path written.
    """
    path = Path(path)
    doc = document
    title = f"{doc.get('instance', 'plan')}: {doc.get('model', '')} on {doc.get('gpu', '')}"
    pictures = "".join(_figure(name, Path(p)) for name, p in sorted((figures or {}).items()))
    body = [f"<h1>{_e(title)}</h1>", _summary(doc)]
    if pictures:
        body.append("<h2>Pictures</h2>" + pictures)
    body += [_capacity(doc), _metrics(doc), _memory(doc), _requirements(doc), _launch(doc), _proof(doc),
             "<h2>JSON document</h2><details><summary>the document <code>solve --format json</code> prints</summary>"
             f"<pre>{_e(json.dumps(doc, indent=2, default=str))}</pre></details>"]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_e(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(b for b in body if b) + "\n</body></html>\n")
    path.write_text(page, encoding="utf-8")
    return path
