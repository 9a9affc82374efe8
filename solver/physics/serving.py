"""Serving metrics of a placement at its batch: TTFT, TPOT, throughput and the sustainable rate.

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

from dataclasses import dataclass

import numpy as np

from ..input.schema import WorkloadSpec
from .stages import StageCoefficients


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


def stage_cycles_s(coef: StageCoefficients, stages: list[dict[str, float]], workload: WorkloadSpec) -> list[float]:
    """Each stage's cycle time D_s: the batch's prefill work plus every decode step through it.

    D, the time in which ``batch`` requests complete on one replica, is the largest of them.
    """
    pp, out = coef.cfg.pp, workload.output_tokens
    return [coef.batch * s["pf_work_s"] + out * pp * s["decode_s"] for s in stages]


def serving_metrics(coef: StageCoefficients, stages: list[dict[str, float]], workload: WorkloadSpec) -> Metrics:
    """TTFT, TPOT and throughput from per-stage values (see the module docstring for the model)."""
    cfg = coef.cfg
    out = workload.output_tokens
    dec = np.array([s["decode_s"] for s in stages])
    pf_lat = np.array([s["pf_lat_s"] for s in stages])
    cycle = max(stage_cycles_s(coef, stages, workload))
    decode_cycle = cfg.pp * float(np.max(dec))
    ttft = coef.request_s + float(np.sum(pf_lat)) + decode_cycle
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
