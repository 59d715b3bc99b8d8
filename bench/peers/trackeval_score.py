"""Score MOT-format tracker outputs with TrackEval itself (the reference HOTA implementation).

Runs inside the peers' `trackers` venv (TrackEval is pinned in requirements-trackers.txt),
through TrackEval's own MOTChallenge 2D box dataset and evaluator (BENCHMARK MOT15: no
distractor preprocessing, ground truth rows with confidence 0 dropped), so the figures are
what `run_mot_challenge.py` would print. bench/tracker_peers.py puts them next to Vigil's own
HOTA (trackers/mot.py `hota()`) as a cross-check.

    python trackeval_score.py --gt gt.txt --seq NAME --length N NAME=tracks.txt [...]

Stdout: one JSON line {tracker name: {"hota", "deta", "assa", "loca", "mota", "idf1",
"id_switches"}} (means over TrackEval's 19 alphas for the HOTA family).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
from pathlib import Path


def score(gt: str, seq: str, length: int, tracks: dict[str, str]) -> dict[str, dict[str, float]]:
    import numpy as np
    import trackeval

    tmp = Path(tempfile.mkdtemp(prefix="vigil_trackeval_"))
    try:
        g = tmp / "gt" / seq
        (g / "gt").mkdir(parents=True)
        shutil.copyfile(gt, g / "gt" / "gt.txt")
        (g / "seqinfo.ini").write_text(f"[Sequence]\nname={seq}\nseqLength={length}\n")
        for name, path in tracks.items():
            d = tmp / "trackers" / name / "data"
            d.mkdir(parents=True)
            shutil.copyfile(path, d / f"{seq}.txt")
        ev_cfg = {**trackeval.Evaluator.get_default_eval_config(), "USE_PARALLEL": False,
                  "PRINT_RESULTS": False, "PRINT_ONLY_COMBINED": False, "PRINT_CONFIG": False,
                  "TIME_PROGRESS": False, "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False,
                  "PLOT_CURVES": False, "DISPLAY_LESS_PROGRESS": True}
        ds_cfg = {**trackeval.datasets.MotChallenge2DBox.get_default_dataset_config(),
                  "GT_FOLDER": str(tmp / "gt"), "TRACKERS_FOLDER": str(tmp / "trackers"),
                  "BENCHMARK": "MOT15", "SKIP_SPLIT_FOL": True, "SEQ_INFO": {seq: length},
                  "TRACKERS_TO_EVAL": list(tracks), "PRINT_CONFIG": False}
        quiet = {"PRINT_CONFIG": False}
        with contextlib.redirect_stdout(io.StringIO()):  # TrackEval prints configs and progress
            evaluator = trackeval.Evaluator(ev_cfg)
            dataset = trackeval.datasets.MotChallenge2DBox(ds_cfg)
            metrics = [trackeval.metrics.HOTA(quiet), trackeval.metrics.CLEAR(quiet),
                       trackeval.metrics.Identity(quiet)]
            res, _ = evaluator.evaluate([dataset], metrics)
        out = {}
        for name in tracks:
            r = res["MotChallenge2DBox"][name][seq]["pedestrian"]
            h = r["HOTA"]
            out[name] = {"hota": float(np.mean(h["HOTA"])), "deta": float(np.mean(h["DetA"])),
                         "assa": float(np.mean(h["AssA"])), "loca": float(np.mean(h["LocA"])),
                         "mota": float(r["CLEAR"]["MOTA"]), "idf1": float(r["Identity"]["IDF1"]),
                         "id_switches": int(r["CLEAR"]["IDSW"])}
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gt", required=True)
    ap.add_argument("--seq", required=True)
    ap.add_argument("--length", type=int, required=True)
    ap.add_argument("tracks", nargs="+", help="NAME=PATH of a MOT-format tracker output")
    a = ap.parse_args(argv)
    tracks = {}
    for t in a.tracks:
        name, sep, path = t.partition("=")
        if not sep or not name or not Path(path).is_file():
            print(f"trackeval_score.py: error: expected NAME=FILE, got {t!r}", file=sys.stderr)
            return 2
        tracks[name] = path
    print(json.dumps(score(a.gt, a.seq, a.length, tracks)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
