"""Batch mode: ``solve PATH...`` with expectations, verdicts, reports and the project's own gate."""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from solver.input.catalog import _catalog_dirs, gpu_card, reload_catalog
from solver.runners.batch import expectations, run, verdicts
from tests.conftest import INSTANCES, run_cli

# Fast instances (well under a second each) used by the tests that build tmp copies.
H100_FAST = ("llama70b_h100", "qwen3_235b_8_h100")
OTHER_FAST = ("llama8b_4_l4", "mixtral8x7b_4_a100")


def _copy(tmp_path: Path, names: tuple[str, ...] | list[str], folder: str = "inst") -> Path:
    """Copy instances (by stem) into a fresh folder, with the model configs they refer to."""
    dest = tmp_path / folder
    dest.mkdir()
    for name in names:
        shutil.copy(INSTANCES / f"{name}.json", dest / f"{name}.json")
    shutil.copytree(INSTANCES / "configs", dest / "configs")
    return dest


def _edit(path: Path, **expect) -> None:
    """Change keys of an instance's expect block (None removes the key; no keys: drop the block)."""
    data = json.loads(path.read_text())
    if not expect:
        data.pop("expect", None)
    for key, value in expect.items():
        if value is None:
            data["expect"].pop(key, None)
        else:
            data["expect"][key] = value
    path.write_text(json.dumps(data, indent=2) + "\n")


def _report(tmp_path: Path, *args: str) -> tuple[int, dict, str]:
    """Run a batch with a JSON report; returns (exit code, report, stderr)."""
    out = tmp_path / "report.json"
    code, _, err = run_cli(*args, "--jobs", "1", "--report-json", str(out))
    return code, json.loads(out.read_text()), err


def _verdicts(report: dict) -> dict[str, str]:
    return {row["name"]: row["verdict"] for row in report["rows"]}


def _failed(err: str) -> set[str]:
    """The instance names of the ``check failed: a, b`` line."""
    line = next(ln for ln in err.splitlines() if ln.startswith("check failed: "))
    return set(line[len("check failed: ") :].split(", "))


# ---------------------------------------------------------------------------------------------
# The project's gate
# ---------------------------------------------------------------------------------------------


def test_instances_folder_is_covered():
    """At least 20 instances, each described and with an expectation; both outcomes present."""
    files = run.collect_instances([str(INSTANCES)])
    assert len(files) >= 20
    statuses = set()
    for f in files:
        data = json.loads(f.read_text())
        assert data.get("description"), f.name
        assert isinstance(data.get("expect"), dict), f"{f.name} has no expect block"
        statuses.add(data["expect"]["status"])
    assert {"optimal", "infeasible", "error"} <= statuses
    # configs/ holds model configs, not instances: a directory is not searched recursively.
    assert all(f.parent == INSTANCES for f in files)


def test_instances_check_passes():
    """``solve instances/ --check`` exits 0 and lists every instance in its table."""
    code, out, err = run_cli(str(INSTANCES), "--check")
    assert code == 0, out + err
    for f in run.collect_instances([str(INSTANCES)]):
        assert f.stem in out
    assert "regressed" not in out.split("\n\n")[-1]


# ---------------------------------------------------------------------------------------------
# Regressions are found and named
# ---------------------------------------------------------------------------------------------


def test_changed_objective_fails_exactly_that_instance(tmp_path):
    folder = _copy(tmp_path, [*H100_FAST, *OTHER_FAST])
    path = folder / "llama8b_4_l4.json"
    recorded = json.loads(path.read_text())["expect"]["objective"]
    _edit(path, objective=recorded * 1.5)  # the recorded optimum was higher: now it looks worse
    code, report, err = _report(tmp_path, str(folder), "--check")
    assert code == 1
    assert _failed(err) == {"llama8b_4_l4"}
    assert _verdicts(report)["llama8b_4_l4"] == "regressed"
    assert sum(v == "pass" for v in _verdicts(report).values()) == 3


def test_strict_check_fails_on_improvements_too(tmp_path):
    folder = _copy(tmp_path, ["llama8b_4_l4"])
    path = folder / "llama8b_4_l4.json"
    recorded = json.loads(path.read_text())["expect"]["objective"]
    _edit(path, objective=recorded * 0.5)  # the recording was worse: the solver now improves on it
    code, report, _ = _report(tmp_path, str(folder), "--check")
    assert code == 0 and _verdicts(report)["llama8b_4_l4"] == "improved"
    code, _, err = _report(tmp_path, str(folder), "--check", "--strict")
    assert code == 1 and _failed(err) == {"llama8b_4_l4"}


