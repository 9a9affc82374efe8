"""Pictures of a plan and of a sweep (matplotlib; PNG or SVG by the file's suffix).

* :func:`plan_figure`: per-GPU memory by component (weights, KV cache, activations, overhead)
  stacked against the usable capacity and the device's memory, from any plan's JSON document;
  with a latency curve (:func:`solver.simulate.curve.latency_curve`), mean and p99 TTFT and TPOT
  against the request rate beside it, with the SLO targets and the workload's rate.
* :func:`sweep_figure`: Pareto frontiers of a sweep (cost per hour against p99 TTFT, tokens/s per
  GPU against TPOT) and, when the request rate varies, latency and GPUs used against the rate.

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas, never pyplot: no global
figure manager, no interactive backend, the user's backend untouched. Output is deterministic
(fixed size and dpi, matplotlib's default style, no dates or version stamps, a fixed SVG id salt),
so the same input gives byte-identical files.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib as mpl
import matplotlib.style
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from ..input.catalog import gpu_card
from ..input.errors import InputError
from ..simulate.curve import curve_requests

# Every figure is FIG_WIDTH_PX x FIG_HEIGHT_PX pixels as PNG, and the same size in points x 0.72
# as SVG (matplotlib writes SVG sizes in points, 72 per inch): 864pt x 504pt.
FIG_WIDTH_PX, FIG_HEIGHT_PX = 1200, 700
DPI = 100
FIG_SIZE_IN = (FIG_WIDTH_PX / DPI, FIG_HEIGHT_PX / DPI)
SVG_WIDTH_PT, SVG_HEIGHT_PT = FIG_SIZE_IN[0] * 72, FIG_SIZE_IN[1] * 72
FORMATS = {".png": "png", ".svg": "svg"}
# Above this many GPUs, one bar per group of identical GPUs of a stage: 64 bars still read.
MAX_BARS = 64
# Memory components, bottom to top, with their colours (Paul Tol's bright scheme: colour-blind safe).
COMPONENTS = (("weights", "weights", "#4477AA"), ("kv_cache", "KV cache", "#228833"),
              ("activations", "activations", "#CCBB44"), ("overhead", "overhead", "#BBBBBB"))
_EXTRA_COLOURS = ("#66CCEE", "#AA3377", "#EE6677")
SERIES_COLOURS = ("#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#000000", "#BBBBBB")
_FEASIBLE = ("optimal", "feasible")

# Set for every figure: the SVG id salt makes clip-path ids stable, and the rest only avoid
# depending on a user's matplotlibrc.
_RC = {"svg.hashsalt": "llm-placement-solver", "svg.fonttype": "path", "font.size": 9.0,
       "axes.titlesize": 10.0, "legend.fontsize": 8.0, "figure.titlesize": 11.0}
# rcParams are process-wide: one figure at a time, so concurrent threads never see each other's.
_LOCK = threading.Lock()


def plot_format(path: str | Path) -> str:
    """``"png"`` or ``"svg"`` from the file's suffix; anything else raises ValueError."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"the picture's format comes from its suffix: use .png or .svg "
                         f"(got {suffix or 'no suffix'!r})")
    return FORMATS[suffix]


@contextmanager
def _style() -> Iterator[None]:
    with _LOCK, mpl.rc_context():
        matplotlib.style.use("default")  # the backend is not a style setting: it stays the user's
        mpl.rcParams.update(_RC)
        yield


def _new_figure() -> Figure:
    fig = Figure(figsize=FIG_SIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path, fmt: str) -> Path:
    """Render in memory first, so a failed render never leaves half a file behind."""
    buf = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    fig.savefig(buf, format=fmt, dpi=DPI, metadata=metadata)
    path.write_bytes(buf.getvalue())
    return path


