"""``solve sweep``: the --vary syntax, points, rows, outputs, Pareto frontiers and bad input."""

from __future__ import annotations

import csv
import io
import itertools
import json
import subprocess
import sys

import pytest

from solver.input.errors import InputError
from solver.runners.sweep import output, pareto, spec
from solver.runners.sweep.run import ROW_KEYS, TIMING_KEYS
from tests.conftest import INSTANCES, ROOT, run_cli

FAST = str(INSTANCES / "llama8b_4_l4.json")  # Llama-3-8B on 4 x L4: about 0.1 s a point


def _values(text: str) -> list:
    return spec.parse_spec(text, "--vary", "x")


def _error(text: str) -> str:
    with pytest.raises(InputError) as err:
        _values(text)
    return str(err.value)


def _untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def _sweep_json(tmp_path, *args: str, name: str = "out.json") -> tuple[int, dict, str, str]:
    out = tmp_path / name
    code, stdout, stderr = run_cli("sweep", *args, "--json", str(out))
    return code, (json.loads(out.read_text()) if out.exists() else {}), stdout, stderr


# ---------------------------------------------------------------------------------------------
# SPEC syntax
# ---------------------------------------------------------------------------------------------


def test_geometric_range_stays_integer_and_includes_the_end():
    values = _values("1:32:x2")
    assert values == [1, 2, 4, 8, 16, 32] and all(type(v) is int for v in values)
    assert _values("1:30:x2") == [1, 2, 4, 8, 16]  # stops before passing the end
    assert _values("1:3:x1.5") == [1.0, 1.5, 2.25]


def test_arithmetic_ranges_with_and_without_plus():
    assert _values("1:10:+3") == [1, 4, 7, 10]
    assert _values("2:9:3") == [2, 5, 8]
    # Floats: 0.1 + 2 x 0.1 is 0.30000000000000004 in binary; the end is still hit exactly.
    assert _values("0.1:0.3:0.1") == [0.1, 0.2, 0.3]
    values = _values("1:2:0.5")
    assert values == [1.0, 1.5, 2.0] and all(type(v) is float for v in values)
    assert _values("5:5:+1") == [5]


def test_lists_parse_json_values_and_keep_text():
    assert _values("2,4,8") == [2, 4, 8]
    assert _values("h100-sxm-80gb, h200-141gb") == ["h100-sxm-80gb", "h200-141gb"]
    assert _values('true,null,1.5,{"a": [1, 2]},abc') == [True, None, 1.5, {"a": [1, 2]}, "abc"]
    # Commas inside JSON arrays do not split the list.
    assert _values('["bf16"],["bf16","fp8"]') == [["bf16"], ["bf16", "fp8"]]
    assert _values("NaN") == ["NaN"]  # not JSON: text (which the schema then rejects for a number)


@pytest.mark.parametrize(("text", "needle"), [
    ("32:1:x2", "an empty range"),
    ("1:32:x1", "factor k > 1"),
    ("0:32:x2", "a > 0"),
    ("1:32:+0", "must be > 0"),
    ("1:32", "not a range"),
    ("1:32:y2", "not a range"),
    ("a,,b", "an empty item"),
    ("", "no values"),
    ("1:1e9:+0.001", "at most"),
])
def test_bad_specs_say_what_is_accepted(text, needle):
    message = _error(text)
    assert message.startswith("--vary: at `x`") and needle in message
    assert "a:b:" in message or "at most" in message


# ---------------------------------------------------------------------------------------------
# Paths and points
# ---------------------------------------------------------------------------------------------


def test_paths_are_checked_against_the_schema():
    assert spec.check_path("workload.request_rate", "--vary") == ("workload", "request_rate")
    assert spec.check_path("search.tp[0]", "--vary") == ("search", "tp", 0)
    assert spec.check_path("search.tp.0", "--vary") == ("search", "tp", 0)
    assert spec.check_path("model.config.hidden_size", "--vary")  # inside a free-form dict
    assert spec.check_path("objective", "--vary") == ("objective",)
    with pytest.raises(InputError) as err:
        spec.check_path("workload.rate", "--vary")
    assert "no `rate` in `workload`" in str(err.value) and "request_rate" in str(err.value)
    with pytest.raises(InputError, match="a single value"):
        spec.check_path("slo.ttft_ms.x", "--vary")
    with pytest.raises(InputError, match="empty segment"):
        spec.check_path("slo..ttft_ms", "--vary")


