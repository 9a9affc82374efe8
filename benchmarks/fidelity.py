"""Fidelity of the cost model against published TensorRT-LLM offline throughput tables.

For every ``record_type == "performance"`` row of the calibration data whose model and GPU map to
catalog cards, predict the published metric under the row's exact strategy and workload, using only
the project's own physics (:mod:`solver.physics`): ``Context`` + ``Config``, ``even_split``,
``max_batch_that_fits`` capped by the engine's batch cap, ``stage_coefficients`` ->
``StageCoefficients.stage_values`` -> ``serving_metrics``. There is no second cost model here; the
script only states how a row's engine settings map onto the project's inputs.

Row mapping
-----------
* Models: Llama-3.3-70B -> llama3-70b-instruct, Llama-3.1-8B -> llama3-8b-instruct (same
  architectures as Llama 3), Llama-3.1-405B -> llama3.1-405b-instruct, Qwen3-235B-A22B ->
  qwen3-235b-a22b, DeepSeek-R1-0528 -> deepseek-v3 (same architecture), GPT-OSS-120B ->
  gpt-oss-120b. Rows of models without a catalog card (Llama-4-Maverick) are skipped and listed
  with the reason.
* GPUs: H100 SXM 80GB -> h100-sxm-80gb, H200 SXM 141GB -> h200-141gb, B200 180GB -> b200-180gb.
* Weights: precision text starting "FP8" -> fp8, "FP4" -> fp4 (NVFP4); gpt-oss rows run the
  checkpoint as it ships (MXFP4 routed experts, the rest 16-bit), whatever the table header says:
  its "FP8" is the activation / KV format (TensorRT-LLM serves openai/gpt-oss-120b's MXFP4 weights).
* Strategy: tp, pp, ep from the row (ep=1 when empty). dp = gpu_count / (tp * pp), i.e. 1 for every
  row. The per-GPU table labels "DEPn" configurations as tp=n, dp=n, ep=n on n GPUs: that dp is
  *attention* data parallelism inside the n-GPU group (``enable_attention_dp``), not n replicas of
  n GPUs each. Those rows run as attention_dp=n (attention TP 1 on every rank, each with its own
  sequences and KV cache), ep=n, dp=1 on n GPUs; they are marked ``attn-dp`` in the table.
* Workload: fixed input/output lengths, offline (all requests queued).

KV-cache dtype rule
-------------------
fp8 when the precision text says "FP8 KV"; otherwise fp8 for every FP8- or FP4-weight row (all rows
here), bf16 only for an unquantised checkpoint. Reason: the v1.0-era tables were measured on NVIDIA
ModelOpt checkpoints (nvidia/*-FP8, nvidia/*-FP4, perf-overview.md "Testing was performed on models
with weights quantized using ModelOpt"), and ModelOpt writes ``"kv_cache_quant_algo": "FP8"`` into
their ``hf_quant_config.json`` (ModelOpt's own example config {"quant_algo": "FP8",
"kv_cache_quant_algo": "FP8", "exclude_modules": ["lm_head"]}); TensorRT-LLM's ``kv_cache_dtype:
auto`` then takes the checkpoint's FP8 KV. trtllm-bench itself does the same where the checkpoint is
silent: tensorrt_llm/bench/benchmark/utils/general.py maps ``_KV_CACHE_MAP = {FP8: "fp8", NVFP4:
"fp8"}``, and tensorrt_llm/bench/build/build.py says "If the quantization is NVFP4 or FP8, force the
KV cache dtype to FP8". The per-GPU (latest) table states FP8 KV explicitly for its DeepSeek rows.

Engine settings (trtllm-bench throughput, PyTorch backend, as the tables were run)
----------------------------------------------------------------------------------
* Batch: with no --max_batch_size / --max_num_tokens, trtllm-bench's heuristic
  (tensorrt_llm/bench/build/tuning.py ``calc_engine_setting`` / ``finetune_setting``) sets
  max_batch_size to its estimate of the requests whose KV cache fits, rounded *up* (optimistic), and
  never above ``min(requests, 4096) / pp``; the runtime KV cache then admits what actually fits. So
  the batch here is ``min(max_batch_that_fits, TRTLLM_BENCH_MAX_BATCH_CAP // pp)``. The engine's
  max_num_seqs (which sizes the sampler buffers in the activation estimate) follows the heuristic:
  it is set to that same batch (a short fixed-point iteration, since the batch depends on the
  buffers it sizes).
* max_num_batched_tokens: the heuristic picks ``min(bs * (1 + isl/osl), 32768)`` rounded up, at
  least 2048; TensorRT-LLM's own default (tensorrt_llm/builder.py ``BuildConfig.max_num_tokens =
  8192``, which tensorrt_llm/bench/build/build.py takes as ``DEFAULT_MAX_NUM_TOKENS`` when its
  heuristic does not apply) is 8192. The project uses it only to size the activation workspace, so
  the script uses that named default, TRTLLM_MAX_NUM_TOKENS = 8192.
* Memory: trtllm-bench's ``--kv_cache_free_gpu_mem_fraction`` defaults to 0.90, "the percentage of
  memory to use for KV Cache after model load" (tensorrt_llm/bench/benchmark/throughput.py); the
  v1.0 perf-overview adds that "in many cases" they ran 0.95. The project's
  ``LimitsSpec.memory_utilization`` is a fraction of *total* memory (vLLM semantics): usable = M * u,
  KV = M * u - fixed, with ``fixed`` = weights + activations + runtime overhead of the stage (from
  ``stage_values`` at batch 1). TensorRT-LLM gives KV = f * (M - fixed), so per row
  ``u = (fixed + f * (M - fixed)) / M``.

Metric: rows with ``output_throughput_total_tok_s`` compare with the predicted total output tokens/s
of the deployment; rows with ``output_throughput_per_gpu_tok_s`` with the predicted per-GPU value.

Caveat (calibration README): engine versions move results a lot (a newer release on the same hardware
gave 1.3x to 2.7x), so errors are reported per source (v1.0-era table vs. latest per-GPU table).

Usage: ``python benchmarks/fidelity.py [--data FILE] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from solver import physics  # noqa: E402
from solver.engines import trtllm  # noqa: E402
from solver.input.catalog import gpu_card, resolve_model  # noqa: E402
from solver.input.schema import LimitsSpec, WorkloadSpec  # noqa: E402
from solver.physics import Config, Context, Efficiency, Hardware  # noqa: E402

DEFAULT_DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "calibration" / "published_measurements.json"
)

# trtllm-bench's own defaults, with their sources, live with the engine (solver/engines/trtllm.py).
TRTLLM_BENCH_MAX_BATCH_CAP = trtllm.BENCH_MAX_BATCH_CAP
TRTLLM_MAX_NUM_TOKENS = trtllm.MAX_NUM_TOKENS
TRTLLM_KV_CACHE_FREE_FRACTION = trtllm.KV_CACHE_FREE_FRACTION
# Nodes of the published runs: one DGX/HGX node of 8 GPUs.
GPUS_PER_NODE = 8

MODEL_MAP = {
    "Llama-3.3-70B": "llama3-70b-instruct",
    "Llama-3.1-8B": "llama3-8b-instruct",
    "Llama-3.1-405B": "llama3.1-405b-instruct",
    "Qwen3-235B-A22B": "qwen3-235b-a22b",
    "DeepSeek-R1-0528": "deepseek-v3",
    "GPT-OSS-120B": "gpt-oss-120b",
}
GPU_MAP = {
    "H100 SXM 80GB": "h100-sxm-80gb",
    "H200 SXM 141GB": "h200-141gb",
    "B200 180GB": "b200-180gb",
}
TOTAL = "output_throughput_total_tok_s"
PER_GPU = "output_throughput_per_gpu_tok_s"


@dataclass
class Prediction:
    """One row's prediction."""

    row: dict[str, Any]
    catalog_model: str
    catalog_gpu: str
    family: str
    cfg: Config
    attention_dp: bool
    batch: int
    kv_fit: int
    memory_utilization: float
    metric: str
    published: float
    predicted: float
    ttft_ms: float
    tpot_ms: float

    @property
    def error(self) -> float:
        return (self.predicted - self.published) / self.published


