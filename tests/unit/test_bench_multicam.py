"""bench multicam's parsing and arithmetic on hand-made status dicts (no cameras started)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from bench import multicam as mc
from tests.conftest import ROOT


def test_parse_cameras_sorts_dedups_and_names_bad_items() -> None:
    assert mc.parse_cameras("16, 1,4,4 ,2") == [1, 2, 4, 16]
    for bad, needle in (("1,x", "'x'"), ("0", "outside 1..64"), ("65", "outside"), (" , ", "at least one")):
        with pytest.raises(ValueError, match=needle):
            mc.parse_cameras(bad)


def test_bad_cameras_option_is_a_readable_usage_error() -> None:
    r = subprocess.run([sys.executable, "main.py", "bench", "multicam", "--cameras", "1,zero"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--cameras" in r.stderr and "'zero'" in r.stderr
    assert "Traceback" not in r.stderr


def _status(frames_in: int, detected: int, published: int, dropped: int = 0, ms: float = 30.0,
            native: float | None = 10.0) -> dict:
    return {"state": "LIVE",
            "capture": {"frames_in": frames_in, "dropped": 0, "native_fps": native},
            "stages": {"detect": {"processed": detected, "dropped": dropped, "ms_p50": ms},
                       "publish": {"processed": published}},
            "latency_ms": {"p95": 40.0}}


def test_camera_rates_are_counter_deltas_over_the_window() -> None:
    r = mc.camera_rates(_status(100, 50, 98, 3), _status(160, 80, 157, 9, ms=42.0), 6.0)
    assert r["source_fps"] == 10.0 and r["detect_fps"] == 5.0
    assert r["published_fps"] == pytest.approx(59 / 6, abs=1e-3)
    assert r["published_over_source"] == pytest.approx(59 / 60, abs=1e-4)
    assert r["detect_dropped"] == 6 and r["detector_ms_p50"] == 42.0 and r["state"] == "LIVE"
    assert mc.camera_rates(_status(0, 0, 0, native=None), _status(10, 5, 10, native=None), 1.0)[
        "published_over_source"] is None


def test_step_summary_totals_fairness_and_worst_cases() -> None:
    cams = {"a": {"detect_fps": 4.0, "published_fps": 10.0, "source_fps": 10.0,
                  "published_over_source": 1.0, "latency_p95_ms": 50.0, "detector_ms_p50": 100.0},
            "b": {"detect_fps": 5.0, "published_fps": 9.5, "source_fps": 10.0,
                  "published_over_source": 0.95, "latency_p95_ms": 80.0, "detector_ms_p50": 120.0},
            "c": {"detect_fps": 6.0, "published_fps": 10.0, "source_fps": 10.0,
                  "published_over_source": 1.0, "latency_p95_ms": None, "detector_ms_p50": None}}
    s = mc.step_summary(cams)
    assert s["cameras"] == 3 and s["detect_fps_total"] == 15.0
    assert s["detect_fps_per_camera"] == {"min": 4.0, "median": 5.0, "max": 6.0}
    assert s["detect_fairness_min_over_max"] == pytest.approx(0.667, abs=1e-3)
    assert s["published_over_source_min"] == 0.95 and s["published_fps_median"] == 10.0
    assert s["latency_p95_ms"] == {"median": 65.0, "max": 80.0}
    assert s["detector_ms_p50_median"] == 110.0


def test_rss_per_extra_camera_slope_and_span() -> None:
    r = mc.rss_per_extra_camera([(1, 300.0), (2, 330.0), (4, 390.0), (8, 510.0)])
    assert r == {"slope_mb": 30.0, "span_mb": 30.0}
    assert mc.rss_per_extra_camera([(1, 300.0)]) == {"slope_mb": None, "span_mb": None}


def test_combine_rounds_medians_and_limit_ratio() -> None:
    def step(total: float, rss: float, p95: float | None) -> dict:
        return {"detect_fps_total": total, "rss_mb": rss, "published_over_source_min": 0.99,
                "latency_p95_ms": {"median": p95, "max": p95}, "cpu_cores": 1.9,
                "detect_fps_per_camera": {"median": total / 4}}
    out = mc.combine_rounds([step(30.0, 500.0, 100.0), step(28.0, 520.0, None), step(32.0, 510.0, 140.0)],
                            limit_fps=40.0)
    assert out["rounds"] == 3 and out["detect_fps_total"] == 30.0 and out["rss_mb"] == 510.0
    assert out["limit_ratio"] == 0.75 and out["detect_fps_per_camera"] == 7.5
    assert out["latency_p95_ms_median"] == 120.0  # None rounds left out
    assert out["others_cores"] is None  # absent in every round
    assert mc.combine_rounds([step(30.0, 500.0, 1.0)], None)["limit_ratio"] is None


def test_percentile_interpolates() -> None:
    assert mc._pct([], 95) is None
    assert mc._pct([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert mc._pct([0.0, 10.0], 95) == pytest.approx(9.5)


def test_step_config_is_a_valid_config_for_every_mode(tmp_path) -> None:
    from core.config import parse_config
    clip = tmp_path / "x.avi"
    clip.write_bytes(b"\0" * 64)  # the config checks the file exists, not what is in it
    cfg = parse_config(mc.step_config(3, "per_camera", str(clip)))
    assert [c.name for c in cfg.cameras] == ["cam00", "cam01", "cam02"]
    assert {c.detector for c in cfg.cameras} == {"yolo"} and all(c.loop for c in cfg.cameras)
    assert cfg.server.port == 0 and cfg.server.host == "127.0.0.1"
    if mc.pool_available():
        assert parse_config(mc.step_config(2, "pool", str(clip))).pool.enabled
    else:
        with pytest.raises(ValueError, match="no `pool` section"):
            mc.mode_overrides("pool")
    with pytest.raises(ValueError, match="unknown mode"):
        mc.mode_overrides("gpu")
