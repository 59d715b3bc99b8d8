"""Helpers shared by benchmarks: machine description, medians, JSON output."""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import platform
import statistics
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

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


@contextlib.contextmanager
def serving(cfg: Any, ready_timeout_s: float = 20.0) -> Iterator[Any]:
    """A VigilServer for `cfg` (no event database: benchmarks leave nothing on disk) running in
    a thread, ready (every camera produced a frame) when the block starts; shut down after."""
    import requests

    from web.server import VigilServer
    srv = VigilServer(cfg, persist=False)
    srv.bind()
    srv.start_pipelines()
    th = threading.Thread(target=srv.run, name="bench-server", daemon=True)
    th.start()
    srv.base = srv.url.rstrip("/")
    try:
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            try:
                if requests.get(srv.base + "/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        yield srv
    finally:
        srv.shutdown(2.0)
        th.join(3)
