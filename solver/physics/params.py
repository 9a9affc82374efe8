"""Parameter counts from the architecture: per decoder layer (by how they shard) and for the model."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..input.catalog import Architecture


@dataclass(frozen=True)
class LayerParams:
    """Parameter counts of one decoder layer, split by how they shard and quantise."""

    attn_split: float  # attention projections split across TP ranks (quantised)
    attn_replicated: float  # projections every TP rank holds whole (MLA down-projections; KV heads < TP)
    small: float  # norms and biases (16-bit, replicated)
    mlp: float  # dense gated MLP (quantised, TP-split)
    shared: float  # shared experts (quantised, TP-split)
    expert: float  # one routed expert (quantised)
    experts: int  # routed experts in this layer
    router: float  # router weight and bias (16-bit, replicated)
    # Biases of one routed expert (gpt-oss: gate_up and down). They shard with their expert but stay
    # 16-bit: MXFP4 checkpoints quantise only the expert weight matrices (openai/gpt-oss-* keep
    # *_proj_bias in BF16).
    expert_bias: float = 0.0

    @property
    def total(self) -> float:
        return (self.attn_split + self.attn_replicated + self.small + self.mlp + self.shared
                + (self.expert + self.expert_bias) * self.experts + self.router)

    def active(self, top_k: int) -> float:
        """Parameters a token touches."""
        return (self.attn_split + self.attn_replicated + self.small + self.mlp + self.shared
                + (self.expert + self.expert_bias) * top_k + self.router)


def _attention_params(a: Architecture) -> tuple[float, float, float]:
    """(TP-split projections, projections replicated on every rank at TP=1 shapes, norms+biases)."""
    h = a.hidden
    if a.is_mla:
        qk_head = a.qk_nope_head_dim + a.qk_rope_head_dim
        if a.q_lora_rank:
            q_down = h * a.q_lora_rank
            q_up = a.q_lora_rank * a.heads * qk_head
            norms = a.q_lora_rank
        else:
            q_down, q_up, norms = 0, h * a.heads * qk_head, 0
        kv_down = h * (a.kv_lora_rank + a.qk_rope_head_dim)
        kv_up = a.kv_lora_rank * a.heads * (a.qk_nope_head_dim + a.v_head_dim)
        o = a.heads * a.v_head_dim * h
        # vLLM keeps the low-rank down-projections replicated (ReplicatedLinear) and splits the
        # per-head up-projections and o_proj.
        return q_up + kv_up + o, q_down + kv_down, norms + a.kv_lora_rank + 2 * h
    q = h * a.heads * a.head_dim
    kv = 2 * h * a.kv_heads * a.head_dim
    o = a.heads * a.head_dim * h
    small = 2 * h  # input and post-attention RMSNorm
    if a.attention_bias:
        small += a.heads * a.head_dim + 2 * a.kv_heads * a.head_dim
    if a.attention_out_bias:
        small += h
    if a.qk_norm:
        small += 2 * a.head_dim
    if a.attention_sinks:
        small += a.heads  # one learned sink logit per head (gpt-oss self_attn.sinks)
    return q + kv + o, 0.0, small


def layer_params(a: Architecture, kind: str) -> LayerParams:
    """Parameter counts of a 'dense' or 'moe' decoder layer."""
    split, repl, small = _attention_params(a)
    h = a.hidden
    if kind in ("dense", "dense16"):
        return LayerParams(split, repl, small, 3 * h * a.intermediate, 0.0, 0.0, 0, 0.0)
    router = h * a.experts + (a.experts if a.router_bias else 0)
    # gpt-oss fuses gate and up (gate_up_proj: hidden x 2*inter, bias 2*inter) and adds down_proj's
    # bias (hidden): the same 3 x hidden x inter weights plus 2*inter + hidden biases per expert.
    expert_bias = 2 * a.moe_intermediate + h if a.expert_bias else 0.0
    return LayerParams(
        split, repl, small, 0.0, 3 * h * a.shared_intermediate, 3 * h * a.moe_intermediate, a.experts, router,
        expert_bias,
    )


@dataclass(frozen=True)
class ParamCounts:
    """Whole-model parameter counts."""

    total: float
    active: float
    embedding: float
    lm_head: float  # zero when tied to the embedding
    per_kind: dict[str, float] = field(default_factory=dict)

    @property
    def active_without_embedding(self) -> float:
        """Active parameters without the input embedding, which a token only looks up.

        The convention of the gpt-oss model card (Table 1: "Unembedding parameters are counted
        towards active, but not embeddings") and of DeepSeek-V3's 36.7 B incl. the 0.9 B output
        head. A tied matrix stays counted once, as the LM head.
        """
        return self.active - (self.embedding if self.lm_head else 0.0)


def param_counts(a: Architecture) -> ParamCounts:
    """Total and active parameters from the architecture (embedding and LM head included)."""
    kinds = a.layer_kinds()
    embedding = a.vocab * a.hidden
    lm_head = 0.0 if a.tie_embeddings else a.vocab * a.hidden
    final_norm = a.hidden
    total = embedding + lm_head + final_norm
    active = total
    per_kind: dict[str, float] = {}
    for kind in set(kinds):
        lp = layer_params(a, kind)
        n = kinds.count(kind)
        per_kind[kind] = lp.total
        total += n * lp.total
        active += n * lp.active(a.top_k)
    return ParamCounts(total=total, active=active, embedding=embedding, lm_head=lm_head, per_kind=per_kind)
