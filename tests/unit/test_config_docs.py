"""config.yaml and the schema (core/config.py) stay in step.

A parameter is declared once, as a field of its section model; config.yaml documents it with
one line, either set (`key: value  # what it does`) or commented out (`# key: value  # ...`,
the `#` at the key's indentation, for optional keys and example entries). So:
- every field of every section reachable from VigilConfig appears in config.yaml, set or
  commented out (a list or optional section counts when any of its entries shows the key);
- every key in config.yaml, set or commented out, is a field of the section it is under
  (and a camera's detector_params / synthetic keys are fields of its detector's section /
  its scene's parameters);
- with the commented-out lines switched on, the file is still a valid config: the
  documented example values have the right types and bounds.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel

from core.config import CameraConfig, DetectorsConfig, VigilConfig, parse_config
from core.scenes import SCENE_PARAMS

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config.yaml"

# "<indent># key: ..." or "<indent>#   - key: ..." (an identifier right before the colon, so
# prose comments such as "# Validate without starting anything: ..." are not keys)
_COMMENTED_KEY = re.compile(r"^(\s*)# (\s*(?:- )?[A-Za-z_][A-Za-z0-9_]*:(?:\s.*)?)$")


def uncomment(text: str) -> str:
    """config.yaml with every commented-out `# key: value` line switched on."""
    return "\n".join(_COMMENTED_KEY.sub(r"\1\2", line) for line in text.splitlines()) + "\n"


def _section(tp: Any) -> type[BaseModel] | None:
    """The section model inside a field annotation (X, Optional[X], list[X], Annotated...)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in get_args(tp):
        found = _section(arg)
        if found is not None:
            return found
    return None


def reachable(model: type[BaseModel], out: dict[type[BaseModel], str] | None = None,
              path: str = "") -> dict[type[BaseModel], str]:
    """Every section model under `model`, with the first key path it is found at."""
    out = {} if out is None else out
    out.setdefault(model, path or "(top level)")
    for name, f in model.model_fields.items():
        sub = _section(f.annotation)
        if sub is not None and sub not in out:
            reachable(sub, out, f"{path}.{name}" if path else name)
    return out


def walk(model: type[BaseModel], node: Any, path: str, seen: dict[type[BaseModel], set[str]],
         unknown: list[str]) -> None:
    if not isinstance(node, dict):  # null, [] or a scalar: nothing documented below it
        return
    fields = model.model_fields
    for key, value in node.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields:
            unknown.append(f"{where}: not a field of {model.__name__}")
            continue
        seen[model].add(key)
        sub = _section(fields[key].annotation)
        if sub is None:
            continue
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            walk(sub, item, f"{where}[{i}]" if isinstance(value, list) else where, seen, unknown)
    if model is CameraConfig:
        _free_form(node, path, unknown)


def _free_form(cam: dict[str, Any], path: str, unknown: list[str]) -> None:
    """detector_params are keys of the camera's detector section; synthetic ones of its scene."""
    det = cam.get("detector", CameraConfig.model_fields["detector"].default)
    params = cam.get("detector_params") or {}
    if params and det in DetectorsConfig.model_fields:
        model = _section(DetectorsConfig.model_fields[det].annotation)
        unknown += [f"{path}.detector_params.{k}: not a field of {model.__name__}"
                    for k in params if k not in model.model_fields]
    scene = str(cam.get("source", "")).partition(":")[2].partition("?")[0]
    if cam.get("synthetic") and scene in SCENE_PARAMS:
        fields = SCENE_PARAMS[scene].model_fields
        unknown += [f"{path}.synthetic.{k}: not a parameter of synthetic:{scene}"
                    for k in cam["synthetic"] if k not in fields]


@pytest.fixture(scope="module")
def text() -> str:
    return CONFIG.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def trees(text: str) -> list[Any]:
    return [yaml.safe_load(text), yaml.safe_load(uncomment(text))]


def test_every_key_in_config_yaml_is_a_schema_field(trees: list[Any]) -> None:
    unknown: list[str] = []
    for tree in trees:
        walk(VigilConfig, tree, "", defaultdict(set), unknown)
    assert not unknown, "config.yaml documents keys the schema does not have:\n" + \
        "\n".join(sorted(set(unknown)))


def test_every_schema_field_is_documented_in_config_yaml(trees: list[Any]) -> None:
    seen: dict[type[BaseModel], set[str]] = defaultdict(set)
    for tree in trees:
        walk(VigilConfig, tree, "", seen, [])
    missing = [f"{path} ({model.__name__}): {', '.join(sorted(set(model.model_fields) - seen[model]))}"
               for model, path in reachable(VigilConfig).items()
               if set(model.model_fields) - seen[model]]
    assert not missing, ("schema fields missing from config.yaml (add `key: value  # ...` or a "
                         "commented `# key: value  # ...` line):\n" + "\n".join(missing))


def test_commented_out_examples_are_valid(text: str) -> None:
    parse_config(yaml.safe_load(uncomment(text)), "config.yaml with its commented keys switched on")


def test_uncomment_only_touches_commented_keys() -> None:
    src = ("# Validate without starting anything:  python main.py check-config\n"
           "a:\n  b: 1   # inline: comment\n  # c: 2  # doc\n  # prose, not a key: x\n"
           "  # d:\n  #   - e: 3\n")
    assert uncomment(src) == ("# Validate without starting anything:  python main.py check-config\n"
                              "a:\n  b: 1   # inline: comment\n  c: 2  # doc\n"
                              "  # prose, not a key: x\n  d:\n    - e: 3\n")
    assert yaml.safe_load(uncomment(src)) == {"a": {"b": 1, "c": 2, "d": [{"e": 3}]}}


def test_the_checks_catch_drift() -> None:
    """A key added to a section but not to the file, and a key in the file that the schema
    lacks, are both reported (the walk itself is what the two tests above rely on)."""
    seen: dict[type[BaseModel], set[str]] = defaultdict(set)
    unknown: list[str] = []
    walk(VigilConfig, {"tracker": {"max_age_s": 1, "max_agee_s": 2},
                       "cameras": [{"name": "a", "detector": "motion",
                                    "detector_params": {"downscal": 2}}]}, "", seen, unknown)
    assert unknown == ["tracker.max_agee_s: not a field of TrackerConfig",
                       "cameras[0].detector_params.downscal: not a field of MotionConfig"]
    tracker_model = _section(VigilConfig.model_fields["tracker"].annotation)
    assert seen[tracker_model] == {"max_age_s"}
