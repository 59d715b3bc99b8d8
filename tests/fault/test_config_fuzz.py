"""Fuzzing the configuration loader with documents mutated from the shipped config.yaml:
deleted keys, unknown keys (unicode, odd characters), wrong types, out-of-range, huge, NaN and
infinite numbers, lists for mappings and mappings for lists, nested garbage, duplicated
cameras, non-string keys.

In-process (hundreds of examples): core.config.parse_config and load_config (through a YAML
file) either accept the document or raise ConfigError, never anything else; a rejection names
the file and lists one `  <key path>: <what>` line per problem, and for a single mutation one
of those paths is the mutated key, one of its parents, children or siblings. Through the real
CLI (`python main.py check-config FILE`, a handful of files incl. broken YAML): exit 0 or 2,
never a traceback."""
from __future__ import annotations

import copy
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from core.config import ConfigError, VigilConfig, format_loc, load_config, parse_config

pytestmark = pytest.mark.fault

ROOT = Path(__file__).resolve().parents[2]
BASE: dict = yaml.safe_load((ROOT / "config.yaml").read_text())
WHERE = "fuzz.yaml"
SUMMARY_RE = re.compile(r"^(?P<where>.+): invalid configuration \((?P<n>\d+) problems?\)$")
COUNTS = {"inputs": 0, "accepted": 0, "rejected": 0, "yaml_inputs": 0, "path_checked": 0}


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a document (dict keys and list indices), parents before children."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


# ------------------------------------------------------------ values and keys
odd_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "é", "名前", "🎥", "a" * 5000, "null", "~", "yes", "0x1F", "1e999",
                     "-.inf", "${HOME}", "env:NOPE_NOT_SET", "../../etc/passwd", "\x00", "a\nb"]),
)
huge = st.sampled_from([10**30, -(10**30), 2**63, -(2**63) - 1, 10**400, 1e308, -1e308, 5e-324])
special = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, True, False, None])
scalar = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                   huge, special, odd_text)
LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
plain_key = st.text(min_size=1, max_size=20).filter(lambda k: not any(c in k for c in LINE_BREAKS))
garbage = st.recursive(scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(plain_key, inner, max_size=4)), max_leaves=12)
# keys that are empty or hold a line break are covered by test_odd_keys_are_named below
odd_key = st.one_of(st.sampled_from(["bogus", "Name", "name ", "cameras", "ñ", "🎥", " ", "a.b", "a[0]",
                                     "a: b", "__class__", "model_config", "\t"]),
                    plain_key)
any_key = st.one_of(odd_key, st.integers(-3, 3), st.just(None), st.just(1.5), st.booleans())

OPS = ("delete", "add_key", "replace", "replace", "replace", "swap_container", "duplicate",
       "rename_key", "numeric_edge")


def _mutate(doc: Any, data: st.DataObject, yaml_safe: bool) -> tuple[Any, tuple, str]:
    """Apply one mutation; return (doc, mutated path, op)."""
    paths = _paths(doc)
    op = data.draw(st.sampled_from(OPS), label="op")
    if op == "add_key":  # add a key to a mapping (the document itself or a nested one)
        maps = [()] + [p for p in paths if isinstance(_get(doc, p), dict)]
        where = data.draw(st.sampled_from(maps), label="at")
        key = data.draw(odd_key if yaml_safe else any_key, label="key")
        node = _get(doc, where)
        if key in node:
            return doc, where + (key,), "noop"
        node[key] = data.draw(garbage, label="value")
        return doc, where + (key,), op
    path = data.draw(st.sampled_from(paths), label="path")
    parent, last = _get(doc, path[:-1]), path[-1]
    old = parent[last]
    if op == "delete":
        del parent[last]
    elif op == "replace":
        parent[last] = data.draw(garbage, label="value")
    elif op == "swap_container":
        if isinstance(old, list):
            parent[last] = {str(i): v for i, v in enumerate(old)}
        elif isinstance(old, dict):
            parent[last] = list(old.values()) or [old]
        else:
            parent[last] = [old]
    elif op == "duplicate":
        if isinstance(parent, list):
            parent.append(copy.deepcopy(old))
            return doc, path[:-1], op
        parent[last] = [old, old]
    elif op == "rename_key":
        if not isinstance(parent, dict):
            return doc, path, "noop"
        new = data.draw(odd_key if yaml_safe else any_key, label="key")
        if new in parent:
            return doc, path, "noop"
        parent[new] = parent.pop(last)
        return doc, path[:-1] + (new,), op
    elif op == "numeric_edge":
        parent[last] = data.draw(st.one_of(huge, special, st.sampled_from([0, -1, 1, 10**6, 0.5, -0.5])),
                                 label="value")
    return doc, path, op


