"""Ray backend: sweeps and batch runs on Ray give the rows of the local process pool, in order.

The Ray tests need the ``ray`` extra (skipped without it); the last test needs no Ray at all: it
checks the message a user without Ray gets.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from solver.runners.backends import RayOptions
from solver.runners.batch.run import BatchOptions, run_instances
from solver.runners.batch.verdicts import judge_rows
from solver.runners.sweep.run import TIMING_KEYS, point_instances, run_sweep
from solver.runners.sweep.spec import parse_vary, points
from tests.conftest import INSTANCES, ROOT

FAST = str(INSTANCES / "llama8b_4_l4.json")
OPTS = BatchOptions()


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray of 2 CPUs for the module; the runners join it instead of starting their own."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _untimed(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def test_sweep_on_ray_matches_the_process_pool(ray_local):
    axes = [parse_vary("workload.request_rate=2,8"), parse_vary("cluster.gpu=l4-24gb,l40s-48gb")]
    pts = points(axes)
    data = json.loads((INSTANCES / "llama8b_4_l4.json").read_text())
    instances = point_instances(data, FAST, axes, pts)
    done = []
    on_ray = run_sweep(instances, pts, FAST, OPTS, 2, on_done=lambda i, row: done.append(i), ray=RayOptions())
    local = run_sweep(instances, pts, FAST, OPTS, 2)
    assert sorted(done) == [0, 1, 2, 3]
    assert [r["index"] for r in on_ray] == [0, 1, 2, 3]
    assert _untimed(on_ray) == _untimed(local)
    assert all(r["status"] == "optimal" for r in on_ray)
    assert ray_local.is_initialized()  # joined, not shut down: it was started by the fixture


def test_batch_on_ray_gives_the_same_verdict_rows(ray_local):
    files = [INSTANCES / "llama8b_4_l4.json", INSTANCES / "llama70b_t4.json",
             INSTANCES / "dense10b_inconsistent.json"]

    def rows(**kw):
        out = run_instances(files, OPTS, 2, **kw)
        judge_rows(out)
        return [{k: v for k, v in r.items() if k not in ("wall_s", "solver_time_s")} for r in out]

    on_ray, local = rows(ray=RayOptions()), rows()
    assert [r["name"] for r in on_ray] == [f.stem for f in files]
    assert on_ray == local
    assert [r["verdict"] for r in on_ray] == ["pass", "pass", "pass"]


def test_the_cli_starts_and_stops_its_own_ray(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "rows.json"
    # A fresh process: the command starts a local Ray (2 CPUs) and shuts it down at the end.
    proc = subprocess.run([sys.executable, "-m", "solver.runners.cli", "sweep", FAST, "--vary",
                           "workload.request_rate=2,4", "--ray", "-j", "2", "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["settings"]["backend"] == "ray (local)"
    assert [r["status"] for r in doc["rows"]] == ["optimal", "optimal"]


@pytest.mark.parametrize("args", [
    ["sweep", FAST, "--vary", "workload.request_rate=1,2", "--ray"],
    [FAST, "--check", "--ray"],
    ["sweep", FAST, "--vary", "workload.request_rate=1", "--ray-address", "auto"],
])
def test_ray_flags_without_ray_say_how_to_install_it(args):
    # sys.modules["ray"] = None makes `import ray` raise ImportError, as on a machine without it.
    code = "import sys; sys.modules['ray'] = None; from solver.runners.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "needs Ray: pip install 'llm-placement-solver[ray]'" in proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout
