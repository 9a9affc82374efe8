"""DeepSeek's Expert Parallelism Load Balancer (EPLB), written from its published description.

Source: github.com/deepseek-ai/EPLB (README, "The Algorithm"; MIT). Two policies:

- **Global**: replicate experts regardless of groups, then pack the replicas onto GPUs.
- **Hierarchical** (when the number of nodes divides the number of expert groups): pack the expert
  groups onto nodes evenly (balanced node loads), replicate experts within each node, then pack
  each node's replicas onto its GPUs.

The two building blocks, as the README and the DeepSeek-V3 report describe them:

- *replicate*: each redundant slot goes to the expert with the largest load per replica.
- *balanced packing*: items in decreasing weight, each onto the lightest pack that still has room,
  every pack taking the same number of items.

This is the baseline of ``benchmarks/expert_placement.py``; it is independent of the solver's own
greedy (``solver.search.expert_greedy``) so that the comparison is fair. Where DeepSeek's code
requires the replicas to divide evenly over the GPUs, this one lets each GPU take up to
``ceil(N / G)`` (the natural extension, used for 288 replicas on 64 GPUs); ties go to the lowest
index (DeepSeek sorts with torch, whose order among equal weights is unspecified). Like DeepSeek's,
the packing may put two replicas of one expert on the same GPU; the evaluation then counts both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def balanced_packing(weights: Sequence[float], packs: int, cap: int | None = None) -> tuple[list[int], list[int]]:
    """Pack items onto ``packs`` packs of at most ``cap`` items (default: an equal share), heaviest
    first, each onto the lightest pack with room. Returns (pack of each item, rank within its pack)."""
    n = len(weights)
    cap = cap if cap is not None else math.ceil(n / packs)
    order = sorted(range(n), key=lambda i: (-weights[i], i))
    load = [0.0] * packs
    count = [0] * packs
    pack_of, rank = [-1] * n, [-1] * n
    for i in order:
        p = min((q for q in range(packs) if count[q] < cap), key=lambda q: (load[q], q))
        pack_of[i], rank[i] = p, count[p]
        load[p] += weights[i]
        count[p] += 1
    return pack_of, rank


def replicate(weights: Sequence[float], physical: int) -> tuple[list[int], list[int]]:
    """Replicate ``len(weights)`` experts into ``physical`` replicas, each extra one to the expert with
    the largest load per replica. Returns (expert of each physical replica, replicas per expert)."""
    n = len(weights)
    phy2log = list(range(n))
    count = [1] * n
    for _ in range(physical - n):
        e = max(range(n), key=lambda i: (weights[i] / count[i], -i))
        phy2log.append(e)
        count[e] += 1
    return phy2log, count


def _pack_replicas(weights: Sequence[float], phy2log: list[int], count: list[int], gpus: int,
                   per_gpu: int) -> list[list[int]]:
    """Balanced packing of replicas (each carrying ``w / count``) onto ``gpus``: experts per GPU."""
    shares = [weights[e] / count[e] for e in phy2log]
    pack_of, rank = balanced_packing(shares, gpus, per_gpu)
    slots: list[list[int | None]] = [[None] * per_gpu for _ in range(gpus)]
    for i, e in enumerate(phy2log):
        slots[pack_of[i]][rank[i]] = e
    return [[e for e in s if e is not None] for s in slots]


def rebalance_layer(weights: Sequence[float], replicas: int, gpus: int, groups: int = 1, nodes: int = 1,
                    hierarchical: bool = False) -> list[list[int]]:
    """One layer's EPLB placement: the logical experts on each GPU, in slot order.

    ``replicas``: physical experts in all (E + redundant); ``groups``: expert groups (DeepSeek-V3 has
    8 of 32 experts); ``nodes``: server nodes (``gpus`` divides evenly over them).
    """
    w = [float(x) for x in weights]
    E = len(w)
    per_gpu = math.ceil(replicas / gpus)
    if not hierarchical:
        phy2log, count = replicate(w, replicas)
        return _pack_replicas(w, phy2log, count, gpus, per_gpu)
    if E % groups or groups % nodes or gpus % nodes or replicas % nodes:
        raise ValueError(f"hierarchical EPLB needs groups | experts, nodes | groups, nodes | GPUs and nodes | "
                         f"replicas (experts {E}, groups {groups}, nodes {nodes}, GPUs {gpus}, replicas {replicas})")
    size = E // groups
    group_load = [sum(w[g * size:(g + 1) * size]) for g in range(groups)]
    node_of_group, rank_of_group = balanced_packing(group_load, nodes, groups // nodes)
    out: list[list[int]] = []
    for node in range(nodes):
        # This node's experts, its groups in the order they were packed (as DeepSeek lays them out).
        mine = sorted((g for g in range(groups) if node_of_group[g] == node), key=lambda g: rank_of_group[g])
        experts = [g * size + j for g in mine for j in range(size)]
        local_w = [w[e] for e in experts]
        phy2log, count = replicate(local_w, replicas // nodes)
        packed = _pack_replicas(local_w, phy2log, count, gpus // nodes, per_gpu)
        out.extend([[experts[i] for i in gpu] for gpu in packed])
    return out


def eplb(loads: np.ndarray, replicas: int, gpus: int, groups: int = 1, nodes: int = 1,
         hierarchical: bool = False) -> list[list[list[int]]]:
    """Every layer's EPLB placement (``loads`` [layers, experts])."""
    return [rebalance_layer(row, replicas, gpus, groups, nodes, hierarchical) for row in np.asarray(loads)]
