"""Expert placement: load files, the Zipf default, the checker, the solver against EPLB and brute force,
the bounds, the engine files and the ``solve experts`` command."""

from __future__ import annotations

import importlib.util
import itertools
import json
import struct

import numpy as np
import pytest

from solver.engines.expert_maps import (
    ExportError,
    compact_experts,
    read_sglang,
    read_trtllm,
    sglang_expert_location,
    write_sglang,
    write_trtllm,
)
from solver.input.errors import InputError
from solver.input.expert_loads import ExpertLoads, layer_permutation, read_expert_loads, zipf_loads
from solver.search.expert_bounds import lower_bound, target_possible
from solver.search.expert_check import check_assignment, gpu_loads
from solver.search.expert_greedy import greedy_layer
from solver.search.experts import ExpertInputError, ExpertParams, place_experts, solve_layer
from tests.conftest import ROOT, run_cli

# Placements whose optimality a test does not check: little CP-SAT time, no exact route.
FAST = ExpertParams(layer_deterministic_time=0.05, exact_vectors=0, lns_patience=1)


def _eplb_module():
    spec = importlib.util.spec_from_file_location("bench_eplb", ROOT / "benchmarks" / "eplb.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------------------------
# Loaders


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text if isinstance(text, str) else json.dumps(text), encoding="utf-8")
    return str(p)


def test_plain_json_bare_list_and_layer_ids(tmp_path):
    a = read_expert_loads(_write(tmp_path, "a.json", {"layers": [[1, 2, 3], [4, 5, 6]], "layer_ids": [3, 4]}))
    assert (a.layers, a.experts, a.layer_ids) == (2, 3, (3, 4))
    assert a.counts[1].tolist() == [4, 5, 6]
    b = read_expert_loads(_write(tmp_path, "b.json", [[1, 2], [3, 4.5]]))
    assert (b.layers, b.experts, b.layer_ids) == (2, 2, (0, 1))


def test_csv_with_and_without_header(tmp_path):
    a = read_expert_loads(_write(tmp_path, "a.csv", "e0,e1,e2\n1,2,3\n4,5,6\n"))
    b = read_expert_loads(_write(tmp_path, "b.csv", "1,2,3\n4,5,6\n"))
    c = read_expert_loads(_write(tmp_path, "c.csv", "layer,e0,e1,e2\n3,1,2,3\n7,4,5,6\n"))
    assert a.counts.tolist() == b.counts.tolist() == c.counts.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert c.layer_ids == (3, 7)


def test_sglang_logical_count_2d_3d_and_dense_rows_dropped(tmp_path):
    two = read_expert_loads(_write(tmp_path, "s2.json", {"logical_count": [[0, 0, 0], [1, 2, 3], [4, 5, 6]]}))
    assert two.layer_ids == (1, 2) and two.counts.tolist() == [[1, 2, 3], [4, 5, 6]]
    three = read_expert_loads(_write(tmp_path, "s3.json", {"logical_count": [[[0, 0], [1, 1]], [[0, 0], [2, 5]]]}))
    assert three.layer_ids == (1,) and three.counts.tolist() == [[3, 6]]


def _safetensors(path, tensors):
    header, body, offset = {}, b"", 0
    for name, arr in tensors.items():
        raw = np.asarray(arr, dtype="<i4").tobytes()
        header[name] = {"dtype": "I32", "shape": [len(arr)], "data_offsets": [offset, offset + len(raw)]}
        body += raw
        offset += len(raw)
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + body)


def test_trtllm_statistic_directory(tmp_path):
    d = tmp_path / "stats"
    d.mkdir()
    (d / "meta_info.json").write_text(json.dumps({"num_experts": 4, "num_experts_per_token": 2}))
    _safetensors(d / "rank0.safetensors", {"100_3": [1, 2, 3, 4], "101_3": [1, 1, 1, 1], "100_4": [5, 0, 0, 0]})
    _safetensors(d / "rank1.safetensors", {"100_3": [1, 0, 0, 0], "100_4": [0, 0, 0, 7]})
    loads = read_expert_loads(str(d))
    assert loads.layer_ids == (3, 4)
    assert loads.counts.tolist() == [[3, 3, 4, 5], [5, 0, 0, 7]]


