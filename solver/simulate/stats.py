"""Summaries of a simulation: mean and percentiles of TTFT, TPOT, ITL and end-to-end latency, throughput.

Definitions follow the benchmark tools (vLLM ``bench serve``, SGLang ``bench_serving``): TTFT from
arrival to the first token; TPOT of a request = (finish - first token) / (output tokens - 1), over
requests with more than one output token; ITL = every gap between consecutive tokens of a sequence;
end-to-end = finish - arrival. Percentiles interpolate linearly (numpy's default, as the tools do).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .engine import ReplicaRun

PERCENTILES = (50, 90, 99)
# Points at which a run of steps with linearly growing step time is sampled for the ITL percentiles.
ITL_POINTS_PER_RUN = 8


@dataclass(frozen=True)
class Distribution:
    """Mean and percentiles of a latency, in milliseconds."""

    mean: float
    p50: float
    p90: float
    p99: float

    @staticmethod
    def of(values_ms: np.ndarray) -> Distribution:
        if len(values_ms) == 0:
            return Distribution(float("nan"), float("nan"), float("nan"), float("nan"))
        p50, p90, p99 = np.percentile(values_ms, PERCENTILES)
        return Distribution(float(np.mean(values_ms)), float(p50), float(p90), float(p99))


def weighted_distribution(values: np.ndarray, weights: np.ndarray) -> Distribution:
    """Mean and percentiles of ``values`` counted ``weights`` times each."""
    if len(values) == 0 or weights.sum() <= 0:
        return Distribution.of(np.array([]))
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cum = np.cumsum(w) / w.sum()
    pct = [float(v[min(np.searchsorted(cum, p / 100), len(v) - 1)]) for p in PERCENTILES]
    return Distribution(float(np.average(values, weights=weights)), *pct)


@dataclass(frozen=True)
class SimulationResult:
    """What a benchmark run of the plan would print."""

    requests: int
    completed: int
    rejected: int  # requests whose whole sequence the KV cache can never hold
    ttft_ms: Distribution
    tpot_ms: Distribution
    itl_ms: Distribution
    e2e_ms: Distribution
    duration_s: float
    output_tokens_per_s: float
    requests_per_s: float
    goodput_requests_per_s: float  # completed requests meeting every latency target, per second
    mean_queue: float  # requests waiting for admission, time-averaged
    max_queue: int
    mean_batch: float  # sequences decoding per step, token-weighted

    def to_dict(self) -> dict:
        return asdict(self)


def summarise(runs: list[ReplicaRun], targets_ms: dict[str, float] | None = None) -> SimulationResult:
    """Merge the replicas' runs into one result; ``targets_ms`` (e.g. ``{"ttft": 1500, "tpot": 50}``) set goodput."""
    arrival = np.concatenate([r.arrival_s for r in runs])
    first = np.concatenate([r.first_token_s for r in runs])
    finish = np.concatenate([r.finish_s for r in runs])
    outs = np.concatenate([r.requests.output_tokens for r in runs]).astype(np.float64)
    done = ~np.isnan(finish)
    ttft = (first - arrival)[done] * 1e3
    e2e = (finish - arrival)[done] * 1e3
    multi = done & (outs > 1)
    tpot = ((finish - first)[multi] / (outs[multi] - 1)) * 1e3
    values, weights = [], []
    for r in runs:
        for a, b, w in r.itl_runs:
            if a == b:
                values.append(a)
                weights.append(w)
            else:
                frac = (np.arange(ITL_POINTS_PER_RUN) + 0.5) / ITL_POINTS_PER_RUN
                values.extend(a + (b - a) * frac)
                weights.extend([w / ITL_POINTS_PER_RUN] * ITL_POINTS_PER_RUN)
    itl = weighted_distribution(np.asarray(values) * 1e3, np.asarray(weights, dtype=np.float64))
    start = float(np.nanmin(arrival)) if len(arrival) else 0.0
    end = max((r.end_s for r in runs), default=0.0)
    duration = max(end - start, 1e-12)
    ok = np.ones(int(done.sum()), dtype=bool)
    targets_ms = targets_ms or {}
    if "ttft" in targets_ms:
        ok &= ttft <= targets_ms["ttft"]
    if "e2e" in targets_ms:
        ok &= e2e <= targets_ms["e2e"]
    if "tpot" in targets_ms:
        per_req = np.full(int(done.sum()), 0.0)
        per_req[(outs[done] > 1)] = tpot
        ok &= per_req <= targets_ms["tpot"]
    tokens_weighted = sum(w for r in runs for _, _, w in r.itl_runs)
    steps = sum(r.steps for r in runs)
    return SimulationResult(
        requests=len(arrival),
        completed=int(done.sum()),
        rejected=int((~done).sum()),
        ttft_ms=Distribution.of(ttft),
        tpot_ms=Distribution.of(tpot),
        itl_ms=itl,
        e2e_ms=Distribution.of(e2e),
        duration_s=duration,
        output_tokens_per_s=float(outs[done].sum() / duration),
        requests_per_s=float(done.sum() / duration),
        goodput_requests_per_s=float(ok.sum() / duration),
        mean_queue=sum(r.queue_time_area for r in runs) / duration / max(len(runs), 1),
        max_queue=max((r.max_queue for r in runs), default=0),
        mean_batch=tokens_weighted / steps if steps else 0.0,
    )
