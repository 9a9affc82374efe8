"""How unevenly the engines' default expert placement loads the EP ranks, from a routing profile.

Without a load balancer (vLLM ``--enable-expert-parallel`` without EPLB, SGLang without
``--init-expert-location``, TensorRT-LLM without its MoE load balancer) an engine places the routed
experts in contiguous ranges: rank ``r`` of ``ep`` holds experts ``r x E / ep`` to
``(r + 1) x E / ep - 1``. Every MoE layer waits for its busiest rank, so the expert compute of a
step scales with the busiest rank's tokens, not the mean. ``solve experts`` finds better
placements and writes the engines' files for them; a plan that says it deploys one
(``workload.expert_placement: "balanced"``) is charged :func:`balanced_ep_imbalance`.
"""

from __future__ import annotations

import numpy as np


def balanced_ep_imbalance(counts: np.ndarray, ep: int) -> float:
    """:func:`contiguous_ep_imbalance` of a load-balanced placement: per layer, the experts by load,
    heaviest first, each to the least-loaded rank with a free slot (``E / ep`` slots a rank, ties to
    the lower rank). It is the packing ``solve experts`` starts from and then only improves (with no
    redundant slots), so a map it writes is at most this imbalanced.
    """
    w = np.asarray(counts, dtype=np.float64)
    layers, experts = w.shape
    if ep <= 1 or experts % ep:
        return 1.0
    slots = experts // ep
    busiest = total = 0.0
    for row in w:
        load = np.zeros(ep)
        free = np.full(ep, slots)
        for e in sorted(range(experts), key=lambda i: (-row[i], i)):
            open_ranks = np.flatnonzero(free > 0)
            g = int(open_ranks[np.argmin(load[open_ranks])])
            load[g] += row[e]
            free[g] -= 1
        busiest += load.max()
        total += load.mean()
    return float(busiest / total) if total > 0 else 1.0


def contiguous_ep_imbalance(counts: np.ndarray, ep: int) -> float:
    """Sum over layers of the busiest rank's load over the sum of the mean loads (>= 1).

    ``counts[l, e]``: tokens routed to expert ``e`` in layer ``l``; ranks hold contiguous ranges of
    ``E / ep`` experts (``ep`` divides ``E``). Layers without load count for nothing.
    """
    w = np.asarray(counts, dtype=np.float64)
    layers, experts = w.shape
    if ep <= 1 or experts % ep:
        return 1.0
    per_rank = w.reshape(layers, ep, experts // ep).sum(axis=2)
    mean = per_rank.mean(axis=1).sum()
    return float(per_rank.max(axis=1).sum() / mean) if mean > 0 else 1.0