@pytest.mark.parametrize("doc, where", [
    ({"layers": [[1, 2], [3]]}, "layers[1]"),
    ({"layers": [[1, -2]]}, "layers[0][1]"),
    ({"layers": [[1, "x"]]}, "layers[0][1]"),
    ({"layers": []}, "layers"),
    ({"layers": [[0, 0]]}, "layers[0]"),
    ({"layer": [[1, 2]]}, "layers"),
    ({"layers": [[1, 2]], "layerids": [0]}, "layerids"),
    ({"layers": [[1, 2]], "layer_ids": [0, 1]}, "layer_ids"),
    ({"logical_count": [[1, 2], [3]]}, "logical_count[1]"),
    ("{not json", ""),
])
def test_bad_json_files_name_file_path_and_accepted(tmp_path, doc, where):
    path = _write(tmp_path, "bad.json", doc)
    with pytest.raises(InputError) as err:
        read_expert_loads(path)
    assert err.value.file == path and err.value.path == where
    assert err.value.accepted


def test_bad_csv_missing_file_and_torch_pt(tmp_path):
    with pytest.raises(InputError, match="line 2 column 2"):
        read_expert_loads(_write(tmp_path, "x.csv", "1,2\n3,abc\n"))
    with pytest.raises(InputError, match="file not found"):
        read_expert_loads(str(tmp_path / "none.json"))
    pt = tmp_path / "expert_distribution_recorder_1.pt"
    pt.write_bytes(b"\x80\x02")
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="needs torch"):
            read_expert_loads(str(pt))


def test_zipf_is_deterministic_and_documented():
    a, b = zipf_loads(1.2, 4, 16), zipf_loads(1.2, 4, 16)
    assert np.array_equal(a.counts, b.counts)
    # The per-layer permutation is fully specified (splitmix64 Fisher-Yates): pinned values.
    assert layer_permutation(8, 0, 0) == layer_permutation(8, 0, 0)
    assert sorted(layer_permutation(64, 3, 5)) == list(range(64))
    assert layer_permutation(64, 3, 5) != layer_permutation(64, 3, 6)
    row = a.layer(0)
    ranks = np.array(layer_permutation(16, 0, 0))
    assert np.allclose(row / row.sum(), (1.0 / (ranks + 1) ** 1.2) / np.sum(1.0 / (ranks + 1) ** 1.2))
    ints = zipf_loads(1.0, 3, 64, integer=True)
    assert np.all(ints.counts == np.round(ints.counts)) and np.all(ints.counts.sum(axis=1) == 1_000_000)
    with pytest.raises(InputError):
        zipf_loads(-1.0, 2, 8)


def test_pinned_permutation():
    # Any change to the generator changes every profile and must be deliberate.
    assert layer_permutation(8, 0, 0) == [2, 5, 0, 3, 4, 6, 1, 7]


def test_shipped_skewed_profile_regenerates():
    shipped = read_expert_loads(str(ROOT / "instances" / "loads" / "moe16x64_skewed.json"))
    again = zipf_loads(1.2, 16, 64, seed=3, integer=True)
    assert np.array_equal(shipped.counts, again.counts)


# ---------------------------------------------------------------------------------------------
# The checker


def test_check_assignment_recomputes_loads_and_catches_corruption():
    w = np.array([6.0, 3.0, 2.0, 1.0])
    good = [[0, 3], [0, 2], [1]]
    chk = check_assignment(w, good, slots_per_gpu=2, max_replicas=5)
    assert chk.ok and chk.loads.tolist() == [4.0, 5.0, 3.0] and chk.replicas.tolist() == [2, 1, 1, 1]
    assert chk.imbalance == pytest.approx(5.0 / 4.0)
    assert not check_assignment(w, [[0, 0], [2, 3], [1]], 2).ok  # two copies on one GPU
    assert not check_assignment(w, [[0, 3, 2], [0], [1]], 2).ok  # over the slots
    assert not check_assignment(w, [[0], [0, 2], [1]], 2).ok  # expert 3 missing
    assert not check_assignment(w, [[0, 9], [2, 3], [1]], 2).ok  # out of range
    assert not check_assignment(w, good, 2, max_replicas=4).ok  # more replicas than slots
    assert not check_assignment(w, good, 2, exact_slots=True).ok  # GPU 2 has an empty slot
    assert check_assignment(w, [[0, 0], [2, 3], [1]], 2, allow_duplicates=True).ok


