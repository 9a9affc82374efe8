"""Pictures: plan and sweep figures (PNG / SVG of the stated size, byte-identical), the latency curve,
the HTML report, and ``solve --plot`` / ``--html``."""

from __future__ import annotations

import copy
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

import matplotlib
import pytest

from solver import load_instance, plan
from solver.report.html import html_report
from solver.report.plots import (
    FIG_HEIGHT_PX,
    FIG_WIDTH_PX,
    SVG_HEIGHT_PT,
    SVG_WIDTH_PT,
    plan_figure,
    sweep_figure,
)
from solver.simulate.curve import _engine_cap, capacity_request_rate, latency_curve
from solver.verify import engine_max_num_seqs
from tests.conftest import INSTANCES, ROOT
from tests.conftest import flagship as flagship_instance

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROW_KEYS = ("index", "point", "status", "error", "gpu", "strategy", "gpus_used", "cost_per_hour_usd",
            "cost_per_million_output_tokens_usd", "ttft_ms", "tpot_ms", "ttft_p99_ms", "tpot_p99_ms",
            "output_tokens_per_s", "output_tokens_per_s_per_gpu", "request_rate", "objective", "objective_unit",
            "solve_s", "pareto")


@pytest.fixture(scope="module")
def flagship():
    problem = load_instance(INSTANCES / "llama70b_h100.json")
    report = plan(problem)
    curve = latency_curve(problem, report.evaluation.placement)
    return problem, report, curve


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, the first after the signature."""
    assert data[:8] == PNG_MAGIC
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", data[16:24])


def svg_size(path) -> tuple[str, str]:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    return root.get("width"), root.get("height")


def test_plan_png_has_the_stated_size(flagship, tmp_path):
    _, report, curve = flagship
    out = plan_figure(report.document, tmp_path / "plan.png", curve)
    assert png_size(out.read_bytes()) == (FIG_WIDTH_PX, FIG_HEIGHT_PX) == (1200, 700)


def test_plan_svg_parses_with_the_stated_size(flagship, tmp_path):
    _, report, curve = flagship
    out = plan_figure(report.document, tmp_path / "plan.svg", curve)
    assert svg_size(out) == (f"{SVG_WIDTH_PT:g}pt", f"{SVG_HEIGHT_PT:g}pt") == ("864pt", "504pt")


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_same_input_gives_byte_identical_files(flagship, tmp_path, suffix):
    _, report, curve = flagship
    a = plan_figure(report.document, tmp_path / f"a{suffix}", curve).read_bytes()
    b = plan_figure(copy.deepcopy(report.document), tmp_path / f"b{suffix}", list(curve)).read_bytes()
    assert a == b
    rows = _sweep_rows()
    c = sweep_figure(rows, tmp_path / f"c{suffix}", vary=["cluster.gpu", "workload.request_rate"]).read_bytes()
    d = sweep_figure(rows, tmp_path / f"d{suffix}", vary=["cluster.gpu", "workload.request_rate"]).read_bytes()
    assert c == d


def test_plotting_leaves_the_users_matplotlib_settings_alone(flagship, tmp_path):
    _, report, _ = flagship
    backend, size = matplotlib.get_backend(), matplotlib.rcParams["font.size"]
    matplotlib.rcParams["font.size"] = 13.0
    try:
        plan_figure(report.document, tmp_path / "p.png")
        assert matplotlib.get_backend() == backend
        assert matplotlib.rcParams["font.size"] == 13.0
    finally:
        matplotlib.rcParams["font.size"] = size


def test_threads_drawing_at_once_get_the_same_bytes(flagship, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    _, report, curve = flagship
    alone = plan_figure(report.document, tmp_path / "alone.png", curve).read_bytes()
    with ThreadPoolExecutor(3) as pool:
        outs = list(pool.map(lambda i: plan_figure(report.document, tmp_path / f"t{i}.png", curve), range(3)))
    assert all(p.read_bytes() == alone for p in outs)


def test_bad_suffix_and_nothing_to_draw_raise_value_error(flagship, tmp_path):
    _, report, _ = flagship
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        plan_figure(report.document, tmp_path / "plan.jpg")
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        sweep_figure([], tmp_path / "sweep", vary=[])
    empty = {**report.document, "status": "infeasible", "gpus": [], "strategy": None}
    with pytest.raises(ValueError, match="no plan to draw"):
        plan_figure(empty, tmp_path / "plan.png")
    assert not list(tmp_path.iterdir())


def test_many_gpus_aggregate_and_mixed_capacities_draw(flagship, tmp_path):
    _, report, _ = flagship
    doc = copy.deepcopy(report.document)
    gpus = []
    for k in range(12):  # 96 GPUs: one bar per stage and distinct memory
        for g in report.document["gpus"]:
            gpus.append({**copy.deepcopy(g), "id": g["id"] + 8 * k, "dp_rank": g["dp_rank"] + 2 * k})
    gpus[0]["memory_GiB"]["capacity"] = 40.0  # a different card: its own limit line
    doc["gpus"], doc["gpu"] = gpus, "not-in-the-catalog"
    assert png_size(plan_figure(doc, tmp_path / "big.png").read_bytes()) == (FIG_WIDTH_PX, FIG_HEIGHT_PX)


def _row(**kw):
    row = dict.fromkeys(ROW_KEYS)
    row["pareto"] = []
    row.update(kw)
    return row


def _sweep_rows() -> list[dict]:
    rows = []
    for gpu, price in (("h100-sxm-80gb", 3.0), ("a100-sxm-80gb", None)):  # a100: no price known
        for rate in (1, 2, 4, 8, 16):
            i = len(rows)
            point = {"cluster.gpu": gpu, "workload.request_rate": rate}
            if rate == 16 and gpu == "a100-sxm-80gb":
                rows.append(_row(index=i, point=point, status="infeasible", error="no plan", gpu=gpu))
                continue
            n = max(1, rate // 2)
            rows.append(_row(index=i, point=point, status="optimal", gpu=gpu, gpus_used=n,
                             cost_per_hour_usd=None if price is None else price * n, ttft_ms=150.0 + rate,
                             ttft_p99_ms=None if gpu == "a100-sxm-80gb" else 300.0 + 20 * rate, tpot_ms=20.0 + rate,
                             tpot_p99_ms=25.0 + rate, output_tokens_per_s_per_gpu=500.0 / n, request_rate=rate,
                             pareto=["cost_vs_ttft_p99", "throughput_per_gpu_vs_tpot"] if rate in (1, 2) else []))
    return rows


@pytest.mark.parametrize("vary", [["cluster.gpu", "workload.request_rate"], ["cluster.gpu"], []])
def test_sweep_figure_draws_partial_and_infeasible_rows(tmp_path, vary):
    slo = {"ttft_ms": 1500, "tpot_ms": 50, "ttft_p99_ms": 800, "tpot_p99_ms": None}
    out = sweep_figure(_sweep_rows(), tmp_path / "s.png", vary=vary, slo=slo)
    assert png_size(out.read_bytes()) == (FIG_WIDTH_PX, FIG_HEIGHT_PX)


def test_sweep_figure_never_fails_on_all_infeasible_or_no_rows(tmp_path):
    dead = [_row(index=i, point={"workload.request_rate": r}, status="infeasible", error="no plan")
            for i, r in enumerate((1, 2, 4))]
    dead.append(_row(index=3, point={}, status="error", error="bad input", request_rate=float("nan")))
    for name, rows in (("dead.svg", dead), ("none.svg", [])):
        out = sweep_figure(rows, tmp_path / name, vary=["workload.request_rate"], slo=None)
        assert svg_size(out) == ("864pt", "504pt")


def test_latency_curve_rises_past_saturation(flagship):
    problem, report, _ = flagship
    placement = report.evaluation.placement
    top = capacity_request_rate(problem, placement)
    rates = [top * f for f in (0.5, 1.0, 1.1, 1.25, 1.5, 1.75, 2.0)]
    curve = latency_curve(problem, placement, rates)
    assert [p["request_rate"] for p in curve] == sorted(round(r, 6) for r in rates)
    saturated = [p for p in curve if p["saturated"]]
    assert len(saturated) >= 3, curve  # the property below must have something to hold on
    assert not curve[0]["saturated"]
    p99 = [p["ttft_ms_p99"] for p in saturated]
    assert all(a <= b for a, b in zip(p99, p99[1:], strict=False)), p99
    assert saturated[-1]["ttft_ms_p99"] > 5 * curve[0]["ttft_ms_p99"]  # the queue really grows


def test_default_curve_includes_the_workloads_rate(flagship):
    problem, _, curve = flagship
    assert len(curve) == 11
    assert any(p["request_rate"] == problem.instance.workload.request_rate for p in curve)
    assert set(curve[0]) == {"request_rate", "ttft_ms_mean", "ttft_ms_p99", "tpot_ms_mean", "tpot_ms_p99", "saturated"}
    for p in curve:
        assert p["ttft_ms_p99"] >= p["ttft_ms_mean"] > 0 and p["tpot_ms_p99"] >= p["tpot_ms_mean"] > 0


def test_curve_is_empty_without_a_request_rate(flagship):
    _, report, _ = flagship
    for load in ({"concurrency": 32}, {"offline": True}):
        data = flagship_instance()
        data["workload"] = {k: v for k, v in data["workload"].items() if k != "request_rate"} | load
        assert latency_curve(load_instance(data), report.evaluation.placement) == []


@pytest.mark.parametrize("name", ["llama70b_h100.json", "llama8b_4_l4.json", "llama70b_h100_tp2pp4.json"])
def test_curve_uses_the_engines_batch_cap(name):
    """The curve's copy of the engine's max_num_seqs rule agrees with the verifier's."""
    problem = load_instance(INSTANCES / name)
    p = plan(problem).evaluation.placement
    assert _engine_cap(problem, p) == engine_max_num_seqs(problem, p.cfg, p.layers_per_stage, p.batch)


