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

import heapq

import numpy as np


def balanced_ep_imbalance(counts: np.ndarray, ep: int, redundant: int = 0) -> float:
    """:func:`contiguous_ep_imbalance` of a load-balanced placement with ``redundant`` replica experts
    in all (a multiple of ``ep``): per layer, each replica to the expert with the largest load per
    replica (:func:`replicate`), then the replicas by size, heaviest first, each to the least-loaded
    rank with a free slot and no copy of it (:func:`pack`; ``(E + redundant) / ep`` slots a rank,
    ties to the lower rank). It is the placement ``solve experts`` starts from and then only
    improves, so a map it writes is at most this imbalanced.
    """
    w = np.asarray(counts, dtype=np.float64)
    layers, experts = w.shape
    if ep <= 1 or experts % ep or redundant % ep:
        return 1.0
    slots = (experts + redundant) // ep
    busiest = total = 0.0
    for row in w:
        r = replicate(row, experts + redundant, ep)
        on = pack(row, r, ep, slots)
        load = (row / r) @ on
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


def replicate(weights: np.ndarray, replicas: int, gpus: int) -> np.ndarray:
    """Replica counts ``r`` (1 <= r_e <= gpus, sum = ``replicas``, capped by E x gpus) minimising
    ``max_e w_e / r_e``: each extra slot to the current largest load per replica (lowest id on ties)."""
    w = np.asarray(weights, dtype=np.float64)
    r = np.ones(len(w), dtype=np.int64)
    heap = [(-w[e], e) for e in range(len(w))]
    heapq.heapify(heap)
    extra = min(replicas, len(w) * gpus) - len(w)
    while extra > 0 and heap:
        _, e = heapq.heappop(heap)
        if r[e] >= gpus:
            continue
        r[e] += 1
        extra -= 1
        if r[e] < gpus:
            heapq.heappush(heap, (-w[e] / r[e], e))
    return r


def pack(weights: np.ndarray, r: np.ndarray, gpus: int, slots: int, fill: bool = False) -> np.ndarray:
    """Longest-processing-time packing of the replicas (``r_e`` of size ``w_e / r_e``): ``on[e, g]``.

    With ``fill`` the GPUs are filled to exactly ``slots`` (the replicas must number gpus x slots).
    A replica that finds no GPU with room and without its expert is placed by an exchange
    (:func:`_place_by_exchange`); with ``sum(r) <= gpus * slots`` and ``r_e <= gpus`` one exists.
    """
    w = np.asarray(weights, dtype=np.float64)
    E = len(w)
    share = w / r
    order = sorted(range(E), key=lambda e: (-share[e], e))
    on = np.zeros((E, gpus), dtype=bool)
    load = np.zeros(gpus)
    cnt = np.zeros(gpus, dtype=np.int64)
    for e in order:
        for _ in range(int(r[e])):
            ok = (cnt < slots) & ~on[e]
            if not ok.any():
                _place_by_exchange(e, on, cnt, load, share, slots)
                continue
            g = int(np.flatnonzero(ok)[np.argmin(load[ok])])
            on[e, g] = True
            cnt[g] += 1
            load[g] += share[e]
    return on


def _place_by_exchange(e: int, on: np.ndarray, cnt: np.ndarray, load: np.ndarray, share: np.ndarray,
                       slots: int) -> None:
    """Place a replica of ``e`` when every GPU with a free slot already holds ``e``: move some
    expert ``f`` from a GPU ``h`` without ``e`` to a free GPU ``g`` without ``f``, then put ``e`` on ``h``."""
    free = np.flatnonzero(cnt < slots)
    for h in np.flatnonzero(~on[e]):
        for f in np.flatnonzero(on[:, h]):
            targets = [g for g in free if not on[f, g]]
            if targets:
                g = min(targets, key=lambda x: (load[x], x))
                on[f, h], on[f, g] = False, True
                load[h] -= share[f]
                load[g] += share[f]
                cnt[g] += 1
                on[e, h] = True
                load[h] += share[e]
                return
    raise AssertionError("no placement exists for a replica: more replicas than GPUs x slots")
