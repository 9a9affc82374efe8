"""vLLM: launch flags, the uneven-split environment variable, and its expert-parallel layout rule.

Flags as documented for ``vllm serve`` (engine arguments): ``--tensor-parallel-size``,
``--pipeline-parallel-size``, ``--data-parallel-size``, ``--enable-expert-parallel``,
``--max-model-len``, ``--max-num-seqs``, ``--max-num-batched-tokens``, ``--gpu-memory-utilization``,
``--kv-cache-dtype``, ``--quantization``, ``--dtype``; ``VLLM_PP_LAYER_PARTITION`` sets the layers
of each pipeline stage.
"""

from __future__ import annotations

from .base import LaunchInput

NAME = "vllm"
# The release whose `vllm serve` flags these commands use (docs.vllm.ai engine arguments).
FLAGS_VERSION = "vLLM 0.11"
# How a step mixes prefill and decode (solver.simulate.engine): vLLM V1 schedules decodes first, then fills the step's token budget with prefill chunks (chunked prefill is always on in V1).
SCHEDULER_POLICY = "mixed"
# Fixed time per engine step (scheduling, input preparation, sampling bookkeeping), us; None: the GPU
# family's default in solver.physics.efficiency.
STEP_OVERHEAD_US: float | None = 461.5
# Per request, from the client's send to the engine's queue (HTTP, tokenisation, IPC), ms.
# Per generated token per step: detokenisation, streaming and bookkeeping on the engine's CPU, us.
TOKEN_OVERHEAD_US: float = 11.9
REQUEST_OVERHEAD_MS: float = 40.0


def defaults(gpu_memory_GiB: float, gpu_name: str) -> dict[str, float]:
    """``vllm serve`` defaults: on GPUs of 70 GiB or more (not A100) 1024 sequences and 8192 tokens
    per step, else 256 and 2048 (vllm/engine/arg_utils.py, get_batch_defaults); 0.9 of the memory."""
    big = gpu_memory_GiB >= 70 and "a100" not in gpu_name
    return {"max_num_seqs": 1024 if big else 256, "max_num_batched_tokens": 8192 if big else 2048,
            "memory_utilization": 0.9}


def ep_layout_ok(is_moe: bool, tp: int, ep: int) -> bool:
    """vLLM's ``--enable-expert-parallel`` spreads the experts over the whole TP group: ep is 1 or tp."""
    return ep == 1 or (is_moe and ep == tp)


EP_LAYOUT_RULE = "ep must be 1 or equal tp (vLLM's expert parallelism spans the TP group)"


def launch(li: LaunchInput) -> tuple[str, dict[str, str], list[str]]:
    """The ``vllm serve`` command, its environment and notes for a plan."""
    cfg = li.cfg
    notes: list[str] = []
    model, online_fp8 = li.model()
    v = ["vllm serve", model, f"--tensor-parallel-size {cfg.tp}", f"--pipeline-parallel-size {cfg.pp}"]
    if cfg.dp > 1:
        v.append(f"--data-parallel-size {cfg.dp}")
    if cfg.ep > 1:
        v.append("--enable-expert-parallel")
    v += [f"--max-model-len {li.max_model_len}", f"--max-num-seqs {li.max_num_seqs}",
          f"--max-num-batched-tokens {li.max_num_batched_tokens}",
          f"--gpu-memory-utilization {li.memory_utilization:g}"]
    if li.serves_16bit_as_fp16:
        # The cost model computes BF16 at the FP16 peak on such GPUs; the engine must be told.
        v.append("--dtype half")
        notes.append(f"{li.gpu.name} has no BF16: the model is served in FP16 (--dtype half), as costed")
    if cfg.kv_cache == "fp8":
        v.append("--kv-cache-dtype fp8")
    if online_fp8:
        v.append("--quantization fp8")
    elif model != li.repo:
        notes.append(f"{cfg.weights} weights: replace {model} by such a checkpoint (vLLM reads its quantization "
                     "from the checkpoint)")
    if cfg.weights == "fp16" and not li.no_bf16:
        v.append("--dtype float16")
    env: dict[str, str] = {}
    if li.uneven:
        env["VLLM_PP_LAYER_PARTITION"] = ",".join(map(str, li.layers_per_stage))
    if li.nodes_used > 1:
        if cfg.dp > 1:
            v.append("--data-parallel-backend ray")  # vLLM places DP ranks over nodes through Ray
        notes.append(f"spans {li.nodes_used} nodes: start a Ray cluster over them first and run the command on "
                     "the head node (vLLM multi-node serving)")
    env_prefix = " ".join(f"{k}={val}" for k, val in env.items())
    return (env_prefix + " " if env_prefix else "") + " ".join(v), env, notes