# ---------------------------------------------------------------------------------------------
# The solver: against brute force, EPLB, and its own bounds


def _brute_force(w: np.ndarray, gpus: int, slots: int, replicas: int) -> float:
    """The optimum by enumerating every expert's set of GPUs (independent of the solver)."""
    subsets = [s for k in range(1, gpus + 1) for s in itertools.combinations(range(gpus), k)]
    best = np.inf
    for choice in itertools.product(subsets, repeat=len(w)):
        if sum(len(s) for s in choice) > replicas:
            continue
        load = np.zeros(gpus)
        count = np.zeros(gpus, dtype=int)
        for e, s in enumerate(choice):
            for g in s:
                load[g] += w[e] / len(s)
                count[g] += 1
        if count.max() <= slots:
            best = min(best, load.max())
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_brute_force_on_tiny_layers(seed):
    rng = np.random.default_rng(seed)
    w = rng.integers(1, 100, size=6).astype(float) * np.array([5, 1, 1, 1, 1, 1]) ** (seed % 2)
    opt = _brute_force(w, gpus=3, slots=3, replicas=9)
    res = solve_layer(w, 3, 3, 9, params=ExpertParams(accept_gap=0.0))
    assert res.status == "optimal"
    assert res.max_load == pytest.approx(opt, rel=1e-9)
    assert res.bound <= opt * (1 + 1e-12)
    # The closed-form and target bounds are valid too.
    assert lower_bound(w, 3, 3, 9, achieved=greedy_layer(w, 3, 3, 9).loads().max()).value <= opt * (1 + 1e-12)


def test_tiny_layer_with_scarce_slots_matches_brute_force():
    w = np.array([40.0, 30.0, 9.0, 8.0, 7.0, 6.0])
    for replicas, slots in ((6, 2), (7, 3), (8, 3)):
        opt = _brute_force(w, 3, slots, replicas)
        res = solve_layer(w, 3, slots, replicas, params=ExpertParams(accept_gap=0.0))
        assert res.max_load == pytest.approx(opt, rel=1e-9) and res.status == "optimal"


@pytest.mark.parametrize("seed", range(8))
def test_bounds_valid_and_solver_exact_on_random_tiny_shapes(seed):
    rng = np.random.default_rng(100 + seed)
    E, G = 5, 3
    S = int(rng.integers(2, 4))
    N = int(rng.integers(E, G * S + 1))
    w = np.round(rng.pareto(1.0, size=E) * 50 + 1)
    opt = _brute_force(w, G, S, N)
    greedy = greedy_layer(w, G, S, N).loads().max()
    assert lower_bound(w, G, S, N, achieved=greedy).value <= opt * (1 + 1e-12)
    # Each target test is a necessary condition: the optimum itself always passes it.
    assert target_possible(w, opt, G, S, N)
    res = solve_layer(w, G, S, N, params=ExpertParams(accept_gap=0.0))
    assert res.status == "optimal" and res.max_load == pytest.approx(opt, rel=1e-9)


def test_shared_slack_tightens_the_slot_bound_on_scarce_redundancy():
    # Zipf 1.2, 256 experts on 64 GPUs x 5 slots, 32 redundant: the hottest experts' GPUs are too
    # full for a cold expert unless the few spare replicas go to them, which the split sees.
    w = zipf_loads(1.2, 1, 256).layer(0)
    mean = w.sum() / 64
    res = solve_layer(w, 64, 5, 288)
    bound = lower_bound(w, 64, 5, 288, achieved=res.max_load)
    assert bound.name == "target" and 1.098 < bound.value / mean <= res.max_load / mean
    assert res.gap < 0.01


