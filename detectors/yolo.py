"""YOLOv3 (Darknet-converted ONNX) on ONNX Runtime.

The ONNX file comes from detectors/darknet.py: raw head outputs (N, A*(5+C), H, W) plus
anchors, class names and input format in its metadata. Decoding is Darknet's:
    cx = (sigmoid(tx) * s - (s - 1) / 2 + col) / W,   w = exp(tw) * anchor_w / input_w
    score = sigmoid(obj) * sigmoid(class logit)   (best class per box)
then class-aware NMS. Everything after the session run is vectorised numpy.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from core.boxes import clip_xyxy
from core.config import YoloConfig
from core.types import Detections, Frame
from detectors.base import (DetectorError, as_bgr, choose_providers, closed_guard, config_section,
                            frame_meta)
from detectors.darknet import FORMAT_VERSION, ensure_onnx, how_to_get
from detectors.nms import batched_nms

log = logging.getLogger("vigil.detectors.yolo")

ROOT = Path(__file__).resolve().parents[1]
PAD_VALUE = 127  # Darknet's letterbox fills with 0.5 gray
_MAX_LOG_WH = 12.0  # clip tw/th before exp: exp(12) * anchor is far past any image


@dataclass(frozen=True)
class _Transform:
    """How a source image was mapped into the network input (to map boxes back)."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    img_w: int
    img_h: int


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _resolve(path: str | Path) -> Path:
    """Relative paths are tried against the working directory, then the repository root."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    alt = ROOT / p
    return alt if alt.exists() else p




class YoloDetector:
    """YOLOv3 / YOLOv3-tiny detector, configured by its `detectors.yolo` section
    (core.config.YoloConfig); keyword arguments override fields.

    model is an .onnx from the converter, or a Darknet .weights file together with `cfg`
    (converted once to a cached .onnx beside it); a missing .onnx with its Darknet sources
    beside it is converted too. "auto" providers take CUDA when onnxruntime has it.
    letterbox false stretches to a square like cv2.dnn.blobFromImage.
    """

    name = "yolo"
    _closed = False

    def __init__(self, cfg: YoloConfig | None = None, /, **overrides: Any) -> None:
        self.cfg = c = config_section(YoloConfig, cfg, overrides, "yolo")
        import onnxruntime as ort  # imported here: no ORT work at module import

        wanted = choose_providers(c.providers, ort.get_available_providers(), "yolo")
        self.model_path = self._model_file(c.model, c.cfg, c.names)

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = c.intra_op_threads
        opts.inter_op_num_threads = c.inter_op_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # no busy-waiting between ops: the capture, tracker and web threads share the cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.model_path), opts, providers=wanted)
        except Exception as exc:  # noqa: BLE001 - ORT raises several unrelated types
            raise DetectorError(f"yolo: cannot load ONNX model {self.model_path}: {exc}; delete "
                                f"it and convert again ({how_to_get(self.model_path)})") from exc
        self.provider = self.session.get_providers()[0]
        if wanted[0] != self.provider:
            log.warning("yolo: asked for %s but ONNX Runtime runs on %s", wanted[0],
                        self.provider)

        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("vigil_format") != FORMAT_VERSION:
            raise DetectorError(
                f"yolo: {self.model_path} is not a Vigil-converted Darknet model (metadata "
                f"vigil_format={meta.get('vigil_format')!r}, expected {FORMAT_VERSION!r}); "
                "give the Darknet cfg + weights instead and it will be converted")
        self.input_name = meta.get("input_name", "images")
        self.output_names: list[str] = json.loads(meta["outputs"])
        self.anchors = [np.asarray(a, np.float32).reshape(-1, 2)
                        for a in json.loads(meta["anchors"])]
        self.scale_x_y = [float(s) for s in json.loads(meta.get("scale_x_y", "[]"))] or \
            [1.0] * len(self.anchors)
        self.num_classes = int(meta["num_classes"])
        self.class_names: list[str] = self._class_names(meta, c.names)
        self._keep = self._class_filter(c.classes)
        # per-thread input tensor and letterbox canvas, reused across frames (issue 18: a fresh
        # 2 MB float blob per frame churns and fragments the heap; blobFromImage also costs
        # ~2 ms against ~0.2 ms written into a buffer, bit-identical)
        self._buffers = threading.local()
        log.info("yolo: %s (%d classes, %d heads, input %d, letterbox=%s) on %s",
                 self.model_path.name, self.num_classes, len(self.anchors), c.input_size,
                 c.letterbox, self.provider)

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _model_file(model: str | Path, cfg: str | Path | None,
                    names: str | Path | None) -> Path:
        """The .onnx to load; Darknet sources are converted once (DarknetError, a
        DetectorError, names the bad file and how to get it)."""
        path = _resolve(model)
        names_p = _resolve(names) if names else None
        if path.suffix.lower() == ".weights":
            if not cfg:
                raise DetectorError(f"yolo: model {path} is a Darknet .weights file; set "
                                    "`cfg` to its .cfg so it can be converted")
            return ensure_onnx(_resolve(cfg), path, None, names_p)
        if path.is_file():
            return path
        # a missing .onnx with its Darknet sources beside it: convert them once
        src_cfg = _resolve(cfg) if cfg else path.with_suffix(".cfg")
        src_w = path.with_suffix(".weights")
        if src_cfg.is_file() and src_w.is_file():
            coco = path.parent / "coco.names"
            if names_p is None and path.stem == "yolov3-tiny" and coco.is_file():
                names_p = coco
            return ensure_onnx(src_cfg, src_w, path, names_p)
        raise DetectorError(f"yolo: model file not found: {path}; {how_to_get(path)}")

    def _class_names(self, meta: dict[str, str], names: str | Path | None) -> list[str]:
        if names:
            p = _resolve(names)
            if not p.is_file():
                raise DetectorError(f"yolo: class names file not found: {p}; {how_to_get(p)}")
            got = [ln.strip() for ln in p.read_text(errors="replace").splitlines() if ln.strip()]
        else:
            got = json.loads(meta.get("names", "[]")) or [str(i) for i in
                                                          range(self.num_classes)]
        if len(got) != self.num_classes:
            raise DetectorError(f"yolo: {len(got)} class names for a model with "
                                f"{self.num_classes} classes ({names or self.model_path})")
        return list(got)

    def _class_filter(self, classes: Sequence[str]) -> np.ndarray | None:
        if not classes:
            return None
        index = {n: i for i, n in enumerate(self.class_names)}
        unknown = [c for c in classes if c not in index]
        if unknown:
            raise DetectorError(f"yolo: unknown classes {unknown}; the model knows: "
                                f"{', '.join(self.class_names)}")
        keep = np.zeros(self.num_classes, bool)
        keep[[index[c] for c in classes]] = True
        return keep

    # ------------------------------------------------------------------ inference
    def preprocess(self, img: np.ndarray, out: np.ndarray | None = None
                   ) -> tuple[np.ndarray, _Transform]:
        """BGR uint8 image -> (1,3,S,S) RGB float blob in [0,1] and the box transform; the
        blob is written into `out` ((1,3,S,S) or (3,S,S) float32) when given, else a new array.
        Same values as cv2.dnn.blobFromImage(canvas, 1/255, swapRB=True)."""
        h, w = img.shape[:2]
        s = self.cfg.input_size
        if self.cfg.letterbox:
            r = min(s / w, s / h)
            nw, nh = max(1, int(round(w * r))), max(1, int(round(h * r)))
            px, py = (s - nw) // 2, (s - nh) // 2
            canvas = self._canvas(s)
            canvas.fill(PAD_VALUE)
            interp = cv2.INTER_AREA if r < 0.5 else cv2.INTER_LINEAR
            canvas[py:py + nh, px:px + nw] = cv2.resize(img, (nw, nh), interpolation=interp)
            tf = _Transform(nw / w, nh / h, px, py, w, h)
        else:
            canvas = cv2.resize(img, (s, s), interpolation=cv2.INTER_LINEAR)
            tf = _Transform(s / w, s / h, 0.0, 0.0, w, h)
        if out is None:
            blob = np.empty((1, 3, s, s), np.float32)
        elif out.dtype != np.float32 or out.size != 3 * s * s or not out.flags.c_contiguous:
            raise ValueError(f"yolo: preprocess out= must be a C-contiguous float32 (1,3,{s},{s})"
                             f" or (3,{s},{s}) array, got {out.dtype} {out.shape}")
        else:
            blob = out.reshape(1, 3, s, s)  # a view: the values land in `out`
        scale = np.float32(1.0 / 255.0)
        for ch in range(3):  # BGR -> RGB planes, uint8 * float32 (what blobFromImage computes)
            np.multiply(canvas[:, :, 2 - ch], scale, out=blob[0, ch], dtype=np.float32)
        return blob, tf

    def _canvas(self, s: int) -> np.ndarray:
        """This thread's (S,S,3) letterbox canvas (the caller fills all of it)."""
        c = getattr(self._buffers, "canvas", None)
        if c is None or c.shape[0] != s:
            c = self._buffers.canvas = np.empty((s, s, 3), np.uint8)
        return c

    def _input(self, n: int) -> np.ndarray:
        """This thread's (n,3,S,S) float32 input tensor: a view of a buffer grown to the
        largest batch seen. The session has let go of it when run() returns, and no other
        thread writes it, so the next frame of this thread may reuse it."""
        s = self.cfg.input_size
        b = getattr(self._buffers, "input", None)
        if b is None or b.shape[0] < n or b.shape[2] != s:
            b = self._buffers.input = np.empty((max(n, 1), 3, s, s), np.float32)
        return b[:n]

    def raw(self, blob: np.ndarray) -> list[np.ndarray]:
        """Raw head outputs for an input blob (what cv2.dnn's pre-yolo conv layers give)."""
        session = self.session
        if session is None:
            raise DetectorError("yolo: the detector is closed")
        return session.run(self.output_names, {self.input_name: blob})

    def decode(self, outputs: Sequence[np.ndarray], in_w: int, in_h: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw head outputs -> (xyxy in network-input pixels, score, class_id), thresholded."""
        boxes, scores, cls_ids = [], [], []
        thr = self.cfg.conf_threshold
        for out, anchors, sxy in zip(outputs, self.anchors, self.scale_x_y):
            a = anchors.shape[0]
            _, _, gh, gw = out.shape
            p = out[0].reshape(a, 5 + self.num_classes, gh, gw)
            obj = _sigmoid(p[:, 4])                                    # (A, H, W)
            ai, gy, gx = np.nonzero(obj > thr)    # score <= obj, so this loses nothing
            if ai.size == 0:
                continue
            cand = p[ai, :, gy, gx]                                    # (K, 5+C)
            logits = cand[:, 5:]
            best = np.argmax(logits, axis=1)
            score = obj[ai, gy, gx] * _sigmoid(logits[np.arange(best.size), best])
            ok = score > thr
            if self._keep is not None:
                ok &= self._keep[best]
            if not np.any(ok):
                continue
            cand, ai, gy, gx, best, score = cand[ok], ai[ok], gy[ok], gx[ok], best[ok], score[ok]
            off = (sxy - 1.0) / 2.0
            cx = (_sigmoid(cand[:, 0]) * sxy - off + gx) * (in_w / gw)
            cy = (_sigmoid(cand[:, 1]) * sxy - off + gy) * (in_h / gh)
            bw = np.exp(np.minimum(cand[:, 2], _MAX_LOG_WH)) * anchors[ai, 0]
            bh = np.exp(np.minimum(cand[:, 3], _MAX_LOG_WH)) * anchors[ai, 1]
            boxes.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1))
            scores.append(score)
            cls_ids.append(best)
        if not boxes:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)
        return (np.concatenate(boxes).astype(np.float32), np.concatenate(scores).astype(np.float32),
                np.concatenate(cls_ids).astype(np.int32))

    def postprocess(self, outputs: Sequence[np.ndarray], tf: _Transform, seq: int = -1,
                    ts: float = float("nan")) -> Detections:
        s = self.cfg.input_size
        xyxy, score, cls = self.decode(outputs, s, s)
        finite = np.all(np.isfinite(xyxy), axis=1) & np.isfinite(score)
        if not np.all(finite):
            xyxy, score, cls = xyxy[finite], score[finite], cls[finite]
        if score.size == 0:
            return Detections.empty(seq, ts)
        xyxy = (xyxy - np.array([tf.pad_x, tf.pad_y, tf.pad_x, tf.pad_y], np.float32)) / \
            np.array([tf.scale_x, tf.scale_y, tf.scale_x, tf.scale_y], np.float32)
        clip_xyxy(xyxy, tf.img_w, tf.img_h, out=xyxy)
        keep = batched_nms(xyxy, score, cls, self.cfg.nms_iou, max_det=self.cfg.max_det)
        xyxy, score, cls = xyxy[keep], score[keep], cls[keep]
        labels = [self.class_names[c] for c in cls.tolist()]
        return Detections(xyxy, score, cls, label=labels, frame_seq=seq, ts=ts)

    @closed_guard
    def detect(self, frame: Frame | np.ndarray) -> Detections:
        seq, ts = frame_meta(frame)
        img = as_bgr(frame)
        if img is None:
            return Detections.empty(seq, ts)
        blob, tf = self.preprocess(img, self._input(1))
        return self.postprocess(self.raw(blob), tf, seq, ts)

    def detect_batch(self, frames: Sequence[Frame | np.ndarray]) -> list[Detections]:
        """Detections of every frame, in order, from ONE session run over the stacked blobs
        (the converted model's batch dimension is dynamic). Unusable images give empty
        Detections and are left out of the batch; a closed detector (or a batch in flight
        while another thread closed it) gives empty Detections for every frame."""
        metas = [frame_meta(f) for f in frames]
        if self._closed:
            return [Detections.empty(*m) for m in metas]
        out: list[Detections | None] = [None] * len(metas)
        imgs = [as_bgr(f) for f in frames]
        batch = self._input(sum(img is not None for img in imgs))
        tfs: list[tuple[int, _Transform]] = []
        for i, img in enumerate(imgs):
            if img is None:
                out[i] = Detections.empty(*metas[i])
                continue
            _, tf = self.preprocess(img, batch[len(tfs)])
            tfs.append((i, tf))
        if tfs:
            try:
                raw = self.raw(batch)
            except Exception:
                if self._closed:
                    return [Detections.empty(*m) for m in metas]
                raise
            for k, (i, tf) in enumerate(tfs):
                out[i] = self.postprocess([o[k:k + 1] for o in raw], tf, *metas[i])
        return out  # type: ignore[return-value] - every slot is filled above

    def close(self) -> None:
        """Release the ONNX Runtime session (idempotent; detect() then finds nothing, raw()
        raises DetectorError)."""
        self._closed = True
        self.session = None

    def __repr__(self) -> str:
        return (f"YoloDetector(model={self.model_path.name!r}, input_size={self.cfg.input_size}, "
                f"provider={self.provider!r})")
