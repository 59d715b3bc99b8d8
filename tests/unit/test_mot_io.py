"""MOTChallenge reading/writing, frame iteration and the eval-mot CLI's errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trackers.mot import evaluate, iter_frames, read_mot, run_on_mot, write_mot

ROOT = Path(__file__).resolve().parents[2]


def test_write_read_roundtrip(tmp_path):
    rows = np.array([[2, 5, 10.5, 20.25, 30, 40, 1], [1, 3, 0, 0, 5, 6, 1]], float)
    p = tmp_path / "t.txt"
    write_mot(p, rows)
    back = read_mot(p)
    assert back.shape == (2, 10)
    assert back[:, 0].tolist() == [1, 2]  # sorted by frame
    assert np.allclose(back[1, :6], [2, 5, 10.5, 20.25, 30, 40])


def test_read_errors(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("1,2,3\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        read_mot(p)
    (tmp_path / "empty.txt").write_text("")
    assert read_mot(tmp_path / "empty.txt").shape == (0, 10)


def test_iter_frames_includes_empty_frames():
    rows = np.array([[1, -1, 0, 0, 10, 20, 0.9, -1, -1, -1],
                     [3, -1, 5, 5, 10, 20, 0.8, -1, -1, -1],
                     [3, -1, 50, 5, 10, 20, 0.7, -1, -1, -1]], float)
    frames = list(iter_frames(rows, last_frame=4))
    assert [f for f, _ in frames] == [1, 2, 3, 4]
    assert [len(d) for _, d in frames] == [1, 0, 2, 0]
    assert np.allclose(frames[2][1].xyxy[1], [50, 5, 60, 25])


def test_run_on_mot_outputs_rows():
    rows = np.array([[f, -1, 10 + 2 * f, 10, 20, 40, 0.9, -1, -1, -1] for f in range(1, 11)], float)
    run = run_on_mot(rows, 25.0)
    assert run.updates == 10 and len(run.rows) == 10
    assert set(run.rows[:, 1].tolist()) == {1.0}


def eval_mot(*args: str) -> subprocess.CompletedProcess:
    """`python main.py eval-mot ARGS` as a user types it."""
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "eval-mot", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_cli_errors_exit_2(tmp_path):
    r = eval_mot("--det", str(tmp_path / "missing.txt"))
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr
    r = eval_mot()
    assert r.returncode == 2 and "one of the arguments --det --tracks is required" in r.stderr
    p = tmp_path / "d.txt"
    p.write_text("1,-1,0,0,10,20,0.9,-1,-1,-1\n")
    r = eval_mot("--det", str(p), "-p", "bogus=1")
    assert r.returncode == 2 and "unknown tracker parameter 'bogus'" in r.stderr
    r = eval_mot("--det", str(p), "-p", "iou_gate=5")
    assert r.returncode == 2 and "iou_gate" in r.stderr and "Traceback" not in r.stderr
    r = eval_mot("--tracks", str(p))
    assert r.returncode == 2 and "--tracks needs --gt" in r.stderr
    for bad in (["--fps", "0"], ["--iou", "1.5"], ["--iou", "x"]):
        r = eval_mot("--det", str(p), *bad)
        assert r.returncode == 2 and bad[0] in r.stderr, (bad, r.stderr)


def test_evaluate_rejects_unusable_inputs(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        evaluate()
    with pytest.raises(ValueError, match="not found"):
        evaluate(det=str(tmp_path / "missing.txt"))


def test_cli_json_without_gt_options_in_any_order(tmp_path):
    p = tmp_path / "d.txt"
    p.write_text("".join(f"{f},-1,{10 + f},10,20,40,0.9,-1,-1,-1\n" for f in range(1, 8)))
    for args in (["--det", str(p), "--json"], ["--json", "--det", str(p)],
                 ["--appearance", "off", "--json", "--det", str(p)]):
        r = eval_mot(*args)
        assert r.returncode == 0, (args, r.stderr)
        out = json.loads(r.stdout)
        assert out["ids"] == 1 and out["hz"] > 0
    h = eval_mot("--help")
    assert h.returncode == 0
    for opt in ("--det", "--tracks", "--gt", "--video", "--appearance", "--fps", "--iou", "--out",
                "--param", "--json"):
        assert opt in h.stdout, opt


def test_undefined_metrics_are_null_not_nan(tmp_path):
    """A ground truth that yields no boxes: MOTA/IDF1 are undefined; the JSON says null."""
    det = tmp_path / "d.txt"
    det.write_text("".join(f"{f},-1,{10 + f},10,20,40,0.9,-1,-1,-1\n" for f in range(1, 8)))
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,10,20,40,0,1,1\n")  # consider-flag 0: no ground-truth box counts
    r = eval_mot("--det", str(det), "--gt", str(gt), "--json")
    assert r.returncode == 0, r.stderr
    assert "NaN" not in r.stdout and "Infinity" not in r.stdout
    out = json.loads(r.stdout)
    assert out["mota"] is None and out["ids"] == 1


# ---------------------------------------------------------------- HOTA (TrackEval's definition)
def _rows(*r):
    return np.asarray(r, dtype=np.float64)


def test_hota_perfect_and_empty():
    from trackers.mot import hota

    gt = _rows([1, 1, 0, 0, 10, 10], [2, 1, 1, 0, 10, 10])
    assert hota(gt, gt.copy()) == {"hota": 1.0, "deta": 1.0, "assa": 1.0, "loca": 1.0}
    assert hota(gt, _rows().reshape(0, 6))["hota"] == 0.0


def test_hota_hand_computed_id_switch():
    """One person, two frames, tracked exactly but under id 7 then id 8: every alpha has
    TP 2, FN = FP = 0 (DetA 1); each pair's association score is 1 / (2 + 1 - 1) = 0.5, so
    AssA = (1 x 0.5 + 1 x 0.5) / 2 = 0.5 and HOTA = sqrt(0.5)."""
    from trackers.mot import hota

    gt = _rows([1, 1, 0, 0, 10, 10], [2, 1, 0, 0, 10, 10])
    tr = _rows([1, 7, 0, 0, 10, 10], [2, 8, 0, 0, 10, 10])
    h = hota(gt, tr)
    assert h["deta"] == pytest.approx(1.0)
    assert h["assa"] == pytest.approx(0.5)
    assert h["hota"] == pytest.approx(0.5 ** 0.5)


def test_hota_hand_computed_localisation():
    """One box with IoU 0.62 (10x10 vs 10x6.2): a match for the 12 alphas 0.05..0.60 (HOTA 1
    each) and none for the 7 above (TP 0, FN 1, FP 1: HOTA 0), so HOTA = 12 / 19."""
    from trackers.mot import hota

    h = hota(_rows([1, 1, 0, 0, 10, 10]), _rows([1, 3, 0, 0, 10, 6.2]))
    assert h["hota"] == pytest.approx(12 / 19)
    assert h["deta"] == pytest.approx(12 / 19)
    assert h["loca"] == pytest.approx((12 * 0.62 + 7 * 1.0) / 19)
