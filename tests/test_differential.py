"""Differential tests: CP-SAT against an exact brute force on random small instances (hypothesis).

The brute force scores every configuration and every contiguous split with the verifier alone
(no integer tables). For every instance the solver's optimum equals its optimum (to the exact
check's tolerance); when the solver says infeasible, it finds nothing, and every conflict the
diagnosis returns is infeasible and minimal under it too. Instances put exactly on a limit (memory
or an SLO at a known plan's value, and just off it) are where rounding used to decide.
"""

from __future__ import annotations

import copy
import os

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from solver.diagnose import diagnose
from solver.input.schema import Instance
from solver.problem import build_problem
from solver.search.exact import EXACT_REL_TOL
from solver.search.planner import SolveParams, plan
from solver.verify import evaluate
from tests.bruteforce import exact_brute_force

PARAMS = SolveParams(time_limit_s=30)
# Random instances per run of the main differential test (about three minutes on a 2-core machine:
# proofs of three-rule conflicts, each rule brute-forced away, are its costly cases);
# SOLVE_DIFFERENTIAL_EXAMPLES=1000 runs a longer campaign over the same derandomised sequence.
EXAMPLES = int(os.environ.get("SOLVE_DIFFERENTIAL_EXAMPLES", "220"))


@st.composite
def small_instances(draw) -> dict:
    moe = draw(st.booleans())
    heads = draw(st.sampled_from([4, 8]))
    kv = draw(st.sampled_from([h for h in (1, 2, 4, 8) if heads % h == 0]))
    head_dim = draw(st.sampled_from([32, 64]))
    hidden = heads * head_dim
    layers = draw(st.integers(2, 8))
    config = {
        "architectures": ["MixtralForCausalLM" if moe else "LlamaForCausalLM"],
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv, "head_dim": head_dim,
        "intermediate_size": hidden * draw(st.sampled_from([2, 3, 4])),
        "vocab_size": draw(st.sampled_from([1000, 8000, 32000])), "tie_word_embeddings": draw(st.booleans()),
    }
    if moe:
        config.update({"num_local_experts": draw(st.sampled_from([4, 8])),
                       "num_experts_per_tok": draw(st.sampled_from([1, 2]))})
    per_node = draw(st.sampled_from([1, 2, 4]))
    nodes = draw(st.sampled_from([1, 2]))
    gpu = {
        "name": "rand-gpu", "family": draw(st.sampled_from(["hopper", "ampere", "ada"])),
        "memory_GiB": draw(st.floats(0.8, 8.0)),
        "dense_TFLOPS": {"bf16": draw(st.floats(20, 1000)), "fp8": draw(st.sampled_from([None, 400.0, 1500.0]))},
        "hbm_TBps": draw(st.floats(0.3, 5.0)),
        "intra_node": {"bandwidth_GBps": draw(st.floats(10, 900)), "latency_us": draw(st.floats(1, 10))},
        "inter_node": {"bandwidth_GBps": draw(st.floats(5, 50)), "latency_us": draw(st.floats(2, 20))},
    }
    mode = draw(st.sampled_from(["offline", "concurrency", "request_rate"]))
    inp, out = draw(st.integers(16, 2048)), draw(st.integers(8, 512))
    workload = {"input_tokens": inp, "output_tokens": out}
    if mode == "offline":
        workload["offline"] = True
    elif mode == "concurrency":
        workload["concurrency"] = draw(st.integers(1, 24))
    else:
        workload["request_rate"] = draw(st.floats(0.05, 50))
    slo = {}
    if draw(st.booleans()):
        slo["ttft_ms"] = draw(st.floats(0.5, 500))
    if draw(st.booleans()):
        slo["tpot_ms"] = draw(st.floats(0.2, 80))
    if draw(st.integers(0, 3)) == 0:
        slo["min_output_tokens_per_s_per_gpu"] = draw(st.floats(10, 20000))
    search = {"tp": [1, 2, 4], "pp": [1, 2, 4], "dp": [1, 2],
              "uneven_layers": draw(st.booleans())}
    if moe:
        search["ep"] = [1, 2]
        search["engine"] = "sglang"
        # Attention data parallelism (2 ranks sharing the experts) in half the MoE draws: every
        # option and split is brute-forced, so the search space is kept small.
        search["attention_dp"] = draw(st.sampled_from([[1], [1, 2]]))
    data = {
        "name": "random", "model": {"name": "rand-model", "config": config},
        "cluster": {"gpu": gpu, "gpus_per_node": per_node, "nodes": nodes},
        "precision": {"weights": draw(st.sampled_from([["bf16"], ["fp8"], ["bf16", "fp8"]])),
                      "kv_cache": draw(st.sampled_from([["bf16"], ["bf16", "fp8"]]))},
        "workload": workload, "slo": slo,
        "limits": {"memory_utilization": draw(st.floats(0.5, 1.0)), "max_num_seqs": draw(st.sampled_from([4, 8])),
                   "max_num_batched_tokens": 512},
        "search": search,
        "objective": draw(st.sampled_from(["max_throughput_per_gpu", "min_gpus", "min_tpot", "min_ttft"])),
    }
    if draw(st.integers(0, 4)) == 0:
        data["strategy"] = {"tp": draw(st.sampled_from([1, 2]))}
    return data


