"""Measured serving runs to compare the cost model with: what was deployed, what load, what was measured.

Readers for three formats, each raising :class:`~solver.input.errors.InputError` with the file and
line (or JSON path) of a bad entry:

* the calibration CSV (``measured_latency.csv``: one row per benchmark point, full parallel layout);
* ``vllm bench serve --save-result`` JSON files (one run per file; several with ``--append-result``);
* SGLang ``bench_serving --output-file`` JSONL (one run per line).

A benchmark result file does not say how the server was deployed, so its measurements take the
deployment from the caller (``solve calibrate --deployment``).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..engines.base import release_tuple
from ..input.errors import InputError
from ..input.schema import ENGINE_VERSION_PATTERN

# Hugging Face model ids of the calibration rows -> catalog cards (same architecture).
MODEL_CARDS = {
    "meta-llama/Llama-3.1-70B": "llama3.1-70b-instruct",
    "meta-llama/Llama-3.1-70B-Instruct": "llama3.1-70b-instruct",
    "meta-llama/Llama-3.3-70B-Instruct": "llama3.1-70b-instruct",
    "meta-llama/Llama-3.1-8B-Instruct": "llama3.1-8b-instruct",
    "Qwen/Qwen3-32B": "qwen3-32b",
    "nvidia/Qwen3-32B-NVFP4": "qwen3-32b",
    "openai/gpt-oss-120b": "gpt-oss-120b",
    "openai/gpt-oss-20b": "gpt-oss-20b",
    "deepseek-ai/DeepSeek-R1": "deepseek-r1",
    "deepseek-ai/DeepSeek-V3": "deepseek-v3",
    "nvidia/DeepSeek-R1-NVFP4": "deepseek-r1",
    "moonshotai/Kimi-K2.5": "kimi-k2.5",
    "MiniMaxAI/MiniMax-M2.5": "minimax-m2.5",
}
# The calibration file's system names -> GPU cards.
GPU_CARDS = {
    "h100_sxm": "h100-sxm-80gb", "h200_sxm": "h200-141gb", "b200_sxm": "b200-180gb", "b300_sxm": "b300-288gb",
    "gb200": "gb200-186gb", "gb300": "gb300-288gb",
}
# InferenceX-style sweeps (the calibration rows): lengths uniform on [0.8 len, len], 10 x concurrency
# prompts after a warm-up (benchmarks/data/RESEARCH.md, section a).
INFERENCEX_RANGE_RATIO = 0.8
# The SGLang rows read as fixed lengths, as the calibration README states for every row ("each
# sending a request of isl input tokens ... with fixed lengths": a closed loop then runs in waves).
# Their own figures say so: at the same layout SGLang's mean TTFT is about half the time to prefill
# all C prompts and its TPOT carries no prefill stalls (Qwen3-32B TP2 H100 1024/128 C=16: 841 ms /
# 16.5 ms, vLLM 188 ms / 22.2 ms, the same end-to-end time), which is the simulator's wave at fixed
# lengths (741 ms) and not its desynchronised loop at [0.8, 1] (176 ms). SGLang's scheduler has no
# mechanism that would hold a newly arrived prompt back (server scheduler and PrefillAdder read for
# 0.4.6-0.5.5), so the rows' harness, not the engine, is the difference. vLLM and TensorRT-LLM
# rows fit the InferenceX ranges (fixed lengths put their TTFT 100-150% too high).
RANGE_RATIO_BY_ENGINE = {"sglang": 1.0}
INFERENCEX_PROMPTS_PER_CLIENT = 10
# Scheduler settings of the InferenceX launch scripts behind the rows (github.com/SemiAnalysisAI/InferenceX,
# benchmarks/single_node/dsr1_fp{4,8}_b200*.sh and benchmarks/dsr1_fp{4,8}_b200_trt*.sh, 2026-01..03):
# - SGLang DeepSeek-R1/V3 scripts pass --scheduler-recv-interval 10 below 16 clients and 30 from 16
#   (the FP8 TP4 script always 10); no other model's SGLang script sets it (engine default 1).
# - TensorRT-LLM scripts with attention DP set attention_dp_config {enable_balance: true,
#   timeout_iters: 60, batching_wait_iters: 0} for DeepSeek; gpt-oss's enables it at the defaults
#   (timeout_iters 50).
# - TensorRT-LLM DeepSeek-R1 FP8 (benchmarks/dsr1_fp8_b200_trt.sh from the 2026-01-29 update that
#   moved it to 1.2.0rc6, commit ec7bafaae) sets DELAY_BATCHING at 1024 / 1024 from 64 clients:
#   batch_wait_timeout_iters 40, batch_wait_max_tokens_ratio 0.8 (max_num_tokens 8192 there); the
#   MTP and FP4 scripts never do.
SGLANG_DEEPSEEK_RECV_INTERVAL = {"below_16_clients": 10, "from_16_clients": 30, "fp8_tp4": 10}
TRTLLM_ADP_BALANCE_TIMEOUT_ITERS = {"deepseek": 60, "gpt-oss": 50}
# InferenceX's DeepSeek-R1 TensorRT-LLM configs (.github/configs/nvidia-master.yaml, 2026-02-05 to
# 2026-04): the MTP ones (dsr1-fp{4,8}-b200-trt-mtp: speculative decoding with the model's
# multi-token-prediction layer) run image 1.2.0rc6.post3, the others 1.2.0rc6.post2. Rows of that
# image are speculative-decoding runs, which the model does not cover: their TPOT is 0.6 of the
# plain runs' at one layout and load (the model is +61% on their 70 rows, -5% / +15% on post2's).
TRTLLM_DEEPSEEK_MTP_IMAGES = frozenset({"1.2.0rc6.post3"})
TRTLLM_DEEPSEEK_FP8_BATCH_WAIT = {"timeout_iters": 40, "max_tokens_ratio": 0.8, "from_clients": 64,
                                  "lengths": (1024, 1024), "since_release": (1, 2)}


@dataclass(frozen=True)
class Deployment:
    """How the measured server ran: model, GPUs, engine, parallelism and precision."""

    model: str  # catalog card name
    gpu: str  # catalog GPU name
    engine: str
    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    weights: str = "bf16"
    kv_cache: str = "bf16"
    gpus_per_node: int = 8
    adp: int = 1  # attention data-parallel ranks inside the worker (MoE)
    engine_version: str | None = None  # the release measured (None: the engine's default)
    # Scheduler settings of the launch script that change when a new request is taken (1 / 0: the
    # engine's default, no gate): SGLang --scheduler-recv-interval; TensorRT-LLM attention-DP
    # balancing (attention_dp_config enable_balance with timeout_iters).
    scheduler_recv_interval: int = 1
    adp_balance_timeout_iters: int = 0
    # TensorRT-LLM batch waiting (batch_wait_timeout_iters, batch_wait_max_tokens_ratio; 0: off).
    batch_wait_timeout_iters: int = 0
    batch_wait_max_tokens_ratio: float = 0.0


@dataclass(frozen=True)
class Measurement:
    """One benchmark point: a deployment under a load, and the latency it measured."""

    id: str
    deployment: Deployment
    input_tokens: int
    output_tokens: int
    range_ratio: float  # lengths uniform on [ratio x len, len]; 1.0 = fixed
    concurrency: int | None  # a closed loop of this many clients, or
    request_rate: float | None  # Poisson arrivals at this rate
    num_prompts: int
    ttft_ms: float | None  # None where the source gives only the other figure
    tpot_ms: float | None
    source: str = ""

    def with_deployment(self, **changes: Any) -> Measurement:
        return replace(self, deployment=replace(self.deployment, **changes))


def _weights(precision: str, gemm: str, model: str) -> str | None:
    """The project's weight dtype of a calibration row (None: a format the model does not have)."""
    if "gpt-oss" in model and precision in ("fp4", ""):
        return "mxfp4"  # gpt-oss ships MXFP4 experts; the row's "fp4" is that checkpoint
    mode = gemm or precision
    return {"fp8": "fp8", "fp8_block": "fp8", "nvfp4": "fp4", "fp4": "fp4", "int4_wo": "int4", "int4": "int4",
            "bf16": "bf16", "": "bf16"}.get(mode)


