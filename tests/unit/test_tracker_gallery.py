"""Lazy dHashes and the time-spaced gallery: a detection is hashed only where its hash is
used (a choice the IoU gate leaves open, a track touching another, a gallery slot that is
due, a birth), and the results with every match hashed (gallery_interval_s 0) are the
tracker's old behaviour."""
from __future__ import annotations

import numpy as np

from core.types import Detections
from trackers.tracker import Tracker

FPS = 25.0


def _scene(frames=50, seed=0, cross=False):
    """Two textured people walking on a grey background, far apart (or crossing)."""
    rng = np.random.default_rng(seed)
    patches = [rng.integers(0, 256, (100, 40, 3), np.uint8) for _ in range(2)]
    out = []
    for f in range(frames):
        img = np.full((300, 640, 3), 128, np.uint8)
        xs = [60 + 4 * f, 500 - 4 * f] if cross else [60 + 2 * f, 400 + 2 * f]
        boxes = []
        for p, x in zip(patches, xs):
            img[100:200, x:x + 40] = p
            boxes.append([x, 100, x + 40, 200])
        out.append((img, Detections(np.asarray(boxes, np.float32), np.full(2, 0.9, np.float32),
                                    np.zeros(2, np.int32))))
    return out


def _run(trk, scene):
    res = []
    for f, (img, d) in enumerate(scene):
        t = trk.update(f / FPS, d, image=img)
        res.append(sorted(t.track_id.tolist()))
    return res


def test_far_apart_tracks_hash_only_when_the_gallery_is_due():
    scene = _scene()
    every = Tracker(gallery_interval_s=0.0)
    spaced = Tracker(gallery_interval_s=0.4)
    assert _run(every, scene) == _run(spaced, scene) == [[1, 2]] * 50
    assert every.stats["hashed"] == 100                    # every detection, every frame
    # births (2), the gallery of 4 filled on frames 1-3, then one hash per track every 0.4 s
    # (10 frames at 25 fps): frames 13, 23, 33, 43
    assert spaced.stats["hashed"] == 2 + 2 * 3 + 2 * 4, spaced.stats
    a = spaced._a
    assert (a["hash_n"] == 8).all() and np.allclose(a["hash_ts"], 43 / FPS)


def test_crossing_people_are_hashed_while_they_touch_and_keep_their_ids():
    scene = _scene(frames=60, cross=True)
    trk = Tracker(gallery_interval_s=0.4)
    ids = _run(trk, scene)
    assert all(i == [1, 2] for i in ids)
    ref = Tracker(gallery_interval_s=0.0)
    ids_ref = _run(ref, scene)
    assert ids_ref == ids
    final = {int(i): float(b[0]) for i, b in zip(trk._a["id"], trk._a["x"])}
    final_ref = {int(i): float(b[0]) for i, b in zip(ref._a["id"], ref._a["x"])}
    assert final.keys() == final_ref.keys() and all(abs(final[k] - final_ref[k]) < 1 for k in final)
    # the overlap frames were hashed; the frames apart were not (fewer hashes than boxes)
    assert 2 + 2 * 3 + 2 * 5 < trk.stats["hashed"] < ref.stats["hashed"] == 120


def test_no_image_no_hash():
    trk = Tracker()
    for f, (_, d) in enumerate(_scene(frames=10)):
        trk.update(f / FPS, d)
    assert trk.stats["hashed"] == 0
