"""Continuous batching on one replica, event by event, with the engine's scheduler semantics.

Each engine step advances every running sequence by one token; prompt tokens are prefilled in
chunks within a per-step token budget (``max_num_batched_tokens``), at most ``max_num_seqs``
sequences are admitted at once, and a request is admitted only when the KV cache can hold its
whole sequence (the engines' no-eviction admission). Two step policies:

* ``mixed`` (vLLM V1, TensorRT-LLM inflight batching): decodes first, one token each, then prefill
  chunks of the requests being prefilled and of newly admitted ones fill the rest of the budget;
* ``prefill_first`` (SGLang's default): when prompts wait, a prefill-only step runs and the
  decodes stall; decodes run when no prompt can be prefilled.

Step times come from :class:`~solver.physics.steps.StepModel`, the same costs as the planner's. Runs
of decode-only steps between events are summed in closed form, so the cost is per event (arrival,
first token, completion), not per token: 10,000 requests take well under a second.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..physics import StepModel, causal_pairs
from .workload import Requests

Policy = Literal["mixed", "prefill_first"]


@dataclass(frozen=True)
class Scheduler:
    """How one replica's engine forms its steps."""

    policy: Policy
    max_num_seqs: int  # sequences admitted at once (running + being prefilled)
    max_num_batched_tokens: int  # tokens per step: decodes (one each) plus prefill chunks
    kv_capacity_tokens: float  # KV cache of the replica, in tokens of one sequence's worth per layer
    admission_delay_s: float = 0.0  # from a client's send to the engine's queue (HTTP, tokenize, IPC)
    # The engine takes new requests only every ``admit_every_steps`` steps while at least
    # ``gate_min_running`` sequences decode (idle or under-filled, it takes them at once):
    # SGLang's --scheduler-recv-interval N (its counter also fires right after a prefill step:
    # ``admit_after_prefill``), TensorRT-LLM's attention-DP balancing (``enable_balance`` with
    # ``timeout_iters`` N holds new prompts until every rank has one, on a free-running clock of N
    # iterations, unless some rank has nothing to decode: ``gate_min_running`` = the ranks).
    admit_every_steps: int = 1
    gate_min_running: int = 1
    admit_after_prefill: bool = False
    # TensorRT-LLM's batch waiting (``batch_wait_timeout_iters`` N, ``batch_wait_max_tokens_ratio``
    # r, without attention DP): while sequences decode, the prompts admitted are not prefilled
    # until their prompt tokens and the decodes reach ``batch_wait_tokens`` (r x max_num_tokens) or
    # N iterations have held them; the count restarts when they go (PyExecutor._waiting_requests).
    batch_wait_iters: int = 0
    batch_wait_tokens: float = 0.0

    def __post_init__(self) -> None:
        if self.policy not in ("mixed", "prefill_first"):
            raise ValueError(f"unknown scheduler policy {self.policy!r}; accepted: mixed, prefill_first")
        if self.max_num_seqs < 1 or self.max_num_batched_tokens < 1:
            raise ValueError("max_num_seqs and max_num_batched_tokens must be at least 1")
        if self.admit_every_steps < 1 or self.gate_min_running < 1:
            raise ValueError("admit_every_steps and gate_min_running must be at least 1")
        if self.batch_wait_iters < 0 or self.batch_wait_tokens < 0:
            raise ValueError("batch_wait_iters and batch_wait_tokens must not be negative")


@dataclass
class ReplicaRun:
    """What happened to each request on one replica (times in seconds from the start)."""

    requests: Requests
    arrival_s: np.ndarray
    first_token_s: np.ndarray  # NaN for a request the KV cache can never hold
    finish_s: np.ndarray
    # Inter-token intervals, as runs of steps: (first step's interval, last step's, tokens).
    itl_runs: list[tuple[float, float, int]] = field(default_factory=list)
    queue_time_area: float = 0.0  # integral of the waiting-queue length over time
    max_queue: int = 0
    steps: int = 0
    end_s: float = 0.0


