"""A parallel configuration, the resolved hardware and an instance's fixed cost-model inputs; GPU layout.

GPUs are numbered replicas outermost, then pipeline stages, then TP ranks, so TP groups stay inside
a node and a stage boundary crosses nodes only where the numbering does.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..input.catalog import Architecture
from ..input.schema import GpuCard, LimitsSpec, LinkSpec, WorkloadSpec
from .efficiency import Efficiency
from .engine_memory import LEGACY_MEMORY, MemoryConventions, torch_visible_GiB

GiB = 2**30
GB = 1e9
# Decoder layer kinds: an MoE model mixes dense and expert layers (DeepSeek-V3: 3 dense, then MoE).
# Decoder-layer kinds: "dense16" is a dense layer whose MLP the checkpoint keeps in 16-bit (Meta's
# Llama-3.1-405B-Instruct-FP8 leaves its first and last layers unquantised); it costs as "dense"
# unless the plan serves that checkpoint's precision.
KINDS = ("dense", "moe", "dense16")


@dataclass(frozen=True, order=True)
class Config:
    """A parallel configuration and precision (the layer split is separate)."""

    tp: int
    pp: int
    dp: int
    ep: int
    weights: str
    kv_cache: str
    # Attention data parallelism inside a replica (MoE): ``adp`` attention groups of ``tp`` GPUs per
    # stage, each with its own sequences and KV cache, share the routed experts, which are split
    # over all ``tp x adp`` GPUs of the stage (``ep`` expert-parallel groups of ``tp x adp / ep``).
    adp: int = 1
    # Redundant experts in all (replicas of hot experts under a balanced expert map), as the engines
    # count them (SGLang --ep-num-redundant-experts, vLLM EPLB num_redundant_experts): a multiple of
    # ep (a rule), so every EP rank holds E / ep + redundant / ep experts.
    redundant: int = 0

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp * self.adp

    @property
    def moe_group(self) -> int:
        """GPUs of one stage that share the routed experts: the TP group times attention-DP ranks."""
        return self.tp * self.adp

    @property
    def replica_gpus(self) -> int:
        """GPUs of one replica (an engine instance): stages x TP x attention-DP ranks."""
        return self.tp * self.pp * self.adp

    def worker_label(self) -> str:
        """One worker's (replica's) layout: ``tp=4 pp=1``, with its attention-DP ranks and EP degree where used."""
        extra = (f" attention_dp={self.adp}" if self.adp > 1 else "") + (f" ep={self.ep}" if self.ep > 1 else "") + \
            (f" redundant_experts={self.redundant}" if self.redundant else "")
        return f"tp={self.tp} pp={self.pp}{extra}"

    def label(self) -> str:
        ep = (f",ep={self.ep}" if self.ep > 1 else "") + \
            (f",redundant_experts={self.redundant}" if self.redundant else "")
        adp = f",attention_dp={self.adp}" if self.adp > 1 else ""
        return f"tp={self.tp},pp={self.pp},dp={self.dp}{adp}{ep},weights={self.weights},kv={self.kv_cache}"


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
    # What the engine release counts against its budget (solver.engines.<engine>.memory_conventions).
    memory: MemoryConventions = LEGACY_MEMORY
    # Busiest-over-mean EP rank load per EP degree and redundant experts (in all), from
    # workload.expert_loads (physics.experts); empty: the ranks are evenly loaded.
    expert_imbalance: tuple[tuple[int, int, float], ...] = ()

    def ep_imbalance(self, ep: int, redundant: int = 0) -> float:
        """The busiest EP rank's expert load over the mean, for ``ep`` ranks holding ``redundant``
        replicas between them (1.0 when not known)."""
        return next((f for e, r, f in self.expert_imbalance if (e, r) == (ep, redundant)), 1.0)

    @property
    def device_GiB(self) -> float:
        """Device memory the engine sizes its budget from: the CUDA runtime's total (torch-visible)."""
        return torch_visible_GiB(self.hw.gpu)

    @property
    def capacity_bytes(self) -> float:
        """Usable bytes per GPU: the torch-visible device memory x memory_utilization (vLLM's
        ``requested_memory``; not the driver's larger total)."""
        return self.device_GiB * GiB * self.limits.memory_utilization

    @property
    def decode_context_tokens(self) -> float:
        """Mean context a decode step attends over: the prompt plus half the output."""
        return self.workload.input_tokens + self.workload.output_tokens / 2


