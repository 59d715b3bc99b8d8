"""Synthetic scenes rendered by Vigil itself, with exact ground truth.

Two scenes, both deterministic from (seed, frame index) and random-access (render(i) and
truth(i) need no earlier frame):

- ``conveyor``: parts (round flange, rectangular bracket, hex nut) ride a textured belt left
  to right. Every part carries a printed serial ("SN 0042") on a light sticker, a share of
  them is defective (scratch, missing hole, stain). Good parts of one shape are pixel-identical
  apart from the serial text, noise and lighting, so a golden reference can be learned.
- ``crossing``: textured coloured shapes cross the frame on straight or slightly curved
  paths at different speeds and depths, passing in front of / behind each other and behind a
  static occluder bar. Truth carries a visible fraction per object.

Everything that does not change per frame (belt texture, part sprites, noise bank) is
rendered once at construction; a frame is a copy, a few masked blits, a gain and a noise add
(about 1-2 ms at 768x432 on one core; see tests/unit/test_synthetic.py which prints it).

Per-object randomness comes from ``np.random.default_rng([seed, salt, k])``: object k looks
the same whichever frames were rendered before it.
"""
from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import cv2
import numpy as np

from core.scenes import coerce_params
from stream.errors import SourceError

__all__ = ["FrameTruth", "Scene", "ConveyorScene", "CrossingScene", "SyntheticSource",
           "make_scene"]


@dataclass
class FrameTruth:
    """Ground truth of one rendered frame.

    boxes: (N,4) float32 xyxy of the object's extent clipped to the frame (pixel-tight:
    x2/y2 are exclusive, i.e. the box of columns x1..x2-1). visible: fraction of the
    object's pixels that are on screen and not occluded (1.0 for conveyor parts in full view).
    """

    index: int
    boxes: np.ndarray
    ids: np.ndarray
    classes: list[str]
    defect: np.ndarray
    defect_kind: list[str | None]
    labels: list[str | None]
    visible: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        n = self.boxes.shape[0]
        self.ids = np.asarray(self.ids, np.int64).reshape(n)
        self.defect = np.asarray(self.defect, bool).reshape(n)
        if self.visible is None:
            self.visible = np.ones(n, np.float32)
        self.visible = np.asarray(self.visible, np.float32).reshape(n)
        if not (len(self.classes) == len(self.defect_kind) == len(self.labels) == n):
            raise ValueError("FrameTruth columns have different lengths")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


# ----------------------------------------------------------------------------- parameters
# Defaults and bounds: core/scenes.py (one model per scene, shared with the config schema).

PART_SHAPES = ("flange", "bracket", "nut")
DEFECT_KINDS = ("scratch", "missing_hole", "stain")


# ----------------------------------------------------------------------------- helpers


def _blit(dst: np.ndarray, img: np.ndarray, mask: np.ndarray, x: int, y: int) -> tuple[int, int, int, int] | None:
    """Copy img where mask onto dst at top-left (x, y), clipped. Returns the clipped xyxy."""
    h, w = mask.shape
    H, W = dst.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x0 >= x1 or y0 >= y1:
        return None
    sx, sy = x0 - x, y0 - y
    np.copyto(dst[y0:y1, x0:x1], img[sy:sy + y1 - y0, sx:sx + x1 - x0],
              where=mask[sy:sy + y1 - y0, sx:sx + x1 - x0, None])
    return x0, y0, x1, y1


def _mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


class _Finish:
    """Global lighting gain and sensor noise, deterministic per frame index.

    The noise bank is one (H+R, W, 3) buffer split in positive and negative parts; a frame
    uses a row window chosen from its index (a view, no copy) and two saturating adds.
    """

    ROWS = 97

    def __init__(self, h: int, w: int, noise: float, drift: float, period: float, fps: float,
                 seed: int) -> None:
        self.drift, self.period, self.fps = drift, period, fps
        self.pos = self.neg = None
        if noise > 0:
            rng = np.random.default_rng([seed, 7])
            n = rng.normal(0.0, noise, size=(h + self.ROWS, w, 3)).astype(np.float32)
            self.pos = np.clip(np.rint(n), 0, 255).astype(np.uint8)
            self.neg = np.clip(np.rint(-n), 0, 255).astype(np.uint8)
        self.h = h
        self.phase = float(np.random.default_rng([seed, 8]).uniform(0, 2 * np.pi))

    def gain(self, i: int) -> float:
        if self.drift <= 0:
            return 1.0
        return 1.0 + self.drift * math.sin(2 * math.pi * (i / self.fps) / self.period + self.phase)

    def apply(self, img: np.ndarray, i: int) -> np.ndarray:
        g = self.gain(i)
        if g != 1.0:
            cv2.convertScaleAbs(img, dst=img, alpha=g)
        if self.pos is not None:
            r = (i * 37) % self.ROWS
            cv2.add(img, self.pos[r:r + self.h], dst=img)
            r2 = (i * 53 + 11) % self.ROWS
            cv2.subtract(img, self.neg[r2:r2 + self.h], dst=img)
        return img


