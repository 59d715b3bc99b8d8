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


def test_resolve_section_overrides_are_validated_by_the_model():
    """Components take their section; keyword overrides go through the same model (one
    declaration of every bound), and the section given is not changed."""
    from core.config import MotionConfig, TrackerConfig, resolve_section
    base = TrackerConfig(max_age_s=2)
    assert resolve_section(TrackerConfig, base) is base
    got = resolve_section(TrackerConfig, base, {"min_hits": 5})
    assert (got.max_age_s, got.min_hits, base.min_hits) == (2, 5, 3)
    assert resolve_section(TrackerConfig, {"appearance": False}).appearance is False
    assert resolve_section(MotionConfig, None, {"downscale": "2"}).downscale == 2.0
    with pytest.raises(ValueError, match=r"^tracker\.iou_gate: .*0\.99 \(got 1\.5\); tracker\.nope: unknown key$"):
        resolve_section(TrackerConfig, None, {"iou_gate": 1.5, "nope": 1}, where="tracker")
    with pytest.raises(KeyError, match=r"motion: max_area \(50\) must exceed min_area \(100\)"):
        resolve_section(MotionConfig, None, {"min_area": 100, "max_area": 50}, where="motion",
                        error=KeyError)
    with pytest.raises(TypeError, match="MotionConfig"):
        resolve_section(MotionConfig, TrackerConfig())


# Rules that only a component used to check (at build time, on the first camera using it) and
# that the schema now owns: check-config reports them, naming the key.
CROSS_FIELD = [
    ("detectors.haar", {"min_size": [40, 40], "max_size": [30, 30]}, "detectors.haar: max_size"),
    ("detectors.haar", {"nested_required": True}, "detectors.haar: nested_required needs"),
    ("detectors.hog", {"win_stride": [4, 8]}, "detectors.hog.win_stride[0]"),
    ("detectors.hog", {"padding": [65, 8]}, "detectors.hog.padding[0]"),
    ("detectors.text", {"box_detector": "east"}, "detectors.text.model: box_detector 'east' needs"),
    ("detectors.text", {"east_input": [320, 100]}, "detectors.text.east_input[1]"),
    ("detectors.text", {"psm": 2}, "detectors.text.psm: must be a Tesseract page segmentation mode"),
    ("detectors.motion", {"blur": 4}, "detectors.motion.blur: must be 0 (off) or an odd size"),
    ("detectors.motion", {"learning_rate": -0.5}, "detectors.motion.learning_rate"),
    ("detectors.motion", {"close_kernel": 40}, "detectors.motion.close_kernel"),
    ("detectors.motion", {"min_area": 100, "max_area": 50}, "detectors.motion: max_area (50) must exceed"),
    ("cameras.0.defect_watch", {"line_x": 1.5}, "cameras[0].defect_watch: line_x=1.5 must be in [0, 1]"),
    ("cameras.0.defect_watch", {"line_x": 0.4, "line": [[0.5, 0], [0.5, 1]]},
     "cameras[0].defect_watch: give line_x or line, not both"),
    ("cameras.0.defect_watch", {"line": [[0.5, 0], [1.5, 1]]}, "outside 0..1"),
]


@pytest.mark.parametrize("path,value,needle", CROSS_FIELD, ids=[c[2] for c in CROSS_FIELD])
def test_component_rules_are_schema_rules(path, value, needle):
    with pytest.raises(ConfigError) as exc:
        parse_config(with_(path, value))
    assert needle in str(exc.value), str(exc.value)


def test_defect_watch_directed_line_and_paths():
    from pathlib import PurePath

    from core.config import DefectWatchConfig, YoloConfig
    cfg = parse_config(with_("cameras.0.defect_watch", {"line": [[0.2, 0.1], [0.8, 0.9]]}))
    assert cfg.cameras[0].defect_watch.line == [[0.2, 0.1], [0.8, 0.9]]
    assert DefectWatchConfig(line_x=300, normalized=False).line_x == 300
    assert YoloConfig(model=PurePath("m/x.onnx")).model == "m/x.onnx"


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


def test_env_token_is_checked_like_a_literal(monkeypatch):
    """VIGIL_TOK=abc used to run a server guarded by a 3-character token."""
    monkeypatch.setenv("VIGIL_TOK", "abc")
    with pytest.raises(ConfigError) as e:
        parse_config(with_("server.token", "env:VIGIL_TOK"))
    assert "server.token: environment variable 'VIGIL_TOK' (the token) has 3 characters" in str(e.value)
    with pytest.raises(ConfigError, match="server.token: the token has 5 characters"):
        parse_config(with_("server.token", "short"))
    with pytest.raises(ConfigError, match="needs a variable name"):
        parse_config(with_("server.token", "env:"))
    monkeypatch.setenv("VIGIL_TOK", "x" * 257)
    with pytest.raises(ConfigError, match="257 characters"):
        parse_config(with_("server.token", "env:VIGIL_TOK"))


