"""Per-stage coefficients: the linear model, in the layers a stage holds, shared by CP-SAT and the verifier."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .layout import KINDS, Config, Context, boundary_link, stage_counts
from .memory import (
    activation_bytes,
    attended_context,
    cuda_graph_bytes_per_layer,
    embedding_bytes_per_gpu,
    kv_bytes_per_token_layer,
    kv_tokens_held,
    kv_tokens_per_replica,
    layer_weight_bytes_per_gpu,
    lm_head_bytes_per_gpu,
    rotary_cache_bytes,
    runtime_overhead_bytes,
    window_of,
    windowed_keys,
)
from .timing import (
    ZERO_COST,
    LayerCost,
    causal_pairs,
    experts_touched_fraction,
    layer_cost,
    lm_head_cost,
    send_cost,
)


@dataclass(frozen=True)
class StageCoefficients:
    """For one configuration and batch: the per-stage costs, linear in the layers a stage holds.

    A stage's value of any quantity is ``per_layer[kind] * layers_of_kind + first/last extras +
    per-stage constant``. Bytes are per GPU; times in seconds.
    """

    cfg: Config
    batch: int  # sequences in flight per replica
    micro_batch: float
    mem_per_layer: dict[str, float]  # weights + KV + CUDA-graph bytes
    weight_per_layer: dict[str, float]
    kv_per_layer: dict[str, float]
    dec_per_layer: dict[str, float]
    pf_lat_per_layer: dict[str, float]
    pf_work_per_layer: dict[str, float]
    mem_first: float  # embedding
    mem_last: float  # LM head (+ final norm)
    mem_const: float  # activations + runtime overhead + the rotary table, on every stage
    act_bytes: float  # forward activation peak (every stage)
    overhead_bytes: float  # non-PyTorch buffers (+ CUDA graphs' fixed part) on every stage
    dec_last: float
    pf_lat_last: float
    pf_work_last: float
    dec_const: float  # per-step overhead
    send_dec: tuple[float, ...]  # per stage boundary s -> s+1 (len pp-1)
    send_pf: tuple[float, ...]
    request_s: float = 0.0  # per request, before the engine sees it (the front end): part of TTFT
    # The last stage's extra bytes (activations and overhead) over every stage's: the sampler run and
    # the memory outside PyTorch it takes. Split for the report below; CP-SAT adds the sum.
    act_last: float = 0.0
    overhead_last: float = 0.0
    graph_per_layer: float = 0.0  # CUDA-graph bytes per decoder layer where the engine budgets them
    weight_const: float = 0.0  # loaded with the weights on every stage: the rotary cos / sin table

    @property
    def mem_last_extra(self) -> float:
        """Bytes the last stage holds beyond the LM head and every stage's constant."""
        return self.act_last + self.overhead_last

    def stage_values(self, counts: dict[str, int], stage: int) -> dict[str, float]:
        """Memory (bytes) and times (s) of stage ``stage`` holding ``counts`` layers of each kind."""
        pp = self.cfg.pp
        first, last = stage == 0, stage == pp - 1
        mem_w = sum(self.weight_per_layer[k] * counts.get(k, 0) for k in KINDS)
        mem_kv = sum(self.kv_per_layer[k] * counts.get(k, 0) for k in KINDS)
        extra_w = (self.mem_first if first else 0.0) + (self.mem_last if last else 0.0) + self.weight_const
        send_dec = 0.0 if last else self.send_dec[stage]
        send_pf = 0.0 if last else self.send_pf[stage]
        graphs = self.graph_per_layer * sum(counts.get(k, 0) for k in KINDS)
        act = self.act_bytes + (self.act_last if last else 0.0)
        overhead = self.overhead_bytes + (self.overhead_last if last else 0.0) + graphs
        return {
            "weights": mem_w + extra_w,
            "kv_cache": mem_kv,
            "activations": act,
            "overhead": overhead,
            "memory": mem_w + extra_w + mem_kv + act + overhead,
            "decode_s": sum(self.dec_per_layer[k] * counts.get(k, 0) for k in KINDS)
            + (self.dec_last if last else 0.0)
            + self.dec_const
            + send_dec,
            "pf_lat_s": sum(self.pf_lat_per_layer[k] * counts.get(k, 0) for k in KINDS)
            + (self.pf_lat_last if last else 0.0)
            + send_pf,
            "pf_work_s": sum(self.pf_work_per_layer[k] * counts.get(k, 0) for k in KINDS)
            + (self.pf_work_last if last else 0.0)
            + send_pf,
        }


