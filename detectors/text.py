"""Text detector: box detection by DBNet (PP-OCRv4 det, ONNX Runtime) or EAST (OpenCV DNN),
then recognition of every box by Tesseract through tesserocr (see detectors/ocr.py).

Boxes are rotated rectangles `(cx, cy, w, h, angle_deg)` in OpenCV's RotatedRect convention;
`Detections.xyxy` carries their axis-aligned bounds (clipped to the frame); the rotated boxes
and the OCR confidences are columns of the same Detections (`data[ROTATED_BOX]`,
`data[TEXT_CONFIDENCE]`, names from core.types), row for row.

DBNet post-processing follows PaddleOCR's DBPostProcess with two deliberate differences:
- the box score is the mean probability over the connected region (PaddleOCR's "slow"
  score mode) computed for all regions at once with `np.bincount`, not a per-box polygon fill;
- the unclip (offset of the box polygon by area*ratio/perimeter) is done on the rotated
  rectangle directly, w += 2d and h += 2d, without pyclipper. For a rectangle this is exact:
  pyclipper's round-joined offset of a rectangle has exactly that minimum-area rectangle,
  which is what PaddleOCR takes from it.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from core.boxes import clip_xyxy
from core.config import TextConfig
from core.types import ROTATED_BOX, TEXT_CONFIDENCE, Detections, Frame
from detectors.base import DetectorError, as_bgr, choose_providers, config_section, frame_meta
from detectors.ocr import TessReader, rbox_to_quad

log = logging.getLogger("vigil.detectors.text")

__all__ = ["TextDetector", "db_postprocess", "decode_east", "east_nms", "db_input_size",
           "rbox_from_quads", "normalise_rboxes", "scale_rboxes", "EAST_OUTPUTS",
           "DEFAULT_DB_MODEL", "choose_providers"]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB_MODEL = "models/ch_PP-OCRv4_det_infer.onnx"
EAST_OUTPUTS = ("feature_fusion/Conv_7/Sigmoid", "feature_fusion/concat_3")
EAST_MEAN = (123.68, 116.78, 103.94)  # RGB means the EAST graph was trained with
DB_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
DB_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
EAST_HOWTO = (
    "EAST weights are not shipped: download frozen_east_text_detection.pb (the file OpenCV's "
    "samples/dnn/text_detection.py uses; listed in opencv_extra testdata/dnn/download_models.py "
    "as frozen_east_text_detection.tar.gz) or an ONNX export with outputs "
    f"{EAST_OUTPUTS[0]!r} and {EAST_OUTPUTS[1]!r}, and set detectors.text.model to its path")


# --------------------------------------------------------------------------------------
# geometry helpers (vectorised over all boxes)
# --------------------------------------------------------------------------------------
def rbox_from_quads(quads: np.ndarray) -> np.ndarray:
    """Rotated boxes (N,5) from corner quads (N,4,2) in `cv2.boxPoints` order.

    Width is the mean length of the top/bottom edges, height of the side edges, angle the
    direction of the top edge. Exact for rectangles; for parallelograms (a rotated box
    scaled differently in x and y) it is the natural rectangle approximation.
    """
    q = np.asarray(quads, dtype=np.float64).reshape(-1, 4, 2)
    c = q.mean(axis=1)
    top = q[:, 2] - q[:, 1]
    bot = q[:, 3] - q[:, 0]
    side_l = q[:, 0] - q[:, 1]
    side_r = q[:, 3] - q[:, 2]
    w = 0.5 * (np.hypot(top[:, 0], top[:, 1]) + np.hypot(bot[:, 0], bot[:, 1]))
    h = 0.5 * (np.hypot(side_l[:, 0], side_l[:, 1]) + np.hypot(side_r[:, 0], side_r[:, 1]))
    ang = np.degrees(np.arctan2(top[:, 1] + bot[:, 1], top[:, 0] + bot[:, 0]))
    return np.stack([c[:, 0], c[:, 1], w, h, ang], axis=1).astype(np.float32)


def normalise_rboxes(rboxes: np.ndarray) -> np.ndarray:
    """Make the long side the width and put the angle in [-90, 90).

    (w, h, a) and (h, w, a+90) are the same rectangle; text lines are wider than tall, so
    with w >= h a crop warped upright reads left to right.
    """
    r = np.asarray(rboxes, dtype=np.float32).reshape(-1, 5).copy()
    swap = r[:, 3] > r[:, 2]
    r[swap, 2], r[swap, 3] = r[swap, 3].copy(), r[swap, 2].copy()
    r[swap, 4] += 90.0
    r[:, 4] = np.mod(r[:, 4] + 90.0, 180.0) - 90.0
    return r


def scale_rboxes(rboxes: np.ndarray, sx: float, sy: float) -> tuple[np.ndarray, np.ndarray]:
    """Scale rotated boxes by (sx, sy) through their corners; returns (rboxes, quads)."""
    quads = rbox_to_quad(rboxes) * np.array([sx, sy], dtype=np.float32)
    return rbox_from_quads(quads), quads


def db_input_size(h: int, w: int, limit_side: int) -> tuple[int, int]:
    """PaddleOCR's DetResizeForTest (limit_type "max"): shrink so the longer side is at most
    `limit_side`, then round both sides to multiples of 32 (at least 32)."""
    ratio = min(1.0, float(limit_side) / max(h, w, 1))
    rh = max(int(round(h * ratio / 32.0)) * 32, 32)
    rw = max(int(round(w * ratio / 32.0)) * 32, 32)
    return rh, rw


# --------------------------------------------------------------------------------------
# DBNet post-processing
# --------------------------------------------------------------------------------------
def db_postprocess(prob: np.ndarray, det_threshold: float = 0.3, box_threshold: float = 0.6,
                   unclip_ratio: float = 1.5, min_box_size: float = 3.0,
                   max_candidates: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """DB probability map (H,W) -> rotated boxes (N,5) in map pixels and scores (N,).

    Regions of prob > det_threshold become minimum-area rectangles; a region is kept when its
    mean probability >= box_threshold and its short side >= min_box_size, then expanded by the
    DB unclip distance d = area * unclip_ratio / perimeter on each side (short side must stay
    >= min_box_size + 2, as in PaddleOCR). At most `max_candidates` regions (largest first).
    """
    p = np.asarray(prob, dtype=np.float32)
    if p.ndim != 2 or p.size == 0:
        return np.zeros((0, 5), np.float32), np.zeros(0, np.float32)
    p = np.nan_to_num(p, nan=0.0, posinf=1.0, neginf=0.0)
    bitmap = (p > det_threshold).astype(np.uint8)
    n_lab, labels = cv2.connectedComponents(bitmap, connectivity=8, ltype=cv2.CV_32S)
    if n_lab <= 1:
        return np.zeros((0, 5), np.float32), np.zeros(0, np.float32)
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=n_lab)
    means = np.bincount(flat, weights=p.ravel(), minlength=n_lab) / np.maximum(counts, 1)

    contours, hier = cv2.findContours(bitmap, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return np.zeros((0, 5), np.float32), np.zeros(0, np.float32)
    outer = np.flatnonzero(hier[0][:, 3] == -1)  # outer boundaries only (no hole contours)
    first = np.array([contours[i][0, 0] for i in outer], dtype=np.int64).reshape(-1, 2)
    lab = labels[first[:, 1], first[:, 0]]
    if outer.size > max_candidates:
        top = np.argsort(-counts[lab], kind="stable")[:max_candidates]
        outer, lab = outer[top], lab[top]
    # minAreaRect is one C call per region (a loop over regions, not over pairs)
    rects = np.array([(r[0][0], r[0][1], r[1][0], r[1][1], r[2])
                      for r in (cv2.minAreaRect(contours[i]) for i in outer)],
                     dtype=np.float64).reshape(-1, 5)
    scores = means[lab]
    short = np.minimum(rects[:, 2], rects[:, 3])
    keep = (short >= min_box_size) & (scores >= box_threshold)
    rects, scores = rects[keep], scores[keep]
    if rects.shape[0] == 0:
        return np.zeros((0, 5), np.float32), np.zeros(0, np.float32)
    w, h = rects[:, 2], rects[:, 3]
    d = w * h * unclip_ratio / np.maximum(2.0 * (w + h), 1e-9)
    rects[:, 2] = w + 2 * d
    rects[:, 3] = h + 2 * d
    keep = np.minimum(rects[:, 2], rects[:, 3]) >= min_box_size + 2
    return normalise_rboxes(rects[keep]), scores[keep].astype(np.float32)


# --------------------------------------------------------------------------------------
# EAST decoding
# --------------------------------------------------------------------------------------
def decode_east(scores: np.ndarray, geometry: np.ndarray, conf_threshold: float = 0.5
                ) -> tuple[np.ndarray, np.ndarray]:
    """EAST maps -> rotated boxes (N,5) `cx,cy,w,h,angle_deg` in input pixels and scores (N,).

    scores: (1,1,h,w) or (h,w); geometry: (1,5,h,w) or (5,h,w) with, per cell, distances to the
    top, right, bottom and left edges and the box angle in radians. Each cell sits at
    (4x, 4y) in the input. Same maths as OpenCV's samples/dnn/text_detection.py, over all
    cells at once.
    """
    s = np.asarray(scores, dtype=np.float32)
    g = np.asarray(geometry, dtype=np.float32)
    s = s.reshape(s.shape[-2:])
    g = g.reshape((5,) + g.shape[-2:])
    if g.shape[1:] != s.shape:
        raise ValueError(f"EAST score map {s.shape} and geometry {g.shape} disagree")
    ys, xs = np.nonzero(s >= conf_threshold)
    conf = s[ys, xs]
    d0, d1, d2, d3, ang = g[:, ys, xs]
    keep = np.isfinite(conf) & np.all(np.isfinite(g[:, ys, xs]), axis=0)
    if not np.all(keep):
        ys, xs, conf, d0, d1, d2, d3, ang = (v[keep] for v in (ys, xs, conf, d0, d1, d2, d3, ang))
    cos, sin = np.cos(ang), np.sin(ang)
    h = d0 + d2
    w = d1 + d3
    ox = xs * 4.0 + cos * d1 + sin * d2
    oy = ys * 4.0 - sin * d1 + cos * d2
    p1x, p1y = -sin * h + ox, -cos * h + oy
    p3x, p3y = -cos * w + ox, sin * w + oy
    out = np.stack([0.5 * (p1x + p3x), 0.5 * (p1y + p3y), w, h, -np.degrees(ang)], axis=1)
    return out.astype(np.float32).reshape(-1, 5), conf.astype(np.float32)


def east_nms(rboxes: np.ndarray, scores: np.ndarray, conf_threshold: float, iou_threshold: float,
             max_candidates: int | None = None) -> np.ndarray:
    """Rotated NMS with cv2.dnn.NMSBoxesRotated; returns kept indices, best first."""
    r = np.asarray(rboxes, dtype=np.float32).reshape(-1, 5)
    sc = np.asarray(scores, dtype=np.float32).reshape(-1)
    if r.shape[0] == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-sc, kind="stable")
    if max_candidates is not None and order.size > max_candidates:
        order = order[:max_candidates]  # bound NMS cost on dense maps
    boxes = [((float(a), float(b)), (float(c), float(d)), float(e))
             for a, b, c, d, e in r[order].tolist()]
    idx = cv2.dnn.NMSBoxesRotated(boxes, sc[order].tolist(), float(conf_threshold),
                                  float(iou_threshold))
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    return order[idx]


# --------------------------------------------------------------------------------------
# ONNX Runtime session (shared logic with the YOLO detector: CUDA only when available)
# --------------------------------------------------------------------------------------


def _ort_session(path: str, providers: str, threads: int) -> Any:
    import onnxruntime as ort

    chosen = choose_providers(providers, ort.get_available_providers(), "text")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads > 0:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        sess = ort.InferenceSession(path, sess_options=so, providers=chosen)
    except Exception as exc:
        raise DetectorError(f"text.model: ONNX Runtime could not load {path}: {exc}") from exc
    if sess.get_providers()[0] != chosen[0]:
        log.warning("text: asked for %s but ONNX Runtime runs on %s", chosen[0],
                    sess.get_providers()[0])
    log.info("text: DBNet %s on %s", Path(path).name, sess.get_providers()[0])
    return sess


def _resolve(path: str | Path) -> Path | None:
    p = Path(path).expanduser()
    for cand in (p, ROOT / p):
        if cand.is_file():
            return cand
    return None


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise DetectorError(f"text.{key}: {msg}")


def _no_text(seq: int, ts: float) -> Detections:
    """No rows, with the text detector's columns (so readers see the same layout)."""
    return Detections.empty(seq, ts).with_data(ROTATED_BOX, np.zeros((0, 5), np.float32)) \
        .with_data(TEXT_CONFIDENCE, np.zeros(0, np.float32))


