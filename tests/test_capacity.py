"""Capacity planning: prices, cost objectives, GPU type as a decision, heterogeneous mixes.

The choice among types is checked against a brute force that uses the verifier alone; the mix
against an enumeration of every count vector over the same replica designs; every group of a mix
is re-evaluated here by the exact physics.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from solver.api import load_instance, plan, plan_capacity
from solver.capacity.designs import design_problem
from solver.capacity.offers import max_replicas, offer_problem
from solver.input.catalog import gpu_card, known_gpus
from solver.input.errors import InputError
from solver.input.schema import StrategyPins
from solver.physics import Config, even_split
from solver.physics.cost import cost_per_million_tokens_usd
from solver.problem import RATE_LEVELS
from solver.verify import Placement, evaluate
from tests.conftest import INSTANCES, flagship, run_cli, run_json

FOUR_TYPES = str(INSTANCES / "llama70b_capacity_4types.json")
MIX = str(INSTANCES / "llama70b_mix_h200_h100.json")


@pytest.fixture(scope="module")
def four_types():
    return plan_capacity(FOUR_TYPES)


@pytest.fixture(scope="module")
def mix_report():
    return plan_capacity(MIX)


# --- prices and cost objectives -------------------------------------------------------------------


def test_every_catalog_price_has_a_source_and_a_date():
    priced = 0
    for name in known_gpus():
        price = gpu_card(name).price
        if price is None:
            continue
        priced += 1
        assert price.source.startswith(("CoreWeave", "AWS", "Google", "Lambda")) and "http" in price.source, name
        assert len(price.date) >= 7 and price.date[:4].isdigit(), name
    assert priced >= 8


def test_every_plan_reports_both_costs_from_the_gpu_hour_price():
    report = plan(load_instance(INSTANCES / "llama70b_h100.json"))
    m, price = report.metrics, report.document["price"]
    assert price["origin"] == "catalog" and price["usd_per_gpu_hour"] == gpu_card("h100-sxm-80gb").price.usd_per_gpu_hour
    assert m["cost_per_hour_usd"] == pytest.approx(m["gpus_used"] * price["usd_per_gpu_hour"])
    served = 8 * 256  # the instance's 8 req/s x 256 output tokens
    assert m["cost_per_million_output_tokens_usd"] == pytest.approx(m["cost_per_hour_usd"] / (served * 3600) * 1e6,
                                                                    rel=1e-5)


def test_min_cost_is_the_fewest_gpus_times_the_price():
    cost = plan(load_instance(INSTANCES / "llama70b_h100.json", objective="min_cost"))
    gpus = plan(load_instance(INSTANCES / "llama70b_h100.json", objective="min_gpus"))
    assert cost.status == "optimal" and cost.objective_unit == "USD per hour"
    assert cost.objective == pytest.approx(gpus.objective * 6.155)
    assert cost.metrics["cost_per_hour_usd"] == pytest.approx(cost.objective)


def test_min_cost_per_token_offline_is_the_best_throughput_per_gpu_priced(write_instance):
    data = flagship()
    data["workload"] = {"input_tokens": 2048, "output_tokens": 256, "max_model_len": 8192, "offline": True}
    data["slo"] = {"tpot_ms": 50}
    data.pop("expect")
    path = write_instance(data)
    per_token = plan(load_instance(path, objective="min_cost_per_token"))
    throughput = plan(load_instance(path, objective="max_throughput_per_gpu"))
    want = cost_per_million_tokens_usd(6.155, throughput.objective)
    assert per_token.objective == pytest.approx(want, rel=1e-6)
    assert per_token.metrics["cost_per_million_output_tokens_usd"] == pytest.approx(want, rel=1e-4)


def test_price_flag_replaces_the_catalog_and_says_so():
    code, doc = run_json(str(INSTANCES / "llama70b_h100.json"), "--price", "2", "--objective", "min_cost")
    assert code == 0 and doc["price"]["origin"] == "--price" and doc["price"]["usd_per_gpu_hour"] == 2
    assert doc["metrics"]["cost_per_hour_usd"] == pytest.approx(2 * doc["metrics"]["gpus_used"])
    assert "--price 2" in doc["defaults"]["price"]


def test_instance_price_is_used_and_price_flag_replacing_it_is_stated(write_instance):
    data = flagship()
    data["cluster"]["price_per_gpu_hour_usd"] = 4.0
    data.pop("expect")
    path = write_instance(data)
    code, doc = run_json(path)
    assert code == 0 and doc["price"]["origin"] == "instance" and doc["metrics"]["cost_per_hour_usd"] == 4.0 * doc[
        "metrics"]["gpus_used"]
    code, doc = run_json(path, "--price", "h100-sxm-80gb=3")
    assert doc["price"]["usd_per_gpu_hour"] == 3 and "replaces the instance's 4" in doc["defaults"]["price"]


@pytest.mark.parametrize("args, needle", [
    (["--price", "x"], "USD per GPU-hour"),
    (["--price", "-1"], "above 0"),
    (["--price", "a100-sxm-80gb=2"], "the instance offers ['h100-sxm-80gb']"),
    (["--price", "2", "--price", "3"], "priced twice"),
])
def test_bad_price_flags_are_input_errors(args, needle):
    code, _, err = run_cli(str(INSTANCES / "llama70b_h100.json"), *args)
    assert code == 2 and needle in err and "Traceback" not in err


def test_a_cost_objective_without_any_price_is_bad_input(write_instance):
    data = flagship()
    data["cluster"]["gpu"] = "b300-288gb"
    data["objective"] = "min_cost"
    data.pop("expect")
    code, _, err = run_cli(write_instance(data))
    assert code == 2 and "cluster.price_per_gpu_hour_usd" in err and "b300-288gb" in err


# --- GPU type as a decision -----------------------------------------------------------------------


def _brute_force_cheapest(problem) -> tuple[float, Placement] | None:
    """The cheapest plan of one type by the verifier alone: every tp, pp (even split), precision and batch.

    Per-replica physics do not depend on dp, so a replica's best capacity fixes the fewest replicas;
    the resulting plan is then evaluated whole (GPU count, node rules, rate, SLOs).
    """
    inst, price = problem.instance, problem.price.usd_per_gpu_hour
    rate, avail = inst.workload.request_rate, problem.ctx.hw.total_gpus
    best = None
    for tp, pp, w, kv in itertools.product(problem.search.tp, (1, 2, 4), inst.precision.weights,
                                           inst.precision.kv_cache):
        if tp * pp > avail:
            continue
        layers = tuple(even_split(problem.arch.layers, pp))
        top = None
        for b in (lv for lv in RATE_LEVELS if lv <= inst.limits.max_num_seqs):
            ev = evaluate(problem, Placement(Config(tp, pp, 1, 1, w, kv), b, layers), simulate=False)
            per_replica = [r for r in ev.requirements if r.rule != "workload.request_rate"]
            if all(r.passed for r in per_replica):
                top = max(top or (0, b), (ev.metrics.max_request_rate, b))
        if top is None:
            continue
        dp = math.ceil(rate / top[0] * (1 - 1e-12))
        placement = Placement(Config(tp, pp, dp, 1, w, kv), top[1], layers)
        if tp * pp * dp <= avail and evaluate(problem, placement, simulate=False).feasible:
            cost = tp * pp * dp * price
            if best is None or cost < best[0]:
                best = (cost, placement)
    return best


def test_cheapest_type_matches_brute_force_over_types_and_counts(four_types):
    cap = four_types.document["capacity"]
    inst = four_types.problem.instance
    brute = {}
    for i, offer in enumerate(cap["offers"]):
        from solver.api import read_instance

        full, _ = read_instance(FOUR_TYPES)
        problem = offer_problem(full, i, full.cluster.candidates[i], FOUR_TYPES)
        found = _brute_force_cheapest(problem)
        brute[offer["gpu"]] = None if found is None else found[0]
        if found is None:
            assert offer["status"] == "infeasible", offer
        else:
            # The planner's best of this type is never dearer than any plan the verifier accepts.
            assert offer["cost_per_hour_usd"] == pytest.approx(found[0]), (offer["gpu"], offer, found)
    cheapest = min((c, g) for g, c in brute.items() if c is not None)
    assert cap["choice"] == {**cap["choice"], "kind": "single", "gpu": cheapest[1]}
    assert four_types.objective == pytest.approx(cheapest[0])
    assert inst.objective == "min_cost" and four_types.status == "optimal"


def test_four_types_report_the_runner_up_of_every_type(four_types):
    cap = four_types.document["capacity"]
    assert [o["gpu"] for o in cap["offers"]] == ["h100-sxm-80gb", "h200-141gb", "l40s-48gb", "a100-sxm-80gb"]
    feasible = [o for o in cap["offers"] if o["status"] == "optimal"]
    assert len(feasible) >= 2
    for o in feasible:
        assert o["cost_per_hour_usd"] >= four_types.objective - 1e-9
        assert o["cost_per_million_output_tokens_usd"] == pytest.approx(
            o["cost_per_hour_usd"] / (8 * 256 * 3600) * 1e6, rel=1e-4)
    for o in cap["offers"]:
        if o["status"] == "infeasible":
            assert "cannot hold together" in o["statement"]
    m = four_types.metrics
    assert m["cost_per_hour_usd"] == four_types.objective and m["cost_per_million_output_tokens_usd"] > 0
    text = four_types.to_text()
    for o in cap["offers"]:
        assert o["gpu"] in text
    assert "Chosen plan: h200-141gb" in text and "Launch" in text


# --- heterogeneous mixes --------------------------------------------------------------------------


def test_the_mix_beats_every_single_type_and_each_group_passes_the_verifier(mix_report):
    doc = mix_report.document
    cap, mix = doc["capacity"], doc["capacity"]["mix"]
    assert cap["choice"]["kind"] == "mix" and mix_report.exit_code == 0
    single = [o["cost_per_hour_usd"] for o in cap["offers"] if o["cost_per_hour_usd"] is not None]
    assert single and all(mix["cost_per_hour_usd"] < c for c in single)
    assert mix["gain_vs_best_single"] == pytest.approx(1 - mix["cost_per_hour_usd"] / min(single), abs=1e-6)
    # Shares add up to the rate, each within its replicas' capacity; GPUs within what each type offers.
    rate = 11.5
    assert sum(g["request_rate"] for g in mix["groups"]) == pytest.approx(rate)
    offered = {o["gpu"]: o["available_gpus"] for o in cap["offers"]}
    used: dict[str, int] = {}
    for g in mix["groups"]:
        assert g["request_rate"] <= g["replicas"] * g["replica_capacity_request_rate"] * (1 + 1e-9)
        used[g["gpu"]] = used.get(g["gpu"], 0) + g["gpus"]
    assert all(used[k] <= offered[k] for k in used) and len(used) == 2
    # The verifier, independently: each group as its own plan at its share.
    from solver.api import read_instance

    inst, _ = read_instance(MIX)
    total = 0.0
    for g in mix["groups"]:
        i = next(k for k, o in enumerate(cap["offers"]) if o["gpu"] == g["gpu"])
        st = g["strategy"]
        problem = offer_problem(inst, i, inst.cluster.candidates[i], MIX, objective="min_cost",
                                workload=inst.workload.model_copy(update={"request_rate": g["request_rate"]}),
                                strategy=StrategyPins(tp=st["tp"], pp=st["pp"], dp=st["dp"]))
        sub = next(d for d in doc["deployments"] if d["gpu"] == g["gpu"])
        batch = sub["metrics"]["batch_per_replica"]
        cfg = Config(st["tp"], st["pp"], st["dp"], st["ep"], st["weights"], st["kv_cache"])
        ev = evaluate(problem, Placement(cfg, batch, tuple(g["layers_per_stage"])), simulate=True)
        assert ev.feasible, [r.statement for r in ev.failed()]
        assert ev.simulation is not None and ev.simulation.completed > 0
        total += ev.metrics.gpus * problem.price.usd_per_gpu_hour
    assert total == pytest.approx(mix["cost_per_hour_usd"])
    assert mix_report.objective == pytest.approx(total)


def test_the_mix_is_the_cheapest_count_vector_over_its_designs(mix_report):
    cap = mix_report.document["capacity"]
    designs = cap["designs"]
    offered = {o["gpu"]: o["available_gpus"] for o in cap["offers"]}
    ranges = [range(0, d["max_replicas"] + 1) for d in designs]
    best = None
    for counts in itertools.product(*ranges):
        gpus: dict[str, int] = {}
        for d, n in zip(designs, counts, strict=True):
            gpus[d["gpu"]] = gpus.get(d["gpu"], 0) + n * d["gpus"]
        if any(gpus[k] > offered[k] for k in gpus):
            continue
        capacity = sum(math.floor(d["replica_capacity_request_rate"] * 1e4) * n for d, n in zip(designs, counts,
                                                                                               strict=True))
        if capacity < math.ceil(11.5 * 1e4):
            continue
        cost = sum(n * d["gpus"] * d["usd_per_gpu_hour"] for d, n in zip(designs, counts, strict=True))
        best = cost if best is None else min(best, cost)
    assert best == pytest.approx(cap["mix"]["cost_per_hour_usd"])


def test_a_design_is_the_highest_capacity_replica_of_its_size(mix_report):
    from solver.api import read_instance

    inst, _ = read_instance(MIX)
    d = next(x for x in mix_report.document["capacity"]["designs"] if x["gpu"] == "h100-sxm-80gb" and x["gpus"] == 2)
    problem = design_problem(inst, 1, inst.cluster.candidates[1], MIX)
    st = d["strategy"]
    cfg = Config(st["tp"], st["pp"], 1, st["ep"], st["weights"], st["kv_cache"])
    ev = evaluate(problem, Placement(cfg, st["max_num_seqs"], tuple(d["layers_per_stage"])), simulate=False)
    assert ev.feasible and ev.metrics.max_request_rate == pytest.approx(d["replica_capacity_request_rate"])
    bigger = next(b for b in RATE_LEVELS if b > st["max_num_seqs"])
    beyond = evaluate(problem, Placement(cfg, bigger, tuple(d["layers_per_stage"])), simulate=False)
    assert not beyond.feasible or beyond.metrics.max_request_rate <= d["replica_capacity_request_rate"] + 1e-9
    assert max_replicas(inst.cluster.candidates[0], 2) == 2 and max_replicas(inst.cluster.candidates[1], 16) == 1


def test_only_the_offered_gpus_infeasible_gives_per_type_proofs_and_an_availability_repair(write_instance):
    data = json.loads(Path(MIX).read_text())
    data["cluster"]["candidates"] = [{"gpu": "h200-141gb", "nodes": 1, "gpus_per_node": 4}]
    data.pop("expect", None)
    report = plan_capacity(write_instance(data))
    assert report.exit_code == 1 and report.status == "infeasible"
    proof = report.document["proof"]
    assert proof["per_gpu_type"][0]["gpu"] == "h200-141gb"
    first = proof["per_gpu_type"][0]["proof"]["conflicts"][0]["rules"]
    assert "gpu_count" in first
    # One type is offered, so the mix model's repair is not asked; the type's own repairs name counts.
    text = report.to_text()
    assert "Why not h200-141gb" in text


def test_two_short_types_get_the_cheapest_mix_with_more_gpus_as_a_repair(write_instance, mix_report):
    data = json.loads(Path(MIX).read_text())
    data["cluster"]["candidates"] = [{"gpu": "h200-141gb", "nodes": 1, "gpus_per_node": 2},
                                     {"gpu": "h100-sxm-80gb", "nodes": 1, "gpus_per_node": 2}]
    data.pop("expect", None)
    report = plan_capacity(write_instance(data))
    assert report.exit_code == 1
    repair = report.document["capacity"]["repair"]
    assert repair and "with more GPUs available" in repair["statement"]
    # Never cheaper than the answer with enough GPUs (the same instance with its own candidates).
    assert repair["cost_per_hour_usd"] >= mix_report.objective - 1e-6


@pytest.mark.parametrize("cluster, path, needle", [
    ({"gpu": "h100-sxm-80gb", "candidates": [{"gpu": "h200-141gb"}]}, "cluster", "exactly one of gpu"),
    ({"candidates": [{"gpu": "h200-141gb"}, {"gpu": "h200-141gb"}]}, "cluster", "offered twice"),
    ({"candidates": [{"gpu": "h200-141gb"}, {"gpu": "h100-sxm-81gb"}]}, "cluster.candidates[1].gpu", "did you mean"),
    ({"candidates": [{"gpu": "h200-141gb"}], "nodes": 2}, "cluster", "inside each candidate"),
])
def test_bad_candidate_clusters_are_input_errors(write_instance, cluster, path, needle):
    data = json.loads(Path(MIX).read_text())
    data["cluster"] = cluster
    data.pop("expect", None)
    file = write_instance(data)
    code, _, err = run_cli(file)
    assert code == 2 and f"`{path}`" in err and needle in err and "Traceback" not in err
    with pytest.raises(InputError):
        plan_capacity(file)


def test_a_strategy_to_verify_on_candidates_is_refused():
    code, _, err = run_cli(MIX, "--strategy", "tp=2")
    assert code == 2 and "one GPU type" in err


def test_capacity_answers_are_deterministic(mix_report):
    again = plan_capacity(MIX)

    def strip(o):
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k not in ("time_s", "wall_s", "phases")}
        return [strip(x) for x in o] if isinstance(o, list) else o

    assert strip(again.document) == strip(mix_report.document)
