"""Vigil's multi-object tracker: time-aware Kalman motion, IoU + dHash association,
a tentative/confirmed/coasting/lost life cycle, and re-identification of lost tracks.

Streaming contract (see DESIGN.md): `update(frame, detections)` for every frame the detector
ran on (also with no detections: that is how misses are counted), `predict(ts)` for the
frames in between (pure: it changes nothing), `reset()` to clear. Track ids are per instance.

Life cycle of a track
  tentative  born from an unmatched detection scoring at least `birth_score` (ByteTrack's
             split: weaker ones only extend tracks); not reported; dropped at its first miss;
             confirmed after `min_hits` matched updates (at once during the first
             `warmup_frames` updates after start/reset: objects in view at start-up are real,
             and waiting for min_hits would hide them - worth ~2 MOTA points on MOT15).
  confirmed  reported with the filtered box; det_index = matched detection row.
  coasting   a confirmed track with no match: reported on its Kalman prediction with
             det_index = -1 while it has been unmatched for at most `coast_report_s`.
  lost       unmatched for more than `max_age_s` seconds or `max_age_frames` updates (or its
             prediction left the image). With appearance on, a lost track with a dHash stays
             re-identifiable for `reid_window_s`: an unmatched detection of the same class,
             within `dhash_threshold` bits and inside a motion-plausible radius, gets its id
             back. After that the id is gone for good.

Events (`pop_events()`): ("started", id) when a track is confirmed, ("lost", id) when it
stops being tracked, ("recovered", id) when re-identification brings it back, ("ended", id)
when its id can no longer come back (immediately after "lost" without appearance).

Memory is bounded: at most `max_tracks` live tracks and `max_tracks` lost ones, trails are
fixed-size ring buffers, and the event queue keeps the newest `max_events`.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from core.config import TrackerConfig, resolve_section
from core.types import Detections, Frame, Tracks
from trackers.appearance import dhash_boxes, hamming_matrix
from trackers.association import centre_distance_matrix, gated_assignment, iou_matrix
from trackers.kalman import BoxKalman, cxcywh_to_xyxy, xyxy_to_cxcywh

__all__ = ["Tracker"]

_K = 4  # dHashes remembered per track (the minimum distance over them is used)

# Per-track columns of the live table and of the lost table.
_LIVE = ("x", "P", "id", "cls", "label", "score", "hits", "misses", "age", "confirmed",
         "last_ts", "det_index", "hash", "hash_n", "hash_ts", "trail", "trail_n")
_ORU = ("x_obs", "P_obs", "z_obs")   # only kept while oru_min_gap > 0
_OCM = ("obs_hist", "obs_n")         # only kept while direction_weight > 0
_LOST = ("id", "cls", "label", "xywh", "vel", "ts", "hash", "hits")


class Tracker:
    """Multi-object tracker configured by its `tracker:` section (core.config.TrackerConfig,
    where every parameter's default and bounds are declared). Keyword arguments override
    fields of `cfg` (or of the defaults): `Tracker(max_age_s=2)`; bad ones raise ValueError
    naming the key."""

    def __init__(self, cfg: TrackerConfig | None = None, /, **overrides: Any) -> None:
        self.params: TrackerConfig = resolve_section(TrackerConfig, cfg, overrides, where="tracker")
        p = self.params
        self.kf = BoxKalman(std_meas=p.std_meas, std_pos0=2 * p.std_meas, std_vel0=p.std_vel0,
                            accel=p.accel)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget every track, id and event; the next id is 1 again."""
        p = self.params
        L = p.trail_length
        self._a: dict[str, np.ndarray] = {
            "x": np.zeros((0, 8)), "P": np.zeros((0, 8, 8)), "id": np.zeros(0, np.int64),
            "cls": np.zeros(0, np.int32), "label": np.zeros(0, object),
            "score": np.zeros(0, np.float32), "hits": np.zeros(0, np.int32),
            "misses": np.zeros(0, np.int32), "age": np.zeros(0, np.int32),
            "confirmed": np.zeros(0, bool), "last_ts": np.zeros(0), "det_index": np.zeros(0, np.int32),
            "hash": np.zeros((0, _K), np.uint64), "hash_n": np.zeros(0, np.int64),
            "hash_ts": np.zeros(0), "trail": np.zeros((0, L, 2), np.float32),
            "trail_n": np.zeros(0, np.int64),
            # filter state right after the last match, and that match's box (for ORU)
            "x_obs": np.zeros((0, 8)), "P_obs": np.zeros((0, 8, 8)), "z_obs": np.zeros((0, 4)),
            # the last direction_delta + 1 observed centres (a ring) and how many were pushed (OCM)
            "obs_hist": np.zeros((0, p.direction_delta + 1, 2)), "obs_n": np.zeros(0, np.int64),
        }
        self._cols = _LIVE + (_ORU if p.oru_min_gap > 0 else ()) + (_OCM if p.direction_weight > 0 else ())
        self._lost: dict[str, np.ndarray] = {
            "id": np.zeros(0, np.int64), "cls": np.zeros(0, np.int32), "label": np.zeros(0, object),
            "xywh": np.zeros((0, 4)), "vel": np.zeros((0, 4)), "ts": np.zeros(0),
            "hash": np.zeros((0, _K), np.uint64), "hits": np.zeros(0, np.int32),
        }
        self._t: float | None = None
        self._seq = -1
        self._updates = 0
        self._next_id = 1
        self._img_size: tuple[int, int] | None = None
        self._any_label = False
        self._events: deque[tuple[str, int]] = deque(maxlen=self.params.max_events)
        self.stats = {"updates": 0, "stale_updates": 0, "dropped_births": 0, "dropped_invalid": 0,
                      "reidentified": 0, "events_dropped": 0, "hashed": 0}

    @property
    def n_live(self) -> int:
        return int(self._a["id"].shape[0])

    @property
    def n_lost(self) -> int:
        return int(self._lost["id"].shape[0])

    def pop_events(self) -> list[tuple[str, int]]:
        """Life-cycle events since the last call, oldest first."""
        out = list(self._events)
        self._events.clear()
        return out

    def _emit(self, kind: str, ids: np.ndarray) -> None:
        for i in ids.tolist():
            if len(self._events) == self._events.maxlen:
                self.stats["events_dropped"] += 1
            self._events.append((kind, int(i)))

    def _keep(self, mask: np.ndarray) -> None:
        a = self._a
        for k in self._cols:
            a[k] = a[k][mask]

    # ------------------------------------------------------------------ API
    def update(self, frame_or_ts: Frame | float, detections: Detections,
               image: np.ndarray | None = None) -> Tracks:
        """Apply the detections computed on one frame; return the tracks to show on it."""
        p = self.params
        if isinstance(frame_or_ts, Frame):
            ts, seq = float(frame_or_ts.ts), int(frame_or_ts.seq)
            if image is None:
                image = frame_or_ts.image
        else:
            ts = float(frame_or_ts)
            seq = detections.frame_seq
        if not math.isfinite(ts):
            raise ValueError(f"update() needs a finite timestamp, got {ts}")
        if image is not None:
            self._img_size = (int(image.shape[1]), int(image.shape[0]))
        self.stats["updates"] += 1
        self._updates += 1
        dt = 0.0 if self._t is None else ts - self._t
        if dt < 0:  # an older frame than the last update: apply without going back in time
            self.stats["stale_updates"] += 1
            dt = 0.0
            ts = self._t  # type: ignore[assignment]
        self._t = ts
        self._seq = seq

        a = self._a
        self.kf.predict(a["x"], a["P"], dt)
        bad = ~np.isfinite(a["x"]).all(axis=1)
        if bad.any():
            self.stats["dropped_invalid"] += int(bad.sum())
            self._emit("ended", a["id"][bad & a["confirmed"]])
            self._keep(~bad)
            a = self._a

        nd = len(detections)
        if nd and detections.label is not None:
            self._any_label = True
        det_xyxy = detections.xyxy.astype(np.float64)
        det_c = xyxy_to_cxcywh(det_xyxy)
        det_cls = detections.class_id
        use_app = p.appearance and image is not None and nd > 0
        # dHashes are computed lazily, only for the detections that use one (see _hash)
        det_hash, det_hv = np.zeros(nd, np.uint64), np.zeros(nd, bool)
        hashed = np.zeros(nd, bool)

        def need(idx: np.ndarray) -> None:
            if use_app:
                self._hash(image, det_xyxy, idx, det_hash, det_hv, hashed)

        if use_app and p.gallery_interval_s <= 0:
            need(np.arange(nd))  # every match feeds the gallery: one call for all, up front

        # ---- association
        nt = a["id"].shape[0]
        det_index = np.full(nt, -1, np.int32)
        rows = np.empty(0, np.int64)
        cols = np.empty(0, np.int64)
        crowded = None
        if nt and nd:
            iou = iou_matrix(cxcywh_to_xyxy(a["x"]), det_xyxy)
            if use_app and p.gallery_interval_s > 0:
                crowded = (iou > 0).sum(axis=0) > 1
            same = a["cls"][:, None] == det_cls[None, :]
            gate = (iou >= p.iou_gate) & same
            cost = 1.0 - iou
            ham = None
            if use_app and p.appearance_weight > 0:
                # the cost decides only where the gate leaves a choice: a detection with
                # more than one admissible track, or admissible for a track that has more
                rc, cc = gate.sum(axis=1), gate.sum(axis=0)
                amb = (cc > 1) | (gate & (rc > 1)[:, None]).any(axis=0)
                if amb.any():
                    need(np.flatnonzero(amb))
                    ham = self._track_hamming(a["hash"], a["hash_n"], det_hash, det_hv)
                    cost = cost + p.appearance_weight * np.where(ham >= 0, ham, 0) / 64.0
            if p.direction_weight > 0:
                cost = cost + p.direction_weight * self._direction_cost(gate, det_c, detections.score)
            rows, cols = gated_assignment(cost, gate)
            if p.distance_gate > 0:
                rows, cols = self._second_stage(rows, cols, det_c, same, need, det_hash, det_hv)
        det_index[rows] = cols.astype(np.int32)
        # births: unmatched detections; ByteTrack's split: low scores extend tracks, never start one
        free = np.ones(nd, bool)
        free[cols] = False
        if p.birth_score > 0:
            free &= detections.score >= p.birth_score
        due = np.full(rows.size, p.gallery_interval_s <= 0)
        if use_app and rows.size and p.gallery_interval_s > 0:
            # the gallery fills on a track's first matches, then takes a hash at most every
            # gallery_interval_s, and while the track touches another one (an occlusion may follow)
            due = (a["hash_n"][rows] == 0) | (ts - a["hash_ts"][rows] >= p.gallery_interval_s - 1e-9)
            if crowded is not None:
                due |= crowded[cols]
            due |= a["hash_n"][rows] < _K
        # one hashing call for the gallery and the births (re-identification, first hash)
        if use_app and p.gallery_interval_s > 0:
            need(np.concatenate([cols[due], np.flatnonzero(free)]))

        # ---- matched tracks
        if rows.size:
            if p.oru_min_gap > 0:
                self._reupdate(rows, det_c[cols], ts)
            x_new, P_new = self.kf.update(a["x"][rows], a["P"][rows], det_c[cols])
            a["x"][rows] = x_new
            a["P"][rows] = P_new
            if p.oru_min_gap > 0:
                a["x_obs"][rows] = x_new
                a["P_obs"][rows] = P_new
                a["z_obs"][rows] = det_c[cols]
            if p.direction_weight > 0:
                self._observe(rows, det_c[cols])
            a["hits"][rows] += 1
            a["misses"][rows] = -1  # +1 below
            a["last_ts"][rows] = ts
            a["score"][rows] = detections.score[cols]
            if detections.label is not None:
                a["label"][rows] = detections.label[cols]
            if use_app:
                hv = due & det_hv[cols]
                r, c = rows[hv], cols[hv]
                a["hash"][r, a["hash_n"][r] % _K] = det_hash[c]
                a["hash_n"][r] += 1
                a["hash_ts"][r] = ts
        a["misses"] += 1
        a["age"] += 1
        a["det_index"] = det_index

        # ---- confirmation
        newly = ~a["confirmed"] & (a["hits"] >= p.min_hits)
        if newly.any():
            a["confirmed"] |= newly
            self._emit("started", a["id"][newly])

        # ---- removal: tentative misses, lost confirmed tracks
        unmatched = a["misses"] > 0
        if unmatched.any():
            lost = a["confirmed"] & unmatched & (
                (ts - a["last_ts"] > p.max_age_s) | (a["misses"] > p.max_age_frames)
                | self._outside_image(a["x"]))
            drop = (~a["confirmed"] & unmatched) | lost
            if lost.any():
                self._to_lost(lost, ts)
            if drop.any():
                self._keep(~drop)
                a = self._a

        # ---- births (re-identified or new)
        if free.any():
            self._births(np.flatnonzero(free), det_c, detections, det_hash, det_hv, ts)
            a = self._a
        self._purge_lost(ts)

        # ---- trails (ring buffers of reported centres)
        n = a["id"].shape[0]
        if n:
            slot = a["trail_n"] % p.trail_length
            a["trail"][np.arange(n), slot] = a["x"][:, :2]
            a["trail_n"] += 1
        return self._output(ts, a["x"][:, :4], a["det_index"])

    def predict(self, ts: float) -> Tracks:
        """Tracks extrapolated to time ts (no state change; det_index is -1 throughout)."""
        ts = float(ts)
        a = self._a
        if self._t is None or a["id"].shape[0] == 0:
            return Tracks.empty(-1, ts)
        dt = max(0.0, ts - self._t)
        x = a["x"]
        box = x[:, :4] + dt * x[:, 4:]
        box[:, 2:4] = np.maximum(box[:, 2:4], self.kf.min_size)  # never a degenerate box
        return self._output(ts, box, np.full(a["id"].shape[0], -1, np.int32), seq=-1)

    def trails(self, track_ids: Any = None) -> dict[int, np.ndarray]:
        """Recent centres (oldest first, (n, 2) float32) of confirmed tracks, or of the given ids."""
        a = self._a
        L = self.params.trail_length
        if track_ids is None:
            idx = np.flatnonzero(a["confirmed"])
        else:
            idx = np.flatnonzero(np.isin(a["id"], np.asarray(list(track_ids), dtype=np.int64)))
        out: dict[int, np.ndarray] = {}
        for i in idx.tolist():
            n = int(a["trail_n"][i])
            buf = a["trail"][i]
            if n <= L:
                out[int(a["id"][i])] = buf[:n].copy()
            else:
                s = n % L
                out[int(a["id"][i])] = np.concatenate([buf[s:], buf[:s]])
        return out

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _track_hamming(t_hash: np.ndarray, t_n: np.ndarray, d_hash: np.ndarray,
                       d_valid: np.ndarray) -> np.ndarray:
        """(T, D) smallest Hamming distance between each track's remembered hashes and each
        detection's hash; -1 where either side has none."""
        nt, nd = t_hash.shape[0], d_hash.shape[0]
        ham = hamming_matrix(t_hash.ravel(), d_hash).reshape(nt, _K, nd).min(axis=1).astype(np.int16)
        ham[(t_n == 0)[:, None] | ~d_valid[None, :]] = -1
        return ham

    def _hash(self, image, det_xyxy, idx, det_hash, det_hv, hashed) -> None:
        """dHash the detections `idx` not hashed yet in this update, in place."""
        idx = idx[~hashed[idx]]
        if idx.size:
            h, v = dhash_boxes(image, det_xyxy[idx])
            det_hash[idx] = h
            det_hv[idx] = v
            hashed[idx] = True
            self.stats["hashed"] += int(idx.size)

    def _second_stage(self, rows, cols, det_c, same, need, det_hash, det_hv):
        """Coasting confirmed tracks left unmatched by IoU vs unmatched detections, gated by a
        scale-free centre distance (and the dHash threshold when both hashes exist)."""
        a = self._a
        p = self.params
        t_free = np.ones(a["id"].shape[0], bool)
        t_free[rows] = False
        t_free &= a["confirmed"] & (a["misses"] > 0)
        d_free = np.ones(det_c.shape[0], bool)
        d_free[cols] = False
        if not t_free.any() or not d_free.any():
            return rows, cols
        ti, di = np.flatnonzero(t_free), np.flatnonzero(d_free)
        xt = a["x"][ti, :4]
        dist = centre_distance_matrix(xt, det_c[di])
        hr = xt[:, None, 3] / np.maximum(det_c[None, di, 3], 1e-6)
        gate = (dist <= p.distance_gate) & same[np.ix_(ti, di)] & (hr < 1.5) & (hr > 1 / 1.5)
        cost = dist
        need(di[gate.any(axis=0)])
        if det_hv[di].any():
            hm = self._track_hamming(a["hash"][ti], a["hash_n"][ti], det_hash[di], det_hv[di])
            gate &= (hm < 0) | (hm <= p.dhash_threshold)
            cost = dist + p.appearance_weight * np.where(hm >= 0, hm, 0) / 64.0
        r2, c2 = gated_assignment(cost, gate)
        return np.concatenate([rows, ti[r2]]), np.concatenate([cols, di[c2]])

    def _direction_cost(self, gate: np.ndarray, det_c: np.ndarray, score: np.ndarray) -> np.ndarray:
        """OC-SORT's observation-centric momentum (OCM): for each gated (track, detection)
        pair, the angle between the track's observed direction of motion and the direction
        from its last observation to the detection, as a fraction of pi (0: straight on,
        1: turning back), weighted by the detection's score as OC-SORT does. It decides
        between people crossing, where IoU with the prediction alone is ambiguous. Computed
        only for the rows and columns where the gate leaves a choice; 0 elsewhere and for
        tracks with fewer than two observations."""
        a = self._a
        out = np.zeros(gate.shape)
        rc, cc = gate.sum(axis=1), gate.sum(axis=0)
        amb = gate & ((rc > 1)[:, None] | (cc > 1)[None, :])
        amb &= (a["obs_n"] >= 2)[:, None]
        if not amb.any():
            return out
        r, c = np.nonzero(amb)
        k = self.params.direction_delta
        m = k + 1
        n_obs = a["obs_n"][r]
        hist = a["obs_hist"][r]
        at = np.arange(r.size)
        newest = hist[at, (n_obs - 1) % m]
        # the track's direction: from its observation k matches before its newest to the newest
        tdir = newest - hist[at, np.maximum(n_obs - 1 - k, 0) % m]
        tn = np.hypot(tdir[:, 0], tdir[:, 1])
        # the candidate's: from the observation k steps before the detection to the detection
        d = det_c[c, :2] - hist[at, np.maximum(n_obs - k, 0) % m]
        n = np.hypot(d[:, 0], d[:, 1])
        # no direction while the track moves less than the detector noise
        ok = (n > self._still(det_c[c, 3])) & (tn > self._still(a["x"][r, 3]))
        cosang = np.einsum("ij,ij->i", tdir, d) / np.maximum(n * tn, 1e-12)
        ang = np.arccos(np.clip(cosang, -1.0, 1.0)) / math.pi
        out[r[ok], c[ok]] = ang[ok] * score[c[ok]]
        return out

    def _still(self, h: np.ndarray) -> np.ndarray:
        """Displacement below which a direction is noise: 2 sigma of the difference of two
        detections (each with std_meas x height of position noise)."""
        return 2.0 * math.sqrt(2.0) * self.params.std_meas * h

    def _observe(self, rows: np.ndarray, z: np.ndarray) -> None:
        """Push matched centres into the observation rings (directions are computed when used)."""
        a = self._a
        n = a["obs_n"][rows]
        a["obs_hist"][rows, n % (self.params.direction_delta + 1)] = z[:, :2]
        a["obs_n"][rows] = n + 1

    def _reupdate(self, rows: np.ndarray, z_new: np.ndarray, ts: float) -> None:
        """OC-SORT's observation-centric re-update (Cao et al., CVPR 2023): a track matched
        again after g missed updates has coasted on its old velocity, and its covariance grew
        with it, so a plain update would split the error between a wrong position and a
        wrong velocity. Instead its state is restored to the one after its last match and
        the filter is run along a virtual trajectory: g updates with boxes interpolated
        linearly between the last observation and the new one, at evenly spaced times
        (then the caller's normal update with the new box). Tracks with the same gap share
        their last-match time, so each gap length is one batched pass (in place on a["x"],
        a["P"]; gaps are rare, so this costs nothing on most updates)."""
        a = self._a
        gap = a["misses"][rows]
        sel = gap >= self.params.oru_min_gap
        if not sel.any():
            return
        kf = self.kf
        for g in np.unique(gap[sel]).tolist():
            m = (gap == g) & sel
            r = rows[m]
            n = g + 1
            dt = (ts - float(a["last_ts"][r[0]])) / n
            x, P = a["x_obs"][r].copy(), a["P_obs"][r].copy()
            z0, z1 = a["z_obs"][r], z_new[m]
            for k in range(1, n):
                kf.predict(x, P, dt)
                x, P = kf.update(x, P, z0 + (k / n) * (z1 - z0))
            kf.predict(x, P, dt)
            a["x"][r] = x
            a["P"][r] = P

    def _outside_image(self, x: np.ndarray) -> np.ndarray:
        if self._img_size is None:
            return np.zeros(x.shape[0], bool)
        w, h = self._img_size
        return ((x[:, 0] + 0.5 * x[:, 2] < 0) | (x[:, 0] - 0.5 * x[:, 2] > w)
                | (x[:, 1] + 0.5 * x[:, 3] < 0) | (x[:, 1] - 0.5 * x[:, 3] > h))

    def _to_lost(self, lost: np.ndarray, ts: float) -> None:
        """Move confirmed tracks that are lost to the re-identification table (or end them)."""
        a = self._a
        p = self.params
        ids = a["id"][lost]
        self._emit("lost", ids)
        keep = (a["hash_n"][lost] > 0) & bool(p.appearance and p.reid_window_s > 0)
        if (~keep).any():
            self._emit("ended", ids[~keep])
        if keep.any():
            sel = np.flatnonzero(lost)[keep]
            # the state at the last match, not the drifted coasting prediction
            age = (ts - a["last_ts"][sel])[:, None]
            x = a["x"][sel]
            xywh = x[:, :4] - age * x[:, 4:]
            new = {"id": a["id"][sel], "cls": a["cls"][sel], "label": a["label"][sel],
                   "xywh": xywh, "vel": x[:, 4:].copy(), "ts": a["last_ts"][sel],
                   "hash": a["hash"][sel], "hits": a["hits"][sel]}
            L = self._lost
            for k in _LOST:
                L[k] = np.concatenate([L[k], new[k]])

    def _purge_lost(self, ts: float) -> None:
        L = self._lost
        if L["id"].shape[0] == 0:
            return
        keep = (ts - L["ts"]) <= self.params.reid_window_s
        over = int(keep.sum()) - self.params.max_tracks
        if over > 0:  # too many: the oldest go first
            order = np.argsort(L["ts"], kind="stable")
            keep[order[np.flatnonzero(keep[order])[:over]]] = False
        if not keep.all():
            self._emit("ended", L["id"][~keep])
            for k in _LOST:
                L[k] = L[k][keep]

    def _reidentify(self, free: np.ndarray, det_c: np.ndarray, det_cls: np.ndarray,
                    det_hash: np.ndarray, det_hv: np.ndarray, ts: float):
        """Match free detections with lost tracks: same class, dHash within the threshold,
        centre inside a radius that grows with the time since the track was last seen."""
        L = self._lost
        p = self.params
        cand = free[det_hv[free]]
        if cand.size == 0 or L["id"].shape[0] == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        ham = hamming_matrix(L["hash"].ravel(), det_hash[cand]).reshape(-1, _K, cand.size).min(axis=1)
        elapsed = np.maximum(ts - L["ts"], 0.0)
        h = L["xywh"][:, 3]
        speed = np.hypot(L["vel"][:, 0], L["vel"][:, 1])
        # extrapolate at most one second of the old velocity; beyond that, only the radius grows
        centre = L["xywh"][:, :2] + np.minimum(elapsed, 1.0)[:, None] * L["vel"][:, :2]
        radius = p.reid_radius * h + (speed + p.reid_speed * h) * elapsed
        dc = det_c[cand]
        dist = np.hypot(centre[:, None, 0] - dc[None, :, 0], centre[:, None, 1] - dc[None, :, 1])
        hr = h[:, None] / np.maximum(dc[None, :, 3], 1e-6)
        gate = ((ham <= p.dhash_threshold) & (dist <= radius[:, None])
                & (L["cls"][:, None] == det_cls[None, cand]) & (hr < 2.0) & (hr > 0.5))
        r, c = gated_assignment(ham.astype(np.float64) + dist / np.maximum(radius[:, None], 1e-6), gate)
        return r, cand[c]

    def _births(self, free: np.ndarray, det_c: np.ndarray, dets: Detections,
                det_hash: np.ndarray, det_hv: np.ndarray, ts: float) -> None:
        p = self.params
        a = self._a
        room = p.max_tracks - a["id"].shape[0]
        if free.size > room:
            self.stats["dropped_births"] += int(free.size - max(room, 0))
            if room <= 0:
                return
            free = free[np.argsort(-dets.score[free], kind="stable")[:room]]
            free.sort()
        n = free.size
        ids = np.empty(n, np.int64)
        confirmed = np.full(n, self._updates <= p.warmup_frames or p.min_hits <= 1)
        hits = np.ones(n, np.int32)
        revived = np.zeros(n, bool)
        if p.appearance and p.reid_window_s > 0 and self._lost["id"].shape[0]:
            lr, dcol = self._reidentify(free, det_c, dets.class_id, det_hash, det_hv, ts)
            if lr.size:
                pos = np.searchsorted(free, dcol)
                L = self._lost
                ids[pos] = L["id"][lr]
                hits[pos] = L["hits"][lr] + 1
                confirmed[pos] = True
                revived[pos] = True
                self.stats["reidentified"] += int(lr.size)
                self._emit("recovered", L["id"][lr])
                keep = np.ones(L["id"].shape[0], bool)
                keep[lr] = False
                for k in _LOST:
                    L[k] = L[k][keep]
        fresh = ~revived
        nf = int(fresh.sum())
        ids[fresh] = np.arange(self._next_id, self._next_id + nf)
        self._next_id += nf
        x, P = self.kf.initiate(det_c[free])
        hv = det_hv[free]
        hsh = np.repeat(det_hash[free][:, None], _K, axis=1)
        label = dets.label[free] if dets.label is not None else np.full(n, None, object)
        new = {"x": x, "P": P, "id": ids, "cls": dets.class_id[free].astype(np.int32),
               "label": label, "score": dets.score[free], "hits": hits,
               "misses": np.zeros(n, np.int32), "age": np.ones(n, np.int32),
               "confirmed": confirmed, "last_ts": np.full(n, ts),
               "det_index": free.astype(np.int32), "hash": hsh, "hash_n": hv.astype(np.int64),
               "hash_ts": np.full(n, ts),
               "trail": np.zeros((n, p.trail_length, 2), np.float32),
               "trail_n": np.zeros(n, np.int64),
               "x_obs": x, "P_obs": P, "z_obs": det_c[free],
               "obs_hist": np.repeat(det_c[free][:, None, :2], p.direction_delta + 1, axis=1),
               "obs_n": np.ones(n, np.int64)}
        for k in self._cols:
            a[k] = np.concatenate([a[k], new[k]])
        started = confirmed & fresh
        if started.any():
            self._emit("started", ids[started])

    def _output(self, ts: float, box_cxcywh: np.ndarray, det_index: np.ndarray,
                seq: int | None = None) -> Tracks:
        a = self._a
        p = self.params
        since = ts - a["last_ts"]
        # matched on the last update (predict() between detector runs shows these), or
        # coasting for at most coast_report_s; never past max_age_s
        show = a["confirmed"] & ((a["misses"] == 0) | (since <= p.coast_report_s)) & (since <= p.max_age_s)
        if seq is None:
            seq = self._seq
        if not show.any():
            return Tracks.empty(seq, ts)
        idx = np.flatnonzero(show)
        xyxy = cxcywh_to_xyxy(box_cxcywh[idx])
        return Tracks(xyxy, a["id"][idx], a["cls"][idx], a["score"][idx], a["age"][idx],
                      det_index[idx], seq, ts,
                      label=a["label"][idx] if self._any_label else None)

    def describe(self) -> dict[str, Any]:
        """Parameters and counters (for /metrics and the report)."""
        return {"params": self.params.model_dump(), "live": self.n_live, "lost": self.n_lost, **self.stats}
