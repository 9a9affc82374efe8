"""The specification of an expert placement, independent of any solver: recompute loads, check slots.

A placement of one MoE layer lists, for each GPU (EP rank), the experts whose weights it holds.
Engines split an expert's tokens evenly over its replicas (SGLang and TensorRT-LLM dispatch each
token to one replica, round-robin or at random; vLLM's EPLB does the same), so a GPU holding a
replica of expert ``e`` with ``r_e`` replicas in all carries ``w_e / r_e`` of ``e``'s tokens.
This module is the judge of every answer of :mod:`solver.search.experts`: it never imports ortools.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

GpuExperts = Sequence[Sequence[int]]


@dataclass(frozen=True)
class AssignmentCheck:
    """The recomputed facts of one layer's placement; ``violations`` empty when it is valid."""

    loads: np.ndarray  # per GPU, in the units of the expert loads (tokens)
    replicas: np.ndarray  # per expert
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def max_load(self) -> float:
        return float(self.loads.max())

    @property
    def mean_load(self) -> float:
        return float(self.loads.mean())

    @property
    def imbalance(self) -> float:
        """max / mean per-GPU load (1.0 is perfect balance): what sets the MoE layer's time."""
        mean = self.mean_load
        return self.max_load / mean if mean > 0 else 1.0


def replica_counts(experts: int, gpu_experts: GpuExperts) -> np.ndarray:
    """How many replicas each expert has over all GPUs (with multiplicity)."""
    r = np.zeros(experts, dtype=np.int64)
    for held in gpu_experts:
        for e in held:
            if 0 <= e < experts:
                r[e] += 1
    return r


def gpu_loads(weights: np.ndarray, gpu_experts: GpuExperts) -> np.ndarray:
    """Per-GPU load with every expert's tokens split evenly over its replicas."""
    w = np.asarray(weights, dtype=np.float64)
    r = replica_counts(len(w), gpu_experts)
    share = np.divide(w, r, out=np.zeros_like(w), where=r > 0)
    return np.array([float(sum(share[e] for e in held)) for held in gpu_experts])


def check_assignment(weights: np.ndarray, gpu_experts: GpuExperts, slots_per_gpu: int,
                     max_replicas: int | None = None, allow_duplicates: bool = False,
                     exact_slots: bool = False) -> AssignmentCheck:
    """Check one layer's placement and recompute its loads.

    Rules: every expert id is in range and has at least one replica; a GPU holds at most
    ``slots_per_gpu`` experts (exactly that many when ``exact_slots``: engines fill every slot) and
    at most one copy of an expert (unless ``allow_duplicates``: DeepSeek's EPLB may put two replicas
    of one expert on one GPU); at most ``max_replicas`` replicas in all (E + redundant slots).
    """
    w = np.asarray(weights, dtype=np.float64)
    experts = len(w)
    bad: list[str] = []
    for g, held in enumerate(gpu_experts):
        out = [e for e in held if not (isinstance(e, int | np.integer) and 0 <= e < experts)]
        if out:
            bad.append(f"GPU {g}: expert ids {out} out of range 0..{experts - 1}")
        if len(held) > slots_per_gpu:
            bad.append(f"GPU {g}: {len(held)} experts in {slots_per_gpu} slots")
        elif exact_slots and len(held) != slots_per_gpu:
            bad.append(f"GPU {g}: {len(held)} experts, every one of its {slots_per_gpu} slots must hold one")
        if not allow_duplicates and len(set(held)) != len(held):
            dup = sorted({e for e in held if list(held).count(e) > 1})
            bad.append(f"GPU {g}: two copies of expert(s) {dup}")
    r = replica_counts(experts, gpu_experts)
    missing = [e for e in range(experts) if r[e] == 0]
    if missing:
        bad.append(f"experts without a replica: {_ranges(missing)}")
    if max_replicas is not None and int(r.sum()) > max_replicas:
        bad.append(f"{int(r.sum())} replicas in all, more than the {max_replicas} physical slots")
    loads = gpu_loads(w, gpu_experts) if not out_of_range(gpu_experts, experts) else np.zeros(len(gpu_experts))
    return AssignmentCheck(loads=loads, replicas=r, violations=bad)


def out_of_range(gpu_experts: GpuExperts, experts: int) -> bool:
    return any(not (0 <= e < experts) for held in gpu_experts for e in held)


def node_spread(gpu_experts: GpuExperts, experts: int, gpus_per_node: int | None,
                group_size: int = 1) -> int:
    """Cross-node spread: for each expert group (``group_size`` consecutive expert ids; 1 = each
    expert its own group), the number of nodes holding any of its replicas, less one, summed."""
    if not gpus_per_node:
        return 0
    nodes: dict[int, set[int]] = {}
    for g, held in enumerate(gpu_experts):
        for e in held:
            nodes.setdefault(e // group_size, set()).add(g // gpus_per_node)
    return sum(len(s) - 1 for s in nodes.values())


def _ranges(ids: Sequence[int]) -> str:
    """``[0, 1, 2, 3, 17, 200]`` -> ``0-3,17,200``."""
    out: list[str] = []
    ids = sorted(ids)
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(out)