def test_never_worse_than_eplb_and_bounds_below_achieved_on_random_layers():
    eplb = _eplb_module()
    rng = np.random.default_rng(7)
    for case in range(12):
        E, G = [(8, 4), (12, 4), (16, 8), (32, 8)][case % 4]
        R = [0, 4, 8][case % 3]
        S = -(-(E + R) // G)
        w = rng.pareto(1.2, size=E) * 100 + 1
        ours = solve_layer(w, G, S, E + R, params=ExpertParams(layer_deterministic_time=0.2))
        placed = eplb.rebalance_layer(w, E + R, G)
        theirs = check_assignment(w, placed, S, E + R, allow_duplicates=True)
        assert theirs.ok
        assert ours.max_load <= theirs.max_load * (1 + 1e-9), (case, ours.max_load, theirs.max_load)
        assert ours.bound <= ours.max_load * (1 + 1e-9)
        assert check_assignment(w, ours.gpu_experts, S, E + R).ok


def test_eplb_reproduces_deepseek_readme_example():
    eplb = _eplb_module()
    weight = [[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
              [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]]
    out = eplb.eplb(np.array(weight), 16, 8, groups=4, nodes=2, hierarchical=True)
    assert [sum(layer, []) for layer in out] == [[5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
                                                  [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1]]


def test_seed_instance_proven_fast_and_placements_checked():
    loads = read_expert_loads(str(ROOT / "instances" / "loads" / "moe16x64_skewed.json"))
    res = place_experts(loads, 16, 4)
    assert res.status == "optimal" and res.time_s < 5
    for layer, row in zip(res.layers, loads.counts, strict=True):
        assert np.allclose(gpu_loads(row, layer.gpu_experts), layer.loads)


def test_fill_gpus_per_node_and_identical_layers():
    loads = zipf_loads(1.0, 1, 16)
    loads = ExpertLoads(3, 16, np.vstack([loads.counts] * 3), "x", (3, 4, 5))
    res = place_experts(loads, 4, 5, gpus_per_node=2, fill=True, params=FAST)
    assert [r.layer_id for r in res.layers] == [3, 4, 5]
    assert res.layers[1].method.startswith("copy of layer 3")
    for r in res.layers:
        assert all(len(g) == 5 for g in r.gpu_experts)


def test_inconsistent_parameters_are_input_errors():
    loads = zipf_loads(1.0, 1, 16)
    with pytest.raises(ExpertInputError, match="slots"):
        place_experts(loads, 4, 3)
    with pytest.raises(ExpertInputError, match="redundant"):
        place_experts(loads, 4, 4, redundant_slots=1)
    with pytest.raises(ExpertInputError):
        place_experts(loads, 4, 5, redundant_slots=2, fill=True)
    with pytest.raises(ExpertInputError):
        place_experts(loads, 4, 4, gpus_per_node=3)


# ---------------------------------------------------------------------------------------------
# Engine files


def _placement():
    loads = zipf_loads(1.1, 3, 12)
    loads = ExpertLoads(3, 12, loads.counts, "z", (3, 4, 6))
    # The export tests need a placement, not a proof: the exact route is skipped to keep them fast.
    return loads, place_experts(loads, 4, 4, fill=True, params=FAST)


def test_sglang_map_round_trips_and_fills_dense_layers(tmp_path):
    loads, res = _placement()
    path = tmp_path / "map.json"
    write_sglang(path, res.gpu_experts(), res.layer_ids(), 12, num_layers=8)
    doc = json.loads(path.read_text())
    assert list(doc) == ["physical_to_logical_map"]
    assert len(doc["physical_to_logical_map"]) == 8 and len(doc["physical_to_logical_map"][0]) == 16
    assert doc["physical_to_logical_map"][0] == [p % 12 for p in range(16)]  # dense: SGLang's trivial map
    back = read_sglang(path, gpus=4)
    assert [back[i] for i in (3, 4, 6)] == res.gpu_experts()


def test_trtllm_config_round_trips(tmp_path):
    loads, res = _placement()
    path = tmp_path / "lb.yaml"
    write_trtllm(path, res.gpu_experts(), res.layer_ids())
    text = path.read_text()
    assert "num_slots: 16" in text and "layer_updates_per_iter: 0" in text and "  3: [" in text
    ids, back = read_trtllm(path, gpus=4)
    assert ids == [3, 4, 6] and back == res.gpu_experts()
    # JSON (a YAML subset) reads the same.
    jpath = tmp_path / "lb.json"
    jpath.write_text(json.dumps({"num_slots": 16, "layer_updates_per_iter": 0,
                                 "initial_global_assignments": {str(i): sum(g, []) for i, g in zip(ids, back, strict=True)}}))
    assert read_trtllm(jpath, gpus=4) == (ids, back)


def test_export_rejects_uneven_slots_and_bad_files(tmp_path):
    with pytest.raises(ExportError):
        sglang_expert_location([[[0, 1], [2]]], [0], 3)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"physical_to_logical_map": [[0, 1, 2]], "extra": 1}))
    with pytest.raises(InputError, match="only"):
        read_sglang(bad, gpus=3)
    bad.write_text("num_slots: 3\ninitial_global_assignments:\n  0: [0, 1]\n")
    with pytest.raises(InputError):
        read_trtllm(bad, gpus=3)


