"""Facts the exact physics taught a search: a rule an option breaks whenever a stage holds enough layers.

The integer tables round, so near a limit a model can propose a plan the verifier rejects (the
optimistic tables of :mod:`solver.search.exact`) or miss one it accepts (the conservative ones).
Each rejection is turned into facts that hold for every split: "options of this configuration
and batch with at least these layers on stage s break rule R" (memory, cycle time and TTFT only
grow with a stage's layers), or, for a simulated percentile, "this split breaks R". The problem
keeps its facts (``Problem.learned``); every later model adds them behind the guard of their rule
and every witness checks them, so no solve proposes the same failure twice.
"""

from __future__ import annotations

from dataclasses import dataclass

# A replica count no configuration reaches: the upper end of "every dp".
ANY_DP = 1 << 30


@dataclass(frozen=True)
class Fact:
    """Options matching the fields break ``rule`` on splits with ``stage`` holding at least ``counts``.

    ``batch`` None: every batch level of the configuration. The fact holds for ``dp_lo <= dp <= dp_hi``.
    With ``split`` set, it is a no-good on exactly that split instead (no monotony known).
    """

    rule: str
    tp: int
    pp: int
    ep: int
    weights: str
    kv_cache: str
    batch: int | None
    dp_lo: int
    dp_hi: int
    adp: int = 1
    redundant: int = 0
    stage: int = 0
    counts: tuple[tuple[str, int], ...] = ()
    split: tuple[int, ...] | None = None

    def applies(self, cfg, batch: int) -> bool:
        """Whether the fact speaks of this configuration and batch."""
        return (cfg.tp == self.tp and cfg.pp == self.pp and cfg.ep == self.ep and cfg.adp == self.adp
                and cfg.redundant == self.redundant and cfg.weights == self.weights
                and cfg.kv_cache == self.kv_cache and (self.batch is None or self.batch == batch)
                and self.dp_lo <= cfg.dp <= self.dp_hi)

    def broken_by(self, split: list[int] | tuple[int, ...], counts: list[dict[str, int]]) -> bool:
        """Whether a split (its layers per stage, and per stage and kind) is one the fact rules out."""
        if self.split is not None:
            return tuple(split) == self.split
        if self.stage >= len(counts):
            return False
        have = counts[self.stage]
        return all(have.get(k, 0) >= n for k, n in self.counts)


def facts_for(facts: list[Fact], cfg, batch: int) -> list[Fact]:
    """The facts that speak of one option."""
    return [f for f in facts if f.applies(cfg, batch)]
