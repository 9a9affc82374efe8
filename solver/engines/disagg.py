"""Launch artefacts of a disaggregated plan: one command per pool worker, the router, the topology.

Flags as the engines document them:

* SGLang PD disaggregation: ``--disaggregation-mode prefill | decode`` with
  ``--disaggregation-transfer-backend`` (``mooncake`` or ``nixl``) on each server, and the router
  ``python -m sglang_router.launch_router --pd-disaggregation --prefill URL BOOTSTRAP_PORT ...
  --decode URL ...`` (docs.sglang.io, "PD Disaggregation").
* vLLM disaggregated prefilling: every instance with ``--kv-transfer-config
  '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'`` (docs.vllm.ai, "NixlConnector Usage
  Guide"); vLLM ships no production router: its examples' proxy, llm-d or Dynamo fronts the pools.
* TensorRT-LLM: every context (prefill) and generation (decode) server is its own ``trtllm-serve``
  whose ``--extra_llm_api_options`` YAML adds ``cache_transceiver_config`` (``backend: UCX``,
  ``max_tokens_in_buffer`` at least the longest prompt) and, on context servers,
  ``disable_overlap_scheduler: true`` (not supported there); ``trtllm-serve disaggregated -c
  disagg_config.yaml`` fronts them, the YAML listing ``context_servers`` and
  ``generation_servers`` with ``num_instances`` and ``urls`` (TensorRT-LLM
  ``examples/disaggregated/README.md``).
"""

from __future__ import annotations

from typing import Any

from . import sglang, trtllm, vllm
from .base import LaunchInput

NIXL_CONFIG = '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'
PREFILL_PORT, DECODE_PORT, BOOTSTRAP_PORT = 30000, 30100, 8998


def _trtllm_server(cmd: str, config: str, url: str) -> str:
    """One TensorRT-LLM pool server: the plan's command on its own port, with its pool's options file."""
    port = url.rsplit(":", 1)[1]
    cmd = cmd.replace("--extra_llm_api_options extra_llm_api_options.yaml", f"--extra_llm_api_options {config}")
    return f"{cmd} --host 0.0.0.0 --port {port}"


def disagg_launch(prefill: LaunchInput, decode: LaunchInput, prefill_workers: int, decode_workers: int,
                  primary: str = "vllm") -> dict[str, Any]:
    """Commands per pool (one per worker, ports numbered), the router, and a plain topology line."""
    vp, _, vp_notes = vllm.launch(prefill)
    vd, _, vd_notes = vllm.launch(decode)
    sp, sp_notes = sglang.launch(prefill)
    sd, sd_notes = sglang.launch(decode)
    tp_cmd, tp_yaml, _ = trtllm.launch(prefill)
    td_cmd, td_yaml, _ = trtllm.launch(decode)
    buffer = max(prefill.max_num_batched_tokens, prefill.max_model_len)  # >= the longest prompt
    transceiver = f"cache_transceiver_config:\n  backend: UCX\n  max_tokens_in_buffer: {buffer}\n"
    # Each server's host, as the SGLang router names them: the node the worker runs on.
    ctx_urls = [f"<prefill-{i}>:{PREFILL_PORT + i}" for i in range(prefill_workers)]
    gen_urls = [f"<decode-{j}>:{DECODE_PORT + j}" for j in range(decode_workers)]

    def servers(name: str, urls: list[str]) -> str:
        return f"{name}:\n  num_instances: {len(urls)}\n  urls:\n" + "".join(f'    - "{u}"\n' for u in urls)
    pre = [f"# prefill worker {i}" for i in range(prefill_workers)]
    dec = [f"# decode worker {j}" for j in range(decode_workers)]
    out: dict[str, Any] = {
        "engine": primary,
        "topology": (f"{prefill_workers} prefill worker(s) of {prefill.cfg.replica_gpus} GPU(s) "
                     f"({prefill.cfg.worker_label()}) -> KV cache -> {decode_workers} decode worker(s) of "
                     f"{decode.cfg.replica_gpus} GPU(s) ({decode.cfg.worker_label()}), one router in "
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
            "prefill": [_trtllm_server(tp_cmd, "ctx_config.yaml", u) for u in ctx_urls],
            "decode": [_trtllm_server(td_cmd, "gen_config.yaml", u) for u in gen_urls],
            "router": "trtllm-serve disaggregated -c disagg_config.yaml",
            "ctx_config.yaml": tp_yaml + "disable_overlap_scheduler: true\n" + transceiver,
            "gen_config.yaml": td_yaml + transceiver,
            "disagg_config.yaml": ("hostname: 0.0.0.0\nport: 8000\nbackend: pytorch\n"
                                   + servers("context_servers", ctx_urls) + servers("generation_servers", gen_urls)),
        },
        "workers": {"prefill": pre, "decode": dec},
        "notes": sorted(set(vp_notes + vd_notes + sp_notes + sd_notes)),
        "versions": {m.NAME: m.FLAGS_VERSION for m in (vllm, sglang, trtllm)},
    }
    return out