def test_html_report_is_self_contained_and_escaped(flagship, tmp_path):
    _, report, curve = flagship
    svg = plan_figure(report.document, tmp_path / "plan.svg", curve)
    doc = {**report.document, "instance": "<script>alert(1)</script>"}
    page = html_report(doc, {"memory & latency": svg}, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'src="data:image/svg+xml;base64,' in page and "memory &amp; latency" in page
    for external in ('src="http', "href=\"http", "url(http", "<link", "@import"):
        assert external not in page
    proof_doc = plan(load_instance(INSTANCES / "llama70b_t4.json")).document
    page = html_report(proof_doc, None, tmp_path / "p.html").read_text(encoding="utf-8")
    assert "Why it is infeasible" in page and "mem_cap[stage=0]" in page


def _solve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "solver.runners.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_cli_plot_and_html(tmp_path):
    png, page = tmp_path / "plan.png", tmp_path / "plan.html"
    run = _solve("instances/llama70b_h100.json", "--plot", str(png), "--html", str(page))
    assert run.returncode == 0, run.stderr
    assert png_size(png.read_bytes()) == (FIG_WIDTH_PX, FIG_HEIGHT_PX)
    text = page.read_text(encoding="utf-8")
    assert "tp=4 pp=1 dp=2" in text  # the strategy
    assert 'src="data:image/png;base64,' in text
    for external in ('src="http', 'href="http', "url(http"):
        assert external not in text


def test_cli_plot_on_an_infeasible_instance_writes_nothing(tmp_path):
    png = tmp_path / "t4.png"
    run = _solve("instances/llama70b_t4.json", "--plot", str(png))
    assert run.returncode == 1
    assert "no plan to draw" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not png.exists()


def test_cli_rejects_bad_picture_paths(tmp_path):
    from tests.conftest import run_cli

    code, _, err = run_cli(str(INSTANCES / "llama70b_h100.json"), "--plot", str(tmp_path / "x.jpg"))
    assert code == 2 and err.startswith("error: --plot ") and ".png or .svg" in err
    code, _, err = run_cli(str(INSTANCES / "llama70b_h100.json"), "--plot", str(tmp_path / "no" / "x.png"))
    assert code == 2 and err.startswith("error: --plot ")
    code, _, err = run_cli(str(INSTANCES), "--plot", str(tmp_path / "x.png"))
    assert code == 2 and "--plot takes one instance" in err
    assert not list(tmp_path.iterdir())
