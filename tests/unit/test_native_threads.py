"""Native libraries' own thread pools: single-threaded in Vigil's processes (the camera threads
are the parallelism). With OpenBLAS and OpenCV splitting each call over every core, a 3-minute
soak of the shipped config on 2 cores used 1.35 cores and dropped 10-20 % of the conveyor's
frames; with both at one thread it used 0.75 cores and dropped none (BENCHMARKS.md)."""
from __future__ import annotations

import os
import subprocess
import sys

import cv2

from tests.conftest import ROOT

PROBE = """
import ctypes, glob, os, sys
sys.path.insert(0, sys.argv[1])
import main
main.setup_environment()
import numpy
libs = glob.glob(os.path.join(os.path.dirname(numpy.__file__) + ".libs", "libscipy_openblas*.so"))
if not libs:
    print("no-openblas"); raise SystemExit
lib = ctypes.CDLL(libs[0])
get = getattr(lib, "scipy_openblas_get_num_threads64_", None) or getattr(lib, "openblas_get_num_threads")
print(get())
"""


def _blas_threads(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if env_value is not None:
        env["OPENBLAS_NUM_THREADS"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE, str(ROOT)], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_main_runs_openblas_single_threaded_unless_the_user_says_otherwise() -> None:
    got = _blas_threads(None)
    if got == "no-openblas":  # a numpy built against another BLAS: nothing to limit here
        return
    assert got == "1"
    assert _blas_threads("2") == "2"  # the user's own setting wins


def test_pool_opencv_threads_sets_opencv_s_pool() -> None:
    from core.config import PoolConfig
    from runtime.vigil import _set_opencv_threads
    before = cv2.getNumThreads()
    try:
        assert PoolConfig().opencv_threads == 1
        _set_opencv_threads(PoolConfig().opencv_threads)
        assert cv2.getNumThreads() == 1
        _set_opencv_threads(0)  # OpenCV's default: one per core, not 0 (= sequential)
        assert cv2.getNumThreads() == cv2.getNumberOfCPUs()
    finally:
        cv2.setNumThreads(before)
