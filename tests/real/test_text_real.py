"""Text detection + recognition on real images (../shared/data/images/text) and on synthetic
frames, with the real PP-OCRv4 DBNet model and tesserocr.

Reference text: the paragraph in imageTextN.png (and its rotated copy imageTextR.png) was
transcribed by reading the image by eye; it is the preface of Szeliski's "Computer Vision:
Algorithms and Applications". The scene-text word crops were also read by eye.

Match rule for paragraphs: words are lower-cased and stripped of leading/trailing
punctuation; recall = multiset overlap / reference words (166), precision = overlap / words
read. Measured on the development machine: recall 0.994 / precision 1.000 (N), recall
0.988 / precision 0.994 (R). Thresholds below leave room for Tesseract/OpenCV version drift.
"""
from __future__ import annotations

import re
import threading
from collections import Counter

import cv2
import numpy as np
import pytest

from core.types import ROTATED_BOX, TEXT_CONFIDENCE, Frame
from detectors.text import DEFAULT_DB_MODEL, ROOT, TextDetector
from tests.conftest import data_file, require

tesserocr = pytest.importorskip("tesserocr")

REFERENCE = """technical details are too complex to cover in the book itself.
In teaching our courses, we have found it useful for the students to attempt a number of
small implementation projects, which often build on one another, in order to get them used to
working with real-world images and the challenges that these present. The students are then
asked to choose an individual topic for each of their small-group, final projects. (Sometimes
these projects even turn into conference papers!) The exercises at the end of each chapter
contain numerous suggestions for smaller mid-term projects, as well as more open-ended
problems whose solutions are still active research topics. Wherever possible, I encourage
students to try their algorithms on their own personal photographs, since this better motivates
them, often leads to creative variants on the problems, and better acquaints them with the
variety and complexity of real-world imagery.
In formulating and solving computer vision problems, I have often found it useful to draw
inspiration from three high-level approaches:"""
REFERENCE_LINES = 13


def words(text: str) -> list[str]:
    out = (re.sub(r"^\W+|\W+$", "", w).lower() for w in text.split())
    return [w for w in out if w]


def word_match(reference: str, hypothesis: str) -> tuple[float, float]:
    ref, hyp = Counter(words(reference)), Counter(words(hypothesis))
    hit = sum((ref & hyp).values())
    return hit / max(sum(ref.values()), 1), hit / max(sum(hyp.values()), 1)


def test_word_match_rule():
    assert word_match("The cat, the DOG.", "the dog the cat") == (1.0, 1.0)
    assert word_match("a b c d", "a b x") == (0.5, 2 / 3)


@pytest.fixture(scope="module")
def detector() -> TextDetector:
    p = ROOT / DEFAULT_DB_MODEL
    require(p.is_file(), f"DBNet model {p} not found: run `python main.py assets`")
    det = TextDetector()
    yield det
    det.close()


def _read_all(det: TextDetector, img: np.ndarray) -> tuple[str, int, np.ndarray]:
    out = det.detect(img)
    return " ".join(t for t in out.text if t), len(out), out.data[ROTATED_BOX]


def test_printed_paragraph(detector: TextDetector):
    img = cv2.imread(str(data_file("images/text/imageTextN.png")))
    text, n, rotated = _read_all(detector, img)
    recall, precision = word_match(REFERENCE, text)
    assert n == REFERENCE_LINES, f"{n} line boxes"
    assert recall >= 0.95 and precision >= 0.95, (recall, precision, text)
    # reading order: the paragraph comes back in order
    assert text.startswith("technical details") and text.rstrip().endswith("approaches:")
    # line boxes are horizontal
    assert np.all(np.abs(rotated[:, 4]) < 2.0)


def test_rotated_paragraph(detector: TextDetector):
    img = cv2.imread(str(data_file("images/text/imageTextR.png")))
    text, n, rotated = _read_all(detector, img)
    recall, precision = word_match(REFERENCE, text)
    assert n == REFERENCE_LINES, f"{n} line boxes"
    assert recall >= 0.93 and precision >= 0.93, (recall, precision, text)
    # the page is tilted by about 9 degrees: rotated boxes carry it, crops are deskewed
    ang = rotated[:, 4]
    assert np.all((ang > -12) & (ang < -6)), ang
    assert text.startswith("technical details")


@pytest.mark.parametrize("name, word", [
    ("scenetext_word01.jpg", "CHINA"),
    ("scenetext_word02.jpg", "HERE"),
    ("scenetext_word03.jpg", "riser"),  # light text on a dark red background
])
def test_scene_text_words(detector: TextDetector, name: str, word: str):
    img = cv2.imread(str(data_file(f"images/text/{name}")))
    out = detector.detect(img)
    assert len(out) == 1
    assert out.text[0] == word


