"""Time of one decoder layer on one GPU: a roofline of compute and HBM bytes, plus communication."""

from __future__ import annotations

from dataclasses import dataclass

from ..input.catalog import Architecture
from ..input.schema import LinkSpec
from .efficiency import Efficiency
from .layout import GB, Config, Context, moe_tp
from .memory import (
    kv_bytes_per_token_layer,
    layer_weight_bytes_per_gpu,
    routed_expert_bytes_per_gpu,
)
from .params import layer_params
from .precision import ACT_BYTES, FUSED_ROUTING_WEIGHTS, compute_dtype, peak_tflops


def experts_touched_fraction(tokens: float, top_k: int, experts: int) -> float:
    """Expected fraction of routed experts that at least one of ``tokens`` routes to (uniform routing)."""
    if experts == 0:
        return 0.0
    return 1.0 - (1.0 - top_k / experts) ** tokens


def _attention_flops_per_token(a: Architecture, context: float, decode: bool) -> float:
    """Score and value FLOPs for one token attending over ``context`` tokens (whole model width)."""
    if a.is_mla:
        if decode:  # absorbed MLA attends in the latent space
            width = 2 * a.kv_lora_rank + a.qk_rope_head_dim
        else:
            width = a.qk_nope_head_dim + a.qk_rope_head_dim + a.v_head_dim
        return 2 * a.heads * width * context
    return 4 * a.heads * a.head_dim * context


@dataclass(frozen=True)
class LayerCost:
    """Time of one decoder layer (or any stage component) on one GPU, as a function of an engine step.

    ``time_s(tokens, context, pairs)`` = ``fixed_s + tokens * per_token_s + context * per_context_s
    + pairs * per_pair_s + experts_s * touched(tokens)``, where ``tokens`` is every token the step
    processes (one per decoding sequence plus the prefill chunk), ``context`` the keys the decoding
    sequences attend to in total, and ``pairs`` the (query, key) pairs of the prefill chunk's causal
    attention. GEMMs and attention run as separate kernels one after another, so a step pays its
    compute time and its memory time (no overlap across them); this never beats the roofline.
    Taking max() instead over-predicted balanced rows by 30-80% (benchmarks/fidelity.py). The fixed
    part includes the layer's small kernels (norms, rotary, activation, residual, activation
    quantisation) at their least time, which the measured small-batch steps show; a floor under the
    whole layer instead (max(floor, work)) missed the latency rows by 20% TPOT.
    """

    fixed_s: float  # weights read once per step, per-layer launch gaps, collective latencies
    per_token_s: float  # GEMM FLOPs, the token's KV write, collective bytes
    per_context_s: float  # KV read and attention FLOPs per key a decoding sequence attends to
    per_pair_s: float  # prefill attention FLOPs per (query, key) pair
    experts_s: float = 0.0  # reading every routed expert once, charged by the fraction touched
    top_k: int = 0
    experts: int = 0
    prefill_fixed_s: float = 0.0  # what a step pays once when it carries prompt tokens (pairs > 0)

    def time_s(self, tokens: float, context: float = 0.0, pairs: float = 0.0) -> float:
        """Seconds for a step of ``tokens`` tokens, ``context`` decode keys and ``pairs`` prefill pairs."""
        t = self.fixed_s + tokens * self.per_token_s + context * self.per_context_s + pairs * self.per_pair_s
        if self.experts_s:
            t += self.experts_s * experts_touched_fraction(tokens, self.top_k, self.experts)
        if pairs > 0:
            t += self.prefill_fixed_s
        return t

    def __add__(self, other: LayerCost) -> LayerCost:
        if self.experts_s and other.experts_s and (self.top_k, self.experts) != (other.top_k, other.experts):
            raise ValueError("cannot add expert costs of different routing")
        routed = self if self.experts_s else other
        return LayerCost(self.fixed_s + other.fixed_s, self.per_token_s + other.per_token_s,
                         self.per_context_s + other.per_context_s, self.per_pair_s + other.per_pair_s,
                         self.experts_s + other.experts_s, routed.top_k, routed.experts,
                         self.prefill_fixed_s + other.prefill_fixed_s)

    def scaled(self, n: float) -> LayerCost:
        """``n`` copies of this cost (n layers of a kind)."""
        return LayerCost(self.fixed_s * n, self.per_token_s * n, self.per_context_s * n, self.per_pair_s * n,
                         self.experts_s * n, self.top_k, self.experts, self.prefill_fixed_s * n)


