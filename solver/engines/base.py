"""What every engine back-end reads: the plan and the instance's engine-facing settings, as plain data."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..input.schema import GpuCard
from ..physics import Config, even_split


def release_tuple(version: str) -> tuple[int, ...]:
    """A release number as integers for ordering: "v0.21.0rc1" -> (0, 21, 0); a pre-release
    counts as its release (the feature it is checked for ships in its release candidates)."""
    numbers = re.match(r"v?(\d+(?:\.\d+)*)", version)
    if numbers is None:
        raise ValueError(f"not a release number: {version!r}")
    parts = tuple(int(x) for x in numbers.group(1).split("."))
    return parts + (0,) * (3 - len(parts)) if len(parts) < 3 else parts


@dataclass(frozen=True)
class LaunchInput:
    """A plan and the settings its launch command carries (built by the report from a problem)."""

    repo: str  # Hugging Face repo id (or the model's name when the card has none)
    cfg: Config
    layers_per_stage: tuple[int, ...]
    num_layers: int
    max_num_seqs: int
    max_model_len: int
    max_num_batched_tokens: int
    memory_utilization: float
    gpu: GpuCard
    gpus_per_node: int
    checkpoint_dtype: str = "bf16"  # what the repository's weights are (config.json quantization_config)
    kv_free_fraction: float = 0.9  # KV share of the memory left after weights and buffers (TensorRT-LLM)
    scheduler_recv_interval: int = 1  # SGLang --scheduler-recv-interval (limits.scheduler_recv_interval)
    attention_dp_balance_iters: int = 0  # TensorRT-LLM attention-DP balancing timeout (0: off)
    batch_wait_timeout_iters: int = 0  # TensorRT-LLM batch waiting (limits.batch_wait_*; 0: off)
    batch_wait_max_tokens_ratio: float = 0.0
    # With a balanced expert placement under EP: the `solve experts` command that writes the map
    # the engine loads (its --sglang-out / --trtllm-out file name added per engine); None otherwise.
    expert_map_command: str | None = None

    @property
    def nodes_used(self) -> int:
        """Nodes the plan's GPUs span (GPUs are numbered node by node)."""
        return (self.cfg.gpus + self.gpus_per_node - 1) // self.gpus_per_node

    @property
    def no_bf16(self) -> bool:
        """The GPU has no BF16 tensor cores (T4): 16-bit plans are costed and served in FP16."""
        return self.gpu.dense_TFLOPS.bf16 is None

    @property
    def serves_16bit_as_fp16(self) -> bool:
        """A BF16 weight or KV-cache choice that this GPU must run as FP16."""
        return self.no_bf16 and (self.cfg.weights == "bf16" or self.cfg.kv_cache == "bf16")

    def model(self) -> tuple[str, bool]:
        """The checkpoint to serve, and whether the engine must quantise it online (FP8 from 16-bit).

        The plan's weight precision is what is served: the repository itself when it ships in it;
        FP8 made online from a 16-bit repository (vLLM and SGLang ``--quantization fp8``); else a
        checkpoint of that format, which the user picks: a placeholder says which kind.
        """
        w, have = self.cfg.weights, self.checkpoint_dtype
        if w == have or (w in ("bf16", "fp16") and have in ("bf16", "fp16")):
            return self.repo, False
        if w == "fp8" and have in ("bf16", "fp16"):
            return self.repo, True
        kind = {"bf16": "BF16", "fp16": "FP16", "fp8": "FP8", "int8": "W8A8 INT8", "int4": "AWQ or GPTQ INT4",
                "fp4": "NVFP4", "mxfp4": "MXFP4"}[w]
        return f"<a {kind} checkpoint of {self.repo}>", False

    @property
    def uneven(self) -> bool:
        """The split differs from the engines' even default partition."""
        return self.cfg.pp > 1 and list(self.layers_per_stage) != even_split(self.num_layers, self.cfg.pp)
