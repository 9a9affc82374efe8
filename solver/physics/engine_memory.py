"""Memory as the serving engine counts it: the device total it sees, buffers outside PyTorch, CUDA graphs.

An engine sizes its KV cache from a budget: ``memory_utilization`` x the device total *as the CUDA
runtime reports it* (what PyTorch's ``torch.cuda.mem_get_info`` returns), less what its start-up
profile measures: weights, the activation peak of one step, the memory allocated outside PyTorch
during that step (NCCL and custom all-reduce buffers, kernel modules), and, in recent vLLM, an
estimate of the CUDA graphs it will capture. What each engine counts, by version, is data of
:mod:`solver.engines` (``memory_conventions``); this module holds its shape and the rule for the
device total, which is the same for every engine. It imports no other physics module.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..input.schema import GpuCard

GiB = 2**30

# The driver (nvidia-smi) total includes memory the CUDA runtime never hands out; engines size
# their budget from the runtime's total (vLLM: ``init_snapshot.total_memory`` from
# torch.cuda.mem_get_info, vllm/v1/worker/gpu_worker.py init_device: ``requested_memory =
# total_memory * gpu_memory_utilization``). Measured on cards that carry ``torch_visible_GiB``:
# H100 SXM 80GB 81559 MiB = 79.65 GiB -> 79.19 GiB (0.46 GiB less; vLLM 0.19 logs, llm-d-planner),
# L40S 46068 MiB = 44.99 GiB -> 44.42 GiB (0.57 GiB less; vllm-project/vllm#15815): a reservation of
# about half a GiB whatever the card's size. A card without the measured figure is taken
# DRIVER_RESERVED_GiB below its driver total, at most DRIVER_RESERVED_MAX_FRACTION of it (so that a
# small card, such as the inline ones of the tests, keeps most of its memory).
DRIVER_RESERVED_GiB = 0.6
DRIVER_RESERVED_MAX_FRACTION = 0.02


def driver_reserved_GiB(memory_GiB: float) -> float:
    """What the CUDA runtime does not report of a driver total of ``memory_GiB``, by the rule above."""
    return min(DRIVER_RESERVED_GiB, DRIVER_RESERVED_MAX_FRACTION * memory_GiB)


def torch_visible_GiB(gpu: GpuCard) -> float:
    """Device memory the CUDA runtime (and so PyTorch and the engine) sees, in GiB.

    The card's measured ``torch_visible_GiB`` when it has one, else the driver's ``memory_GiB``
    less :func:`driver_reserved_GiB`.
    """
    if gpu.torch_visible_GiB is not None:
        return gpu.torch_visible_GiB
    return gpu.memory_GiB - driver_reserved_GiB(gpu.memory_GiB)


@dataclass(frozen=True)
class MemoryConventions:
    """What one engine release counts against its memory budget, besides weights, KV and activations.

    Non-PyTorch memory per GPU is ``non_torch_base_GiB`` on every stage, plus
    ``non_torch_sampler_GiB`` on the stage that holds the LM head and runs the sampler, plus
    ``non_torch_tp_GiB`` when the GPU is in a TP group (tp > 1), or ``non_torch_pp_GiB`` when it
    only sends to other pipeline stages (tp = 1, pp > 1). CUDA graphs count only where the engine
    reserves them inside its budget: ``cuda_graph_base_GiB`` per GPU plus
    ``cuda_graph_per_layer_GiB`` per decoder layer on it (zero where they live outside the budget).
    ``kv_block_tokens``: the cache is allocated in blocks of this many tokens (its reported size is
    a multiple of it). ``profiled_sampler``: the activation peak is the engine's profiling step, whose
    last stage runs the sampler over the whole vocabulary (vLLM); else the earlier rule of
    :func:`solver.physics.memory.activation_bytes` (forward plus a TP-split sampler, every stage).
    """

    engine: str
    version: str
    non_torch_base_GiB: float
    non_torch_sampler_GiB: float
    non_torch_tp_GiB: float
    non_torch_pp_GiB: float
    cuda_graph_base_GiB: float = 0.0
    cuda_graph_per_layer_GiB: float = 0.0
    kv_block_tokens: int = 1
    profiled_sampler: bool = False
    summary: str = ""  # one line for the report's defaults: what the release counts and why

    @property
    def cuda_graphs_in_budget(self) -> bool:
        """The engine reserves CUDA-graph memory inside its budget (before sizing the KV cache)."""
        return self.cuda_graph_base_GiB > 0 or self.cuda_graph_per_layer_GiB > 0

    def non_torch_GiB(self, tp: int, pp: int, last_stage: bool) -> float:
        """Memory allocated outside PyTorch's allocator on one GPU, GiB (CUDA graphs excluded)."""
        comm = self.non_torch_tp_GiB if tp > 1 else (self.non_torch_pp_GiB if pp > 1 else 0.0)
        return self.non_torch_base_GiB + (self.non_torch_sampler_GiB if last_stage else 0.0) + comm


# The rule before engine-aware accounting, kept for engines whose start-up logs are not yet
# checked against it (SGLang, TensorRT-LLM): 0.75 GiB per GPU (m0690: 0.16 GiB of non-torch memory
# after a vLLM start-up, plus about 0.5 GiB of CUDA graphs and cuBLAS workspace), +0.5 GiB of NCCL
# buffers when the GPU communicates (tp or pp > 1).
LEGACY_MEMORY = MemoryConventions(
    engine="generic", version="any", non_torch_base_GiB=0.75, non_torch_sampler_GiB=0.0, non_torch_tp_GiB=0.5,
    non_torch_pp_GiB=0.5, summary="0.75 GiB per GPU (CUDA context, graphs, cuBLAS), +0.5 GiB when the GPU "
    "communicates (not yet checked against this engine's start-up logs)")
