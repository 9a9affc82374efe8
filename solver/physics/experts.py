"""How unevenly the engines' default expert placement loads the EP ranks, from a routing profile.

Without a load balancer (vLLM ``--enable-expert-parallel`` without EPLB, SGLang without
``--init-expert-location``, TensorRT-LLM without its MoE load balancer) an engine places the routed
experts in contiguous ranges: rank ``r`` of ``ep`` holds experts ``r x E / ep`` to
``(r + 1) x E / ep - 1``. Every MoE layer waits for its busiest rank, so the expert compute of a
step scales with the busiest rank's tokens, not the mean. ``solve experts`` finds better
placements and writes the engines' files for them.
"""

from __future__ import annotations

import numpy as np


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