def _note(ax: Axes, text: str) -> None:
    """An empty panel that says why it is empty."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", wrap=True, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------------------- plan


def plan_figure(document: dict, path: str | Path, curve: list[dict] | None = None) -> Path:
    """Draw a plan: per-GPU memory by component against capacity, and latency against load.

    ``document`` is a plan's JSON document (:func:`solver.report.document`, ``solve --format
    json``); ``curve`` the points of :func:`solver.simulate.curve.latency_curve` (None or empty:
    the memory panel alone). The format comes from ``path``'s suffix (.png or .svg). Raises
    ValueError for another suffix, or for a document without GPUs ("no plan to draw").
    """
    path = Path(path)
    fmt = plot_format(path)
    gpus = document.get("gpus") or []
    if not gpus:
        raise ValueError(f"no plan to draw: the document has no GPUs (status {document.get('status')})")
    with _style():
        fig = _new_figure()
        if curve:
            grid = fig.add_gridspec(2, 2, width_ratios=(1.25, 1.0))
            _memory_panel(fig.add_subplot(grid[:, 0]), document)
            ax_ttft = fig.add_subplot(grid[0, 1])
            ax_tpot = fig.add_subplot(grid[1, 1], sharex=ax_ttft)
            _latency_panels(ax_ttft, ax_tpot, document, curve)
        else:
            _memory_panel(fig.add_subplot(), document)
        fig.suptitle(_plan_title(document))
        return _save(fig, path, fmt)


def _plan_title(doc: dict) -> str:
    st = doc.get("strategy") or {}
    used = (doc.get("metrics") or {}).get("gpus_used") or len(doc.get("gpus") or [])
    parts = [f"{doc.get('model', '?')} on {used} x {doc.get('gpu', '?')}"]
    if st:
        parts.append(f"tp={st.get('tp')} pp={st.get('pp')} dp={st.get('dp')} ep={st.get('ep')}, "
                     f"weights {st.get('weights')}, KV cache {st.get('kv_cache')}")
    parts.append(str(doc.get("status", "")))
    return " | ".join(p for p in parts if p)


def _device_GiB(name: Any) -> float | None:
    """A GPU's physical memory from its catalog card (an inline card dict carries its own)."""
    if isinstance(name, dict):
        v = name.get("memory_GiB")
        return float(v) if isinstance(v, int | float) else None
    if not isinstance(name, str):
        return None
    try:
        return float(gpu_card(name).memory_GiB)
    except (InputError, KeyError, ValueError, OSError):  # an inline card or a mix: no catalog entry
        return None


def _components(gpus: list[dict]) -> list[tuple[str, str, str]]:
    """The stacked components: the four known ones, then any other per-GPU figure (in name order)."""
    known = {k for k, _, _ in COMPONENTS}
    extra = sorted({k for g in gpus for k in g.get("memory_GiB", {}) if k not in known | {"total", "capacity"}})
    return [c for c in COMPONENTS if any(c[0] in g.get("memory_GiB", {}) for g in gpus)] + \
        [(k, k.replace("_", " "), _EXTRA_COLOURS[i % len(_EXTRA_COLOURS)]) for i, k in enumerate(extra)]


def _bars(gpus: list[dict]) -> tuple[list[dict], list[str], list[tuple[str, int, int]], list[Any]]:
    """Bars (memory dicts), their tick labels, groups (label, first bar, last bar) and GPU type per bar.

    Up to MAX_BARS GPUs: one bar per GPU in id order, grouped by replica and stage. More: one bar
    per stage and distinct memory, labelled with how many GPUs it stands for.
    """
    gpus = sorted(gpus, key=lambda g: g.get("id", 0))
    dp = len({(g.get("gpu"), g.get("group"), g.get("dp_rank", 0)) for g in gpus})
    mixed = len({g.get("gpu") for g in gpus}) > 1  # a mix of GPU types (capacity plans)
    if len(gpus) <= MAX_BARS:
        mems = [g.get("memory_GiB", {}) for g in gpus]
        few = len(gpus) <= 16
        labels = [f"GPU {g.get('id')}\ntp {g.get('tp_rank', 0)}" if few else str(g.get("id")) for g in gpus]
        groups: list[tuple[str, int, int]] = []
        for i, g in enumerate(gpus):
            name = (f"{g.get('gpu')} · " if mixed else "") + f"stage {g.get('stage', 0)}" + \
                (f" · replica {g.get('dp_rank', 0)}" if dp > 1 else "")
            if groups and groups[-1][0] == name and groups[-1][2] == i - 1:
                groups[-1] = (name, groups[-1][1], i)
            else:
                groups.append((name, i, i))
        return mems, labels, groups, [g.get("gpu") for g in gpus]
    seen: dict[tuple, list[dict]] = {}
    for g in gpus:
        mem = g.get("memory_GiB", {})
        seen.setdefault((str(g.get("gpu", "")), g.get("stage", 0), tuple(sorted(mem.items()))), []).append(g)
    keys = sorted(seen, key=lambda k: min(x.get("id", 0) for x in seen[k]))
    mems = [seen[k][0].get("memory_GiB", {}) for k in keys]
    labels = [(f"{k[0]}\n" if mixed else "") + f"stage {k[1]}\n{len(seen[k])} GPUs" for k in keys]
    return mems, labels, [], [seen[k][0].get("gpu") for k in keys]


