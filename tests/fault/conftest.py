"""Fault-suite plumbing: every test fills a `fault_report` dict with what it injected and what
it saw; at teardown the counts are printed as one JSON line, merged into
ROOT/test-artifacts/fault-summary.json (one entry per test, for BENCHMARKS.md) and, when the
environment variable VIGIL_FAULT_REPORT names a file, merged into that file too."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = ROOT / "test-artifacts" / "fault-summary.json"
# the counts every entry carries (0 where a test has nothing of that kind)
BASE_KEYS = ("faults_injected", "recoveries", "inputs_tried", "http_500")


def _merge(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Read-modify-write one entry of a JSON summary (atomic replace)."""
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or not isinstance(doc.get("tests"), dict):
            doc = {}
    except (OSError, ValueError):
        doc = {}
    tests = doc.get("tests", {})
    tests[key] = entry
    doc = {"updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "tests": dict(sorted(tests.items())),
           "totals": {k: sum(int(t.get(k, 0) or 0) for t in tests.values()) for k in BASE_KEYS}}
    doc["totals"]["duration_s"] = round(sum(float(t.get("duration_s", 0)) for t in tests.values()), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    report: dict[str, Any] = {k: 0 for k in BASE_KEYS}
    t0 = time.monotonic()
    yield report
    report["duration_s"] = round(time.monotonic() - t0, 2)
    rep = getattr(request.node, "rep_call", None)
    report["outcome"] = rep.outcome if rep is not None else "error"
    key = request.node.nodeid.split("tests/fault/", 1)[-1]
    print(f"\nFAULT-REPORT {key} {json.dumps(report, sort_keys=True, default=str)}")
    _merge(SUMMARY, key, report)
    extra = os.environ.get("VIGIL_FAULT_REPORT")
    if extra:
        _merge(Path(extra), key, report)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
