"""The exact cost model: parameters, bytes, memory, time and serving metrics.

This module is the specification. The CP-SAT coefficients (:mod:`solver.options`), the verifier and
the report all come from these functions; it never imports ortools. Units are in names: bytes,
seconds (``_s``), GiB, GB/s. Every constant says why and where it comes from.

Serving model (per data-parallel replica, B sequences in flight, pp stages):

* a decode step of one micro-batch of ``B / pp`` sequences on stage s takes ``t_dec[s]``;
* one request's prefill occupies stage s for ``pf_work[s]`` (compute; weight reads are shared with
  the decode batch under chunked prefill) and, alone, takes ``pf_lat[s]`` (roofline) to pass it;
* in the time ``D`` in which B requests complete, the busiest stage runs B prefills and
  ``O * pp`` micro-batch decode steps: ``D = max_s (B * pf_work[s] + O * pp * t_dec[s])``;
* TPOT = D / O (mean time between a sequence's tokens, other sequences' prefills included);
  TTFT = sum_s pf_lat[s] + one decode cycle (pp * max_s t_dec[s]) spent waiting for a step slot;
  throughput = B * O / D per replica, times dp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .catalog import Architecture
from .schema import CostModelSpec, GpuCard, LimitsSpec, LinkSpec, WorkloadSpec

GiB = 2**30
GB = 1e9

# ---------------------------------------------------------------------------------------------
# Precision
# ---------------------------------------------------------------------------------------------

# Bytes per quantised linear-layer parameter. Embedding, LM head, norms and router stay 16-bit,
# as in the FP8 / AWQ / NVFP4 checkpoints engines load (e.g. nvidia/*-FP8 keep lm_head in BF16).
WEIGHT_BYTES: dict[str, float] = {
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,  # per-tensor / per-channel scales are negligible
    "int8": 1.0,
    # AWQ/GPTQ int4: a 16-bit scale and a 4-bit zero point per group of 128 weights.
    "int4": 0.5 + (2.0 + 0.5) / 128,
    # NVFP4: one FP8 scale per block of 16 weights (NVIDIA Blackwell NVFP4 format).
    "fp4": 0.5 + 1.0 / 16,
}
KV_BYTES: dict[str, float] = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0}
ACT_BYTES = 2.0  # activations travel in 16-bit between layers and GPUs

# Which tensor-core peak a weight precision computes at. int4 is weight-only (dequantised to
# 16-bit before the GEMM, as AWQ/GPTQ kernels do); the others are W8A8 / W4A4 GEMMs.
COMPUTE_DTYPE: dict[str, str] = {"bf16": "bf16", "fp16": "fp16", "fp8": "fp8", "int8": "int8", "int4": "fp16",
                                 "fp4": "fp4"}


def peak_tflops(gpu: GpuCard, dtype: str) -> float | None:
    """Dense peak TFLOP/s for a compute dtype; 16-bit falls back between bf16 and fp16.

    Engines run BF16 checkpoints in FP16 on GPUs without BF16 (vLLM casts with a warning on T4),
    so a 16-bit precision is never unsupported; FP8 / INT8 / FP4 need native tensor cores.
    """
    t = gpu.dense_TFLOPS
    if dtype in ("bf16", "fp16"):
        return getattr(t, dtype) or t.fp16 or t.bf16
    return getattr(t, dtype)


def weight_dtype_supported(gpu: GpuCard, dtype: str) -> bool:
    """True when the GPU can compute with weights of ``dtype``."""
    return peak_tflops(gpu, COMPUTE_DTYPE[dtype]) is not None


def kv_dtype_supported(gpu: GpuCard, dtype: str) -> bool:
    """FP8 KV cache needs Ampere or newer in the engines' attention kernels (not Turing)."""
    return dtype != "fp8" or gpu.family != "turing"


