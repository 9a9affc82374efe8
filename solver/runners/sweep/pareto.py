"""Pareto frontiers of a sweep's rows: the points no other point beats on both of two figures.

A row is on a frontier when it has a plan (``optimal`` or ``feasible``), both figures are known,
and no other such row is at least as good on both and strictly better on one. Rows with equal
figures do not dominate each other, so all of them are on the frontier or none is: the marks
depend on the values only, never on the order of the rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PLAN_STATUSES = ("optimal", "feasible")


def _ttft_p99(row: dict[str, Any]) -> float | None:
    # Without a simulation there is no percentile; the linear model's mean TTFT stands in, so
    # a sweep with simulation off still has a cost / latency frontier.
    return row.get("ttft_p99_ms") if row.get("ttft_p99_ms") is not None else row.get("ttft_ms")


def _get(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: row.get(key)


# name -> two (figure, direction) pairs; "min" is better lower, "max" better higher.
FRONTIERS: dict[str, tuple[tuple[Callable[[dict[str, Any]], Any], str], ...]] = {
    "cost_vs_ttft_p99": ((_get("cost_per_hour_usd"), "min"), (_ttft_p99, "min")),
    "throughput_per_gpu_vs_tpot": ((_get("output_tokens_per_s_per_gpu"), "max"), (_get("tpot_ms"), "min")),
    "gpus_vs_rate": ((_get("gpus_used"), "min"), (_get("request_rate"), "max")),
}
# Short names for the table's pareto column.
SHORT_NAMES = {"cost_vs_ttft_p99": "cost", "throughput_per_gpu_vs_tpot": "tput", "gpus_vs_rate": "gpus"}


def frontier(rows: list[dict[str, Any]], name: str) -> list[int]:
    """Positions in ``rows`` of the rows on frontier ``name``, in row order."""
    (fx, dx), (fy, dy) = FRONTIERS[name]
    keyed = []
    for i, row in enumerate(rows):
        if row.get("status") not in PLAN_STATUSES:
            continue
        x, y = fx(row), fy(row)
        if x is None or y is None:
            continue
        # Both figures as "lower is better", so one sweep over x finds the frontier.
        keyed.append((x if dx == "min" else -x, y if dy == "min" else -y, i))
    keyed.sort()
    on: list[int] = []
    best_y = None
    j = 0
    while j < len(keyed):
        # A group of equal x: only its lowest y can be on the frontier (the rest are beaten by
        # it), and only if it is strictly lower than every y seen at a smaller x.
        k = j
        while k < len(keyed) and keyed[k][0] == keyed[j][0]:
            k += 1
        low = keyed[j][1]
        if best_y is None or low < best_y:
            on.extend(i for _, y, i in keyed[j:k] if y == low)
            best_y = low
        j = k
    return sorted(on)


def mark_pareto(rows: list[dict[str, Any]]) -> None:
    """Set every row's ``pareto`` to the names of the frontiers it is on (in :data:`FRONTIERS` order)."""
    for row in rows:
        row["pareto"] = []
    for name in FRONTIERS:
        for i in frontier(rows, name):
            rows[i]["pareto"].append(name)
