"""Reading a part's serial label: the best text lines of its crop go to Tesseract (psm 7,
whitelist), and the text is normalised with the watch's `serial_pattern` / `serial_format`
(default: "SN 0042")."""
from __future__ import annotations

import logging
import math
import re
from typing import Any

import numpy as np

from core.config import DefectWatchConfig
from events.defects.text_lines import find_text_lines, text_line_heights

log = logging.getLogger("vigil.events.defects")

__all__ = ["SerialReader"]


class SerialReader:
    """Reads serials with the watch's OCR settings (`cfg`: DefectWatchConfig).

    Tesseract is loaded on the first crop that shows a text line. When it is missing the
    reader says so once (naming `camera`) and turns itself off (`enabled` False): parts are
    still judged, without serials. `close()` releases the Tesseract API (idempotent; a later
    read builds it again).
    """

    def __init__(self, cfg: DefectWatchConfig, camera: str = "") -> None:
        self.cfg = cfg
        self.camera = camera
        self.enabled = bool(cfg.ocr)
        self._pattern = re.compile(cfg.serial_pattern)
        self._reader: Any = None

    def normalise(self, text: str | None) -> str | None:
        """OCR text -> canonical serial (e.g. "SN 0042"), or None when it does not match."""
        if not text:
            return None
        t = " ".join(text.upper().split())
        m = self._pattern.search(t)
        return self.cfg.serial_format.format(m.group(1)) if m else None

    def _tesseract(self) -> Any:
        if self._reader is None:
            from detectors.ocr import TessReader  # lazy: Tesseract loads its model on first use
            self._reader = TessReader(psm=self.cfg.ocr_psm, whitelist=self.cfg.ocr_whitelist or None,
                                      min_confidence=0.0)
        return self._reader

    def read(self, gray: np.ndarray, size: tuple[float, float]) -> tuple[str, float] | None:
        """(serial, confidence) read from a part's grey crop (float or uint8; `size` is the
        part box (w, h), which bounds the text line heights), or None."""
        if not self.enabled:
            return None
        g8 = np.clip(gray, 0, 255).astype(np.uint8)
        lines = find_text_lines(g8, *text_line_heights(size))
        if len(lines) == 0:
            return None
        try:
            reader = self._tesseract()
        except RuntimeError as e:  # Tesseract missing: say so once, keep judging parts
            log.warning("defect watch %s: OCR disabled: %s", self.camera, e)
            self.enabled = False
            return None
        H, W = g8.shape
        # a tight pad first (a sticker border inside the crop can spoil the whole line), then
        # a tighter one; at most 3 candidate lines
        for x1, y1, x2, y2 in lines[:3].tolist():
            lh = y2 - y1
            for fx, fy in ((0.25, 0.15), (0.1, 0.08)):
                px, py = int(math.ceil(fx * lh)) + 1, int(math.ceil(fy * lh)) + 1
                rd = reader.read_crop(g8[max(y1 - py, 0):min(y2 + py, H),
                                         max(x1 - px, 0):min(x2 + px, W)])
                serial = self.normalise(rd.text)
                if serial is not None and rd.confidence >= self.cfg.ocr_min_confidence:
                    return serial, rd.confidence
        return None

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