# ---------------------------------------------------------------------------------------------
# Efficiency factors (named, overridable per instance through `cost_model`)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Efficiency:
    """Achieved fractions of peak, and fixed per-step costs, for one GPU family."""

    compute: float  # achieved / peak dense GEMM FLOP/s
    memory: float  # achieved / peak HBM bandwidth on weight and KV streaming
    moe_compute: float  # expert-GEMM efficiency relative to dense GEMMs (grouped GEMMs, routing)
    link: float  # achieved / nominal link bandwidth for collectives
    step_overhead_s: float  # per engine step per stage: launch, scheduling, sampling


# Calibrated against the calibration data's performance rows (benchmarks/fidelity.py prints the
# per-row error), a grid over (compute, memory) per family with decode = compute + memory time:
# hopper (96 rows: H100 SXM / H200, TensorRT-LLM FP8, m0401-m0420, m0431-m0450, m0461-m0499,
#   m0507-m0513, m0529-m0536): compute 0.60, memory 0.85 -> median |error| 5.7%.
# blackwell (30 rows: B200, NVFP4, m0421-m0430, m0451-m0460, m0502-m0506, m0514-m0518): compute
#   0.40 (FP4 GEMMs reach a smaller share of their doubled peak), memory 0.70 -> 5.0%.
# moe_compute, link and step overhead moved no row by more than ~1.5 points: kept at priors.
# Families without rows (ampere, ada, turing, cdna3) take Hopper's memory factor and a compute
# factor lowered where kernels are less tuned (turing; cdna3 under ROCm): priors, not fits.
EFFICIENCY_BY_FAMILY: dict[str, Efficiency] = {
    "hopper": Efficiency(compute=0.60, memory=0.85, moe_compute=0.55, link=0.70, step_overhead_s=300e-6),
    "blackwell": Efficiency(compute=0.40, memory=0.70, moe_compute=0.55, link=0.70, step_overhead_s=300e-6),
    "ampere": Efficiency(compute=0.60, memory=0.85, moe_compute=0.55, link=0.70, step_overhead_s=400e-6),
    "ada": Efficiency(compute=0.55, memory=0.85, moe_compute=0.55, link=0.60, step_overhead_s=400e-6),
    "turing": Efficiency(compute=0.50, memory=0.80, moe_compute=0.50, link=0.60, step_overhead_s=500e-6),
    "cdna3": Efficiency(compute=0.45, memory=0.75, moe_compute=0.50, link=0.60, step_overhead_s=400e-6),
}


def efficiency_for(gpu: GpuCard, spec: CostModelSpec | None = None) -> Efficiency:
    """The family defaults with the instance's overrides applied."""
    base = EFFICIENCY_BY_FAMILY[gpu.family]
    if spec is None:
        return base
    return Efficiency(
        compute=spec.compute_efficiency or base.compute,
        memory=spec.memory_efficiency or base.memory,
        moe_compute=spec.moe_compute_efficiency or base.moe_compute,
        link=spec.link_efficiency or base.link,
        step_overhead_s=base.step_overhead_s if spec.step_overhead_us is None else spec.step_overhead_us * 1e-6,
    )


