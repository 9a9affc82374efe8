"""Catalogs of model and GPU cards, and the reading of Hugging Face config.json files.

Cards live in ``models/llm`` and ``models/gpu`` of the repository; the same files ship inside the
installed package (``solver/catalog_data``), so ``pip install .`` works outside the repository.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import InputError, closest, from_validation_error, json_path, load_json
from .schema import GpuCard, ModelCard

SUPPORTED_ARCHITECTURES = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "MixtralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "Qwen3MoeForCausalLM",
    "DeepseekV3ForCausalLM",
    "GptOssForCausalLM",
    "MiniMaxM2ForCausalLM",
)

# Values of a config's ``layer_types`` entries (Hugging Face's names) and whether each is sliding.
LAYER_TYPES = {"sliding_attention": True, "full_attention": False}


@dataclass(frozen=True)
class Architecture:
    """A model's shape, normalised from its config: everything the cost model needs."""

    name: str
    hf_repo: str | None
    architecture: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tie_embeddings: bool
    attention_bias: bool = False
    qk_norm: bool = False
    # Multi-head latent attention (DeepSeek); zero when absent.
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    # Mixture of experts; zero when dense.
    experts: int = 0
    top_k: int = 0
    moe_intermediate: int = 0
    shared_experts: int = 0
    shared_intermediate: int = 0
    router_bias: bool = False
    moe_layers: tuple[bool, ...] = field(default=())
    max_position_embeddings: int = 0  # the model's context window (0 when the config does not say)
    # The precision the checkpoint's weights ship in (config.json quantization_config), e.g. fp8 for
    # DeepSeek-V3's block-FP8 weights, mxfp4 for gpt-oss: launch commands serve it without a flag.
    checkpoint_dtype: str = "bf16"
    # Components the checkpoint keeps in 16-bit (its quantization_config's ignore / not-convert
    # list): "attention", "dense_mlp", "shared_experts". Kimi-K2.5's INT4 checkpoint quantises the
    # routed experts alone. Applies when a plan serves the checkpoint's own precision.
    unquantised: frozenset[str] = frozenset()
    # Bytes per quantised parameter of the checkpoint's format when it differs from the dtype's
    # default (int4 with a 16-bit scale per group of 32: 0.5625); 0 = WEIGHT_BYTES of the dtype.
    checkpoint_weight_bytes: float = 0.0
    # Dense decoder layers whose MLP the checkpoint keeps 16-bit (layer kind "dense16").
    unquantised_layers: frozenset[int] = frozenset()
    # Block-wise FP8 checkpoints (quantization_config.weight_block_size, DeepSeek-V3: 128 x 128): a
    # TP shard of a weight must hold whole blocks; 0 when the checkpoint is not block-quantised.
    fp8_block: int = 0
    declared_params_B: float | None = None
    declared_active_params_B: float | None = None
    # Sliding-window attention (gpt-oss): the window in tokens and, per decoder layer, True where the
    # layer attends only to the last ``sliding_window`` tokens; zero / empty when every layer is full.
    sliding_window: int = 0
    sliding_layers: tuple[bool, ...] = field(default=())
    attention_sinks: bool = False  # one learned softmax "sink" logit per attention head per layer (gpt-oss)
    attention_out_bias: bool = False  # o_proj has a bias too (gpt-oss); attention_bias covers q, k, v
    expert_bias: bool = False  # routed experts' gate/up and down projections carry biases (gpt-oss)

    @property
    def is_mla(self) -> bool:
        """Multi-head latent attention."""
        return self.kv_lora_rank > 0

    @property
    def is_moe(self) -> bool:
        """Mixture of experts in at least one layer."""
        return self.experts > 0 and any(self.moe_layers)

    @property
    def has_sliding_window(self) -> bool:
        """At least one layer attends through a sliding window."""
        return self.sliding_window > 0 and any(self.sliding_layers)

    def __post_init__(self) -> None:
        # The kinds are read for every option and split: computed once (the dataclass is frozen).
        moe = self.moe_layers or (False,) * self.layers
        kinds = tuple("moe" if m else "dense16" if i in self.unquantised_layers else "dense" for i, m in enumerate(moe))
        object.__setattr__(self, "_kinds", kinds)

    def layer_kinds(self) -> tuple[str, ...]:
        """'dense', 'moe' or 'dense16' (a dense layer the checkpoint keeps 16-bit) per decoder layer, in order."""
        return self._kinds


