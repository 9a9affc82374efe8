"""Shared helpers: instance paths, the CLI in-process, small instances built in code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from solver.runners.cli import main

ROOT = Path(__file__).resolve().parents[1]
INSTANCES = ROOT / "instances"


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run ``solve`` in-process; returns (exit code, stdout, stderr)."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def run_json(*args: str) -> tuple[int, dict]:
    code, out, err = run_cli(*args, "--format", "json")
    assert out, err
    return code, json.loads(out)


@pytest.fixture
def write_instance(tmp_path):
    """Write an instance dict (or raw text) to a temporary file and return its path."""

    def _write(data, name: str = "case.json") -> str:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
        return str(path)

    return _write


def flagship() -> dict:
    return json.loads((INSTANCES / "llama70b_h100.json").read_text())
