"""Input models: what a user writes in an instance JSON file.

Every field carries a description; the README's format section is written from them. Models forbid
unknown keys so that a typo is an error naming the field instead of a silently ignored setting.
Cross-field checks that need the catalogs (model names, head divisibility, parameter consistency)
live in :mod:`solver.problem`, which turns a validated :class:`Instance` into a resolved problem.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

WeightDtype = Literal["bf16", "fp16", "fp8", "int8", "int4", "fp4", "mxfp4"]
KvDtype = Literal["bf16", "fp16", "fp8"]
ObjectiveName = Literal["max_throughput_per_gpu", "min_gpus", "min_tpot", "min_ttft", "min_cost", "min_cost_per_token"]
OBJECTIVE_NAMES: tuple[str, ...] = ("max_throughput_per_gpu", "min_gpus", "min_tpot", "min_ttft", "min_cost",
                                    "min_cost_per_token")
EngineName = Literal["vllm", "sglang", "trtllm"]
# An engine release: "0.19.0", "0.21", "1.0.0rc2", "0.10.1.1", optionally prefixed with "v".
ENGINE_VERSION_PATTERN = re.compile(r"v?\d{1,4}(\.\d{1,4}){0,3}((rc|a|b|\.post|\.dev)\d{1,4})?")
GpuFamily = Literal["hopper", "blackwell", "ampere", "ada", "turing", "cdna3"]

WEIGHT_DTYPES: tuple[str, ...] = ("bf16", "fp16", "fp8", "int8", "int4", "fp4", "mxfp4")
KV_DTYPES: tuple[str, ...] = ("bf16", "fp16", "fp8")


class Strict(BaseModel):
    """Base: unknown keys are errors; no silent coercion ("8" is not 8, true is not 1); finite numbers."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


# Upper bounds that keep every input physical (and the arithmetic in range): a degree above this
# many GPUs, or a sequence longer than this, is a typo, not a plan.
MAX_DEGREE = 4096
# Replica experts per MoE layer: SGLang and vLLM take any count that divides over the EP ranks; a
# few thousand bounds the search (DeepSeek's published deployments use 32 over 256 experts).
MAX_REDUNDANT_EXPERTS = 4096
MAX_TOKENS = 10_000_000


# ---------------------------------------------------------------------------------------------
# Catalog cards
# ---------------------------------------------------------------------------------------------


class ModelCard(Strict):
    """An LLM architecture: Hugging Face config.json fields plus provenance."""

    name: str = Field(description="Catalog name, e.g. 'llama3-70b-instruct'.")
    description: str = Field("", description="Free text: what the model is.")
    hf_repo: str | None = Field(None, description="Hugging Face repo id, used in launch commands.")
    source: str | None = Field(None, description="Where the config fields were read.")
    declared_params_B: float | None = Field(
        None, gt=0, description="Published total parameter count in billions; checked against the architecture (3%)."
    )
    declared_params_source: str | None = Field(None, description="Where the declared count is published.")
    declared_active_params_B: float | None = Field(
        None, gt=0, description="Published parameters active per token (MoE), in billions."
    )
    config: dict[str, Any] = Field(description="Hugging Face config.json fields (architectures, hidden_size, ...).")


class LinkSpec(Strict):
    """A GPU-to-GPU link: per-GPU, per-direction bandwidth and a per-message latency."""

    kind: str = Field("custom", description="nvlink, pcie, xgmi, infiniband, ethernet or custom (informational).")
    bandwidth_GBps: float = Field(gt=0, description="Per-GPU, per-direction bandwidth in GB/s (1e9 bytes/s).")
    latency_us: float = Field(ge=0, description="Latency per message (collective call or send) in microseconds.")


class DenseTflops(Strict):
    """Dense (no sparsity) tensor-core peak per dtype, TFLOP/s; null where not supported natively."""

    fp32: float | None = Field(None, ge=0, description="FP32 (or TF32 tensor) peak; informational.")
    fp16: float | None = Field(None, gt=0, description="FP16 tensor-core peak.")
    bf16: float | None = Field(None, gt=0, description="BF16 tensor-core peak; null on GPUs without BF16 (T4).")
    fp8: float | None = Field(None, gt=0, description="FP8 tensor-core peak; null before Hopper/Ada/CDNA3.")
    int8: float | None = Field(None, gt=0, description="INT8 tensor-core peak (TOPS).")
    fp4: float | None = Field(None, gt=0, description="FP4 tensor-core peak; Blackwell only.")


