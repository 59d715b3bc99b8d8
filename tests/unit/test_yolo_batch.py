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


def _blob_reference(det, img: np.ndarray) -> np.ndarray:
    """The pre-issue-18 preprocessing: a fresh canvas and cv2.dnn.blobFromImage."""
    s = det.cfg.input_size
    h, w = img.shape[:2]
    if det.cfg.letterbox:
        r = min(s / w, s / h)
        nw, nh = max(1, round(w * r)), max(1, round(h * r))
        px, py = (s - nw) // 2, (s - nh) // 2
        canvas = np.full((s, s, 3), 127, np.uint8)
        interp = cv2.INTER_AREA if r < 0.5 else cv2.INTER_LINEAR
        canvas[py:py + nh, px:px + nw] = cv2.resize(img, (nw, nh), interpolation=interp)
    else:
        canvas = cv2.resize(img, (s, s), interpolation=cv2.INTER_LINEAR)
    return cv2.dnn.blobFromImage(canvas, 1.0 / 255.0, swapRB=True, crop=False)


@pytest.mark.parametrize("letterbox", [True, False])
def test_preprocess_into_reused_buffers_is_bit_identical_to_blob_from_image(tmp_path, letterbox) -> None:
    """Issue 18: the blob is written into a per-thread input tensor (and a reused letterbox
    canvas) instead of a fresh cv2.dnn.blobFromImage array; the values are exactly the same,
    for images of different sizes one after another (a smaller image must not show the
    previous one's pixels in the padding), and a blob handed out earlier is not overwritten."""
    det = _random_detector(tmp_path, letterbox=letterbox)
    rng = np.random.default_rng(5)
    shapes = [(480, 640), (100, 700), (700, 90), (416, 416), (33, 47), (480, 640)]
    kept = []
    for h, w in shapes:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ref = _blob_reference(det, img)
        fresh, _ = det.preprocess(img)
        into, _ = det.preprocess(img, det._input(1))
        assert fresh.shape == ref.shape == into.shape and fresh.dtype == np.float32
        assert np.array_equal(fresh, ref) and np.array_equal(into, ref)
        kept.append((fresh, ref))
    for fresh, ref in kept:   # out=None blobs are the caller's: later frames leave them alone
        assert np.array_equal(fresh, ref)
    with pytest.raises(ValueError, match="out="):
        det.preprocess(np.zeros((10, 10, 3), np.uint8), np.zeros((1, 3, 8, 8), np.float32))


def test_threads_reusing_their_input_tensors_get_serial_results(tiny) -> None:
    """Each thread has its own input tensor: detections from 3 threads at once equal the
    serial ones, frame by frame."""
    import threading
    frames = _vtest_frames(6, step=25)
    serial = [tiny.detect(Frame(f, i, float(i))) for i, f in enumerate(frames)]
    got: dict[tuple[int, int], Detections] = {}

    def work(t: int) -> None:
        for rep in range(2):
            for i, f in enumerate(frames):
                got[(t, rep * 10 + i)] = tiny.detect(Frame(f, i, float(i)))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert len(got) == 3 * 2 * len(frames)
    for (t, k), d in got.items():
        _same(d, serial[k % 10])
