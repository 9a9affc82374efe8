"""The requests a simulation serves: when they arrive and how long they are.

Three arrival processes, as benchmark tools run them: Poisson arrivals at a rate (``vllm bench
serve --request-rate``), a closed loop of N clients that each send their next request when the
previous one completes (``--max-concurrency`` with every prompt queued at once), and a trace of
recorded arrival times. Lengths are fixed, drawn uniformly from a range, or taken from the trace.
Every draw comes from one seeded generator, so the same inputs give the same requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A length: a fixed token count, or an inclusive (min, max) range drawn uniformly.
Length = int | tuple[int, int]


@dataclass(frozen=True)
class Requests:
    """The requests of one simulation, in submission order.

    ``arrival_s`` holds the arrival times of an open workload (Poisson or trace); for a closed
    loop it is None and ``clients`` requests start at time zero, each further one when a client's
    previous request completes.
    """

    input_tokens: np.ndarray  # int64, one per request
    output_tokens: np.ndarray  # int64, at least 1
    arrival_s: np.ndarray | None = None  # float64, non-decreasing; None for a closed loop
    clients: int = 0  # closed loop only

    def __post_init__(self) -> None:
        n = len(self.input_tokens)
        if len(self.output_tokens) != n or (self.arrival_s is not None and len(self.arrival_s) != n):
            raise ValueError("input_tokens, output_tokens and arrival_s must have one entry per request")
        if n and (self.input_tokens.min() < 1 or self.output_tokens.min() < 1):
            raise ValueError("every request needs at least one input and one output token")
        if self.arrival_s is None and self.clients < 1:
            raise ValueError("a closed loop needs at least one client")
        if self.arrival_s is not None and n > 1 and np.any(np.diff(self.arrival_s) < 0):
            raise ValueError("arrival times must not decrease")

    def __len__(self) -> int:
        return len(self.input_tokens)

    @property
    def closed_loop(self) -> bool:
        return self.arrival_s is None

    def split(self, parts: int) -> list[Requests]:
        """Round-robin over ``parts`` data-parallel replicas (request i to replica i mod parts).

        A closed loop splits its clients the same way: each replica keeps its own clients busy (with
        fewer clients than replicas, only as many replicas serve).
        """
        if self.arrival_s is None:
            parts = min(parts, self.clients)  # a replica without a client receives nothing
        out = []
        for r in range(parts):
            sl = slice(r, None, parts)
            arrival = None if self.arrival_s is None else self.arrival_s[sl]
            clients = 0 if self.arrival_s is not None else len(range(r, self.clients, parts))
            if arrival is None and clients == 0:
                continue
            out.append(Requests(self.input_tokens[sl], self.output_tokens[sl], arrival, clients))
        return out


def draw_lengths(length: Length, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` token counts: all equal to a fixed length, or uniform integers in an inclusive range."""
    if isinstance(length, tuple):
        lo, hi = length
        if lo < 1 or hi < lo:
            raise ValueError(f"a length range needs 1 <= min <= max; got {length}")
        return rng.integers(lo, hi + 1, size=n, dtype=np.int64)
    if length < 1:
        raise ValueError(f"a length must be at least 1; got {length}")
    return np.full(n, length, dtype=np.int64)


def poisson(rate_per_s: float, n: int, input_tokens: Length, output_tokens: Length, seed: int = 0) -> Requests:
    """``n`` requests arriving as a Poisson process at ``rate_per_s`` (exponential gaps, the first at its gap)."""
    if not rate_per_s > 0:
        raise ValueError(f"a request rate must be positive; got {rate_per_s}")
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1.0 / rate_per_s, size=n))
    return Requests(draw_lengths(input_tokens, n, rng), draw_lengths(output_tokens, n, rng), arrival)


def closed_loop(clients: int, n: int, input_tokens: Length, output_tokens: Length, seed: int = 0) -> Requests:
    """``n`` requests sent by ``clients`` clients, each sending its next request when one completes."""
    rng = np.random.default_rng(seed)
    return Requests(draw_lengths(input_tokens, n, rng), draw_lengths(output_tokens, n, rng), None, clients)


def from_records(arrival_s: list[float] | None, input_tokens: list[int], output_tokens: list[int],
                 clients: int = 0) -> Requests:
    """Requests from recorded lists (a trace, or a benchmark's saved lengths)."""
    arrival = None if arrival_s is None else np.asarray(arrival_s, dtype=np.float64)
    if arrival is not None and len(arrival):
        order = np.argsort(arrival, kind="stable")
        arrival = arrival[order] - arrival[order][0]
        ins = np.asarray(input_tokens, dtype=np.int64)[order]
        outs = np.asarray(output_tokens, dtype=np.int64)[order]
        return Requests(ins, outs, arrival, clients)
    return Requests(np.asarray(input_tokens, dtype=np.int64), np.asarray(output_tokens, dtype=np.int64), arrival,
                    clients)
