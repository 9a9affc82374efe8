"""Inputs and cases found by a new-user test campaign: each once gave a traceback or a wrong answer."""

from __future__ import annotations

import copy

import pytest

from solver.diagnose import diagnose
from solver.problem import build_problem, parse_instance
from solver.search.planner import plan
from tests.conftest import INSTANCES, flagship, run_cli, run_json

FLAGSHIP = str(INSTANCES / "llama70b_h100.json")


def _bad(write_instance, mutate) -> str:
    data = copy.deepcopy(flagship())
    mutate(data)
    code, out, err = run_cli(write_instance(data))
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["limits"].update({"runtime_overhead_GiB": 1e308}),
        lambda d: d.update({"search": {"dp": [10**12]}}),
        lambda d: d.update({"search": {"pp": [10**9]}}),
        lambda d: d["workload"].update({"request_rate": float("inf")}),
        lambda d: d["cluster"].update({"gpus_per_node": "8"}),  # no silent coercion
        lambda d: d["workload"].update({"input_tokens": True}),
        lambda d: d["limits"].update({"max_num_batched_tokens": 1}),  # below max_num_seqs
        lambda d: d["workload"].update({"max_model_len": 16384}),  # beyond the 8192-token window
    ],
)
def test_out_of_range_inputs_are_bad_input(write_instance, mutate):
    _bad(write_instance, mutate)


def test_gqa_heads_must_divide(write_instance):
    def mutate(d):
        d["model"] = {"name": "x", "config": {"architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
                                             "num_hidden_layers": 4, "num_attention_heads": 32,
                                             "num_key_value_heads": 3, "intermediate_size": 8192,
                                             "vocab_size": 1000}}

    assert "num_key_value_heads" in _bad(write_instance, mutate)


@pytest.mark.parametrize("args", [["--workers", "-3"], ["--time-limit", "-1"], ["--strategy", ""],
                                  ["--strategy", "tp=2,tp=4"], ["--strategy", "tp=99999999999999999999"]])
def test_bad_flags_are_rejected(args):
    code, _, err = run_cli(FLAGSHIP, *args)
    assert code == 2 and "Traceback" not in err


def test_strategy_error_points_at_the_flag():
    code, _, err = run_cli(FLAGSHIP, "--strategy", "ep=3")
    assert code == 2 and err.startswith("error: --strategy")


def test_unwritable_out_file():
    code, _, err = run_cli(FLAGSHIP, "--out", "/nonexistent/dir/x.txt")
    assert code == 2 and "cannot write" in err


@pytest.mark.parametrize("nodes", [8, 64])
def test_large_clusters_solve_to_the_same_optimum(nodes):
    data = flagship()
    data["cluster"]["nodes"] = nodes
    big = plan(build_problem(parse_instance(data)))
    small = plan(build_problem(parse_instance(flagship())))
    assert big.status == "optimal"
    assert big.objective == pytest.approx(small.objective, rel=1e-6)  # replicas scale, per GPU does not


def test_pinned_batch_above_the_cap_names_the_pin():
    data = flagship()
    data["strategy"] = {"max_num_seqs": 300}
    problem = build_problem(parse_instance(data))
    assert plan(problem).status == "infeasible"
    proof = diagnose(problem)
    assert set(proof["conflicts"][0]["rules"]) == {"pin.max_num_seqs", "batch_cap"}
    assert any(r["verified"] and "max_num_seqs" in r["change"] for r in proof["repairs"])


def test_no_bf16_gpu_launches_in_fp16():
    data = flagship()
    data["cluster"] = {"gpu": "t4-16gb", "gpus_per_node": 1, "nodes": 32}
    data["workload"] = {"input_tokens": 2048, "output_tokens": 256, "max_model_len": 8192, "offline": True}
    data.pop("slo")
    data["precision"] = {"weights": ["bf16"], "kv_cache": ["bf16"]}
    problem = build_problem(parse_instance(data))
    result = plan(problem)
    assert result.status == "optimal"
    from solver.engines import launch_commands
    from solver.report.document import launch_input

    launch = launch_commands(launch_input(problem, result.placement))
    assert "--dtype half" in launch["vllm"] and "--dtype half" in launch["sglang"]


def test_max_concurrency_respects_the_plans_batch():
    _, doc = run_json(FLAGSHIP)
    m = doc["metrics"]
    assert m["max_concurrency"] <= doc["strategy"]["max_num_seqs"] * doc["strategy"]["dp"]
    assert m["kv_capacity_sequences"] >= m["max_concurrency"]


def test_failing_proposal_is_labelled_as_such():
    code, out, _ = run_cli(FLAGSHIP, "--strategy", "tp=1,pp=1,weights=bf16")  # 141 GB on one 80 GB GPU
    assert code == 1 and "the proposed strategy FAILS" in out