def test_compact_rendering():
    assert compact_experts([0, 1, 2, 3, 17, 200], [1] * 200 + [3]) == "0-3,17,200(r3)"


# ---------------------------------------------------------------------------------------------
# The command


def test_cli_text_json_exports_and_exit_codes(tmp_path):
    code, out, _ = run_cli("experts", "--zipf", "1.0", "--layers", "2", "--experts", "16", "--gpus", "4",
                           "--slots-per-gpu", "4")
    assert code == 0 and "Status: OPTIMAL" in out and "GPU 0:" in out
    s, t = tmp_path / "s.json", tmp_path / "t.yaml"
    code, out, _ = run_cli("experts", "--zipf", "1.2", "--layers", "2", "--experts", "16", "--gpus", "4",
                           "--slots-per-gpu", "5", "--sglang-out", str(s), "--trtllm-out", str(t),
                           "--format", "json", "--deterministic-time", "0.05")
    doc = json.loads(out)
    assert code == 0 and doc["fill"] is True and len(doc["layers"]) == 2
    assert read_sglang(s, 4) == [layer["gpu_experts"] for layer in doc["layers"]]
    assert read_trtllm(t, 4)[1] == [layer["gpu_experts"] for layer in doc["layers"]]
    assert "--ep-num-redundant-experts 4" in doc["exports"]["sglang_flags"]


@pytest.mark.parametrize("args, message", [
    (["--gpus", "4", "--slots-per-gpu", "4"], "exactly one of"),
    (["--zipf", "1", "--gpus", "4", "--slots-per-gpu", "4"], "--layers"),
    (["--zipf", "1", "--layers", "1", "--experts", "16", "--gpus", "4", "--slots-per-gpu", "3"], "slots"),
    (["--loads", "/nonexistent/x.json", "--gpus", "4", "--slots-per-gpu", "4"], "file not found"),
    (["--zipf", "1", "--layers", "1", "--experts", "16", "--gpus", "4", "--slots-per-gpu", "5",
      "--redundant", "2", "--sglang-out", "/tmp/never.json"], "every slot"),
])
def test_cli_bad_input_exits_2(args, message):
    code, _, err = run_cli("experts", *args)
    assert code == 2 and err.startswith("error: ") and message in err


def test_deterministic_placement():
    loads = zipf_loads(1.3, 2, 64)
    a = place_experts(loads, 16, 5, params=ExpertParams(layer_deterministic_time=0.1))
    b = place_experts(loads, 16, 5, params=ExpertParams(layer_deterministic_time=0.1))
    assert a.gpu_experts() == b.gpu_experts()