class GpuPrice(Strict):
    """What one GPU costs per hour to rent, with where and when the figure was read."""

    usd_per_gpu_hour: float = Field(gt=0, le=10_000, description="US dollars per GPU per hour.")
    kind: Literal["on-demand", "reserved", "spot", "custom"] = Field(
        "on-demand", description="Pricing model the figure is (on-demand list prices in the catalog).")
    source: str = Field(description="Where the price is published (page and the line read from it).")
    date: str = Field(description="When the price was read, YYYY-MM or YYYY-MM-DD; prices change, check before buying.")


class GpuCard(Strict):
    """An accelerator: memory, compute, bandwidth, links, and a source per figure."""

    name: str = Field(description="Catalog name, e.g. 'h100-sxm-80gb'.")
    description: str = Field("", description="Free text.")
    vendor: str = Field("nvidia", description="nvidia or amd.")
    family: GpuFamily = Field(description="Architecture family; selects the default efficiency factors.")
    memory_GiB: float = Field(gt=0, le=100_000, description="Device memory the driver reports, in GiB (2^30 bytes).")
    torch_visible_GiB: float | None = Field(
        None, gt=0, le=100_000, description="Device memory the CUDA runtime reports (torch.cuda.mem_get_info's "
        "total, what engines size their budget from), in GiB; null: the driver figure less 0.6 GiB, at most 2% "
        "of it (solver.physics.engine_memory).")
    dense_TFLOPS: DenseTflops = Field(description="Dense peak per dtype.")
    hbm_TBps: float = Field(gt=0, le=1000, description="Memory bandwidth in TB/s (1e12 bytes/s).")
    intra_node: LinkSpec = Field(description="Link between GPUs of one node.")
    inter_node: LinkSpec = Field(description="Default network between nodes, per GPU.")
    sources: dict[str, str] = Field(default_factory=dict, description="Source of each figure group.")
    price: GpuPrice | None = Field(None, description="Rental price per GPU-hour (null: none in the catalog).")

    @model_validator(mode="after")
    def _has_16bit(self) -> GpuCard:
        if self.dense_TFLOPS.fp16 is None and self.dense_TFLOPS.bf16 is None:
            raise ValueError("dense_TFLOPS needs at least one of fp16 / bf16 (the 16-bit compute peak)")
        if self.torch_visible_GiB is not None and self.torch_visible_GiB > self.memory_GiB:
            raise ValueError(f"torch_visible_GiB ({self.torch_visible_GiB:g}) cannot exceed the driver's memory_GiB "
                             f"({self.memory_GiB:g}): the CUDA runtime sees at most what the driver reports")
        return self


# ---------------------------------------------------------------------------------------------
# Instance
# ---------------------------------------------------------------------------------------------


class HfConfigRef(Strict):
    """A model given by a local Hugging Face config.json."""

    hf_config: str = Field(description="Path to config.json, relative to the instance file.")
    name: str | None = Field(None, description="Display name; defaults to the file's folder name.")
    hf_repo: str | None = Field(None, description="Repo id for launch commands.")
    declared_params_B: float | None = Field(None, gt=0, description="Published total, checked against the architecture.")


def _name_or_inline(v: Any) -> str:
    # A callable discriminator makes pydantic report errors of the one branch the data meant,
    # instead of one error per union member.
    return "inline" if isinstance(v, dict | BaseModel) else "name"


def _model_kind(v: Any) -> str:
    if isinstance(v, HfConfigRef) or (isinstance(v, dict) and "hf_config" in v):
        return "hf_config"
    return _name_or_inline(v)


GpuRef = Annotated[
    Annotated[str, Tag("name")] | Annotated[GpuCard, Tag("inline")], Discriminator(_name_or_inline)
]