def _int(row: dict[str, str], key: str, default: int = 1) -> int:
    text = (row.get(key) or "").strip()
    return int(text) if text else default


def read_latency_csv(path: str | Path) -> tuple[list[Measurement], list[tuple[str, str]]]:
    """Rows of the calibration CSV the model can express, and (id, reason) for those it skips."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise InputError(str(path), "", None, f"cannot read the file ({exc.__class__.__name__})") from None
    out: list[Measurement] = []
    skipped: list[tuple[str, str]] = []
    with handle:
        reader = csv.DictReader(handle)
        need = {"id", "backend", "model_path", "system", "mode", "isl", "osl", "batch_size", "tp_size",
                "silicon_ttft_ms", "silicon_tpot_ms"}
        missing = need - set(reader.fieldnames or ())
        if missing:
            raise InputError(str(path), "line 1", None, f"missing columns {sorted(missing)}; a calibration CSV has "
                             f"at least {sorted(need)}")
        rows = list(reader)
        releases = _sweep_releases(rows)
        for line, row in enumerate(rows, start=2):
            try:
                m, why = _row_measurement(row, releases)
            except (ValueError, KeyError) as exc:
                raise InputError(str(path), f"line {line}", row.get("id"), f"cannot read this row: {exc}") from None
            if m is None:
                skipped.append((row["id"], why))
            else:
                out.append(m)
    return out, skipped


def _release(text: str | None) -> str | None:
    """A row's engine release when it starts with a release number ("1.2.0rc6.post3" -> "1.2.0rc6");
    None for a blank, a nightly or a named development build."""
    m = ENGINE_VERSION_PATTERN.match((text or "").strip())
    return m.group(0) if m else None


def _sweep_releases(rows: list[dict[str, str]]) -> dict[tuple[str, str], str]:
    """The release each sweep (source file x engine) ran most often, for its rows that do not say.

    The sweeps' files mix rows with and without ``backend_version``; a row without one is taken to
    run what its sweep's other rows of that engine ran (ties: the later release).
    """
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for row in rows:
        rel = _release(row.get("backend_version"))
        if rel and row.get("mode") == "agg":  # a disaggregated row's version is its orchestrator's
            key = ((row.get("silicon_data_source") or "").split(";")[0], row.get("backend", ""))
            by = counts.setdefault(key, {})
            by[rel] = by.get(rel, 0) + 1
    return {k: max(v.items(), key=lambda kv: (kv[1], release_tuple(kv[0])))[0] for k, v in counts.items()}


def _row_measurement(row: dict[str, str], releases: dict[tuple[str, str], str] | None = None
                     ) -> tuple[Measurement | None, str]:
    model_path = row["model_path"]
    if row["mode"] != "agg":
        return None, "disaggregated serving (prefill and decode pools) is not modelled"
    card = MODEL_CARDS.get(model_path)
    if card is None:
        return None, f"no catalog card for {model_path}"
    if (row["backend"] == "trtllm" and card.startswith("deepseek")
            and (row.get("backend_version") or "").strip() in TRTLLM_DEEPSEEK_MTP_IMAGES):
        return None, "speculative decoding (MTP) runs are not modelled"
    gpu = GPU_CARDS.get(row["system"])
    if gpu is None:
        return None, f"no GPU card for {row['system']}"
    adp = _int(row, "attention_dp_size", 1) or 1
    if _int(row, "pp_size", 1) != 1:
        return None, "pipeline rows are not in the sample"
    weights = _weights(row.get("precision", ""), row.get("gemm_quant_mode", ""), model_path)
    if weights is None:
        return None, f"weight format {row.get('gemm_quant_mode')!r} is not modelled"
    tp = _int(row, "tp_size")
    ep = _int(row, "moe_ep_size", 1) or 1
    if tp * adp > 8 or ep > tp * adp:
        return None, "multi-node NVLink domains beyond 8 GPUs per worker are not in the catalog layouts"
    kv = "bf16" if weights == "bf16" else "fp8"
    ttft, tpot = float(row["silicon_ttft_ms"]), float(row["silicon_tpot_ms"])
    if not (math.isfinite(ttft) and math.isfinite(tpot) and ttft > 0 and tpot > 0):
        return None, "no measurement"
    conc = _int(row, "batch_size") * adp
    version = _release(row.get("backend_version")) or (releases or {}).get(
        ((row.get("silicon_data_source") or "").split(";")[0], row["backend"]))
    recv, balance = _scheduler_settings(row["backend"], card, weights, tp, adp, conc)
    wait_iters, wait_ratio = _batch_wait(row["backend"], card, weights, adp, conc, (int(row["isl"]), int(row["osl"])),
                                         version)
    dep = Deployment(card, gpu, row["backend"], tp=tp, pp=1, dp=1, ep=ep, weights=weights, kv_cache=kv,
                     gpus_per_node=8, adp=adp, engine_version=version, scheduler_recv_interval=recv,
                     adp_balance_timeout_iters=balance, batch_wait_timeout_iters=wait_iters,
                     batch_wait_max_tokens_ratio=wait_ratio)
    ratio = RANGE_RATIO_BY_ENGINE.get(row["backend"], INFERENCEX_RANGE_RATIO)
    return Measurement(row["id"], dep, int(row["isl"]), int(row["osl"]), ratio, conc, None,
                       INFERENCEX_PROMPTS_PER_CLIENT * conc, ttft, tpot, source=row.get("silicon_data_source", "")), ""


def _scheduler_settings(engine_name: str, card: str, weights: str, tp: int, adp: int, clients: int) -> tuple[int, int]:
    """(SGLang recv interval, TensorRT-LLM attention-DP balance timeout) of a row's launch script."""
    family = "deepseek" if card.startswith("deepseek") else "gpt-oss" if card.startswith("gpt-oss") else None
    if engine_name == "sglang" and family == "deepseek" and adp == 1:  # SGLang refuses it with DP attention
        table = SGLANG_DEEPSEEK_RECV_INTERVAL
        if weights == "fp8" and tp == 4:
            return table["fp8_tp4"], 0
        return table["below_16_clients" if clients < 16 else "from_16_clients"], 0
    if engine_name == "trtllm" and adp > 1 and family in TRTLLM_ADP_BALANCE_TIMEOUT_ITERS:
        return 1, TRTLLM_ADP_BALANCE_TIMEOUT_ITERS[family]
    return 1, 0