def _memory_panel(ax: Axes, doc: dict) -> None:
    gpus = doc["gpus"]
    mems, labels, groups, kinds = _bars(gpus)
    xs = list(range(len(mems)))
    bottom = [0.0] * len(mems)
    for key, label, colour in _components(gpus):
        vals = [float(m.get(key) or 0.0) for m in mems]
        ax.bar(xs, vals, 0.72, bottom=bottom, label=label, color=colour, edgecolor="white", linewidth=0.5)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    totals = [float(m.get("total", b)) for m, b in zip(mems, bottom, strict=True)]
    caps = [m.get("capacity") for m in mems]
    top = max(totals)
    known_caps = sorted({float(c) for c in caps if c is not None})
    if len(known_caps) == 1:
        ax.axhline(known_caps[0], color="#CC3311", linewidth=1.6, label=f"usable {known_caps[0]:.1f} GiB")
    elif known_caps:  # GPUs of different kinds: each bar its own limit
        for x, c in zip(xs, caps, strict=True):
            if c is not None:
                ax.hlines(float(c), x - 0.45, x + 0.45, color="#CC3311", linewidth=1.6)
        ax.plot([], [], color="#CC3311", label="usable per GPU")
    # Each GPU's own card when the document names one per GPU (a mix of types), else the plan's.
    devices = [_device_GiB(kind if kind is not None else doc.get("gpu")) for kind in kinds]
    known_devices = sorted({d for d in devices if d})
    if len(known_devices) == 1 and all(devices):
        name = kinds[0] if kinds[0] is not None else doc.get("gpu")
        ax.axhline(known_devices[0], color="black", linestyle="--", linewidth=1.0,
                   label=f"device {known_devices[0]:.2f} GiB ({name})")
    elif known_devices:
        for x, d in zip(xs, devices, strict=True):
            if d:
                ax.hlines(d, x - 0.45, x + 0.45, color="black", linestyle="--", linewidth=1.0)
        ax.plot([], [], color="black", linestyle="--", linewidth=1.0, label="device memory per GPU")
    top = max([top, *known_devices, *known_caps])
    if len(xs) <= 16:  # totals over the bars while they fit; the title gives the peak
        for x, total, cap in zip(xs, totals, caps, strict=True):
            over = cap is not None and total > float(cap)
            ax.text(x, total + top * 0.01, f"{total:.1f}", ha="center", va="bottom", fontsize=7,
                    color="#CC3311" if over else "black", fontweight="bold" if over else "normal")
    ax.set_ylim(0, top * 1.14)
    half = max(len(xs) / 2, 2.0)  # a lone bar keeps a bar's width, not the whole panel's
    ax.set_xlim((len(xs) - 1) / 2 - half - 0.1, (len(xs) - 1) / 2 + half + 0.1)
    ax.set_xticks(xs, labels, fontsize=7 if len(xs) > 16 else 8)
    ax.set_ylabel("memory per GPU (GiB)")
    for _, _, last in groups[:-1]:
        ax.axvline(last + 0.5, color="#888888", linewidth=0.6, linestyle=":")
    if groups:
        sec = ax.secondary_xaxis("top")
        sec.set_xticks([(a + b) / 2 for _, a, b in groups], [g[0] for g in groups],
                       fontsize=7 if len(groups) > 8 else 8)
        sec.tick_params(length=0)
    # The fullest GPU relative to its own limit (with one kind of GPU: simply the largest total).
    peak = max(range(len(totals)), key=lambda i: totals[i] / float(caps[i]) if caps[i] else totals[i])
    cap_text = f" of {float(caps[peak]):.1f} usable" if caps[peak] else ""
    aggregated = "" if len(gpus) <= MAX_BARS else f"; {len(gpus)} GPUs, identical ones of a stage in one bar"
    ax.set_title(f"memory per GPU by component: peak {totals[peak]:.1f} GiB{cap_text}{aggregated}", loc="left")
    ax.legend(loc="upper left", ncols=3, framealpha=0.9)


