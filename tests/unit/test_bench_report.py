"""bench/report.py renders a results file (one benchmark errored, one skipped, one absent)
and a soak file into Markdown tables and PNG plots; bench/soak.verdicts judges a series."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

import main as cli  # noqa: E402
from bench.all import parse_json_output  # noqa: E402
from bench.soak import verdicts  # noqa: E402

MACHINE = {"cores": 2, "cpu": "Test CPU", "platform": "Linux-test",
           "versions": {"python": "3.11.7", "numpy": "2.4.6"}}


def _results() -> dict:
    return {
        "machine": MACHINE, "started": "2026-01-01T00:00:00+00:00", "git": "abc123", "quick": True,
        "seconds": {"pipeline": 10.0, "latency": 9.0}, "total_seconds": 19.0,
        "load_avg_1m": {"pipeline": [1.5, 1.7]},
        "results": {
            "pipeline": {"benchmark": "pipeline", "input": "vtest.avi 768x576", "frames": 100, "rounds": 3,
                         "bare_ms": 3.0, "pipeline_ms": 3.6, "ratio": 1.2, "ratios": [1.1, 1.2, 1.25],
                         "bare_stage_ms": {"decode": 1.2, "draw": 0.4, "encode": 1.4},
                         "pipeline_stage_ms": {"decode": 1.3, "track": 0.2, "exposure": 0.5, "draw": 0.3,
                                               "encode": 1.3},
                         "source_fps": 200.0, "threaded_fps": 180.0, "dropped": 3,
                         "_command": "python main.py bench pipeline --json --frames 100"},
            "latency": {"benchmark": "latency", "source": "synthetic:crossing", "detector": "none",
                        "pipeline_ms": {"p50": 2.5, "p95": 8.0, "max": 14.0, "n": 178},
                        "http_ms": {"p50": 5.0, "p95": 15.5, "max": 28.0, "n": 125,
                                    "samples": [4.0, 5.0, 5.5, 6.0, 15.5, 28.0]},
                        "source_fps": 25.0, "published_fps": 25.0},
            "viewers": {"benchmark": "viewers", "source": "synthetic:crossing",
                        "levels": [{"viewers": 0, "published_fps": 25.0, "cpu_percent": 6.0, "encodes": 0},
                                   {"viewers": 1, "viewers_seen": 1, "published_fps": 25.0, "cpu_percent": 12.0,
                                    "encodes_per_frame": 1.0, "frames_sent_per_s": 25.0, "client_mbit_s": 8.0},
                                   {"viewers": 50, "viewers_seen": 50, "published_fps": 21.0,
                                    "cpu_percent": 50.0, "encodes_per_frame": 1.0,
                                    "frames_sent_per_s": 1050.0, "client_mbit_s": 400.0}],
                        "fps_ratio_max_vs_1": 0.84},
            "detectors": {"error": "exit code 1", "returncode": 1,
                          "stderr_tail": "Traceback ...\nRuntimeError: model exploded"},
            "tracker": {"skipped": "shared data /nowhere/mot/MOT15 not found"},
            "overlay": {"bench": "overlay", "width": 768, "height": 576, "tracks": 10, "frames_per_run": 100,
                        "repeats": 3, "median_ms": {"copy_ms": 0.04, "full_ms": 0.85},
                        "draw_only_ms": {"full_ms": 0.81}, "ratio_to_copy": {"full_ms": 21.0},
                        "sprite_cache_speedup": 1.5},
            "defects": {"bench": "defects", "seeds": [0, 1], "frames": 1300, "speed_px_s": 240.0,
                        "count_exact_all": True,
                        "defect_precision": {"median": 1.0, "min": 1.0},
                        "defect_recall": {"median": 0.95, "min": 0.9},
                        "label_read_rate": {"median": 0.7, "min": 0.6},
                        "baseline_dhash": {"defect_precision": {"median": 1.0, "min": 1.0},
                                           "defect_recall": {"median": 0.0, "min": 0.0}},
                        "recall_ratio_vs_baseline": None, "runs": []},
            # "ocr" absent on purpose
        },
    }


def _soak() -> dict:
    series = []
    for i in range(13):
        series.append({"t": 10.0 * i, "rss_mb": 400.0 + (30.0 if i else 0.0) + 0.1 * i, "threads": 66,
                       "fds": 26 + (i % 2), "cpu_percent": 90.0, "load_1m": 2.0,
                       "cameras": {"street": {"source_fps": None if i == 0 else 25.0,
                                              "published_fps": None if i == 0 else 24.0 + 0.1 * (i % 3),
                                              "latency_p50_ms": 20.0, "latency_p95_ms": 50.0,
                                              "dropped": 3}}})
    client = {"streams": [{"path": "/stream/street.mjpg", "status": 200, "bytes": 10, "parts": 300,
                           "closed_early": False, "max_gap_s": 0.3}],
              "api": {"ok": 240, "errors": 0, "last_error": None}}
    return {"benchmark": "soak", "minutes": 2, "warmup_s": 30.0, "sample_s": 10.0, "cameras": ["street"],
            "viewer_paths": ["/stream/street.mjpg"], "api_poll_s": 1.0, "series": series, "client": client,
            "verdicts": verdicts(series, 30.0, client=client)}


def _table_rows(md: str, heading: str) -> list[list[str]]:
    """Body rows of the first Markdown table after `heading`."""
    rows: list[list[str]] = []
    started = False
    for ln in md.split(heading, 1)[1].splitlines():
        if re.fullmatch(r"\|(---\|)+", ln):
            started = True
        elif started and ln.startswith("| "):
            rows.append([c.strip() for c in ln.strip("|").split(" | ")])
        elif started:
            break
    return rows


def test_report_tables_and_plots(tmp_path: Path) -> None:
    res = tmp_path / "run.json"
    res.write_text(json.dumps(_results()))
    soak = tmp_path / "soak.json"
    soak.write_text(json.dumps(_soak()))
    out = tmp_path / "docs" / "BENCHMARKS.md"
    assert cli.main(["bench", "report", str(res), "--out", str(out), "--soak", str(soak)]) == 0
    md = out.read_text()

    goals = {r[0]: r for r in _table_rows(md, "## Goals")}
    assert goals["Pipeline overhead vs bare decode+draw+encode"][2].startswith("1.2 ")
    assert goals["Pipeline overhead vs bare decode+draw+encode"][3] == "pass"
    assert goals["Published fps drop, 1 -> 50 viewers"][2].startswith("16.0 %")
    assert goals["Published fps drop, 1 -> 50 viewers"][3] == "**FAIL**"
    assert goals["JPEG encodes per published frame, any number of viewers"][3] == "pass"
    assert goals["Overlay draw, 768x576, 10 tracks, zones, lines, status"][3] == "pass"
    # label read rate 0.7 < 0.8
    assert goals["Defect watch: precision / recall / label read rate"][3] == "**FAIL**"
    yolo = goals["YOLOv3-tiny: ONNX Runtime vs cv2.dnn (whole detect)"]
    assert yolo[2] == "—" and "detectors not run: exit code 1" in yolo[3] and "model exploded" in yolo[3]
    assert "MOT15 not found" in goals["Tracker, boxes only, vs SORT baseline (MOT15)"][3]
    assert "not in the results file" in goals["Tesseract per line: tesserocr (reused API) vs pytesseract"][3]
    assert goals["Soak: RSS growth after warm-up"][3] == "pass"
    assert goals["Soak: open fds flat"][2] == "26..27, floor +0, median -1 (tol 4)"

    stages = {r[0]: r[1:] for r in _table_rows(md, "## Pipeline overhead")}
    assert stages["decode"] == ["1.2", "1.3"] and stages["track"] == ["—", "0.2"]
    viewers = _table_rows(md, "## Viewers")
    assert [r[0] for r in viewers] == ["0", "1", "50"] and viewers[2][2] == "21"
    assert "not run: exit code 1 (RuntimeError: model exploded)" in md.split("## Detectors", 1)[1]
    assert "not run: shared data /nowhere/mot/MOT15 not found" in md
    assert "python main.py bench pipeline --json --frames 100" in md  # the recorded command

    plots = tmp_path / "docs" / "plots"
    for name in ("latency.png", "viewers_fps.png", "soak_rss.png", "soak_fps.png"):
        p = plots / name
        assert p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"](plots/{name})" in md
    assert not (plots / "detectors.png").exists()  # errored: no plot


def test_report_without_soak_and_default_out(tmp_path: Path) -> None:
    res = tmp_path / "r.json"
    res.write_text(json.dumps({"machine": MACHINE, "results": {}}))
    assert cli.main(["bench", "report", str(res)]) == 0
    md = (tmp_path / "r.md").read_text()
    assert md.count("not run:") >= 9  # eight benchmarks and the soak
    assert "n/a" in md and "pass" not in _table_rows(md, "## Goals")[0][3]


def test_soak_verdicts() -> None:
    s = _soak()
    v = s["verdicts"]
    assert v["samples_after_warmup"] == 10
    assert v["rss"]["first_mb"] == pytest.approx(430.3) and 0 < v["rss"]["growth_pct"] < 1
    assert v["threads"]["pass"] and v["fds"]["pass"] and v["fps"]["pass"] and v["pass"]
    series = s["series"]
    spike = [dict(x) for x in series]
    spike[6]["threads"] = 73  # a transient clip writer: not a leak
    assert verdicts(spike, 30.0)["threads"]["pass"]
    for x in series[8:]:
        x["threads"] = 70  # a leaked thread pool
    series[5]["cameras"]["street"]["published_fps"] = 20.0  # a 20 % dip
    series[-1]["rss_mb"] = 460.0  # +7 %
    v = verdicts(series, 30.0)
    assert not v["threads"]["pass"] and not v["rss"]["pass"] and not v["pass"]
    assert not v["fps"]["cameras"]["street"]["published_fps"]["pass"]
    assert v["fps"]["cameras"]["street"]["source_fps"]["pass"]
    assert verdicts(series[:3], 30.0)["pass"] is False  # too few samples after warm-up


def test_parse_json_output() -> None:
    assert parse_json_output('log line\n{"a": 1}\n') == {"a": 1}
    assert parse_json_output('{\n "a": 2\n}\n') == {"a": 2}
    assert parse_json_output("Traceback\nboom\n") is None


def test_report_renders_benchmarks_through_their_own_markdown(tmp_path: Path) -> None:
    """A benchmark without a renderer in bench/report.py (store, multicam, tracker-peers,
    cluster) is rendered by its module's markdown(): a real `bench store` result here."""
    from bench.store import benchmark

    store = benchmark(n_events=1500, days=1.0, rounds=2, repeats=1, folder=str(tmp_path))
    res = tmp_path / "run.json"
    res.write_text(json.dumps({"machine": MACHINE, "results": {"store": store}}))
    out = tmp_path / "B.md"
    assert cli.main(["bench", "report", str(res), "--out", str(out)]) == 0
    section = out.read_text().split("## Event store (review queries)", 1)[1].split("\n## ", 1)[0]
    rows = {r[0]: r for r in _table_rows("## X\n" + section, "## X")}
    assert set(rows) == set(store["indexed"]) and "1,500 events" in section
    assert rows["page_zone"][1] == str(store["indexed"]["page_zone"]["p50_ms"])
    assert "python main.py bench store --json" in section  # how to reproduce it
