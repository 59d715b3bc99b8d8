"""Greedy and class-aware non-maximum suppression for the detectors (IoU and areas are the
shared kernels of core/boxes.py, re-exported here as `iou_matrix` and `box_area`).

Greedy NMS is sequential by nature (a box can only suppress others if it survived),
so the loop runs over *kept* boxes, each compared against all remaining candidates in
one numpy operation: O(K*N) work with K kept boxes, never a Python loop over pairs.
Suppression uses IoU > iou_thr (strictly greater), like Darknet and cv2.dnn.NMSBoxes.
"""
from __future__ import annotations

import numpy as np

from core.boxes import area as box_area
from core.boxes import iou_matrix

__all__ = ["iou_matrix", "nms", "batched_nms", "box_area"]


def nms(xyxy: np.ndarray, scores: np.ndarray, iou_thr: float, score_thr: float = 0.0,
        max_det: int | None = None) -> np.ndarray:
    """Greedy non-maximum suppression.

    Returns int64 indices into the input rows, highest score first. Boxes with
    score < score_thr are dropped before suppression; a box is suppressed by a
    higher-scoring kept box when their IoU > iou_thr. Ties in score keep input order.
    """
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if boxes.shape[0] != sc.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {sc.shape[0]} scores")
    cand = np.flatnonzero(sc >= score_thr)
    if cand.size == 0 or (max_det is not None and max_det <= 0):
        return np.zeros(0, dtype=np.int64)
    order = cand[np.argsort(-sc[cand], kind="stable")]
    keep: list[int] = []
    limit = order.size if max_det is None else int(max_det)
    while order.size:
        i = int(order[0])
        keep.append(i)
        if len(keep) >= limit:
            break
        rest = order[1:]
        if rest.size == 0:
            break
        iou = iou_matrix(boxes[i], boxes[rest])[0]
        order = rest[iou <= iou_thr]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_thr: float,
                score_thr: float = 0.0, max_det: int | None = None) -> np.ndarray:
    """Class-aware NMS: boxes only suppress boxes of the same class.

    Uses the coordinate-offset trick: each class is shifted by class_id * (span + 1)
    so boxes of different classes can never overlap, then one plain NMS runs.
    """
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    cls = np.asarray(class_ids).reshape(-1)
    if boxes.shape[0] != cls.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {cls.shape[0]} class ids")
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    lo = float(boxes.min())
    span = float(boxes.max()) - lo + 1.0
    # remap class ids to 0..K-1 so huge/negative ids cannot blow up the offsets
    _, dense = np.unique(cls, return_inverse=True)
    shifted = (boxes - lo) + (dense.astype(np.float64) * span)[:, None]
    return nms(shifted, scores, iou_thr, score_thr=score_thr, max_det=max_det)
