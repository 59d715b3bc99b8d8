"""`main.py process` end to end on real files and the synthetic conveyor."""
from __future__ import annotations

import json
import subprocess
import sys

import av
import pytest

from tests.conftest import ROOT, data_file


def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "process", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_tree_avi_ends_cleanly_after_68_frames(tmp_path):
    src = data_file("video/opencv/tree.avi")
    out, tracks = tmp_path / "tree.mp4", tmp_path / "tracks.txt"
    r = run(str(src), "--detector", "motion", "--output", str(out), "--tracks", str(tracks), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["frames"] == 68  # the header claims 444: never trust it
    assert {"fps", "detections", "tracks", "stage_ms"} <= set(summary)
    with av.open(str(out)) as c:
        st = c.streams.video[0]
        assert st.codec_context.name == "h264"
        assert sum(1 for _ in c.decode(st)) == 68  # every frame written, no drops
    assert tracks.exists()


def test_truncated_file_ends_cleanly(tmp_path):
    src = data_file("video/opencv/vtest.avi")
    cut = tmp_path / "cut.avi"
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    r = run(str(cut), "--detector", "none", "--json")
    assert r.returncode == 0, r.stderr
    assert 100 < json.loads(r.stdout)["frames"] < 795
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("bad,needle,code", [
    ("{tmp}/not_a_video.mp4", "not a video", 1),
    ("{tmp}/missing.mp4", "INPUT: video file not found", 2),
    ("ftp://example.com/x", "INPUT", 2),
])
def test_bad_inputs_are_clear(tmp_path, bad, needle, code):
    (tmp_path / "not_a_video.mp4").write_text("hello, I am text\n" * 100)
    r = run(bad.format(tmp=tmp_path), "--json")
    assert r.returncode == code, (r.returncode, r.stderr)
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_unknown_detector_is_a_usage_error():
    r = run("synthetic:crossing", "--detector", "rcnn", "--max-frames", "5")
    assert r.returncode == 2 and "--detector" in r.stderr


def test_conveyor_defect_watch_figures():
    r = run("synthetic:conveyor", "--max-frames", "1000", "--seed", "1", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    for key in ("parts", "parts_true", "defect_precision", "defect_recall", "label_read_rate"):
        assert key in s, key
    assert s["parts"] == s["parts_true"] >= 10
    assert s["defect_precision"] >= 0.9 and s["defect_recall"] >= 0.9
    assert s["label_read_rate"] >= 0.8


def test_text_detector_outputs_what_it_read():
    """Offline text reads reach the JSON (they used to stay inside the analyzer)."""
    r = run(str(data_file("images/text/imageTextN.png")), "--detector", "text", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    texts = [t["text"] for t in s["texts"]]
    assert s["events"].get("text_read") == len(texts) > 5
    assert any("computer vision" in t for t in texts), texts
    assert all(t["frame"] == 1 and t["track_id"] is not None for t in s["texts"])


def test_detect_stage_is_timed_on_detector_frames_only():
    """--every-n 3: the detect median is over the frames the detector ran on (it was a median
    over every frame, mostly zeros, hiding the real cost)."""
    r = run("synthetic:crossing", "--detector", "motion", "--every-n", "3", "--max-frames", "30",
            "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["stage_runs"]["detect"] == 10 and s["stage_runs"]["track"] == 30
    assert s["stage_ms"]["detect"] > 0.2  # the motion detector's cost, not a near-zero median


def _without_timing(summary: dict) -> dict:
    return {k: v for k, v in summary.items()
            if k not in ("seconds", "fps", "stage_ms", "stage_ms_total", "output", "tracks_file",
                         "detector_pool")}


def test_pool_workers_give_the_sequential_output(tmp_path, models_dir):
    """The detector pool (issue 13) detects upcoming frames in parallel; the tracker still
    takes them in frame order: tracks file, annotated mp4, events and counters are identical
    with the detector inline (--workers 0), one pool worker and two."""
    src = data_file("video/opencv/vtest.avi")
    out: dict[int, tuple[dict, bytes, bytes]] = {}
    for workers in (0, 1, 2):
        mp4, tracks = tmp_path / f"w{workers}.mp4", tmp_path / f"w{workers}.txt"
        r = run(str(src), "--detector", "yolo", "--max-frames", "45", "--every-n", "2",
                "--workers", str(workers), "--output", str(mp4), "--tracks", str(tracks), "--json")
        assert r.returncode == 0, r.stderr
        s = json.loads(r.stdout)
        if workers == 0:
            assert s["detector_pool"] is None
        else:
            assert s["detector_pool"]["workers"] == workers and s["detector_pool"]["restarts"] == 0
        assert s["frames"] == 45 and s["stage_runs"]["detect"] == 23
        out[workers] = (_without_timing(s), tracks.read_bytes(), mp4.read_bytes())
    base = out[0]
    assert base[0]["detections"] > 100 and base[0]["tracks"] > 3 and base[1]  # a real comparison
    for workers in (1, 2):
        assert out[workers][0] == base[0], workers
        assert out[workers][1] == base[1], f"tracks differ with {workers} pool workers"
        assert out[workers][2] == base[2], f"annotated mp4 differs with {workers} pool workers"


def test_order_dependent_detectors_stay_inline():
    """The motion detector (and any motion gate) depends on the order of frames: never pooled."""
    r = run("synthetic:crossing", "--detector", "motion", "--max-frames", "20", "--workers", "2",
            "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["detector_pool"] is None


def test_offline_pool_only_for_order_free_detectors():
    """offline_pool builds nothing for a motion gate, the motion detector or pooling off."""
    from core.config import parse_config
    from stream.process import offline_pool

    def cfg(**cam):
        return parse_config({"pool": {"enabled": cam.pop("pool", True)},
                             "cameras": [{"name": "c", "source": "synthetic:crossing", **cam}]})
    for c in (cfg(detector="hog", gate="motion"), cfg(detector="motion"),
              cfg(detector="hog", pool=False), cfg(detector="none")):
        assert offline_pool(c.cameras[0], c) is None
