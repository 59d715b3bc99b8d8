"""Vigil's tracker next to its peers on the same detections, with the same scorer, in one run.

    python main.py bench tracker-peers --json

Peers: roboflow `trackers` (ByteTrack, BoT-SORT without ReID or camera-motion compensation,
OC-SORT, C-BIoU, SORT; their defaults, frame_rate = the sequence's) and norfair (IoU distance,
threshold 0.7, i.e. a match needs IoU >= 0.3 as in SORT). Their pins clash with Vigil's
(trackers pins OpenCV 5, norfair numpy < 2), so each runs in its own virtual environment,
created on first use from the pinned `bench/peers/requirements-*.txt` under
`~/.cache/vigil/peers/NAME-HASH` (VIGIL_PEERS_DIR or --venv-dir moves it; HASH is that of the
requirements file, so a changed pin builds a new one). PyPI must be reachable the first time.

Every tracker, Vigil included, runs through the same protocol: `bench/peers/runner.py` in
its interpreter reads det.txt and writes its tracks in MOT format, timing only its update
calls. Vigil then scores every output itself (trackers/mot.py: py-motmetrics at IoU 0.5 for
MOTA / IDF1 / switches / fragmentations, Vigil's HOTA), and TrackEval, pinned in the
`trackers` venv, scores them again (bench/peers/trackeval_score.py): its HOTA next to
Vigil's is the cross-check of trackers/mot.py `hota()`.

Sequences: TUD-Stadtmitte (ground truth; 25 fps) and PETS09-S2L1 (no ground truth: distinct
ids for about 19 people, boxes output; 10 fps, frames of vtest.avi for Vigil with dHash).
Update rate: median over --repeats runs of each tracker on both sequences, in wall-clock
time (`hz`) and in process CPU time (`hz_cpu`, the table's figure: the steadier one when
other processes compete for the cores).
"""
from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from trackers.mot import read_mot, score_files, track_summary

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
RUNNER = PEERS / "runner.py"
TRACKEVAL = PEERS / "trackeval_score.py"

# tracker -> environment it runs in ("vigil": this interpreter)
TRACKERS: dict[str, str] = {"vigil": "vigil", "bytetrack": "trackers", "botsort": "trackers",
                            "ocsort": "trackers", "cbiou": "trackers", "sort": "trackers",
                            "norfair": "norfair"}
ENVS = ("trackers", "norfair")


class PeerEnvError(RuntimeError):
    """A peer environment could not be created (no network, pip failure)."""


