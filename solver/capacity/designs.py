"""Replica designs: for each GPU type and replica size, the one replica that carries the most load.

A design is one data-parallel replica (dp = 1) of ``gpus`` GPUs with its parallel layout,
precision, layer split and operating batch, and the request rate it sustains within the TTFT and
TPOT targets (``rate``, the planner's own capacity figure: batch / cycle). It is found by the
exact planner on the type's problem with the load as an offline backlog (every batch the engine
could run is a candidate, the SLOs bound it), restricted to configurations of exactly that many
GPUs; the batch is then refined on the finer rate levels with the verifier. Percentile targets
are not used here: they are checked by simulation when a mix is verified at its real share.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..input.schema import GpuOffer, Instance, SloSpec
from ..physics import packs_in_nodes
from ..problem import BATCH_LEVELS, RATE_LEVELS, Problem
from ..search.planner import SolveParams
from ..search.planner import plan as plan_one
from ..verify import Placement, evaluate
from .offers import available_gpus, max_replicas, offer_name, offer_problem


@dataclass(frozen=True)
class Design:
    """One replica of one GPU type, its capacity within the targets, and how many the offer holds."""

    offer: int
    gpu: str
    gpus: int
    rate: float  # requests/s one replica sustains at its batch within ttft_ms / tpot_ms
    placement: Placement
    usd_per_gpu_hour: float
    max_replicas: int

    def label(self) -> str:
        c = self.placement.cfg
        return (f"{self.gpu} tp={c.tp} pp={c.pp}{f' ep={c.ep}' if c.ep > 1 else ''} {c.weights}/{c.kv_cache} "
                f"batch {self.placement.batch}: {self.rate:.3f} req/s on {self.gpus} GPUs")


def design_problem(inst: Instance, index: int, offer: GpuOffer, file: str | None) -> Problem:
    """The offer's problem with an offline backlog, dp = 1 and only the linear latency targets."""
    wl = inst.workload.model_copy(update={"request_rate": None, "concurrency": None, "offline": True})
    slo = SloSpec(ttft_ms=inst.slo.ttft_ms, tpot_ms=inst.slo.tpot_ms)
    pins = inst.strategy.model_copy(update={"dp": 1, "max_num_seqs": None})
    return offer_problem(inst, index, offer, file, workload=wl, slo=slo, strategy=pins,
                         objective="max_throughput_per_gpu", simulation=inst.simulation.model_copy(
                             update={"enabled": False}))


def replica_designs(inst: Instance, index: int, offer: GpuOffer, file: str | None, usd_per_gpu_hour: float,
                    params: SolveParams) -> list[Design]:
    """The best replica of every size the offer can hold (sizes: the search space's tp x pp)."""
    problem = design_problem(inst, index, offer, file)
    avail, gpn = available_gpus(offer), offer.gpus_per_node
    # Sizes that pack: dividing the node, or whole nodes in a chain of powers of two (then any total
    # within the offer fits its nodes, which the mix model relies on).
    sizes = sorted({tp * pp for tp in problem.search.tp for pp in problem.search.pp if tp * pp <= avail})
    sizes = [k for k in sizes if packs_in_nodes(k, gpn) and _power_of_two(k)]
    out: list[Design] = []
    for k in sizes:
        if max_replicas(offer, k) == 0:
            continue
        res = plan_one(problem, params, only_gpus=k, tie_breaks=False)
        if res.placement is None:
            continue
        placement = _finest_batch(problem, res.placement)
        ev = evaluate(problem, placement, simulate=False)
        if not ev.feasible:  # the planner's own plan is verified; the refinement keeps only passing batches
            continue
        out.append(Design(index, offer_name(offer), k, ev.metrics.max_request_rate, placement, usd_per_gpu_hour,
                          max_replicas(offer, k)))
    return out


def _power_of_two(k: int) -> bool:
    return k & (k - 1) == 0


def _finest_batch(problem: Problem, placement: Placement) -> Placement:
    """The largest-capacity batch between the chosen level and the next coarse one, on the rate levels.

    The offline search steps batches by up to 1.5x (BATCH_LEVELS); at a rate the operating point
    can sit anywhere between, so the finer RATE_LEVELS are tried with the verifier.
    """
    b = placement.batch
    above = [lv for lv in BATCH_LEVELS if lv > b]
    top = min(above[0] if above else b, problem.instance.limits.max_num_seqs + 1)
    best, best_rate = placement, evaluate(problem, placement, simulate=False).metrics.max_request_rate
    for level in (lv for lv in RATE_LEVELS if b < lv < top):
        trial = Placement(placement.cfg, level, placement.layers_per_stage)
        ev = evaluate(problem, trial, simulate=False)
        if not ev.feasible:
            break  # memory and latency only grow with the batch
        if ev.metrics.max_request_rate > best_rate:
            best, best_rate = trial, ev.metrics.max_request_rate
    return best