def _batch_wait(engine_name: str, card: str, weights: str, adp: int, clients: int, lengths: tuple[int, int],
                version: str | None) -> tuple[int, float]:
    """(batch_wait_timeout_iters, batch_wait_max_tokens_ratio) of a row's launch script (0, 0: none)."""
    rule = TRTLLM_DEEPSEEK_FP8_BATCH_WAIT
    if (engine_name == "trtllm" and card.startswith("deepseek") and weights == "fp8" and adp == 1
            and clients >= rule["from_clients"] and lengths == rule["lengths"]
            and version is not None and release_tuple(version) >= rule["since_release"]):
        return rule["timeout_iters"], rule["max_tokens_ratio"]
    return 0, 0.0


def read_online_serving(path: str | Path) -> tuple[list[Measurement], list[tuple[str, str]]]:
    """Published request-rate rows (``benchmarks/data/online_serving.json``), and the ones skipped."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(str(path), "", None, f"cannot read the file ({exc.__class__.__name__})") from None
    out, skipped = [], []
    for i, row in enumerate(rows):
        model = str(row.get("model", ""))
        card = "llama3.1-70b-instruct" if "Llama-3" in model and "70B" in model else None
        gpu = "b200-180gb" if str(row.get("gpu", "")).startswith("b200") else \
            "h100-sxm-80gb" if str(row.get("gpu", "")).startswith("h100") else None
        metrics = row.get("metrics") or {}
        if card is None or gpu is None:
            skipped.append((row.get("id", f"[{i}]"), f"no card for {model} on {row.get('gpu')}"))
            continue
        weights = "bf16" if str(row.get("precision", "")).startswith(("16-bit", "bf16")) else None
        if weights is None:
            skipped.append((row["id"], f"precision {row.get('precision')!r}"))
            continue
        kv = "fp8" if str(row.get("kv_cache", "")).startswith("fp8") else "bf16"
        rate = row.get("request_rate")
        n = int(row.get("num_requests") or 500)
        dep = Deployment(card, gpu, row["engine"], tp=int(row.get("tp") or 1), weights=weights, kv_cache=kv)
        burst = rate in (None, "inf")
        out.append(Measurement(row["id"], dep, int(row["input_tokens"]), int(row["output_tokens"]), 1.0,
                               n if burst else None, None if burst else float(rate), n,
                               metrics.get("ttft_mean_ms"), metrics.get("tpot_mean_ms"), source=row.get("source", "")))
    return out, skipped


def _runs_of(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, object) of every run in a JSON file or a JSONL file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), "", None, f"cannot read the file ({exc.__class__.__name__})") from None
    try:
        whole = json.loads(text)
        return [("", whole)] if isinstance(whole, dict) else [(f"[{i}]", o) for i, o in enumerate(whole)]
    except json.JSONDecodeError:
        pass
    runs = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            runs.append((f"line {n}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InputError(str(path), f"line {n}", line[:60], f"not valid JSON: {exc.msg}") from None
    return runs


def _num(run: dict[str, Any], key: str, path: Path, where: str, required: bool = True) -> float | None:
    value = run.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InputError(str(path), f"{where}.{key}".lstrip("."), value, "expected a non-negative number "
                         "(is this a vLLM `--save-result` or SGLang `--output-file` result?)")
    return float(value)


def read_benchmark_results(path: str | Path, deployment: Deployment, statistic: str = "mean") -> list[Measurement]:
    """Runs of a vLLM (JSON) or SGLang (JSONL) benchmark result file, on ``deployment``.

    ``statistic`` is ``mean`` or ``median``: which of the file's TTFT / TPOT summaries to compare.
    Lengths come from the per-request lists when saved (``--save-detailed`` / ``--output-details``),
    else from the random-dataset settings or the token totals.
    """
    path = Path(path)
    out = []
    for k, (where, run) in enumerate(_runs_of(path)):
        if not isinstance(run, dict):
            raise InputError(str(path), where, None, "each run must be a JSON object")
        ttft = _num(run, f"{statistic}_ttft_ms", path, where)
        tpot = _num(run, f"{statistic}_tpot_ms", path, where)
        completed = int(_num(run, "completed", path, where) or 0)
        if completed < 1:
            raise InputError(str(path), f"{where}.completed".lstrip("."), run.get("completed"), "no request completed")
        ins, outs = run.get("input_lens"), run.get("output_lens")
        if isinstance(ins, list) and ins and isinstance(outs, list) and outs:
            isl, osl = max(ins), max(outs)
            ratio = min(ins) / isl if isl else 1.0
        else:
            isl_v = run.get("random_input_len") or _num(run, "total_input_tokens", path, where) / completed
            osl_v = run.get("random_output_len") or _num(run, "total_output_tokens", path, where) / completed
            isl, osl = int(round(isl_v)), int(round(osl_v))
            ratio = float(run.get("random_range_ratio") or 1.0) if run.get("random_range_ratio") else 1.0
        rate = run.get("request_rate")
        conc = run.get("max_concurrency")
        open_loop = isinstance(rate, int | float) and not isinstance(rate, bool) and math.isfinite(rate) and rate > 0
        if not open_loop and not (isinstance(conc, int) and conc > 0):
            raise InputError(str(path), f"{where}.request_rate".lstrip("."), rate, "a finite request_rate or a "
                             "max_concurrency is needed to know the load")
        out.append(Measurement(
            id=f"{path.stem}#{k}", deployment=deployment, input_tokens=int(isl), output_tokens=int(osl),
            range_ratio=max(min(ratio, 1.0), 0.0), concurrency=None if open_loop else int(conc),
            request_rate=float(rate) if open_loop else None, num_prompts=int(run.get("num_prompts") or completed),
            ttft_ms=ttft, tpot_ms=tpot, source=str(path)))
    if not out:
        raise InputError(str(path), "", None, "no benchmark run in the file")
    return out
