"""Time of one decoder layer on one GPU: a roofline of compute and HBM bytes, plus communication."""

from __future__ import annotations

from dataclasses import dataclass

from ..input.catalog import Architecture
from ..input.schema import LinkSpec
from .efficiency import Efficiency
from .layout import GB, Config, Context
from .memory import (
    kv_bytes_per_token_layer,
    layer_weight_bytes_per_gpu,
    routed_expert_bytes_per_gpu,
)
from .params import layer_params
from .precision import ACT_BYTES, compute_dtype, peak_tflops


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

    def time_s(self, tokens: float, context: float = 0.0, pairs: float = 0.0) -> float:
        """Seconds for a step of ``tokens`` tokens, ``context`` decode keys and ``pairs`` prefill pairs."""
        t = self.fixed_s + tokens * self.per_token_s + context * self.per_context_s + pairs * self.per_pair_s
        if self.experts_s:
            t += self.experts_s * experts_touched_fraction(tokens, self.top_k, self.experts)
        return t

    def __add__(self, other: LayerCost) -> LayerCost:
        if self.experts_s and other.experts_s and (self.top_k, self.experts) != (other.top_k, other.experts):
            raise ValueError("cannot add expert costs of different routing")
        routed = self if self.experts_s else other
        return LayerCost(self.fixed_s + other.fixed_s, self.per_token_s + other.per_token_s,
                         self.per_context_s + other.per_context_s, self.per_pair_s + other.per_pair_s,
                         self.experts_s + other.experts_s, routed.top_k, routed.experts)

    def scaled(self, n: float) -> LayerCost:
        """``n`` copies of this cost (n layers of a kind)."""
        return LayerCost(self.fixed_s * n, self.per_token_s * n, self.per_context_s * n, self.per_pair_s * n,
                         self.experts_s * n, self.top_k, self.experts)


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


def layer_cost(ctx: Context, kind: str, cfg: Config) -> LayerCost:
    """Roofline cost of one decoder layer on one GPU of the TP group, with its communication."""
    a, gpu, eff = ctx.arch, ctx.hw.gpu, ctx.eff
    lp = layer_params(a, kind)
    tp = cfg.tp
    # An unsupported dtype (rejected by the weights_supported rule) is costed at the 16-bit peak
    # so that a proposed strategy still gets a full report.
    peak = (peak_tflops(gpu, compute_dtype(gpu, cfg.weights)) or peak_tflops(gpu, "bf16")) * 1e12 * eff.compute
    peak16 = peak_tflops(gpu, "bf16") * 1e12 * eff.compute
    bw = gpu.hbm_TBps * 1e12 * eff.memory
    link_bw = ctx.hw.intra.bandwidth_GBps * GB * eff.link
    dense_params = (lp.attn_split + lp.mlp + lp.shared) / tp + lp.attn_replicated
    expert_params_active = lp.expert * a.top_k / tp  # per token, balanced over the TP group
    expert_bytes_all = routed_expert_bytes_per_gpu(a, kind, cfg)
    static_bytes = layer_weight_bytes_per_gpu(a, kind, cfg) - expert_bytes_all
    kv_layer = kv_bytes_per_token_layer(a, cfg.kv_cache, tp)
    # Query heads always split evenly over TP (a rule), so each rank does 1/tp of the attention.
    attn_dec = _attention_flops_per_token(a, 1.0, True) / tp / peak16
    attn_pf = _attention_flops_per_token(a, 1.0, False) / tp / peak16
    per_token = 2 * dense_params / peak + kv_layer / bw
    if lp.experts:
        per_token += 2 * expert_params_active / (peak * eff.moe_compute)
    fixed = static_bytes / bw + eff.layer_overhead_s
    if tp > 1:
        # Two all-reduces per layer (after attention and after the MLP), ring bytes 2 (n-1)/n.
        fixed += 2 * allreduce_latency_s(tp, ctx.hw.intra, eff)
        per_token += 2 * 2 * (tp - 1) / tp * a.hidden * ACT_BYTES / link_bw
    if lp.experts and cfg.ep > 1:
        # Dispatch and combine: each token's top_k activations, (n-1)/n of them to other ranks.
        fixed += 2 * ctx.hw.intra.latency_us * 1e-6
        per_token += 2 * (cfg.ep - 1) / cfg.ep * a.top_k * a.hidden * ACT_BYTES / cfg.ep / link_bw
    return LayerCost(
        fixed_s=fixed,
        per_token_s=per_token,
        per_context_s=kv_layer / bw + attn_dec,
        per_pair_s=attn_pf,
        experts_s=expert_bytes_all / bw if lp.experts else 0.0,
        top_k=a.top_k if lp.experts else 0,
        experts=lp.experts,
    )


def lm_head_cost(ctx: Context, cfg: Config) -> LayerCost:
    """Final norm, vocab-parallel LM head (16-bit) and sampling on the last stage, per sampled token."""
    a, eff = ctx.arch, ctx.eff
    peak16 = peak_tflops(ctx.hw.gpu, "bf16") * 1e12 * eff.compute
    bw = ctx.hw.gpu.hbm_TBps * 1e12 * eff.memory
    nbytes = a.vocab * a.hidden * 2.0 / cfg.tp
    # Logits in FP32 are written and read back by the sampler (vocab / tp per rank, gathered); the
    # engine then processes each generated token (detokenise, stream, bookkeeping) on its CPU.
    per_token = 2 * a.vocab * a.hidden / cfg.tp / peak16 + a.vocab * 4.0 * 2 / bw + eff.token_overhead_s
    return LayerCost(fixed_s=nbytes / bw, per_token_s=per_token, per_context_s=0.0, per_pair_s=0.0)


def send_cost(ctx: Context, link: LinkSpec) -> LayerCost:
    """Point-to-point send of each token's activations to the next pipeline stage."""
    link_bw = link.bandwidth_GBps * GB * ctx.eff.link
    return LayerCost(fixed_s=link.latency_us * 1e-6, per_token_s=ctx.arch.hidden * ACT_BYTES / link_bw,
                     per_context_s=0.0, per_pair_s=0.0)