def agrees(problem, result, reference) -> None:
    """The solver's verdict and optimum match the exact brute force (to the stated tolerance)."""
    if reference is None:
        assert result.status == "infeasible", (result.status, result.placement)
        return
    assert result.status == "optimal", result.status
    assert result.evaluation.feasible  # re-checked by the solver-independent verifier
    best, placement = reference
    mine = result.objective
    # Within the exact check's tolerance of the true optimum, and never beyond it (float noise aside).
    tol = 2 * EXACT_REL_TOL * abs(best) + 1e-9
    if problem.instance.objective == "max_throughput_per_gpu":
        assert best - tol <= mine <= best * (1 + 1e-9) + 1e-9, (mine, best, placement)
    else:
        assert best * (1 - 1e-9) - 1e-9 <= mine <= best + tol, (mine, best, placement)


def proof_is_exact(problem) -> None:
    """Every conflict is infeasible and minimal under the exact physics (the verifier, no tables)."""
    proof = diagnose(problem, PARAMS, with_repairs=False)
    assert proof["conflicts"], proof
    for conflict in proof["conflicts"]:
        rules = set(conflict["rules"])
        event(f"conflict size: {len(rules)}")
        assert conflict["minimal"]
        assert exact_brute_force(problem, rules) is None, rules
        for member in rules:
            assert exact_brute_force(problem, rules - {member}) is not None, (member, rules)


def plan_agrees_with_brute_force(data: dict) -> None:
    """Plan the instance and compare with the exact brute force; an infeasible one's proof too."""
    problem = build_problem(Instance.model_validate(data))
    result = plan(problem, PARAMS)
    reference = exact_brute_force(problem)
    event(f"status: {result.status}")
    agrees(problem, result, reference)
    if reference is None:
        proof_is_exact(build_problem(Instance.model_validate(data)))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(small_instances())
def test_solver_matches_exact_brute_force_and_diagnosis_is_exact(data):
    plan_agrees_with_brute_force(data)


# Relative offsets from a known plan's exact value: on the limit, within float noise of it, and
# beyond the integer tables' rounding (1 MiB of memory, one time unit) on either side.
OFFSETS = [0.0, 1e-12, -1e-12, 1e-9, -1e-9, 1e-6, -1e-6, 1e-4, -1e-4, 1e-3, -1e-3]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(small_instances(), st.sampled_from(["memory", "slo.tpot_ms", "slo.ttft_ms"]), st.sampled_from(OFFSETS))
def test_instances_on_a_limit_agree_with_exact_brute_force(data, which, offset):
    problem = build_problem(Instance.model_validate(data))
    known = exact_brute_force(problem)
    assume(known is not None)
    ev = evaluate(problem, known[1], simulate=False)
    data = copy.deepcopy(data)
    if which == "memory":
        # The fullest stage of the optimum exactly fills the GPU (times 1 + offset): usable memory is
        # memory_utilization x the device total the engine sees.
        peak = max(st_.memory_GiB["total"] for st_ in ev.stages)
        mu = peak / problem.ctx.device_GiB * (1 + offset)
        assume(0 < mu <= 1)
        data["limits"]["memory_utilization"] = mu
    else:
        value = ev.metrics.tpot_ms if which == "slo.tpot_ms" else ev.metrics.ttft_ms
        data["slo"][which.split(".")[1]] = value * (1 + offset)
    event(f"{which} {offset:g}")
    plan_agrees_with_brute_force(data)


def test_the_reported_false_proof_is_a_plan():
    """Llama-3-8B on one L4 at 8 concurrent requests: 20 MiB to spare, once called infeasible (at 0.873197
    before usable memory was the torch-visible total and non-PyTorch memory the engine-aware rule)."""
    data = {"name": "l4_edge", "model": "llama3-8b-instruct",
            "cluster": {"gpu": "l4-24gb", "gpus_per_node": 1, "nodes": 1},
            "precision": {"weights": ["bf16"], "kv_cache": ["bf16"]},
            "workload": {"input_tokens": 2048, "output_tokens": 256, "max_model_len": 8192, "concurrency": 8},
            "limits": {"memory_utilization": 0.887709}}
    problem = build_problem(Instance.model_validate(data))
    result = plan(problem, PARAMS)
    assert result.status == "optimal"
    assert result.evaluation.feasible
    assert result.exact["improved"] and result.exact["complete"]
    reference = exact_brute_force(problem)
    agrees(problem, result, reference)