class GpuOffer(Strict):
    """One GPU type on offer: its card, how many are available (nodes x GPUs per node), its price."""

    gpu: GpuRef = Field(description="GPU card name from models/gpu/ or an inline card object.")
    gpus_per_node: int = Field(8, gt=0, le=MAX_DEGREE, description="GPUs in each node.")
    nodes: int = Field(1, gt=0, le=MAX_DEGREE, description="Number of nodes available.")
    intra_node: LinkSpec | None = Field(None, description="Override of the GPU card's intra-node link.")
    inter_node: LinkSpec | None = Field(None, description="Override of the GPU card's network link.")
    price_per_gpu_hour_usd: float | None = Field(
        None, gt=0, le=10_000, description="US dollars per GPU-hour; overrides the card's catalog price.")


class ClusterSpec(Strict):
    """The GPUs available: one type in identical nodes (``gpu``), or several candidate types (``candidates``)."""

    gpu: GpuRef | None = Field(None, description="GPU card name from models/gpu/ or an inline card object.")
    gpus_per_node: int = Field(8, gt=0, le=MAX_DEGREE, description="GPUs in each node.")
    nodes: int = Field(1, gt=0, le=MAX_DEGREE, description="Number of nodes.")
    intra_node: LinkSpec | None = Field(None, description="Override of the GPU card's intra-node link.")
    inter_node: LinkSpec | None = Field(None, description="Override of the GPU card's network link.")
    price_per_gpu_hour_usd: float | None = Field(
        None, gt=0, le=10_000, description="US dollars per GPU-hour; overrides the card's catalog price.")
    candidates: list[GpuOffer] | None = Field(
        None, min_length=1, max_length=64,
        description="GPU types to choose among, each with its availability and price: the solver picks the type "
        "and count, or a mix of replicas of several types behind one router (instead of `gpu`).")
    allow_mix: bool = Field(True, description="With candidates: allow replicas of different GPU types together.")

    @model_validator(mode="after")
    def _one_kind(self) -> ClusterSpec:
        if (self.gpu is None) == (self.candidates is None):
            raise ValueError("give exactly one of gpu (one GPU type) or candidates (a list of GPU types to choose "
                             f"among); got {'both' if self.gpu is not None else 'neither'}")
        if self.candidates is not None:
            set_here = self.model_fields_set & {"gpus_per_node", "nodes", "intra_node", "inter_node",
                                                "price_per_gpu_hour_usd"}
            if set_here:
                raise ValueError(f"with candidates, give {sorted(set_here)} inside each candidate")
            names = [c.gpu if isinstance(c.gpu, str) else c.gpu.name for c in self.candidates]
            if len(set(names)) != len(names):
                raise ValueError(f"a GPU type is offered twice among the candidates: {names}")
        return self

    def offers(self) -> list[GpuOffer]:
        """The GPU types on offer: the candidates, or the one type of a plain cluster."""
        if self.candidates is not None:
            return list(self.candidates)
        return [GpuOffer(gpu=self.gpu, gpus_per_node=self.gpus_per_node, nodes=self.nodes,
                         intra_node=self.intra_node, inter_node=self.inter_node,
                         price_per_gpu_hour_usd=self.price_per_gpu_hour_usd)]


class PrecisionSpec(Strict):
    """Precisions the solver may choose among."""

    weights: list[WeightDtype] = Field(
        default_factory=lambda: ["bf16"],
        min_length=1,
        description="Weight precisions allowed: bf16, fp16, fp8 (W8A8), int8 (W8A8), int4 (weight-only, 16-bit compute), fp4, "
        "mxfp4 (routed experts only, as gpt-oss ships; FP4 compute on Blackwell, weight-only elsewhere).",
    )
    kv_cache: list[KvDtype] = Field(
        default_factory=lambda: ["bf16"], min_length=1, description="KV-cache precisions allowed: bf16, fp16, fp8."
    )

    @field_validator("weights", "kv_cache")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate entries in {v}")
        return v