# ------------------------------------------------------------ message checks
def _error_paths(msg: str) -> list[str]:
    """The key paths a ConfigError names (checks the message shape on the way)."""
    lines = msg.split("\n")
    first = lines[0]
    assert first.startswith(WHERE + ": "), msg
    assert "Traceback" not in msg and "pydantic" not in msg.lower(), msg
    m = SUMMARY_RE.match(first)
    if not m:  # a top-level problem: one line (not a mapping, key not a string, YAML syntax)
        assert len(lines) == 1, msg
        return [""]
    body = lines[1:]
    n = int(m.group("n"))
    assert len(body) >= n and n >= 1, msg
    paths = []
    for ln in body:
        if not ln.startswith("  "):
            continue  # a continuation of the previous line (a key or value with a newline in it)
        path, sep, desc = ln[2:].partition(": ")
        assert sep and desc.strip(), f"line without 'path: what': {ln!r}\n{msg}"
        if path == "(top level)":  # a whole-document validator: its message starts with the path
            inner = re.match(r"^(\S+?): ", desc)
            path = inner.group(1) if inner else ""
        paths.append(path)
    assert len(paths) >= 1, msg
    return paths


def _related(err_path: str, mutated: tuple) -> bool:
    """The reported path is the mutated key, a parent, a child, or a sibling of it."""
    if err_path == "":
        return True
    full = format_loc(mutated)
    parent = format_loc(mutated[:-1]) if len(mutated) > 1 else ""
    prefixes = {format_loc(mutated[:i]) for i in range(1, len(mutated) + 1)}
    if err_path in prefixes:
        return True
    for anchor in (full, parent):
        if anchor and (err_path.startswith(anchor + ".") or err_path.startswith(anchor + "[")):
            return True
    return not parent and "." not in err_path and "[" not in err_path  # sibling at the top


def _check(doc: Any, mutated: tuple | None, single: bool) -> str:
    COUNTS["inputs"] += 1
    try:
        cfg = parse_config(doc, WHERE)
    except ConfigError as e:
        COUNTS["rejected"] += 1
        paths = _error_paths(str(e))
        if single and mutated:
            COUNTS["path_checked"] += 1
            assert any(_related(p, mutated) for p in paths), \
                f"mutated {format_loc(mutated)!r}, the error names {paths}:\n{e}"
        return "rejected"
    assert isinstance(cfg, VigilConfig)
    COUNTS["accepted"] += 1
    return "accepted"


# ------------------------------------------------------------ the tests
def test_base_config_is_valid():
    assert isinstance(parse_config(copy.deepcopy(BASE), WHERE), VigilConfig)


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def _fuzz_in_process(data):
    doc = copy.deepcopy(BASE)
    n = data.draw(st.sampled_from([1, 1, 2, 3]), label="mutations")
    mutated, op = None, "noop"
    for _ in range(n):
        doc, mutated, op = _mutate(doc, data, yaml_safe=False)
    _check(doc, mutated, single=(n == 1 and op != "noop"))


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def _fuzz_yaml_files(data, tmp: Path):
    """Same mutations written as YAML and read back by load_config: same verdict as in-process."""
    doc = copy.deepcopy(BASE)
    for _ in range(data.draw(st.integers(1, 2), label="mutations")):
        doc, _, _ = _mutate(doc, data, yaml_safe=True)
    try:
        text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    except yaml.YAMLError:
        return
    f = tmp / WHERE
    f.write_text(text, encoding="utf-8")
    COUNTS["yaml_inputs"] += 1
    expected = _check(yaml.safe_load(text), None, single=False)
    try:
        load_config(f)
        got = "accepted"
    except ConfigError as e:
        got = "rejected"
        assert str(e).startswith(str(f) + ": "), str(e)
        assert "Traceback" not in str(e)
    assert got == expected, (got, expected, text[:500])


