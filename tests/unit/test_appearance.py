"""The tracker's appearance cue: dHashes of detection crops (core.imaging) and what
re-identification relies on, on real footage: a person's hash stays closer to itself from
frame to frame than to the other people in view."""
from __future__ import annotations

import cv2
import numpy as np

from core.boxes import iou_matrix
from core.imaging import dhash_crops, hamming
from tests.conftest import data_file
from trackers.appearance import dhash_boxes, dhash_crop, hamming_matrix


def test_tracker_names_the_shared_kernels():
    assert dhash_boxes is dhash_crops and hamming_matrix is hamming
    img = np.zeros((50, 60, 3), np.uint8)
    img[:, 30:] = 200
    h, v = dhash_boxes(img, np.array([[100, 100, 120, 130], [10, 10, 50, 40]], float))
    assert v.tolist() == [False, True] and h[0] == 0
    assert int(h[1]) == dhash_crop(img[10:40, 10:50])
    assert hamming_matrix(h, h).dtype == np.uint8


def test_same_person_next_frame_is_closer_than_other_people():
    video = data_file("video/opencv/vtest.avi")
    det = np.loadtxt(data_file("mot/MOT15/PETS09-S2L1/det/det.txt"), delimiter=",")
    cap = cv2.VideoCapture(str(video))
    prev = None
    same, other = [], []
    try:
        for fi in range(100):
            ok, img = cap.read()
            assert ok
            d = det[det[:, 0] == fi + 1]
            xyxy = d[:, 2:6].copy()
            xyxy[:, 2:] += xyxy[:, :2]
            hashes, valid = dhash_boxes(img, xyxy)
            xyxy, hashes = xyxy[valid], hashes[valid]
            m = hamming_matrix(hashes, hashes)
            other += m[np.triu_indices(len(hashes), 1)].tolist()
            if prev is not None and len(xyxy) and len(prev[0]):
                iou = iou_matrix(prev[0], xyxy)
                for a in range(iou.shape[0]):
                    b = int(np.argmax(iou[a]))
                    if iou[a, b] > 0.7:          # the same person, barely moved
                        same.append(int(hamming_matrix(prev[1][a:a + 1], hashes[b:b + 1])[0, 0]))
            prev = (xyxy, hashes)
    finally:
        cap.release()
    assert len(same) >= 100 and len(other) >= 100
    assert np.median(same) + 6 <= np.median(other)
