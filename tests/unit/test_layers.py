"""The layer arrows of DESIGN.md hold: a package imports only the packages below it.

    core  <-  detectors, trackers  <-  events  <-  stream  <-  runtime  <-  web  <-  bench, tools  <-  main.py

`detectors/` and `trackers/` never import each other. Every import counts, including the lazy
ones inside functions (they are how cycles hide).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RANK = {"core": 0, "detectors": 1, "trackers": 1, "events": 2, "stream": 3, "runtime": 4,
        "web": 5, "bench": 6, "tools": 6, "main": 7}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def _modules() -> list[Path]:
    files = [ROOT / "main.py"]
    for pkg in RANK:
        if (ROOT / pkg).is_dir():
            files += sorted((ROOT / pkg).rglob("*.py"))
    return files


def violations(files: list[Path]) -> list[str]:
    bad = []
    for f in files:
        rel = f.relative_to(ROOT)
        here = rel.parts[0] if len(rel.parts) > 1 else "main"
        for line, mod in _imports(f):
            there = mod.split(".")[0]
            if there not in RANK or there == here:
                continue
            if RANK[there] >= RANK[here]:
                bad.append(f"{rel}:{line} ({here}) imports {mod} ({there})")
    return bad


def test_every_layer_package_exists():
    for pkg in RANK:
        if pkg != "main":
            assert (ROOT / pkg / "__init__.py").is_file(), pkg


def test_no_module_imports_upward_or_sideways():
    bad = violations(_modules())
    assert not bad, "imports against the layer arrows:\n" + "\n".join(bad)


@pytest.mark.parametrize("source,ok", [
    ("from web.hub import FrameHub\n", False),         # stream -> web: upward
    ("import trackers.tracker\n", False),              # detectors -> trackers: sideways
    ("def f():\n    from runtime.vigil import Vigil\n", False),  # lazy imports count too
    ("from core.types import Frame\n", True),
    ("import numpy as np\n", True),
])
def test_the_checker_itself(tmp_path, source, ok):
    """The check sees what it must: a planted upward import fails it (in a fake tree)."""
    pkg = "stream" if "web" in source or "runtime" in source else "detectors"
    d = tmp_path / pkg
    d.mkdir()
    f = d / "m.py"
    f.write_text(source)
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert (violations([f]) == []) is ok
    finally:
        ROOT = saved