class WorkloadSpec(Strict):
    """What is served: sequence lengths and load (exactly one of request_rate, concurrency, offline)."""

    input_tokens: int = Field(gt=0, le=MAX_TOKENS, description="Prompt tokens per request.")
    output_tokens: int = Field(gt=0, le=MAX_TOKENS, description="Generated tokens per request.")
    max_model_len: int | None = Field(
        None, gt=0, le=MAX_TOKENS, description="Longest sequence the engine must accept (--max-model-len); default input+output."
    )
    input_tokens_range: tuple[int, int] | None = Field(
        None, description="[min, max]: the simulator draws each prompt's length uniformly in it (input_tokens, "
        "inside the range, is the typical length the planner's linear model uses)."
    )
    output_tokens_range: tuple[int, int] | None = Field(
        None, description="[min, max] of generated tokens per request, drawn uniformly by the simulator."
    )
    trace: str | None = Field(
        None, description="A request trace for the simulator (path relative to the instance): JSONL of arrival_s, "
        "input_tokens, output_tokens, or a vLLM / SGLang benchmark result saved with per-request details. "
        "Its lengths replace the drawn ones; its arrival times replace Poisson arrivals at request_rate."
    )
    expert_loads: str | None = Field(
        None, description="A routing profile of the MoE layers (path relative to the instance; the formats of `solve "
        "experts --loads`): under EP the busiest rank of the engines' default contiguous placement sets each MoE "
        "layer's expert time. Default: evenly loaded ranks.")
    expert_placement: Literal["contiguous", "balanced"] = Field(
        "contiguous", description="With expert_loads: how the experts sit on the EP ranks. contiguous: the engines' "
        "default ranges; balanced: a load-balanced map the deployment passes to the engine (written by `solve "
        "experts`, SGLang --init-expert-location / TensorRT-LLM moe_load_balancer), charged at the imbalance of "
        "its longest-first packing, which `solve experts` never exceeds.")
    request_rate: float | None = Field(
        None, ge=1e-6, le=1e7, description="Arrivals per second over the whole deployment (1e-6 to 1e7)."
    )
    concurrency: int | None = Field(None, gt=0, le=10_000_000, description="Sequences in flight over the whole deployment.")
    offline: bool | None = Field(None, description="true: all requests queued, the engine batches as many as fit.")

    @model_validator(mode="after")
    def _one_load(self) -> WorkloadSpec:
        given = [k for k in ("request_rate", "concurrency") if getattr(self, k) is not None]
        if self.offline:
            given.append("offline")
        if len(given) != 1:
            raise ValueError(
                "give exactly one of request_rate (req/s), concurrency (sequences in flight) or offline: true; "
                f"got {given or 'none'}"
            )
        for name, typical in (("input_tokens_range", self.input_tokens), ("output_tokens_range", self.output_tokens)):
            rng = getattr(self, name)
            if rng is not None and not (1 <= rng[0] <= typical <= rng[1] <= MAX_TOKENS):
                raise ValueError(f"{name} {list(rng)} must be [min, max] with 1 <= min <= {typical} (the typical "
                                 f"length) <= max <= {MAX_TOKENS}")
        longest = max(self.input_tokens, (self.input_tokens_range or (0, 0))[1]) + \
            max(self.output_tokens, (self.output_tokens_range or (0, 0))[1])
        if self.max_model_len is not None and longest > self.max_model_len:
            raise ValueError(f"the longest request ({longest} tokens) exceeds max_model_len = {self.max_model_len}; "
                             "raise max_model_len or shorten the sequences")
        if self.max_model_len is not None and self.input_tokens + self.output_tokens > self.max_model_len:
            raise ValueError(
                f"input_tokens + output_tokens = {self.input_tokens + self.output_tokens} exceeds max_model_len = "
                f"{self.max_model_len}; raise max_model_len or shorten the sequences"
            )
        return self

    @property
    def mode(self) -> Literal["request_rate", "concurrency", "offline"]:
        """Which load description is in force."""
        if self.request_rate is not None:
            return "request_rate"
        if self.concurrency is not None:
            return "concurrency"
        return "offline"

    @property
    def model_len(self) -> int:
        """The engine's max model length (stated default: the longest input + output)."""
        longest = max(self.input_tokens, (self.input_tokens_range or (0, 0))[1]) + \
            max(self.output_tokens, (self.output_tokens_range or (0, 0))[1])
        return self.max_model_len or longest


