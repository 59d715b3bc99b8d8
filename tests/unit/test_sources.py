"""URI parsing, the factory, and both backends on small generated clips."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.uri import parse_uri, redact_uri
from stream.errors import SourceError
from stream.sources import OpenCVSource, PyAVSource, VideoSource, open_source
from stream.synthetic import SyntheticSource
from tests.timing import best_of, wait_until

BACKENDS = ["opencv", "pyav"]


# ----------------------------------------------------------------------------- parse_uri

@pytest.mark.parametrize("uri, kind, target", [
    ("0", "webcam", 0),
    (3, "webcam", 3),
    (" 2 ", "webcam", 2),
    ("/dev/video1", "webcam", "/dev/video1"),
    ("clips/a.mp4", "file", "clips/a.mp4"),
    ("/abs/path/b.avi", "file", "/abs/path/b.avi"),
    ("file:///tmp/x%20y.mp4", "file", "/tmp/x y.mp4"),
    ("rtsp://cam.local:8554/live", "rtsp", "rtsp://cam.local:8554/live"),
    ("RTSPS://10.0.0.2/s", "rtsp", "RTSPS://10.0.0.2/s"),
    ("http://10.0.0.3/video.mjpg", "http", "http://10.0.0.3/video.mjpg"),
    ("https://example.org/x.m3u8", "http", "https://example.org/x.m3u8"),
    ("sample:bikes", "sample", "bikes"),
    ("sample:carphone_pristine.mp4", "sample", "carphone_pristine.mp4"),
    ("synthetic:conveyor", "synthetic", "conveyor"),
    ("synthetic:crossing?objects=3", "synthetic", "crossing"),
])
def test_parse_uri_kinds(uri, kind, target):
    p = parse_uri(uri)
    assert p.kind == kind and p.target == target
    assert p.is_live == (kind in ("webcam", "rtsp", "http"))


def test_parse_uri_home_is_expanded():
    assert parse_uri("~/v.mp4").target == str(Path("~/v.mp4").expanduser())


def test_parse_synthetic_query():
    p = parse_uri("synthetic:conveyor?speed=150&defect_rate=0.5&seed=7&frames=10")
    assert p.params == {"speed": "150", "defect_rate": "0.5", "frames": "10"}
    assert p.seed == 7


@pytest.mark.parametrize("uri, fragment", [
    ("", "empty"),
    ("   ", "empty"),
    ("64", "out of range"),
    ("sample:", "sample name"),
    ("sample:../etc/passwd", "sample name"),
    ("synthetic:nope", "unknown synthetic scene 'nope'"),
    ("synthetic:conveyor?sped=3", "unknown parameter 'sped'"),
    ("synthetic:conveyor?speed=fast", "'speed'"),
    ("synthetic:conveyor?defect_rate=2", "out of bounds"),
    ("synthetic:conveyor?seed=x", "seed"),
    ("rtsp:///nohost", "no host"),
    ("rtsp://host:99999/x", "malformed"),
    ("ftp://host/x.mp4", "unsupported URL scheme 'ftp'"),
    ("webcam:0", "unknown source prefix"),
])
def test_parse_uri_errors_name_the_problem(uri, fragment):
    with pytest.raises(ValueError) as ei:
        parse_uri(uri)
    assert fragment in str(ei.value)


def test_parse_uri_rejects_non_strings():
    with pytest.raises(ValueError):
        parse_uri(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        parse_uri(True)  # type: ignore[arg-type]


def test_redact_uri_hides_password():
    assert redact_uri("rtsp://admin:s3cret@10.0.0.2:554/live") == "rtsp://admin:***@10.0.0.2:554/live"
    assert redact_uri("rtsp://10.0.0.2/live") == "rtsp://10.0.0.2/live"
    assert redact_uri("clips/a.mp4") == "clips/a.mp4"


def test_error_messages_never_leak_password():
    # port 9 on loopback: nothing listens -> refused quickly
    src = open_source("rtsp://admin:s3cret@127.0.0.1:9/live", backend="pyav", open_timeout_s=1)
    with pytest.raises(SourceError) as ei:
        src.open()
    assert "s3cret" not in str(ei.value) and "admin:***@127.0.0.1:9" in str(ei.value)


# ----------------------------------------------------------------------------- factory

def test_auto_backend_choice(tmp_path):
    assert open_source("rtsp://h/x").backend == "pyav"
    assert open_source("http://h/x.mjpg").backend == "pyav"
    assert open_source(str(tmp_path / "a.mp4")).backend == "pyav"
    assert open_source("0").backend == "opencv"
    assert open_source("/dev/video0").backend == "opencv"
    assert open_source("sample:bikes", samples_dir=tmp_path).backend == "pyav"
    assert open_source("rtsp://h/x", backend="opencv").backend == "opencv"
    assert open_source(str(tmp_path / "a.mp4"), backend="opencv").backend == "opencv"
    assert isinstance(open_source("synthetic:crossing"), SyntheticSource)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"backend": "gstreamer"}, "unknown video backend"),
    ({"open_timeout_s": 0}, "open_timeout_s"),
    ({"read_timeout_s": float("nan")}, "read_timeout_s"),
])
def test_factory_rejects_bad_arguments(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        open_source("rtsp://h/x", **kwargs)


def test_sources_satisfy_protocol(tmp_path):
    for src in (open_source("rtsp://h/x"), open_source(str(tmp_path / "a.avi")),
                open_source("synthetic:conveyor")):
        assert isinstance(src, VideoSource)


def test_sample_resolution(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"x")
    (tmp_path / "raw.avi").write_bytes(b"x")
    assert Path(open_source("sample:clip", samples_dir=tmp_path).target) == tmp_path / "clip.mp4"
    assert Path(open_source("sample:raw.avi", samples_dir=tmp_path).target) == tmp_path / "raw.avi"
    with pytest.raises(SourceError, match="sample clip 'gone' not found.*main.py assets"):
        open_source("sample:gone", samples_dir=tmp_path).open()


def test_synthetic_through_factory():
    src = open_source("synthetic:conveyor?frames=3&seed=5", synthetic_params={"speed": 200})
    assert src.is_live is False and src.fps == 25.0 and src.backend == "synthetic"
    assert src.scene.seed == 5 and src.scene.params["speed"] == 200.0
    src.open()
    imgs = [src.read() for _ in range(4)]
    assert [i is None for i in imgs] == [False, False, False, True]
    assert imgs[0].shape == (432, 768, 3)
    assert src.truth().index == 2
    src.close()
    with pytest.raises(SourceError):
        src.read()
    with pytest.raises(ValueError, match="unknown parameter 'bogus'"):
        open_source("synthetic:crossing", synthetic_params={"bogus": 1})


# ----------------------------------------------------------------------------- generated clips

def _write_clip(path: Path, n: int, size=(160, 120), fps=20.0) -> list[np.ndarray]:
    """An MJPG AVI whose frames carry their index as a grey level (robust to JPEG loss)."""
    w, h = size
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert vw.isOpened()
    frames = []
    for i in range(n):
        img = np.full((h, w, 3), (10 + i * 8) % 250, np.uint8)
        cv2.putText(img, str(i), (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
        vw.write(img)
        frames.append(img)
    vw.release()
    return frames


@pytest.mark.parametrize("backend", BACKENDS)
def test_generated_clip_reads_every_frame_in_order(backend, tmp_path):
    path = tmp_path / "clip.avi"
    written = _write_clip(path, 24)
    src = open_source(str(path), backend=backend)
    assert isinstance(src, OpenCVSource if backend == "opencv" else PyAVSource)
    src.open()
    got = []
    while (img := src.read()) is not None:
        got.append(img)
    src.close()
    assert len(got) == len(written)
    assert src.fps == pytest.approx(20.0)
    assert (src.width, src.height) == (160, 120)
    levels = [int(np.median(g[:, 100:])) for g in got]  # right part: plain grey level
    np.testing.assert_allclose(levels, [10 + i * 8 for i in range(24)], atol=3)
    assert src.stats["frames"] == 24


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_before_open_and_after_close(backend, tmp_path):
    path = tmp_path / "clip.avi"
    _write_clip(path, 5)
    src = open_source(str(path), backend=backend)
    with pytest.raises(SourceError, match="before open"):
        src.read()
    src.open()
    assert src.read() is not None
    src.close()
    src.close()
    assert src.read() is None          # closed behaves like end of stream
    src.open()                         # reopen starts again
    n = 0
    while src.read() is not None:
        n += 1
    assert n == 5
    src.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_close_from_another_thread_while_reading(backend, tmp_path):
    """A stop from another thread: close() returns at once; the reader ends with None."""
    path = tmp_path / "clip.avi"
    _write_clip(path, 60)

    def once() -> float | None:
        """Seconds close() took while the reader was mid-clip; None when a loaded machine let
        the reader finish the clip before close() ran (that run proves nothing: run again)."""
        src = open_source(str(path), backend=backend)
        src.open()
        results: list[object] = []

        def reader() -> None:
            while True:
                img = src.read()
                results.append(img)
                if img is None:
                    return
                time.sleep(0.002)

        t = threading.Thread(target=reader)
        t.start()
        assert wait_until(lambda: results, 5) is not None, "the reader got no frame"
        t0 = time.monotonic()
        src.close()
        took = time.monotonic() - t0
        n_at_close = len(results)
        t.join(timeout=5)
        assert not t.is_alive()
        assert results[-1] is None
        if n_at_close >= 61:
            return None
        # the reader ends right after close: at most the read in flight still returns a frame
        assert len(results) <= n_at_close + 3, (n_at_close, len(results))
        return took

    took = best_of(once, lambda s: s is not None and s < 0.5)
    assert any(s is not None for s in took), "the reader always finished the clip before close()"
    assert min(s for s in took if s is not None) < 0.5, took


def _garble_frames(src: Path, dst: Path, which: tuple[int, ...]) -> None:
    """Overwrite the start (SOI marker and headers) of the chosen JPEG frames with noise,
    keeping sizes, so the container index stays valid and only those packets are bad."""
    data = bytearray(src.read_bytes())
    arr = np.frombuffer(bytes(data), np.uint8)
    soi = np.flatnonzero((arr[:-1] == 0xFF) & (arr[1:] == 0xD8))
    rng = np.random.default_rng(0)
    for k in which:
        i = int(soi[k])
        data[i:i + 400] = rng.integers(0, 256, 400, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))


def test_corrupt_packets_are_counted_and_skipped(tmp_path):
    """PyAV: an undecodable packet is counted and skipped, decoding goes on."""
    clean, bad = tmp_path / "clip.avi", tmp_path / "bad.avi"
    _write_clip(clean, 30)
    _garble_frames(clean, bad, (10, 11, 12))
    src = open_source(str(bad), backend="pyav")
    src.open()
    n = 0
    while src.read() is not None:
        n += 1
    src.close()
    assert n == 27 and src.corrupt_packets == 3


def test_opencv_ends_cleanly_at_corrupt_packets(tmp_path):
    """OpenCV stops at the first undecodable frame (why auto uses PyAV for files), but it
    stops cleanly: frames before it, then None, no exception."""
    clean, bad = tmp_path / "clip.avi", tmp_path / "bad.avi"
    _write_clip(clean, 30)
    _garble_frames(clean, bad, (10, 11, 12))
    src = open_source(str(bad), backend="opencv")
    src.open()
    n = 0
    while src.read() is not None:
        n += 1
    src.close()
    assert 10 <= n <= 27


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_garbage_in_the_middle_is_survived(backend, tmp_path):
    path = tmp_path / "clip.avi"
    _write_clip(path, 30)
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    rng = np.random.default_rng(0)
    data[mid:mid + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.avi"
    bad.write_bytes(bytes(data))
    src = open_source(str(bad), backend=backend)
    src.open()
    n = 0
    while src.read() is not None:
        n += 1
    src.close()
    assert 15 <= n <= 30


def test_empty_file(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    for be in BACKENDS:
        with pytest.raises(SourceError, match="empty"):
            open_source(str(p), backend=be).open()


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(SourceError, match="not a regular file"):
        open_source(str(tmp_path)).open()
