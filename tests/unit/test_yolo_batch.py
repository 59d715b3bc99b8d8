"""YOLO dynamic batch: the converted model takes any batch size, and detect_batch (one ONNX
Runtime run for all frames) gives exactly what detect gives frame by frame, on real frames of
vtest.avi with the real YOLOv3-tiny model and on a generated network."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from core.types import Detections, Frame
from detectors import base
from tests.conftest import data_file
from tests.unit.test_darknet import _random_detector


def _vtest_frames(n: int, step: int = 40) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(data_file("video/opencv/vtest.avi")), cv2.CAP_FFMPEG)
    out, k = [], 0
    while len(out) < n:
        ok, img = cap.read()
        if not ok:
            break
        if k % step == 0:
            out.append(img)
        k += 1
    cap.release()
    assert len(out) == n
    return out


def _same(a: Detections, b: Detections) -> None:
    assert a.frame_seq == b.frame_seq and (a.ts == b.ts or (a.ts != a.ts and b.ts != b.ts))
    assert len(a) == len(b)
    assert a.class_id.tolist() == b.class_id.tolist()
    assert (None if a.label is None else list(a.label)) == (None if b.label is None else list(b.label))
    np.testing.assert_allclose(a.xyxy, b.xyxy, rtol=0, atol=1e-3)
    np.testing.assert_allclose(a.score, b.score, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def tiny(models_dir: Path):
    from detectors.yolo import YoloDetector
    det = YoloDetector(model=str(models_dir / "yolov3-tiny.onnx"), providers="cpu",
                       **base.single_thread_overrides("yolo"))
    yield det
    det.close()


def test_real_model_input_has_a_dynamic_batch(tiny) -> None:
    shape = tiny.session.get_inputs()[0].shape
    assert isinstance(shape[0], str), shape  # symbolic: any batch size
    for out in tiny.session.get_outputs():
        assert isinstance(out.shape[0], str), out.shape


def test_real_frames_batched_equal_single(tiny) -> None:
    imgs = _vtest_frames(6)
    # different sizes in one batch: each frame has its own letterbox transform
    imgs.append(cv2.resize(imgs[0], (320, 240)))
    imgs.append(np.ascontiguousarray(imgs[1][:, ::-1]))
    frames = [Frame(img, seq=i, ts=i / 10.0, source=f"cam{i % 3}") for i, img in enumerate(imgs)]
    single = [tiny.detect(f) for f in frames]
    assert sum(len(d) for d in single) > 20  # people in vtest: not an empty comparison
    for size in (1, 2, 3, len(frames)):
        for i in range(0, len(frames), size):
            chunk = frames[i:i + size]
            got = tiny.detect_batch(chunk)
            assert len(got) == len(chunk)
            for d, s in zip(got, single[i:i + size]):
                _same(d, s)
    # through the protocol's function too (the pool's entry point)
    for d, s in zip(base.detect_batch(tiny, frames), single):
        _same(d, s)


def test_unusable_images_are_empty_and_keep_their_place(tiny) -> None:
    img = _vtest_frames(1)[0]
    frames = [None, Frame(img, seq=5, ts=0.5), np.zeros((0, 0, 3), np.uint8),
              Frame(img, seq=6, ts=0.6)]
    got = tiny.detect_batch(frames)
    assert [len(d) for d in got][0] == 0 and len(got[2]) == 0
    assert got[1].frame_seq == 5 and got[3].frame_seq == 6
    _same(got[1], tiny.detect(frames[1]))
    assert tiny.detect_batch([]) == []


def test_generated_network_batch_equals_single_and_close(tmp_path) -> None:
    det = _random_detector(tmp_path, conf_threshold=0.2, max_det=40)
    rng = np.random.default_rng(3)
    frames = [Frame(rng.integers(0, 255, (96 + 8 * i, 160 - 10 * i, 3), np.uint8), seq=i, ts=i * 0.04)
              for i in range(5)]
    single = [det.detect(f) for f in frames]
    assert sum(len(d) for d in single) > 0
    for d, s in zip(det.detect_batch(frames), single):
        _same(d, s)
    det.close()
    after = det.detect_batch(frames)
    assert [len(d) for d in after] == [0] * 5 and [d.frame_seq for d in after] == list(range(5))


def test_detect_batch_loops_over_detectors_without_a_batched_path() -> None:
    class Counting:
        name = "counting"
        class_names = ["x"]

        def __init__(self) -> None:
            self.seen: list[int] = []

        def detect(self, frame):
            self.seen.append(frame.seq)
            return Detections.empty(frame.seq, frame.ts)

        def close(self) -> None:
            pass

    det = Counting()
    assert isinstance(det, base.Detector) and not isinstance(det, base.BatchDetector)
    frames = [Frame(np.zeros((4, 4, 3), np.uint8), seq=s, ts=s) for s in (3, 1, 2)]
    out = base.detect_batch(det, frames)
    assert det.seen == [3, 1, 2] and [d.frame_seq for d in out] == [3, 1, 2]
    assert base.detect_batch(det, []) == []


def test_a_batch_of_the_wrong_length_is_an_error() -> None:
    class Short:
        name = "short"
        class_names: list[str] = []

        def detect(self, frame):
            return Detections.empty(frame.seq, frame.ts)

        def detect_batch(self, frames):
            return [self.detect(frames[0])]

        def close(self) -> None:
            pass

    frames = [Frame(np.zeros((4, 4, 3), np.uint8), seq=s, ts=s) for s in (0, 1)]
    with pytest.raises(base.DetectorError, match="1 results for 2 frames"):
        base.detect_batch(Short(), frames)


def test_single_thread_overrides_build_single_threaded_sessions(tmp_path) -> None:
    assert base.single_thread_overrides("yolo") == {"intra_op_threads": 1, "inter_op_threads": 1}
    assert base.single_thread_overrides("text") == {"threads": 1}
    assert base.single_thread_overrides("hog") == {}
    det = _random_detector(tmp_path, **base.single_thread_overrides("yolo"))
    assert det.cfg.intra_op_threads == 1 and det.cfg.inter_op_threads == 1
    det.close()