class SloSpec(Strict):
    """Service targets; every key optional."""

    ttft_ms: float | None = Field(None, gt=0, description="Time to first token, upper bound (ms).")
    tpot_ms: float | None = Field(None, gt=0, description="Time per output token, upper bound (ms).")
    min_request_rate: float | None = Field(None, gt=0, description="Sustainable requests/s, lower bound.")
    min_output_tokens_per_s: float | None = Field(None, gt=0, description="Total output tokens/s, lower bound.")
    min_output_tokens_per_s_per_gpu: float | None = Field(
        None, gt=0, description="Output tokens/s per GPU used, lower bound."
    )
    ttft_p50_ms: float | None = Field(None, gt=0, description="Median TTFT, upper bound (ms); checked by simulation.")
    ttft_p90_ms: float | None = Field(None, gt=0, description="90th-percentile TTFT, upper bound (ms); simulated.")
    ttft_p99_ms: float | None = Field(None, gt=0, description="99th-percentile TTFT, upper bound (ms); simulated.")
    tpot_p50_ms: float | None = Field(None, gt=0, description="Median TPOT over requests, upper bound (ms); simulated.")
    tpot_p90_ms: float | None = Field(None, gt=0, description="90th-percentile TPOT, upper bound (ms); simulated.")
    tpot_p99_ms: float | None = Field(None, gt=0, description="99th-percentile TPOT, upper bound (ms); simulated.")
    e2e_p99_ms: float | None = Field(
        None, gt=0, description="99th-percentile end-to-end latency (arrival to last token), upper bound (ms); simulated."
    )

    def percentile_targets(self) -> dict[str, float]:
        """The percentile targets given, by rule name (``slo.ttft_p99_ms`` -> 1500.0)."""
        return {f"slo.{k}": v for k, v in self.model_dump().items() if k in PERCENTILE_SLOS and v is not None}


# Targets on a latency distribution: only the simulator gives them (DESIGN section 5).
PERCENTILE_SLOS = ("ttft_p50_ms", "ttft_p90_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p90_ms", "tpot_p99_ms",
                   "e2e_p99_ms")