def venv_root(override: str | None = None) -> Path:
    if override:
        return Path(override)
    env = os.environ.get("VIGIL_PEERS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "vigil" / "peers"


def requirements(env: str) -> Path:
    return PEERS / f"requirements-{env}.txt"


def venv_dir(env: str, root: Path) -> Path:
    digest = hashlib.sha256(requirements(env).read_bytes()).hexdigest()[:12]
    return root / f"{env}-{digest}"


def venv_python(env: str, root: Path) -> Path:
    return venv_dir(env, root) / "bin" / "python"


def is_ready(env: str, root: Path) -> bool:
    return (venv_dir(env, root) / ".vigil-complete").is_file()


def ensure_venv(env: str, root: Path, log: Callable[[str], None] | None = None,
                timeout_s: float = 900.0) -> Path:
    """The interpreter of peer environment `env`, created from its pinned requirements
    if it is not there yet (a half-built one is rebuilt). Raises PeerEnvError."""
    d = venv_dir(env, root)
    py = d / "bin" / "python"
    if is_ready(env, root):
        return py
    if log:
        log(f"creating {d} from {requirements(env).name} (first run only)")
    base = getattr(sys, "_base_executable", None) or sys.executable
    steps = [[base, "-m", "venv", "--clear", str(d)],
             [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
              str(requirements(env))]]
    for cmd in steps:
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PeerEnvError(f"{' '.join(cmd[:4])}...: {e}") from None
        if p.returncode != 0:
            tail = [ln for ln in (p.stderr or p.stdout).strip().splitlines()
                    if not ln.startswith("WARNING: Location")][-3:]
            raise PeerEnvError(f"creating the {env} environment failed ({' '.join(cmd[2:5])}): "
                               + " | ".join(tail))
    (d / ".vigil-complete").write_text(requirements(env).read_text())
    return py


def run_tracker(python: str | Path, tracker: str, det: Path, out: Path, fps: float,
                last_frame: int | None = None, params: dict[str, Any] | None = None,
                video: Path | None = None, timeout_s: float = 600.0) -> dict[str, Any]:
    """One runner.py call; its JSON line. Raises RuntimeError with the runner's message."""
    cmd = [str(python), str(RUNNER), "--tracker", tracker, "--det", str(det), "--out", str(out),
           "--fps", repr(float(fps)), "--params", json.dumps(params or {})]
    if last_frame:
        cmd += ["--last-frame", str(int(last_frame))]
    if video is not None:
        cmd += ["--video", str(video)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    lines = [ln for ln in p.stdout.strip().splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{tracker}: runner exit {p.returncode}: {tail}")
    return json.loads(lines[-1])


def score_output(tracks: Path, gt: Path | None) -> dict[str, Any]:
    """Vigil's scorer on one output: py-motmetrics + HOTA with ground truth, else only
    distinct ids, boxes and mean track length."""
    res: dict[str, Any] = {}
    if gt is not None:
        s = score_files(gt, tracks)
        res.update({k: s[k] for k in ("mota", "idf1", "id_switches", "fragmentations", "hota",
                                      "deta", "assa", "fp", "fn")})
    res.update(track_summary(read_mot(tracks)))
    return res


def trackeval_scores(python: Path, gt: Path, seq: str, length: int,
                     outputs: dict[str, Path]) -> dict[str, dict[str, float]]:
    cmd = [str(python), str(TRACKEVAL), "--gt", str(gt), "--seq", seq, "--length", str(length),
           *(f"{k}={v}" for k, v in outputs.items())]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in p.stdout.strip().splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"TrackEval: exit {p.returncode}: {tail}")
    return json.loads(lines[-1])


def _sequences(data: Path) -> list[dict[str, Any]]:
    mot = data / "mot" / "MOT15"
    seqs = [{"name": "TUD-Stadtmitte", "det": mot / "TUD-Stadtmitte" / "det" / "det.txt",
             "gt": mot / "TUD-Stadtmitte" / "gt" / "gt.txt", "fps": 25.0, "length": 179, "video": None},
            {"name": "PETS09-S2L1", "det": mot / "PETS09-S2L1" / "det" / "det.txt", "gt": None,
             "fps": 10.0, "length": None, "video": data / "video" / "opencv" / "vtest.avi"}]
    for s in seqs:
        if not s["det"].is_file():
            raise FileNotFoundError(f"{s['det']} not found")
        if s["gt"] is not None and not s["gt"].is_file():
            raise FileNotFoundError(f"{s['gt']} not found")
        if s["video"] is not None and not s["video"].is_file():
            s["video"] = None
    return seqs


def run(data: Path, repeats: int = 3, venv_dir_override: str | None = None,
        only: list[str] | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    root = venv_root(venv_dir_override)
    names = [n for n in TRACKERS if only is None or n in only or n == "vigil"]
    pythons: dict[str, Path | str] = {"vigil": sys.executable}
    env_errors: dict[str, str] = {}
    for env in sorted({TRACKERS[n] for n in names} - {"vigil"}):
        try:
            pythons[env] = ensure_venv(env, root, log)
        except PeerEnvError as e:
            env_errors[env] = str(e)
    seqs = _sequences(data)
    # Vigil twice: boxes only, and with dHash on the video frames where a sequence has them
    variants = [("vigil", "vigil", {"appearance": False}), ("vigil+dhash", "vigil", {"appearance": True}),
                *((n, n, {}) for n in names if n != "vigil")]
    results: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="vigil_peers_"))
    outputs: dict[str, dict[str, Path]] = {s["name"]: {} for s in seqs}
    try:
        for label, tracker, params in variants:
            env = TRACKERS[tracker]
            if env in env_errors:
                results[label] = {"error": env_errors[env]}
                continue
            row: dict[str, Any] = {}
            hz: dict[str, list[float]] = {}
            totals: list[float] = []
            totals_cpu: list[float] = []
            try:
                for rep in range(repeats):
                    total_u, total_s, total_c = 0, 0.0, 0.0
                    for s in seqs:
                        video = s["video"] if label == "vigil+dhash" else None
                        out = tmp / f"{label}_{s['name']}.txt"
                        r = run_tracker(pythons[env], tracker, s["det"], out, s["fps"], s["length"],
                                        params, video)
                        total_u += r["updates"]
                        total_s += r["seconds"]
                        total_c += r["cpu_seconds"]
                        hz.setdefault(s["name"], []).append(r["hz"])
                        hz.setdefault(s["name"] + ":cpu", []).append(r["hz_cpu"])
                        if rep == 0:
                            row[s["name"]] = {**score_output(out, s["gt"]), "video": video is not None}
                            row.setdefault("version", f"{r['package']} {r['version']}")
                            if tracker != "vigil":
                                row.setdefault("params", r["params"])
                            outputs[s["name"]][label] = out
                    totals.append(total_u / total_s)
                    totals_cpu.append(total_u / total_c)
            except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
                row["error"] = str(e)
            for name, v in hz.items():
                seq, _, kind = name.partition(":")
                if seq in row:
                    row[seq]["hz_cpu" if kind else "hz"] = statistics.median(v)
            if totals:
                row["hz"] = statistics.median(totals)   # both sequences' updates / their time
                row["hz_runs"] = [round(v, 1) for v in totals]
                # the same in process CPU time: what the tracker costs, not what it waited for
                row["hz_cpu"] = statistics.median(totals_cpu)
            results[label] = row
            if log:
                log(f"{label:12s} " + ("error: " + row["error"] if "error" in row else
                                       f"{row.get('hz', 0):.0f} Hz"))
        # TrackEval's own scores of every output with ground truth: the HOTA cross-check
        check: dict[str, Any] = {}
        if "trackers" in pythons:
            for s in seqs:
                if s["gt"] is None or not outputs[s["name"]]:
                    continue
                try:
                    te = trackeval_scores(Path(pythons["trackers"]), s["gt"], s["name"],
                                          s["length"], outputs[s["name"]])
                except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
                    check[s["name"]] = {"error": str(e)}
                    continue
                for label, v in te.items():
                    results[label][s["name"]]["trackeval"] = v
                diffs = [abs(v["hota"] - results[k][s["name"]]["hota"]) for k, v in te.items()]
                check[s["name"]] = {"trackers": len(te), "max_abs_hota_diff": max(diffs)}
        else:
            check["skipped"] = env_errors.get("trackers", "trackers environment not requested")
    finally:
        for p in tmp.glob("*"):
            p.unlink()
        tmp.rmdir()
    sort_hz = results.get("sort", {}).get("hz_cpu")
    for row in results.values():
        if sort_hz and row.get("hz_cpu"):
            row["hz_cpu_vs_roboflow_sort"] = row["hz_cpu"] / sort_hz
    return {"sequences": [s["name"] for s in seqs], "repeats": repeats, "iou": 0.5,
            "venv_root": str(root), "results": results, "hota_check": check,
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def markdown(res: dict[str, Any]) -> str:
    """The BENCHMARKS.md table of one run."""
    head = ("| tracker | TUD MOTA | IDF1 | ID sw. | frag. | HOTA (Vigil / TrackEval) "
            "| PETS09 ids | boxes | PETS09 Hz (CPU) | update Hz, both (CPU) |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for label, r in res["results"].items():
        if "error" in r:
            lines.append(f"| {label} | error: {r['error'][:80]} | | | | | | | | |")
            continue
        t, p = r.get("TUD-Stadtmitte", {}), r.get("PETS09-S2L1", {})
        te = t.get("trackeval", {})
        pv = " (video)" if p.get("video") else ""
        lines.append(f"| {label} | {t.get('mota', 0):.3f} | {t.get('idf1', 0):.3f} | "
                     f"{t.get('id_switches')} | {t.get('fragmentations')} | "
                     f"{t.get('hota', 0):.4f} / {te.get('hota', float('nan')):.4f} | "
                     f"{p.get('ids')}{pv} | {p.get('boxes')} | {p.get('hz_cpu') or 0:.0f} | "
                     f"{r.get('hz_cpu') or 0:.0f} |")
    return "\n".join(lines)
