"""``--price`` on the command line: GPU-hour prices that replace the instance's and the catalog's."""

from __future__ import annotations

import math

from .errors import InputError
from .schema import ClusterSpec, GpuOffer, Instance

ACCEPTED = ("USD per GPU-hour as `--price 2.5` (every GPU type) or `--price h100-sxm-80gb=2.5` (one type; "
            "repeat the flag for several)")
MAX_PRICE_USD = 10_000.0


def parse_prices(values: list[str] | tuple[str, ...]) -> dict[str, float]:
    """``["2.5"]`` -> ``{"*": 2.5}``; ``["h100-sxm-80gb=2.5", ...]`` -> by card name."""
    out: dict[str, float] = {}
    for raw in values:
        name, _, number = raw.rpartition("=")
        name = name.strip() or "*"
        try:
            usd = float(number)
        except ValueError:
            raise InputError("--price", name, raw, ACCEPTED) from None
        if not math.isfinite(usd) or not 0 < usd <= MAX_PRICE_USD:
            raise InputError("--price", name, raw, f"a price above 0 and at most {MAX_PRICE_USD:g}; {ACCEPTED}")
        if name in out:
            raise InputError("--price", name, raw, f"{name} is priced twice; {ACCEPTED}")
        out[name] = usd
    return out


def _offer_name(gpu) -> str:
    return gpu if isinstance(gpu, str) else gpu.name


def apply_prices(inst: Instance, prices: dict[str, float]) -> tuple[Instance, dict[str, str]]:
    """The instance with ``prices`` written into its cluster (or candidates), and what each replaced."""
    notes: dict[str, str] = {}
    cl = inst.cluster
    offers: list[GpuOffer | ClusterSpec] = list(cl.candidates) if cl.candidates is not None else [cl]
    names = [_offer_name(o.gpu) for o in offers]
    unknown = [n for n in prices if n != "*" and n not in names]
    if unknown:
        raise InputError("--price", unknown[0], prices[unknown[0]], f"the instance offers {names}; {ACCEPTED}")
    updated = []
    for offer, name in zip(offers, names, strict=True):
        usd = prices.get(name, prices.get("*"))
        if usd is None:
            updated.append(offer)
            continue
        before = offer.price_per_gpu_hour_usd
        notes[name] = f"--price {usd:g} USD/GPU-hour" + (f" replaces the instance's {before:g}" if before else "")
        updated.append(offer.model_copy(update={"price_per_gpu_hour_usd": usd}))
    if cl.candidates is not None:
        cluster = cl.model_copy(update={"candidates": updated})
    else:
        cluster = updated[0]
    return inst.model_copy(update={"cluster": cluster}), notes