def run_replica(model: StepModel, sched: Scheduler, reqs: Requests, max_events: int = 50_000_000) -> ReplicaRun:
    """Serve ``reqs`` on one replica and record every request's first-token and finish times."""
    n = len(reqs)
    ins = reqs.input_tokens.tolist()
    outs = reqs.output_tokens.tolist()
    arrival = np.full(n, np.nan) if reqs.closed_loop else reqs.arrival_s.astype(np.float64).copy()
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    run = ReplicaRun(reqs, arrival, first, finish)
    budget_cap, seq_cap, kv_cap = sched.max_num_batched_tokens, sched.max_num_seqs, sched.kv_capacity_tokens
    mixed = sched.policy == "mixed"

    t = 0.0
    delay = sched.admission_delay_s
    waiting: deque[int] = deque()
    # Requests sent but not yet in the engine's queue, by the time the engine sees them.
    pending: deque[tuple[float, int]] = deque()
    prefilling: list[list[int]] = []  # [request, prompt tokens done], in admission order
    running: list[tuple[int, int]] = []  # heap of (step counter at which it finishes, request)
    k = 0  # decode steps taken (every running sequence gains one token per step)
    context = 0.0  # keys the running sequences attend to, in total
    kv_used = 0.0  # KV reserved by admitted sequences (whole sequences: no eviction)
    next_closed = 0  # next request a closed-loop client will send
    stall = 0.0  # time since the running sequences' last token (prefill-only steps)
    itl = run.itl_runs
    # Attention DP: each admitted request joins a rank in turn, and each rank fills its own share of
    # the step's token budget with its own prompts (a lone prompt is prefilled on one rank).
    ranks = model.ranks
    rank_of: dict[int, int] = {}
    admitted = 0
    every = sched.admit_every_steps
    since = every  # steps since the scheduler last took new requests (gated engines)
    hold_iters = sched.batch_wait_iters if sched.batch_wait_tokens > 0 else 0
    held = 0  # iterations the admitted prompts have been held (batch waiting)

    if reqs.closed_loop:
        for _ in range(min(reqs.clients, n)):
            arrival[next_closed] = 0.0
            pending.append((delay, next_closed))
            next_closed += 1
    else:
        pending.extend((float(a) + delay, i) for i, a in enumerate(arrival))

    def complete(i: int, now: float) -> None:
        nonlocal next_closed
        finish[i] = now
        if reqs.closed_loop and next_closed < n:  # the client sends its next request at once
            arrival[next_closed] = now
            pending.append((now + delay, next_closed))
            next_closed += 1

    events = 0
    while True:
        events += 1
        if events > max_events:
            raise RuntimeError("simulation did not finish within its event budget")
        while pending and pending[0][0] <= t:
            waiting.append(pending.popleft()[1])
        if not running and not prefilling and not waiting:
            if pending:
                t = pending[0][0]
                continue
            break
        # Admit what fits: sequence slots and whole-sequence KV (a gated engine only at its poll).
        b = len(running)
        slots = seq_cap - b - len(prefilling)
        gated = every > 1 and b >= sched.gate_min_running
        if gated and since >= every:
            since, gated = 0, False
        while not gated and waiting and slots > 0 and kv_used + ins[waiting[0]] + outs[waiting[0]] <= kv_cap:
            i = waiting.popleft()
            prefilling.append([i, 0])
            kv_used += ins[i] + outs[i]
            slots -= 1
            rank_of[i] = admitted % ranks
            admitted += 1
        if not running and not prefilling:
            # Nothing fits even in an empty cache: the request can never be served.
            i = waiting.popleft()
            complete(i, t)
            finish[i] = np.nan
            continue
        run.max_queue = max(run.max_queue, len(waiting))

        # A prefill step when a prompt is being prefilled and the step has tokens left for it.
        prefill_now = bool(prefilling) and (not mixed or b < budget_cap)
        holding = False
        if prefill_now and hold_iters and b:
            if held < hold_iters and sum(ins[e[0]] for e in prefilling) + b < sched.batch_wait_tokens:
                prefill_now, holding = False, True
            else:
                held = 0

        if prefill_now:
            # One step: decodes (mixed policy) plus prefill chunks, in admission order.
            budget = budget_cap - (b if mixed else 0)
            tokens = 0
            pairs = 0.0
            done_now: list[int] = []
            share = [max(1, budget // ranks)] * ranks  # the decodes are spread over the ranks
            rank_tokens = [0] * ranks
            rank_pairs = [0.0] * ranks
            left = sum(share)
            for entry in prefilling:
                if left <= 0:
                    break  # every rank's share is spent
                i, done = entry
                r = rank_of[i]
                size = min(ins[i] - done, share[r])
                if size <= 0:
                    continue  # its rank's share is spent (another rank's prompt may still fit)
                p = causal_pairs(size, done)
                share[r] -= size
                left -= size
                rank_tokens[r] += size
                rank_pairs[r] += p
                tokens += size
                pairs += p
                entry[1] = done + size
                if entry[1] >= ins[i]:
                    done_now.append(i)
            decodes = b if mixed else 0
            top = max(range(ranks), key=rank_tokens.__getitem__)
            dt = model.step_s(decodes, context if mixed else 0.0, tokens, pairs, len(done_now),
                              rank_tokens[top], rank_pairs[top])
            run.queue_time_area += len(waiting) * dt
            t += dt
            run.steps += 1
            since = every if sched.admit_after_prefill else since + 1
            if decodes:
                k += 1
                context += decodes
                itl.append((dt + stall, dt + stall, decodes))
                stall = 0.0
            elif b:
                stall += dt
            if done_now:
                finished = set(done_now)
                prefilling = [e for e in prefilling if e[0] not in finished]
            for i in done_now:
                first[i] = t
                if outs[i] == 1:
                    kv_used -= ins[i] + outs[i]
                    complete(i, t)
                else:
                    heapq.heappush(running, (k + outs[i] - 1, i))
                    context += ins[i] + 1
        else:
            # A run of decode-only steps up to the next completion or the next arrival.
            steps = running[0][0] - k
            if pending and slots > 0:
                steps = _steps_to_reach(model, b, context, steps, pending[0][0] - t)  # up to the arrival
            if gated and slots > 0 and (waiting or pending):
                # The new requests wait for the scheduler's next poll (the first at or after an arrival).
                poll = every - since
                arrive = 0 if waiting else steps
                if not waiting and pending:
                    gap = pending[0][0] - t
                    arrive = 0 if gap <= 0 else _steps_to_reach(model, b, context, steps, gap)
                if arrive > poll:
                    poll += -(-(arrive - poll) // every) * every
                steps = max(1, min(steps, poll))
            if holding:
                steps = max(1, min(steps, hold_iters - held))  # the prompts go once the count is reached
                held += steps
            dt = model.decode_run_s(b, context, steps)
            first_dt = model.step_s(b, context)
            last_dt = model.step_s(b, context + (steps - 1) * b)
            itl.append((first_dt + stall, last_dt, steps * b))
            stall = 0.0
            run.queue_time_area += len(waiting) * dt
            t += dt
            run.steps += steps
            since += steps
            k += steps
            context += steps * b
        while running and running[0][0] <= k:
            _, i = heapq.heappop(running)
            context -= ins[i] + outs[i]
            kv_used -= ins[i] + outs[i]
            complete(i, t)
    run.end_s = t
    return run


def _steps_to_reach(model: StepModel, b: int, context: float, steps: int, gap: float) -> int:
    """The fewest decode steps (at most ``steps``) whose run lasts at least ``gap`` seconds."""
    if model.decode_run_s(b, context, steps) < gap:
        return steps
    lo, hi = 1, steps
    while lo < hi:
        mid = (lo + hi) // 2
        if model.decode_run_s(b, context, mid) >= gap:
            hi = mid
        else:
            lo = mid + 1
    return lo
