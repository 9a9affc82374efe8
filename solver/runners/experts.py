"""``solve experts``: which experts (and which replicas) on which GPU, per MoE layer.

Reads a per-layer load profile (or generates the stated Zipf default), places every layer's
experts with :func:`solver.search.experts.place_experts`, prints max / mean per layer with its
bound, gap and status, the worst layer's GPU map, and writes the SGLang / TensorRT-LLM files.
Exit codes: 0 a placement (optimal or feasible), 2 bad input.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import PackageNotFoundError, version

import click

from ..api import EXIT_BAD_INPUT, EXIT_OK
from ..engines.expert_maps import (
    ExportError,
    render_gpu_map,
    sglang_flags,
    write_sglang,
    write_trtllm,
)
from ..input.errors import InputError
from ..input.expert_loads import ZIPF_SEED, ExpertLoads, read_expert_loads, zipf_loads
from ..search.experts import (
    ExpertInputError,
    ExpertParams,
    ExpertPlacement,
    LayerResult,
    place_experts,
)


@click.command("experts", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--loads", "loads_file", type=click.Path(), default=None,
              help="Load profile: JSON {\"layers\": [[tokens per expert]]}, CSV, SGLang's recorder dump "
                   "{\"logical_count\"} or a TensorRT-LLM expert-statistic directory (docs/experts.md).")
@click.option("--zipf", "alpha", type=float, default=None,
              help=f"No file: Zipf loads with this exponent (seeded per-layer permutation, seed {ZIPF_SEED}).")
@click.option("--layers", type=click.IntRange(min=1), default=None, help="MoE layers (with --zipf).")
@click.option("--experts", "n_experts", type=click.IntRange(min=1), default=None, help="Routed experts per layer (with --zipf).")
@click.option("--gpus", type=click.IntRange(min=1), required=True, help="EP ranks (GPUs) the experts go on.")
@click.option("--slots-per-gpu", type=click.IntRange(min=1), required=True,
              help="Expert slots per GPU (its memory's share for experts); at least experts / GPUs.")
@click.option("--redundant", type=click.IntRange(min=0), default=None,
              help="Redundant slots in all (replicas beyond one per expert) [default: GPUs x slots - experts].")
@click.option("--gpus-per-node", type=click.IntRange(min=1), default=None,
              help="GPUs per node: ties between equal maxima go to fewer nodes per expert (group).")
@click.option("--group-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Experts per routing group for the node tie-break (DeepSeek-V3: 32).")
@click.option("--fill", is_flag=True, help="Every slot holds an expert (implied by --sglang-out / --trtllm-out).")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Wall-clock seconds for all layers together (a safety net; each layer's CP-SAT work is "
                   "bounded by --deterministic-time).")
@click.option("--deterministic-time", type=click.FloatRange(min=0, min_open=True), default=None,
              help="CP-SAT deterministic time per layer [default: 0.5].")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="CP-SAT workers (1 is deterministic).")
@click.option("--seed", type=int, default=0, show_default=True, help="CP-SAT and neighbourhood seed.")
@click.option("--sglang-out", type=click.Path(dir_okay=False), default=None,
              help="Write SGLang's --init-expert-location JSON (physical_to_logical_map).")
@click.option("--sglang-layers", type=click.IntRange(min=1), default=None,
              help="The model's hidden layers for the SGLang map (dense ones get the trivial row) "
                   "[default: last MoE layer + 1].")
@click.option("--trtllm-out", type=click.Path(dir_okay=False), default=None,
              help="Write TensorRT-LLM's MoE load balancer YAML (num_slots, initial_global_assignments).")
@click.option("--map", "map_layers", type=click.Choice(["worst", "all", "none"]), default="worst", show_default=True,
              help="GPU maps printed: the worst layer's, every layer's, or none.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def experts_command(loads_file: str | None, alpha: float | None, layers: int | None, n_experts: int | None,
                    gpus: int, slots_per_gpu: int, redundant: int | None, gpus_per_node: int | None,
                    group_size: int, fill: bool, time_limit: float, deterministic_time: float | None,
                    workers: int, seed: int, sglang_out: str | None, sglang_layers: int | None,
                    trtllm_out: str | None, map_layers: str, fmt: str) -> None:
    """Place each MoE layer's experts and replicas on GPUs, minimising the busiest GPU's load.

    \b
    solve experts --zipf 1.0 --layers 58 --experts 256 --gpus 64 --slots-per-gpu 5 --redundant 32
    solve experts --loads instances/loads/moe16x64_skewed.json --gpus 16 --slots-per-gpu 4
    solve experts --loads loads.json --gpus 32 --slots-per-gpu 9 --sglang-out map.json

    \b
    Exit codes:
      0  a placement for every layer (optimal or feasible, with its gap to the bound)
      2  bad input (the message names the file or option, the value and what is accepted)
    """
    try:
        loads = _loads(loads_file, alpha, layers, n_experts)
        params = ExpertParams(time_limit_s=time_limit, workers=workers, seed=seed,
                              **({} if deterministic_time is None else {"layer_deterministic_time": deterministic_time}))
        fill = fill or bool(sglang_out or trtllm_out)
        result = place_experts(loads, gpus, slots_per_gpu, redundant_slots=redundant, gpus_per_node=gpus_per_node,
                               group_size=group_size, fill=fill, params=params)
        exports = _export(result, loads, sglang_out, sglang_layers, trtllm_out)
    except (InputError, ExpertInputError, ExportError) as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except OSError as err:
        click.echo(f"error: cannot write {err.filename}: {err.strerror}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    if fmt == "json":
        click.echo(json.dumps(document(result, exports), indent=1))
    else:
        click.echo("\n".join(text(result, exports, map_layers)))
    sys.exit(EXIT_OK)


def _loads(path: str | None, alpha: float | None, layers: int | None, experts: int | None) -> ExpertLoads:
    if (path is None) == (alpha is None):
        raise InputError("--loads/--zipf", "", None, "give exactly one of --loads FILE and --zipf ALPHA")
    if path is not None:
        loads = read_expert_loads(path)
        for name, want, got in (("--layers", layers, loads.layers), ("--experts", experts, loads.experts)):
            if want is not None and want != got:
                raise InputError(path, name, want, f"the file has {got}; drop {name} or give a matching value")
        return loads
    if layers is None or experts is None:
        raise InputError("--zipf", "--layers" if layers is None else "--experts", None,
                         "--zipf needs --layers and --experts")
    return zipf_loads(alpha, layers, experts)  # type: ignore[arg-type]


def _export(result: ExpertPlacement, loads: ExpertLoads, sglang_out: str | None, sglang_layers: int | None,
            trtllm_out: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    placement, ids = result.gpu_experts(), result.layer_ids()
    if sglang_out:
        write_sglang(sglang_out, placement, ids, loads.experts, sglang_layers)
        out["sglang"] = sglang_out
        out["sglang_flags"] = sglang_flags(sglang_out, result.gpus, loads.experts, result.slots_per_gpu)
    if trtllm_out:
        write_trtllm(trtllm_out, placement, ids)
        out["trtllm"] = trtllm_out
        out["trtllm_extra_llm_api_options"] = f"moe_load_balancer: {trtllm_out}"
    return out


def _ortools() -> str:
    try:
        return version("ortools")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


def document(r: ExpertPlacement, exports: dict[str, str]) -> dict:
    """The stable JSON document of a placement (docs/experts.md lists the fields)."""
    worst = max(r.layers, key=lambda x: (x.imbalance, -x.layer_id))
    return {
        "status": r.status,
        "source": r.source,
        "gpus": r.gpus, "slots_per_gpu": r.slots_per_gpu, "experts": r.experts,
        "max_replicas": r.max_replicas, "fill": r.fill, "gpus_per_node": r.gpus_per_node,
        "summary": {"max_imbalance": round(r.max_imbalance, 6), "mean_imbalance": round(r.mean_imbalance, 6),
                    "worst_layer": worst.layer_id, "max_gap": round(r.max_gap, 6),
                    "layers_optimal": sum(x.status == "optimal" for x in r.layers), "layers": len(r.layers)},
        "layers": [_layer_doc(x) for x in r.layers],
        "solver": {"time_s": round(r.time_s, 3), "ortools": _ortools()},
        "exports": exports,
    }


def _layer_doc(x: LayerResult) -> dict:
    return {"layer_id": x.layer_id, "status": x.status, "method": x.method,
            "max_over_mean": round(x.imbalance, 6), "bound_over_mean": round(x.bound_imbalance, 6),
            "bound_name": x.bound_name, "gap": round(x.gap, 6), "replicas": int(sum(x.replicas)),
            "cross_node_spread": x.spread, "incomplete": x.incomplete, "time_s": round(x.time_s, 4),
            "gpu_experts": x.gpu_experts}


def text(r: ExpertPlacement, exports: dict[str, str], map_layers: str = "worst") -> list[str]:
    """The report for people: summary, one line per layer, GPU maps, exports."""
    n_opt = sum(x.status == "optimal" for x in r.layers)
    worst = max(r.layers, key=lambda x: (x.imbalance, -x.layer_id))
    lines = [
        f"Expert placement: {len(r.layers)} layers x {r.experts} experts on {r.gpus} GPUs "
        f"({r.slots_per_gpu} slots each, up to {r.max_replicas - r.experts} redundant replicas"
        f"{', every slot filled' if r.fill else ''}); loads: {r.source}",
        f"Status: {r.status.upper()} ({n_opt} of {len(r.layers)} layers proven optimal) in {r.time_s:.2f} s",
        f"max/mean GPU load: worst layer {worst.imbalance:.4f} (layer {worst.layer_id}), mean over layers "
        f"{r.mean_imbalance:.4f}; largest gap to the bound {r.max_gap:.2%}",
        "",
        "  layer  max/mean  bound/mean  gap      status    replicas  method",
    ]
    for x in r.layers:
        lines.append(f"  {x.layer_id:>5}  {x.imbalance:>8.4f}  {x.bound_imbalance:>10.4f}  {x.gap:>7.2%}  "
                     f"{x.status:<8}  {sum(x.replicas):>8}  {x.method}")
    lines.append("  (bound: the best of the LP / replica / slot-count bounds and CP-SAT's; docs/experts.md)")
    shown = r.layers if map_layers == "all" else [worst] if map_layers == "worst" else []
    for x in shown:
        lines += ["", f"Layer {x.layer_id}: experts per GPU ((rN): one of N replicas), load / mean"]
        lines += ["  " + s for s in render_gpu_map(x.gpu_experts, x.replicas, x.loads, x.mean_load)]
    if exports:
        lines.append("")
        if "sglang" in exports:
            lines.append(f"SGLang map written to {exports['sglang']}: {exports['sglang_flags']}")
        if "trtllm" in exports:
            lines.append(f"TensorRT-LLM load balancer written to {exports['trtllm']}: "
                         f"{exports['trtllm_extra_llm_api_options']} (in extra_llm_api_options)")
    return lines
