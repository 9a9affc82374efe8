"""One GPU type on offer as a single-type problem: the candidate's cluster in place of the candidates."""

from __future__ import annotations

from typing import Any

from ..input.errors import InputError
from ..input.schema import ClusterSpec, GpuOffer, Instance
from ..problem import Problem, build_problem


def offer_name(offer: GpuOffer) -> str:
    """The card name of an offer's GPU."""
    return offer.gpu if isinstance(offer.gpu, str) else offer.gpu.name


def available_gpus(offer: GpuOffer) -> int:
    """GPUs of this type available: nodes x GPUs per node."""
    return offer.nodes * offer.gpus_per_node


def max_replicas(offer: GpuOffer, gpus_per_replica: int) -> int:
    """Replicas of ``gpus_per_replica`` GPUs that the offer's nodes hold.

    A replica within a node takes ``gpus_per_replica`` of its GPUs; a larger one takes whole
    nodes (the planner's placement: tensor parallelism inside a node, stages across nodes).
    """
    gpn = offer.gpus_per_node
    if gpus_per_replica <= gpn:
        return offer.nodes * (gpn // gpus_per_replica)
    if gpus_per_replica % gpn:
        return 0
    return offer.nodes // (gpus_per_replica // gpn)


def offer_instance(inst: Instance, offer: GpuOffer, **update: Any) -> Instance:
    """``inst`` with the one-type cluster of ``offer`` (and ``update``'s fields replaced)."""
    cluster = ClusterSpec(gpu=offer.gpu, gpus_per_node=offer.gpus_per_node, nodes=offer.nodes,
                          intra_node=offer.intra_node, inter_node=offer.inter_node,
                          price_per_gpu_hour_usd=offer.price_per_gpu_hour_usd)
    return inst.model_copy(update={"cluster": cluster, "expect": None, **update})


def offer_problem(inst: Instance, index: int | None, offer: GpuOffer, file: str | None, **update: Any) -> Problem:
    """The resolved single-type problem of one offer; errors name the candidate's JSON path.

    Capacity is bought a replica at a time, so unless the instance lists ``search.dp``, every
    replica count up to the offer's GPUs is a candidate (the one-type default is powers of two).
    """
    sub = offer_instance(inst, offer, **update)
    every_count = sub.search.dp is None
    if every_count:
        sub = sub.model_copy(update={"search": sub.search.model_copy(
            update={"dp": list(range(1, available_gpus(offer) + 1))})})
    try:
        problem = build_problem(sub, file)
    except InputError as err:
        if index is None or not err.path.startswith("cluster"):
            raise
        path = f"cluster.candidates[{index}]" + err.path.removeprefix("cluster")
        raise InputError(err.file, path, err.value, err.accepted) from None
    if every_count:
        problem.defaults["search.dp"] = f"every replica count from 1 to {available_gpus(offer)} (capacity planning)"
    return problem