# --------------------------------------------------------------------------------------
# the detector
# --------------------------------------------------------------------------------------
class TextDetector:
    """Finds text boxes (DBNet or EAST) and reads them with Tesseract.

    Every row of the returned Detections is one text box (a line for DBNet, a word or line for
    EAST) with label "text", class_id 0 and the box detector's score; `text` holds the
    recognised string, or None when Tesseract read nothing at or above `min_text_confidence`
    (such rows are kept unless keep_unread=False). With recognize=False no OCR runs and `text`
    is None. Extra columns, row for row: `data[ROTATED_BOX]` (N,5) float32 rotated boxes
    (cx, cy, w, h, angle_deg) in frame pixels and `data[TEXT_CONFIDENCE]` (N,) float32
    Tesseract confidence 0..100 (0 where nothing was read or recognize=False).

    Configured by its `detectors.text` section (core.config.TextConfig); keyword arguments
    override fields. For EAST there is no default model file (it is not shipped).
    """

    name = "text"
    class_names = ["text"]

    def __init__(self, cfg: TextConfig | None = None, /, **overrides: Any) -> None:
        self.cfg = c = config_section(TextConfig, cfg, overrides, "text")
        self._pool: Any = None  # ThreadPoolExecutor, created on first use when ocr_workers > 1
        self._lock = threading.Lock()  # cv2.dnn.Net is not thread-safe; ORT sessions are

        if c.box_detector == "dbnet":
            path = _resolve(c.model or DEFAULT_DB_MODEL)
            _check(path is not None, "model",
                   f"DBNet model {c.model or DEFAULT_DB_MODEL!r} not found (looked in the working "
                   f"directory and {ROOT}); run `python main.py assets` or point "
                   "detectors.text.model at ch_PP-OCRv4_det_infer.onnx")
            self.model = str(path)
            self._sess = _ort_session(self.model, c.providers, c.threads)
            self.provider = self._sess.get_providers()[0]
            self._inp = self._sess.get_inputs()[0].name
            self._net = None
        else:  # the schema requires a model path for EAST
            path = _resolve(str(c.model))
            _check(path is not None, "model", f"EAST model {c.model!r} not found. {EAST_HOWTO}")
            try:
                net = cv2.dnn.readNet(str(path))
            except cv2.error as exc:
                raise DetectorError(f"text.model: OpenCV DNN could not load {path}: {exc}") from exc
            _check(not net.empty(), "model", f"OpenCV DNN loaded an empty network from {path}")
            net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
            net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
            self.model = str(path)
            self._net = net
            self._sess = None
            self.provider = "OpenCV-DNN-CPU"
            log.info("text: EAST %s on OpenCV DNN (CPU), input %dx%d", path.name, *c.east_input)

        self._reader: TessReader | None = None
        if c.recognize:
            try:
                self._reader = TessReader(lang=c.lang, psm=c.psm, tessdata=c.tessdata,
                                          min_confidence=c.min_text_confidence,
                                          whitelist=c.whitelist, target_height=c.ocr_line_height)
            except RuntimeError as exc:  # no tessdata for `lang` / no tesserocr
                raise DetectorError(f"text.{'tessdata' if c.tessdata else 'lang'}: {exc}") from exc

    # -- box detection ------------------------------------------------------------------
    def _dbnet(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h, w = img.shape[:2]
        rh, rw = db_input_size(h, w, self.cfg.limit_side)
        x = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_LINEAR)
        # PaddleOCR feeds the decoded BGR image straight into NormalizeImage (training and
        # inference alike), so the ImageNet mean/std apply in BGR channel order here too.
        blob = (x.astype(np.float32) * (1.0 / 255.0) - DB_MEAN) / DB_STD
        blob = np.ascontiguousarray(blob.transpose(2, 0, 1)[None])
        prob = self._sess.run(None, {self._inp: blob})[0]
        prob = prob.reshape(prob.shape[-2:])
        c = self.cfg
        rb, sc = db_postprocess(prob, c.det_threshold, c.box_threshold, c.unclip_ratio,
                                c.min_box_size, c.max_candidates)
        rb, quads = scale_rboxes(rb, w / float(prob.shape[1]), h / float(prob.shape[0]))
        return normalise_rboxes(rb), sc, quads

    def _east(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h, w = img.shape[:2]
        c = self.cfg
        iw, ih = c.east_input
        blob = cv2.dnn.blobFromImage(img, 1.0, (iw, ih), EAST_MEAN, swapRB=True, crop=False)
        with self._lock:
            self._net.setInput(blob)
            scores, geometry = self._net.forward(list(EAST_OUTPUTS))
        rb, sc = decode_east(scores, geometry, c.east_confidence)
        short = np.minimum(rb[:, 2], rb[:, 3])
        ok = short >= c.min_box_size
        rb, sc = rb[ok], sc[ok]
        keep = east_nms(rb, sc, c.east_confidence, c.east_nms_iou,
                        max_candidates=c.max_candidates * 10)
        rb, sc = rb[keep], sc[keep]
        rb, quads = scale_rboxes(rb, w / float(iw), h / float(ih))
        return rb, sc, quads

    def boxes(self, image: np.ndarray | Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Box detection only: rotated boxes (N,5) in frame pixels, scores (N,), xyxy (N,4)
        (clipped to the frame), in reading order (top to bottom, then left to right)."""
        img = as_bgr(image)
        if img is None:
            return np.zeros((0, 5), np.float32), np.zeros(0, np.float32), np.zeros((0, 4),
                                                                                  np.float32)
        rb, sc, quads = self._dbnet(img) if self._sess is not None else self._east(img)
        h, w = img.shape[:2]
        if rb.shape[0] == 0:
            return rb.reshape(0, 5), sc.reshape(0), np.zeros((0, 4), np.float32)
        lo = quads.min(axis=1)
        hi = quads.max(axis=1)
        xyxy = np.concatenate([lo, hi], axis=1)
        clip_xyxy(xyxy, w, h, out=xyxy)
        ok = ((xyxy[:, 2] - xyxy[:, 0]) >= 1) & ((xyxy[:, 3] - xyxy[:, 1]) >= 1)
        ok &= np.all(np.isfinite(rb), axis=1) & np.isfinite(sc)
        rb, sc, xyxy = rb[ok], sc[ok], xyxy[ok]
        if rb.shape[0] == 0:
            return rb.reshape(0, 5), sc.reshape(0), xyxy.reshape(0, 4)
        # reading order: centres rotated by the median text angle (so tilted pages sort by
        # line), lines bucketed by half the median box height, then along the line
        a = np.deg2rad(float(np.median(rb[:, 4])))
        along = np.cos(a) * rb[:, 0] + np.sin(a) * rb[:, 1]
        across = -np.sin(a) * rb[:, 0] + np.cos(a) * rb[:, 1]
        line_h = max(float(np.median(rb[:, 3])), 1.0)
        order = np.lexsort((along, np.floor(across / (0.5 * line_h))))
        return (rb[order].astype(np.float32), sc[order].astype(np.float32),
                xyxy[order].astype(np.float32))

    # -- Detector protocol ------------------------------------------------------------------
    def detect(self, frame: Frame | np.ndarray) -> Detections:
        seq, ts = frame_meta(frame)
        if self._closed:  # close() released the session and the OCR: no rows
            return _no_text(seq, ts)
        try:
            img = as_bgr(frame)
            if img is None:
                return _no_text(seq, ts)
            rb, sc, xyxy = self.boxes(img)
            texts: list[str | None] = [None] * len(rb)
            conf = np.zeros(len(rb), np.float32)
            if self._reader is not None and len(rb):
                readings = self._read_boxes(img, rb)
                texts = [r.text for r in readings]
                conf = np.array([r.confidence for r in readings], np.float32)
                if not self.cfg.keep_unread:
                    keep = np.array([t is not None for t in texts], dtype=bool)
                    rb, sc, xyxy, conf = rb[keep], sc[keep], xyxy[keep], conf[keep]
                    texts = [t for t in texts if t is not None]
            n = len(rb)
            return Detections(xyxy, sc, np.zeros(n, np.int32), ["text"] * n, texts, seq, ts,
                              data={ROTATED_BOX: rb, TEXT_CONFIDENCE: conf})
        except Exception:  # the protocol: never raise on a frame, log and return nothing
            log.exception("text: detection failed on frame seq=%s", seq)
            return _no_text(seq, ts)

    def _read_boxes(self, img: np.ndarray, rb: np.ndarray) -> list[Any]:
        """OCR rotated boxes, spread over `ocr_workers` threads (tesserocr releases the GIL
        while recognising, and every worker thread has its own Tesseract API)."""
        reader = self._reader
        assert reader is not None
        if self.cfg.ocr_workers <= 1 or len(rb) < 2:
            return reader.read(img, rb)
        with self._lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.cfg.ocr_workers, thread_name_prefix="vigil-ocr")
            pool = self._pool
        chunks = np.array_split(np.arange(len(rb)), min(self.cfg.ocr_workers, len(rb)))
        parts = pool.map(lambda ix: reader.read(img, rb[ix]), chunks)
        return [r for part in parts for r in part]

    def read(self, image: np.ndarray, boxes: np.ndarray | Sequence[Sequence[float]]
             ) -> list[tuple[str | None, float]]:
        """OCR given boxes ((N,4) xyxy or (N,5) rotated) with this detector's OCR settings."""
        if self._reader is None:
            raise DetectorError("text.recognize is false: no reader configured")
        b = np.asarray(boxes, dtype=np.float64)
        img = as_bgr(image)
        if img is None:
            n = 0 if b.size == 0 else (1 if b.ndim == 1 else b.shape[0])
            return [(None, 0.0)] * n
        return [(r.text, r.confidence) for r in self._reader.read(img, b)]

    _closed = False  # set by close()

    def close(self) -> None:
        """Stop the OCR worker threads (if any), release the Tesseract APIs and the box
        detector (ONNX Runtime session / OpenCV network). Idempotent; detect() afterwards
        returns no rows."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            self._sess = self._net = None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if self._reader is not None:
            self._reader.close()