# Runtime memory outside weights, KV and activations, per GPU. m0690 (vLLM startup log, 80 GB GPU)
# shows 0.16 GiB of non-torch memory after start-up; CUDA graphs for the decode batch sizes and the
# cuBLAS workspace add about 0.5 GiB (vLLM logs "Graph capturing finished ... 0.4-0.6 GiB").
RUNTIME_OVERHEAD_SINGLE_GiB = 0.75
# NCCL and custom all-reduce buffers when the GPU communicates (vLLM custom all-reduce registers
# 8 MiB x ranks buffers; NCCL channels take a few hundred MiB).
RUNTIME_OVERHEAD_COMM_GiB = 0.5
# Activation workspace multiplier over the live tensors of one layer at max_num_batched_tokens,
# covering intermediate copies and allocator fragmentation. Public vLLM start-up logs ("PyTorch
# activation peak memory takes ...") show 1.19 GiB for Llama-3-8B at 8192 batched tokens and
# 6.90 GiB for a 32B model at tp=1 and 32768 tokens; 1.5 over-covers both (1.66 and ~8 GiB).
# Calibration row m0690 (2.38 GiB, reliability C, model identity inferred) is not matched.
ACTIVATION_FACTOR = 1.5
# The sampler holds logits, probabilities and sort buffers in FP32 for every sequence in the batch.
SAMPLER_FP32_COPIES = 4


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerParams:
    """Parameter counts of one decoder layer, split by how they shard and quantise."""

    attn_split: float  # attention projections split across TP ranks (quantised)
    attn_replicated: float  # projections every TP rank holds whole (MLA down-projections; KV heads < TP)
    small: float  # norms and biases (16-bit, replicated)
    mlp: float  # dense gated MLP (quantised, TP-split)
    shared: float  # shared experts (quantised, TP-split)
    expert: float  # one routed expert (quantised)
    experts: int  # routed experts in this layer
    router: float  # router (16-bit, replicated)

    @property
    def total(self) -> float:
        return self.attn_split + self.attn_replicated + self.small + self.mlp + self.shared + self.expert * self.experts + self.router

    def active(self, top_k: int) -> float:
        """Parameters a token touches."""
        return self.attn_split + self.attn_replicated + self.small + self.mlp + self.shared + self.expert * top_k + self.router


def _attention_params(a: Architecture) -> tuple[float, float, float]:
    """(TP-split projections, projections replicated on every rank at TP=1 shapes, norms+biases)."""
    h = a.hidden
    if a.is_mla:
        qk_head = a.qk_nope_head_dim + a.qk_rope_head_dim
        if a.q_lora_rank:
            q_down = h * a.q_lora_rank
            q_up = a.q_lora_rank * a.heads * qk_head
            norms = a.q_lora_rank
        else:
            q_down, q_up, norms = 0, h * a.heads * qk_head, 0
        kv_down = h * (a.kv_lora_rank + a.qk_rope_head_dim)
        kv_up = a.kv_lora_rank * a.heads * (a.qk_nope_head_dim + a.v_head_dim)
        o = a.heads * a.v_head_dim * h
        # vLLM keeps the low-rank down-projections replicated (ReplicatedLinear) and splits the
        # per-head up-projections and o_proj.
        return q_up + kv_up + o, q_down + kv_down, norms + a.kv_lora_rank + 2 * h
    q = h * a.heads * a.head_dim
    kv = 2 * h * a.kv_heads * a.head_dim
    o = a.heads * a.head_dim * h
    small = 2 * h  # input and post-attention RMSNorm
    if a.attention_bias:
        small += a.heads * a.head_dim + 2 * a.kv_heads * a.head_dim
    if a.qk_norm:
        small += 2 * a.head_dim
    return q + kv + o, 0.0, small


def layer_params(a: Architecture, kind: str) -> LayerParams:
    """Parameter counts of a 'dense' or 'moe' decoder layer."""
    split, repl, small = _attention_params(a)
    h = a.hidden
    if kind == "dense":
        return LayerParams(split, repl, small, 3 * h * a.intermediate, 0.0, 0.0, 0, 0.0)
    router = h * a.experts + (a.experts if a.router_bias else 0)
    return LayerParams(
        split, repl, small, 0.0, 3 * h * a.shared_intermediate, 3 * h * a.moe_intermediate, a.experts, router
    )


@dataclass(frozen=True)
class ParamCounts:
    """Whole-model parameter counts."""

    total: float
    active: float
    embedding: float
    lm_head: float  # zero when tied to the embedding
    per_kind: dict[str, float] = field(default_factory=dict)


