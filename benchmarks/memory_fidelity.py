"""Memory fidelity: predicted weights and KV-cache tokens per GPU against vLLM start-up logs.

``benchmarks/data/vllm_memory_logs.json`` holds public vLLM start-up logs, each cited (source URL,
verbatim excerpt): the weights the engine loaded ("Model loading took X GiB") and the KV cache it
allocated ("GPU KV cache size: N tokens"), with the run's TP / PP, gpu_memory_utilization,
max_model_len, max_num_seqs and max_num_batched_tokens. This script predicts both figures for every
run whose model has a card here (the others are listed as skipped) and prints per-run errors and
the medians. It changes nothing: it measures the memory accounting of ``solver.physics``.

    python benchmarks/memory_fidelity.py

Models are mapped by architecture: a quantised repository of a carded model is that model at the
quantised precision (w8a8 -> int8, w4a16 -> int4, fp8-dynamic -> fp8). Llama-3.3-70B has
Llama-3.1-70B's architecture; Qwen2.5-7B has Qwen2-7B's (instances/configs/qwen2-7b).

Each run is planned for the vLLM release its log prints (``search.engine_version``; the engine's
default where the log does not say), so the accounting of that release applies: the torch-visible
device total, non-PyTorch memory by TP / PP, the sampler's activation peak on the last stage, and
CUDA graphs inside the budget from 0.21 on. The predicted KV figure is the one vLLM logs ("GPU KV
cache size: N tokens", per replica: :func:`solver.physics.kv_cache_tokens`).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from solver.input.errors import InputError  # noqa: E402
from solver.input.schema import Instance  # noqa: E402
from solver.physics import Config, even_split, kv_cache_tokens  # noqa: E402
from solver.problem import build_problem  # noqa: E402
from solver.verify import Placement, evaluate  # noqa: E402

DATA = ROOT / "benchmarks" / "data" / "vllm_memory_logs.json"
CONFIGS = ROOT / "benchmarks" / "data" / "configs"

# Repository name fragment -> the model field of an instance (a card name or an hf_config).
MODELS = [
    ("Llama-3.3-70B", "llama3.1-70b-instruct"),
    ("Llama-3.1-8B", "llama3.1-8b-instruct"),
    ("Meta-Llama-3-8B", "llama3-8b-instruct"),
    ("Mixtral-8x7B", "mixtral-8x7b-instruct"),
    ("gpt-oss-20b", "gpt-oss-20b"),
    ("gpt-oss-120b", "gpt-oss-120b"),
    ("Qwen2.5-7B-Instruct", {"hf_config": str(ROOT / "instances" / "configs" / "qwen2-7b" / "config.json"),
                             "hf_repo": "Qwen/Qwen2.5-7B-Instruct"}),
    # Architectures without a card, from their config.json (benchmarks/data/configs, each citing its repo).
    ("CodeLlama-7b-hf", {"hf_config": str(CONFIGS / "codellama-7b" / "config.json")}),
    ("Qwen2.5-72B-Instruct", {"hf_config": str(CONFIGS / "qwen2.5-72b" / "config.json")}),
    ("Kimi-Dev-72B", {"hf_config": str(CONFIGS / "qwen2.5-72b" / "config.json")}),
    ("Qwen3-8B", {"hf_config": str(CONFIGS / "qwen3-8b" / "config.json")}),
    ("Qwen3-30B-A3B", {"hf_config": str(CONFIGS / "qwen3-30b-a3b" / "config.json")}),
]
# The runs the accounting's constants were read from (solver/engines/vllm.py, solver/physics/memory.py
# cite them); the others are held out: models and sizes those constants never saw.
CONSTANT_ROWS = {"v013", "v014", "v015", "v027", "v028", "v029", "v030", "v032", "v033", "v034", "v035", "v036",
                 "v037", "v038", "v039", "v040", "v045", "v052", "v054", "v055", "v056", "v057", "v058", "v059",
                 "v060", "v061", "v064", "v065", "v068", "v069"}


def _model(run: dict):
    for fragment, model in MODELS:
        if fragment.lower() in run["model"].lower():
            return model
    return None


def _weights(run: dict, model) -> str:
    name = run["model"].lower()
    if "w8a8" in name:
        return "int8"
    if "w4a16" in name:
        return "int4"
    if "fp8" in name or run.get("quantization") == "fp8":
        return "fp8"
    if "gpt-oss" in name:
        return "mxfp4"
    return "bf16" if run.get("dtype") in (None, "bfloat16", "auto") else "fp16" if run["dtype"] == "float16" else "fp32"


def predict(run: dict) -> tuple[float, float] | str:
    """(weights GiB on the first GPU, KV-cache tokens of one replica) or why the run is skipped."""
    model = _model(run)
    if model is None:
        return "no card for this model"
    log = run["log"]
    if log.get("weights_GiB") is None or log.get("kv_cache_tokens") is None:
        return "the log lacks the weights or the KV tokens"
    weights = _weights(run, model)
    if weights == "fp32":
        return "fp32 weights are not a precision here"
    tp, pp = run.get("tp") or 1, run.get("pp") or 1
    length = run.get("max_model_len") or 8192
    kv = "fp8" if run.get("kv_cache_dtype") == "fp8" else ("fp16" if weights == "fp16" else "bf16")
    data = {
        "name": run["id"], "model": model,
        "cluster": {"gpu": "h100-sxm-80gb", "gpus_per_node": 8, "nodes": 1},
        "precision": {"weights": [weights], "kv_cache": [kv]},
        "workload": {"input_tokens": length // 2, "output_tokens": length // 2, "max_model_len": length,
                     "offline": True},
        "limits": {"memory_utilization": run.get("gpu_memory_utilization") or 0.9,
                   "max_num_seqs": run.get("max_num_seqs") or 256,
                   "max_num_batched_tokens": run.get("max_num_batched_tokens") or 8192},
        "search": {"tp": [tp], "pp": [pp], "dp": [1]},
    }
    if run.get("vllm_version"):
        data["search"]["engine_version"] = run["vllm_version"]
    if "h100" not in (run.get("gpu") or "").lower():
        return "not an H100 run"
    try:
        problem = build_problem(Instance.model_validate(data))
    except InputError as e:
        return f"not expressible: {e}"
    cfg = Config(tp, pp, 1, 1, weights, kv)
    layers = tuple(even_split(problem.arch.layers, pp))
    ev = evaluate(problem, Placement(cfg, 1, layers), simulate=False)
    weights_GiB = ev.stages[0].memory_GiB["weights"]
    # vLLM reports the cache in tokens of the whole model, per replica: the fullest stage sets it.
    return weights_GiB, kv_cache_tokens(problem.ctx, cfg, layers)


def main() -> int:
    runs = json.loads(DATA.read_text())["runs"]
    rows, skipped = [], []
    for run in runs:
        out = predict(run)
        if isinstance(out, str):
            skipped.append((run["id"], run["model"], out))
            continue
        w, t = out
        lw, lt = run["log"]["weights_GiB"], run["log"]["kv_cache_tokens"]
        rows.append((run, w, t, (w - lw) / lw, (t - lt) / lt))
    print(f"{'run':5s} {'model':48s} {'tp':>2s} {'pp':>2s} {'weights log':>11s} {'pred':>7s} {'err':>7s}  "
          f"{'KV tokens log':>13s} {'pred':>10s} {'err':>7s}")
    for run, w, t, ew, et in rows:
        print(f"{run['id']:5s} {run['model'][:48]:48s} {run.get('tp') or 1:2d} {run.get('pp') or 1:2d} "
              f"{run['log']['weights_GiB']:11.2f} {w:7.2f} {ew:+7.1%}  {run['log']['kv_cache_tokens']:13,d} "
              f"{t:10,.0f} {et:+7.1%}")
    if rows:
        mw = statistics.median(abs(r[3]) for r in rows)
        mt = statistics.median(abs(r[4]) for r in rows)
        print(f"\n{len(rows)} runs compared ({len(skipped)} skipped): median |error| weights {mw:.1%}, "
              f"KV-cache tokens {mt:.1%}; mean signed KV error {statistics.mean(r[4] for r in rows):+.1%}")
        held = [r for r in rows if r[0]["id"] not in CONSTANT_ROWS]
        if held:
            print(f"held out ({len(held)} runs the constants were not read from: "
                  f"{', '.join(r[0]['id'] for r in held)}): median |error| weights "
                  f"{statistics.median(abs(r[3]) for r in held):.1%}, KV-cache tokens "
                  f"{statistics.median(abs(r[4]) for r in held):.1%}")
    for rid, model, why in skipped:
        print(f"  skipped {rid} {model[:50]}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