def _slo_targets(doc: dict) -> dict[str, float]:
    """Latency targets from the document's requirements (``slo.ttft_ms`` -> 1500.0, ...)."""
    out = {}
    for r in doc.get("requirements") or []:
        rule, limit = r.get("rule", ""), r.get("limit")
        if rule.startswith(("slo.ttft", "slo.tpot")) and isinstance(limit, int | float):
            out[rule.removeprefix("slo.")] = float(limit)
    return out


def _workload_rate(doc: dict) -> float | None:
    for r in doc.get("requirements") or []:
        if r.get("rule") == "workload.request_rate" and isinstance(r.get("limit"), int | float):
            return float(r["limit"])
    return None


def _plain(v: float, _pos: Any = None) -> str:
    return f"{v:,.0f}" if v >= 1 else f"{v:g}"


def _leading_digit(v: float) -> int:
    return int(f"{v:e}"[0]) if v > 0 else 0


def _log_if_wide(ax: Axes, values: list[float]) -> None:
    """Log scale when a saturated tail would flatten the rest of the curve."""
    vals = [v for v in values if v and v > 0]
    if vals and max(vals) / min(vals) > 30:
        ax.set_yscale("log")
        # Plain numbers (150, 2,000) rather than 2 x 10^3: these axes are read in milliseconds.
        ax.yaxis.set_major_formatter(FuncFormatter(_plain))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: _plain(v) if _leading_digit(v) in (2, 5) else ""))