def param_counts(a: Architecture) -> ParamCounts:
    """Total and active parameters from the architecture (embedding and LM head included)."""
    kinds = a.layer_kinds()
    embedding = a.vocab * a.hidden
    lm_head = 0.0 if a.tie_embeddings else a.vocab * a.hidden
    final_norm = a.hidden
    total = embedding + lm_head + final_norm
    active = total
    per_kind: dict[str, float] = {}
    for kind in set(kinds):
        lp = layer_params(a, kind)
        n = kinds.count(kind)
        per_kind[kind] = lp.total
        total += n * lp.total
        active += n * lp.active(a.top_k)
    return ParamCounts(total=total, active=active, embedding=embedding, lm_head=lm_head, per_kind=per_kind)


# ---------------------------------------------------------------------------------------------
# Configuration and per-GPU bytes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Config:
    """A parallel configuration and precision (the layer split is separate)."""

    tp: int
    pp: int
    dp: int
    ep: int
    weights: str
    kv_cache: str

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp

    def label(self) -> str:
        ep = f",ep={self.ep}" if self.ep > 1 else ""
        return f"tp={self.tp},pp={self.pp},dp={self.dp}{ep},weights={self.weights},kv={self.kv_cache}"


def kv_heads_per_gpu(a: Architecture, tp: int) -> float:
    """KV heads each TP rank stores: they split when TP <= KV heads and replicate beyond."""
    return max(a.kv_heads / tp, 1.0)


def kv_bytes_per_token_layer(a: Architecture, kv_dtype: str, tp: int = 1) -> float:
    """KV-cache bytes per token per layer on one GPU.

    GQA: 2 (K and V) x KV heads on the GPU x head dim x bytes. MLA: the compressed latent plus the
    decoupled RoPE key, (kv_lora_rank + qk_rope_head_dim) x bytes, replicated on every TP rank.
    """
    b = KV_BYTES[kv_dtype]
    if a.is_mla:
        return (a.kv_lora_rank + a.qk_rope_head_dim) * b
    return 2 * kv_heads_per_gpu(a, tp) * a.head_dim * b


def kv_bytes_per_token(a: Architecture, kv_dtype: str, tp: int = 1) -> float:
    """KV-cache bytes per token over all layers, on one GPU of a TP group."""
    return a.layers * kv_bytes_per_token_layer(a, kv_dtype, tp)


def layer_weight_bytes_per_gpu(a: Architecture, kind: str, cfg: Config) -> float:
    """Weight bytes one GPU holds for one decoder layer.

    TP splits heads and MLP columns; EP splits routed experts over ``ep`` groups of ``tp / ep``
    ranks, each group TP-splitting its experts, so a GPU holds 1/tp of all routed experts.
    """
    lp = layer_params(a, kind)
    wb = WEIGHT_BYTES[cfg.weights]
    tp = cfg.tp
    attn_split = lp.attn_split
    attn_repl = lp.attn_replicated
    if not a.is_mla and a.kv_heads < tp:
        # K/V projections replicate beyond the KV-head count: each rank holds one KV head.
        kv_full = 2 * a.hidden * a.kv_heads * a.head_dim
        attn_split -= kv_full
        attn_repl += kv_full * kv_heads_per_gpu(a, tp) / a.kv_heads * tp
    quantised = attn_split / tp + attn_repl + (lp.mlp + lp.shared + lp.expert * lp.experts) / tp
    return quantised * wb + (lp.small + lp.router) * 2.0


def embedding_bytes_per_gpu(a: Architecture, tp: int) -> float:
    """Vocab-parallel input embedding on the first stage (16-bit)."""
    return a.vocab * a.hidden * 2.0 / tp


def lm_head_bytes_per_gpu(a: Architecture, tp: int, pp: int) -> float:
    """Vocab-parallel LM head on the last stage (16-bit) plus the final norm.

    A tied head costs nothing extra at pp=1; with pp>1 the last stage holds its own copy.
    """
    head = 0.0 if (a.tie_embeddings and pp == 1) else a.vocab * a.hidden * 2.0 / tp
    return head + a.hidden * 2.0


