"""The package's shape: no import cycles, data flowing one way between subpackages, the README's API example."""

from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "solver"
# Layers, lowest first: a module may import from its own layer and the ones before it, never after.
LAYERS = ["input", "physics", "engines", "problem", "simulate", "verify", "calibrate", "search", "diagnose", "report",
          "capacity", "api", "runners"]
# The specification never needs the solver: these must not reach ortools, even indirectly.
SOLVER_FREE = ("solver.input", "solver.physics", "solver.engines", "solver.problem", "solver.simulate",
               "solver.verify", "solver.calibrate")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py") if "catalog_data" not in p.parts}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module ``name`` imports, at module level or inside functions (lazy imports count too)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            for a in node.names:  # `from . import vllm` imports a submodule
                if f"{target}.{a.name}" in known:
                    out.add(f"{target}.{a.name}")
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "solver":
        return None
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else None


def test_no_import_cycle(graph):
    internal = {m: {t for t in ts if t in graph and t != m} for m, ts in graph.items() if m != "solver"}
    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in internal[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(internal):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_data_flows_one_way_between_subpackages(graph):
    wrong = []
    for module, targets in graph.items():
        mine = _layer(module)
        if mine is None:
            continue
        for t in targets:
            theirs = _layer(t)
            if theirs is not None and theirs > mine:
                wrong.append(f"{module} imports {t} ({LAYERS[theirs]} is above {LAYERS[mine]})")
    assert not wrong, "\n".join(sorted(wrong))


def test_every_module_belongs_to_a_layer(graph):
    stray = [m for m in graph if m != "solver" and _layer(m) is None]
    assert not stray, f"modules outside the declared layers {LAYERS}: {stray}"


def test_the_specification_never_reaches_ortools(graph):
    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            for t in graph.get(m, ()):
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        return seen

    for module in graph:
        if module.startswith(SOLVER_FREE):
            bad = {t for t in reach(module) if t.split(".")[0] == "ortools"}
            assert not bad, f"{module} reaches {bad}"


def test_every_subpackage_says_what_it_owns():
    folders = {p.parent for p in PACKAGE.rglob("*.py") if "catalog_data" not in p.parts}
    for folder in folders:
        init = folder / "__init__.py"
        assert init.is_file(), f"{folder.relative_to(ROOT)} has no __init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc) > 80, f"{init.relative_to(ROOT)} needs a docstring saying what it owns"


def _readme_api_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's Python API section has no python example"
    return match.group(1)


def test_readme_api_example_runs_and_prints_the_flagship_objective(monkeypatch):
    monkeypatch.chdir(ROOT)
    code = _readme_api_example()
    assert len(code.strip().splitlines()) <= 16
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    from solver import load_instance, plan

    report = plan(load_instance(ROOT / "instances" / "llama70b_h100.json"))
    assert f"{report.objective:.1f}" in out.getvalue()
    assert report.status in out.getvalue()


def test_api_to_json_is_the_cli_document():
    from solver import load_instance, plan
    from tests.conftest import run_cli

    path = str(ROOT / "instances" / "llama70b_t4.json")
    report = plan(load_instance(path))
    code, out, _ = run_cli(path, "--format", "json")
    assert code == report.exit_code == 1

    def strip(o):
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k not in ("time_s", "wall_s")}
        return [strip(x) for x in o] if isinstance(o, list) else o

    import json

    assert strip(json.loads(report.to_json())) == strip(json.loads(out))


def test_api_errors_carry_the_cli_message(write_instance):
    from solver import InputError, load_instance
    from tests.conftest import run_cli

    path = write_instance({"name": "x"})
    with pytest.raises(InputError) as err:
        load_instance(path)
    code, _, stderr = run_cli(path)
    assert code == 2 and stderr.strip() == f"error: {err.value}"