def test_cartesian_product_first_axis_outermost():
    axes = [spec.parse_vary("workload.request_rate=1,2"), spec.parse_vary("cluster.gpu=a,b,c")]
    pts = spec.points(axes)
    assert [tuple(p.values()) for p in pts] == list(itertools.product([1, 2], ["a", "b", "c"]))
    assert list(pts[0]) == ["workload.request_rate", "cluster.gpu"]


def test_apply_point_copies_sets_creates_and_removes():
    data = {"workload": {"request_rate": 4, "concurrency": None}, "search": {"tp": [1, 2]}, "expect": {"x": 1}}
    axes = [spec.parse_vary("workload.request_rate=8"), spec.parse_vary("slo.ttft_p99_ms=500"),
            spec.parse_vary("search.tp[1]=4"), spec.parse_vary("workload.concurrency=null")]
    out = spec.apply_point(data, axes, spec.points(axes)[0])
    assert out == {"workload": {"request_rate": 8}, "search": {"tp": [1, 4]}, "slo": {"ttft_p99_ms": 500}}
    assert data["workload"]["request_rate"] == 4 and data["search"]["tp"] == [1, 2]  # the original is untouched
    with pytest.raises(InputError, match="not an object"):
        ax = [spec.parse_vary("model.config.hidden_size=1")]
        spec.apply_point({"model": "llama3-8b-instruct"}, ax, spec.points(ax)[0])


def test_a_path_given_twice_is_refused():
    axes = [spec.parse_vary("slo=1"), spec.parse_vary("slo.ttft_ms=2")]
    with pytest.raises(InputError, match="varied twice"):
        spec.check_axes(axes)


def test_sweep_file_lists_and_specs(tmp_path):
    f = tmp_path / "sweep.json"
    f.write_text(json.dumps({"vary": {"workload.request_rate": [1, 2], "cluster.gpu": "a,b"},
                             "objective": "min_gpus"}))
    axes, objective = spec.load_sweep_file(str(f))
    assert [(a.path, a.values, a.source) for a in axes] == [
        ("workload.request_rate", (1, 2), str(f)), ("cluster.gpu", ("a", "b"), str(f))]
    assert objective == "min_gpus"
    f.write_text(json.dumps({"vary": {"workload.request_rate": []}}))
    with pytest.raises(InputError, match="non-empty list"):
        spec.load_sweep_file(str(f))
    f.write_text(json.dumps({"vary": {"workload.request_rate": [1]}, "set": {}}))
    with pytest.raises(InputError, match="unknown key"):
        spec.load_sweep_file(str(f))


# ---------------------------------------------------------------------------------------------
# Pareto frontiers
# ---------------------------------------------------------------------------------------------


def _row(i, status="optimal", **figures):
    row = dict.fromkeys(ROW_KEYS)
    row.update(index=i, point={}, status=status, pareto=[], **figures)
    return row


def test_cost_frontier_minimises_both_and_skips_rows_without_a_plan():
    rows = [
        _row(0, cost_per_hour_usd=10.0, ttft_p99_ms=500.0),   # on
        _row(1, cost_per_hour_usd=20.0, ttft_p99_ms=300.0),   # on
        _row(2, cost_per_hour_usd=20.0, ttft_p99_ms=400.0),   # same cost, slower: off
        _row(3, cost_per_hour_usd=30.0, ttft_p99_ms=300.0),   # dearer, same TTFT: off
        _row(4, "infeasible", cost_per_hour_usd=1.0, ttft_p99_ms=1.0),  # no plan: never on
        _row(5, cost_per_hour_usd=None, ttft_p99_ms=1.0),     # no price: off
        _row(6, cost_per_hour_usd=40.0, ttft_ms=100.0),       # no simulation: its mean TTFT stands in: on
    ]
    assert pareto.frontier(rows, "cost_vs_ttft_p99") == [0, 1, 6]


