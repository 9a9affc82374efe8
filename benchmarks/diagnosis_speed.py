"""Diagnosis speed: proof and repair times of every proven-infeasible instance.

For each instance of ``instances/`` (or the paths given) that the planner proves infeasible,
prints the time of the planner's verdict, of the minimal conflicts with their certificates, and of
the verified repairs; the conflicts found; the number of CP-SAT solves; and whether minimality was
re-checked. The whole ``solve`` command for llama70b_t4 (process start included) is also timed, and
hard cases run as whole commands under ``--time-limit`` (:func:`limited`).

    python benchmarks/diagnosis_speed.py [PATHS...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from solver.diagnose import diagnose
from solver.input.errors import InputError
from solver.problem import load_problem
from solver.search.planner import SolveParams, plan

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", help="instance files (default: instances/*.json)")
    args = ap.parse_args(argv)
    paths = [Path(p) for p in args.paths] or sorted((ROOT / "instances").glob("*.json"))
    params = SolveParams(time_limit_s=60)
    header = (f"{'instance':26s} {'plan s':>7s} {'proof s':>8s} {'repairs s':>9s} {'total s':>8s} {'solves':>6s} "
              f"{'minimal':>7s}  conflicts")
    print(header)
    print("-" * len(header))
    for path in paths:
        try:
            problem = load_problem(str(path))
        except InputError:
            continue
        t0 = time.perf_counter()
        if plan(problem, params).status != "infeasible":
            continue
        t_plan = time.perf_counter() - t0
        t1 = time.perf_counter()
        proof = diagnose(problem, params, with_repairs=False)
        t_proof = time.perf_counter() - t1
        t2 = time.perf_counter()
        full = diagnose(problem, params)
        t_full = time.perf_counter() - t2
        t_repairs = max(0.0, t_full - t_proof)
        conflicts = " | ".join(", ".join(c["rules"]) for c in proof["conflicts"])
        print(f"{path.stem:26s} {t_plan:7.3f} {t_proof:8.3f} {t_repairs:9.3f} {t_plan + t_full:8.3f} "
              f"{full['diagnosis']['solves']:6d} {str(full['verified']):>7s}  {conflicts}")
    t3 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "solver.runners.cli", str(ROOT / "instances" / "llama70b_t4.json")],
                   stdout=subprocess.DEVNULL, check=False)
    print(f"\nsolve instances/llama70b_t4.json as a command (process start, imports, proof and repairs): "
          f"{time.perf_counter() - t3:.2f} s")
    limited()
    return 0


def _deep_model() -> dict:
    """A 4,096-layer dense model (the most layers a config may declare) on 16 T4s, unreachable targets."""
    config = {"architectures": ["LlamaForCausalLM"], "hidden_size": 1024, "num_hidden_layers": 4096,
              "num_attention_heads": 8, "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 4096,
              "vocab_size": 32000, "tie_word_embeddings": False}
    return {"name": "deep4096_16_t4", "model": {"name": "deep4096", "config": config},
            "cluster": {"gpu": "t4-16gb", "gpus_per_node": 1, "nodes": 16},
            "precision": {"weights": ["bf16"], "kv_cache": ["bf16"]},
            "workload": {"input_tokens": 2048, "output_tokens": 256, "request_rate": 50}, "slo": {"tpot_ms": 20},
            "search": {"pp": [1, 2, 4, 8, 16], "dp": [1, 2, 4, 8, 16]}}


def limited() -> None:
    """The whole command (load, plan, proof, certificates, repairs, report) under ``--time-limit``.

    Hard cases from the audit: DeepSeek-V3 with 3 GPUs per node, and a 4,096-layer model; each run
    as ``solve FILE --time-limit T`` in a fresh process, timed from its start to its exit.
    """
    ds = json.loads((ROOT / "instances" / "deepseekv3_4x8_h200.json").read_text())
    ds.pop("expect", None)
    ds["cluster"]["gpus_per_node"] = 3
    cases = [("deepseekv3 3 GPUs/node", ds, [10, 60]), ("4096 layers, 16 x T4", _deep_model(), [3, 5, 10, 60])]
    print(f"\n{'whole command':26s} {'limit s':>7s} {'wall s':>7s} {'exit':>4s}  proof")
    with tempfile.TemporaryDirectory() as tmp:
        for label, data, limits in cases:
            path = Path(tmp) / f"{data['name']}.json"
            path.write_text(json.dumps(data))
            for limit in limits:
                t0 = time.perf_counter()
                run = subprocess.run([sys.executable, "-m", "solver.runners.cli", str(path), "--format", "json",
                                      "--time-limit", str(limit)], capture_output=True, text=True, check=False)
                wall = time.perf_counter() - t0
                try:
                    proof = json.loads(run.stdout).get("proof") or {}
                except json.JSONDecodeError:
                    proof = {"summary": run.stderr.strip()[-80:]}
                what = "partial" if proof.get("partial") else ("complete" if proof else "no proof")
                print(f"{label:26s} {limit:7d} {wall:7.2f} {run.returncode:4d}  {what}")


if __name__ == "__main__":
    sys.exit(main())
