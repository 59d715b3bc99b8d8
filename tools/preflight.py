"""Every file a config names, checked before anything starts (`main.py check-config`).

The schema checks values; this checks the files they point to, for the cameras that are
enabled: model files of the detectors they use (with their per-camera overrides), Haar
cascades, tessdata folders, defect-watch reference images and `sample:` clips. A missing file
that `main.py assets` fetches or converts is a note, not an error (a fresh checkout has none
of them before `make run`); any other missing file is an error naming its config key.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.config import VigilConfig
from core.uri import parse_uri
from tools.assets import ASSETS, YOLO_TINY_ONNX

__all__ = ["FileCheck", "config_files"]

ROOT = Path(__file__).resolve().parents[1]
_BY_ASSETS = {a.name for a in ASSETS} | {YOLO_TINY_ONNX}


@dataclass(frozen=True)
class FileCheck:
    key: str        # config key path, e.g. detectors.yolo.model
    path: str       # as written in the config
    found: bool
    by_assets: bool  # `main.py assets` creates it
    what: str = "file"
    reason: str | None = None  # instead of "<what> not found: <path>"

    def line(self) -> str:
        if self.by_assets:
            return (f"{self.key}: {self.path} does not exist yet; `python main.py assets` "
                    f"(or `make run`) fetches it")
        return f"{self.key}: {self.reason or f'{self.what} not found: {self.path}'}"


def _exists(path: str, folder: bool = False) -> bool:
    """Relative paths count from the working directory, then the repository root (as the
    detectors resolve them)."""
    p = Path(path).expanduser()
    for cand in (p,) if p.is_absolute() else (p, ROOT / p):
        if (cand.is_dir() if folder else cand.is_file()):
            return True
    return False


def _fetched_into(path: str, folder: str) -> bool:
    """`main.py assets` writes this very file: a known asset name, in the assets folder."""
    p, d = Path(path).expanduser(), Path(folder).expanduser()
    if p.name not in _BY_ASSETS:
        return False
    files = [p] if p.is_absolute() else [p, ROOT / p]
    dirs = [d] if d.is_absolute() else [d, ROOT / d]
    return any(f.parent.resolve() == x.resolve() for f in files for x in dirs)


def _check(key: str, path: str | None, what: str = "file", folder: bool = False,
           assets_dir: str | None = None) -> list[FileCheck]:
    if not path:
        return []
    found = _exists(path, folder)
    by_assets = not found and assets_dir is not None and _fetched_into(path, assets_dir)
    return [FileCheck(key, path, found, by_assets, what)]


def _detector_files(cfg: VigilConfig, i: int) -> list[FileCheck]:
    cam = cfg.cameras[i]
    sec = cfg.detector_section(cam) if cam.detector != "none" else None
    key = (f"cameras[{i}].detector_params" if cam.detector_params else f"detectors.{cam.detector}")
    out: list[FileCheck] = []
    models = cfg.paths.models
    if cam.detector == "yolo":
        out += _check(f"{key}.model", sec.model, "model file", assets_dir=models)
        if str(sec.model).endswith(".weights"):
            out += _check(f"{key}.cfg", sec.cfg, "Darknet cfg file", assets_dir=models)
        out += _check(f"{key}.names", sec.names, "class names file", assets_dir=models)
    elif cam.detector == "text":
        from detectors.text import DEFAULT_DB_MODEL
        model = sec.model or (DEFAULT_DB_MODEL if sec.box_detector == "dbnet" else None)
        out += _check(f"{key}.model", model, "text model", assets_dir=models)
        out += _check(f"{key}.tessdata", sec.tessdata, "tessdata folder", folder=True)
    elif cam.detector == "haar":
        from detectors.base import DetectorError
        from detectors.haar import resolve_cascade
        for field in ("cascade", "nested"):
            name = getattr(sec, field)
            if not name:
                continue
            try:
                resolve_cascade(name)
            except DetectorError as e:
                out.append(FileCheck(f"{key}.{field}", name, False, False, "cascade", str(e)))
    return out


def config_files(cfg: VigilConfig) -> list[FileCheck]:
    """Every file the enabled cameras need, found or not (each detector section once)."""
    out: list[FileCheck] = []
    seen: set[str] = set()
    for i, cam in enumerate(cfg.cameras):
        if not cam.enabled:
            continue
        for fc in _detector_files(cfg, i):
            if fc.key not in seen:
                seen.add(fc.key)
                out.append(fc)
        parsed = parse_uri(cam.source)
        if parsed.kind == "sample":
            name = str(parsed.target)
            base = Path(cfg.paths.samples) / name
            found = _exists(str(base)) or _exists(f"{base}.mp4")
            shipped = f"{name}.mp4" in _BY_ASSETS or name in _BY_ASSETS
            out.append(FileCheck(f"cameras[{i}].source", f"{base}.mp4" if shipped else str(base),
                                 found, not found and shipped, "sample clip"))
        dw = cam.defect_watch
        if dw is not None and dw.enabled:
            out += _check(f"cameras[{i}].defect_watch.reference", dw.reference, "reference image")
            out += _check(f"cameras[{i}].defect_watch.tessdata", getattr(dw, "tessdata", None),
                          "tessdata folder", folder=True)
    return out
