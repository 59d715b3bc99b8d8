"""Fast overlay drawing: boxes, labels, trails, OCR text, zones, counting lines, status, banner.

Budget: well under 1 ms per frame at 768x576 with ~10 tracks (bench/overlay.py measures it).
What makes it fast (measured with OpenCV 4.14 on the dev machine, see the report):
- Text is rendered once into small opaque "sprites" (anti-aliased putText on a filled
  background) kept in a bounded LRU cache, then blitted with one numpy slice assignment
  (~2 us) instead of getTextSize + filled rectangle + putText every frame (~9 us, and LINE_AA
  text costs ~18 us). Labels are split into a stable part ("person #12", cached per track)
  and a score part ("0.87", 101 possible values) so a changing score does not miss the cache.
- Solid boxes are N thickness-1 rectangles (2 x ~2.5 us) instead of one thickness-2 one
  (~13 us: OpenCV draws thick lines as filled polygons).
- Dashed boxes (coasting tracks) are drawn by reshaping each edge strip into (dashes, period)
  and assigning the colour to the first `dash` pixels of every period: 4 numpy assignments.
- Trails: a thin (1 px) polyline for the whole history and a 2 px one for the newest points.
- Zone fills blend only the polygon's bounding box with a cached mask (cv2.copyTo).

Coordinates: tracks.xyxy is in the pixel space of the image being drawn on.
Each renderer holds caches and is meant for one thread; `draw_overlay()` uses one renderer
per calling thread (threading.local), so camera threads never share a cache.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import cv2
import numpy as np

from core.boxes import clip_xyxy
from core.imaging import to_gray
from core.types import Tracks

__all__ = ["ZoneDraw", "LineDraw", "StatusInfo", "OverlayScene", "OverlayRenderer", "draw_overlay",
           "grey_out", "track_color", "STATE_COLORS"]

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_PALETTE_SIZE = 32

# BGR colours for the camera state chip in the status strip.
STATE_COLORS: dict[str, tuple[int, int, int]] = {
    "LIVE": (60, 170, 60), "CONNECTING": (170, 140, 40), "STALLED": (0, 140, 230),
    "RECONNECTING": (0, 90, 230), "FAILED": (40, 40, 200), "ENDED": (120, 120, 120),
    "STOPPED": (120, 120, 120),
}


@dataclass(frozen=True)
class ZoneDraw:
    """A zone to draw: polygon (K,2) int pixels, counts e.g. {"person": 3, "car": 1}."""

    name: str
    polygon: np.ndarray
    counts: Mapping[str, int] = field(default_factory=dict)
    color: tuple[int, int, int] | None = None  # BGR; None = default zone colour


@dataclass(frozen=True)
class LineDraw:
    """A counting line p1->p2. The arrow points to the "in" side: in_side=+1 is the right-hand
    side of p1->p2 in image coordinates (y down), i.e. the normal (-dy, dx); -1 the other."""

    name: str
    p1: tuple[int, int]
    p2: tuple[int, int]
    count_in: int = 0
    count_out: int = 0
    in_side: int = 1
    color: tuple[int, int, int] | None = None
    text: str | None = None  # shown instead of "NAME in N out M" (e.g. an inspection line)
    arrow: bool = True


@dataclass(frozen=True)
class StatusInfo:
    """Status strip content; None values are left out."""

    camera: str
    state: str
    source_fps: float | None = None
    detector_fps: float | None = None
    published_fps: float | None = None
    latency_ms: float | None = None


@dataclass(frozen=True, eq=False)
class OverlayScene:
    """Everything one overlay frame shows (stream.analyzer.Analyzer.scene() builds it for a
    camera; a stale camera's is just a status and a banner).

    tracks: what to box and label; trails: id -> (n,2) recent centres; class_names: names for
    class ids without a label; zones / lines: shapes with their counts; coasting: bool per
    track, drawn dashed (None: det_index == -1); status: the status strip; banner: big centred
    text (STALE, RECONNECTING ...).
    """

    tracks: Tracks | None = None
    trails: Mapping[int, np.ndarray] | None = None
    class_names: Sequence[str] = ()
    zones: Sequence[ZoneDraw] = ()
    lines: Sequence[LineDraw] = ()
    coasting: np.ndarray | None = None
    status: StatusInfo | None = None
    banner: str | None = None


def _palette(n: int = _PALETTE_SIZE) -> np.ndarray:
    """n well-separated saturated BGR colours (golden-ratio hue steps), (n,3) uint8."""
    hues = (np.arange(n) * 0.618033988749895 % 1.0 * 180).astype(np.uint8)
    hsv = np.stack([hues, np.full(n, 210, np.uint8), np.full(n, 235, np.uint8)], 1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0]


_PALETTE_LOCK = threading.Lock()
_PALETTE: np.ndarray | None = None


def _get_palette() -> np.ndarray:
    global _PALETTE
    if _PALETTE is None:
        with _PALETTE_LOCK:
            if _PALETTE is None:
                _PALETTE = _palette()
    return _PALETTE


def track_color(track_id: int) -> tuple[int, int, int]:
    """Stable BGR colour for a track id (same id -> same colour, in every process)."""
    c = _get_palette()[int(track_id) % _PALETTE_SIZE]
    return int(c[0]), int(c[1]), int(c[2])


def grey_out(image: np.ndarray, brightness: float = 0.6) -> np.ndarray:
    """A new, greyed and dimmed BGR copy of `image` (for STALE / RECONNECTING frames)."""
    grey = cv2.convertScaleAbs(to_gray(image), alpha=float(brightness), beta=20.0)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def _text_color(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    lum = 0.114 * bg[0] + 0.587 * bg[1] + 0.299 * bg[2]
    return (0, 0, 0) if lum > 140 else (255, 255, 255)


def _blit(img: np.ndarray, sprite: np.ndarray, x: int, y: int) -> int:
    """Copy sprite with its top-left at (x, y), clipped to the image; returns its width."""
    h, w = sprite.shape[:2]
    H, W = img.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, W), min(y + h, H)
    if x1 > x0 and y1 > y0:
        img[y0:y1, x0:x1] = sprite[y0 - y:y1 - y, x0 - x:x1 - x]
    return w


class LabelLayout:
    """Where one frame's labels go, so that no two overlap: each label takes the first of its
    candidate positions (clamped into the image) that overlaps nothing placed before it, or
    else the one that overlaps least. Labels placed earlier win: the status strip, then zone
    and line labels (stable, few), then track labels, then OCR text."""

    __slots__ = ("W", "H", "rects", "texts")

    def __init__(self, width: int, height: int) -> None:
        self.W, self.H = int(width), int(height)
        self.rects: list[tuple[int, int, int, int]] = []  # x1, y1, x2, y2 (exclusive)
        # drawn after every shape, so no box, trail or zone edge crosses a label
        self.texts: list[tuple[str, int, int, tuple[int, int, int]]] = []

    def reserve(self, x1: int, y1: int, x2: int, y2: int) -> None:
        self.rects.append((x1, y1, x2, y2))

    @staticmethod
    def _candidates(w: int, h: int, given: Sequence[tuple[int, int]]):
        """The given positions, then (only reached in crowded frames) a widening ring around
        the first: rows one label height apart, columns half a label wide."""
        yield from given
        x0, y0 = given[0]
        ring = sorted(((dx, dy) for dy in range(-10, 11) for dx in range(-4, 5) if dx or dy),
                      key=lambda d: (abs(d[0]) * w / 2) ** 2 + (abs(d[1]) * (h + 1)) ** 2)
        for dx, dy in ring:
            yield x0 + dx * (w // 2 + 1), y0 + dy * (h + 1)

    def place(self, w: int, h: int, candidates: Sequence[tuple[int, int]]) -> tuple[int, int]:
        best, best_overlap = None, -1
        xmax, ymax = max(self.W - w, 0), max(self.H - h, 0)
        for cx, cy in self._candidates(w, h, candidates):
            x, y = min(max(int(cx), 0), xmax), min(max(int(cy), 0), ymax)
            overlap = 0
            for a1, b1, a2, b2 in self.rects:
                ow, oh = min(x + w, a2) - max(x, a1), min(y + h, b2) - max(y, b1)
                if ow > 0 and oh > 0:
                    overlap += ow * oh
            if best is None or overlap < best_overlap:
                best, best_overlap = (x, y), overlap
                if overlap == 0:
                    break
        assert best is not None, "place() needs at least one candidate"
        self.rects.append((best[0], best[1], best[0] + w, best[1] + h))
        return best


class OverlayRenderer:
    """Draws overlays with cached text sprites. One instance per thread.

    font_scale: label text scale 0.3..1.5 (default 0.45). box_thickness: 1..4 (default 2).
    trail_recent: newest trail points drawn 2 px thick (default 8, 0 = all thin).
    zone_fill_alpha: zone fill opacity 0..0.6 (default 0.12; 0 = outline only).
    text_cache: cached sprites (True) or plain putText each frame (False, for comparison).
    cache_size: sprite LRU entries 64..8192 (default 1024).
    """

    def __init__(self, font_scale: float = 0.45, box_thickness: int = 2, trail_recent: int = 8,
                 zone_fill_alpha: float = 0.12, text_cache: bool = True,
                 cache_size: int = 1024) -> None:
        if not 0.3 <= font_scale <= 1.5:
            raise ValueError(f"font_scale must be in 0.3..1.5, got {font_scale}")
        if not 1 <= int(box_thickness) <= 4:
            raise ValueError(f"box_thickness must be in 1..4, got {box_thickness}")
        if not 0.0 <= zone_fill_alpha <= 0.6:
            raise ValueError(f"zone_fill_alpha must be in 0..0.6, got {zone_fill_alpha}")
        if not 64 <= int(cache_size) <= 8192:
            raise ValueError(f"cache_size must be in 64..8192, got {cache_size}")
        self.font_scale = float(font_scale)
        self.box_thickness = int(box_thickness)
        self.trail_recent = max(0, int(trail_recent))
        self.zone_fill_alpha = float(zone_fill_alpha)
        self.text_cache = bool(text_cache)
        self.cache_size = int(cache_size)
        self._sprites: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._zone_cache: OrderedDict[tuple, tuple] = OrderedDict()
        self._widths: dict[str, int] = {}
        (_, th), base = cv2.getTextSize("Ag", _FONT, self.font_scale, 1)
        self._pad = 2
        self._text_h = th + base + 2 * self._pad  # sprite height for this font scale
        self._baseline = base
        self.sprite_hits = 0
        self.sprite_misses = 0
        self._dash_period, self._dash_len = 10, 6
        self.last_layout: LabelLayout | None = None  # the last draw's label rectangles (tests)

    # ------------------------------------------------------------------ text
    def _sprite(self, text: str, bg: tuple[int, int, int], scale: float | None = None,
                thickness: int = 1) -> np.ndarray:
        key = (text, bg, scale, thickness)
        sp = self._sprites.get(key)
        if sp is not None:
            self._sprites.move_to_end(key)
            self.sprite_hits += 1
            return sp
        self.sprite_misses += 1
        s = self.font_scale if scale is None else scale
        (tw, _), _ = cv2.getTextSize(text, _FONT, s, thickness)
        (_, th), base = cv2.getTextSize("Ag", _FONT, s, thickness)  # same height for all labels
        pad = self._pad
        sp = np.empty((th + base + 2 * pad, tw + 2 * pad, 3), np.uint8)
        sp[:] = bg
        cv2.putText(sp, text, (pad, pad + th), _FONT, s, _text_color(bg), thickness, cv2.LINE_AA)
        self._sprites[key] = sp
        if len(self._sprites) > self.cache_size:
            self._sprites.popitem(last=False)
        return sp

    def _text(self, img: np.ndarray, text: str, x: int, y: int, bg: tuple[int, int, int],
              scale: float | None = None, thickness: int = 1) -> int:
        """Label with a filled background, top-left at (x, y); returns its width."""
        if self.text_cache:
            return _blit(img, self._sprite(text, bg, scale, thickness), x, y)
        s = self.font_scale if scale is None else scale
        (tw, _), _ = cv2.getTextSize(text, _FONT, s, thickness)
        (_, th), base = cv2.getTextSize("Ag", _FONT, s, thickness)
        pad = self._pad
        cv2.rectangle(img, (x, y), (x + tw + 2 * pad - 1, y + th + base + 2 * pad - 1), bg, -1)
        cv2.putText(img, text, (x + pad, y + pad + th), _FONT, s, _text_color(bg), thickness,
                    cv2.LINE_8)
        return tw + 2 * pad

    def _size(self, text: str) -> tuple[int, int]:
        """(width, height) of a label as _text draws it (default scale, thickness 1)."""
        w = self._widths.get(text)
        if w is None:
            if len(self._widths) >= self.cache_size:
                self._widths.clear()
            (tw, _), _ = cv2.getTextSize(text, _FONT, self.font_scale, 1)
            w = self._widths[text] = tw + 2 * self._pad
        return w, self._text_h

    def _stack(self, x: int, y: int, h: int, steps: int = 6) -> list[tuple[int, int]]:
        """Candidates at (x, y), then alternately below and above it, one label height apart."""
        out = [(x, y)]
        for k in range(1, steps + 1):
            out += [(x, y + k * (h + 1)), (x, y - k * (h + 1))]
        return out

    # ------------------------------------------------------------------ shapes
    def _solid_box(self, img, x1, y1, x2, y2, color) -> None:
        for k in range(self.box_thickness):
            if x2 - k < x1 + k or y2 - k < y1 + k:
                break
            cv2.rectangle(img, (x1 + k, y1 + k), (x2 - k, y2 - k), color, 1, cv2.LINE_8)

    def _dashed_box(self, img, x1, y1, x2, y2, color) -> None:
        """Dashed rectangle (box already clipped to the image): each edge strip is reshaped
        into (dashes, period) and the first `dash` pixels of every period are painted."""
        t, p, d = self.box_thickness, self._dash_period, self._dash_len
        c = color if isinstance(color, np.ndarray) else np.asarray(color, np.uint8)
        w, h = x2 - x1 + 1, y2 - y1 + 1
        t = min(t, w, h)
        if t <= 0:
            return
        nw, nh = w // p, h // p
        for ys in (slice(y1, y1 + t), slice(y2 - t + 1, y2 + 1)):
            strip = img[ys, x1:x2 + 1]
            if nw:
                strip[:, :nw * p].reshape(t, nw, p, 3)[:, :, :d] = c
            if nw * p < w:
                strip[:, nw * p:nw * p + d] = c
        for xs in (slice(x1, x1 + t), slice(x2 - t + 1, x2 + 1)):
            strip = img[y1:y2 + 1, xs]
            if nh:
                strip[:nh * p].reshape(nh, p, t, 3)[:, :d] = c
            if nh * p < h:
                strip[nh * p:nh * p + d] = c

    # ------------------------------------------------------------------ parts
    def _draw_tracks(self, img, tracks: Tracks, class_names, trails, coasting,
                     layout: LabelLayout) -> None:
        H, W = img.shape[:2]
        n = len(tracks)
        if trails:
            for tid, pts in trails.items():
                pts = np.asarray(pts)
                if pts.ndim != 2 or pts.shape[0] < 2:
                    continue
                p = np.rint(pts[:, :2]).astype(np.int32)
                color = track_color(tid)
                cv2.polylines(img, [p], False, color, 1, cv2.LINE_8)
                if self.trail_recent:
                    cv2.polylines(img, [p[-self.trail_recent:]], False, color, 2, cv2.LINE_8)
        if not n:
            return
        box = clip_xyxy(np.rint(tracks.xyxy), W - 1, H - 1).astype(np.int32)
        pal = _get_palette()[tracks.track_id % _PALETTE_SIZE]
        colors = pal.tolist()
        if coasting is None:
            coasting = tracks.det_index < 0
        coasting = np.asarray(coasting, bool).reshape(n).tolist()
        scores = np.clip(np.rint(tracks.score * 100), 0, 100).astype(np.int64).tolist()
        tids = tracks.track_id.tolist()
        cids = tracks.class_id.tolist()
        labels = tracks.label.tolist() if tracks.label is not None else None
        texts = tracks.text.tolist() if tracks.text is not None else None
        boxes = box.tolist()
        th = self._text_h
        n_names = len(class_names) if class_names else 0
        dark = (40, 40, 40)
        for i in range(n):
            x1, y1, x2, y2 = boxes[i]
            color = tuple(colors[i])
            if coasting[i]:
                self._dashed_box(img, x1, y1, x2, y2, pal[i])
            else:
                self._solid_box(img, x1, y1, x2, y2, color)
            name = labels[i] if labels is not None and labels[i] else None
            if name is None:
                cid = cids[i]
                name = class_names[cid] if 0 <= cid < n_names else str(cid)
            head, score = f"{name} #{tids[i]}", _SCORE_TEXT[scores[i]]
            w1, w2 = self._size(head)[0], self._size(score)[0]
            # above the box, inside its top edge, below it, then stacked further out
            lx, ly = layout.place(w1 + w2, th, [(x1, y1 - th), (x1, y1 + 1), (x1, y2 + 2),
                                                *self._stack(x1, y1 - th, th)[1:]])
            layout.texts += [(head, lx, ly, color), (score, lx + w1, ly, dark)]
            if texts is not None and texts[i]:
                tw = self._size(texts[i])[0]
                tx, ty = layout.place(tw, th, self._stack(x1, y2 + 2, th) + [(x1, y2 - th)])
                layout.texts.append((texts[i], tx, ty, (250, 250, 250)))

    def _zone_geometry(self, poly: np.ndarray, shape, color) -> tuple:
        """(rows, cols, mask, colour image, scratch) of the polygon's clipped bounding box,
        cached per polygon/colour/frame size (zones rarely change)."""
        key = (poly.tobytes(), poly.shape, shape[:2], color)
        g = self._zone_cache.get(key)
        if g is not None:
            return g
        H, W = shape[:2]
        x, y, w, h = cv2.boundingRect(poly)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        if x1 <= x0 or y1 <= y0:
            g = (None,)
        else:
            mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
            cv2.fillPoly(mask, [poly - np.array([x0, y0], np.int32)], 1)
            solid = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
            solid[:] = color
            g = (slice(y0, y1), slice(x0, x1), mask, solid, np.empty_like(solid))
        self._zone_cache[key] = g
        if len(self._zone_cache) > 32:
            self._zone_cache.popitem(last=False)
        return g

    def _draw_zones(self, img, zones: Sequence[ZoneDraw], layout: LabelLayout) -> None:
        for z in zones:
            poly = np.rint(np.asarray(z.polygon)).astype(np.int32).reshape(-1, 2)
            if poly.shape[0] < 3:
                continue
            color = tuple(int(c) for c in z.color) if z.color else (0, 215, 255)
            if self.zone_fill_alpha > 0:
                g = self._zone_geometry(poly, img.shape, color)
                if g[0] is not None:
                    # Blend only the bounding box, then copy back inside the polygon mask;
                    # cost grows with the zone's area (~0.1 ms for 300x260 px).
                    ys, xs, mask, solid, tmp = g
                    roi = img[ys, xs]
                    a = self.zone_fill_alpha
                    cv2.addWeighted(roi, 1.0 - a, solid, a, 0.0, dst=tmp)
                    cv2.copyTo(tmp, mask, roi)
            cv2.polylines(img, [poly], True, color, 2, cv2.LINE_8)
            counts = " ".join(f"{k} {v}" for k, v in z.counts.items() if v)
            text = f"{z.name}: {counts}" if counts else z.name
            x, y = int(poly[:, 0].min()), int(poly[:, 1].min())
            w, h = self._size(text)
            # above the zone's bounding box, else just inside it, then stacked
            tx, ty = layout.place(w, h, [(x, y - h), (x + 2, y + 2), *self._stack(x, y - h, h)[1:]])
            layout.texts.append((text, tx, ty, color))

    def _draw_lines(self, img, lines: Sequence[LineDraw], layout: LabelLayout) -> None:
        for ln in lines:
            color = ln.color or (255, 0, 255)
            p1 = (int(round(ln.p1[0])), int(round(ln.p1[1])))
            p2 = (int(round(ln.p2[0])), int(round(ln.p2[1])))
            cv2.line(img, p1, p2, color, 2, cv2.LINE_8)
            dx, dy = p2[0] - p1[0], p2[1] - p1[1]
            norm = float(np.hypot(dx, dy)) or 1.0
            side = 1 if ln.in_side >= 0 else -1
            nx, ny = -dy / norm * side, dx / norm * side
            mx, my = (p1[0] + p2[0]) // 2, (p1[1] + p2[1]) // 2
            if ln.arrow:
                tip = (int(mx + 28 * nx), int(my + 28 * ny))
                cv2.arrowedLine(img, (mx, my), tip, color, 2, cv2.LINE_8, tipLength=0.35)
            label = ln.text if ln.text is not None else f"{ln.name} in {ln.count_in} out {ln.count_out}"
            tx, ty = (mx + 6, my + 6) if ln.text is None else (min(p1[0], p2[0]) + 6, min(p1[1], p2[1]) + 4)
            w, h = self._size(label)
            cands = self._stack(tx, ty, h)
            cands += [(x - w - 12, y) for x, y in cands]  # then on the other side of the point
            tx, ty = layout.place(w, h, cands)
            layout.texts.append((label, tx, ty, color))

    def _draw_status(self, img, st: StatusInfo) -> None:
        h = self._text_h + 2
        band = img[:h]
        np.right_shift(band, 1, out=band)  # dim the strip: cheap, keeps the picture visible
        x = 2
        x += self._text(img, st.camera, x, 1, (30, 30, 30)) + 4
        state = str(getattr(st.state, "value", st.state))
        x += self._text(img, state, x, 1, STATE_COLORS.get(state, (90, 90, 90))) + 4
        parts = []
        if st.source_fps is not None:
            parts.append(f"src {st.source_fps:.1f}")
        if st.detector_fps is not None:
            parts.append(f"det {st.detector_fps:.1f}")
        if st.published_fps is not None:
            parts.append(f"pub {st.published_fps:.1f} fps")
        if st.latency_ms is not None:
            parts.append(f"{st.latency_ms:.0f} ms")
        for p in parts:  # one sprite per field: values change independently, cache stays warm
            x += self._text(img, p, x, 1, (30, 30, 30)) + 2

    def _draw_banner(self, img, text: str) -> None:
        H, W = img.shape[:2]
        scale = max(0.6, min(3.0, W / 480.0))
        thick = max(2, int(round(scale * 1.5)))
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
        x, y = (W - tw) // 2, (H + th) // 2
        pad = int(10 * scale)
        cv2.rectangle(img, (x - pad, y - th - pad), (x + tw + pad, y + base + pad), (30, 30, 140), -1)
        cv2.rectangle(img, (x - pad, y - th - pad), (x + tw + pad, y + base + pad), (255, 255, 255), 2)
        cv2.putText(img, text, (x, y), _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)

    # ------------------------------------------------------------------ entry point
    def draw(self, image: np.ndarray, tracks: Tracks | None = None,
             trails: Mapping[int, np.ndarray] | None = None,
             class_names: Sequence[str] | None = None,
             zones: Sequence[ZoneDraw] | None = None, lines: Sequence[LineDraw] | None = None,
             status: StatusInfo | None = None, banner: str | None = None,
             coasting: np.ndarray | None = None) -> np.ndarray:
        """Draw in place on `image` (a copy the caller owns, (H,W,3) uint8) and return it.

        Coasting tracks are drawn dashed: by default those with det_index == -1; pass
        `coasting` (bool per track) to decide otherwise, e.g. "no detection matched for longer
        than the detector interval", so boxes do not flicker between detector frames.

        Order: zones, lines, trails, boxes/labels/OCR text, status strip, banner. For a stale
        or reconnecting camera pass `grey_out(last_frame)` and a banner, usually no tracks.
        """
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"overlay needs an (H,W,3) uint8 image, got {image.shape} {image.dtype}")
        layout = LabelLayout(image.shape[1], image.shape[0])
        if status is not None:  # the strip is drawn last but its place is taken first
            layout.reserve(0, 0, image.shape[1], self._text_h + 2)
        if zones:
            self._draw_zones(image, zones, layout)
        if lines:
            self._draw_lines(image, lines, layout)
        if tracks is not None and (len(tracks) or trails):
            self._draw_tracks(image, tracks, class_names, trails, coasting, layout)
        elif trails:
            self._draw_tracks(image, Tracks.empty(), class_names, trails, None, layout)
        for text, x, y, bg in layout.texts:
            self._text(image, text, x, y, bg)
        self.last_layout = layout
        if status is not None:
            self._draw_status(image, status)
        if banner:
            self._draw_banner(image, banner)
        return image

    def draw_scene(self, image: np.ndarray, scene: OverlayScene) -> np.ndarray:
        """draw() with the arguments of one OverlayScene."""
        return self.draw(image, scene.tracks, scene.trails, scene.class_names, scene.zones,
                         scene.lines, scene.status, scene.banner, scene.coasting)

    def stats(self) -> dict:
        return {"sprites": len(self._sprites), "sprite_hits": self.sprite_hits,
                "sprite_misses": self.sprite_misses}


_SCORE_TEXT = [f"{s / 100:.2f}" for s in range(101)]
_local = threading.local()


def draw_overlay(image: np.ndarray, scene: OverlayScene | Tracks | None = None,
                 trails: Mapping[int, np.ndarray] | None = None,
                 class_names: Sequence[str] | None = None,
                 zones: Sequence[ZoneDraw] | None = None, lines: Sequence[LineDraw] | None = None,
                 status: StatusInfo | None = None, banner: str | None = None,
                 coasting: np.ndarray | None = None) -> np.ndarray:
    """Draw `scene` (an OverlayScene) in place on `image` with a default renderer per calling
    thread (its own caches), and return the image.

    The older form, loose arguments with Tracks (or None) in place of the scene, is the same
    as OverlayScene(tracks, trails, class_names, zones, lines, coasting, status, banner).
    """
    r = getattr(_local, "renderer", None)
    if r is None:
        r = _local.renderer = OverlayRenderer()
    if isinstance(scene, OverlayScene):
        if any(v is not None for v in (trails, class_names, zones, lines, status, banner, coasting)):
            raise TypeError("draw_overlay(image, scene): the scene holds everything to draw; "
                            "pass no other arguments with it")
        return r.draw_scene(image, scene)
    return r.draw(image, scene, trails, class_names, zones, lines, status, banner, coasting)