ZERO_COST = LayerCost(0.0, 0.0, 0.0, 0.0)


def causal_pairs(chunk: float, prior: float = 0.0) -> float:
    """(query, key) pairs of a causal prefill chunk of ``chunk`` tokens after ``prior`` cached tokens."""
    return chunk * (prior + (chunk + 1) / 2)


def allreduce_latency_s(ranks: int, link: LinkSpec, eff: Efficiency) -> float:
    """Latency of one small all-reduce: the link's per-message latency plus a cost per peer.

    Engines use one-shot / two-shot all-reduce kernels for the small messages of decode (vLLM
    custom all-reduce, TensorRT-LLM's AllReduce plugin, NCCL's low-latency protocols): every rank
    exchanges with every other, so the time grows with the ranks (``eff.allreduce_per_peer``).
    """
    if ranks <= 1:
        return 0.0
    return link.latency_us * 1e-6 * (1 + eff.allreduce_per_peer * (ranks - 1))


def layer_cost(ctx: Context, kind: str, cfg: Config, balanced: bool = True) -> LayerCost:
    """Roofline cost of one decoder layer on one GPU of the TP group, with its communication.

    The step's ``tokens``, ``context`` and ``pairs`` are the replica's. With attention data
    parallelism (``cfg.adp`` ranks) each attention rank processes its share of them
    (``balanced``: 1/adp, the ranks' sequences spread evenly; otherwise all of them on one rank,
    as a lone prompt's prefill runs), while the routed experts of the whole stage see every token:
    attention, dense MLP and shared experts are charged per rank, expert GEMMs over ``tp x adp``.
    """
    a, gpu, eff = ctx.arch, ctx.hw.gpu, ctx.eff
    lp = layer_params(a, kind)
    tp = cfg.tp
    share = 1.0 / cfg.adp if balanced else 1.0  # of the replica's tokens on the busiest attention rank
    # An unsupported dtype (rejected by the weights_supported rule) is costed at the 16-bit peak
    # so that a proposed strategy still gets a full report.
    peak = (peak_tflops(gpu, compute_dtype(gpu, cfg.weights)) or peak_tflops(gpu, "bf16")) * 1e12 * eff.compute
    peak16 = peak_tflops(gpu, "bf16") * 1e12 * eff.compute
    bw = gpu.hbm_TBps * 1e12 * eff.memory
    link_bw = ctx.hw.intra.bandwidth_GBps * GB * eff.link
    dense_params = (lp.attn_split + lp.mlp + lp.shared) / tp + lp.attn_replicated
    expert_params_active = lp.expert * a.top_k / cfg.moe_group  # per token, balanced over the stage's GPUs
    expert_bytes_all = routed_expert_bytes_per_gpu(a, kind, cfg)
    static_bytes = layer_weight_bytes_per_gpu(a, kind, cfg) - expert_bytes_all
    kv_layer = kv_bytes_per_token_layer(a, cfg.kv_cache, tp)
    # Query heads always split evenly over TP (a rule), so each rank does 1/tp of the attention.
    attn_dec = _attention_flops_per_token(a, 1.0, True) / tp / peak16
    attn_pf = _attention_flops_per_token(a, 1.0, False) / tp / peak16
    per_token = (2 * dense_params / peak + kv_layer / bw) * share
    if lp.experts:
        # Under EP the layer waits for the busiest rank's tokens (workload.expert_loads).
        busiest = ctx.ep_imbalance(cfg.ep, cfg.redundant) if cfg.ep > 1 else 1.0
        per_token += 2 * expert_params_active / (peak * eff.moe_compute) * busiest
    fixed = static_bytes / bw + eff.layer_overhead_s
    if lp.experts and cfg.weights not in FUSED_ROUTING_WEIGHTS:
        fixed += eff.moe_layer_overhead_s
    if tp > 1:
        # Two all-reduces per layer (after attention and after the MLP), ring bytes 2 (n-1)/n.
        fixed += 2 * allreduce_latency_s(tp, ctx.hw.intra, eff)
        per_token += 2 * 2 * (tp - 1) / tp * a.hidden * ACT_BYTES / link_bw * share
    if lp.experts and cfg.adp == 1 and cfg.ep > 1:
        # Inside one TP group the tokens are on every rank already; EP exchanges among its ep
        # groups: each token's top_k activations, (n-1)/n of them to other ranks, dispatch and combine.
        fixed += 2 * ctx.hw.intra.latency_us * 1e-6
        per_token += 2 * (cfg.ep - 1) / cfg.ep * a.top_k * a.hidden * ACT_BYTES / cfg.ep / link_bw
    elif lp.experts and cfg.adp > 1:
        # With attention DP the stage's n = tp x adp GPUs exchange tokens for the experts, across
        # nodes when n is larger than a node. EP (ep groups of whole experts): dispatch and combine
        # all-to-all, each GPU sends its n-th of the tokens' top_k activations, (ep-1)/ep of them
        # away. MoE-TP (moe_tp ranks split each expert): every rank of a group needs all the tokens
        # routed to the group, an all-gather and a reduce-scatter of min(top_k, ep) / ep of the
        # replica's tokens. Pure TP over n GPUs moves n / top_k times the bytes of pure EP.
        n, ep, mtp = cfg.moe_group, cfg.ep, moe_tp(cfg)
        link = ctx.hw.intra if n <= ctx.hw.gpus_per_node else ctx.hw.inter
        bw_link = link.bandwidth_GBps * GB * eff.link
        fixed += 2 * link.latency_us * 1e-6
        moved = 0.0
        if ep > 1:
            moved += 2 * a.top_k / n * (ep - 1) / ep
        if mtp > 1:
            moved += 2 * min(a.top_k, ep) / ep * (mtp - 1) / mtp
        per_token += moved * a.hidden * ACT_BYTES / bw_link
    return LayerCost(
        fixed_s=fixed,
        per_token_s=per_token,
        per_context_s=(kv_layer / bw + attn_dec) * share,
        per_pair_s=attn_pf * share,
        experts_s=expert_bytes_all / bw if lp.experts else 0.0,
        top_k=a.top_k if lp.experts else 0,
        experts=lp.experts,
        # Each GPU holds (a slice of) experts / ep routed experts (and its redundant slots); a prompt
        # touches all of them.
        prefill_fixed_s=eff.moe_prefill_expert_s * (lp.experts + cfg.redundant) / cfg.ep if lp.experts else 0.0,
    )


