"""SGLang: launch flags of ``python -m sglang.launch_server`` and its expert-parallel layout rule.

Flags as documented in SGLang's server arguments: ``--tp-size``, ``--pp-size``, ``--dp-size``,
``--ep-size``, ``--context-length``, ``--max-running-requests``, ``--chunked-prefill-size``,
``--mem-fraction-static``, ``--kv-cache-dtype``, ``--quantization``, ``--dtype``, and ``--nnodes``
/ ``--node-rank`` / ``--dist-init-addr`` across nodes.
"""

from __future__ import annotations

from dataclasses import replace

from ..physics import LEGACY_MEMORY, Config, MemoryConventions
from .base import LaunchInput

NAME = "sglang"
# The release whose `sglang.launch_server` flags these commands use (SGLang server arguments).
FLAGS_VERSION = "SGLang 0.5"
# The release an instance plans for when `search.engine_version` is not given (the flags' release).
DEFAULT_VERSION = "0.5"
# The KV cache is allocated in blocks of this many tokens: SGLang's pool is token-granular
# (server_args page_size default 1).
KV_BLOCK_TOKENS = 1

# How a step mixes prefill and decode (solver.simulate.engine): SGLang runs a prefill batch whenever prompts wait and can be admitted, and decodes otherwise (mixed chunks are off by default: --enable-mixed-chunk).
SCHEDULER_POLICY = "prefill_first"


def admission_gate(cfg: Config, scheduler_recv_interval: int = 1, attention_dp_balance_iters: int = 0,
                   batch_wait_timeout_iters: int = 0, batch_wait_max_tokens_ratio: float = 0.0,
                   max_num_batched_tokens: int = 0) -> dict:
    """The simulator's gate for ``--scheduler-recv-interval N``: the scheduler polls for new requests
    when a counter reaches N, decode steps counting 1 and a prefill step filling it (so a poll
    follows every prefill); idle, it polls at once. SGLang refuses the setting with DP attention
    (python/sglang/srt/managers/scheduler_recv_skipper.py)."""
    del attention_dp_balance_iters, batch_wait_timeout_iters, batch_wait_max_tokens_ratio, max_num_batched_tokens
    if scheduler_recv_interval > 1 and cfg.adp == 1:
        return {"admit_every_steps": scheduler_recv_interval, "admit_after_prefill": True}
    return {}
# Fixed time per engine step (scheduling, input preparation, sampling bookkeeping), us; None: the GPU
# family's default in solver.physics.efficiency.
STEP_OVERHEAD_US: float | None = 927.7
# Per MoE layer per step beyond a dense layer's, us (Efficiency.moe_layer_overhead_s says what and why;
# fitted by benchmarks/fit_factors.py).
MOE_LAYER_OVERHEAD_US: float = 38.4
# Per generated token per step: detokenisation, streaming and bookkeeping on the engine's CPU, us.
TOKEN_OVERHEAD_US: float = 3.57
# Disaggregated serving (solver.physics.efficiency.Efficiency.kv_handoff_s / disagg_step_overhead_s),
# fitted on every third disaggregated calibration row that gives its worker counts
# (benchmarks/disagg_fidelity.py --fit; grids 0-200 ms by 25, 0-3000 us by 500): on SGLang's 28 rows
# (DeepSeek-R1/V3 on B200 / GB200 / GB300, 0.5.5-0.5.8) a 50 ms hand-off (the decode worker's
# pre-allocation, the prefill worker's bootstrap wait and the transfer's polling), and no per-step cost.
# Refitted with the per-MoE-layer overhead in the step model (75 ms before it).
DISAGG_HANDOFF_MS: float = 50.0
DISAGG_STEP_OVERHEAD_US: float = 0.0
# Per request, from the client's send to the engine's queue (HTTP, tokenisation, IPC), ms.
REQUEST_OVERHEAD_MS: float = 39.4


def request_overhead_ms(version: str | None = None) -> float:
    """The front end's latency per request for a release (one figure for every release)."""
    del version
    return REQUEST_OVERHEAD_MS