def _get(cfg: dict[str, Any], key: str, file: str | None, prefix: str, default: Any = ...) -> Any:
    if key in cfg and cfg[key] is not None:
        return cfg[key]
    if default is ...:
        raise InputError(file, json_path([*prefix.split("."), key]) if prefix else key, None,
                         "required config.json field is missing")
    return default


# Bounds of config integers: the largest published models times a wide margin (Llama-3.1-405B has
# hidden 16384 and 126 layers, DeepSeek-V3 256 experts, Gemma 262k vocabulary). A value beyond them
# is a typo, and would overflow the planner's integer tables.
CONFIG_INT_MAX = {
    "hidden_size": 131_072, "num_hidden_layers": 4_096, "num_attention_heads": 4_096, "num_key_value_heads": 4_096,
    "head_dim": 8_192, "intermediate_size": 2_000_000, "moe_intermediate_size": 2_000_000, "vocab_size": 8_000_000,
    "max_position_embeddings": 1_000_000_000, "num_local_experts": 16_384, "num_experts": 16_384,
    "n_routed_experts": 16_384, "num_experts_per_tok": 1_024, "n_shared_experts": 1_024, "decoder_sparse_step": 4_096,
    "first_k_dense_replace": 4_096, "moe_layer_freq": 4_096, "q_lora_rank": 131_072, "kv_lora_rank": 131_072,
    "qk_nope_head_dim": 8_192, "qk_rope_head_dim": 8_192, "v_head_dim": 8_192, "sliding_window": 1_000_000_000,
}


def _positive_int(cfg: dict[str, Any], key: str, file: str | None, prefix: str, default: Any = ...) -> int:
    value = _get(cfg, key, file, prefix, default)
    top = CONFIG_INT_MAX.get(key, 1_000_000_000)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > top:
        path = f"{prefix}.{key}" if prefix else key
        raise InputError(file, path, value, f"must be an integer from 0 to {top:,}")
    return value


def _flag(cfg: dict[str, Any], key: str, default: bool, file: str | None, prefix: str) -> bool:
    """A boolean config field: true or false (not "false", not 0), absent or null for the default."""
    value = cfg.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InputError(file, f"{prefix}.{key}" if prefix else key, value, "must be true or false")
    return value


def _layer_list(cfg: dict[str, Any], key: str, layers: int, file: str | None, prefix: str) -> set[int]:
    """A list of decoder-layer indices (e.g. Qwen3-MoE's mlp_only_layers), each in [0, layers)."""
    value = cfg.get(key)
    path = f"{prefix}.{key}" if prefix else key
    if value is None:
        return set()
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < layers
                                          for v in value):
        raise InputError(file, path, value, f"must be a list of layer indices from 0 to {layers - 1}")
    return set(value)


def _sliding_layers(cfg: dict[str, Any], layers: int, file: str | None, prefix: str) -> tuple[bool, ...]:
    """Per-layer sliding flags from ``layer_types``, strictly checked.

    Absent, it takes the default of transformers' GptOssConfig (configuration_gpt_oss.py): even layers
    sliding, odd layers full ("sliding_attention" if (i + 1) % 2 else "full_attention").
    """
    base = f"{prefix}.layer_types" if prefix else "layer_types"
    types = cfg.get("layer_types")
    if types is None:
        return tuple(bool((i + 1) % 2) for i in range(layers))
    if not isinstance(types, list):
        raise InputError(file, base, types, f"must be a list of {layers} layer types ({' or '.join(LAYER_TYPES)})")
    if len(types) != layers:
        raise InputError(file, base, types,
                         f"has {len(types)} entries; needs one per layer (num_hidden_layers = {layers})")
    out = []
    for i, t in enumerate(types):
        if not isinstance(t, str) or t not in LAYER_TYPES:
            raise InputError(file, f"{base}[{i}]", t, f"unknown layer type; accepted: {', '.join(LAYER_TYPES)}")
        out.append(LAYER_TYPES[t])
    return tuple(out)


