"""`solve calibrate`: fitting named factors to measurements, its file formats and its bad input."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest

from solver.calibrate.measurements import Deployment, read_benchmark_results, read_latency_csv
from solver.calibrate.predict import predict, resolve
from solver.input.errors import InputError
from solver.problem import build_problem, parse_instance
from tests.conftest import flagship, run_cli

COLUMNS = ["id", "backend", "model_path", "system", "precision", "mode", "isl", "osl", "gemm_quant_mode",
           "moe_quant_mode", "batch_size", "tp_size", "pp_size", "attention_dp_size", "moe_tp_size", "moe_ep_size",
           "silicon_data_source", "silicon_ttft_ms", "silicon_tpot_ms"]
TRUE = {"compute": 0.47, "memory": 0.74, "step_overhead_s": 1.6e-3}


def _synthetic_rows(tmp_path):
    """Rows 'measured' by the simulator itself with known factors: what calibration must recover."""
    rows = []
    # Small and large batches, short and long contexts: weight streaming, KV streaming, compute
    # and the fixed step cost each dominate some rows, so the factors are told apart.
    for tp in (1, 2):
        for conc in (1, 8, 64):
            for isl, osl in ((512, 512), (4096, 128), (8192, 256)):
                rows.append({"id": f"r-tp{tp}-c{conc}-{isl}x{osl}", "backend": "vllm", "model_path": "Qwen/Qwen3-32B",
                             "system": "h100_sxm", "precision": "fp8", "mode": "agg", "isl": isl, "osl": osl,
                             "gemm_quant_mode": "fp8", "moe_quant_mode": "", "batch_size": conc, "tp_size": tp,
                             "pp_size": 1, "attention_dp_size": 1, "moe_tp_size": tp, "moe_ep_size": 1,
                             "silicon_data_source": "synthetic", "silicon_ttft_ms": 1, "silicon_tpot_ms": 1})
    path = tmp_path / "rows.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    measurements, skipped = read_latency_csv(path)
    assert not skipped
    for row, m in zip(rows, measurements, strict=True):
        case = resolve(m)
        p = predict(case, dataclasses.replace(case.problem.ctx.eff, **TRUE))
        row["silicon_ttft_ms"], row["silicon_tpot_ms"] = p.ttft_ms, p.tpot_ms
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return path


def test_calibrate_recovers_known_factors(tmp_path):
    path = _synthetic_rows(tmp_path)
    out = tmp_path / "fitted.json"
    code, stdout, stderr = run_cli("calibrate", str(path), "--fit",
                                   "compute_efficiency,memory_efficiency,step_overhead_us", "--out", str(out))
    assert code == 0, stderr
    fitted = json.loads(out.read_text())["cost_model"]
    assert fitted["compute_efficiency"] == pytest.approx(TRUE["compute"], rel=0.05)
    assert fitted["memory_efficiency"] == pytest.approx(TRUE["memory"], rel=0.05)
    assert fitted["step_overhead_us"] == pytest.approx(TRUE["step_overhead_s"] * 1e6, rel=0.05)
    assert "median |error|" in stdout
    doc = json.loads(out.read_text())
    assert doc["error_after"]["tpot"] < 0.01 < doc["error_before"]["tpot"]

    # An instance includes the file; its own factors override the file's.
    data = flagship()
    data["cost_model"] = {"include": str(out), "step_overhead_us": 777}
    eff = build_problem(parse_instance(data)).ctx.eff
    assert eff.compute == pytest.approx(fitted["compute_efficiency"])
    assert eff.step_overhead_s == pytest.approx(777e-6)


def test_vllm_and_sglang_result_files(tmp_path):
    dep = Deployment("qwen3-32b", "h100-sxm-80gb", "vllm", tp=2, weights="fp8", kv_cache="fp8")
    vllm = tmp_path / "run.json"
    vllm.write_text(json.dumps({"completed": 3, "request_rate": 4.0, "max_concurrency": None, "num_prompts": 3,
                                "input_lens": [900, 1000, 950], "output_lens": [100, 120, 110],
                                "mean_ttft_ms": 80.0, "mean_tpot_ms": 12.0, "median_ttft_ms": 70.0,
                                "median_tpot_ms": 11.0}))
    (m,) = read_benchmark_results(vllm, dep)
    assert (m.request_rate, m.input_tokens, m.output_tokens, m.ttft_ms) == (4.0, 1000, 120, 80.0)
    (med,) = read_benchmark_results(vllm, dep, "median")
    assert med.tpot_ms == 11.0
    sglang = tmp_path / "run.jsonl"
    runs = [{"completed": 10, "request_rate": float("inf"), "max_concurrency": 8, "random_input_len": 2048,
             "random_output_len": 256, "random_range_ratio": 0.5, "mean_ttft_ms": 200.0, "mean_tpot_ms": 20.0},
            {"completed": 10, "request_rate": 2.0, "max_concurrency": None, "total_input_tokens": 5000,
             "total_output_tokens": 900, "mean_ttft_ms": 60.0, "mean_tpot_ms": 15.0}]
    sglang.write_text("\n".join(json.dumps(r).replace("Infinity", '"inf"') for r in runs) + "\n")
    a, b = read_benchmark_results(sglang, dep)
    assert (a.concurrency, a.input_tokens, a.range_ratio) == (8, 2048, 0.5)
    assert (b.request_rate, b.input_tokens, b.output_tokens) == (2.0, 500, 90)


@pytest.mark.parametrize("content,needle", [
    ("not json at all\n{", "line 1"),
    (json.dumps({"completed": 1, "request_rate": 1, "mean_ttft_ms": "fast", "mean_tpot_ms": 1}), "mean_ttft_ms"),
    (json.dumps({"completed": 0, "request_rate": 1, "mean_ttft_ms": 1, "mean_tpot_ms": 1}), "completed"),
    (json.dumps({"completed": 2, "mean_ttft_ms": 1, "mean_tpot_ms": 1, "total_input_tokens": 4,
                 "total_output_tokens": 4}), "request_rate"),
])
def test_bad_result_files_exit_2_with_the_place(tmp_path, content, needle):
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, _, stderr = run_cli("calibrate", str(path), "--deployment",
                              "model=qwen3-32b,gpu=h100-sxm-80gb,engine=vllm", "--out", str(tmp_path / "o.json"))
    assert code == 2 and str(path) in stderr and needle in stderr and "Traceback" not in stderr


def test_calibrate_needs_a_deployment_and_known_factors(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"completed": 1, "request_rate": 1, "mean_ttft_ms": 1, "mean_tpot_ms": 1,
                                "total_input_tokens": 10, "total_output_tokens": 10}))
    code, _, stderr = run_cli("calibrate", str(path))
    assert code == 2 and "--deployment" in stderr
    code, _, stderr = run_cli("calibrate", str(path), "--deployment", "model=qwen3-32b,gpu=h100-sxm-80gb,engine=vllm",
                              "--fit", "compute_eficiency")
    assert code == 2 and "did you mean 'compute_efficiency'" in stderr
    bad_csv = tmp_path / "rows.csv"
    bad_csv.write_text("id,backend\nx,vllm\n")
    code, _, stderr = run_cli("calibrate", str(bad_csv))
    assert code == 2 and "line 1" in stderr and "missing columns" in stderr


def _write_rows(tmp_path, rows, name="rows.csv"):
    path = tmp_path / name
    cols = [*COLUMNS, "backend_version"]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, cols)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in cols})
    return path


def _row(i, **over):
    base = {"id": f"r{i}", "backend": "trtllm", "model_path": "Qwen/Qwen3-32B", "system": "h100_sxm",
            "precision": "fp8", "mode": "agg", "isl": 1024, "osl": 128, "gemm_quant_mode": "fp8", "batch_size": 8,
            "tp_size": 2, "pp_size": 1, "attention_dp_size": 1, "moe_tp_size": 2, "moe_ep_size": 1,
            "silicon_data_source": "source_file=sweep.csv; x", "silicon_ttft_ms": 100, "silicon_tpot_ms": 10}
    return {**base, **over}


def test_rows_take_their_release_or_their_sweeps_and_set_the_front_end(tmp_path):
    rows = [_row(1, backend_version="1.2.0rc6.post3"), _row(2, backend_version="1.2.0rc6.post3"),
            _row(3, backend_version="1.0.0rc3", silicon_data_source="source_file=old.csv"),
            _row(4), _row(5, backend_version="nightly-dev"),
            # A disaggregated row of the same sweep carries its orchestrator's version: not counted.
            _row(6, mode="disagg", backend_version="0.8.1.post2"), _row(7, mode="disagg", backend_version="0.8.1")]
    ms, skipped = read_latency_csv(_write_rows(tmp_path, rows))
    got = {m.id: m.deployment.engine_version for m in ms}
    assert got == {"r1": "1.2.0rc6", "r2": "1.2.0rc6", "r3": "1.0.0rc3", "r4": "1.2.0rc6", "r5": "1.2.0rc6"}
    assert {i for i, _ in skipped} == {"r6", "r7"}
    # TensorRT-LLM's front end: 1.0 and 1.1+ differ (the rows of each release say so).
    overhead = {m.id: resolve(m).problem.ctx.eff.request_overhead_s for m in ms}
    assert overhead["r3"] == pytest.approx(0.1351) and overhead["r1"] == pytest.approx(0.040)


def test_sglang_rows_are_fixed_length_attention_dp_rows_are_covered(tmp_path):
    rows = [_row(1, backend="sglang", backend_version="0.5.9"), _row(2, backend="vllm", backend_version="0.12.0"),
            _row(3, model_path="deepseek-ai/DeepSeek-R1", system="b200_sxm", tp_size=1, attention_dp_size=8,
                 moe_tp_size=1, moe_ep_size=8, batch_size=16, backend_version="1.2.0rc6")]
    ms, skipped = read_latency_csv(_write_rows(tmp_path, rows))
    by = {m.id: m for m in ms}
    assert not skipped
    assert by["r1"].range_ratio == 1.0 and by["r2"].range_ratio == 0.8
    dep = by["r3"].deployment
    assert (dep.tp, dep.adp, dep.ep) == (1, 8, 8) and by["r3"].concurrency == 16 * 8  # batch_size is per rank
    case = resolve(by["r3"])
    assert case.cfg.gpus == 8 and case.scheduler.max_num_batched_tokens == 8 * 8192
    p = predict(case)
    assert p.ttft_ms > 0 and p.tpot_ms > 0


def test_a_row_whose_layout_the_model_rules_out_is_not_predicted(tmp_path):
    # Qwen3-32B has 64 attention heads: "tp 3" is some other deployment's figure, not a TP degree.
    ms, _ = read_latency_csv(_write_rows(tmp_path, [_row(1, tp_size=3, moe_tp_size=3)]))
    with pytest.raises(InputError, match="row r1: not a layout of qwen3-32b: 64 attention heads"):
        resolve(ms[0])


def test_rows_carry_their_launch_scripts_batch_waiting(tmp_path):
    """InferenceX's DeepSeek-R1 FP8 TensorRT-LLM script waits to batch prompts at 1024 / 1024 from 64
    clients (release 1.2 on); its rows carry that setting, the others none; its MTP runs are skipped."""
    base = {"backend": "trtllm", "model_path": "deepseek-ai/DeepSeek-R1", "system": "b200_sxm", "precision": "fp8",
            "mode": "agg", "isl": 1024, "osl": 1024, "gemm_quant_mode": "fp8", "moe_quant_mode": "fp8",
            "batch_size": 64, "tp_size": 8, "pp_size": 1, "attention_dp_size": 1, "moe_tp_size": 8,
            "moe_ep_size": 1, "silicon_data_source": "s", "silicon_ttft_ms": 600, "silicon_tpot_ms": 20,
            "backend_version": "1.2.0rc6.post2"}
    variants = {"waits": {}, "older": {"backend_version": "1.1.0rc2.post2"}, "fp4": {"precision": "fp4",
                "gemm_quant_mode": "nvfp4", "moe_quant_mode": "nvfp4"}, "fewer": {"batch_size": 32},
                "longer": {"isl": 8192}, "adp": {"batch_size": 8, "attention_dp_size": 8, "tp_size": 1,
                                                 "moe_tp_size": 1, "moe_ep_size": 8},
                "mtp": {"backend_version": "1.2.0rc6.post3"}}
    path = tmp_path / "rows.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, [*COLUMNS, "backend_version"])
        w.writeheader()
        for name, change in variants.items():
            w.writerow({**base, **change, "id": name})
    measurements, skipped = read_latency_csv(path)
    # The image of InferenceX's MTP (speculative decoding) configs: a run the model does not cover.
    assert skipped == [("mtp", "speculative decoding (MTP) runs are not modelled")]
    got = {m.id: (m.deployment.batch_wait_timeout_iters, m.deployment.batch_wait_max_tokens_ratio)
           for m in measurements}
    assert got == {"waits": (40, 0.8), "older": (0, 0.0), "fp4": (0, 0.0), "fewer": (0, 0.0), "longer": (0, 0.0),
                   "adp": (0, 0.0)}
    waits = next(m for m in measurements if m.id == "waits")
    case = resolve(waits)
    assert case.scheduler.batch_wait_iters == 40
    assert case.scheduler.batch_wait_tokens == pytest.approx(0.8 * case.problem.instance.limits.max_num_batched_tokens)