def memory_conventions(version: str | None = None) -> MemoryConventions:
    """What this engine counts besides weights, KV and activations: the flat rule of
    :data:`solver.physics.LEGACY_MEMORY` for every release (its start-up logs are not yet checked)."""
    return replace(LEGACY_MEMORY, engine=NAME, version=version or DEFAULT_VERSION, kv_block_tokens=KV_BLOCK_TOKENS)


def defaults(gpu_memory_GiB: float, gpu_name: str) -> dict[str, float]:
    """SGLang server defaults: ``chunked_prefill_size`` by GPU memory (server_args.py,
    _handle_gpu_memory_settings: 2048 below 35 GB, 4096 below 60, 8192 below 160, else 16384);
    ``max_running_requests`` follows the KV pool (here: the engine admits what fits, up to 4096);
    ``mem_fraction_static`` is derived per GPU, about 0.88 on 80-192 GB GPUs."""
    gb = gpu_memory_GiB * 2**30 / 1e9
    chunk = 2048 if gb < 35 else 4096 if gb < 60 else 8192 if gb < 160 else 16384
    return {"max_num_seqs": 4096, "max_num_batched_tokens": chunk, "memory_utilization": 0.88}


def ep_layout_ok(is_moe: bool, group: int, ep: int) -> bool:
    """Experts split over ``ep`` groups of ``group / ep`` ranks (``group``: tp x attention-DP): ep divides it."""
    return ep == 1 or (is_moe and group % ep == 0)


EP_LAYOUT_RULE = "ep must divide tp x attention_dp (experts split over ep groups of the stage's ranks)"


def attention_dp_ok(is_moe: bool, tp: int, adp: int) -> bool:
    """``--enable-dp-attention --dp-size adp`` (``--tp-size tp x adp``): MoE models only."""
    del tp
    return adp == 1 or is_moe


ATTENTION_DP_RULE = "attention data parallelism (--enable-dp-attention) needs an MoE model"


def launch(li: LaunchInput) -> tuple[str, list[str]]:
    """The SGLang server command and its notes for a plan."""
    cfg = li.cfg
    notes: list[str] = []
    model, online_fp8 = li.model()
    # With DP attention SGLang's --tp-size counts every GPU of a stage and --dp-size the attention
    # ranks among them (attention TP = tp-size / dp-size).
    s = ["python -m sglang.launch_server", f"--model-path {model}", f"--tp-size {cfg.tp * cfg.adp}"]
    if cfg.pp > 1:
        s.append(f"--pp-size {cfg.pp}")
    if cfg.adp > 1:
        s += [f"--dp-size {cfg.adp}", "--enable-dp-attention"]
        if cfg.dp > 1:
            notes.append(f"run {cfg.dp} such servers (one per replica) behind a load balancer")
    elif cfg.dp > 1:
        s.append(f"--dp-size {cfg.dp}")
    if cfg.ep > 1:
        s.append(f"--ep-size {cfg.ep}")
    s += [f"--context-length {li.max_model_len}", f"--max-running-requests {li.max_num_seqs}",
          f"--chunked-prefill-size {li.max_num_batched_tokens}",
          f"--mem-fraction-static {li.memory_utilization:g}"]
    if li.serves_16bit_as_fp16:
        s.append("--dtype half")
    if cfg.kv_cache == "fp8":
        s.append("--kv-cache-dtype fp8_e4m3")  # the E4M3 format the cost model and the other engines use
    if online_fp8:
        s.append("--quantization fp8")
    if cfg.redundant:
        s.append(f"--ep-num-redundant-experts {cfg.redundant}")  # the map's extra physical experts
    if li.expert_map_command:
        s.append("--init-expert-location expert_map.json")
        notes.append(f"SGLang: write expert_map.json first: {li.expert_map_command} --sglang-out expert_map.json")
    if li.scheduler_recv_interval > 1:
        if cfg.adp == 1:
            s.append(f"--scheduler-recv-interval {li.scheduler_recv_interval}")
        else:
            notes.append("SGLang: --scheduler-recv-interval does not apply with DP attention; left out")
    if li.nodes_used > 1:
        s.append(f"--nnodes {li.nodes_used} --node-rank <rank> --dist-init-addr <head>:5000")
    if li.uneven:
        notes.append("SGLang has no per-stage layer partition flag: it splits layers evenly")
    return " ".join(s), notes
