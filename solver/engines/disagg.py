"""Launch artefacts of a disaggregated plan: one command per pool worker, the router, the topology.

Flags as the engines document them:

* SGLang PD disaggregation: ``--disaggregation-mode prefill | decode`` with
  ``--disaggregation-transfer-backend`` (``mooncake`` or ``nixl``) on each server, and the router
  ``python -m sglang_router.launch_router --pd-disaggregation --prefill URL BOOTSTRAP_PORT ...
  --decode URL ...`` (docs.sglang.io, "PD Disaggregation").
* vLLM disaggregated prefilling: every instance with ``--kv-transfer-config
  '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'`` (docs.vllm.ai, "NixlConnector Usage
  Guide"); vLLM ships no production router: its examples' proxy, llm-d or Dynamo fronts the pools.
* TensorRT-LLM: ``trtllm-serve disaggregated -c`` a YAML listing ``context_servers`` and
  ``generation_servers`` (TensorRT-LLM "disaggregated serving" docs), each started with its own
  ``trtllm-serve``; given here as a note, with the per-pool commands.
"""

from __future__ import annotations

from typing import Any

from . import sglang, trtllm, vllm
from .base import LaunchInput

NIXL_CONFIG = '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'
PREFILL_PORT, DECODE_PORT, BOOTSTRAP_PORT = 30000, 30100, 8998


def disagg_launch(prefill: LaunchInput, decode: LaunchInput, prefill_workers: int, decode_workers: int,
                  primary: str = "vllm") -> dict[str, Any]:
    """Commands per pool (one per worker, ports numbered), the router, and a plain topology line."""
    vp, _, vp_notes = vllm.launch(prefill)
    vd, _, vd_notes = vllm.launch(decode)
    sp, sp_notes = sglang.launch(prefill)
    sd, sd_notes = sglang.launch(decode)
    tp_cmd, _, _ = trtllm.launch(prefill)
    td_cmd, _, _ = trtllm.launch(decode)
    pre = [f"# prefill worker {i}" for i in range(prefill_workers)]
    dec = [f"# decode worker {j}" for j in range(decode_workers)]
    out: dict[str, Any] = {
        "engine": primary,
        "topology": (f"{prefill_workers} prefill worker(s) of {prefill.cfg.tp * prefill.cfg.pp} GPU(s) "
                     f"(tp={prefill.cfg.tp} pp={prefill.cfg.pp}) -> KV cache -> {decode_workers} decode worker(s) of "
                     f"{decode.cfg.tp * decode.cfg.pp} GPU(s) (tp={decode.cfg.tp} pp={decode.cfg.pp}), one router in "
                     "front sending each request to a prefill and a decode worker"),
        "vllm": {
            "prefill": [f"{vp} --port {PREFILL_PORT + i} --kv-transfer-config '{NIXL_CONFIG}'"
                        for i in range(prefill_workers)],
            "decode": [f"{vd} --port {DECODE_PORT + j} --kv-transfer-config '{NIXL_CONFIG}'"
                       for j in range(decode_workers)],
            "router": "a PD proxy in front (vLLM's disaggregated-serving example proxy, llm-d or Dynamo)",
        },
        "sglang": {
            "prefill": [f"{sp} --disaggregation-mode prefill --disaggregation-transfer-backend nixl "
                        f"--disaggregation-bootstrap-port {BOOTSTRAP_PORT + i} --port {PREFILL_PORT + i}"
                        for i in range(prefill_workers)],
            "decode": [f"{sd} --disaggregation-mode decode --disaggregation-transfer-backend nixl "
                       f"--port {DECODE_PORT + j}" for j in range(decode_workers)],
            "router": "python -m sglang_router.launch_router --pd-disaggregation "
                      + " ".join(f"--prefill http://<prefill-{i}>:{PREFILL_PORT + i} {BOOTSTRAP_PORT + i}"
                                 for i in range(prefill_workers)) + " "
                      + " ".join(f"--decode http://<decode-{j}>:{DECODE_PORT + j}" for j in range(decode_workers))
                      + " --host 0.0.0.0 --port 8000",
        },
        "trtllm": {
            "prefill": [tp_cmd] * prefill_workers,
            "decode": [td_cmd] * decode_workers,
            "router": "trtllm-serve disaggregated -c disagg_config.yaml (context_servers: the prefill workers' "
                      "URLs; generation_servers: the decode workers')",
        },
        "workers": {"prefill": pre, "decode": dec},
        "notes": sorted(set(vp_notes + vd_notes + sp_notes + sd_notes)),
        "versions": {m.NAME: m.FLAGS_VERSION for m in (vllm, sglang, trtllm)},
    }
    return out
