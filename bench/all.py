"""Run every benchmark, each in its own subprocess, and collect their JSON in one file.

    python main.py bench all --out bench/results/NAME.json [--quick] [--only a b] [--skip c]

Each benchmark runs as `python main.py bench NAME --json ARGS` in a fresh interpreter, so a
crash or a leak in one cannot take down or skew the others. Its JSON (the last stdout line
that parses as an object) is stored under results[NAME]; a failure is stored as
{"error", "returncode", "stderr_tail"}; a benchmark whose shared input data is absent is
not started and is stored as {"skipped": reason}. The 1-minute load average before and after
each run is recorded too: the machine may be shared, and load skews every millisecond figure.

--quick passes smaller sizes (fewer frames, rounds, seconds): 3 min 45 s measured on the
shared 2-core box (load average 2-4). The full run (each benchmark's defaults): 5 min 40 s
measured there (load average 4-7.5).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.common import ROOT, SHARED_DATA, machine

# name -> (arguments for the full run, arguments for --quick, shared-data files it reads)
PLAN: dict[str, tuple[list[str], list[str], list[str]]] = {
    "pipeline": ([], ["--frames", "100", "--rounds", "3", "--threaded-seconds", "2"],
                 ["video/opencv/vtest.avi"]),
    "latency": ([], ["--seconds", "4", "--rounds", "2"], []),
    "viewers": ([], ["--levels", "1", "10", "50", "--seconds", "3", "--repeats", "1"], []),
    "detectors": ([], ["--frames", "12", "--threads", "1", "--other-frames", "4"],
                  ["video/opencv/vtest.avi"]),
    "tracker": ([], ["--repeats", "3", "--dhash-frames", "150"],
                ["mot/MOT15"]),
    "tracker-peers": ([], ["--repeats", "1"], ["mot/MOT15/TUD-Stadtmitte/gt/gt.txt"]),
    "ocr": ([], ["--repeats", "2"], ["images/text/imageTextN.png"]),
    "overlay": ([], ["--frames", "100", "--repeats", "3"], []),
    "defects": ([], ["--seeds", "0", "1"], []),
    "store": ([], ["--events", "20000", "--rounds", "10", "--repeats", "1"], []),
    "multicam": ([], ["--cameras", "1,4,16", "--seconds", "3", "--warmup", "3", "--process-frames", "40"],
                 ["video/opencv/vtest.avi"]),
    "cluster": ([], ["--kills", "1", "--freezes", "1", "--baseline-kills", "0", "--baseline-freezes", "0",
                     "--seconds", "2"], []),
}


def git_commit(root: Path = ROOT) -> str | None:
    """HEAD's commit read from .git (no git process: the checkout may be shared and busy)."""
    git = root / ".git"
    try:
        if git.is_file():  # worktree / submodule: "gitdir: PATH"
            git = (root / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        p = git / ref
        if p.is_file():
            return p.read_text().strip() or None
        packed = git / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except OSError:
        pass
    return None


def _bench_command(name: str) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), "bench", name]


def parse_json_output(stdout: str) -> dict[str, Any] | None:
    """The last line of stdout that parses as a JSON object (benchmarks print exactly one)."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj
    try:  # an indented (multi-line) object
        obj = json.loads(stdout)
        return obj if isinstance(obj, dict) else None
    except json.JSONDecodeError:
        return None


def _tail(text: str, n: int = 2000) -> str:
    return text[-n:] if len(text) > n else text


def run_one(name: str, args: list[str], timeout_s: float) -> tuple[dict[str, Any], float]:
    cmd = [*_bench_command(name), "--json", *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return ({"error": f"timed out after {timeout_s:.0f} s", "command": cmd[1:],
                 "stderr_tail": _tail(err)}, time.monotonic() - t0)
    wall = time.monotonic() - t0
    obj = parse_json_output(proc.stdout)
    if obj is None:
        return ({"error": f"exit code {proc.returncode}, no JSON on stdout", "returncode": proc.returncode,
                 "command": cmd[1:], "stderr_tail": _tail(proc.stderr),
                 "stdout_tail": _tail(proc.stdout, 500)}, wall)
    if proc.returncode != 0:
        obj.setdefault("error", f"exit code {proc.returncode}")
        obj["returncode"] = proc.returncode
        obj["stderr_tail"] = _tail(proc.stderr)
    shown = ["python", *cmd[1:]]
    if len(shown) > 1 and shown[1] == str(ROOT / "main.py"):
        shown[1] = "main.py"
    obj["_command"] = " ".join(shown)
    return obj, wall


def missing_data(rels: list[str]) -> str | None:
    for rel in rels:
        if not (SHARED_DATA / rel).exists():
            return f"shared data {SHARED_DATA / rel} not found"
    return None


def package_versions() -> dict[str, str]:
    """Installed versions by distribution name (modules like waitress have no __version__)."""
    from importlib import metadata
    out = {}
    for dist in ("numpy", "opencv-python-headless", "onnxruntime", "onnxruntime-gpu", "av", "flask",
                 "waitress", "pydantic", "scipy", "filterpy", "tesserocr", "psutil", "matplotlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def run_all(names: list[str], quick: bool, timeout_s: float, log=None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "machine": machine(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_commit(), "quick": quick, "shared_data": str(SHARED_DATA),
        "results": {}, "seconds": {}, "load_avg_1m": {},
    }
    out["machine"]["packages"] = package_versions()
    for name in names:
        full, small, data = PLAN[name]
        reason = missing_data(data)
        if reason:
            out["results"][name] = {"skipped": reason}
            out["seconds"][name] = 0.0
            if log:
                log(f"{name:10s} skipped: {reason}")
            continue
        before = os.getloadavg()[0]
        res, wall = run_one(name, small if quick else full, timeout_s)
        out["results"][name] = res
        out["seconds"][name] = round(wall, 1)
        out["load_avg_1m"][name] = [round(before, 2), round(os.getloadavg()[0], 2)]
        if log:
            status = f"error: {res['error']}" if "error" in res else "ok"
            log(f"{name:10s} {wall:7.1f} s  load {before:.2f}  {status}")
    out["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out["total_seconds"] = round(sum(out["seconds"].values()), 1)
    return out