def architecture_from_config(
    cfg: dict[str, Any],
    *,
    name: str,
    hf_repo: str | None = None,
    declared_params_B: float | None = None,
    declared_active_params_B: float | None = None,
    file: str | None = None,
    prefix: str = "",
) -> Architecture:
    """Normalise Hugging Face config.json fields into an :class:`Architecture`.

    Raises :class:`InputError` naming the supported architectures when the config is of another
    kind, and the field when a value is out of range or the fields disagree with each other.
    """
    arch = _architecture(cfg, name=name, hf_repo=hf_repo, declared_params_B=declared_params_B,
                         declared_active_params_B=declared_active_params_B, file=file, prefix=prefix)
    at = (lambda key: f"{prefix}.{key}" if prefix else key)  # noqa: E731
    if arch.vocab < 1:
        raise InputError(file, at("vocab_size"), arch.vocab, "must be a positive integer")
    if arch.experts and not 1 <= arch.top_k <= arch.experts:
        raise InputError(file, at("num_experts_per_tok"), arch.top_k,
                         f"each token routes to 1 to {arch.experts} experts (the model's routed experts)")
    if arch.experts and any(arch.moe_layers) and arch.moe_intermediate < 1:
        raise InputError(file, at("moe_intermediate_size"), arch.moe_intermediate, "must be a positive integer")
    if not arch.is_moe and arch.intermediate < 1:
        raise InputError(file, at("intermediate_size"), arch.intermediate, "must be a positive integer")
    return arch