def test_secrets_stay_unread_for_commands_without_a_server(monkeypatch):
    monkeypatch.delenv("VIGIL_TOK", raising=False)
    cfg = parse_config(with_("server.token", "env:VIGIL_TOK"), resolve_secrets=False)
    assert cfg.server.token == "env:VIGIL_TOK"
    with pytest.raises(ConfigError, match="'VIGIL_TOK' named by the token is not set"):
        parse_config(with_("server.token", "env:VIGIL_TOK"))


def test_every_problem_is_reported_on_its_own_line():
    """A duplicate camera name was reported only when it was the only problem; detector_params
    errors came out joined on one '(top level)' line."""
    data = {"cameras": [
        {"name": "a", "source": "synthetic:crossing", "detect_every": 0},
        {"name": "a", "source": "synthetic:crossing"}]}
    with pytest.raises(ConfigError) as e:
        parse_config(data, "c.yaml")
    lines = str(e.value).splitlines()
    assert lines[0] == "c.yaml: invalid configuration (2 problems)"
    assert "  cameras[1].name: duplicate camera name 'a' (also cameras[0])" in lines
    assert any(ln.startswith("  cameras[0].detect_every:") for ln in lines)
    data = {"cameras": [
        {"name": "a", "source": "synthetic:crossing", "detector": "motion",
         "detector_params": {"history": 1, "bogus": 2}},
        {"name": "a", "source": "synthetic:crossing"}]}
    with pytest.raises(ConfigError) as e:
        parse_config(data, "c.yaml")
    lines = str(e.value).splitlines()
    assert lines[0] == "c.yaml: invalid configuration (3 problems)"
    assert "  cameras[0].detector_params.bogus: unknown key" in lines
    assert any(ln.startswith("  cameras[0].detector_params.history: ") for ln in lines)
    assert not any("(top level)" in ln for ln in lines)


def test_gate_modes():
    for gate in ("none", "motion", "motion-region"):
        assert parse_config(with_("cameras.0.gate", gate)).cameras[0].gate == gate
    with pytest.raises(ConfigError, match="cameras\\[0\\].gate"):
        parse_config(with_("cameras.0.gate", "region"))


def test_gate_mode_reaches_the_detector():
    from stream.analyzer import build_camera_detector
    for gate, mode in (("motion", "frame"), ("motion-region", "region")):
        cfg = parse_config({"cameras": [{"name": "c", "source": "synthetic:crossing",
                                         "detector": "hog", "gate": gate}]})
        det = build_camera_detector(cfg.cameras[0], cfg)
        assert det.mode == mode and det.name == "hog+motion"


@pytest.mark.parametrize("address,want", [("local:2", ("local", 2)), ("auto", ("auto", None)),
                                          ("head.lan:6379", ("address", "head.lan:6379")),
                                          ("[::1]:6379", ("address", "[::1]:6379"))])
def test_the_cluster_reads_the_address_the_config_validated(address, want):
    """cluster.address is checked in core/config.py only; runtime/cluster.py classifies it."""
    from core.config import ClusterConfig
    from runtime.cluster import parse_address
    assert parse_address(ClusterConfig(address=address).address) == want


@pytest.mark.parametrize("address", ["local:0", "local:17", "head.lan:0", "head.lan:70000", "head.lan", "tcp://x:1"])
def test_a_bad_cluster_address_is_a_config_error_naming_the_key(address):
    data = {"cameras": [{"name": "a", "source": "synthetic:crossing"}], "cluster": {"address": address}}
    with pytest.raises(ConfigError, match="cluster.address"):
        parse_config(data)


@pytest.mark.parametrize("section", ["webhooks", "mqtt"])
def test_an_unknown_event_kind_of_a_sink_is_a_config_error_naming_the_key(section):
    data = {"cameras": [{"name": "a", "source": "synthetic:crossing"}]}
    if section == "webhooks":
        data["events"] = {"webhooks": [{"url": "http://hooks.example/x", "kinds": ["zone_enter", "nonsense"]}]}
    else:
        data["mqtt"] = {"enabled": True, "kinds": ["nonsense"]}
    with pytest.raises(ConfigError, match=r"kinds.*unknown event kind\(s\) 'nonsense'") as exc:
        parse_config(data)
    assert section in str(exc.value)
