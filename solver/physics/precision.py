"""Bytes per value and the tensor-core peak of each precision, and what a GPU supports natively."""

from __future__ import annotations

from ..input.schema import GpuCard

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
    # MXFP4 (OCP Microscaling v1.0): FP4 E2M1 values with one 8-bit E8M0 scale per block of 32, i.e.
    # 4.25 bits a weight (gpt-oss model card). Only routed experts take it; see EXPERT_ONLY_WEIGHTS.
    "mxfp4": 0.5 + 1.0 / 32,
}
# Weight precisions that a checkpoint applies to the routed experts only; attention, dense MLP,
# shared experts, router, embedding and LM head stay 16-bit. openai/gpt-oss-* config.json:
# quantization_config {"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn",
# "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}.
EXPERT_ONLY_WEIGHTS: frozenset[str] = frozenset({"mxfp4"})
# Expert precisions whose MoE kernels fuse the routing (top-k, the tokens' permutation by expert and
# the weighted combine) into the expert GEMMs: MXFP4 runs TensorRT-LLM's trtllm-gen MoE on Blackwell
# (vLLM through FlashInfer's) and the Triton MoE kernels on Hopper (TensorRT-LLM's gpt-oss deployment
# guide, "MoE Backend Support Matrix"). The other precisions' MoE layers run those steps as kernels of
# their own: Efficiency.moe_layer_overhead_s.
FUSED_ROUTING_WEIGHTS: frozenset[str] = frozenset({"mxfp4"})
UNQUANTISED_BYTES = 2.0  # what the modules a checkpoint leaves unquantised are stored in (BF16)
KV_BYTES: dict[str, float] = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0}
ACT_BYTES = 2.0  # activations travel in 16-bit between layers and GPUs

# Which tensor-core peak a weight precision computes at. int4 is weight-only (dequantised to
# 16-bit before the GEMM, as AWQ/GPTQ kernels do); the others are W8A8 / W4A4 GEMMs.
# mxfp4 is listed at its GPU-independent floor (bf16); compute_dtype() is the GPU-aware answer.
COMPUTE_DTYPE: dict[str, str] = {"bf16": "bf16", "fp16": "fp16", "fp8": "fp8", "int8": "int8", "int4": "fp16",
                                 "fp4": "fp4", "mxfp4": "bf16"}


def compute_dtype(gpu: GpuCard, weights: str) -> str:
    """The tensor-core peak that weights of ``weights`` compute at on ``gpu``.

    MXFP4 computes in FP4 where the GPU has FP4 tensor cores (Blackwell's block-scaled MMA takes
    the E8M0-scaled blocks natively) and is weight-only elsewhere: Hopper and older dequantise the
    experts to BF16 inside the MoE kernels (vLLM's Triton / Marlin MXFP4 paths), so the GEMM runs at
    the 16-bit peak. Every other precision computes at COMPUTE_DTYPE on every GPU.
    """
    if weights == "mxfp4":
        return "fp4" if gpu.dense_TFLOPS.fp4 is not None else "bf16"
    return COMPUTE_DTYPE[weights]


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
    return peak_tflops(gpu, compute_dtype(gpu, dtype)) is not None


def kv_dtype_supported(gpu: GpuCard, dtype: str) -> bool:
    """FP8 KV cache needs Ampere or newer in the engines' attention kernels (not Turing)."""
    return dtype != "fp8" or gpu.family != "turing"
