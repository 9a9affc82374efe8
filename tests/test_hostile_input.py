"""Hostile input: every malformed or absurd file is exit 2 with a message, never a traceback or exit 1."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import INSTANCES, flagship, run_cli


def _hf_instance(tmp_path, config: dict | str) -> str:
    cfg = tmp_path / "config.json"
    cfg.write_text(config if isinstance(config, str) else json.dumps(config))
    data = flagship()
    data["model"] = {"hf_config": str(cfg)}
    path = tmp_path / "inst.json"
    path.write_text(json.dumps(data))
    return str(path)


def _base_config() -> dict:
    return {"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 2048, "num_hidden_layers": 24,
            "num_attention_heads": 16, "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 6144,
            "moe_intermediate_size": 768, "num_experts": 64, "num_experts_per_tok": 8, "vocab_size": 151936,
            "max_position_embeddings": 32768}


@pytest.mark.parametrize("change,needle", [
    ({"hidden_size": 1e12}, "hidden_size"),
    ({"hidden_size": 10**12}, "hidden_size"),
    ({"num_hidden_layers": 10**9}, "num_hidden_layers"),
    ({"num_experts_per_tok": 65}, "num_experts_per_tok"),
    ({"mlp_only_layers": 5}, "mlp_only_layers"),
    ({"mlp_only_layers": [[1]]}, "mlp_only_layers"),
    ({"mlp_only_layers": "abc"}, "mlp_only_layers"),
    ({"tie_word_embeddings": "false"}, "tie_word_embeddings"),
    ({"vocab_size": 0}, "vocab_size"),
    ({"head_dim": 0}, "head_dim"),
])
def test_bad_hf_config_fields(tmp_path, change, needle):
    code, _, err = run_cli(_hf_instance(tmp_path, {**_base_config(), **change}))
    assert code == 2 and needle in err and "Traceback" not in err


def test_hf_config_that_is_not_json_names_the_instance(tmp_path):
    path = _hf_instance(tmp_path, "{not json")
    code, _, err = run_cli(path)
    assert code == 2 and "config.json" in err and "inst.json" in err and "model.hf_config" in err


def test_deep_nesting_duplicate_keys_and_symlink_loops(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    code, _, err = run_cli(str(deep))
    assert code == 2 and "nested too deeply" in err
    deep_cfg = _hf_instance(tmp_path, '{"a": ' * 100_000)
    code, _, err = run_cli(deep_cfg)
    assert code == 2 and "nested too deeply" in err
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps(flagship())[:-1] + ', "name": "again"}')
    code, _, err = run_cli(str(dup))
    assert code == 2 and "duplicate key 'name'" in err
    loop = tmp_path / "loop.json"
    os.symlink(loop, loop)
    code, _, err = run_cli(str(loop))
    assert code == 2 and "cannot read" in err


@pytest.mark.parametrize("rate", [1e-320, 1e30])
def test_absurd_request_rates(write_instance, rate):
    data = flagship()
    data["workload"]["request_rate"] = rate
    code, _, err = run_cli(write_instance(data))
    assert code == 2 and "request_rate" in err


def test_an_internal_error_is_exit_2_with_a_message(monkeypatch):
    from solver.runners import cli

    def boom(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(cli, "solve_file", boom)
    code, _, err = run_cli(str(INSTANCES / "llama70b_h100.json"))
    assert code == 2 and "internal error" in err and "boom" in err


def test_stdin_and_version():
    from click.testing import CliRunner

    from solver.runners.cli import main

    result = CliRunner().invoke(main, ["-", "--format", "json"], input=(INSTANCES / "llama70b_t4.json").read_text())
    assert result.exit_code == 1 and json.loads(result.stdout)["status"] == "infeasible"
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and "solve, version" in result.stdout
