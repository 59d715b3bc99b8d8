"""Scorer oracle and tracker accuracy on real MOT15 data (../shared/data)."""
from __future__ import annotations

import os
import tempfile

import pytest

from tests.conftest import data_file
from trackers.mot import read_mot, run_on_mot, score_files, track_summary, write_mot
from trackers.tracker import Tracker

TUD = "mot/MOT15/TUD-Stadtmitte"


def _score(gt, rows):
    fd, tmp = tempfile.mkstemp(suffix=".txt")
    os.close(fd)
    try:
        write_mot(tmp, rows)
        return score_files(gt, tmp)
    finally:
        os.unlink(tmp)


def test_scorer_oracle():
    r = score_files(data_file(f"{TUD}/gt/gt.txt"),
                    data_file(f"{TUD}/reference_tracker_output/motmetrics_test.txt"))
    assert r["idf1"] == pytest.approx(0.644619, abs=1e-6)
    assert r["mota"] == pytest.approx(0.564014, abs=1e-6)


def test_tud_stadtmitte_boxes_only():
    run = run_on_mot(read_mot(data_file(f"{TUD}/det/det.txt")), 25.0, Tracker())
    r = _score(data_file(f"{TUD}/gt/gt.txt"), run.rows)
    assert r["mota"] >= 0.71, r
    assert r["idf1"] >= 0.78, r
    assert r["id_switches"] <= 10, r


def test_appearance_reduces_fragmentation_on_vtest():
    video = data_file("video/opencv/vtest.avi")
    det = read_mot(data_file("mot/MOT15/PETS09-S2L1/det/det.txt"))
    det = det[det[:, 0] <= 400]  # half the clip keeps the test short
    off = track_summary(run_on_mot(det, 10.0, Tracker(appearance=False)).rows)
    on_run = run_on_mot(det, 10.0, Tracker(appearance=True), video=video)
    on = track_summary(on_run.rows)
    assert on["ids"] < off["ids"], (on, off)
    assert on["boxes"] >= 0.99 * off["boxes"], (on, off)   # same coverage
    assert on["mean_track_length"] > off["mean_track_length"]


def test_hota_oracle_trackeval():
    """TrackEval 1.3.0 (run_mot_challenge's MOT15 path, via bench/peers/trackeval_score.py)
    scores py-motmetrics' reference output on TUD-Stadtmitte at HOTA 0.397849, DetA 0.392268,
    AssA 0.408841, LocA 0.737521 (and MOTA 0.564014 / IDF1 0.644619 as py-motmetrics does)."""
    from trackers.mot import hota

    g = read_mot(data_file(f"{TUD}/gt/gt.txt"))
    h = hota(g[g[:, 6] >= 1], read_mot(data_file(f"{TUD}/reference_tracker_output/motmetrics_test.txt")))
    assert h["hota"] == pytest.approx(0.3978490169927877, abs=1e-9)
    assert h["deta"] == pytest.approx(0.3922675723693166, abs=1e-9)
    assert h["assa"] == pytest.approx(0.4088407518112996, abs=1e-9)
    assert h["loca"] == pytest.approx(0.737521177178062, abs=1e-9)


def test_hota_matches_trackeval_live(tmp_path):
    """Vigil's HOTA of its own TUD-Stadtmitte output equals TrackEval's, run in the peers'
    venv (cached by `main.py bench tracker-peers`; built here under VIGIL_CI=1)."""
    from bench import tracker_peers as tp
    from tests.conftest import IN_CI, require

    root = tp.venv_root()
    if IN_CI and not tp.is_ready("trackers", root):
        tp.ensure_venv("trackers", root)
    require(tp.is_ready("trackers", root),
            f"peers venv {tp.venv_dir('trackers', root)} not built (run `python main.py bench tracker-peers`)")
    out = tmp_path / "vigil.txt"
    write_mot(out, run_on_mot(read_mot(data_file(f"{TUD}/det/det.txt")), 25.0, Tracker()).rows)
    gt = data_file(f"{TUD}/gt/gt.txt")
    te = tp.trackeval_scores(tp.venv_python("trackers", root), gt, "TUD-Stadtmitte", 179, {"vigil": out})
    mine = score_files(gt, out)
    for k in ("hota", "deta", "assa", "loca"):
        assert mine[k] == pytest.approx(te["vigil"][k], abs=1e-9), k
    assert mine["mota"] == pytest.approx(te["vigil"]["mota"], abs=1e-9)
    assert mine["idf1"] == pytest.approx(te["vigil"]["idf1"], abs=1e-9)
