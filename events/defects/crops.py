"""A counted part's crop: the frame around its box (with a generous pad, since the judgement
may come later, once a reference is learned), its grey image and box-region dHash, and the
JPEG snapshot of the judged crop that goes with its verdict event."""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from core.boxes import crop_rects
from core.types import Frame
from events.defects.records import DEFECT, PASS
from events.defects.registration import dhash_gray

__all__ = ["PartCrop", "cut_part", "crop_snapshot"]


@dataclass(eq=False)
class PartCrop:
    """One counted part as cut from the frame it crossed the line on (compared by identity)."""

    part: int
    track_id: int
    frame_seq: int
    wall_ts: float
    box: tuple[float, float, float, float]      # in frame pixels
    crop: np.ndarray                            # BGR, padded around the box
    gray: np.ndarray                            # float32 grey of crop
    origin: tuple[int, int]                     # crop's top-left in the frame
    size: tuple[float, float]                   # box (w, h)
    dhash: int                                  # of the box region
    serial: str | None = None
    serial_conf: float = 0.0

    @property
    def centre(self) -> tuple[float, float]:
        """The box centre in crop coordinates."""
        x1, y1, x2, y2 = self.box
        return (x1 + x2) / 2 - self.origin[0], (y1 + y2) / 2 - self.origin[1]


def cut_part(frame: Frame, part: int, track_id: int, box: np.ndarray) -> PartCrop:
    """Crop `box` (xyxy pixels) out of `frame` with a pad of a quarter of its longer side
    (+8 px), clipped to the frame."""
    bw, bh = float(box[2] - box[0]), float(box[3] - box[1])
    pad = int(math.ceil(0.25 * max(bw, bh) + 8))
    H, W = frame.image.shape[:2]
    x0, y0, x1, y1 = crop_rects(box, W, H, pad)[0].tolist()
    crop = frame.image[y0:y1, x0:x1].copy()
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32)
    bx = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
    ix0, iy0 = int(round(bx[0])) - x0, int(round(bx[1])) - y0
    inner = gray[max(iy0, 0):max(iy0, 0) + max(int(bh), 1), max(ix0, 0):max(ix0, 0) + max(int(bw), 1)]
    return PartCrop(part, track_id, int(frame.seq), float(frame.wall_ts), bx, crop, gray, (x0, y0),
                    (bw, bh), dhash_gray(inner if inner.size else gray))


def crop_snapshot(item: PartCrop, verdict: str, changed: np.ndarray | None,
                  quality: int = 85) -> bytes | None:
    """The crop with the part's box in the verdict's colour, the changed pixels (`changed`,
    in reference coordinates centred on the part) outlined in red and "#part VERDICT serial"
    written on it, as JPEG bytes."""
    img = item.crop.copy()
    x0, y0 = item.origin
    x1, y1, x2, y2 = item.box
    colour = (0, 0, 255) if verdict == DEFECT else (0, 200, 0) if verdict == PASS else (0, 200, 255)
    cv2.rectangle(img, (int(x1 - x0), int(y1 - y0)), (int(x2 - x0), int(y2 - y0)), colour, 2)
    if changed is not None and changed.any():
        ch, cw = changed.shape
        cx, cy = item.centre
        cnts, _ = cv2.findContours(changed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        off = np.array([[int(round(cx - cw / 2)), int(round(cy - ch / 2))]], np.int32)
        cv2.drawContours(img, [c + off for c in cnts], -1, (0, 0, 255), 2)
    text = f"#{item.part} {verdict}" + (f" {item.serial}" if item.serial else "")
    cv2.putText(img, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else None