class SimulationSpec(Strict):
    """How the engine simulator checks a plan (percentiles, queueing); defaults are stated in the output."""

    requests: int = Field(
        2000, ge=10, le=1_000_000, description="Requests simulated per plan (more: steadier percentiles, slower)."
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of the arrival and length draws.")
    enabled: bool = Field(True, description="Simulate the chosen plan and report its latency distribution.")
    max_candidates: int = Field(
        64, ge=1, le=100_000,
        description="Plans the search may simulate and cut while looking for one that meets the percentile targets.",
    )


class LimitsSpec(Strict):
    """Engine-style limits and headroom."""

    memory_utilization: float = Field(
        0.9, gt=0, le=1, description="Fraction of GPU memory the engine may use (vLLM --gpu-memory-utilization)."
    )
    max_num_seqs: int = Field(256, gt=0, le=1_000_000, description="Engine cap on sequences per scheduler: per replica, or per "
                              "attention-DP rank with attention data parallelism (vLLM default 256).")
    max_num_batched_tokens: int = Field(
        8192, gt=0, le=MAX_TOKENS, description="Tokens per engine step; sizes the activation workspace (vLLM default 8192)."
    )
    runtime_overhead_GiB: float | None = Field(
        None, ge=0, le=1024, description="Per-GPU CUDA context, graphs and comm buffers; default from the cost model."
    )
    scheduler_recv_interval: int = Field(
        1, ge=1, le=10_000, description="SGLang --scheduler-recv-interval: the scheduler takes new requests every "
        "N decode steps while sequences run (default 1: every step). SGLang only, without attention DP.")
    attention_dp_balance_iters: int = Field(
        0, ge=0, le=10_000, description="TensorRT-LLM attention_dp_config {enable_balance: true, timeout_iters: N, "
        "batching_wait_iters: 0}: new prompts wait until every attention-DP rank has one or N iterations pass "
        "(default 0: balancing off). TensorRT-LLM only, with attention DP.")
    batch_wait_timeout_iters: int = Field(
        0, ge=0, le=10_000, description="TensorRT-LLM batch_wait_timeout_iters N (with batch_wait_max_tokens_ratio): "
        "while sequences decode, new prompts are not prefilled until their tokens and the decodes reach the ratio "
        "of max_num_batched_tokens or N iterations have held them (default 0: off). TensorRT-LLM only, without "
        "attention DP.")
    batch_wait_max_tokens_ratio: float = Field(
        0.0, ge=0, le=1, description="TensorRT-LLM batch_wait_max_tokens_ratio (see batch_wait_timeout_iters; "
        "default 0: off).")


    @model_validator(mode="after")
    def _batched_tokens_cover_seqs(self) -> LimitsSpec:
        # vLLM refuses max_num_batched_tokens below max_num_seqs: a decode step needs a token per sequence.
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(
                f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be at least max_num_seqs "
                f"({self.max_num_seqs}): each decode step needs one token per sequence"
            )
        if (self.batch_wait_timeout_iters > 0) != (self.batch_wait_max_tokens_ratio > 0):
            raise ValueError(
                f"batch_wait_timeout_iters ({self.batch_wait_timeout_iters}) and batch_wait_max_tokens_ratio "
                f"({self.batch_wait_max_tokens_ratio:g}) act together: TensorRT-LLM holds new prompts only while "
                "fewer than N iterations have passed and their tokens are below the ratio; set both, or neither"
            )
        return self


class CostModelSpec(Strict):
    """Overrides of the cost model's named efficiency factors (defaults per GPU family)."""

    include: str | None = Field(
        None, description="A cost-model file written by `solve calibrate` (path relative to the instance); "
        "factors given here beside it override the file's."
    )
    compute_efficiency: float | None = Field(None, gt=0, le=1, description="Achieved / peak dense GEMM FLOP/s.")
    memory_efficiency: float | None = Field(None, gt=0, le=1, description="Achieved / peak HBM bandwidth.")
    moe_compute_efficiency: float | None = Field(
        None, gt=0, le=1, description="Expert-GEMM efficiency relative to dense GEMMs."
    )
    link_efficiency: float | None = Field(None, gt=0, le=1, description="Achieved / nominal link bandwidth.")
    step_overhead_us: float | None = Field(
        None, ge=0, le=1e6, description="Fixed time per engine step per stage (us); default per engine and GPU family."
    )
    layer_overhead_us: float | None = Field(
        None, ge=0, le=1e5, description="Fixed time per decoder layer per step (its small kernels, launch gaps), us."
    )
    token_overhead_us: float | None = Field(
        None, ge=0, le=1e5, description="Per generated token per step: the engine's output processing, us."
    )
    request_overhead_ms: float | None = Field(
        None, ge=0, le=1e5, description="Per request, from the client's send to the engine's queue (front end), ms."
    )
    kv_handoff_ms: float | None = Field(
        None, ge=0, le=1e5, description="Disaggregated serving: per request, the hand-off between the pools beyond "
        "moving the KV bytes (decode-side allocation, transfer polling, the router's second hop), ms.")
    disagg_step_overhead_us: float | None = Field(
        None, ge=0, le=1e5, description="Disaggregated serving: per step of a decode worker, the polling of the KV "
        "transfers in flight, us.")
    moe_prefill_expert_us: float | None = Field(
        None, ge=0, le=1e4, description="Per routed expert a GPU holds, per MoE layer, on a step carrying prompt "
        "tokens (grouped-GEMM and routing work per expert), us.")
    moe_layer_overhead_us: float | None = Field(
        None, ge=0, le=1e4, description="Per MoE layer per step, beyond a dense layer's: the router's top-k, the "
        "tokens' sort by expert, their activations' quantisation and the weighted combine, us.")
    allreduce_per_peer: float | None = Field(
        None, ge=0, le=100, description="Small all-reduce latency growth per peer, in multiples of the link latency."
    )


class SearchSpec(Strict):
    """The space of strategies the solver may choose from; defaults derive from the cluster."""

    tp: list[int] | None = Field(None, min_length=1, description="Tensor-parallel degrees; default 1,2,4,8 up to a node.")
    pp: list[int] | None = Field(None, min_length=1, description="Pipeline-parallel degrees; default powers of 2.")
    dp: list[int] | None = Field(None, min_length=1, description="Data-parallel replicas; default powers of 2.")
    ep: list[int] | None = Field(None, min_length=1, description="Expert-parallel degrees (MoE); default powers of "
                                 "two up to tp x attention_dp that divide the experts.")
    attention_dp: list[int] | None = Field(
        None, min_length=1, description="Attention data-parallel ranks inside a replica (MoE: each rank keeps its own "
        "sequences and KV cache, the experts span all of them); default powers of two up to a node for MoE, 1 for dense.")
    redundant_experts: list[int] | None = Field(
        None, min_length=1, description="Redundant (replica) experts in all per MoE layer, as the engines count them "
        "(SGLang --ep-num-redundant-experts): each a multiple of the EP degree it goes with. Replicas are placed by a "
        "balanced expert map (workload.expert_placement 'balanced' with workload.expert_loads); default there "
        "0, E/8 and E/4, else 0.")
    uneven_layers: bool = Field(True, description="Allow uneven layers per pipeline stage.")
    engine: EngineName = Field("vllm", description="Serving engine whose rules and launch flags apply.")
    serving: Literal["aggregated", "disaggregated", "auto"] = Field(
        "aggregated", description="aggregated: prefill and decode in every replica; disaggregated: a prefill pool "
        "and a decode pool with the KV cache shipped between them; auto: the better of the two under the objective "
        "(both reported). Disaggregated plans are searched for request-rate workloads.")
    engine_version: str | None = Field(
        None, description="Release of the engine, e.g. \"0.19.0\": sets how it counts memory (vLLM reserves CUDA-graph "
        "memory in its budget from 0.21 on); default: the engine's DEFAULT_VERSION in solver/engines/.")

    @field_validator("engine_version")
    @classmethod
    def _release_number(cls, v: str | None) -> str | None:
        if v is not None and not ENGINE_VERSION_PATTERN.fullmatch(v):
            raise ValueError(f"engine_version must be a release number such as \"0.19.0\", \"0.21\" or \"1.0.0rc2\" "
                             f"(digits separated by dots, an optional pre-release suffix); got {v!r}")
        return v

    @field_validator("redundant_experts")
    @classmethod
    def _replicas(cls, v: list[int] | None) -> list[int] | None:
        if v is not None:
            bad = [x for x in v if x < 0 or x > MAX_REDUNDANT_EXPERTS]
            if bad:
                raise ValueError(f"redundant experts must be integers from 0 to {MAX_REDUNDANT_EXPERTS}; got {bad}")
            if len(set(v)) != len(v):
                raise ValueError(f"duplicate values in {v}")
        return v

    @field_validator("tp", "pp", "dp", "ep", "attention_dp")
    @classmethod
    def _positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None:
            bad = [x for x in v if x <= 0 or x > MAX_DEGREE]
            if bad:
                raise ValueError(f"degrees must be integers from 1 to {MAX_DEGREE}; got {bad}")
            if len(set(v)) != len(v):
                raise ValueError(f"duplicate degrees in {v}")
        return v


class StrategyPins(Strict):
    """A proposed strategy, whole or partial: each given field is pinned."""

    tp: int | None = Field(None, gt=0, le=MAX_DEGREE, description="Tensor-parallel degree.")
    pp: int | None = Field(None, gt=0, le=MAX_DEGREE, description="Pipeline stages.")
    dp: int | None = Field(None, gt=0, le=MAX_DEGREE, description="Data-parallel replicas.")
    ep: int | None = Field(None, gt=0, le=MAX_DEGREE, description="Expert-parallel degree.")
    attention_dp: int | None = Field(None, gt=0, le=MAX_DEGREE,
                                     description="Attention data-parallel ranks inside a replica (MoE).")
    redundant_experts: int | None = Field(None, ge=0, le=MAX_REDUNDANT_EXPERTS,
                                          description="Redundant (replica) experts in all per MoE layer (MoE, EP).")
    weights: WeightDtype | None = Field(None, description="Weight precision.")
    kv_cache: KvDtype | None = Field(None, description="KV-cache precision.")
    layers_per_stage: list[int] | None = Field(None, min_length=1, description="Decoder layers on each stage.")
    max_num_seqs: int | None = Field(None, gt=0, le=1_000_000, description="Sequences per replica the engine batches.")

    @field_validator("layers_per_stage")
    @classmethod
    def _positive_layers(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and any(x <= 0 for x in v):
            raise ValueError(f"every stage needs at least one layer; got {v}")
        return v

    @model_validator(mode="after")
    def _pp_matches(self) -> StrategyPins:
        if self.layers_per_stage is not None and self.pp is not None and len(self.layers_per_stage) != self.pp:
            raise ValueError(f"layers_per_stage has {len(self.layers_per_stage)} stages but pp = {self.pp}")
        return self

    def is_empty(self) -> bool:
        """True when nothing is pinned."""
        return all(v is None for v in self.model_dump().values())


class ExpectSpec(Strict):
    """A recorded verdict, for batch regression (``solve instances/ --check``).

    Written by ``solve PATH... --update-expected``; a user may edit ``rel_tol`` (kept on update) or
    ``error_contains``. Absent keys are not checked.
    """

    status: Literal["optimal", "feasible", "infeasible", "unknown", "error"] = Field(
        description="Expected status; 'error' for an instance that must be rejected as bad input (exit 2)."
    )
    strategy: dict[str, Any] | None = Field(
        None, description="Expected strategy fields (tp, pp, dp, ep, weights, kv_cache, max_num_seqs)."
    )
    layers_per_stage: list[int] | None = Field(None, description="Expected split.")
    objective: float | None = Field(None, description="Expected objective value (in the objective's own unit).")
    metrics: dict[str, float] | None = Field(
        None, description="Expected key metrics (ttft_ms, tpot_ms, output_tokens_per_s_per_gpu)."
    )
    rel_tol: float = Field(0.01, ge=0, description="Relative tolerance on objective and metrics.")
    conflict_rules: list[str] | None = Field(
        None, description="Expected rule names of the first conflict of an infeasibility proof (order ignored)."
    )
    error_contains: str | None = Field(
        None, description="With status 'error': a stable substring the bad-input message must contain."
    )


class Instance(Strict):
    """One planning problem."""

    name: str = Field(description="Free text: what this instance is.")
    description: str = Field("", description="Where the numbers come from and what the instance checks.")
    model: Annotated[
        Annotated[str, Tag("name")] | Annotated[ModelCard, Tag("inline")] | Annotated[HfConfigRef, Tag("hf_config")],
        Discriminator(_model_kind),
    ] = Field(
        description="Model card name, an inline card, or {'hf_config': 'path/config.json'}."
    )
    cluster: ClusterSpec = Field(description="The GPUs.")
    precision: PrecisionSpec = Field(default_factory=PrecisionSpec, description="Allowed precisions.")
    workload: WorkloadSpec = Field(description="Sequence lengths and load.")
    slo: SloSpec = Field(default_factory=SloSpec, description="Service targets.")
    limits: LimitsSpec = Field(default_factory=LimitsSpec, description="Engine limits and headroom.")
    cost_model: CostModelSpec = Field(default_factory=CostModelSpec, description="Efficiency overrides.")
    simulation: SimulationSpec = Field(default_factory=SimulationSpec, description="Engine simulator settings.")
    search: SearchSpec = Field(default_factory=SearchSpec, description="Strategy search space.")
    objective: ObjectiveName = Field("max_throughput_per_gpu", description="What to optimise.")
    strategy: StrategyPins = Field(default_factory=StrategyPins, description="Pinned strategy fields.")
    expect: ExpectSpec | None = Field(None, description="Recorded verdict for regression runs.")