class Scene:
    """A synthetic scene: random access by frame index, deterministic for (seed, index)."""

    name: str = ""
    width: int
    height: int
    fps: float
    seed: int
    params: dict[str, Any]

    def render(self, i: int, out: np.ndarray | None = None) -> np.ndarray:  # pragma: no cover
        """Frame i; into `out` ((H, W, 3) uint8, e.g. a stream/framepool.py buffer) if given."""
        raise NotImplementedError

    def _canvas(self, out: np.ndarray | None) -> np.ndarray:
        """The static backdrop, copied into `out` (when it has the frame's shape) or a new array."""
        bg = self.static_bg
        if out is None or out.shape != bg.shape or out.dtype != bg.dtype:
            return bg.copy()
        np.copyto(out, bg)
        return out

    def truth(self, i: int) -> FrameTruth:  # pragma: no cover - interface
        raise NotImplementedError

    def _check_index(self, i: int) -> int:
        i = int(i)
        if i < 0:
            raise ValueError(f"frame index must be >= 0, got {i}")
        return i


# ----------------------------------------------------------------------------- conveyor

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.7      # "SN 0042" -> 99x16 px glyph box
_FONT_THICK = 2


@dataclass
class _Sprite:
    img: np.ndarray                      # (h, w, 3) uint8
    mask: np.ndarray                     # (h, w) bool: part pixels (holes are False)
    holes: list[tuple[int, int, int]]    # (cx, cy, r) in sprite coordinates
    sticker: tuple[int, int, int, int]   # x0, y0, x1, y1 in sprite coordinates
    body: np.ndarray = field(repr=False, default=None)     # shaded body, holes not cut
    outline: np.ndarray = field(repr=False, default=None)  # mask of the filled outline


