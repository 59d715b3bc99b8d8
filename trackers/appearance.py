"""Appearance for the tracker: 64-bit dHashes of detection crops and Hamming distances.

The kernels live in core/imaging.py (one dHash shared with the defect watch; see there for
the algorithm, its sampling and its speed); this module names them as the tracker uses
them. Hashes are uint64, the Hamming matrix is one XOR matrix and a popcount.
"""
from __future__ import annotations

from core.imaging import dhash, dhash_crops, hamming

__all__ = ["dhash_boxes", "hamming_matrix", "dhash_crop"]

dhash_boxes = dhash_crops   # (image, xyxy) -> (hashes uint64 (N,), valid bool (N,))
hamming_matrix = hamming    # (a, b) -> (len(a), len(b)) uint8 differing bits
dhash_crop = dhash          # one crop -> int
