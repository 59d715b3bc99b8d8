"""Helpers shared by benchmarks: machine description, medians, JSON output."""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VIGIL_SHARED_DATA", ROOT.parent / "shared" / "data"))


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib import metadata
    versions: dict[str, str] = {"python": platform.python_version()}
    for dist in ("numpy", "opencv-python-headless", "onnxruntime", "onnxruntime-gpu", "av", "flask",
                 "waitress", "scipy", "filterpy", "tesserocr"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    out: dict[str, Any] = {"cores": os.cpu_count(), "cpu": cpu, "platform": platform.platform(),
                           "versions": versions, "load_avg_1m": round(os.getloadavg()[0], 2)}
    try:
        import onnxruntime as ort
        out["ort_providers"] = ort.get_available_providers()
    except Exception:  # noqa: BLE001
        pass
    try:
        import tesserocr
        out["tesseract"] = tesserocr.tesseract_version().split()[1]
    except Exception:  # noqa: BLE001
        pass
    return out


def median(xs: Iterable[float]) -> float | None:
    xs = list(xs)
    return float(statistics.median(xs)) if xs else None


def emit(obj: dict[str, Any], as_json: bool = True) -> None:
    if as_json:
        print(json.dumps(obj))
    else:
        print(json.dumps(obj, indent=2))
    sys.stdout.flush()


def data_path(rel: str) -> Path:
    p = SHARED_DATA / rel
    if not p.is_file():
        raise SystemExit(f"error: benchmark input {p} not found (shared data)")
    return p
