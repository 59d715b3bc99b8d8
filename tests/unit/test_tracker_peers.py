"""The tracker-peers protocol (bench/peers/runner.py -> MOT file -> Vigil's scorer) on a tiny
generated sequence, run with Vigil's own tracker and interpreter; the peers' venvs are built
and used by `main.py bench tracker-peers` (tests/real/test_mot_real.py uses them when cached)."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from bench import tracker_peers as tp
from trackers.mot import read_mot, write_mot


def _sequence(tmp_path, frames=30, gap=(12, 14)):
    """Three people walking in straight lines, far apart; no detections in frames of `gap`
    for person 2 and one empty frame at the end (frame frames + 1 has nothing)."""
    gt, det = [], []
    for f in range(1, frames + 1):
        for i, (x0, vx) in enumerate(((10, 3), (200, -2), (400, 1)), 1):
            box = [x0 + vx * f, 50 + 40 * i, 30, 80]
            gt.append([f, i, *box, 1, -1, -1, -1])
            if not (i == 2 and gap[0] <= f <= gap[1]):
                det.append([f, -1, *box, 0.9, -1, -1, -1])
    g, d = tmp_path / "gt.txt", tmp_path / "det.txt"
    write_mot(g, np.asarray(gt))
    np.savetxt(d, np.asarray(det), delimiter=",", fmt="%.2f")
    return g, d


def test_runner_protocol_with_vigil(tmp_path):
    g, d = _sequence(tmp_path)
    out = tmp_path / "tracks.txt"
    r = tp.run_tracker(sys.executable, "vigil", d, out, 25.0, last_frame=31,
                       params={"appearance": False})
    assert r["tracker"] == "vigil" and r["updates"] == 31      # every frame, the empty one too
    assert r["seconds"] > 0 and r["hz"] == pytest.approx(31 / r["seconds"])
    assert r["cpu_seconds"] > 0 and r["hz_cpu"] == pytest.approx(31 / r["cpu_seconds"])
    rows = read_mot(out)
    assert r["boxes"] == len(rows) > 0
    assert set(np.unique(rows[:, 0])) <= set(range(1, 32))
    s = tp.score_output(out, g)
    # the coasting track bridges the 3-frame gap with its own id
    assert s["id_switches"] == 0 and s["ids"] == 3, s
    assert s["mota"] >= 0.95 and s["idf1"] >= 0.95 and s["hota"] >= 0.85, s


def test_runner_matches_in_process_tracking(tmp_path):
    """The subprocess protocol gives exactly what trackers.mot.run_on_mot gives in-process."""
    from trackers.mot import run_on_mot
    from trackers.tracker import Tracker

    _, d = _sequence(tmp_path)
    out = tmp_path / "tracks.txt"
    tp.run_tracker(sys.executable, "vigil", d, out, 25.0, params={"appearance": False})
    mine = read_mot(out)[:, :6]
    ref = run_on_mot(read_mot(d), 25.0, Tracker(appearance=False)).rows[:, :6]
    np.testing.assert_allclose(mine, ref, atol=0.006)


def test_runner_errors_name_the_problem(tmp_path):
    _, d = _sequence(tmp_path)
    with pytest.raises(RuntimeError, match="max_age_s"):
        tp.run_tracker(sys.executable, "vigil", d, tmp_path / "o.txt", 25.0, params={"max_age_s": -1})
    with pytest.raises(RuntimeError, match="not found"):
        tp.run_tracker(sys.executable, "vigil", tmp_path / "missing.txt", tmp_path / "o.txt", 25.0)
    with pytest.raises(RuntimeError, match="invalid choice"):
        tp.run_tracker(sys.executable, "deepsort", d, tmp_path / "o.txt", 25.0)


def test_score_without_ground_truth_counts_ids(tmp_path):
    _, d = _sequence(tmp_path)
    out = tmp_path / "tracks.txt"
    tp.run_tracker(sys.executable, "vigil", d, out, 25.0)
    s = tp.score_output(out, None)
    assert set(s) == {"ids", "boxes", "mean_track_length"} and s["ids"] == 3


def test_venvs_are_named_by_their_pinned_requirements(tmp_path):
    for env in tp.ENVS:
        req = tp.requirements(env).read_text().splitlines()
        pins = [ln for ln in req if ln and not ln.startswith("#")]
        assert pins and all("==" in ln for ln in pins), env   # every package pinned
        d = tp.venv_dir(env, tmp_path)
        assert d.parent == tmp_path and d.name.startswith(f"{env}-") and len(d.name) == len(env) + 13
        assert not tp.is_ready(env, tmp_path)
    assert "trackers==" in tp.requirements("trackers").read_text()
    assert "trackeval==" in tp.requirements("trackers").read_text()
    assert "norfair==" in tp.requirements("norfair").read_text()


def test_markdown_has_one_row_per_tracker():
    res = {"results": {
        "vigil": {"hz": 4000.0, "hz_cpu": 4200.0, "TUD-Stadtmitte": {"mota": 0.73, "idf1": 0.8, "id_switches": 9,
                                                   "fragmentations": 12, "hota": 0.558,
                                                   "trackeval": {"hota": 0.558}},
                  "PETS09-S2L1": {"ids": 64, "boxes": 4235, "hz": 4100.0, "hz_cpu": 4300.0,
                                  "video": False}},
        "norfair": {"error": "creating the norfair environment failed"}}}
    md = tp.markdown(res).splitlines()
    assert len(md) == 4 and md[2] == ("| vigil | 0.730 | 0.800 | 9 | 12 | 0.5580 / 0.5580 | 64 | 4235 "
                                      "| 4300 | 4200 |")
    assert "error: creating the norfair" in md[3]
    json.dumps(res)  # plain data