def lm_head_cost(ctx: Context, cfg: Config) -> LayerCost:
    """Final norm, vocab-parallel LM head (16-bit) and sampling on the last stage, per sampled token."""
    a, eff = ctx.arch, ctx.eff
    peak16 = peak_tflops(ctx.hw.gpu, "bf16") * 1e12 * eff.compute
    bw = ctx.hw.gpu.hbm_TBps * 1e12 * eff.memory
    nbytes = a.vocab * a.hidden * 2.0 / cfg.tp
    # Logits in FP32 are written and read back by the sampler (vocab / tp per rank, gathered); the
    # engine then processes each generated token (detokenise, stream, bookkeeping) on its CPU. Each
    # attention-DP rank samples its own sequences.
    per_token = (2 * a.vocab * a.hidden / cfg.tp / peak16 + a.vocab * 4.0 * 2 / bw + eff.token_overhead_s) / cfg.adp
    return LayerCost(fixed_s=nbytes / bw, per_token_s=per_token, per_context_s=0.0, per_pair_s=0.0)


def send_cost(ctx: Context, link: LinkSpec) -> LayerCost:
    """Point-to-point send of each token's activations to the next pipeline stage."""
    link_bw = link.bandwidth_GBps * GB * ctx.eff.link
    return LayerCost(fixed_s=link.latency_us * 1e-6, per_token_s=ctx.arch.hidden * ACT_BYTES / link_bw,
                     per_context_s=0.0, per_pair_s=0.0)