def _metal(h: int, w: int, base: float, tint: tuple[float, float, float]) -> np.ndarray:
    """Brushed metal: a diagonal light gradient plus fixed fine horizontal streaks."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grad = base + 35.0 * (1.0 - (xx / max(w, 1) + yy / max(h, 1)) / 2.0)
    streak = np.random.default_rng(1234).normal(0, 5.0, size=(h, 1)).astype(np.float32)
    v = np.clip(grad + streak, 0, 255)
    return np.clip(np.stack([v * t for t in tint], axis=-1), 0, 255).astype(np.uint8)


def _build_part(shape: str) -> _Sprite:
    (tw, th), base = cv2.getTextSize("SN 0000", _FONT, _FONT_SCALE, _FONT_THICK)
    sw, sh = tw + 12, th + base + 8          # sticker size around the text
    if shape == "flange":
        d = 144
        h = w = d
        outline = np.zeros((h, w), np.uint8)
        cv2.circle(outline, (w // 2, h // 2), d // 2 - 1, 255, -1)
        holes = [(w // 2 + dx, h // 2 + dy, 8) for dx, dy in ((-42, -42), (42, -42), (-42, 42), (42, 42))]
        sticker_c = (w // 2, h // 2)
        body = _metal(h, w, 150.0, (1.0, 1.0, 1.02))
        cv2.circle(body, (w // 2, h // 2), d // 2 - 10, (120, 120, 122), 2, cv2.LINE_AA)
    elif shape == "bracket":
        w, h = 192, 104
        outline = np.zeros((h, w), np.uint8)
        r = 14
        cv2.rectangle(outline, (r, 0), (w - 1 - r, h - 1), 255, -1)
        cv2.rectangle(outline, (0, r), (w - 1, h - 1 - r), 255, -1)
        for cx, cy in ((r, r), (w - 1 - r, r), (r, h - 1 - r), (w - 1 - r, h - 1 - r)):
            cv2.circle(outline, (cx, cy), r, 255, -1)
        holes = [(w // 2 - 78, h // 2, 11), (w // 2 + 78, h // 2, 11)]
        sticker_c = (w // 2, h // 2)
        body = _metal(h, w, 135.0, (0.92, 1.0, 1.08))   # slightly warm steel
    elif shape == "nut":
        R = 84
        w, h = 2 * R + 1, int(round(2 * R * math.sqrt(3) / 2)) + 1
        cx, cy = w // 2, h // 2
        pts = np.array([[cx + R * math.cos(a), cy + R * math.sin(a)]
                        for a in np.deg2rad(np.arange(0, 360, 60))], np.float64)
        pts[:, 1] = np.clip(pts[:, 1], 0, h - 1)
        outline = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(outline, np.rint(pts).astype(np.int32), 255)
        holes = [(cx, cy - 24, 19)]
        sticker_c = (cx, cy + 30)
        body = _metal(h, w, 160.0, (1.06, 1.0, 0.94))   # slightly cool
        cv2.polylines(body, [np.rint(pts).astype(np.int32)], True, (115, 112, 108), 3, cv2.LINE_AA)
    else:
        raise ValueError(f"unknown part shape {shape!r} (known: {', '.join(PART_SHAPES)})")
    outline_b = outline > 0
    # Bevel: a darker rim just inside the outline.
    eroded = cv2.erode(outline, np.ones((5, 5), np.uint8)) > 0
    rim = outline_b & ~eroded
    body = body.copy()
    body[rim] = (body[rim].astype(np.int16) * 6 // 10).astype(np.uint8)
    x0, y0 = sticker_c[0] - sw // 2, sticker_c[1] - sh // 2
    sticker = (x0, y0, x0 + sw, y0 + sh)
    cv2.rectangle(body, (x0, y0), (x0 + sw - 1, y0 + sh - 1), (226, 232, 234), -1)
    cv2.rectangle(body, (x0, y0), (x0 + sw - 1, y0 + sh - 1), (170, 176, 178), 1)
    sp = _Sprite(body, outline_b, holes, sticker, body=body, outline=outline_b)
    return _compose(sp, missing=-1)


def _compose(sp: _Sprite, missing: int) -> _Sprite:
    """Sprite with its holes cut (hole `missing` left solid: the missing-hole defect)."""
    img = sp.body.copy()
    mask = sp.outline.copy()
    for j, (cx, cy, r) in enumerate(sp.holes):
        if j == missing:
            continue
        cv2.circle(img, (cx, cy), r + 3, (95, 95, 95), 3, cv2.LINE_AA)   # chamfer ring
        hole = np.zeros(mask.shape, np.uint8)
        cv2.circle(hole, (cx, cy), r, 255, -1)
        mask &= hole == 0
    return _Sprite(img, mask, sp.holes, sp.sticker, body=sp.body, outline=sp.outline)


class ConveyorScene(Scene):
    name = "conveyor"

    def __init__(self, seed: int = 0, **params: Any) -> None:
        p = coerce_params("conveyor", params)
        self.params, self.seed = p, int(seed)
        self.width, self.height, self.fps = p["width"], p["height"], p["fps"]
        shapes = [s.strip() for s in p["shapes"].split(",") if s.strip()]
        if not shapes or any(s not in PART_SHAPES for s in shapes):
            raise ValueError(f"parameter 'shapes' of synthetic scene 'conveyor' must list some of "
                             f"{', '.join(PART_SHAPES)}, got {p['shapes']!r}")
        self.shapes = shapes
        self.sprites = {s: _build_part(s) for s in PART_SHAPES}
        # missing-hole variants: (shape, hole index) -> sprite
        self._variants: dict[tuple[str, int], _Sprite] = {}
        max_h = max(self.sprites[s].mask.shape[0] for s in shapes)
        H, W = self.height, self.width
        self.belt_h = min(H, max(max_h + 24, int(round(H * 0.6))))
        if self.belt_h < max_h + 8:
            raise ValueError(f"synthetic scene 'conveyor': height {H} too small for the parts "
                             f"(need >= {max_h + 8})")
        self.belt_y0 = (H - self.belt_h) // 2
        self._build_background()
        self._finish = _Finish(H, W, p["noise"], p["lighting_drift"], p["lighting_period"],
                               self.fps, self.seed)
        # Lazily grown part schedule (belt coordinates, see _ensure_count): 12 bytes a part,
        # so an endless run stays small; part attributes are recomputed from (seed, k) on
        # demand and kept in small LRU caches.
        self._b = np.zeros(0, np.float64)     # belt position of each part's right edge
        self._w = np.zeros(0, np.int32)
        self._next_step = 0.0                 # w + gap of the last scheduled part
        self._max_w = max(self.sprites[s].mask.shape[1] for s in shapes)
        self._info: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.t0 = (W / p["speed"]) if p["prefill"] else 0.0

    # -- static pieces
    def _build_background(self) -> None:
        H, W, bh, y0 = self.height, self.width, self.belt_h, self.belt_y0
        rng = np.random.default_rng([self.seed, 1])
        bg = np.empty((H, W, 3), np.uint8)
        bg[:] = (38, 44, 48)   # machine frame / floor, dark blue-grey
        bg[:] = np.clip(bg.astype(np.int16) + (rng.normal(0, 3, (H, W, 1))).astype(np.int16), 0, 255)
        # side rails just outside the belt, with bolts every 96 px
        for ry in (y0 - 10, y0 + bh):
            if 0 <= ry and ry + 10 <= H:
                bg[ry:ry + 10] = (92, 96, 98)
                bg[ry + 1:ry + 3] = (140, 144, 146)
                for bx in range(24, W, 96):
                    cv2.circle(bg, (bx, ry + 5), 3, (60, 62, 64), -1, cv2.LINE_AA)
        self.static_bg = bg
        # belt texture, periodic in x with period P (so a shifted crop is seamless)
        P = 48
        self.period = P
        tile = rng.normal(0, 7, (bh, P)).astype(np.float32)
        # blur three copies side by side and keep the middle: the tile stays periodic
        tile = cv2.GaussianBlur(np.tile(tile, (1, 3)), (0, 0), 0.8)[:, P:2 * P].copy()
        tile += 64.0
        tile[:, 0:2] -= 22.0          # slat seam
        tile[:, 2] += 10.0            # seam highlight
        reps = (W + P) // P + 1
        tex = np.tile(tile, (1, reps))[:, : W + P]
        tex = np.clip(tex, 0, 255)
        self.belt_tex = np.ascontiguousarray(
            np.stack([tex * 1.0, tex * 1.04, tex * 0.98], axis=-1).clip(0, 255).astype(np.uint8))

    # -- schedule
    def _part(self, k: int) -> dict[str, Any]:
        hit = self._info.get(k)
        if hit is not None:
            self._info.move_to_end(k)
            return hit
        q = self._new_part(k)
        self._info[k] = q
        if len(self._info) > 256:
            self._info.popitem(last=False)
        return q

    def _new_part(self, k: int) -> dict[str, Any]:
        p = self.params
        rng = np.random.default_rng([self.seed, 2, k])
        shape = self.shapes[int(rng.integers(len(self.shapes)))]
        sp = self.sprites[shape]
        h, w = sp.mask.shape
        gap = p["spacing"] * (1.0 + 0.5 * float(rng.random()))
        free = self.belt_h - h
        dy = int(round((float(rng.random()) - 0.5) * 0.5 * max(free - 8, 0)))
        defect = bool(rng.random() < p["defect_rate"])
        kind: str | None = None
        geo: dict[str, Any] = {}
        if defect:
            kinds = list(DEFECT_KINDS)
            kind = kinds[int(rng.integers(len(kinds)))]
            if kind == "missing_hole":
                geo["hole"] = int(rng.integers(len(sp.holes)))
            elif kind == "scratch":
                geo["seed"] = int(rng.integers(2**31))
            else:
                geo["seed"] = int(rng.integers(2**31))
        serial = (p["serial_start"] + k) % 10000
        return {"shape": shape, "w": w, "h": h, "gap": gap, "dy": dy, "defect": defect,
                "kind": kind, "geo": geo, "label": f"SN {serial:04d}"}

    def _ensure_count(self, n: int) -> None:
        k0 = len(self._b)
        if n <= k0:
            return
        n = max(n, k0 + 64)
        new = [self._new_part(k) for k in range(k0, n)]
        w = np.array([q["w"] for q in new], np.int32)
        gaps = np.array([q["gap"] for q in new], np.float64)
        # Screen right edge of part k is x = shift - b_k. Part k+1 runs behind part k:
        # b_{k+1} = b_k + w_k + gap_k, so parts never overlap (gap >= spacing > 0).
        steps = np.empty(len(new), np.float64)
        steps[0] = self._next_step
        steps[1:] = w[:-1] + gaps[:-1]
        prev_b = self._b[-1] if k0 else 0.0
        self._b = np.concatenate([self._b, prev_b + np.cumsum(steps)])
        self._w = np.concatenate([self._w, w])
        self._next_step = float(w[-1] + gaps[-1])

    def _shift(self, i: int) -> int:
        """Belt travel in whole pixels at frame i (parts and texture share it)."""
        return int(round((i / self.fps + self.t0) * self.params["speed"]))

    def _visible(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices of parts overlapping the frame at frame i and their left x (screen)."""
        s = self._shift(i)
        # part k: right edge x = s - b_k, left = s - b_k - w_k; on screen if left < W, right > 0
        while len(self._b) == 0 or self._b[-1] < s + 1:
            self._ensure_count(len(self._b) + 64)
        lo = int(np.searchsorted(self._b, s - self.width - self._max_w, side="left"))
        hi = int(np.searchsorted(self._b, s, side="left"))
        ks = np.arange(lo, hi)
        right = s - self._b[lo:hi]
        left = right - self._w[lo:hi]
        on = (left < self.width) & (right > 0)
        return ks[on], left[on].astype(np.int64)

    # -- per part image
    def _variant(self, shape: str, hole: int) -> _Sprite:
        key = (shape, hole)
        if key not in self._variants:
            self._variants[key] = _compose(self.sprites[shape], missing=hole)
        return self._variants[key]

    def part_image(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(image, mask) of part k with its serial text and defect (cached, LRU)."""
        hit = self._cache.get(k)
        if hit is not None:
            self._cache.move_to_end(k)
            return hit
        q = self._part(k)
        sp = self.sprites[q["shape"]]
        if q["kind"] == "missing_hole":
            sp = self._variant(q["shape"], q["geo"]["hole"])
        img = sp.img.copy()
        mask = sp.mask
        x0, y0, x1, y1 = sp.sticker
        (tw, th), base = cv2.getTextSize(q["label"], _FONT, _FONT_SCALE, _FONT_THICK)
        org = (x0 + (x1 - x0 - tw) // 2, y0 + (y1 - y0 + th) // 2)
        cv2.putText(img, q["label"], org, _FONT, _FONT_SCALE, (28, 24, 22), _FONT_THICK, cv2.LINE_AA)
        if q["kind"] in ("scratch", "stain"):
            self._draw_defect(img, mask, sp, q["kind"], q["geo"]["seed"])
        out = (img, mask)
        self._cache[k] = out
        if len(self._cache) > 48:
            self._cache.popitem(last=False)
        return out

    @staticmethod
    def _draw_defect(img: np.ndarray, mask: np.ndarray, sp: _Sprite, kind: str, seed: int) -> None:
        rng = np.random.default_rng(seed)
        h, w = mask.shape
        # keep defects off the sticker so the serial stays readable
        allowed = mask.copy()
        sx0, sy0, sx1, sy1 = sp.sticker
        allowed[max(sy0 - 2, 0):sy1 + 2, max(sx0 - 2, 0):sx1 + 2] = False
        ys, xs = np.nonzero(cv2.erode(allowed.astype(np.uint8), np.ones((9, 9), np.uint8)))
        layer = img.copy()
        if kind == "scratch":
            j = int(rng.integers(len(xs)))
            ang = float(rng.uniform(0, np.pi))
            length = float(rng.uniform(40, 70))
            dx, dy = math.cos(ang) * length / 2, math.sin(ang) * length / 2
            p0 = (int(xs[j] - dx), int(ys[j] - dy))
            p1 = (int(xs[j] + dx), int(ys[j] + dy))
            cv2.line(layer, p0, p1, (42, 40, 38), int(rng.integers(2, 4)), cv2.LINE_AA)
            sel = allowed
        else:  # stain: a dark soft blob, centred well inside the part
            ys, xs = np.nonzero(cv2.erode(allowed.astype(np.uint8), np.ones((21, 21), np.uint8)))
            j = int(rng.integers(len(xs)))
            ax = (int(rng.integers(11, 18)), int(rng.integers(8, 13)))
            blob = np.zeros((h, w), np.float32)
            cv2.ellipse(blob, (int(xs[j]), int(ys[j])), ax, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
            blob = cv2.GaussianBlur(blob, (0, 0), 2.0) * 0.85
            dark = np.array([34, 40, 46], np.float32)
            layer = (img.astype(np.float32) * (1 - blob[..., None]) + dark * blob[..., None]).astype(np.uint8)
            sel = allowed
        np.copyto(img, layer, where=sel[..., None])

    # -- public API
    def background(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame i without parts, noise or lighting (the moving belt only)."""
        i = self._check_index(i)
        out = self._canvas(out)
        o = self._shift(i) % self.period
        out[self.belt_y0:self.belt_y0 + self.belt_h] = self.belt_tex[:, self.period - o:self.period - o + self.width]
        return out

    def _place(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ks, lefts = self._visible(i)
        cy = self.belt_y0 + self.belt_h // 2
        tops = np.array([cy - self._part(k)["h"] // 2 + self._part(k)["dy"] for k in ks.tolist()],
                        np.int64)
        return ks, lefts, tops

    def render(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        frame = self.background(i, out)
        ks, lefts, tops = self._place(i)
        for k, x, y in zip(ks.tolist(), lefts.tolist(), tops.tolist()):
            img, mask = self.part_image(k)
            _blit(frame, img, mask, x, y)
        return self._finish.apply(frame, i)

    def truth(self, i: int) -> FrameTruth:
        i = self._check_index(i)
        ks, lefts, tops = self._place(i)
        boxes = np.zeros((len(ks), 4), np.float32)
        vis = np.ones(len(ks), np.float32)
        keep = np.ones(len(ks), bool)
        parts = [self._part(k) for k in ks.tolist()]
        for r, (k, x, y, q) in enumerate(zip(ks.tolist(), lefts.tolist(), tops.tolist(), parts)):
            full = self.sprites[q["shape"]].outline   # holes do not change the outline
            h, w = full.shape
            cx0, cx1 = max(0, -x), min(w, self.width - x)
            cy0, cy1 = max(0, -y), min(h, self.height - y)
            sub = full[cy0:cy1, cx0:cx1]
            if not sub.any():   # only the empty corner of the sprite is on screen
                keep[r] = False
                continue
            bx0, by0, bx1, by1 = _mask_bbox(sub)
            boxes[r] = (x + cx0 + bx0, y + cy0 + by0, x + cx0 + bx1, y + cy0 + by1)
            vis[r] = float(np.count_nonzero(sub)) / float(np.count_nonzero(full))
        parts = [q for q, kp in zip(parts, keep.tolist()) if kp]
        boxes, vis, ks = boxes[keep], vis[keep], ks[keep]
        return FrameTruth(
            index=i, boxes=boxes, ids=ks.astype(np.int64),
            classes=[q["shape"] for q in parts],
            defect=np.array([q["defect"] for q in parts], bool),
            defect_kind=[q["kind"] for q in parts],
            labels=[q["label"] for q in parts],
            visible=vis,
        )

    def part_info(self, k: int) -> dict[str, Any]:
        """Shape, serial label, defect flag and kind of part k (k = its truth id)."""
        q = self._part(int(k))
        return {"id": int(k), "shape": q["shape"], "label": q["label"], "defect": q["defect"],
                "defect_kind": q["kind"]}

    def frames_for_part(self, k: int) -> tuple[int, int]:
        """First and last frame index at which part k is fully inside the frame."""
        self._ensure_count(k + 1)
        v, fps = self.params["speed"], self.fps
        b, w = float(self._b[k]), int(self._w[k])
        # fully in: left >= 0 and right <= W, with s = round((i/fps + t0) * v)
        first = math.ceil(((b + w) / v - self.t0) * fps)
        last = math.floor(((b + self.width) / v - self.t0) * fps)
        while first > 0 and self._shift(first - 1) - b - w >= 0:
            first -= 1
        while self._shift(first) - b - w < 0:
            first += 1
        while self._shift(last) - b > self.width:
            last -= 1
        while self._shift(last + 1) - b <= self.width:
            last += 1
        return max(first, 0), last


# ----------------------------------------------------------------------------- crossing

_CROSS_SHAPES = ("disc", "square", "triangle", "diamond", "star", "ring")
_PALETTE = np.array([
    (40, 60, 220), (40, 200, 60), (220, 120, 30), (30, 200, 220), (200, 60, 200),
    (230, 220, 40), (120, 80, 240), (60, 140, 255), (255, 90, 120), (90, 230, 160),
], np.uint8)  # BGR, saturated so objects differ from the grey backdrop


def _shape_mask(shape: str, s: int) -> np.ndarray:
    m = np.zeros((s, s), np.uint8)
    c = (s - 1) / 2.0
    if shape == "disc":
        cv2.circle(m, (s // 2, s // 2), s // 2 - 1, 255, -1)
    elif shape == "square":
        m[1:-1, 1:-1] = 255
    elif shape == "triangle":
        cv2.fillConvexPoly(m, np.array([[s // 2, 1], [s - 2, s - 2], [1, s - 2]], np.int32), 255)
    elif shape == "diamond":
        cv2.fillConvexPoly(m, np.array([[s // 2, 1], [s - 2, s // 2], [s // 2, s - 2], [1, s // 2]], np.int32), 255)
    elif shape == "star":
        ang = np.deg2rad(np.arange(10) * 36 - 90)
        rad = np.where(np.arange(10) % 2 == 0, c - 1, (c - 1) * 0.45)
        pts = np.stack([c + rad * np.cos(ang), c + rad * np.sin(ang)], 1)
        cv2.fillPoly(m, [np.rint(pts).astype(np.int32)], 255)
    elif shape == "ring":
        cv2.circle(m, (s // 2, s // 2), s // 2 - 1, 255, -1)
        cv2.circle(m, (s // 2, s // 2), max(s // 5, 2), 0, -1)
    else:  # pragma: no cover - internal
        raise ValueError(shape)
    return m > 0


def _pattern(kind: int, s: int, color: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A textured fill so objects differ in appearance, not only colour."""
    yy, xx = np.mgrid[0:s, 0:s]
    period = int(rng.integers(6, 14))
    if kind == 0:
        t = ((xx + yy) // period) % 2
    elif kind == 1:
        t = ((xx // period) + (yy // period)) % 2
    elif kind == 2:
        t = (yy // period) % 2
    else:
        t = (np.hypot(xx - s / 2, yy - s / 2) // period) % 2
    c = color.astype(np.float32)
    img = np.where(t[..., None] == 1, c, c * 0.55)
    return np.clip(img, 0, 255).astype(np.uint8)


class CrossingScene(Scene):
    name = "crossing"

    def __init__(self, seed: int = 0, **params: Any) -> None:
        p = coerce_params("crossing", params)
        if p["speed_min"] > p["speed_max"]:
            raise ValueError("synthetic scene 'crossing': speed_min must be <= speed_max")
        if p["size_min"] > p["size_max"]:
            raise ValueError("synthetic scene 'crossing': size_min must be <= size_max")
        self.params, self.seed = p, int(seed)
        self.width, self.height, self.fps = p["width"], p["height"], p["fps"]
        H, W = self.height, self.width
        rng = np.random.default_rng([self.seed, 1])
        # backdrop: soft grey floor with a faint grid (static)
        bg = np.full((H, W, 3), 118, np.uint8)
        bg = np.clip(bg.astype(np.int16) + rng.normal(0, 4, (H, W, 1)).astype(np.int16), 0, 255).astype(np.uint8)
        for x in range(0, W, 64):
            bg[:, x] = (104, 106, 104)
        for y in range(0, H, 64):
            bg[y, :] = (104, 106, 104)
        self.static_bg = bg
        self.occ: tuple[int, int, int, int] | None = None
        if p["occluder"]:
            ow = min(p["occluder_width"], W)
            ox0 = int(round(p["occluder_x"] * W - ow / 2))
            ox0 = min(max(ox0, 0), W - ow)
            self.occ = (ox0, 0, ox0 + ow, H)
            occ_img = np.empty((H, ow, 3), np.uint8)
            occ_img[:] = (60, 52, 48)
            occ_img[:, :3] = (90, 84, 80)
            occ_img[:, -3:] = (40, 36, 34)
            self.occ_img = occ_img
        self._finish = _Finish(H, W, p["noise"], p["lighting_drift"], p["lighting_period"],
                               self.fps, self.seed)
        self.n_lanes = p["objects"]
        # per lane: start and end times of its traversals, grown lazily (16 bytes each);
        # traversal attributes are recomputed from (seed, lane, k) and kept in an LRU cache
        self._lane_start: list[list[float]] = [[] for _ in range(self.n_lanes)]
        self._lane_end: list[list[float]] = [[] for _ in range(self.n_lanes)]
        self._trav: OrderedDict[tuple[int, int], dict[str, Any]] = OrderedDict()
        self._sprites: OrderedDict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def _traversal(self, lane: int, k: int) -> dict[str, Any]:
        key = (lane, k)
        tr = self._trav.get(key)
        if tr is not None:
            self._trav.move_to_end(key)
            return tr
        p = self.params
        rng = np.random.default_rng([self.seed, 3, lane, k])
        W, H = self.width, self.height
        size = int(rng.integers(p["size_min"], p["size_max"] + 1))
        m = size / 2 + 2
        # entry edge and exit on the opposite side; mostly horizontal crossings, some vertical
        horizontal = rng.random() < 0.7
        if horizontal:
            ya, yb = rng.uniform(0.1 * H, 0.9 * H, 2)
            if rng.random() < 0.5:
                a, b = np.array([-m, ya]), np.array([W + m, yb])
            else:
                a, b = np.array([W + m, ya]), np.array([-m, yb])
        else:
            xa, xb = rng.uniform(0.1 * W, 0.9 * W, 2)
            if rng.random() < 0.5:
                a, b = np.array([xa, -m]), np.array([xb, H + m])
            else:
                a, b = np.array([xa, H + m]), np.array([xb, -m])
        d = b - a
        length = float(np.hypot(*d))
        normal = np.array([-d[1], d[0]]) / max(length, 1e-6)
        bow = float(rng.uniform(-1, 1)) * p["curvature"] * length
        ctrl = (a + b) / 2 + normal * bow
        speed = float(rng.uniform(p["speed_min"], p["speed_max"]))
        # Bezier arc length ~ chord for small bows; duration from the polyline length
        u = np.linspace(0, 1, 33)
        pts = ((1 - u) ** 2)[:, None] * a + (2 * (1 - u) * u)[:, None] * ctrl + (u ** 2)[:, None] * b
        arc = float(np.sum(np.hypot(*np.diff(pts, axis=0).T)))
        pause = float(rng.uniform(0, p["pause_max"])) if k > 0 else float(rng.uniform(0, 2.0))
        tr = {
            "size": size, "a": a, "b": b, "ctrl": ctrl, "dur": arc / speed, "pause": pause,
            "shape": _CROSS_SHAPES[int(rng.integers(len(_CROSS_SHAPES)))],
            "color": _PALETTE[int(rng.integers(len(_PALETTE)))],
            "pattern": int(rng.integers(4)), "pseed": int(rng.integers(2**31)),
            "depth": float(rng.random()), "id": k * self.n_lanes + lane + 1,
        }
        self._trav[key] = tr
        if len(self._trav) > 8 * self.n_lanes + 16:
            self._trav.popitem(last=False)
        return tr

    def _lane_schedule(self, lane: int, t: float) -> tuple[int, float] | None:
        """Traversal k active on `lane` at time t and its start time, or None (pause)."""
        starts, ends = self._lane_start[lane], self._lane_end[lane]
        while not ends or ends[-1] <= t:
            k = len(ends)
            tr = self._traversal(lane, k)
            if k == 0:
                # stagger lanes so frame 0 is already busy: the first traversal began earlier
                start = -float(np.random.default_rng([self.seed, 4, lane]).uniform(0, tr["dur"]))
            else:
                start = ends[-1] + tr["pause"]
            starts.append(start)
            ends.append(start + tr["dur"])
        k = bisect.bisect_right(starts, t) - 1
        if k >= 0 and starts[k] <= t < ends[k]:
            return k, starts[k]
        return None

    def _sprite(self, lane: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        key = (lane, k)
        hit = self._sprites.get(key)
        if hit is not None:
            return hit
        tr = self._traversal(lane, k)
        s = tr["size"]
        mask = _shape_mask(tr["shape"], s)
        img = _pattern(tr["pattern"], s, tr["color"], np.random.default_rng(tr["pseed"]))
        edge = mask & ~(cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
        img[edge] = (20, 20, 20)
        self._sprites[key] = (img, mask)
        if len(self._sprites) > 4 * self.n_lanes + 8:
            self._sprites.popitem(last=False)
        return img, mask

    def _objects(self, i: int) -> list[tuple[int, int, int, int, dict[str, Any]]]:
        """(lane, k, x, y, traversal) of objects on screen at frame i, far to near."""
        t = i / self.fps
        out = []
        for lane in range(self.n_lanes):
            hit = self._lane_schedule(lane, t)
            if hit is None:
                continue
            k, start = hit
            tr = self._traversal(lane, k)
            u = (t - start) / tr["dur"]
            pos = (1 - u) ** 2 * tr["a"] + 2 * (1 - u) * u * tr["ctrl"] + u ** 2 * tr["b"]
            s = tr["size"]
            x, y = int(round(pos[0] - s / 2)), int(round(pos[1] - s / 2))
            if x >= self.width or y >= self.height or x + s <= 0 or y + s <= 0:
                continue
            out.append((lane, k, x, y, tr))
        out.sort(key=lambda o: o[4]["depth"])
        return out

    def background(self, i: int) -> np.ndarray:
        """Frame i without objects, noise or lighting (backdrop and occluder)."""
        self._check_index(i)
        frame = self.static_bg.copy()
        if self.occ is not None:
            x0, y0, x1, y1 = self.occ
            frame[y0:y1, x0:x1] = self.occ_img
        return frame

    def render(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        i = self._check_index(i)
        frame = self._canvas(out)
        for lane, k, x, y, _tr in self._objects(i):
            img, mask = self._sprite(lane, k)
            _blit(frame, img, mask, x, y)
        if self.occ is not None:
            x0, y0, x1, y1 = self.occ
            frame[y0:y1, x0:x1] = self.occ_img
        return self._finish.apply(frame, i)

    def truth(self, i: int) -> FrameTruth:
        i = self._check_index(i)
        objs = self._objects(i)
        n = len(objs)
        # id map in draw order: later (nearer) objects overwrite earlier ones
        idmap = np.zeros((self.height, self.width), np.int16)
        boxes = np.zeros((n, 4), np.float32)
        total = np.zeros(n, np.float64)
        for r, (lane, k, x, y, _tr) in enumerate(objs):
            _img, mask = self._sprite(lane, k)
            total[r] = np.count_nonzero(mask)
            h, w = mask.shape
            x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, self.width), min(y + h, self.height)
            sub = mask[y0 - y:y1 - y, x0 - x:x1 - x]
            bx0, by0, bx1, by1 = _mask_bbox(sub) if sub.any() else (0, 0, 0, 0)
            boxes[r] = (x0 + bx0, y0 + by0, x0 + bx1, y0 + by1)
            np.copyto(idmap[y0:y1, x0:x1], np.int16(r + 1), where=sub)
        if self.occ is not None:
            x0, y0, x1, y1 = self.occ
            idmap[y0:y1, x0:x1] = 0
        counts = np.bincount(idmap.ravel(), minlength=n + 1)[1:n + 1]
        vis = (counts / np.maximum(total, 1)).astype(np.float32)
        keep = np.array([b[2] > b[0] and b[3] > b[1] for b in boxes], bool) if n else np.zeros(0, bool)
        objs = [o for o, kp in zip(objs, keep) if kp]
        return FrameTruth(
            index=i, boxes=boxes[keep], ids=np.array([o[4]["id"] for o in objs], np.int64),
            classes=[o[4]["shape"] for o in objs], defect=np.zeros(len(objs), bool),
            defect_kind=[None] * len(objs), labels=[None] * len(objs), visible=vis[keep],
        )


# ----------------------------------------------------------------------------- factory and source

_FACTORIES: dict[str, Callable[..., Scene]] = {"conveyor": ConveyorScene, "crossing": CrossingScene}


def make_scene(name: str, seed: int = 0, **params: Any) -> Scene:
    """Build scene `name` ("conveyor" | "crossing"). Unknown name or parameter: ValueError."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown synthetic scene {name!r} (known: {', '.join(sorted(_FACTORIES))})")
    return _FACTORIES[name](seed=seed, **params)


class SyntheticSource:
    """A Scene as a VideoSource: not live, native fps, endless unless `frames` > 0."""

    backend = "synthetic"
    is_live = False

    def __init__(self, uri: str, scene: Scene, frames: int = 0) -> None:
        self.uri = uri
        self.scene = scene
        self.fps: float | None = float(scene.fps)
        self.frames = int(frames)
        self.index = 0           # index of the next frame read() returns
        self._open = False
        self.frame_pool: Any = None  # a stream/framepool.py FramePool (use_pool)

    def use_pool(self, pool: Any) -> None:
        """Render frames into `pool`'s buffers (reused only when no one holds them)."""
        self.frame_pool = pool

    def open(self) -> None:
        self.index = 0
        self._open = True

    def read(self) -> np.ndarray | None:
        if not self._open:
            raise SourceError(f"{self.uri}: read() before open() or after close()")
        if self.frames and self.index >= self.frames:
            return None
        pool = self.frame_pool
        out = None if pool is None else pool.get((self.scene.height, self.scene.width, 3))
        img = self.scene.render(self.index, out)
        self.index += 1
        return img

    @property
    def last_index(self) -> int:
        """Scene index of the frame the last read() returned (-1 before any)."""
        return self.index - 1

    def truth(self, i: int | None = None) -> FrameTruth:
        """Ground truth of frame i (default: the frame last returned by read())."""
        return self.scene.truth(self.last_index if i is None else i)

    def close(self) -> None:
        self._open = False

    def __repr__(self) -> str:
        return f"SyntheticSource({self.uri!r}, next={self.index})"