def _latency_panels(ax_ttft: Axes, ax_tpot: Axes, doc: dict, curve: list[dict]) -> None:
    pts = sorted(curve, key=lambda p: p["request_rate"])
    rates = [p["request_rate"] for p in pts]
    targets = _slo_targets(doc)
    own = _workload_rate(doc)
    saturated = [p["request_rate"] for p in pts if p.get("saturated")]
    for ax, kind, colour in ((ax_ttft, "ttft", "#4477AA"), (ax_tpot, "tpot", "#AA3377")):
        mean = [p.get(f"{kind}_ms_mean") for p in pts]
        p99 = [p.get(f"{kind}_ms_p99") for p in pts]
        ax.plot(rates, [math.nan if v is None else v for v in mean], marker="o", markersize=3.5, color=colour,
                label="mean")
        ax.plot(rates, [math.nan if v is None else v for v in p99], marker="s", markersize=3.5, color=colour,
                linestyle="--", label="p99")
        shown = [v for v in mean + p99 if v is not None]
        for name, limit in sorted(targets.items()):
            if name.startswith(kind):
                stat = name.removeprefix(kind).removesuffix("_ms").lstrip("_") or "mean"
                ax.axhline(limit, color="#CC3311", linewidth=1.2, linestyle="-" if stat == "mean" else "-.",
                           label=f"target {stat} {limit:g} ms")
                shown.append(limit)
        if own is not None:
            ax.axvline(own, color="black", linewidth=1.0, linestyle=":", label=f"workload {own:g} req/s")
        if saturated:
            ax.axvspan(min(saturated), max(rates), color="#EE6677", alpha=0.12, linewidth=0,
                       label="queue grows (saturated)")
        _log_if_wide(ax, shown)
        ax.set_ylabel(f"{kind.upper()} (ms)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="upper left", fontsize=7, framealpha=0.9)
    st = doc.get("strategy") or {}
    n = curve_requests(int(st.get("dp") or 1), int(st.get("max_num_seqs") or 1))
    ax_ttft.set_title(f"latency against load (simulated, {n} Poisson requests per point)", loc="left")
    ax_ttft.tick_params(labelbottom=False)
    ax_tpot.set_xlabel("request rate (req/s)")


# ---------------------------------------------------------------------------------------- sweep

RATE_KEY = "workload.request_rate"


def _num(row: dict, *keys: str) -> float | None:
    """The first of ``keys`` with a finite number in ``row`` (None when none has one)."""
    for k in keys:
        v = row.get(k)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


def _rate(row: dict) -> float | None:
    v = _num(row, "request_rate")
    if v is None:
        p = (row.get("point") or {}).get(RATE_KEY)
        v = float(p) if isinstance(p, int | float) and not isinstance(p, bool) else None
    return v


def _gpu_colours(rows: list[dict]) -> dict[str, str]:
    names = sorted({str(r.get("gpu") or "?") for r in rows})
    return {n: SERIES_COLOURS[i % len(SERIES_COLOURS)] for i, n in enumerate(names)}


def sweep_figure(rows: list[dict], path: str | Path, *, vary: list[str], slo: dict | None = None) -> Path:
    """Draw a sweep: its Pareto frontiers and, when the rate varies, latency and GPUs against the rate.

    ``rows`` are sweep rows (``index``, ``point``, ``status``, ``gpu``, ``cost_per_hour_usd``,
    ``ttft_ms``, ``ttft_p99_ms``, ``tpot_ms``, ``output_tokens_per_s_per_gpu``, ``gpus_used``,
    ``request_rate``, ``pareto``, ...); any number may be None. ``vary`` names the swept paths;
    ``slo`` holds the targets drawn on the rate panels (``ttft_ms``, ``tpot_ms``, ``ttft_p99_ms``,
    ``tpot_p99_ms``). A panel without data says so instead of failing. Raises ValueError for a
    suffix other than .png or .svg.
    """
    path = Path(path)
    fmt = plot_format(path)
    slo = slo or {}
    feasible = [r for r in rows if r.get("status") in _FEASIBLE]
    colours = _gpu_colours(rows)  # over every row, so a GPU keeps its colour in every panel
    with_rate = RATE_KEY in vary
    with _style():
        fig = _new_figure()
        axes = fig.subplots(2, 2) if with_rate else fig.subplots(1, 2)
        flat = list(axes.flat)
        _frontier_panel(flat[0], feasible, colours, x_keys=("ttft_p99_ms", "ttft_ms"), y_key="cost_per_hour_usd",
                        frontier="cost_vs_ttft_p99", xlabel="p99 TTFT (ms; mean where not simulated)",
                        ylabel="cost (USD per hour)", title="cost against p99 TTFT",
                        empty="no feasible point with a price and a TTFT: the cost frontier needs GPU prices")
        _frontier_panel(flat[1], feasible, colours, x_keys=("tpot_ms", "tpot_p99_ms"),
                        y_key="output_tokens_per_s_per_gpu", frontier="throughput_per_gpu_vs_tpot",
                        xlabel="TPOT (ms)", ylabel="output tokens/s per GPU", title="throughput per GPU against TPOT",
                        empty="no feasible point with a throughput and a TPOT")
        if with_rate:
            lines = _series_colours(rows, vary, colours)
            _rate_latency_panel(flat[2], rows, vary, slo, lines)
            _rate_gpus_panel(flat[3], rows, vary, lines)
        fig.suptitle(f"sweep over {', '.join(vary) or 'nothing'}: {len(feasible)} of {len(rows)} points feasible")
        return _save(fig, path, fmt)


def _frontier_panel(ax: Axes, rows: list[dict], colours: dict[str, str], *, x_keys: tuple[str, ...], y_key: str,
                    frontier: str, xlabel: str, ylabel: str, title: str, empty: str) -> None:
    pts = [(x, y, r) for r in rows if (x := _num(r, *x_keys)) is not None and (y := _num(r, y_key)) is not None]
    ax.set_title(title, loc="left")
    if not pts:
        _note(ax, empty)
        return
    for gpu in sorted(colours):
        mine = [(x, y) for x, y, r in pts if str(r.get("gpu") or "?") == gpu]
        if mine:
            ax.scatter([p[0] for p in mine], [p[1] for p in mine], s=16, color=colours[gpu], alpha=0.45,
                       linewidths=0, label=gpu)
    front = sorted((x, y) for x, y, r in pts if frontier in (r.get("pareto") or []))
    if front:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="black", linewidth=1.2,
                label=f"Pareto frontier ({len(front)})")
        ax.scatter([p[0] for p in front], [p[1] for p in front], s=34, facecolors="none", edgecolors="black",
                   linewidths=1.2, zorder=3)
    else:
        ax.text(0.98, 0.02, "no point marked on this frontier", transform=ax.transAxes, ha="right", va="bottom",
                color="#555555", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=7, framealpha=0.9)


def _series(rows: list[dict], vary: list[str]) -> dict[str, list[dict]]:
    """Rows grouped by GPU type and every varied value except the rate: one line per group."""
    others = [k for k in vary if k != RATE_KEY]
    out: dict[str, list[dict]] = {}
    for r in rows:
        point = r.get("point") or {}
        gpu = str(r.get("gpu") or "?")
        # A varied GPU type is already the series' first word.
        parts = [gpu] + [f"{k.rsplit('.', 1)[-1]}={point.get(k)}" for k in others if str(point.get(k)) != gpu]
        out.setdefault(" · ".join(parts), []).append(r)
    return dict(sorted(out.items()))


