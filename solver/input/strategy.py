"""The ``--strategy`` text (``tp=2,pp=4,layers=19+21+21+19,weights=fp8,kv=fp8,batch=64``) as strategy pins."""

from __future__ import annotations

import re
from typing import Any

from .errors import InputError, closest
from .schema import KV_DTYPES, WEIGHT_DTYPES

_STRATEGY_KEYS = {"tp": "tp", "pp": "pp", "dp": "dp", "ep": "ep", "attention_dp": "attention_dp", "adp": "attention_dp",
                  "layers": "layers_per_stage",
                  "layers_per_stage": "layers_per_stage", "weights": "weights", "kv": "kv_cache",
                  "kv_cache": "kv_cache", "batch": "max_num_seqs", "max_num_seqs": "max_num_seqs",
                  "redundant_experts": "redundant_experts", "redundant": "redundant_experts"}


def parse_strategy(text: str) -> dict[str, Any]:
    """``tp=2,pp=4,layers=19+21+21+19,weights=fp8,kv=fp8,batch=64`` -> strategy pin fields."""
    out: dict[str, Any] = {}
    if not text.strip():
        raise InputError("--strategy", "", text, f"empty; give key=value pairs, keys: {', '.join(sorted(_STRATEGY_KEYS))}")
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise InputError("--strategy", part, part, f"expected key=value; keys: {', '.join(sorted(_STRATEGY_KEYS))}")
        key, value = (s.strip() for s in part.split("=", 1))
        field = _STRATEGY_KEYS.get(key)
        if field is None:
            raise InputError("--strategy", key, value,
                             f"unknown key '{key}'{closest(key, _STRATEGY_KEYS)} (keys: {', '.join(sorted(_STRATEGY_KEYS))})")
        if field in out:
            raise InputError("--strategy", key, value, f"{key} is given twice")
        if field in ("weights", "kv_cache"):
            accepted = WEIGHT_DTYPES if field == "weights" else KV_DTYPES
            if value not in accepted:
                raise InputError("--strategy", key, value, f"expected one of {', '.join(accepted)}")
            out[field] = value
        elif field == "layers_per_stage":
            try:
                layers = [int(x) for x in value.split("+")]
            except ValueError:
                raise InputError("--strategy", key, value, "expected layer counts joined by '+', e.g. 19+21+21+19") from None
            if any(n <= 0 for n in layers):
                raise InputError("--strategy", key, value, "every stage needs at least one layer")
            out[field] = layers
        else:
            try:
                n = int(value)
            except ValueError:
                raise InputError("--strategy", key, value, "expected a positive integer") from None
            if n < (0 if field == "redundant_experts" else 1):
                raise InputError("--strategy", key, value, "expected a positive integer"
                                 if field != "redundant_experts" else "expected an integer >= 0")
            out[field] = n
    if "layers_per_stage" in out and "pp" not in out:
        out["pp"] = len(out["layers_per_stage"])
    if "layers_per_stage" in out and out["pp"] != len(out["layers_per_stage"]):
        raise InputError("--strategy", "layers", value, f"{len(out['layers_per_stage'])} stages given but pp = {out['pp']}")
    return out


_POOL_KEYS = ("prefill", "decode")
_DISAGG_ACCEPTED = ("a disaggregated layout: prefill=NxtpT[ppP][adpA][epE],decode=NxtpT[ppP][adpA][epE] (N workers "
                    "of tp T, A attention-DP ranks), optionally weights=..., kv=...; e.g. "
                    "prefill=1xtp4,decode=1xtp2,weights=fp8 or prefill=2xtp1adp4ep4,decode=1xtp1adp8ep8")


def is_disaggregated(text: str) -> bool:
    """Whether ``--strategy`` text proposes a disaggregated layout (a ``prefill=`` or ``decode=`` key)."""
    return any(p.split("=", 1)[0].strip() in _POOL_KEYS for p in text.split(","))


def parse_disagg_strategy(text: str) -> dict[str, Any]:
    """``prefill=2xtp2,decode=1xtp4,weights=fp8`` -> {"prefill": {workers, tp, pp, attention_dp, ep}, "decode": ...}."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise InputError("--strategy", part, part, _DISAGG_ACCEPTED)
        key, value = (s.strip() for s in part.split("=", 1))
        if key in out:
            raise InputError("--strategy", key, value, f"{key} is given twice")
        if key in _POOL_KEYS:
            m = re.fullmatch(r"(\d+)x(?:tp)?(\d+)(?:pp(\d+))?(?:adp(\d+))?(?:ep(\d+))?", value)
            if not m or any(int(g) < 1 for g in m.groups() if g is not None):
                raise InputError("--strategy", key, value, _DISAGG_ACCEPTED)
            out[key] = {"workers": int(m.group(1)), "tp": int(m.group(2)), "pp": int(m.group(3) or 1),
                        "attention_dp": int(m.group(4) or 1), "ep": int(m.group(5) or 1)}
        elif key == "weights" and value in WEIGHT_DTYPES:
            out["weights"] = value
        elif key in ("kv", "kv_cache") and value in KV_DTYPES:
            out["kv_cache"] = value
        else:
            raise InputError("--strategy", key, value, _DISAGG_ACCEPTED)
    missing = [k for k in _POOL_KEYS if k not in out]
    if missing:
        raise InputError("--strategy", missing[0], None, f"{missing[0]}= is missing; {_DISAGG_ACCEPTED}")
    return out