def _synthetic_frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.full((360, 640, 3), (70, 90, 100), np.uint8)
    img = cv2.add(img, rng.integers(0, 25, img.shape, dtype=np.uint8))
    cv2.rectangle(img, (60, 60), (330, 130), (235, 235, 235), -1)  # a label: dark on light
    cv2.putText(img, "SN 0042", (80, 115), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (20, 20, 20), 3,
                cv2.LINE_AA)
    cv2.putText(img, "VIGIL TEST 123", (60, 260), cv2.FONT_HERSHEY_DUPLEX, 1.6,
                (250, 250, 250), 2, cv2.LINE_AA)  # light on dark
    return img


def test_synthetic_frame_reads_exactly(detector: TextDetector):
    """Match rule: exact strings (after Tesseract's whitespace is collapsed to single spaces)."""
    img = _synthetic_frame()
    out = detector.detect(Frame(img, seq=11, ts=2.0))
    assert (out.frame_seq, out.ts) == (11, 2.0)
    assert list(out.text) == ["SN 0042", "VIGIL TEST 123"]
    assert list(out.label) == ["text", "text"]
    assert np.all(out.data[TEXT_CONFIDENCE] > 80)
    # the detector's read() on its own axis-aligned boxes gives the same strings
    assert [t for t, _ in detector.read(img, out.xyxy)] == ["SN 0042", "VIGIL TEST 123"]
    # boxes surround the drawn strings
    assert out.xyxy[0, 0] < 85 and out.xyxy[0, 2] > 280 and out.xyxy[0, 1] < 85
    assert out.xyxy[1, 0] < 65 and out.xyxy[1, 2] > 430 and out.xyxy[1, 3] > 255


def test_synthetic_frame_rotated(detector: TextDetector):
    img = _synthetic_frame()
    m = cv2.getRotationMatrix2D((320, 180), 12, 1.0)
    rot = cv2.warpAffine(img, m, (640, 360), borderMode=cv2.BORDER_REPLICATE)
    out = detector.detect(rot)
    assert list(out.text) == ["SN 0042", "VIGIL TEST 123"]
    assert np.all(np.abs(out.data[ROTATED_BOX][:, 4] + 12) < 2)


def test_read_given_boxes_and_threads():
    """detectors.ocr.read (the helper the defect watch uses) on known boxes, from two threads
    at once: each thread has its own Tesseract API, results must not mix."""
    from detectors import ocr

    require(ocr.find_tessdata() is not None, "no tessdata with eng.traineddata")
    img = _synthetic_frame()
    boxes = np.array([[70, 70, 320, 128], [50, 215, 460, 275]], np.float32)
    rot_boxes = np.array([[195, 99, 250, 58, 0], [255, 245, 410, 60, 0]], np.float32)
    expected = ["SN 0042", "VIGIL TEST 123"]
    results: dict[str, list] = {}

    def work(name: str, b: np.ndarray) -> None:
        results[name] = [[r.text for r in ocr.read(img, b)] for _ in range(3)]

    threads = [threading.Thread(target=work, args=("xyxy", boxes)),
               threading.Thread(target=work, args=("rot", rot_boxes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results["xyxy"] == [expected] * 3
    assert results["rot"] == [expected] * 3
    assert ocr.read(img, np.zeros((0, 4))) == []
    assert ocr.read(np.zeros((0, 0, 3), np.uint8), boxes)[0].text is None


def test_reader_releases_apis_of_ended_threads():
    """A worker thread that ends (a restarted pool worker) leaves no Tesseract API behind."""
    from detectors import ocr

    require(ocr.find_tessdata() is not None, "no tessdata with eng.traineddata")
    reader = ocr.TessReader()
    img = _synthetic_frame()
    box = np.array([[70, 70, 320, 128]], np.float32)
    texts = []
    for _ in range(5):  # five short-lived threads, one after the other
        t = threading.Thread(target=lambda: texts.append(reader.read(img, box)[0].text))
        t.start()
        t.join(timeout=30)
    assert texts == ["SN 0042"] * 5
    assert reader.apis == 1  # only the last thread's API; the four ended ones were released
    reader.close()
    assert reader.apis == 0


def test_parallel_ocr_workers_same_result():
    p = ROOT / DEFAULT_DB_MODEL
    require(p.is_file(), f"DBNet model {p} not found")
    img = cv2.imread(str(data_file("images/text/imageTextN.png")))
    det = TextDetector(ocr_workers=2)
    try:
        text, n, _ = _read_all(det, img)
    finally:
        det.close()
    recall, _ = word_match(REFERENCE, text)
    assert n == REFERENCE_LINES and recall >= 0.95