def _series_colours(rows: list[dict], vary: list[str], colours: dict[str, str]) -> dict[str, str]:
    """One colour per series over all rows, so both rate panels agree: the GPU's own when the GPU
    type alone names the series, else the palette in series order."""
    names = list(_series([r for r in rows if _rate(r) is not None], vary))
    if all(" · " not in n for n in names):
        return {n: colours.get(n, SERIES_COLOURS[i % len(SERIES_COLOURS)]) for i, n in enumerate(names)}
    return {n: SERIES_COLOURS[i % len(SERIES_COLOURS)] for i, n in enumerate(names)}


def _rate_latency_panel(ax: Axes, rows: list[dict], vary: list[str], slo: dict, lines: dict[str, str]) -> None:
    ax.set_title("latency against request rate (solid: p99 TTFT, dashed: TPOT)", loc="left")
    feasible = [r for r in rows if r.get("status") in _FEASIBLE and _rate(r) is not None]
    if not feasible:
        _note(ax, "no feasible point at any rate: nothing to draw")
        return
    tpot_ax = ax.twinx()
    ttft_vals, tpot_vals = [], []
    for name, group in _series(feasible, vary).items():
        colour = lines[name]
        ttft = sorted((_rate(r), v) for r in group if (v := _num(r, "ttft_p99_ms", "ttft_ms")) is not None)
        tpot = sorted((_rate(r), v) for r in group if (v := _num(r, "tpot_p99_ms", "tpot_ms")) is not None)
        if ttft:
            ax.plot(*zip(*ttft, strict=True), marker="o", markersize=3, color=colour, label=name)
            ttft_vals += [v for _, v in ttft]
        if tpot:
            tpot_ax.plot(*zip(*tpot, strict=True), marker="s", markersize=3, color=colour, linestyle="--")
            tpot_vals += [v for _, v in tpot]
    for key, target_ax, style, vals in (("ttft_ms", ax, "-", ttft_vals), ("ttft_p99_ms", ax, "-.", ttft_vals),
                                        ("tpot_ms", tpot_ax, ":", tpot_vals),
                                        ("tpot_p99_ms", tpot_ax, (0, (5, 1, 1, 1)), tpot_vals)):
        limit = slo.get(key)
        if isinstance(limit, int | float) and limit > 0:
            target_ax.axhline(limit, color="#CC3311", linestyle=style, linewidth=1.1)
            target_ax.plot([], [], color="#CC3311", linestyle=style, label=f"target {key} {limit:g}")
            vals.append(float(limit))
    _log_if_wide(ax, ttft_vals)
    _log_if_wide(tpot_ax, tpot_vals)
    ax.set_xlabel("request rate (req/s)")
    ax.set_ylabel("p99 TTFT (ms; mean where not simulated)")
    tpot_ax.set_ylabel("p99 TPOT (ms; mean where not simulated)")
    ax.grid(True, alpha=0.3)
    handles = ax.get_legend_handles_labels()
    more = tpot_ax.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="best", fontsize=7, framealpha=0.9)


def _rate_gpus_panel(ax: Axes, rows: list[dict], vary: list[str], lines: dict[str, str]) -> None:
    ax.set_title("GPUs used against request rate (x: no feasible plan)", loc="left")
    rated = [r for r in rows if _rate(r) is not None]
    if not any(r.get("status") in _FEASIBLE and _num(r, "gpus_used") is not None for r in rated):
        _note(ax, "no feasible point at any rate: nothing to draw")
        return
    most = max(_num(r, "gpus_used") or 0.0 for r in rated)
    for k, (name, group) in enumerate(_series(rated, vary).items()):
        colour = lines[name]
        pts = sorted((_rate(r), n) for r in group
                     if r.get("status") in _FEASIBLE and (n := _num(r, "gpus_used")) is not None)
        if pts:
            ax.step(*zip(*pts, strict=True), where="post", marker="o", markersize=3, color=colour, label=name)
        # Each series' infeasible rates along the axis, in its colour and its own row (so series
        # failing at the same rate stay visible): where that series runs out.
        bad = sorted({_rate(r) for r in group if r.get("status") not in _FEASIBLE})
        if bad:
            ax.scatter(bad, [most * 0.035 * k] * len(bad), marker="x", color=colour, s=30, clip_on=False,
                       zorder=3, label=None if pts else f"{name} (no feasible point)")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("request rate (req/s)")
    ax.set_ylabel("GPUs used")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=7, framealpha=0.9)
