"""Disaggregated serving: a prefill pool and a decode pool, the KV cache shipped between them.

The step times are the aggregated engine's (:mod:`.steps`, the same model the simulator runs):

* a **prefill worker** runs prefill-only steps of ``max_num_batched_tokens`` tokens: a lone
  request passes in ``ceil(I / T)`` chunks, each through every pipeline stage in turn (its
  latency), and under load a step carries ``floor(T / I)`` whole prompts (or one chunk of a longer
  one) with the stages pipelined, so its capacity is prompts per second of such steps;
* a **decode worker** at ``B`` sequences runs decode-only steps (no prefill stalls them): TPOT is
  one step at the mean context ``I + O / 2``, and it completes ``B / (O x TPOT)`` requests/s;
* the **KV transfer** moves every layer's KV of the prompt (``kv_bytes_per_token x I``) from the
  prefill worker's GPUs to the decode worker's, each GPU its shard in parallel over the slower of
  the two ends' links (NVLink inside a node, the network between nodes), plus one message latency;
* the **hand-off** (``Efficiency.kv_handoff_s``, the engine's): what moving a prompt between the
  pools costs beyond its bytes (the decode worker's KV allocation, the transfer's completion being
  polled, the router's second hop); a decode worker's steps also poll the transfers in flight
  (``Efficiency.disagg_step_overhead_s`` per step, :func:`decode_step_model`);
* **TTFT** = the engine's front-end overhead + the lone prefill + the transfer + the hand-off + one
  decode step (the first token is streamed once the decode worker has admitted the sequence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..input.schema import LinkSpec
from .layout import Config, Context
from .memory import kv_bytes_per_token
from .steps import StepModel, step_model
from .timing import causal_pairs


@dataclass(frozen=True)
class PrefillFigures:
    """One prefill worker: a lone prompt's latency and the prompts per second it sustains."""

    latency_s: float
    capacity_per_s: float
    prompts_per_step: int


@dataclass(frozen=True)
class DecodeFigures:
    """One decode worker at ``batch`` sequences: TPOT and the requests per second it completes."""

    batch: int
    tpot_s: float
    capacity_per_s: float


def decode_step_model(ctx: Context, cfg: Config, layers_per_stage: list[int] | tuple[int, ...]) -> StepModel:
    """A decode worker's steps: the aggregated engine's, each stage also polling the KV transfers in flight."""
    base = step_model(ctx, cfg, layers_per_stage)
    extra = ctx.eff.disagg_step_overhead_s
    if not extra:
        return base
    return replace(base, stages=tuple(replace(st, overhead_s=st.overhead_s + extra) for st in base.stages))


def prefill_figures(model: StepModel, input_tokens: int, step_tokens: int, lone: StepModel | None = None,
                    ranks: int = 1) -> PrefillFigures:
    """Latency of a lone prompt and capacity of one prefill worker (see the module docstring).

    With ``ranks`` attention-DP ranks every rank schedules its own step of ``step_tokens``: a lone
    prompt passes on one rank (``lone``: the step model of the tokens on one rank), while under load
    every rank carries its prompts and the experts see all of them (``model``, balanced).
    """
    lone = lone or model
    last = len(model.stages) - 1
    chunks = math.ceil(input_tokens / step_tokens)
    latency = loaded = 0.0
    done = 0
    for c in range(chunks):
        size = min(step_tokens, input_tokens - done)
        sampled = 1.0 if c == chunks - 1 else 0.0
        # One prompt is not split into micro-batches: every chunk passes every stage in turn.
        latency += sum(st.time_s(size, 0, causal_pairs(size, done), sampled if s == last else 0.0)
                       for s, st in enumerate(lone.stages))
        loaded += sum(st.time_s(ranks * size, 0, ranks * causal_pairs(size, done), ranks * sampled if s == last else 0.0)
                      for s, st in enumerate(model.stages))
        done += size
    per_rank = max(1, step_tokens // input_tokens)
    if per_rank == 1:
        capacity = ranks / loaded  # each rank chunks its own prompt, the ranks' chunks in one step
    else:
        n = per_rank * ranks
        capacity = n / model.step_s(0, 0, n * input_tokens, n * causal_pairs(input_tokens), n)
    return PrefillFigures(latency, capacity, per_rank * ranks)


def prefill_worker(ctx: Context, cfg: Config, layers_per_stage: list[int] | tuple[int, ...], input_tokens: int,
                   step_tokens: int) -> PrefillFigures:
    """:func:`prefill_figures` of one prefill worker of ``cfg``, with its attention-DP ranks."""
    model = step_model(ctx, cfg, layers_per_stage)
    lone = step_model(ctx, cfg, layers_per_stage, balanced=False) if cfg.adp > 1 else model
    return prefill_figures(model, input_tokens, step_tokens, lone, cfg.adp)


def decode_figures(model: StepModel, batch: int, input_tokens: int, output_tokens: int) -> DecodeFigures:
    """TPOT and capacity of one decode worker holding ``batch`` sequences at the mean context."""
    context = batch * (input_tokens + output_tokens / 2)
    tpot = model.step_s(batch, context)
    return DecodeFigures(batch, tpot, batch / (output_tokens * tpot))


def kv_transfer_s(ctx: Context, prefill: Config, decode: Config, input_tokens: int, link: LinkSpec) -> float:
    """Seconds to move one prompt's KV cache from a prefill worker to a decode worker over ``link``.

    Each prefill GPU holds a shard (its TP heads, its PP layers) and sends it in parallel; the
    decode side receives on as many GPUs, so the slower end's GPU count carries the bytes.
    """
    total = kv_bytes_per_token(ctx.arch, prefill.kv_cache, 1) * input_tokens
    lanes = min(prefill.tp * prefill.pp, decode.tp * decode.pp)
    bandwidth = link.bandwidth_GBps * 1e9 * ctx.eff.link * lanes
    return total / bandwidth + link.latency_us * 1e-6


def transfer_link(ctx: Context, gpus_used: int) -> LinkSpec:
    """The link the KV crosses: the node's when both pools fit one node, else the network."""
    hw = ctx.hw
    return hw.intra if gpus_used <= hw.gpus_per_node else hw.inter


def disagg_ttft_s(ctx: Context, pf: PrefillFigures, dec: DecodeFigures, transfer_s: float) -> float:
    """TTFT of a disaggregated plan without queueing (the simulator adds it)."""
    return ctx.eff.request_overhead_s + pf.latency_s + transfer_s + ctx.eff.kv_handoff_s + dec.tpot_s