def weight_dtype(precision: str) -> str:
    p = precision.strip().upper()
    if p.startswith("FP8"):
        return "fp8"
    if p.startswith("FP4"):
        return "fp4"
    raise ValueError(f"unmapped precision {precision!r}")


def kv_dtype(precision: str, weights: str) -> str:
    """The rule of the module docstring: FP8 KV for ModelOpt-style FP8/FP4 checkpoints."""
    if "FP8 KV" in precision.upper():
        return "fp8"
    return "fp8" if weights in ("fp8", "fp4") else "bf16"


def skip_reason(row: dict[str, Any]) -> str | None:
    if row["model"] not in MODEL_MAP:
        return f"model {row['model']!r} has no catalog card"
    if row["gpu"] not in GPU_MAP:
        return f"GPU {row['gpu']!r} has no catalog card"
    m = row.get("metrics") or {}
    if TOTAL not in m and PER_GPU not in m:
        return "no output-throughput metric"
    return None


def _limits(max_num_seqs: int, memory_utilization: float) -> LimitsSpec:
    return LimitsSpec(
        memory_utilization=min(memory_utilization, 1.0),
        max_num_seqs=max(1, max_num_seqs),
        max_num_batched_tokens=TRTLLM_MAX_NUM_TOKENS,
    )