def prefill_chunks(ctx: Context) -> int:
    """Engine steps one prompt's prefill takes alone: chunks of at most max_num_batched_tokens tokens."""
    return -(-ctx.workload.input_tokens // ctx.limits.max_num_batched_tokens)


def prefill_latency_s(ctx: Context, cost: LayerCost) -> float:
    """A lone prompt through one component, chunk by chunk (each chunk attends to the ones before)."""
    n, chunk = ctx.workload.input_tokens, ctx.limits.max_num_batched_tokens
    full, window = window_of(ctx.arch)
    t, done = 0.0, 0
    while done < n:
        size = min(chunk, n - done)
        t += cost.time_s(size, 0.0, windowed_keys(full, window, size, causal_pairs(size, done)))
        done += size
    return t


def prefill_work_s(ctx: Context, cost: LayerCost, micro_batch: float) -> float:
    """What one prompt adds to the decode steps it rides along with (chunked prefill).

    The weights are read by the decode step anyway; the prompt adds its tokens' GEMMs, KV writes and
    collective bytes, its causal attention, and the experts the decode batch alone would not touch.
    """
    n = ctx.workload.input_tokens
    full, window = window_of(ctx.arch)
    t = n * cost.per_token_s + windowed_keys(full, window, n, causal_pairs(n)) * cost.per_pair_s
    # Its share of the steps that carry prompt tokens: n of each step's max_num_batched_tokens.
    t += cost.prefill_fixed_s * n / ctx.limits.max_num_batched_tokens
    if cost.experts_s:
        extra = (experts_touched_fraction(micro_batch + n, cost.top_k, cost.experts)
                 - experts_touched_fraction(micro_batch, cost.top_k, cost.experts))
        t += cost.experts_s * max(extra, 0.0)
    return t


# The same (context, layout, batch) is asked for many times over: the verifier per placement (its
# memory, KV capacity and largest batch), the searches and the brute-force references once per layer
# split of one layout. A pure function of frozen inputs, memoised by the context's identity; each
# entry holds its context, so that identity is not reused while the entry lives.
_COEF_MEMO: dict[tuple[int, Config, int], tuple[Context, StageCoefficients]] = {}
_COEF_MEMO_ENTRIES = 4096


def stage_coefficients(ctx: Context, cfg: Config, batch: int) -> StageCoefficients:
    """Per-stage linear coefficients for ``cfg`` with ``batch`` sequences per replica."""
    key = (id(ctx), cfg, batch)
    hit = _COEF_MEMO.get(key)
    if hit is not None and hit[0] is ctx:
        return hit[1]
    coef = _stage_coefficients(ctx, cfg, batch)
    if len(_COEF_MEMO) >= _COEF_MEMO_ENTRIES:
        _COEF_MEMO.clear()
    _COEF_MEMO[key] = (ctx, coef)
    return coef


def _stage_coefficients(ctx: Context, cfg: Config, batch: int) -> StageCoefficients:
    a = ctx.arch
    micro = batch / cfg.pp
    kinds = set(a.layer_kinds())
    # Each attention-DP rank keeps the KV cache of its own share of the replica's sequences.
    tokens = kv_tokens_per_replica(math.ceil(batch / cfg.adp), ctx.workload, a)
    weight = {k: layer_weight_bytes_per_gpu(a, k, cfg) if k in kinds else 0.0 for k in KINDS}
    kv = {k: tokens * kv_bytes_per_token_layer(a, cfg.kv_cache, cfg.tp) if k in kinds else 0.0 for k in KINDS}
    costs = {k: layer_cost(ctx, k, cfg) if k in kinds else ZERO_COST for k in KINDS}
    # A lone prompt is prefilled on one attention rank (the same as balanced without attention DP).
    lone = costs if cfg.adp == 1 else {k: layer_cost(ctx, k, cfg, balanced=False) if k in kinds else ZERO_COST
                                       for k in KINDS}
    context = micro * attended_context(a, ctx.decode_context_tokens)
    head = lm_head_cost(ctx, cfg)
    # Memory as the engine counts it (physics.engine_memory): every stage's forward peak and buffers;
    # the last stage adds the sampler run's peak and the buffers it takes; CUDA graphs per layer.
    act = activation_bytes(a, cfg.tp, ctx.limits, last_stage=False, conventions=ctx.memory)
    act_last = activation_bytes(a, cfg.tp, ctx.limits, last_stage=True, conventions=ctx.memory) - act
    overhead = runtime_overhead_bytes(cfg, ctx.limits, ctx.memory, last_stage=False)
    overhead_last = runtime_overhead_bytes(cfg, ctx.limits, ctx.memory, last_stage=True) - overhead
    graph_layer = cuda_graph_bytes_per_layer(ctx.limits, ctx.memory)
    rotary = rotary_cache_bytes(a)
    sends = [send_cost(ctx, boundary_link(ctx, cfg, s)) for s in range(cfg.pp - 1)]
    return StageCoefficients(
        cfg=cfg,
        batch=batch,
        micro_batch=micro,
        mem_per_layer={k: weight[k] + kv[k] + (graph_layer if k in kinds else 0.0) for k in KINDS},
        weight_per_layer=weight,
        kv_per_layer=kv,
        dec_per_layer={k: costs[k].time_s(micro, context) if k in kinds else 0.0 for k in KINDS},
        pf_lat_per_layer={k: prefill_latency_s(ctx, lone[k]) if k in kinds else 0.0 for k in KINDS},
        pf_work_per_layer={k: prefill_work_s(ctx, costs[k], micro) if k in kinds else 0.0 for k in KINDS},
        mem_first=embedding_bytes_per_gpu(a, cfg.tp),
        mem_last=lm_head_bytes_per_gpu(a, cfg.tp, cfg.pp),
        mem_const=act + overhead + rotary,
        act_bytes=act,
        overhead_bytes=overhead,
        dec_last=head.time_s(micro),
        pf_lat_last=head.time_s(1) + head.per_token_s * (cfg.adp - 1),  # the sample on one rank
        pf_work_last=head.per_token_s,
        dec_const=ctx.eff.step_overhead_s,
        request_s=ctx.eff.request_overhead_s,
        send_dec=tuple(c.time_s(micro) for c in sends),
        send_pf=tuple(prefill_latency_s(ctx, c) for c in sends),
        act_last=act_last,
        overhead_last=overhead_last,
        graph_per_layer=graph_layer,
        weight_const=rotary,
    )


def kv_capacity_tokens(ctx: Context, cfg: Config, layers_per_stage: list[int] | tuple[int, ...]) -> float:
    """Sequence tokens of KV cache one replica holds: the fullest stage's free memory over its KV bytes.

    In tokens of a sequence's length: with sliding-window layers a sequence of the workload's length
    keeps less than its length in every layer, so the cache holds more sequence tokens than slots.
    With attention data parallelism every rank holds its own cache: the replica holds ``adp`` times.
    """
    counts = stage_counts(ctx.arch.layer_kinds(), list(layers_per_stage))
    coef1 = stage_coefficients(ctx, cfg, 1)
    kv_tok = kv_bytes_per_token_layer(ctx.arch, cfg.kv_cache, cfg.tp)
    seq = ctx.workload.input_tokens + ctx.workload.output_tokens
    stretch = seq / kv_tokens_held(ctx.arch, seq)
    best = math.inf
    for s, c in enumerate(counts):
        vals = coef1.stage_values(c, s)
        free = ctx.capacity_bytes - (vals["weights"] + vals["activations"] + vals["overhead"])
        per_token = kv_tok * sum(c.values())
        if per_token > 0:
            best = min(best, max(free, 0.0) / per_token * stretch)
    return best * cfg.adp


def kv_cache_tokens(ctx: Context, cfg: Config, layers_per_stage: list[int] | tuple[int, ...]) -> int:
    """The KV cache in tokens as the engine reports it at start-up, for one replica.

    vLLM logs "GPU KV cache size: N tokens" once per engine (replica): every GPU of it holds the
    same N tokens for its layers and KV heads, so N is the fullest stage's free memory over the KV
    bytes of one token on that stage's layers, in whole blocks of ``ctx.memory.kv_block_tokens``
    (vllm/v1/core/kv_cache_utils.py: blocks per KV-cache group x block size, the minimum over the
    pipeline stages' workers). Every layer counts as a full-attention layer here, as in that log
    line: with sliding-window layers the cache holds more sequence tokens (:func:`kv_capacity_tokens`).
    """
    counts = stage_counts(ctx.arch.layer_kinds(), list(layers_per_stage))
    coef1 = stage_coefficients(ctx, cfg, 1)
    kv_tok = kv_bytes_per_token_layer(ctx.arch, cfg.kv_cache, cfg.tp)
    block = max(1, ctx.memory.kv_block_tokens)
    best = math.inf
    for s, c in enumerate(counts):
        vals = coef1.stage_values(c, s)
        free = ctx.capacity_bytes - (vals["weights"] + vals["activations"] + vals["overhead"])
        per_block = kv_tok * sum(c.values()) * block
        if per_block > 0:
            best = min(best, max(free, 0.0) // per_block * block)
    return 0 if best == math.inf else int(best)


def max_batch_that_fits(ctx: Context, cfg: Config, layers_per_stage: list[int]) -> int:
    """Largest batch per replica whose KV cache fits every stage (0 when not even one sequence fits).

    With attention data parallelism each of the ``adp`` ranks holds its own sequences.
    """
    kinds = ctx.arch.layer_kinds()
    counts = stage_counts(kinds, layers_per_stage)
    coef1 = stage_coefficients(ctx, cfg, 1)
    kv_tok = kv_bytes_per_token_layer(ctx.arch, cfg.kv_cache, cfg.tp)
    seq = kv_tokens_held(ctx.arch, ctx.workload.input_tokens + ctx.workload.output_tokens)
    best = math.inf
    for s, c in enumerate(counts):
        vals = coef1.stage_values(c, s)
        fixed = vals["weights"] + vals["activations"] + vals["overhead"]
        free = ctx.capacity_bytes - fixed
        per_seq = kv_tok * sum(c.values()) * seq
        if free < kv_tok * sum(c.values()) * kv_tokens_held(ctx.arch, ctx.workload.model_len):
            return 0
        best = min(best, free // per_seq if per_seq > 0 else math.inf)
    return int(best) * cfg.adp if best != math.inf else ctx.limits.max_num_seqs