def activation_bytes(a: Architecture, tp: int, limits: LimitsSpec) -> float:
    """Peak activation workspace per GPU during the profiling step of max_num_batched_tokens."""
    q_out = a.heads * (a.qk_nope_head_dim + a.qk_rope_head_dim if a.is_mla else a.head_dim)
    kv_out = (a.kv_lora_rank + a.qk_rope_head_dim) if a.is_mla else 2 * a.kv_heads * a.head_dim
    ffn = max(a.intermediate, a.top_k * a.moe_intermediate + a.shared_intermediate)
    per_token = ACT_BYTES * (4 * a.hidden + (q_out + kv_out + 2 * ffn) / tp)
    sampler = limits.max_num_seqs * a.vocab / tp * 4.0 * SAMPLER_FP32_COPIES
    return limits.max_num_batched_tokens * per_token * ACTIVATION_FACTOR + sampler


def runtime_overhead_bytes(cfg: Config, limits: LimitsSpec) -> float:
    """CUDA context, graphs, cuBLAS and communication buffers per GPU."""
    if limits.runtime_overhead_GiB is not None:
        return limits.runtime_overhead_GiB * GiB
    comm = RUNTIME_OVERHEAD_COMM_GiB if cfg.tp * cfg.pp > 1 else 0.0
    return (RUNTIME_OVERHEAD_SINGLE_GiB + comm) * GiB


def kv_tokens_per_replica(batch: int, workload: WorkloadSpec) -> int:
    """KV tokens one replica must hold for ``batch`` sequences.

    Every sequence may reach input + output tokens (no preemption), and the engine refuses to
    start unless one sequence of max_model_len fits.
    """
    return max(batch * (workload.input_tokens + workload.output_tokens), workload.model_len)


# ---------------------------------------------------------------------------------------------
# Context: everything fixed for one instance
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hardware:
    """The resolved cluster."""

    gpu: GpuCard
    gpus_per_node: int
    nodes: int
    intra: LinkSpec
    inter: LinkSpec

    @property
    def total_gpus(self) -> int:
        return self.gpus_per_node * self.nodes


@dataclass(frozen=True)
class Context:
    """An instance's fixed inputs to the cost model."""

    arch: Architecture
    hw: Hardware
    workload: WorkloadSpec
    limits: LimitsSpec
    eff: Efficiency

    @property
    def capacity_bytes(self) -> float:
        """Usable bytes per GPU: device memory x memory_utilization."""
        return self.hw.gpu.memory_GiB * GiB * self.limits.memory_utilization

    @property
    def decode_context_tokens(self) -> float:
        """Mean context a decode step attends over: the prompt plus half the output."""
        return self.workload.input_tokens + self.workload.output_tokens / 2


# ---------------------------------------------------------------------------------------------
# Time
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------


def gpu_index(cfg: Config, replica: int, stage: int, tp_rank: int) -> int:
    """Global GPU id: replicas outermost, then stages, then TP ranks (TP groups stay in a node)."""
    return (replica * cfg.pp + stage) * cfg.tp + tp_rank


def boundary_link(ctx: Context, cfg: Config, stage: int) -> LinkSpec:
    """The link between stage ``stage`` and the next one (the network when they sit on two nodes)."""
    g = ctx.hw.gpus_per_node
    a = gpu_index(cfg, 0, stage, 0) // g
    b = gpu_index(cfg, 0, stage + 1, 0) // g
    return ctx.hw.intra if a == b else ctx.hw.inter


# ---------------------------------------------------------------------------------------------
# Per-stage coefficients: the linear model shared by CP-SAT and the verifier
# ---------------------------------------------------------------------------------------------

KINDS = ("dense", "moe")


