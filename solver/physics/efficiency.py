"""Named efficiency factors per GPU family (achieved fractions of peak and fixed per-step costs)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..input.schema import CostModelSpec, GpuCard

# Efficiency.moe_prefill_expert_s, one value for every family: 3 us, the best of 0 / 2.5 / 3 / 3.5 us on the
# fitted third of the latency rows (benchmarks/latency_fidelity.py; TTFT 31.2% -> 20.6% there and
# 31.1% -> 20.3% on the other two thirds). Each MoE model alone prefers 2-4 us: gpt-oss-120b (128
# experts, vLLM and TensorRT-LLM), MiniMax-M2.5 (256, vLLM), Kimi-K2.5 (384, vLLM); DeepSeek-R1/V3
# (256, TensorRT-LLM / SGLang) more. A per-expert cost, not per layer, is what makes the three agree.
MOE_PREFILL_EXPERT_S = 3.0e-6


@dataclass(frozen=True)
class Efficiency:
    """Achieved fractions of peak, and fixed per-step costs, for one GPU family."""

    compute: float  # achieved / peak dense GEMM FLOP/s
    memory: float  # achieved / peak HBM bandwidth on weight and KV streaming
    moe_compute: float  # expert-GEMM efficiency relative to dense GEMMs (grouped GEMMs, routing)
    link: float  # achieved / nominal link bandwidth for collectives
    step_overhead_s: float  # per engine step per stage: scheduling, launch, sampling bookkeeping
    layer_overhead_s: float = 0.0  # per decoder layer per step: its small kernels and launch gaps
    token_overhead_s: float = 0.0  # per generated token per step: the engine's output processing
    allreduce_per_peer: float = 0.0  # small all-reduce latency grows by this x link latency per peer
    request_overhead_s: float = 0.0  # per request, from the client's send to the engine's queue
    # Per routed expert a GPU holds, per MoE layer, on a step that carries prompt tokens (every
    # expert is touched then): the grouped-GEMM and routing work each expert costs whatever its
    # tokens, outside the CUDA graphs that capture decode-only steps.
    moe_prefill_expert_s: float = MOE_PREFILL_EXPERT_S
    # Per MoE layer per step, beyond a dense layer's (the engine's, solver/engines/*.py
    # MOE_LAYER_OVERHEAD_US): the router's top-k, the tokens' sort by expert, the activations'
    # quantisation and the weighted combine, each a kernel of its own, except where the experts'
    # precision fuses them into the expert GEMMs (precision.FUSED_ROUTING_WEIGHTS). Fitted with the
    # other factors (benchmarks/fit_factors.py); without it the small-batch TPOT of MiniMax-M2.5 and
    # Kimi-K2.5 was 17-26% below the measured while their large-batch TPOT was above it.
    moe_layer_overhead_s: float = 0.0
    # Disaggregated serving (the engine's, solver/engines/*.py DISAGG_*): per request, the hand-off of a
    # prompt between the pools beyond moving its bytes (the decode worker's KV allocation and the
    # prefill worker's wait for it, the transfer's completion being polled, the router's second hop);
    # and per step of a decode worker, the polling of the KV transfers in flight.
    kv_handoff_s: float = 0.0
    disagg_step_overhead_s: float = 0.0


# Calibrated against the calibration data's performance rows (benchmarks/fidelity.py prints the
# per-row error), a grid over (compute, memory) per family with decode = compute + memory time:
# hopper (96 rows: H100 SXM / H200, TensorRT-LLM FP8, m0401-m0420, m0431-m0450, m0461-m0499,
#   m0507-m0513, m0529-m0536): compute 0.60, memory 0.85 -> median |error| 5.7%.
# blackwell (30 rows: B200, NVFP4, m0421-m0430, m0451-m0460, m0502-m0506, m0514-m0518): compute
#   0.40 (FP4 GEMMs reach a smaller share of their doubled peak), memory 0.70 -> 5.0%.
# Those grids set compute and memory; the joint fit of benchmarks/fit_factors.py (offline rows
# weighted twice, and every third covered latency row) then moved memory and the fixed costs to the
# values below. moe_compute (0.55 a prior until then) was fitted there once the engines' per-MoE-layer
# routing kernels were modelled (MOE_LAYER_OVERHEAD_US in solver/engines/): hopper 0.464, blackwell
# 0.600, offline 6.0% -> 5.9% and latency TPOT 13.5% -> 11.0%, TTFT 20.4% -> 19.6%. link kept at its prior.
# Families without rows (ampere, ada, turing, cdna3) take Hopper's memory factor and a compute
# factor lowered where kernels are less tuned (turing; cdna3 under ROCm): priors, not fits.
EFFICIENCY_BY_FAMILY: dict[str, Efficiency] = {
    "hopper": Efficiency(compute=0.60, memory=0.95, moe_compute=0.464, link=0.70, step_overhead_s=300e-6,
                         layer_overhead_s=58.4e-6, allreduce_per_peer=0.256),
    "blackwell": Efficiency(compute=0.40, memory=0.833, moe_compute=0.600, link=0.70, step_overhead_s=300e-6,
                            layer_overhead_s=45.4e-6, allreduce_per_peer=0.333),
    "ampere": Efficiency(compute=0.60, memory=0.85, moe_compute=0.55, link=0.70, step_overhead_s=400e-6),
    "ada": Efficiency(compute=0.55, memory=0.85, moe_compute=0.55, link=0.60, step_overhead_s=400e-6),
    "turing": Efficiency(compute=0.50, memory=0.80, moe_compute=0.50, link=0.60, step_overhead_s=500e-6),
    "cdna3": Efficiency(compute=0.45, memory=0.75, moe_compute=0.50, link=0.60, step_overhead_s=400e-6),
}


def efficiency_for(gpu: GpuCard, spec: CostModelSpec | None = None, step_overhead_s: float | None = None,
                   request_overhead_s: float | None = None, token_overhead_s: float | None = None,
                   kv_handoff_s: float = 0.0, disagg_step_overhead_s: float = 0.0,
                   moe_layer_overhead_s: float = 0.0) -> Efficiency:
    """The family defaults, the engine's overheads when it has them, and the instance's overrides."""
    base = replace(EFFICIENCY_BY_FAMILY[gpu.family], kv_handoff_s=kv_handoff_s,
                   disagg_step_overhead_s=disagg_step_overhead_s, moe_layer_overhead_s=moe_layer_overhead_s)
    if token_overhead_s is not None:
        base = replace(base, token_overhead_s=token_overhead_s)
    if step_overhead_s is not None:
        base = replace(base, step_overhead_s=step_overhead_s)
    if request_overhead_s is not None:
        base = replace(base, request_overhead_s=request_overhead_s)
    if spec is None:
        return base
    return Efficiency(
        compute=spec.compute_efficiency or base.compute,
        memory=spec.memory_efficiency or base.memory,
        moe_compute=spec.moe_compute_efficiency or base.moe_compute,
        link=spec.link_efficiency or base.link,
        step_overhead_s=base.step_overhead_s if spec.step_overhead_us is None else spec.step_overhead_us * 1e-6,
        layer_overhead_s=base.layer_overhead_s if spec.layer_overhead_us is None else spec.layer_overhead_us * 1e-6,
        allreduce_per_peer=base.allreduce_per_peer if spec.allreduce_per_peer is None else spec.allreduce_per_peer,
        request_overhead_s=(base.request_overhead_s if spec.request_overhead_ms is None
                            else spec.request_overhead_ms * 1e-3),
        token_overhead_s=base.token_overhead_s if spec.token_overhead_us is None else spec.token_overhead_us * 1e-6,
        moe_prefill_expert_s=(base.moe_prefill_expert_s if spec.moe_prefill_expert_us is None
                              else spec.moe_prefill_expert_us * 1e-6),
        moe_layer_overhead_s=(base.moe_layer_overhead_s if spec.moe_layer_overhead_us is None
                              else spec.moe_layer_overhead_us * 1e-6),
        kv_handoff_s=base.kv_handoff_s if spec.kv_handoff_ms is None else spec.kv_handoff_ms * 1e-3,
        disagg_step_overhead_s=(base.disagg_step_overhead_s if spec.disagg_step_overhead_us is None
                                else spec.disagg_step_overhead_us * 1e-6),
    )
