"""The JPEG snapshot stored with an event: the frame with the event's box (and label) drawn."""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["frame_snapshot"]


def frame_snapshot(image: np.ndarray, box: tuple[float, float, float, float] | None,
                   label: str | None = None, quality: int = 80) -> bytes | None:
    """The frame with the box drawn in red (label above it), as JPEG bytes (None if encoding
    fails). The image is not modified."""
    img = image.copy()
    if box is not None:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 0, 255), 2)
        if label:
            cv2.putText(img, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1,
                        cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else None
