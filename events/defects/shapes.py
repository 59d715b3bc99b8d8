"""Which golden reference a part is an instance of, and learning one per shape.

`ShapeLibrary` holds the references (one per part shape; a file reference first, if given)
and the learning pool (parts that matched none yet). A part is matched to a reference by
box size and dHash (pre-selection only: round parts of similar size hash alike), then by
the registered comparison: more changed pixels than `shape_mismatch` of the compared area
is another shape, not a defective part. A part matching none joins the pool; when
`learn_parts` pool members are alike (same size within `size_tolerance`, dHash within
`shape_dhash`, registered difference within `learn_mismatch` of the group's centre), they
become a new reference (`references.learn_reference`) and every pool part of that shape is
judged against it (retroactively, in crossing order).

The library decides *against which reference* a part is judged; `Judgement`s carry that
decision and the comparison, and the watch turns them into verdicts. Memory is bounded: the
pool (`pending_parts`: a part waits while at most this many later parts cross, then is
judged alone; `max_pending`: the oldest beyond it is given up, reference None) and the pairwise
dissimilarity cache (4096 pairs).
"""
from __future__ import annotations

import collections
import logging
import time
from typing import NamedTuple

import cv2
import numpy as np

from core.config import DefectWatchConfig
from core.imaging import hamming_distance
from events.defects.crops import PartCrop
from events.defects.references import (Comparison, Reference, canvas_size, compare,
                                       learn_reference)
from events.defects.registration import blur, register

log = logging.getLogger("vigil.events.defects")

__all__ = ["ShapeLibrary", "Judgement"]


class Judgement(NamedTuple):
    """A part with the reference it is judged against and the comparison (both None: no
    reference could be found or learned for it). retro: judged after it crossed."""

    part: PartCrop
    reference: Reference | None
    comparison: Comparison | None
    retro: bool