def test_ties_are_all_on_the_frontier_whatever_the_order():
    rows = [_row(0, gpus_used=2, request_rate=4), _row(1, gpus_used=2, request_rate=4),
            _row(2, gpus_used=1, request_rate=2), _row(3, gpus_used=4, request_rate=4),
            _row(4, gpus_used=1, request_rate=1), _row(5, "error", gpus_used=1, request_rate=99)]
    assert pareto.frontier(rows, "gpus_vs_rate") == [0, 1, 2]
    for perm in itertools.permutations(range(5)):
        shuffled = [rows[i] for i in perm]
        on = {shuffled[j]["index"] for j in pareto.frontier(shuffled, "gpus_vs_rate")}
        assert on == {0, 1, 2}


def test_throughput_frontier_maximises_throughput_and_marks_rows():
    rows = [_row(0, output_tokens_per_s_per_gpu=500.0, tpot_ms=40.0),
            _row(1, output_tokens_per_s_per_gpu=300.0, tpot_ms=20.0),
            _row(2, output_tokens_per_s_per_gpu=300.0, tpot_ms=30.0),
            _row(3, output_tokens_per_s_per_gpu=600.0, tpot_ms=40.0)]
    pareto.mark_pareto(rows)
    assert [r["pareto"] for r in rows] == [[], ["throughput_per_gpu_vs_tpot"], [], ["throughput_per_gpu_vs_tpot"]]


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------


def test_rows_are_the_same_with_one_and_two_jobs(tmp_path):
    args = (FAST, "--vary", "workload.request_rate=2:8:x2", "--vary", "cluster.gpu=l4-24gb,l40s-48gb")
    code1, doc1, _, err1 = _sweep_json(tmp_path, *args, "-j", "1", name="j1.json")
    code2, doc2, _, err2 = _sweep_json(tmp_path, *args, "-j", "2", name="j2.json")
    assert code1 == code2 == 0, err1 + err2
    rows = doc1["rows"]
    assert [r["index"] for r in rows] == list(range(6))
    assert [r["point"] for r in rows] == [{"workload.request_rate": rate, "cluster.gpu": gpu}
                                          for rate in (2, 4, 8) for gpu in ("l4-24gb", "l40s-48gb")]
    assert all(set(r) == set(ROW_KEYS) for r in rows)
    assert _untimed(rows) == _untimed(doc2["rows"])
    plan = rows[0]
    assert plan["status"] == "optimal" and plan["gpu"] == "l4-24gb" and plan["request_rate"] == 2
    assert plan["strategy"]["tp"] >= 1 and plan["gpus_used"] >= 1 and plan["ttft_p99_ms"] > 0
    assert plan["objective_unit"] and plan["error"] is None
    assert any(r["pareto"] for r in rows)
    assert doc1["settings"]["deterministic_time"] == 30.0 and doc1["settings"]["workers"] == 1
    assert [a["path"] for a in doc1["sweep"]["vary"]] == ["workload.request_rate", "cluster.gpu"]


def test_csv_json_and_text_outputs(tmp_path):
    csv_file, json_file = tmp_path / "s.csv", tmp_path / "s.json"
    code, out, err = run_cli("sweep", FAST, "--vary", "workload.request_rate=1,4", "--vary", "objective=min_gpus",
                             "-j", "1", "--csv", str(csv_file), "--json", str(json_file))
    assert code == 0, err
    assert "\x1b[" not in out  # plain text off a terminal
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["#", "workload.request_rate", "objective"] and "pareto" in lines[0]
    assert "2 point(s)" in out and "pareto: cost = cost_vs_ttft_p99" in out
    table = list(csv.DictReader(io.StringIO(csv_file.read_text())))
    assert list(table[0]) == output.csv_columns(spec_axes := [spec.parse_vary("workload.request_rate=1"),
                                                              spec.parse_vary("objective=min_gpus")])
    assert "point.objective" in output.csv_columns(spec_axes)  # a path named like a result column
    assert [r["workload.request_rate"] for r in table] == ["1", "4"]
    assert table[0]["status"] == "optimal" and table[0]["objective_unit"] == "GPUs"
    doc = json.loads(json_file.read_text())
    assert [r["objective"] for r in doc["rows"]] == [float(r["objective"]) for r in table]

    code, out_csv, _ = run_cli("sweep", FAST, "--vary", "workload.request_rate=1", "-j", "1", "--format", "csv")
    assert code == 0 and out_csv.splitlines()[0].startswith("index,workload.request_rate,status")
    code, out_json, _ = run_cli("sweep", FAST, "--vary", "workload.request_rate=1", "-j", "1",
                                "--objective", "min_gpus", "--format", "json")
    assert code == 0 and json.loads(out_json)["rows"][0]["objective_unit"] == "GPUs"