@dataclass(frozen=True)
class StageCoefficients:
    """For one configuration and batch: the per-stage costs, linear in the layers a stage holds.

    A stage's value of any quantity is ``per_layer[kind] * layers_of_kind + first/last extras +
    per-stage constant``. Bytes are per GPU; times in seconds.
    """

    cfg: Config
    batch: int  # sequences in flight per replica
    micro_batch: float
    mem_per_layer: dict[str, float]  # weights + KV bytes
    weight_per_layer: dict[str, float]
    kv_per_layer: dict[str, float]
    dec_per_layer: dict[str, float]
    pf_lat_per_layer: dict[str, float]
    pf_work_per_layer: dict[str, float]
    mem_first: float  # embedding
    mem_last: float  # LM head (+ final norm)
    mem_const: float  # activations + runtime overhead
    act_bytes: float
    overhead_bytes: float
    dec_last: float
    pf_lat_last: float
    pf_work_last: float
    dec_const: float  # per-step overhead
    send_dec: tuple[float, ...]  # per stage boundary s -> s+1 (len pp-1)
    send_pf: tuple[float, ...]

    def stage_values(self, counts: dict[str, int], stage: int) -> dict[str, float]:
        """Memory (bytes) and times (s) of stage ``stage`` holding ``counts`` layers of each kind."""
        pp = self.cfg.pp
        first, last = stage == 0, stage == pp - 1
        mem_w = sum(self.weight_per_layer[k] * counts.get(k, 0) for k in KINDS)
        mem_kv = sum(self.kv_per_layer[k] * counts.get(k, 0) for k in KINDS)
        extra_w = (self.mem_first if first else 0.0) + (self.mem_last if last else 0.0)
        send_dec = 0.0 if last else self.send_dec[stage]
        send_pf = 0.0 if last else self.send_pf[stage]
        return {
            "weights": mem_w + extra_w,
            "kv_cache": mem_kv,
            "activations": self.act_bytes,
            "overhead": self.overhead_bytes,
            "memory": mem_w + extra_w + mem_kv + self.mem_const,
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


def stage_coefficients(ctx: Context, cfg: Config, batch: int) -> StageCoefficients:
    """Per-stage linear coefficients for ``cfg`` with ``batch`` sequences per replica."""
    a = ctx.arch
    micro = batch / cfg.pp
    kinds = set(a.layer_kinds())
    tokens = kv_tokens_per_replica(batch, ctx.workload)
    weight = {k: layer_weight_bytes_per_gpu(a, k, cfg) if k in kinds else 0.0 for k in KINDS}
    kv = {k: tokens * kv_bytes_per_token_layer(a, cfg.kv_cache, cfg.tp) if k in kinds else 0.0 for k in KINDS}
    times = {k: layer_time(ctx, k, cfg, micro) for k in kinds}
    zero = LayerTime(0.0, 0.0, 0.0)
    head = lm_head_time(ctx, cfg, micro)
    act = activation_bytes(a, cfg.tp, ctx.limits)
    overhead = runtime_overhead_bytes(cfg, ctx.limits)
    send_dec = tuple(send_s(micro * a.hidden * ACT_BYTES, boundary_link(ctx, cfg, s), ctx.eff) for s in range(cfg.pp - 1))
    send_pf = tuple(
        send_s(ctx.workload.input_tokens * a.hidden * ACT_BYTES, boundary_link(ctx, cfg, s), ctx.eff)
        for s in range(cfg.pp - 1)
    )
    return StageCoefficients(
        cfg=cfg,
        batch=batch,
        micro_batch=micro,
        mem_per_layer={k: weight[k] + kv[k] for k in KINDS},
        weight_per_layer=weight,
        kv_per_layer=kv,
        dec_per_layer={k: times.get(k, zero).decode_s for k in KINDS},
        pf_lat_per_layer={k: times.get(k, zero).prefill_latency_s for k in KINDS},
        pf_work_per_layer={k: times.get(k, zero).prefill_work_s for k in KINDS},
        mem_first=embedding_bytes_per_gpu(a, cfg.tp),
        mem_last=lm_head_bytes_per_gpu(a, cfg.tp, cfg.pp),
        mem_const=act + overhead,
        act_bytes=act,
        overhead_bytes=overhead,
        dec_last=head.decode_s,
        pf_lat_last=head.prefill_latency_s,
        pf_work_last=head.prefill_work_s,
        dec_const=ctx.eff.step_overhead_s,
        send_dec=send_dec,
        send_pf=send_pf,
    )


def stage_counts(kinds: tuple[str, ...], layers_per_stage: list[int]) -> list[dict[str, int]]:
    """Layers of each kind on each stage for a contiguous split."""
    out, start = [], 0
    for n in layers_per_stage:
        seg = kinds[start : start + n]
        out.append({k: seg.count(k) for k in KINDS})
        start += n
    return out


# ---------------------------------------------------------------------------------------------
# Serving metrics
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metrics:
    """Predicted serving figures of one placement at its batch."""

    ttft_ms: float
    tpot_ms: float
    decode_step_ms: float  # one decode cycle through the pipeline, prefill excluded
    cycle_s: float  # D: time in which `batch` requests complete on one replica
    output_tokens_per_s: float  # capacity of the whole deployment at this batch
    output_tokens_per_s_per_gpu: float
    max_request_rate: float  # requests/s the deployment sustains at this batch
    batch_per_replica: int
    gpus: int


def serving_metrics(coef: StageCoefficients, stages: list[dict[str, float]], workload: WorkloadSpec) -> Metrics:
    """TTFT, TPOT and throughput from per-stage values (see the module docstring for the model)."""
    cfg = coef.cfg
    out = workload.output_tokens
    dec = np.array([s["decode_s"] for s in stages])
    pf_lat = np.array([s["pf_lat_s"] for s in stages])
    pf_work = np.array([s["pf_work_s"] for s in stages])
    cycle = float(np.max(coef.batch * pf_work + out * cfg.pp * dec))
    decode_cycle = cfg.pp * float(np.max(dec))
    ttft = float(np.sum(pf_lat)) + decode_cycle
    thr_replica = coef.batch * out / cycle
    total = thr_replica * cfg.dp
    return Metrics(
        ttft_ms=ttft * 1e3,
        tpot_ms=cycle / out * 1e3,
        decode_step_ms=decode_cycle * 1e3,
        cycle_s=cycle,
        output_tokens_per_s=total,
        output_tokens_per_s_per_gpu=total / cfg.gpus,
        max_request_rate=cfg.dp * coef.batch / cycle,
        batch_per_replica=coef.batch,
        gpus=cfg.gpus,
    )


def max_batch_that_fits(ctx: Context, cfg: Config, layers_per_stage: list[int]) -> int:
    """Largest batch per replica whose KV cache fits every stage (0 when not even one sequence fits)."""
    kinds = ctx.arch.layer_kinds()
    counts = stage_counts(kinds, layers_per_stage)
    coef1 = stage_coefficients(ctx, cfg, 1)
    kv_tok = kv_bytes_per_token_layer(ctx.arch, cfg.kv_cache, cfg.tp)
    seq = ctx.workload.input_tokens + ctx.workload.output_tokens
    best = math.inf
    for s, c in enumerate(counts):
        vals = coef1.stage_values(c, s)
        fixed = vals["weights"] + vals["activations"] + vals["overhead"]
        free = ctx.capacity_bytes - fixed
        per_seq = kv_tok * sum(c.values()) * seq
        if free < kv_tok * sum(c.values()) * ctx.workload.model_len:
            return 0
        best = min(best, free // per_seq if per_seq > 0 else math.inf)
    return int(best) if best != math.inf else ctx.limits.max_num_seqs


def even_split(layers: int, pp: int) -> list[int]:
    """vLLM's default partition: equal shares, the remainder on the stages before the last."""
    base = layers // pp
    parts = [base] * pp
    for i in range(2, layers % pp + 2):
        parts[-i] += 1
    return parts