def test_slower_gpu_card_fails_exactly_its_instances(tmp_path, monkeypatch):
    """A catalog override with less HBM bandwidth regresses the instances on that GPU only."""
    folder = _copy(tmp_path, [*H100_FAST, *OTHER_FAST])
    card = json.loads((INSTANCES.parent / "models" / "gpu" / "h100-sxm-80gb.json").read_text())
    card["hbm_TBps"] = 1.0
    (tmp_path / "cat" / "gpu").mkdir(parents=True)
    (tmp_path / "cat" / "gpu" / "h100-sxm-80gb.json").write_text(json.dumps(card))
    monkeypatch.setenv("SOLVE_CATALOG_PATH", str(tmp_path / "cat"))
    code, report, err = _report(tmp_path, str(folder), "--check")
    monkeypatch.delenv("SOLVE_CATALOG_PATH")
    assert code == 1
    assert _failed(err) == set(H100_FAST)
    verdicts = _verdicts(report)
    assert {verdicts[n] for n in OTHER_FAST} == {"pass"}
    # The batch leaves no overridden card cached behind it.
    reload_catalog()
    assert gpu_card("h100-sxm-80gb").hbm_TBps == pytest.approx(3.35)


def test_catalog_path_comes_first(tmp_path, monkeypatch):
    (tmp_path / "a" / "gpu").mkdir(parents=True)
    (tmp_path / "b" / "llm").mkdir(parents=True)
    monkeypatch.setenv("SOLVE_CATALOG_PATH", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    assert _catalog_dirs("gpu")[0] == tmp_path / "a" / "gpu"
    assert _catalog_dirs("llm")[0] == tmp_path / "b" / "llm"
    assert len(_catalog_dirs("gpu")) >= 2  # the shipped catalog is still searched after


# ---------------------------------------------------------------------------------------------
# Verdicts
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def verdict_report(tmp_path_factory):
    """One batch over copies with edited expectations, one per verdict case (solved once)."""
    tmp = tmp_path_factory.mktemp("verdicts")
    folder = tmp / "inst"
    folder.mkdir()
    shutil.copytree(INSTANCES / "configs", folder / "configs")

    def copy(src: str, dst: str) -> Path:
        shutil.copy(INSTANCES / f"{src}.json", folder / f"{dst}.json")
        return folder / f"{dst}.json"

    flagship_obj = json.loads((INSTANCES / "llama70b_h100.json").read_text())["expect"]["objective"]
    copy("llama70b_h100", "v_pass")
    _edit(copy("llama70b_h100", "v_improved"), objective=flagship_obj * 0.9)
    _edit(copy("llama70b_h100", "v_regressed"), objective=flagship_obj * 1.1)
    _edit(
        copy("llama70b_h100", "v_regressed_status"),
        status="infeasible",
        strategy=None,
        layers_per_stage=None,
        objective=None,
        metrics=None,
        conflict_rules=["gpu_count"],
    )
    _edit(copy("llama70b_h100", "v_changed_strategy"), strategy={"tp": 8, "pp": 1, "dp": 1})
    _edit(copy("llama70b_h100", "v_changed_split"), layers_per_stage=[40, 40])
    _edit(copy("llama70b_h100", "v_changed_metric"), metrics={"ttft_ms": 10.0})
    _edit(copy("llama70b_h100", "v_within_tol"), objective=flagship_obj * 1.005)
    _edit(copy("llama70b_h100", "v_new"))
    gpus = copy("llama8b_min_gpus_a100_40", "v_min_improved")
    _edit(
        gpus, objective=json.loads(gpus.read_text())["expect"]["objective"] + 1
    )  # fewer GPUs now: better
    _edit(copy("llama8b_min_gpus_a100_40", "v_min_regressed"), objective=1.0)
    _edit(
        copy("llama70b_t4_tp2pp4", "v_changed_conflict"),
        conflict_rules=["gpu_count", "slo.ttft_ms"],
    )
    copy("llama70b_t4_tp2pp4", "v_pass_infeasible")
    copy("dense10b_inconsistent", "v_pass_rejected")
    _edit(copy("dense10b_inconsistent", "v_changed_message"), error_contains="some other message")
    _edit(
        copy("dense10b_inconsistent", "v_error_unexpected"), status="optimal", error_contains=None
    )
    data = json.loads((INSTANCES / "llama70b_h100.json").read_text())
    data["workload"]["input_tokns"] = 1
    (folder / "v_error_unknown_key.json").write_text(json.dumps(data))
    (folder / "v_error_not_json.json").write_text("{ not json")
    out = tmp / "report.json"
    junit, md = tmp / "junit.xml", tmp / "summary.md"
    code, stdout, err = run_cli(
        str(folder),
        "--jobs",
        "2",
        "--report-json",
        str(out),
        "--junit",
        str(junit),
        "--markdown",
        str(md),
        "--check",
    )
    return {
        "code": code,
        "stdout": stdout,
        "stderr": err,
        "report": json.loads(out.read_text()),
        "junit": junit,
        "markdown": md.read_text(),
    }


@pytest.mark.parametrize(
    "name, verdict",
    [
        ("v_pass", "pass"),
        ("v_within_tol", "pass"),
        ("v_pass_infeasible", "pass"),
        ("v_pass_rejected", "pass"),
    ],
)
def test_verdict_pass(verdict_report, name, verdict):
    assert _verdicts(verdict_report["report"])[name] == verdict


def test_verdict_improved(verdict_report):
    v = _verdicts(verdict_report["report"])
    assert v["v_improved"] == "improved"
    assert v["v_min_improved"] == "improved"  # min_gpus: a lower objective is better


def test_verdict_regressed(verdict_report):
    v = _verdicts(verdict_report["report"])
    assert v["v_regressed"] == "regressed"
    assert v["v_regressed_status"] == "regressed"
    assert v["v_min_regressed"] == "regressed"  # min_gpus: a higher objective is worse


@pytest.mark.parametrize(
    "name",
    [
        "v_changed_strategy",
        "v_changed_split",
        "v_changed_metric",
        "v_changed_conflict",
        "v_changed_message",
    ],
)
def test_verdict_changed(verdict_report, name):
    row = next(r for r in verdict_report["report"]["rows"] if r["name"] == name)
    assert row["verdict"] == "changed", row["details"]
    assert row["details"]


def test_verdict_new(verdict_report):
    assert _verdicts(verdict_report["report"])["v_new"] == "new"


def test_verdict_error_and_malformed_files_do_not_stop_the_batch(verdict_report):
    v = _verdicts(verdict_report["report"])
    assert v["v_error_unknown_key"] == "error"
    assert v["v_error_not_json"] == "error"
    assert v["v_error_unexpected"] == "error"
    rows = {r["name"]: r for r in verdict_report["report"]["rows"]}
    assert "input_tokns" in rows["v_error_unknown_key"]["error"]
    assert "not valid JSON" in rows["v_error_not_json"]["error"]
    # Every file of the folder has a row, the batch ran to its end, and --check fails.
    assert len(rows) == 18
    assert verdict_report["code"] == 1
    assert _failed(verdict_report["stderr"]) == {
        "v_regressed",
        "v_regressed_status",
        "v_min_regressed",
        "v_error_unknown_key",
        "v_error_not_json",
        "v_error_unexpected",
    }


def test_verification_failure_regresses_and_crash_errors(monkeypatch):
    """An exception from the solver's own verification is a regression; any other crash an error."""
    from solver.search.planner import VerificationError

    def fails(*args, **kwargs):
        raise VerificationError("decoded plan fails verification")

    monkeypatch.setattr(run, "solve_file", fails)
    row = run.solve_row(str(INSTANCES / "llama70b_h100.json"), run.BatchOptions())
    assert verdicts.judge(row, {"status": "optimal"})[0] == "regressed"

    def crashes(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(run, "solve_file", crashes)
    row = run.solve_row(str(INSTANCES / "llama70b_h100.json"), run.BatchOptions())
    assert verdicts.judge(row, {"status": "optimal"}) == ("error", ["crash: ZeroDivisionError: boom"])
    assert expectations.expectation_from_row(row, None) is None  # a crash is never recorded


# ---------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------


def test_junit_is_valid_xml_with_one_case_per_instance(verdict_report):
    root = ET.parse(verdict_report["junit"]).getroot()
    cases = root.findall("./testsuite/testcase")
    rows = verdict_report["report"]["rows"]
    assert [c.get("name") for c in cases] == [r["name"] for r in rows]
    assert {c.get("classname") for c in cases} == {"instances"}
    by_name = {c.get("name"): c for c in cases}
    assert by_name["v_regressed"].find("failure") is not None
    assert by_name["v_error_not_json"].find("error") is not None
    assert by_name["v_pass"].find("failure") is None and by_name["v_pass"].find("error") is None
    suite = root.find("testsuite")
    assert int(suite.get("tests")) == len(rows)
    assert int(suite.get("failures")) == 3 and int(suite.get("errors")) == 3


def test_markdown_and_table(verdict_report):
    md = verdict_report["markdown"]
    assert md.startswith("### Placement regression: failed")
    assert "| instance | status |" in md and "v_changed_split" in md
    table = verdict_report["stdout"]
    assert "TTFT ms" in table and "tok/s/GPU" in table and "v_min_improved" in table
    assert "18 instance(s)" in table


def test_format_json_prints_the_report(tmp_path):
    folder = _copy(tmp_path, ["llama70b_h100", "llama70b_tp3"])
    code, out, _ = run_cli(str(folder), "--jobs", "1", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["summary"]["pass"] == 2 and doc["ok"] is True
    assert [r["name"] for r in doc["rows"]] == ["llama70b_h100", "llama70b_tp3"]
    assert doc["settings"]["deterministic_time"] == run.DEFAULT_DETERMINISTIC_TIME


def test_several_files_and_jobs_warning(tmp_path):
    folder = _copy(tmp_path, ["llama70b_h100", "llama8b_4_l4"])
    code, out, err = run_cli(
        str(folder / "llama70b_h100.json"),
        str(folder / "llama8b_4_l4.json"),
        "--jobs",
        "64",
        "--workers",
        "2",
        "--check",
    )
    assert code == 0, err
    assert "warning: --jobs 64 x --workers 2" in err
    assert "2 instance(s)" in out


# ---------------------------------------------------------------------------------------------
# Recording expectations
# ---------------------------------------------------------------------------------------------


def test_update_expected_records_and_keeps_user_settings(tmp_path):
    folder = _copy(tmp_path, ["llama70b_h100", "llama70b_t4_tp2pp4", "dense10b_inconsistent"])
    flag, infeasible = folder / "llama70b_h100.json", folder / "llama70b_t4_tp2pp4.json"
    _edit(flag)  # no expectation at all
    _edit(infeasible, conflict_rules=["something else"], rel_tol=0.05)
    keys_before = list(json.loads(infeasible.read_text()))
    code, _, err = run_cli(str(folder), "--jobs", "1", "--update-expected")
    assert code == 0, err
    text = flag.read_text()
    assert text.endswith("}\n") and json.dumps(json.loads(text), indent=2) + "\n" == text
    recorded = json.loads(text)["expect"]
    assert recorded["status"] == "optimal" and recorded["objective"] > 0
    assert set(recorded["metrics"]) == set(run.KEY_METRICS)
    assert "rel_tol" not in recorded  # the default is not written
    again = json.loads(infeasible.read_text())
    assert list(again) == keys_before  # the expect block stays where it was
    assert again["expect"]["rel_tol"] == 0.05
    assert again["expect"]["conflict_rules"] != ["something else"]
    rejected = json.loads((folder / "dense10b_inconsistent.json").read_text())["expect"]
    assert rejected["status"] == "error" and "declared_params_B" in rejected["error_contains"]
    assert str(folder) not in rejected["error_contains"]  # copies of the file still match
    code, out, err = run_cli(str(folder), "--jobs", "1", "--check")
    assert code == 0, out + err


def test_typo_in_expect_block_is_not_recorded(tmp_path):
    folder = _copy(tmp_path, ["llama70b_h100"])
    _edit(folder / "llama70b_h100.json", status="optimall")
    before = (folder / "llama70b_h100.json").read_text()
    code, out, err = run_cli(str(folder), "--jobs", "1", "--update-expected", "--check")
    assert code == 1 and "expect.status" in out
    assert "llama70b_h100: not recorded" in err
    assert (folder / "llama70b_h100.json").read_text() == before


def test_stable_error_text_cuts_computed_numbers():
    from solver.input.errors import InputError

    err = InputError(
        "x/y.json",
        "model.declared_params_B",
        10.0,
        "declares 10 B parameters but its architecture implies 0.075 B (-99.3%)",
    )
    assert (
        run._stable_error_text(err)
        == "at `model.declared_params_B`: value 10.0: declares 10 B parameters but its architecture implies"
    )


def test_collect_is_sorted_and_not_recursive(tmp_path):
    for name in ("b.json", "a.json", "notes.txt"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.json").write_text("{}")
    assert [p.name for p in run.collect_instances([str(tmp_path)])] == ["a.json", "b.json"]
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(str(tmp_path / "empty"), str(tmp_path / "sub" / "nothing"))
    assert code == 0  # the missing file is one error row; without --check the run itself succeeds
    code, _, err = run_cli(str(tmp_path / "empty"))
    assert code == 2 and "no *.json instance" in err


def test_one_file_with_a_batch_option_runs_as_a_batch_of_one():
    from tests.conftest import INSTANCES, run_cli

    code, out, _ = run_cli(str(INSTANCES / "llama8b_4_l4.json"), "--check")
    assert code == 0
    assert "verdict" in out and "1 instance(s)" in out and "pass" in out