def _architecture(
    cfg: dict[str, Any],
    *,
    name: str,
    hf_repo: str | None,
    declared_params_B: float | None,
    declared_active_params_B: float | None,
    file: str | None,
    prefix: str,
) -> Architecture:
    archs = cfg.get("architectures") or []
    arch = archs[0] if isinstance(archs, list) and archs else None
    if arch not in SUPPORTED_ARCHITECTURES:
        path = f"{prefix}.architectures" if prefix else "architectures"
        raise InputError(file, path, archs, f"unsupported architecture; supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
    g = lambda k, d=...: _positive_int(cfg, k, file, prefix, d)  # noqa: E731
    hidden = g("hidden_size")
    layers = g("num_hidden_layers")
    heads = g("num_attention_heads")
    for key, value in (("hidden_size", hidden), ("num_hidden_layers", layers), ("num_attention_heads", heads)):
        if value == 0:
            raise InputError(file, f"{prefix}.{key}" if prefix else key, value, "must be a positive integer")
    kv_heads = g("num_key_value_heads", heads)
    if arch != "DeepseekV3ForCausalLM" and (kv_heads == 0 or heads % kv_heads):
        path = f"{prefix}.num_key_value_heads" if prefix else "num_key_value_heads"
        raise InputError(file, path, kv_heads,
                         f"grouped-query attention needs KV heads that divide the {heads} attention heads "
                         f"(accepted: {[d for d in range(1, heads + 1) if heads % d == 0]})")
    head_dim = g("head_dim", hidden // heads)
    tie = _flag(cfg, "tie_word_embeddings", False, file, prefix)
    quant = cfg.get("quantization_config")
    checkpoint, unquantised, checkpoint_bytes, layers16 = _checkpoint_format(quant, layers)
    block = quant.get("weight_block_size") if isinstance(quant, dict) and checkpoint == "fp8" else None
    fp8_block = block[0] if (isinstance(block, list) and block and isinstance(block[0], int)
                             and not isinstance(block[0], bool) and 0 < block[0] <= 4096) else 0
    if head_dim == 0:
        raise InputError(file, f"{prefix}.head_dim" if prefix else "head_dim", head_dim, "must be a positive integer")
    common: dict[str, Any] = dict(
        fp8_block=fp8_block,
        name=name,
        hf_repo=hf_repo,
        architecture=arch,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=g("intermediate_size", 0),
        vocab=g("vocab_size"),
        tie_embeddings=tie,
        max_position_embeddings=g("max_position_embeddings", 0),
        checkpoint_dtype=checkpoint,
        unquantised=unquantised,
        checkpoint_weight_bytes=checkpoint_bytes,
        unquantised_layers=layers16,
        declared_params_B=declared_params_B,
        declared_active_params_B=declared_active_params_B,
    )
    if arch in ("LlamaForCausalLM", "MistralForCausalLM"):
        return Architecture(**common, attention_bias=_flag(cfg, "attention_bias", False, file, prefix))
    if arch == "Qwen2ForCausalLM":
        return Architecture(**common, attention_bias=True)  # Qwen2 has q/k/v biases by construction
    if arch == "Qwen3ForCausalLM":
        return Architecture(**common, qk_norm=True, attention_bias=_flag(cfg, "attention_bias", False, file, prefix))
    if arch == "MixtralForCausalLM":
        experts = g("num_local_experts")
        return Architecture(
            **common,
            experts=experts,
            top_k=g("num_experts_per_tok"),
            moe_intermediate=g("intermediate_size"),
            moe_layers=(True,) * layers,
        )
    if arch == "Qwen3MoeForCausalLM":
        experts = g("num_experts")
        step = g("decoder_sparse_step", 1) or 1
        mlp_only = _layer_list(cfg, "mlp_only_layers", layers, file, prefix)
        moe_layers = tuple(
            (i not in mlp_only) and experts > 0 and (i + 1) % step == 0 for i in range(layers)
        )
        return Architecture(
            **common,
            qk_norm=True,
            attention_bias=_flag(cfg, "attention_bias", False, file, prefix),
            experts=experts,
            top_k=g("num_experts_per_tok"),
            moe_intermediate=g("moe_intermediate_size"),
            moe_layers=moe_layers,
        )
    if arch == "GptOssForCausalLM":
        # Every layer is MoE (intermediate_size is one expert's width); q/k/v/o, router and experts
        # carry biases; each head has a learned sink logit; layers alternate sliding / full attention.
        experts = g("num_local_experts")
        top_k = g("num_experts_per_tok")
        for key, value in (("num_local_experts", experts), ("num_experts_per_tok", top_k)):
            if value == 0:
                raise InputError(file, f"{prefix}.{key}" if prefix else key, value, "must be a positive integer")
        if top_k > experts:
            path = f"{prefix}.num_experts_per_tok" if prefix else "num_experts_per_tok"
            raise InputError(file, path, top_k, f"cannot exceed num_local_experts = {experts}")
        sliding = _sliding_layers(cfg, layers, file, prefix)
        window = g("sliding_window", 0)
        if any(sliding) and window == 0:
            path = f"{prefix}.sliding_window" if prefix else "sliding_window"
            raise InputError(file, path, cfg.get("sliding_window"),
                             "layer_types has sliding_attention layers: give the window as a positive integer")
        return Architecture(
            **common,
            attention_bias=_flag(cfg, "attention_bias", True, file, prefix),
            attention_out_bias=_flag(cfg, "attention_bias", True, file, prefix),
            attention_sinks=True,
            experts=experts,
            top_k=top_k,
            moe_intermediate=g("intermediate_size"),
            router_bias=True,
            expert_bias=True,
            moe_layers=(True,) * layers,
            sliding_window=window if any(sliding) else 0,
            sliding_layers=sliding if window else (False,) * layers,
        )
    if arch == "MiniMaxM2ForCausalLM":
        # Every layer is MoE (intermediate_size is one expert's width), GQA with an explicit
        # head_dim (q width 6144 over hidden 3072 in MiniMax-M2.5), QK norm, a routing bias
        # (e_score_correction_bias); attn_type_list 1 is softmax attention in every layer.
        types = cfg.get("attn_type_list")
        if types is not None and (not isinstance(types, list) or any(t != 1 for t in types)):
            path = f"{prefix}.attn_type_list" if prefix else "attn_type_list"
            raise InputError(file, path, types, "only softmax attention (1) in every layer is modelled; "
                             "linear-attention layers are not")
        return Architecture(
            **common,
            qk_norm=_flag(cfg, "use_qk_norm", False, file, prefix),
            experts=g("num_local_experts"),
            top_k=g("num_experts_per_tok"),
            moe_intermediate=g("intermediate_size"),
            router_bias=_flag(cfg, "use_routing_bias", False, file, prefix),
            moe_layers=(True,) * layers,
        )
    # DeepseekV3ForCausalLM: MLA attention, dense first layers, shared + routed experts.
    experts = g("n_routed_experts")
    first_dense = g("first_k_dense_replace", 0)
    freq = g("moe_layer_freq", 1) or 1
    moe_layers = tuple(experts > 0 and i >= first_dense and i % freq == 0 for i in range(layers))
    moe_inter = g("moe_intermediate_size")
    shared = g("n_shared_experts", 0)
    return Architecture(
        **{**common, "head_dim": g("v_head_dim")},
        q_lora_rank=g("q_lora_rank", 0),
        kv_lora_rank=g("kv_lora_rank"),
        qk_nope_head_dim=g("qk_nope_head_dim"),
        qk_rope_head_dim=g("qk_rope_head_dim"),
        v_head_dim=g("v_head_dim"),
        experts=experts,
        top_k=g("num_experts_per_tok"),
        moe_intermediate=moe_inter,
        shared_experts=shared,
        shared_intermediate=shared * moe_inter,
        router_bias=cfg.get("topk_method") == "noaux_tc",
        moe_layers=moe_layers,
    )


# quantization_config.quant_method -> the project's weight dtype (others: a 16-bit checkpoint).
_QUANT_METHODS = {"fp8": "fp8", "fbgemm_fp8": "fp8", "mxfp4": "mxfp4", "awq": "int4", "gptq": "int4",
                  "modelopt_fp4": "fp4"}
# ModelOpt exports (nvidia/*-FP8, *-NVFP4) name the format in quant_algo.
_MODELOPT_ALGOS = {"FP8": "fp8", "NVFP4": "fp4"}
# A module of one named decoder layer: model.layers.<i>.self_attn.* / model.layers.<i>.mlp.<proj>
# (a dense MLP projection; experts and shared experts are not dense MLPs).
_NAMED_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.(self_attn|mlp)\.(?!experts|shared_expert|gate\b)")
# Substrings of an ignore / modules_to_not_convert entry -> the component it keeps 16-bit.
_UNQUANTISED_PATTERNS = (("self_attn", "attention"), ("shared_expert", "shared_experts"),
                         ("mlp.(gate", "dense_mlp"), ("mlp\\.(gate", "dense_mlp"))


def _checkpoint_format(quant: Any, layers: int) -> tuple[str, frozenset[str], float, frozenset[int]]:
    """(weight dtype, components kept 16-bit, bytes per quantised parameter or 0, layers whose MLP is
    kept 16-bit) of a checkpoint.

    compressed-tensors (Kimi-K2.5's INT4: ``config_groups.*.weights`` {type int, num_bits 4,
    group_size 32}) stores a 16-bit scale per group: 0.5 + 2 / group bytes a weight. Its ``ignore``
    list (like ``modules_to_not_convert``) names the modules left in 16-bit: patterns over all
    layers' self_attn, shared_experts and dense mlp projections map to the components; named
    layers (``model.layers.0.mlp.down_proj``) to those layers, attention to the component when
    every layer's is named.
    """
    if not isinstance(quant, dict):
        return "bf16", frozenset(), 0.0, frozenset()
    method = quant.get("quant_method")
    method = method if isinstance(method, str) else ""
    dtype, per_param = _QUANT_METHODS.get(method, "bf16"), 0.0
    if method == "modelopt":
        dtype = _MODELOPT_ALGOS.get(str(quant.get("quant_algo", "")).upper(), "bf16")
    if method == "compressed-tensors":
        groups = quant.get("config_groups")
        weights = next((g.get("weights") for g in groups.values() if isinstance(g, dict)), None) \
            if isinstance(groups, dict) else None
        if isinstance(weights, dict):
            bits, kind, size = weights.get("num_bits"), weights.get("type"), weights.get("group_size")
            dtype = {(4, "int"): "int4", (8, "int"): "int8", (8, "float"): "fp8", (4, "float"): "fp4"}.get(
                (bits, kind), "bf16")
            if dtype == "int4" and isinstance(size, int) and not isinstance(size, bool) and size > 0:
                per_param = 0.5 + 2.0 / size
    names = quant.get("ignore") or quant.get("modules_to_not_convert") or []
    keep: set[str] = set()
    attention_layers: set[int] = set()
    mlp_layers: set[int] = set()
    if isinstance(names, list) and dtype != "bf16":
        for name in names:
            if not isinstance(name, str):
                continue
            named = _NAMED_LAYER.search(name)
            if named is not None:
                index = int(named.group(1))
                if 0 <= index < layers:
                    (attention_layers if named.group(2) == "self_attn" else mlp_layers).add(index)
                continue
            for needle, component in _UNQUANTISED_PATTERNS:
                if needle in name:
                    keep.add(component)
    if layers and len(attention_layers) == layers:
        keep.add("attention")
    return dtype, frozenset(keep), per_param, frozenset(mlp_layers)


# ---------------------------------------------------------------------------------------------
# Card files
# ---------------------------------------------------------------------------------------------


def _catalog_dirs(kind: str) -> list[Path]:
    """Where cards of ``kind`` ('llm' or 'gpu') are looked up, first match wins.

    Order: the directories of ``SOLVE_CATALOG_PATH`` (``os.pathsep``-separated, each holding
    ``llm/`` and/or ``gpu/``), then the repository, then the package. The user's directories come
    first so that a card there overrides the shipped card of the same name (e.g. a re-measured GPU).
    """
    dirs = []
    for entry in os.environ.get("SOLVE_CATALOG_PATH", "").split(os.pathsep):
        user = Path(entry).expanduser() / kind if entry.strip() else None
        if user is not None and user.is_dir():
            dirs.append(user)
    repo = Path(__file__).resolve().parent.parent / "models" / kind
    if repo.is_dir():
        dirs.append(repo)
    try:
        packaged = resources.files("solver.catalog_data").joinpath(kind)
        if packaged.is_dir():
            dirs.append(Path(str(packaged)))
    except (ModuleNotFoundError, TypeError):
        pass
    return dirs


def reload_catalog() -> None:
    """Forget the cached card lists and cards, e.g. after ``SOLVE_CATALOG_PATH`` changed."""
    _card_files.cache_clear()
    model_card.cache_clear()
    gpu_card.cache_clear()


@cache
def _card_files(kind: str) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for d in _catalog_dirs(kind):
        for p in sorted(d.glob("*.json")):
            files.setdefault(p.stem, p)
    return files


def known_models() -> list[str]:
    """Names of the model cards in the catalog."""
    return sorted(_card_files("llm"))


def known_gpus() -> list[str]:
    """Names of the GPU cards in the catalog."""
    return sorted(_card_files("gpu"))


def _unknown(kind: str, name: str, known: list[str], file: str | None, path: str) -> InputError:
    return InputError(file, path, name, f"unknown {kind}{closest(name, known)} (known: {', '.join(known)})")


@cache
def model_card(name: str) -> ModelCard:
    """The catalog model card ``name`` (raises :class:`KeyError` when absent)."""
    path = _card_files("llm")[name]
    try:
        return ModelCard.model_validate(load_json(str(path)))
    except ValidationError as err:
        raise from_validation_error(err, ModelCard, str(path)) from None


@cache
def gpu_card(name: str) -> GpuCard:
    """The catalog GPU card ``name`` (raises :class:`KeyError` when absent)."""
    path = _card_files("gpu")[name]
    try:
        return GpuCard.model_validate(load_json(str(path)))
    except ValidationError as err:
        raise from_validation_error(err, GpuCard, str(path)) from None


def resolve_gpu(ref: str | GpuCard, file: str | None = None, path: str = "cluster.gpu") -> GpuCard:
    """A GPU card from a catalog name or an inline card."""
    if isinstance(ref, GpuCard):
        return ref
    if ref not in _card_files("gpu"):
        raise _unknown("GPU", ref, known_gpus(), file, path)
    return gpu_card(ref)


def architecture_of(card: ModelCard, file: str | None = None, prefix: str = "model.config") -> Architecture:
    """Normalise a model card's config."""
    return architecture_from_config(
        card.config,
        name=card.name,
        hf_repo=card.hf_repo,
        declared_params_B=card.declared_params_B,
        declared_active_params_B=card.declared_active_params_B,
        file=file,
        prefix=prefix,
    )


def resolve_model(ref: Any, file: str | None = None, base_dir: Path | None = None) -> Architecture:
    """An :class:`Architecture` from a card name, an inline card or an ``hf_config`` reference."""
    from .schema import HfConfigRef

    if isinstance(ref, str):
        if ref not in _card_files("llm"):
            raise _unknown("model", ref, known_models(), file, "model")
        card = model_card(ref)
        return architecture_of(card, file=str(_card_files("llm")[ref]), prefix="config")
    if isinstance(ref, HfConfigRef):
        cfg_path = Path(ref.hf_config)
        if not cfg_path.is_absolute() and base_dir is not None:
            cfg_path = base_dir / cfg_path
        if not cfg_path.is_file():
            raise InputError(file, "model.hf_config", ref.hf_config, "config.json file not found")
        named = f" (the config.json that {file or 'the instance'} names at model.hf_config)"
        try:
            cfg = load_json(str(cfg_path))
        except InputError as err:
            raise InputError(err.file, err.path, err.value, err.accepted + named) from None
        if not isinstance(cfg, dict):
            raise InputError(str(cfg_path), "", None, "a config.json must be a JSON object" + named)
        name = ref.name or cfg_path.resolve().parent.name
        return architecture_from_config(
            cfg, name=name, hf_repo=ref.hf_repo, declared_params_B=ref.declared_params_B, file=str(cfg_path)
        )
    return architecture_of(ref, file=file)
