"""One engine step of one replica, as a function of what the step holds: the model the simulator runs.

An engine step advances every running sequence by one token and carries part of a prompt's prefill
(chunked prefill). Its time comes from the same per-layer costs (:mod:`.timing`) that give CP-SAT
its coefficients (:mod:`.stages`), so the simulator, the verifier and the search agree by
construction. With ``pp`` pipeline stages, the engine keeps ``pp`` micro-batches in flight: the
step's work is split over them and the slowest stage sets the pace, ``pp x max_s stage_s(work /
pp)``, which is exactly the decode cycle of :func:`~solver.physics.serving.serving_metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .layout import KINDS, Config, Context, boundary_link, stage_counts
from .memory import window_of, windowed_keys
from .timing import ZERO_COST, LayerCost, layer_cost, lm_head_cost, send_cost


@dataclass(frozen=True)
class StageCost:
    """One pipeline stage: its layers (and the send to the next stage), the LM head, the step overhead."""

    body: LayerCost
    head: LayerCost  # LM head and sampler: the last stage only (ZERO_COST elsewhere)
    overhead_s: float  # the engine's fixed cost per step (scheduling, launch, sampling bookkeeping)

    def time_s(self, tokens: float, context: float, pairs: float, sampled: float) -> float:
        """Seconds this stage spends on a (micro-)step."""
        t = self.body.time_s(tokens, context, pairs) + self.overhead_s
        return t + self.head.time_s(sampled) if sampled > 0 else t


@dataclass(frozen=True)
class StepModel:
    """Time of one engine step of one replica, given its decodes and its prefill chunk."""

    stages: tuple[StageCost, ...]
    # Sliding-window attention (gpt-oss): the share of layers that attend to every key, and the
    # window the others attend within. A full-attention model has 1.0 and 0.
    full_fraction: float = 1.0
    window: int = 0
    # Attention data parallelism: ``ranks`` attention ranks, each prefilling its own prompts. The
    # step's costs are the ranks' even share; ``rank_excess`` (per stage: seconds per prompt token
    # and per causal pair) is what the busiest rank adds for each token (pair) it holds above that
    # share, its attention and dense layers being its own (the experts see every rank's tokens).
    ranks: int = 1
    rank_excess: tuple[tuple[float, float], ...] = ()

    @property
    def pp(self) -> int:
        return len(self.stages)

    def step_s(self, decode_seqs: float, context: float, prefill_tokens: float = 0.0, pairs: float = 0.0,
               prefills_done: float = 0.0, busiest_tokens: float | None = None,
               busiest_pairs: float = 0.0) -> float:
        """Seconds of one step.

        ``decode_seqs`` sequences each decode a token attending to ``context`` keys in total;
        ``prefill_tokens`` prompt tokens with ``pairs`` causal (query, key) pairs ride along, and
        ``prefills_done`` prompts finish their prefill in this step (their first token is sampled).
        With attention DP, ``busiest_tokens`` / ``busiest_pairs`` are the prompt tokens and pairs of
        the rank holding the most (None: spread evenly).
        """
        tokens = decode_seqs + prefill_tokens
        sampled = decode_seqs + prefills_done
        excess = [0.0] * len(self.stages)
        if self.rank_excess and busiest_tokens is not None:
            extra_t = max(busiest_tokens - prefill_tokens / self.ranks, 0.0)
            extra_p = max(busiest_pairs - pairs / self.ranks, 0.0)
            if self.window:
                extra_p = windowed_keys(self.full_fraction, self.window, extra_t, extra_p)
            excess = [ct * extra_t + cp * extra_p for ct, cp in self.rank_excess]
        if self.window:
            context = windowed_keys(self.full_fraction, self.window, decode_seqs, context)
            pairs = windowed_keys(self.full_fraction, self.window, prefill_tokens, pairs)
        pp = len(self.stages)
        if pp == 1:
            return self.stages[0].time_s(tokens, context, pairs, sampled) + excess[0]
        return pp * max(st.time_s(tokens / pp, context / pp, pairs / pp, sampled / pp) + ex / pp
                        for st, ex in zip(self.stages, excess, strict=True))

    def decode_run_s(self, decode_seqs: int, context: float, steps: int) -> float:
        """Seconds of ``steps`` decode-only steps, the context growing by ``decode_seqs`` keys a step.

        Exact for one stage (the step time is linear in the context; with sliding windows once the
        contexts exceed the window); with pipeline stages the slowest stage may change along the
        run, and the trapezoid over its ends is an upper bound.
        """
        if steps <= 0:
            return 0.0
        first = self.step_s(decode_seqs, context)
        if steps == 1:
            return first
        last = self.step_s(decode_seqs, context + (steps - 1) * decode_seqs)
        return steps * (first + last) / 2


def stage_costs(ctx: Context, cfg: Config, layers_per_stage: list[int] | tuple[int, ...],
                balanced: bool = True) -> tuple[StageCost, ...]:
    """The cost of each pipeline stage of ``cfg`` holding ``layers_per_stage`` decoder layers
    (``balanced``: a step's tokens spread over the attention-DP ranks; else all on one, as a lone
    prompt's)."""
    kinds = ctx.arch.layer_kinds()
    per_kind = {k: layer_cost(ctx, k, cfg, balanced=balanced) for k in set(kinds)}
    head = lm_head_cost(ctx, cfg)
    out = []
    for s, counts in enumerate(stage_counts(kinds, list(layers_per_stage))):
        body = ZERO_COST
        for k in KINDS:
            if counts.get(k):
                body = body + per_kind[k].scaled(counts[k])
        last = s == cfg.pp - 1
        if not last:
            body = body + send_cost(ctx, boundary_link(ctx, cfg, s))
        out.append(StageCost(body=body, head=head if last else ZERO_COST, overhead_s=ctx.eff.step_overhead_s))
    return tuple(out)


def step_model(ctx: Context, cfg: Config, layers_per_stage: list[int] | tuple[int, ...],
               balanced: bool = True) -> StepModel:
    """The step model of one replica of ``cfg`` with the given split (``balanced``: see :func:`stage_costs`)."""
    full, window = window_of(ctx.arch)
    stages = stage_costs(ctx, cfg, layers_per_stage, balanced)
    if cfg.adp == 1 or not balanced:
        return StepModel(stages, full_fraction=full, window=window)
    lone = stage_costs(ctx, cfg, layers_per_stage, balanced=False)
    k = cfg.adp / (cfg.adp - 1)  # one token above the even share costs the lone rate less the share's
    excess = tuple(((lo.body.per_token_s - st.body.per_token_s) * k, (lo.body.per_pair_s - st.body.per_pair_s) * k)
                   for st, lo in zip(stages, lone, strict=True))
    return StepModel(stages, full_fraction=full, window=window, ranks=cfg.adp, rank_excess=excess)
