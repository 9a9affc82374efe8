"""What every engine back-end reads: the plan and the instance's engine-facing settings, as plain data."""

from __future__ import annotations

from dataclasses import dataclass

from ..input.schema import GpuCard
from ..physics import Config, even_split


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

    @property
    def uneven(self) -> bool:
        """The split differs from the engines' even default partition."""
        return self.cfg.pp > 1 and list(self.layers_per_stage) != even_split(self.num_layers, self.cfg.pp)
