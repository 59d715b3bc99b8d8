"""Shared fixtures. Real-data / real-component tests skip with a reason when what they
need is absent, except under VIGIL_CI=1 where absence is a failure."""
from __future__ import annotations

import os
import sys
from pathlib import Path

# as main.py's setup_environment does for every command, before numpy loads: single-threaded
# OpenBLAS (its spinning threads cost the camera threads up to 20x on small matmuls)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# RTSP server / hanging TCP server / MJPEG server fixtures, available to every test
pytest_plugins = ["tests.rtsp_fixture"]

SHARED_DATA = Path(os.environ.get("VIGIL_SHARED_DATA", ROOT.parent / "shared" / "data"))
IN_CI = os.environ.get("VIGIL_CI") == "1"


def require(condition: bool, reason: str) -> None:
    """Skip (or fail under VIGIL_CI=1) when a real component is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"VIGIL_CI=1 and required component is missing: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    require(SHARED_DATA.is_dir(), f"shared data folder {SHARED_DATA} not found")
    return SHARED_DATA


def data_file(rel: str) -> Path:
    p = SHARED_DATA / rel
    require(p.is_file(), f"shared data file {p} not found")
    return p


@pytest.fixture(scope="session")
def models_dir() -> Path:
    d = Path(os.environ.get("VIGIL_MODELS", ROOT / "models"))
    require((d / "yolov3-tiny.weights").is_file(),
            f"model assets not found in {d}: run `python main.py assets`")
    return d


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    d = Path(os.environ.get("VIGIL_SAMPLES", ROOT / "samples"))
    require((d / "bikes.mp4").is_file(), f"sample clips not found in {d}: run `python main.py assets`")
    return d