def test_infeasible_points_are_rows_not_failures(tmp_path):
    code, doc, out, err = _sweep_json(tmp_path, str(INSTANCES / "llama70b_t4.json"),
                                      "--vary", "precision.weights=[\"bf16\"]", "-j", "1")
    assert code == 0, err
    row = doc["rows"][0]
    assert row["status"] == "infeasible" and row["strategy"] is None and row["pareto"] == []
    assert doc["counts"]["infeasible"] == 1


def test_relative_references_resolve_from_the_instance_file(tmp_path, monkeypatch):
    # The model is a config.json next to the instance (configs/...), found from another directory.
    monkeypatch.chdir(tmp_path)
    code, doc, _, err = _sweep_json(tmp_path, str(INSTANCES / "qwen2_7b_hf_config_2_l4.json"),
                                    "--vary", "workload.output_tokens=128", "-j", "1")
    assert code == 0, err
    assert doc["rows"][0]["status"] == "optimal"


@pytest.mark.parametrize(("args", "needles"), [
    (("--vary", "workload.rate=1,2"), ("--vary", "`workload.rate`", "request_rate")),
    (("--vary", "workload.request_rate=1:32"), ("--vary", "`workload.request_rate`", '"1:32"', "a:b:xk")),
    (("--vary", "workload.request_rate=-1,2"), ("--vary", "point 0", "workload.request_rate=-1", "greater")),
    (("--vary", "cluster.gpu=nope"), ("--vary", "point 0", "`cluster.gpu`", '"nope"', "unknown GPU")),
    (("--vary", "workload.request_rate"), ("--vary", "PATH=SPEC")),
    ((), ("nothing to sweep",)),
    (("--vary", "workload.request_rate=1", "--plot", "x.pdf"), ("--plot", ".pdf", ".png")),
    (("--vary", "workload.request_rate=1", "--csv", "/nonexistent-dir/x.csv"), ("--csv", "does not exist")),
    (("--sweep-file", "/nonexistent.json"), ("/nonexistent.json", "file not found")),
])
def test_bad_input_is_one_line_and_exit_2(args, needles):
    code, out, err = run_cli("sweep", FAST, *args)
    assert code == 2 and not out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_sweep_file_point_names_the_file(tmp_path):
    f = tmp_path / "sweep.json"
    f.write_text(json.dumps({"vary": {"limits.memory_utilization": [0.9, 1.5]}}))
    code, _, err = run_cli("sweep", FAST, "--sweep-file", str(f))
    assert code == 2 and err.startswith(f"error: {f}: point 1 (limits.memory_utilization=1.5)")


def test_sweep_is_a_subcommand_not_a_file():
    code, out, _ = run_cli("sweep", "--help")
    assert code == 0 and "--vary" in out and "Exit codes" in out


def test_plot_is_written_when_the_figure_exists(tmp_path):
    plots = pytest.importorskip("solver.report.plots")
    if not hasattr(plots, "sweep_figure"):
        pytest.skip("solver.report.plots.sweep_figure is not there yet")
    png = tmp_path / "s.png"
    code, _, err = run_cli("sweep", FAST, "--vary", "workload.request_rate=1,2", "-j", "1", "--plot", str(png))
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_traceback_on_bad_input_in_a_real_process():
    proc = subprocess.run([sys.executable, "-m", "solver.runners.cli", "sweep", FAST, "--vary", "slo.nope=1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.startswith("error: --vary")