class ShapeLibrary:
    """References per part shape and the pool of parts waiting for one (see module notes).

    cfg: DefectWatchConfig. file_reference: a reference from an image, kept across reset().
    name: the camera, for log lines. `judge_ms` times every registered comparison (ms).
    """

    def __init__(self, cfg: DefectWatchConfig, file_reference: Reference | None = None,
                 name: str = "") -> None:
        self.cfg = cfg
        self.name = name
        self._file_reference = file_reference
        self.judge_ms: collections.deque[float] = collections.deque(maxlen=1000)
        self.reset()

    def reset(self) -> None:
        """Forget learned references and the pool (a file reference stays)."""
        self.references: list[Reference] = []
        if self._file_reference is not None:
            self.references.append(self._file_reference)
        self.pending: list[PartCrop] = []   # the learning pool, in crossing order
        self._dis_cache: collections.OrderedDict[tuple[int, int], float] = collections.OrderedDict()
        self.judge_ms.clear()

    # ------------------------------------------------------------------ comparison
    def compare(self, ref: Reference, item: PartCrop) -> Comparison:
        t0 = time.perf_counter()
        c = self.cfg
        out = compare(ref, item.gray, item.centre, c.blur_sigma, c.diff_threshold)
        self.judge_ms.append((time.perf_counter() - t0) * 1e3)
        return out

    def _size_ok(self, a: tuple[float, float], b: tuple[float, float]) -> bool:
        tol = self.cfg.size_tolerance
        return (abs(a[0] - b[0]) <= tol * max(b[0], 1.0)) and (abs(a[1] - b[1]) <= tol * max(b[1], 1.0))

    def candidates(self, item: PartCrop) -> list[Reference]:
        """References whose part size (and loosely dHash) fits `item`, closest size first."""
        refs = [r for r in self.references if self._size_ok(item.size, r.part_size)
                and hamming_distance(item.dhash, r.part_dhash) <= self.cfg.shape_dhash]
        return sorted(refs, key=lambda r: abs(item.size[0] - r.part_size[0])
                      + abs(item.size[1] - r.part_size[1]))

    def match(self, item: PartCrop) -> tuple[Reference, Comparison] | None:
        """The reference this part is an instance of (least mismatch within
        `shape_mismatch`), with the comparison against it; None when none fits."""
        best = None
        for ref in self.candidates(item):
            cmp = self.compare(ref, item)
            if cmp.mismatch <= self.cfg.shape_mismatch and (best is None or cmp.mismatch < best[1].mismatch):
                best = (ref, cmp)
        return best

    # ------------------------------------------------------------------ the learning pool
    def add(self, item: PartCrop) -> list[Judgement]:
        """Put a part that matched no reference into the pool. Returns what that settles:
        the judgements of a reference learned with it, then the pool's oldest parts given up
        beyond `max_pending` (reference None)."""
        self.pending.append(item)
        group = self._cluster(item, self.cfg.learn_parts)
        out = self._learn(group) if group else []
        while len(self.pending) > self.cfg.max_pending:
            out.append(Judgement(self.pending.pop(0), None, None, True))
        return out

    def drain(self) -> list[Judgement]:
        """End of stream: judge every part still in the pool. The biggest consistent group of
        at least min(3, learn_parts) alike parts learns a reference from what there is; a part
        left alone is judged against the nearest-size candidate reference (it is unlike all
        of them) or, with none, gets reference None."""
        out: list[Judgement] = []
        need = min(3, self.cfg.learn_parts)
        while self.pending:
            first = self.pending[0]
            m = self.match(first)
            if m is not None:
                self.pending.pop(0)
                out.append(Judgement(first, m[0], m[1], True))
                continue
            group = self._cluster(first, need)
            if group and first in group:
                out.extend(self._learn(group))
                continue
            self.pending.pop(0)
            out.append(self._judge_alone(first))
        return out

    def expire(self, part: int) -> list[Judgement]:
        """Give up waiting for parts that crossed more than `pending_parts` parts before
        `part` (the one crossing now): each is judged as at the end of a stream, against the
        nearest-size candidate reference or with none. Without this, a shape that never
        comes back keeps its crops (~0.5 MB each) in the pool until `max_pending` is
        reached, hours later on a real line: memory that grows all that time."""
        limit = self.cfg.pending_parts
        out: list[Judgement] = []
        while limit and self.pending and part - self.pending[0].part > limit:
            out.append(self._judge_alone(self.pending.pop(0)))
        return out

    def _judge_alone(self, item: PartCrop) -> Judgement:
        """A part no group of alike parts learned a reference for (retro)."""
        cands = self.candidates(item)
        if cands:
            return Judgement(item, cands[0], self.compare(cands[0], item), True)
        return Judgement(item, None, None, True)

    def _learn(self, group: list[PartCrop]) -> list[Judgement]:
        ref = learn_reference(group, self.cfg, len(self.references))
        self.references.append(ref)
        log.info("defect watch %s: reference %d learned from %d parts (%.0fx%.0f px)",
                 self.name, ref.index, len(group), *ref.part_size)
        out = []
        rest = []
        members = {it.part for it in group}
        for it in self.pending:  # pool order is crossing order: verdicts keep it
            m = self.match(it)
            if m is not None and m[0] is ref:
                out.append(Judgement(it, ref, m[1], True))
            elif it.part in members:   # learned from it but too far from the median: judge it
                out.append(Judgement(it, ref, self.compare(ref, it), True))
            else:
                rest.append(it)
        self.pending = rest
        return out

    def _dissimilarity(self, a: PartCrop, b: PartCrop) -> float:
        """Fraction of a's part canvas that differs from b after registration (no masks)."""
        key = (min(a.part, b.part), max(a.part, b.part))
        hit = self._dis_cache.get(key)
        if hit is not None:
            return hit
        cw, ch = canvas_size(a.size, self.cfg.margin)
        pa = cv2.getRectSubPix(a.gray, (cw, ch), a.centre)
        pb, _, _ = register(pa, b.gray, b.centre)
        pb = pb * (float(np.median(pa)) / max(float(np.median(pb)), 1.0))
        sigma = self.cfg.blur_sigma
        diff = cv2.absdiff(blur(pa, sigma), blur(pb, sigma))
        ch_ = cv2.morphologyEx((diff > self.cfg.diff_threshold).astype(np.uint8), cv2.MORPH_OPEN,
                               np.ones((2, 2), np.uint8))
        d = float(np.count_nonzero(ch_[3:-3, 3:-3])) / max((ch - 6) * (cw - 6), 1)
        self._dis_cache[key] = d
        while len(self._dis_cache) > 4096:
            self._dis_cache.popitem(last=False)
        return d

    def _cluster(self, new: PartCrop, need: int) -> list[PartCrop] | None:
        """The biggest consistent group of pool parts like `new`, if it has >= `need` members.

        Candidates: pool parts of `new`'s size (and loose dHash), at most the newest
        4 x learn_parts. Consistent: within `learn_mismatch` of one member (the group's
        centre) after registration; the centre with most such neighbours wins."""
        cands = [it for it in self.pending if self._size_ok(it.size, new.size)
                 and hamming_distance(it.dhash, new.dhash) <= self.cfg.shape_dhash]
        cands = cands[-4 * self.cfg.learn_parts:]
        if len(cands) < need:
            return None
        k = len(cands)
        d = np.zeros((k, k))
        for i in range(k):
            for j in range(i + 1, k):
                d[i, j] = d[j, i] = self._dissimilarity(cands[i], cands[j])
        near = d <= self.cfg.learn_mismatch
        score = near.sum(axis=1) * 10.0 - d.sum(axis=1) / max(k, 1)
        c = int(np.argmax(score))
        group = [cands[j] for j in np.flatnonzero(near[c]).tolist()]
        return group if len(group) >= need else None
