"""Time of one decoder layer on one GPU: a roofline of compute and HBM bytes, plus communication."""

from __future__ import annotations

from dataclasses import dataclass

from ..input.catalog import Architecture
from ..input.schema import LinkSpec
from .efficiency import Efficiency
from .layout import GB, Config, Context
from .memory import kv_bytes_per_token_layer, layer_weight_bytes_per_gpu
from .params import layer_params
from .precision import ACT_BYTES, COMPUTE_DTYPE, WEIGHT_BYTES, peak_tflops


def allreduce_s(nbytes: float, ranks: int, link: LinkSpec, eff: Efficiency) -> float:
    """Ring all-reduce: a latency per call plus 2 (n-1)/n of the message over the link."""
    if ranks <= 1:
        return 0.0
    return link.latency_us * 1e-6 + 2 * (ranks - 1) / ranks * nbytes / (link.bandwidth_GBps * GB * eff.link)


def alltoall_s(nbytes_per_gpu: float, ranks: int, link: LinkSpec, eff: Efficiency) -> float:
    """All-to-all: each GPU sends (n-1)/n of its tokens' activations to the other ranks."""
    if ranks <= 1:
        return 0.0
    return link.latency_us * 1e-6 + (ranks - 1) / ranks * nbytes_per_gpu / (link.bandwidth_GBps * GB * eff.link)


def send_s(nbytes: float, link: LinkSpec, eff: Efficiency) -> float:
    """Point-to-point send of activations between pipeline stages."""
    return link.latency_us * 1e-6 + nbytes / (link.bandwidth_GBps * GB * eff.link)


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
class LayerTime:
    """Time of one layer on one GPU: a decode step, and a prefill's latency and work."""

    decode_s: float
    prefill_latency_s: float
    prefill_work_s: float


def layer_time(ctx: Context, kind: str, cfg: Config, micro_batch: float) -> LayerTime:
    """Roofline time of one decoder layer on one GPU of the TP group, with its communication."""
    a, gpu, eff = ctx.arch, ctx.hw.gpu, ctx.eff
    lp = layer_params(a, kind)
    tp = cfg.tp
    # An unsupported dtype (rejected by the weights_supported rule) is costed at the 16-bit peak
    # so that a proposed strategy still gets a full report.
    peak = (peak_tflops(gpu, COMPUTE_DTYPE[cfg.weights]) or peak_tflops(gpu, "bf16")) * 1e12 * eff.compute
    peak16 = peak_tflops(gpu, "bf16") * 1e12 * eff.compute
    bw = gpu.hbm_TBps * 1e12 * eff.memory
    dense_params = (lp.attn_split + lp.mlp + lp.shared) / tp + lp.attn_replicated
    expert_params_active = lp.expert * a.top_k / tp  # per token, balanced over the TP group
    wbytes = WEIGHT_BYTES[cfg.weights]
    static_bytes = layer_weight_bytes_per_gpu(a, kind, cfg) - lp.expert * lp.experts / tp * wbytes
    expert_bytes_all = lp.expert * lp.experts / tp * wbytes
    kv_layer = kv_bytes_per_token_layer(a, cfg.kv_cache, tp)
    intra = ctx.hw.intra

    def compute_s(tokens: float, context: float, decode: bool) -> float:
        dense = 2 * tokens * dense_params / peak
        moe = 2 * tokens * expert_params_active / (peak * eff.moe_compute) if lp.experts else 0.0
        # Query heads always split evenly over TP (a rule), so each rank does 1/tp of the attention.
        attn = tokens * _attention_flops_per_token(a, context, decode) / tp / peak16
        return dense + moe + attn

    def comm_s(tokens: float) -> float:
        t = 2 * allreduce_s(tokens * a.hidden * ACT_BYTES, tp, intra, eff)
        if lp.experts and cfg.ep > 1:
            per_gpu = tokens * a.top_k * a.hidden * ACT_BYTES / cfg.ep
            t += 2 * alltoall_s(per_gpu, cfg.ep, intra, eff)
        return t

    # Decode: one micro-batch, each sequence attending over the mean context.
    b = micro_batch
    touched = experts_touched_fraction(b, a.top_k, lp.experts)
    dec_bytes = static_bytes + expert_bytes_all * touched + b * ctx.decode_context_tokens * kv_layer
    # GEMMs and attention run as separate kernels one after another, so a decode step pays its
    # compute time and its memory time (no overlap across them); this never beats the roofline.
    # Taking max() instead over-predicted balanced rows by 30-80% (benchmarks/fidelity.py).
    decode = compute_s(b, ctx.decode_context_tokens, True) + dec_bytes / bw + comm_s(b)

    # Prefill of one request: causal attention over half the prompt on average.
    n = ctx.workload.input_tokens
    pf_compute = compute_s(n, n / 2, False)
    touched_pf = experts_touched_fraction(n, a.top_k, lp.experts)
    pf_bytes = static_bytes + expert_bytes_all * touched_pf + n * kv_layer
    pf_comm = comm_s(n)
    return LayerTime(
        decode_s=decode,
        prefill_latency_s=max(pf_compute, pf_bytes / bw) + pf_comm,
        prefill_work_s=pf_compute + pf_comm,
    )


def lm_head_time(ctx: Context, cfg: Config, micro_batch: float) -> LayerTime:
    """Final norm and vocab-parallel LM head on the last stage (16-bit), logits for sampled tokens."""
    a, eff = ctx.arch, ctx.eff
    peak16 = peak_tflops(ctx.hw.gpu, "bf16") * 1e12 * eff.compute
    bw = ctx.hw.gpu.hbm_TBps * 1e12 * eff.memory
    nbytes = a.vocab * a.hidden * 2.0 / cfg.tp
    flops_per_token = 2 * a.vocab * a.hidden / cfg.tp
    dec = max(micro_batch * flops_per_token / peak16, nbytes / bw)
    one = max(flops_per_token / peak16, nbytes / bw)  # prefill samples only its last token
    return LayerTime(decode_s=dec, prefill_latency_s=one, prefill_work_s=flops_per_token / peak16)
