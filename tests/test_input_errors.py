"""Bad input gives exit 2 and one message naming the file, the JSON path, the value and what is accepted."""

from __future__ import annotations

import copy

import pytest

from tests.conftest import INSTANCES, flagship, run_cli


def _error(path: str, names: str | None = None) -> str:
    """Exit 2 with one line that names ``names`` (default: the instance file)."""
    code, out, err = run_cli(path)
    assert code == 2, (out, err)
    assert out == ""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert (names or path) in lines[0]
    return lines[0]


def _mutated(write_instance, mutate) -> str:
    data = copy.deepcopy(flagship())
    mutate(data)
    return write_instance(data)


def test_not_json(write_instance):
    msg = _error(write_instance("{ not json"))
    assert "not valid JSON" in msg and "line 1" in msg


def test_missing_file():
    assert "file not found" in _error("no/such/instance.json")


def test_unknown_key_suggests_the_closest(write_instance):
    msg = _error(_mutated(write_instance, lambda d: d["workload"].update({"input_tokns": 10})))
    assert "`workload.input_tokns`" in msg
    assert "did you mean 'input_tokens'" in msg
    assert "accepted keys" in msg


def test_wrong_type(write_instance):
    msg = _error(_mutated(write_instance, lambda d: d["workload"].update({"input_tokens": "many"})))
    assert "`workload.input_tokens`" in msg and '"many"' in msg


@pytest.mark.parametrize(
    ("path", "value"),
    [(("cluster", "gpus_per_node"), 0), (("cluster", "nodes"), -1), (("workload", "output_tokens"), 0)],
)
def test_zero_or_negative_counts(write_instance, path, value):
    def mutate(d):
        d[path[0]][path[1]] = value

    msg = _error(_mutated(write_instance, mutate))
    assert f"`{path[0]}.{path[1]}`" in msg and "greater than 0" in msg


@pytest.mark.parametrize("value", [0, 1.2, -0.5])
def test_memory_utilization_range(write_instance, value):
    msg = _error(_mutated(write_instance, lambda d: d["limits"].update({"memory_utilization": value})))
    assert "`limits.memory_utilization`" in msg


def test_unknown_model_lists_known_and_suggests(write_instance):
    msg = _error(_mutated(write_instance, lambda d: d.update({"model": "llama3-70b-instrct"})))
    assert "`model`" in msg and "did you mean 'llama3-70b-instruct'" in msg and "deepseek-v3" in msg


def test_unknown_gpu(write_instance):
    msg = _error(_mutated(write_instance, lambda d: d["cluster"].update({"gpu": "h100"})))
    assert "`cluster.gpu`" in msg and "h100-sxm-80gb" in msg


def test_search_tp_must_divide_heads(write_instance):
    msg = _error(_mutated(write_instance, lambda d: d.update({"search": {"tp": [1, 3]}})))
    assert "`search.tp[1]`" in msg and "64 attention heads" in msg


def test_empty_precision_list(write_instance):
    msg = _error(_mutated(write_instance, lambda d: d["precision"].update({"weights": []})))
    assert "`precision.weights`" in msg


def test_unknown_precision(write_instance):
    msg = _error(_mutated(write_instance, lambda d: d["precision"].update({"weights": ["bf17"]})))
    assert "`precision.weights[0]`" in msg and "bf16" in msg


def test_sequence_longer_than_max_model_len(write_instance):
    msg = _error(_mutated(write_instance, lambda d: d["workload"].update({"max_model_len": 1000})))
    assert "max_model_len" in msg and "2304" in msg


def test_two_loads_given(write_instance):
    msg = _error(_mutated(write_instance, lambda d: d["workload"].update({"concurrency": 4})))
    assert "exactly one of" in msg


def test_inconsistent_parameter_count():
    msg = _error(str(INSTANCES / "dense10b_inconsistent.json"))
    assert "`model.declared_params_B`" in msg and "declares 10 B" in msg and "implies 0.075 B" in msg


def test_bad_strategy_flag():
    code, out, err = run_cli(str(INSTANCES / "llama70b_h100.json"), "--strategy", "tp=two")
    assert code == 2 and "--strategy" in err and "positive integer" in err
    code, out, err = run_cli(str(INSTANCES / "llama70b_h100.json"), "--strategy", "tpp=2")
    assert code == 2 and "did you mean 'tp'" in err


def test_hf_config_unsupported_architecture(write_instance, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text('{"architectures": ["GPT2LMHeadModel"], "hidden_size": 768}')
    data = flagship()
    data["model"] = {"hf_config": str(cfg)}
    msg = _error(write_instance(data), names=str(cfg))  # the error is in the config file itself
    assert "`architectures`" in msg and "unsupported architecture" in msg and "DeepseekV3ForCausalLM" in msg
