"""Aligning a part to its golden reference: phase-correlation registration (sub-pixel
translation) and the image helpers the comparison shares (Hann window, blur, dHash)."""
from __future__ import annotations

import math

import cv2
import numpy as np

from core.imaging import dhash

__all__ = ["register", "hann", "blur", "dhash_gray"]


def dhash_gray(gray: np.ndarray) -> int:
    """The shared dHash (core.imaging.dhash) of a grey image, averaged in float32 (the
    watch's grey images are float32 already; a uint8 copy hashes the same)."""
    return dhash(np.asarray(gray, np.float32))


def hann(shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 Hann window for cv2.phaseCorrelate."""
    return cv2.createHanningWindow((shape[1], shape[0]), cv2.CV_32F)


def blur(g: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a grey image (none when sigma is 0)."""
    return cv2.GaussianBlur(g, (0, 0), sigma) if sigma > 0 else g


def register(ref: np.ndarray, img: np.ndarray, centre: tuple[float, float],
             window: np.ndarray | None = None, iterations: int = 2
             ) -> tuple[np.ndarray, tuple[float, float], float]:
    """Cut from `img` the (H, W) patch of `ref`'s size that best matches `ref`.

    Starts centred at `centre` (x, y in img), then moves by the phase-correlation shift
    (sub-pixel; `cv2.getRectSubPix` replicates borders). Returns (patch float32, final centre,
    response of the last correlation: ~1 for a clean match, ~0 for none).
    """
    h, w = ref.shape
    win = hann(ref.shape) if window is None else window
    cx, cy = float(centre[0]), float(centre[1])
    resp = 0.0
    r32 = np.asarray(ref, np.float32)
    src = np.asarray(img, np.float32)
    patch = cv2.getRectSubPix(src, (w, h), (cx, cy))
    for _ in range(max(1, iterations)):
        (dx, dy), resp = cv2.phaseCorrelate(r32, patch, win)
        if not (math.isfinite(dx) and math.isfinite(dy)) or abs(dx) > w / 3 or abs(dy) > h / 3:
            break
        cx, cy = cx + dx, cy + dy
        patch = cv2.getRectSubPix(src, (w, h), (cx, cy))
        if abs(dx) < 0.25 and abs(dy) < 0.25:
            break
    return patch, (cx, cy), float(resp)