def test_config_fuzz_in_process(tmp_path, monkeypatch, fault_report):
    monkeypatch.chdir(tmp_path)  # relative file sources in mutated docs resolve nowhere real
    for k in COUNTS:
        COUNTS[k] = 0
    _fuzz_in_process()
    _fuzz_yaml_files(tmp=tmp_path)
    fault_report.update({"inputs_tried": COUNTS["inputs"], "faults_injected": COUNTS["inputs"],
                         "accepted": COUNTS["accepted"], "rejected": COUNTS["rejected"],
                         "yaml_round_trips": COUNTS["yaml_inputs"],
                         "single_mutation_paths_checked": COUNTS["path_checked"]})
    assert COUNTS["inputs"] >= 400 and COUNTS["rejected"] >= 0.5 * COUNTS["inputs"], COUNTS
    assert COUNTS["path_checked"] >= 50, COUNTS


@pytest.mark.parametrize("key", ["", "\n", "a\nb", "x: y"], ids=["empty", "newline", "inner-newline", "colon"])
def test_odd_keys_are_named(key):
    """An unknown key that is empty or holds a line break is still shown as one readable line
    per problem (the fuzz above leaves such keys out so it can look for other problems)."""
    doc = copy.deepcopy(BASE)
    doc["server"][key] = 1
    with pytest.raises(ConfigError) as exc:
        parse_config(doc, WHERE)
    msg = str(exc.value)
    lines = msg.split("\n")
    assert SUMMARY_RE.match(lines[0]) and int(SUMMARY_RE.match(lines[0]).group("n")) == 1, msg
    assert len(lines) == 2, f"one line per problem expected:\n{msg}"
    path = lines[1].strip().rsplit(": unknown key", 1)[0]
    assert path.startswith("server") and path != "server." and len(path) > len("server."), msg


# ------------------------------------------------------------ the real CLI
def _cli_cases(tmp: Path) -> dict[str, tuple[Path, int]]:
    """name -> (file, expected exit code)."""
    cases: dict[str, tuple[Path, int]] = {}

    def add(name: str, content: bytes | str | None, rc: int) -> None:
        p = tmp / f"{name}.yaml"
        if content is not None:
            p.write_bytes(content.encode() if isinstance(content, str) else content)
        cases[name] = (p, rc)

    add("valid", (ROOT / "config.yaml").read_bytes(), 0)
    bad = copy.deepcopy(BASE)
    bad["cameras"][0]["detect_every"] = 0
    bad["cameras"][1]["bogus"] = {"x": [1, 2]}
    bad["server"]["port"] = 10**30
    bad["tracker"]["max_age_s"] = math.nan
    bad["cameras"][0]["lines"][0]["points"] = [[math.inf, 0], [1, 1]]
    add("mutated", yaml.safe_dump(bad, allow_unicode=True), 2)
    add("syntax", "cameras:\n  - name: a\n   source: [unclosed\n", 2)
    add("tabs", "cameras:\n\t- name: a\n", 2)
    add("not_utf8", b"cameras:\n  - name: \xff\xfe\n", 2)
    add("empty", "", 2)
    add("a_list", "- 1\n- 2\n", 2)
    add("scalar", "just a string\n", 2)
    add("int_keys", "1: 2\ncameras: []\n", 2)
    add("deep_nesting", "cameras: " + "[" * 1000 + "]" * 1000 + "\n", 2)
    add("missing_file", None, 2)
    cases["directory"] = (tmp, 2)
    return cases


def test_check_config_cli(tmp_path, fault_report):
    cases = _cli_cases(tmp_path)
    bad: list[str] = []
    for name, (path, want) in cases.items():
        r = subprocess.run([sys.executable, "main.py", "check-config", str(path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        out = r.stdout + r.stderr
        ok = r.returncode == want and "Traceback" not in out
        if ok and want == 2:
            first = r.stderr.strip().splitlines()[0] if r.stderr.strip() else ""
            ok = first.startswith(str(path)) and len(r.stderr) < 20000
        if ok and want == 0:
            ok = r.stdout.strip() == "ok"
        if not ok:
            bad.append(f"{name}: exit {r.returncode} (want {want}): {out.strip()[-300:]}")
    fault_report.update({"inputs_tried": len(cases), "faults_injected": len(cases) - 1,
                         "cli_failures": bad})
    assert not bad, "\n".join(bad)
