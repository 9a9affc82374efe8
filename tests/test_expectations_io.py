"""Recording expectations: only the `expect` block's text changes, atomically, and unwritable files are rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from solver.runners.batch.expectations import expectation_text, read_expectation, write_expectation

ORIGINAL = '{\n    "name": "x",\r\n  "limits": {"memory_utilization": 9e-1, "note": "caf\\u00e9"},\n  "expect": {"status": "feasible"}\n}\n'


def test_only_the_expect_block_changes(tmp_path):
    new = expectation_text(ORIGINAL, {"status": "optimal", "objective": 1.5})
    before, after = ORIGINAL.split('"expect"')[0], new.split('"expect"')[0]
    assert before == after  # indentation, escapes and number spellings kept
    assert json.loads(new)["expect"] == {"status": "optimal", "objective": 1.5}
    assert json.loads(new)["limits"]["memory_utilization"] == 0.9


def test_adds_an_expect_block_and_keeps_crlf_and_bom(tmp_path):
    text = "\ufeff{\r\n  \"name\": \"x\",\r\n  \"n\": 1.0E3\r\n}\r\n"
    new = expectation_text(text, {"status": "optimal"})
    assert new.startswith("\ufeff{\r\n  \"name\": \"x\",\r\n  \"n\": 1.0E3,\r\n  \"expect\": {")
    assert "\n" not in new.replace("\r\n", "")
    assert json.loads(new.lstrip("\ufeff"))["expect"] == {"status": "optimal"}
    path = tmp_path / "bom.json"
    path.write_text(new, encoding="utf-8")
    assert read_expectation(path) == {"status": "optimal"}  # the solver's reader: a BOM is fine


def test_unchanged_expectation_leaves_the_file_untouched(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(ORIGINAL, encoding="utf-8", newline="")
    stamp = path.stat().st_mtime_ns
    assert write_expectation(path, {"status": "feasible"}) == "unchanged"
    assert path.read_bytes() == ORIGINAL.encode() and path.stat().st_mtime_ns == stamp
    assert write_expectation(path, {"status": "optimal"}) == "written"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left behind


def test_read_only_file_is_reported(tmp_path):
    path = tmp_path / "ro.json"
    path.write_text(ORIGINAL)
    path.chmod(0o444)
    try:
        outcome = write_expectation(path, {"status": "optimal"})
        if os.geteuid() != 0:  # root may write anyway; the outcome is still not a crash
            assert outcome.startswith("cannot write")
        assert path.read_text() == ORIGINAL or outcome == "written"
    finally:
        path.chmod(0o644)


def test_sigterm_stops_the_batch_workers_quickly(tmp_path):
    script = ("import sys; from solver.runners.cli import main; "
              "sys.argv=['solve', 'instances/', '--jobs', '2']; main()")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    time.sleep(4)  # the workers are up and solving
    children = [c for c in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
                if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]  # the solver workers
    assert children
    os.kill(proc.pid, signal.SIGTERM)
    t0 = time.monotonic()
    proc.wait(timeout=10)
    assert time.monotonic() - t0 < 3
    time.sleep(1)
    alive = [c for c in children if subprocess.run(["kill", "-0", c], capture_output=True).returncode == 0]
    assert not alive