def gpu_index(cfg: Config, replica: int, stage: int, tp_rank: int) -> int:
    """Global GPU id: replicas outermost, then stages, then the stage's TP x attention-DP ranks."""
    return (replica * cfg.pp + stage) * cfg.moe_group + tp_rank


def boundary_link(ctx: Context, cfg: Config, stage: int) -> LinkSpec:
    """The link between stage ``stage`` and the next one (the network when they sit on two nodes)."""
    g = ctx.hw.gpus_per_node
    a = gpu_index(cfg, 0, stage, 0) // g
    b = gpu_index(cfg, 0, stage + 1, 0) // g
    return ctx.hw.intra if a == b else ctx.hw.inter


def stage_counts(kinds: tuple[str, ...], layers_per_stage: list[int]) -> list[dict[str, int]]:
    """Layers of each kind on each stage for a contiguous split."""
    present = set(kinds)
    if len(present) == 1:  # one kind (most models): the counts are the split itself
        (only,) = present
        return [{k: n if k == only else 0 for k in KINDS} for n in layers_per_stage]
    out, start = [], 0
    for n in layers_per_stage:
        seg = kinds[start : start + n]
        out.append({k: seg.count(k) for k in KINDS})
        start += n
    return out


def even_split(layers: int, pp: int) -> list[int]:
    """vLLM's default partition: equal shares, the remainder on the stages before the last."""
    base = layers // pp
    parts = [base] * pp
    for i in range(2, layers % pp + 2):
        parts[-i] += 1
    return parts


def packs_in_nodes(gpus: int, gpus_per_node: int) -> bool:
    """Whether workers of ``gpus`` GPUs pack into nodes: a divisor of a node, or whole nodes.

    With sizes in a chain of divisors (powers of two), any total within the nodes then fits them,
    which the capacity and disaggregation models rely on.
    """
    return (gpus_per_node % gpus == 0) if gpus <= gpus_per_node else (gpus % gpus_per_node == 0)


def redundant_ok(cfg: Config) -> bool:
    """Whether the replica experts divide over the EP ranks (each rank the same number of slots)."""
    return cfg.redundant == 0 or (cfg.ep > 1 and cfg.redundant % cfg.ep == 0)


def attention_dp_packs(cfg: Config, gpus_per_node: int) -> bool:
    """Whether a stage's ``tp x adp`` GPUs (the ranks sharing its experts) pack into nodes."""
    return cfg.adp == 1 or packs_in_nodes(cfg.moe_group, gpus_per_node)


def replica_seq_cap(max_num_seqs: int, cfg: Config) -> int:
    """Sequences one replica may run: the engine cap is per scheduler, and with attention data
    parallelism every one of the ``adp`` ranks schedules its own (vLLM ``--max-num-seqs`` per DP
    rank, TensorRT-LLM ``max_batch_size`` per attention-DP rank)."""
    return max_num_seqs * cfg.adp


def moe_tp(cfg: Config) -> int:
    """Ranks each routed expert is TP-split over: the stage's tp x adp GPUs over the EP groups."""
    return max(1, cfg.moe_group // max(1, cfg.ep))


def fp8_blocks_whole(a: Architecture, cfg: Config) -> bool:
    """Whether every TP shard of a block-FP8 checkpoint holds whole quantisation blocks.

    Engines load block-quantised FP8 weights (DeepSeek-V3's 128 x 128 blocks) only when each
    shard's output dimension is a multiple of the block: the routed experts' intermediate size over
    their TP ranks (``moe_tp``), the dense MLP's over ``tp``. E.g. Qwen3-235B-A22B-FP8 (1536 / 8 =
    192) cannot run MoE-TP 8; EP 8 keeps whole experts. Other precisions have no such rule.
    """
    b = a.fp8_block
    if not b or cfg.weights != "fp8" or a.checkpoint_dtype != "fp8":
        return True
    if a.is_moe and a.moe_intermediate and (a.moe_intermediate // moe_tp(cfg)) % b:
        return False
    return not ("dense" in a.layer_kinds() and a.intermediate and (a.intermediate // cfg.tp) % b)
