"""The engine simulator: determinism, invariants of its statistics, scheduler semantics, traces."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from solver.input.errors import InputError
from solver.physics import Config, kv_capacity_tokens, step_model
from solver.problem import build_problem, parse_instance
from solver.simulate import Requests, Scheduler, closed_loop, poisson, simulate
from solver.simulate.traces import read_trace
from tests.conftest import flagship


@pytest.fixture(scope="module")
def flagship_replica():
    problem = build_problem(parse_instance(flagship()))
    cfg = Config(2, 1, 4, 1, "fp8", "fp8")
    model = step_model(problem.ctx, cfg, [80])
    sched = Scheduler("mixed", 256, 8192, kv_capacity_tokens(problem.ctx, cfg, [80]))
    return model, sched


def test_same_seed_same_result_and_other_seed_differs(flagship_replica):
    model, sched = flagship_replica
    a = simulate(model, sched, poisson(6, 500, (1024, 3072), 256, seed=3), replicas=2)
    b = simulate(model, sched, poisson(6, 500, (1024, 3072), 256, seed=3), replicas=2)
    c = simulate(model, sched, poisson(6, 500, (1024, 3072), 256, seed=4), replicas=2)
    assert a == b
    assert a.ttft_ms != c.ttft_ms


def test_one_client_sees_exact_step_times(flagship_replica):
    model, sched = flagship_replica
    res = simulate(model, sched, closed_loop(1, 20, 2048, 65))
    prefill = model.step_s(0, 0, 2048, 2048 * 2049 / 2, 1)
    assert res.ttft_ms.mean == pytest.approx(prefill * 1e3, rel=1e-9)
    # Every decode step has one sequence; its context grows one key a step from 2049.
    decode = model.decode_run_s(1, 2049, 64) / 64
    assert res.tpot_ms.mean == pytest.approx(decode * 1e3, rel=1e-9)
    assert res.completed == 20 and res.rejected == 0


def test_littles_law_at_moderate_load(flagship_replica):
    model, sched = flagship_replica
    rate = 2.0
    res = simulate(model, sched, poisson(rate, 3000, 2048, 256, seed=1))
    in_flight = rate * res.e2e_ms.mean / 1e3  # sequences in the engine, by Little's law
    assert res.mean_batch == pytest.approx(in_flight, rel=0.15)
    assert res.requests_per_s == pytest.approx(rate, rel=0.1)


def test_latency_rises_with_load(flagship_replica):
    model, sched = flagship_replica
    tpot, ttft = [], []
    for rate in (0.5, 1, 2, 3, 4):  # one replica: within its capacity
        res = simulate(model, sched, poisson(rate, 1500, 2048, 256, seed=0))
        tpot.append(res.tpot_ms.mean)
        ttft.append(res.ttft_ms.p90)
    assert tpot == sorted(tpot) and tpot[-1] > 1.5 * tpot[0]
    assert ttft == sorted(ttft)


def test_prefill_first_stalls_decodes(flagship_replica):
    model, sched = flagship_replica
    reqs = poisson(1, 800, 4096, 256, seed=2)  # within capacity: no admission queue
    mixed = simulate(model, sched, reqs)
    first = simulate(model, Scheduler("prefill_first", 256, 8192, sched.kv_capacity_tokens), reqs)
    # SGLang-style prefill steps carry no decodes: a token waits behind a whole prefill.
    assert first.itl_ms.p99 > mixed.itl_ms.p99
    assert first.ttft_ms.mean < mixed.ttft_ms.mean


def test_kv_cache_bounds_the_batch(flagship_replica):
    model, _ = flagship_replica
    tight = Scheduler("mixed", 256, 8192, kv_capacity_tokens=10 * (2048 + 256))
    res = simulate(model, tight, closed_loop(64, 256, 2048, 256))
    assert res.mean_batch <= 10 + 1e-9
    assert res.mean_queue > 30  # the other clients wait for KV room
    never = Scheduler("mixed", 256, 8192, kv_capacity_tokens=1000)
    assert simulate(model, never, closed_loop(2, 4, 2048, 256)).rejected == 4


def test_admission_delay_adds_to_ttft(flagship_replica):
    model, sched = flagship_replica
    base = simulate(model, sched, closed_loop(1, 10, 1024, 32))
    late = simulate(model, Scheduler("mixed", 256, 8192, sched.kv_capacity_tokens, admission_delay_s=0.05),
                    closed_loop(1, 10, 1024, 32))
    assert late.ttft_ms.mean == pytest.approx(base.ttft_ms.mean + 50, rel=1e-6)


def test_gated_admission_holds_new_requests_until_the_poll(flagship_replica):
    import dataclasses

    model, sched = flagship_replica
    reqs = poisson(2, 600, 1024, 256, seed=5)  # arrivals at random phases of the poll
    base = simulate(model, sched, reqs)
    assert simulate(model, dataclasses.replace(sched, admit_every_steps=1), reqs) == base
    gated = simulate(model, dataclasses.replace(sched, admit_every_steps=30), reqs)
    step = model.step_s(int(round(base.mean_batch)), 1024 * base.mean_batch) * 1e3
    # A request waits for the next of every 30 steps: about 15 steps more on average.
    extra = gated.ttft_ms.mean - base.ttft_ms.mean
    assert 8 * step < extra < 25 * step
    # A gate that only holds while every rank decodes (TensorRT-LLM's attention-DP balancing)
    # never closes when fewer sequences run than it needs.
    loose = dataclasses.replace(sched, admit_every_steps=30, gate_min_running=10_000)
    assert simulate(model, loose, reqs) == base
    with pytest.raises(ValueError):
        Scheduler("mixed", 256, 8192, 1e6, admit_every_steps=0)


def test_batch_waiting_holds_prompts_while_others_decode(flagship_replica):
    """TensorRT-LLM's batch waiting: with sequences decoding, a lone prompt is held N iterations
    (its tokens stay below the threshold) and then prefilled; a threshold its own tokens reach lets
    it go at once; an idle engine never holds; the count is per held iteration."""
    import dataclasses

    model, sched = flagship_replica
    reqs = poisson(1, 300, 1024, 256, seed=3)  # sparse: one prompt at a time joins the decodes
    base = simulate(model, sched, reqs)
    held = simulate(model, dataclasses.replace(sched, batch_wait_iters=40, batch_wait_tokens=6553.6), reqs)
    step = model.step_s(max(1, int(round(base.mean_batch))), 1280 * base.mean_batch) * 1e3
    extra = held.ttft_ms.mean - base.ttft_ms.mean
    assert 25 * step < extra < 45 * step  # about 40 decode steps, less when the engine is idle
    # A threshold one prompt reaches by itself never holds it.
    assert simulate(model, dataclasses.replace(sched, batch_wait_iters=40, batch_wait_tokens=512), reqs) == base
    # Without the token threshold (or the count) nothing waits, as in TensorRT-LLM.
    assert simulate(model, dataclasses.replace(sched, batch_wait_iters=40), reqs) == base
    # A lone client: nothing decodes when its prompt arrives, so nothing holds it.
    one = closed_loop(1, 8, 1024, 64)
    assert simulate(model, dataclasses.replace(sched, batch_wait_iters=40, batch_wait_tokens=6553.6), one) == \
        simulate(model, sched, one)
    with pytest.raises(ValueError):
        Scheduler("mixed", 256, 8192, 1e6, batch_wait_iters=-1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rate=st.floats(0.2, 30), n=st.integers(5, 300), lo=st.integers(1, 3000), span=st.integers(0, 3000),
       out=st.integers(1, 600), clients=st.integers(0, 40), policy=st.sampled_from(["mixed", "prefill_first"]),
       seed=st.integers(0, 1000))
def test_percentiles_are_ordered_and_every_request_accounted(flagship_replica, rate, n, lo, span, out, clients,
                                                             policy, seed):
    model, sched = flagship_replica
    reqs = closed_loop(clients, n, (lo, lo + span), (1, out), seed) if clients else \
        poisson(rate, n, (lo, lo + span), (1, out), seed)
    res = simulate(model, Scheduler(policy, 64, 4096, sched.kv_capacity_tokens), reqs, replicas=1 + seed % 3)
    assert res.completed + res.rejected == n
    for d in (res.ttft_ms, res.tpot_ms, res.itl_ms, res.e2e_ms):
        if np.isnan(d.p50):
            continue
        assert d.p50 <= d.p90 + 1e-9 <= d.p99 + 2e-9
    assert res.ttft_ms.p50 <= res.e2e_ms.p99 + 1e-9


def test_ten_thousand_requests_simulate(flagship_replica):
    model, sched = flagship_replica
    res = simulate(model, sched, poisson(12, 10_000, (128, 4096), (16, 512), seed=0), replicas=4)
    assert res.completed == 10_000


def test_trace_formats(tmp_path):
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text("\n".join(json.dumps({"arrival_s": t, "input_tokens": 100 + t, "output_tokens": 10})
                               for t in (0, 1, 2)) + "\n")
    times, ins, outs = read_trace(jsonl)
    assert times == [0, 1, 2] and ins == [100, 101, 102] and outs == [10, 10, 10]
    vllm = tmp_path / "vllm.json"
    vllm.write_text(json.dumps({"input_lens": [5, 6], "output_lens": [7, 0], "start_times": [10.5, 11.0],
                                "mean_ttft_ms": 1.0}))
    assert read_trace(vllm) == ([0.0, 0.5], [5, 6], [7, 1])
    sglang = tmp_path / "sg.jsonl"
    sglang.write_text(json.dumps({"backend": "sglang", "input_lens": [3], "output_lens": [4]}) + "\n")
    assert read_trace(sglang) == (None, [3], [4])


@pytest.mark.parametrize("text,where", [
    ('{"arrival_s": 0, "input_tokens": 10, "output_tokens": 5}\nnot json\n', "line 2"),
    ('{"arrival_s": 0, "input_tokens": 0, "output_tokens": 5}\n', "line 1.input_tokens"),
    ('{"arrival_s": -1, "input_tokens": 3, "output_tokens": 5}\n', "line 1.arrival_s"),
    ('{"input": 3}\n', "line 1"),
    ('{"arrival_s": 0, "input_tokens": 3, "output_tokens": 5}\n{"input_tokens": 3, "output_tokens": 5}\n', "line 2"),
])
def test_bad_traces_name_the_line(tmp_path, text, where):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_trace(path)
    assert err.value.path == where and str(path) in str(err.value)


def test_requests_validate():
    with pytest.raises(ValueError):
        Requests(np.array([1, 2]), np.array([1]), None, 1)
    with pytest.raises(ValueError):
        Requests(np.array([1]), np.array([1]), None, 0)


def test_attention_dp_ranks_prefill_their_own_prompts():
    import dataclasses

    from solver.api import load_instance
    from solver.simulate.engine import run_replica
    from tests.conftest import INSTANCES

    problem = load_instance(INSTANCES / "deepseekv3_4x8_h200.json")
    cfg, layers = Config(2, 1, 1, 8, "fp8", "fp8", 4), (problem.arch.layers,)
    model = step_model(problem.ctx, cfg, layers)
    lone = step_model(problem.ctx, cfg, layers, balanced=False)
    assert model.ranks == 4
    t, p = 8192.0, 8192.0 * 8193 / 2
    # All of a step's prompt tokens on one rank cost that rank's whole attention: the lone rate.
    assert model.step_s(0, 0, t, p, 1, busiest_tokens=t, busiest_pairs=p) == pytest.approx(lone.step_s(0, 0, t, p, 1))
    # Spread evenly, the ranks' share: the balanced step.
    assert model.step_s(0, 0, t, p, 4, busiest_tokens=t / 4, busiest_pairs=p / 4) == pytest.approx(
        model.step_s(0, 0, t, p, 4))
    # A lone prompt in the simulator waits for its own rank; reading the ranks as one spreads it.
    sched = Scheduler("mixed", 256, 8192 * 4, kv_capacity_tokens(problem.ctx, cfg, layers))
    one = Requests(np.array([8192]), np.array([2]), np.array([0.0]))
    ranked = run_replica(model, sched, one).first_token_s[0]
    spread = run_replica(dataclasses.replace(model, ranks=1, rank_excess=()), sched, one).first_token_s[0]
    assert ranked == pytest.approx(lone.step_s(0, 0, t, p, 1), rel=1e-6) and ranked > 1.5 * spread