def _fixed_bytes(ctx: Context, cfg: Config, counts: list[dict[str, int]]) -> float:
    """Largest per-GPU weights + activations + overhead over the stages (batch-independent)."""
    coef = physics.stage_coefficients(ctx, cfg, 1)
    out = 0.0
    for s, c in enumerate(counts):
        v = coef.stage_values(c, s)
        out = max(out, v["weights"] + v["activations"] + v["overhead"])
    return out


def engine_efficiency(gpu) -> Efficiency:
    """The family's factors with TensorRT-LLM's engine overheads: the tables ran trtllm-bench."""
    return physics.efficiency_for(gpu, None, None if trtllm.STEP_OVERHEAD_US is None else trtllm.STEP_OVERHEAD_US * 1e-6,
                                  trtllm.REQUEST_OVERHEAD_MS * 1e-3, trtllm.TOKEN_OVERHEAD_US * 1e-6,
                                  moe_layer_overhead_s=trtllm.MOE_LAYER_OVERHEAD_US * 1e-6)


def predict(row: dict[str, Any], eff: Efficiency | None = None) -> Prediction:
    """Predict one mapped row with the family's efficiency factors (or ``eff``)."""
    arch = resolve_model(MODEL_MAP[row["model"]])
    gpu = gpu_card(GPU_MAP[row["gpu"]])
    hw = Hardware(
        gpu=gpu, gpus_per_node=GPUS_PER_NODE, nodes=1, intra=gpu.intra_node, inter=gpu.inter_node
    )
    workload = WorkloadSpec(
        input_tokens=row["input_tokens"], output_tokens=row["output_tokens"], offline=True
    )
    eff = eff or engine_efficiency(gpu)

    tp, pp = int(row["tp"]), int(row.get("pp") or 1)
    ep = int(row.get("ep") or 1)
    gpus = int(row.get("gpu_count") or tp * pp)
    dp = max(1, gpus // (tp * pp))
    attention_dp = int(row.get("dp") or 1) > 1 and int(row.get("dp") or 1) * tp * pp != gpus
    weights = "mxfp4" if arch.checkpoint_dtype == "mxfp4" else weight_dtype(row["precision"])
    kv = kv_dtype(row["precision"], weight_dtype(row["precision"]))  # the table's FP8: FP8 KV
    if attention_dp:
        # DEPn: n attention ranks of TP 1 sharing the experts over EP n (enable_attention_dp).
        cfg = Config(tp=1, pp=pp, dp=1, ep=ep, weights=weights, kv_cache=kv, adp=tp)
    else:
        cfg = Config(
            tp=tp, pp=pp, dp=dp, ep=ep, weights=weights, kv_cache=kv
        )

    split = physics.even_split(arch.layers, pp)
    counts = physics.stage_counts(arch.layer_kinds(), split)
    cap = TRTLLM_BENCH_MAX_BATCH_CAP // pp * cfg.adp  # the heuristic's cap is per attention rank
    # TensorRT-LLM's free fraction is of the memory the CUDA runtime reports (torch-visible).
    memory_bytes = physics.torch_visible_GiB(gpu) * physics.GiB

    # Engine settings: max_num_seqs follows the batch that fits (trtllm-bench heuristic), and the
    # memory fraction maps TensorRT-LLM's "fraction of free memory after load" onto the total.
    seqs, fit, util = cap, 0, TRTLLM_KV_CACHE_FREE_FRACTION
    for _ in range(4):
        ctx = Context(arch, hw, workload, _limits(-(-seqs // cfg.adp), 1.0), eff, trtllm.memory_conventions())
        fixed = _fixed_bytes(ctx, cfg, counts)
        util = (
            fixed + TRTLLM_KV_CACHE_FREE_FRACTION * max(memory_bytes - fixed, 0.0)
        ) / memory_bytes
        ctx = Context(arch, hw, workload, _limits(-(-seqs // cfg.adp), util), eff, trtllm.memory_conventions())
        fit = physics.max_batch_that_fits(ctx, cfg, split)
        new = max(1, min(cap, fit))
        if new == seqs:
            break
        seqs = new
    batch = min(fit, cap)
    if batch < 1:
        raise ValueError("not even one sequence fits")

    coef = physics.stage_coefficients(ctx, cfg, batch)
    stages = [coef.stage_values(c, s) for s, c in enumerate(counts)]
    m = physics.serving_metrics(coef, stages, workload)

    metrics = row["metrics"]
    metric = TOTAL if TOTAL in metrics else PER_GPU
    predicted = m.output_tokens_per_s if metric == TOTAL else m.output_tokens_per_s_per_gpu
    return Prediction(
        row=row,
        catalog_model=MODEL_MAP[row["model"]],
        catalog_gpu=GPU_MAP[row["gpu"]],
        family=gpu.family,
        cfg=cfg,
        attention_dp=attention_dp,
        batch=batch,
        kv_fit=fit,
        memory_utilization=util,
        metric=metric,
        published=float(metrics[metric]),
        predicted=float(predicted),
        ttft_ms=m.ttft_ms,
        tpot_ms=m.tpot_ms,
    )


def load_rows(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text())
    return [r for r in data if r.get("record_type") == "performance"]


def evaluate(rows: list[dict[str, Any]]) -> tuple[list[Prediction], list[tuple[str, str, str]]]:
    preds, skipped = [], []
    for r in rows:
        why = skip_reason(r)
        if why is None:
            try:
                preds.append(predict(r))
                continue
            except ValueError as err:
                why = str(err)
        skipped.append((r["id"], r["model"], why))
    return preds, skipped


def _mape(preds: list[Prediction]) -> float:
    return 100 * statistics.median(abs(p.error) for p in preds) if preds else float("nan")


def _short_source(source: str) -> str:
    return (
        "v1.0-era total table"
        if "v1.0" in source
        else "latest per-GPU table"
        if "latest" in source
        else source
    )


def summarize(preds: list[Prediction]) -> dict[str, dict[str, dict[str, float]]]:
    groups: dict[str, dict[str, list[Prediction]]] = {
        "source": {},
        "gpu_family": {},
        "gpu": {},
        "model": {},
    }
    for p in preds:
        groups["source"].setdefault(p.row["source"], []).append(p)
        groups["gpu_family"].setdefault(p.family, []).append(p)
        groups["gpu"].setdefault(p.catalog_gpu, []).append(p)
        groups["model"].setdefault(p.catalog_model, []).append(p)
    out: dict[str, dict[str, dict[str, float]]] = {
        "overall": {"all": {"rows": len(preds), "median_abs_error_pct": _mape(preds)}}
    }
    for name, g in groups.items():
        out[name] = {
            k: {"rows": len(v), "median_abs_error_pct": _mape(v)} for k, v in sorted(g.items())
        }
    return out


def _row_line(p: Prediction) -> str:
    r, c = p.row, p.cfg
    strat = f"tp{c.tp}/pp{c.pp}/ep{c.ep}" + (" attn-dp" if p.attention_dp else "")
    unit = "tot" if p.metric == TOTAL else "/gpu"
    return (
        f"{r['id']:<6} {p.catalog_model:<22} {p.catalog_gpu:<14} {c.weights}/kv-{c.kv_cache:<4} "
        f"{strat:<18} {r['input_tokens']:>5}/{r['output_tokens']:<5} {p.batch:>5} "
        f"{p.published:>9.0f} {p.predicted:>9.0f} {unit:<4} {100 * p.error:>+7.1f}%"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="published_measurements.json")
    ap.add_argument(
        "--json", type=Path, default=None, help="write rows and summary as JSON to this file"
    )
    args = ap.parse_args(argv)

    preds, skipped = evaluate(load_rows(args.data))
    print(
        f"{'id':<6} {'model':<22} {'gpu':<14} {'precision':<12} {'strategy':<18} {'isl/osl':<11} "
        f"{'batch':>5} {'published':>9} {'predicted':>9} {'unit':<4} {'error':>8}"
    )
    for p in preds:
        print(_row_line(p))

    summary = summarize(preds)
    print("\nMedian absolute percentage error")
    print(
        f"  overall: {summary['overall']['all']['median_abs_error_pct']:.1f}% ({len(preds)} rows)"
    )
    for group in ("source", "gpu_family", "gpu", "model"):
        print(f"  by {group}:")
        for k, v in summary[group].items():
            label = _short_source(k) if group == "source" else k
            print(f"    {label:<28} {v['median_abs_error_pct']:6.1f}%  ({v['rows']} rows)")
    worst = sorted(preds, key=lambda p: -abs(p.error))[:5]
    print("  worst rows: " + ", ".join(f"{p.row['id']} {100 * p.error:+.0f}%" for p in worst))

    print(f"\nSkipped rows ({len(skipped)}):")
    for rid, model, why in skipped:
        print(f"  {rid} {model}: {why}")

    if args.json:
        doc = {
            "engine_settings": {
                "batch_cap": TRTLLM_BENCH_MAX_BATCH_CAP,
                "max_num_batched_tokens": TRTLLM_MAX_NUM_TOKENS,
                "kv_cache_free_gpu_mem_fraction": TRTLLM_KV_CACHE_FREE_FRACTION,
            },
            "efficiency": {
                fam: vars(physics.EFFICIENCY_BY_FAMILY[fam])
                for fam in sorted({p.family for p in preds})
            },
            "rows": [
                {
                    "id": p.row["id"],
                    "source": p.row["source"],
                    "model": p.row["model"],
                    "catalog_model": p.catalog_model,
                    "gpu": p.catalog_gpu,
                    "precision": p.row["precision"],
                    "weights": p.cfg.weights,
                    "kv_cache": p.cfg.kv_cache,
                    "tp": p.cfg.tp,
                    "pp": p.cfg.pp,
                    "dp": p.cfg.dp,
                    "ep": p.cfg.ep,
                    "attention_dp_in_source": p.attention_dp,
                    "input_tokens": p.row["input_tokens"],
                    "output_tokens": p.row["output_tokens"],
                    "batch": p.batch,
                    "kv_fit_batch": p.kv_fit,
                    "memory_utilization": round(p.memory_utilization, 4),
                    "metric": p.metric,
                    "published": p.published,
                    "predicted": round(p.predicted, 1),
                    "error_pct": round(100 * p.error, 2),
                    "ttft_ms": round(p.ttft_ms, 2),
                    "tpot_ms": round(p.tpot_ms, 3),
                }
                for p in preds
            ],
            "summary": summary,
            "skipped": [{"id": i, "model": m, "reason": w} for i, m, w in skipped],
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
