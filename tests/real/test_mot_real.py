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
