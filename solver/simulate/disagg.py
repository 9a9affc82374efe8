"""Disaggregated serving, simulated: a prefill pool, the KV transfer, then a decode pool.

1. The prefill pool serves every request as a one-token request (the prompt and its first token)
   on its workers, round-robin, with the engine's scheduler: its first-token times are when each
   prompt's KV is ready.
2. Each request reaches the decode pool after the KV transfer and the engine's hand-off
   (:data:`~solver.physics.efficiency.Efficiency.kv_handoff_s`), in order of readiness, round-robin
   over the decode workers; their steps are :func:`~solver.physics.disagg.decode_step_model`'s. A decode worker runs the mixed policy with a step model in which a
   transferred prompt costs nothing to "prefill" (its KV arrived): admission takes one step, then
   it decodes with its whole prompt as context, so it holds its KV from admission on.
3. TTFT is measured from the client's arrival to the decode worker's first token, TPOT and the
   end-to-end latency on the decode worker; the summaries are those of the aggregated simulator.

Open arrivals (a rate, a timed trace) are served once; a closed loop of clients (a concurrency, as
benchmarks run it) is the fixed point of its arrival times: each request arrives when its client's
previous one finishes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..physics import Config, StepModel, kv_capacity_tokens, step_model
from ..physics.disagg import decode_step_model
from ..problem import Problem
from .engine import ReplicaRun, Scheduler, run_replica
from .plan import latency_targets_ms, plan_requests, plan_scheduler
from .stats import SimulationResult, summarise
from .workload import Requests


@dataclasses.dataclass(frozen=True)
class TransferredPrompts(StepModel):
    """A decode worker's steps: prompts arrive with their KV, so their tokens cost nothing to prefill."""

    def step_s(self, decode_seqs: float, context: float, prefill_tokens: float = 0.0, pairs: float = 0.0,
               prefills_done: float = 0.0, busiest_tokens: float | None = None, busiest_pairs: float = 0.0) -> float:
        # An admitted prompt samples its first token in the step it joins: one more sequence decoding.
        return StepModel.step_s(self, decode_seqs + prefills_done, context)


def simulate_disagg(problem: Problem, prefill: tuple[Config, tuple[int, ...]], decode: tuple[Config, tuple[int, ...]],
                    decode_seqs: int, transfer_s: float, requests: Requests | None = None) -> SimulationResult:
    """Serve the instance's requests on ``prefill.dp`` prefill and ``decode.dp`` decode workers.

    Open arrivals are served once; a closed loop of clients is solved as a fixed point
    (:func:`_closed_loop`): each client's next request arrives when its previous one finishes.
    """
    reqs = requests if requests is not None else plan_requests(problem)
    if reqs.closed_loop:
        return _closed_loop(problem, prefill, decode, decode_seqs, transfer_s, reqs)
    runs, _ = _serve(problem, prefill, decode, decode_seqs, transfer_s, reqs)
    return summarise(runs, latency_targets_ms(problem))


# A closed loop's arrival times are iterated until they move, on average, by less than this share of
# the mean end-to-end latency (or CLOSED_LOOP_ITERATIONS passes): the loop's fixed point. 1% moves
# the mean TTFT and TPOT by well under 1% (tests/test_disagg.py compares with more passes).
CLOSED_LOOP_TOLERANCE = 0.01
CLOSED_LOOP_ITERATIONS = 12


