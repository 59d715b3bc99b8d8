"""Strict config: every malformed file is rejected with the key named, exit 2, no traceback."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
BASE = {"cameras": [{"name": "cam", "source": "synthetic:conveyor"}]}


def with_(path: str, value, base=None):
    """Copy BASE and set a dotted path (list indices as ints)."""
    data = copy.deepcopy(base or BASE)
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    cur = data
    for k in keys[:-1]:
        if isinstance(k, str) and k not in cur:
            cur[k] = {}
        cur = cur[k]
    cur[keys[-1]] = value
    return data


# (data, text that must appear in the message: the key path)
MALFORMED = [
    (with_("bogus", 1), "bogus: unknown key"),
    (with_("server.bogus", 1), "server.bogus: unknown key"),
    (with_("cameras.0.detectr", "yolo"), "cameras[0].detectr: unknown key"),
    (with_("detectors.yolo.conf", 0.3), "detectors.yolo.conf: unknown key"),
    (with_("server.port", "eighty"), "server.port"),
    (with_("server.port", 70000), "server.port"),
    (with_("server.port", -1), "server.port"),
    (with_("server.threads", 1), "server.threads"),
    (with_("server.token", "short"), "server.token"),
    (with_("server.host", "not a host"), "server.host"),
    (with_("cameras.0.detect_every", 0), "cameras[0].detect_every"),
    (with_("cameras.0.detect_every", 2.5), "cameras[0].detect_every"),
    (with_("cameras.0.detector", "rcnn"), "cameras[0].detector"),
    (with_("cameras.0.backend", "gstreamer"), "cameras[0].backend"),
    (with_("cameras.0.name", "has space"), "cameras[0].name"),
    (with_("cameras.0.source", "ftp://example.com/x"), "cameras[0].source"),
    (with_("cameras.0.source", "rtsp://"), "cameras[0].source"),
    (with_("cameras.0.source", "synthetic:volcano"), "cameras[0].source"),
    (with_("cameras.0.source", "sample:"), "cameras[0].source"),
    (with_("cameras.0.source", "/no/such/file.mp4"), "cameras[0].source"),
    (with_("cameras.0.source", ""), "cameras[0].source"),
    (with_("cameras.0.reconnect.initial_backoff_s", 0), "cameras[0].reconnect.initial_backoff_s"),
    (with_("cameras.0.reconnect.max_backoff_s", 0.1), "cameras[0].reconnect"),
    (with_("cameras.0.zones", [{"name": "z", "points": [[0, 0], [1, 1]]}]), "cameras[0].zones[0].points"),
    (with_("cameras.0.lines", [{"name": "l", "points": [[0.2, 0.5], [1.5, 0.5]], "normalized": True}]),
     "cameras[0].lines[0]"),
    (with_("detectors.yolo.input_size", 417), "detectors.yolo.input_size"),
    (with_("detectors.hog.upscale", 10), "detectors.hog.upscale"),
    (with_("detectors.yolo.conf_threshold", 1.5), "detectors.yolo.conf_threshold"),
    (with_("detectors.motion.method", "vibe"), "detectors.motion.method"),
    (with_("tracker.min_hits", 0), "tracker.min_hits"),
    (with_("tracker.dhash_threshold", 65), "tracker.dhash_threshold"),
    (with_("exposure.mode", "max"), "exposure.mode"),
    (with_("exposure.alpha", 0), "exposure.alpha"),
    (with_("events.retention_days", -1), "events.retention_days"),
    (with_("events.webhooks", [{"url": "ftp://x.example"}]), "events.webhooks[0].url"),
    ({"cameras": []}, "cameras"),
    ({"server": {}}, "cameras: required key is missing"),
    ({"cameras": [{"name": "a", "source": "0"}, {"name": "a", "source": "1"}]}, "cameras[1].name"),
    ({"cameras": [{"name": "a"}]}, "cameras[0].source: required key is missing"),
    ({"cameras": "cam"}, "cameras"),
    (["not", "a", "mapping"], "top level"),
    (None, "empty"),
]


@pytest.mark.parametrize("data,needle", MALFORMED, ids=[m[1] for m in MALFORMED])
def test_malformed_config_names_the_key(data, needle, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert needle in msg, msg
    assert str(path) in msg
    assert "Traceback" not in msg


def test_at_least_twenty_malformed_cases():
    assert len(MALFORMED) >= 20


def test_yaml_syntax_error_names_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("cameras:\n  - name: a\n    source: [unclosed\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert "YAML syntax error at line" in str(exc.value)
    assert str(p) in str(exc.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_non_utf8_file(tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes("cameras:\n  - name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_config(p)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="directory"):
        load_config(tmp_path)


def test_shipped_config_is_valid():
    cfg = load_config(ROOT / "config.yaml")
    assert len(cfg.cameras) >= 2
    assert {c.source.split(":")[0] for c in cfg.cameras} >= {"sample", "synthetic"}


def test_token_from_env(monkeypatch):
    monkeypatch.setenv("VIGIL_TEST_TOKEN", "s3cret-token")
    cfg = parse_config(with_("server.token", "env:VIGIL_TEST_TOKEN"))
    assert cfg.server.token == "s3cret-token"
    monkeypatch.delenv("VIGIL_TEST_TOKEN")
    with pytest.raises(ConfigError, match="server.token"):
        parse_config(with_("server.token", "env:VIGIL_TEST_TOKEN"))


def test_defaults_are_sane():
    cfg = parse_config(BASE)
    assert cfg.server.host == "127.0.0.1"
    assert cfg.cameras[0].reconnect.initial_backoff_s == 0.25
    assert cfg.cameras[0].reconnect.max_backoff_s == 2.0
    assert cfg.cameras[0].reconnect.max_attempts == 0


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def test_cli_check_config_ok_and_bad(tmp_path):
    ok = _cli("check-config", str(ROOT / "config.yaml"))
    assert ok.returncode == 0 and ok.stdout.strip() == "ok", ok.stderr
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(with_("cameras.0.detect_every", 0)))
    bad = _cli("check-config", str(p))
    assert bad.returncode == 2
    assert "cameras[0].detect_every" in bad.stderr
    assert "Traceback" not in bad.stderr + bad.stdout


def test_cli_schema_is_json():
    import json
    out = _cli("schema")
    assert out.returncode == 0
    schema = json.loads(out.stdout)
    assert schema["additionalProperties"] is False
    assert "cameras" in schema["required"]


def test_per_camera_detector_params():
    data = with_("cameras.0.detector_params", {"downscale": 2, "merge_distance": 16})
    data["cameras"][0]["detector"] = "motion"
    cfg = parse_config(data)
    sec = cfg.detector_section(cfg.cameras[0])
    assert sec.downscale == 2 and sec.merge_distance == 16 and sec.method == "mog2"
    data["cameras"][0]["detector_params"] = {"downscal": 2}
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.detector_params\.downscal: unknown key"):
        parse_config(data)
    data["cameras"][0]["detector_params"] = {"downscale": 99}
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.detector_params\.downscale"):
        parse_config(data)


def test_tracker_section_mirrors_tracker_params():
    import dataclasses

    from core.config import TrackerConfig
    from trackers.tracker import PARAM_BOUNDS, TrackerParams
    cfg, params = TrackerConfig(), TrackerParams()
    names = {f.name for f in dataclasses.fields(params)}
    assert names == set(TrackerConfig.model_fields)
    for n in names:
        assert getattr(cfg, n) == getattr(params, n), n
        lo, hi = PARAM_BOUNDS[n]
        if lo is not None:
            TrackerConfig(**{n: hi})
            with pytest.raises(Exception):
                TrackerConfig(**{n: hi * 2 + 1})


@pytest.mark.parametrize("source,synthetic,needle", [
    ("synthetic:conveyor?speed=abc", {}, "cameras[0].source"),
    ("synthetic:conveyor", {"sped": 3}, "cameras[0]: Value error, synthetic:"),
    ("synthetic:conveyor", {"defect_rate": 7}, "defect_rate"),
    ("sample:bikes", {"speed": 3}, "only for synthetic"),
])
def test_synthetic_parameters_validated(source, synthetic, needle):
    data = with_("cameras.0.source", source)
    data["cameras"][0]["synthetic"] = synthetic
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert needle.replace("Value error, ", "") in str(exc.value), str(exc.value)
