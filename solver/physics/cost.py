"""What a deployment costs: dollars per hour and per million output tokens, from a GPU-hour price.

One source for the arithmetic: the objectives, the verifier's report, the capacity planner and the
sweep rows all call these functions.
"""

from __future__ import annotations

from dataclasses import dataclass

SECONDS_PER_HOUR = 3600.0
TOKENS_PER_MILLION = 1e6


@dataclass(frozen=True)
class Price:
    """A GPU-hour price and where it came from (``origin``: catalog, instance or --price)."""

    usd_per_gpu_hour: float
    origin: str
    source: str
    date: str | None = None
    kind: str = "on-demand"

    def as_json(self) -> dict:
        """The ``price`` block of a report."""
        return {"usd_per_gpu_hour": self.usd_per_gpu_hour, "kind": self.kind, "origin": self.origin,
                "source": self.source, "date": self.date}


def cost_per_hour_usd(price: Price | float, gpus: int) -> float:
    """Dollars per hour of ``gpus`` GPUs at ``price`` per GPU-hour (every GPU used is paid, busy or not)."""
    per_gpu = price.usd_per_gpu_hour if isinstance(price, Price) else float(price)
    return per_gpu * gpus


def cost_per_million_tokens_usd(usd_per_hour: float, output_tokens_per_s: float) -> float:
    """Dollars per million output tokens when ``usd_per_hour`` buys ``output_tokens_per_s`` (inf at zero)."""
    if output_tokens_per_s <= 0:
        return float("inf")
    return usd_per_hour / (output_tokens_per_s * SECONDS_PER_HOUR) * TOKENS_PER_MILLION