def _closed_loop(problem: Problem, prefill, decode, decode_seqs: int, transfer_s: float,
                 reqs: Requests) -> SimulationResult:
    """A closed loop of ``reqs.clients`` clients through both pools, as a fixed point of arrival times.

    Request i belongs to client ``i mod C`` and is its ``i // C``-th: it arrives when the client's
    previous request finishes. Start from waves spaced by the first wave's mean end-to-end
    latency, serve, set each arrival to its predecessor's finish, and repeat until the arrivals
    settle.
    """
    n, clients = len(reqs), reqs.clients
    runs: list[ReplicaRun] = []
    guess = None
    prev = np.arange(n) - clients
    has = prev >= 0
    # The first guess: the clients' first requests at once, each later one a mean end-to-end latency
    # of that wave after its predecessor (a few passes then settle what the waves leave out).
    wave = Requests(reqs.input_tokens[:clients], reqs.output_tokens[:clients], np.zeros(min(clients, n)))
    _, wave_finish = _serve(problem, prefill, decode, decode_seqs, transfer_s, wave)
    spacing = float(np.nanmean(wave_finish)) if np.isfinite(wave_finish).any() else 0.0
    for _ in range(CLOSED_LOOP_ITERATIONS):
        if guess is None:
            arrival = (np.arange(n) // clients) * spacing
        else:
            arrival = np.zeros(n)
            arrival[has] = guess[prev[has]]
        order = np.argsort(arrival, kind="stable")
        part = Requests(reqs.input_tokens[order], reqs.output_tokens[order], arrival[order])
        runs, finish_sorted = _serve(problem, prefill, decode, decode_seqs, transfer_s, part)
        finish = np.empty(n)
        finish[order] = finish_sorted
        if np.isnan(finish).any():
            break  # a request the pools never hold: no closed loop completes
        e2e = float(np.mean(finish - arrival))
        if guess is not None and float(np.mean(np.abs(finish - guess))) <= CLOSED_LOOP_TOLERANCE * max(e2e, 1e-9):
            break
        guess = finish
    return summarise(runs, latency_targets_ms(problem))


def _serve(problem: Problem, prefill: tuple[Config, tuple[int, ...]], decode: tuple[Config, tuple[int, ...]],
           decode_seqs: int, transfer_s: float, reqs: Requests) -> tuple[list[ReplicaRun], np.ndarray]:
    """Both pools on open arrivals: the decode workers' runs and every request's finish time (NaN: never)."""
    (pcfg, players), (dcfg, dlayers) = prefill, decode
    lim = problem.instance.limits
    # 1. Prefill pool: prompts only (one output token each).
    ones = np.ones(len(reqs), dtype=np.int64)
    prompt_reqs = Requests(reqs.input_tokens, ones, reqs.arrival_s)
    psched = plan_scheduler(problem, pcfg, players, lim.max_num_seqs)
    pmodel = step_model(problem.ctx, pcfg, players)
    ready = np.full(len(reqs), np.nan)
    for w, part in enumerate(prompt_reqs.split(max(1, pcfg.dp))):
        run = run_replica(pmodel, psched, part)
        ready[w::max(1, pcfg.dp)] = run.first_token_s
    # 2. Decode pool: arrivals when the KV has crossed, in that order.
    ok = ~np.isnan(ready)
    idx = np.flatnonzero(ok)
    order = idx[np.argsort(ready[idx], kind="stable")]
    base = decode_step_model(problem.ctx, dcfg, dlayers)
    dmodel = TransferredPrompts(base.stages, full_fraction=base.full_fraction, window=base.window)
    # Every attention-DP rank of a decode worker schedules its own step, as in the aggregated engine.
    dsched = Scheduler(policy="mixed", max_num_seqs=decode_seqs, max_num_batched_tokens=lim.max_num_batched_tokens * dcfg.adp,
                       kv_capacity_tokens=kv_capacity_tokens(problem.ctx, dcfg, dlayers), admission_delay_s=0.0)
    runs: list[ReplicaRun] = []
    finish = np.full(len(reqs), np.nan)
    workers = max(1, dcfg.dp)
    handoff = transfer_s + problem.ctx.eff.kv_handoff_s  # the bytes, then the engine's hand-off
    for w in range(workers):
        mine = order[w::workers]
        if len(mine) == 0:
            continue
        part = Requests(reqs.input_tokens[mine], reqs.output_tokens[mine], ready[mine] + handoff)
        run = run_replica(dmodel, dsched, part)
        finish[mine] = run.finish_s
        # Latencies count from the client's send, not from the decode worker's receipt.
        run.arrival_s = reqs.arrival_s[mine].astype(np.float64)
        runs.append(run)
    lost = np.flatnonzero(~ok)
    if len(lost):  # prompts the prefill pool could never hold: rejected, as the aggregated simulator says
        nan = np.full(len(lost), np.nan)
        runs.append(ReplicaRun(Requests(reqs.input_tokens[lost], reqs.output_tokens[lost], reqs.arrival_s[lost]),
                               reqs.arrival_s[lost].astype(np.float64), nan, nan.copy()))
    return runs, finish
