"""Offline processing: every frame of a source, as fast as possible (no drops), through
detector and tracker, to an annotated H.264 mp4, MOTChallenge tracks and a JSON summary.

The frame loop is the live pipeline's (stream.frameloop.FrameStep), offline: every frame in
order, each Nth one with its own detections. Decoded frames wait in order in a queue while a
detections source yields (frame, detections) for the detector's frames in frame order; the
frames between two of them are advanced without detections (the tracker predicts), exactly
as a sequential loop would.

    python main.py process INPUT [--detector NAME] [--every-n N] [--max-frames N]
                           [--output annotated.mp4] [--tracks tracks.txt] [--json]
"""
from __future__ import annotations

import logging
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from core.types import Detections, Frame

log = logging.getLogger("vigil.process")

SYNTHETIC_DEFAULT_FRAMES = 750


@dataclass(frozen=True)
class ProcessOptions:
    """What `main.py process` was asked to do (parsed and range-checked by the CLI)."""
    input: str
    config: str = "config.yaml"
    detector: str | None = None
    every_n: int = 1
    max_frames: int | None = None
    output: str | None = None
    tracks: str | None = None
    backend: str = "auto"
    seed: int | None = None
    progress: bool = True
    workers: int | None = None  # detector pool workers (None: the config's; 0: inline, no pool)


class _EventLog:
    """The analyzer's event sink offline: counts per kind and every text read (with its track
    and 1-based frame number, as in the MOTChallenge tracks file)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.texts: list[dict[str, Any]] = []

    def __call__(self, event: Any, snapshot: Any = None) -> None:
        kind = event.kind.value
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind == "text_read":
            self.texts.append({"frame": None if event.frame_seq is None else event.frame_seq + 1,
                               "track_id": event.track_id, "text": event.data.get("text")})


class _Progress:
    def __init__(self, enabled: bool, total: int | None) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.total = total
        self.t0 = time.perf_counter()
        self.last = 0.0

    def update(self, n: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self.last < 0.25:
            return
        self.last = now
        el = max(now - self.t0, 1e-6)
        fps = n / el
        eta = ""
        if self.total:
            eta = f"  ETA {max(0.0, (self.total - n) / max(fps, 1e-6)):5.1f}s"
            bar_w = 24
            done = int(bar_w * min(1.0, n / self.total))
            bar = "[" + "#" * done + "." * (bar_w - done) + "] "
        else:
            bar = ""
        sys.stderr.write(f"\r{bar}{n} frames  {fps:6.1f} fps{eta}   ")
        sys.stderr.flush()

    def close(self, n: int) -> None:
        if self.enabled:
            self.update(n, force=True)
            sys.stderr.write("\n")


def _load_cfg(args: ProcessOptions):
    from core.config import ConfigError, load_config, parse_config
    path = Path(args.config)
    if path.is_file():
        cfg = load_config(path, resolve_secrets=False)  # no server here: env: tokens unread
    elif args.config != "config.yaml":
        raise ConfigError(f"{path}: config file not found")
    else:
        cfg = parse_config({"cameras": [{"name": "process", "source": "synthetic:crossing"}]})
    data = cfg.model_dump(mode="python")
    # a configured camera with this very source lends all its settings (detector parameters,
    # zones, lines, defect watch, scene parameters); otherwise the first camera's detector
    same = [c for c in data["cameras"] if c["source"] == args.input]
    base = same[0] if same else data["cameras"][0]
    keys = ("backend", "resize", "open_timeout_s", "read_timeout_s", "synthetic", "seed")
    cam = {k: base[k] for k in keys}
    if same:
        cam.update({k: base[k] for k in ("detector_params", "zones", "lines", "defect_watch", "gate")})
    cam.update(name="process", source=args.input, detector=args.detector or base["detector"],
               detect_every=args.every_n, loop=False)
    if args.detector and args.detector != base["detector"]:
        cam.pop("detector_params", None)
    if not same or not args.input.startswith("synthetic:"):
        cam["synthetic"] = cam["synthetic"] if same else {}
    if args.backend != "auto":
        cam["backend"] = args.backend
    if args.seed is not None:
        cam["seed"] = args.seed
    data["cameras"] = [cam]
    if args.workers is not None:
        if args.workers < 0:
            raise ConfigError(f"--workers: expected 0 (no pool) or more, got {args.workers}")
        pool = data.setdefault("pool", {})
        pool["enabled"] = args.workers > 0
        if args.workers > 0:
            pool["workers"] = args.workers
    try:
        return parse_config(data, "command line", resolve_secrets=False)
    except ConfigError as e:
        msg = str(e).replace("cameras[0].source", "INPUT").replace("cameras[0].detect_every", "--every-n")
        msg = msg.replace("cameras[0].seed", "--seed")
        raise ConfigError(msg.replace("cameras[0].detector", "--detector")) from None


def _detections(analyzer: Any, frames: Iterable[Frame], detect_s: list[float]
                ) -> Iterator[tuple[Frame, Detections]]:
    """(frame, detections) for every frame of `frames`, in order: the analyzer's detector run
    inline, one frame at a time (the seconds of each run appended to `detect_s`)."""
    for frame in frames:
        t0 = time.perf_counter()
        dets = analyzer.detect(frame)
        detect_s.append(time.perf_counter() - t0)
        yield frame, dets


def _pooled(pool: Any, analyzer: Any, frames: Iterable[Frame], detect_s: list[float]
            ) -> Iterator[tuple[Frame, Detections]]:
    """(frame, detections) for every frame of `frames`, in frame order, from the detector pool:
    the upcoming frames are detected in parallel on its workers (pool.map) while the frame
    loop applies the finished ones in order. Each request is the analyzer's detect() on a
    worker, as the live cameras' are; the seconds each took are appended to `detect_s`."""
    def job(frame: Frame) -> Detections:
        t0 = time.perf_counter()
        try:
            return analyzer.detect(frame)
        finally:
            detect_s.append(time.perf_counter() - t0)

    from stream.pool import PoolError
    try:
        yield from pool.map(frames, fn=job)
    except PoolError as e:  # a worker that crashed or stuck twice over, or the pool closed
        from detectors.base import DetectorError
        raise DetectorError(f"detector pool {pool.name}: {e}") from e


def offline_pool(cam: Any, cfg: Any) -> Any:
    """The detector pool for offline processing of `cam`, or None when the detector runs
    inline: pooling off, a detector that is never pooled (none, motion) or a motion gate (its
    background model depends on the order of frames, and map runs frames out of order)."""
    if not cfg.pool.enabled or cam.gate != "none":
        return None
    from stream.pool import NodePools
    return NodePools(cfg.pool, cfg).pool_for(cam)


def run(args: ProcessOptions) -> dict[str, Any]:
    """Process every frame of args.input; returns the JSON summary."""
    cfg = _load_cfg(args)
    cam = cfg.cameras[0]
    pool = offline_pool(cam, cfg)
    try:
        return _run(args, cfg, cam, pool)
    finally:
        if pool is not None:
            pool.close()


def _run(args: ProcessOptions, cfg: Any, cam: Any, pool: Any) -> dict[str, Any]:
    from stream.analyzer import build_analyzer
    from stream.frameloop import FrameStep
    from stream.recorder import Mp4Writer
    from stream.errors import SourceError
    from stream.sources import open_source
    from trackers.mot import write_mot

    events = _EventLog()
    analyzer = build_analyzer(cam, cfg, detector=None if pool is None else pool.model,
                              emit=events)
    src = open_source(cam.source, backend=cam.backend, open_timeout_s=cam.open_timeout_s,
                      read_timeout_s=cam.read_timeout_s, samples_dir=cfg.paths.samples,
                      synthetic_params=cam.synthetic, seed=cam.seed)
    max_frames = args.max_frames
    if max_frames is None and cam.source.startswith("synthetic:"):
        max_frames = SYNTHETIC_DEFAULT_FRAMES
        print(f"note: synthetic sources are endless; processing {max_frames} frames (use --max-frames)",
              file=sys.stderr)
    src.open()
    fps = getattr(src, "fps", None) or 25.0
    evaluator = None
    if analyzer.defects is not None and hasattr(src, "truth"):
        from events.defects import ConveyorEvaluator
        evaluator = ConveyorEvaluator(analyzer.defects)
    writer = Mp4Writer(args.output, fps) if args.output else None
    rows: list[np.ndarray] = []
    stage_s: dict[str, list[float]] = {"decode": [], "detect": [], "track": [], "draw": [], "encode": []}
    progress = _Progress(args.progress, max_frames)
    every = cam.detect_every
    step = FrameStep(analyzer)
    # every frame read waits here, in order, until the frame loop takes it; the detector's
    # frames (every Nth) are also handed to the detections source, which may run ahead
    pending: deque[Frame] = deque()

    def read_frames() -> Iterator[Frame]:
        """Decode every frame into `pending`; yield the ones the detector runs on."""
        k = 0
        while max_frames is None or k < max_frames:
            t0 = time.perf_counter()
            try:
                img = src.read()
            except SourceError as e:
                if k == 0:
                    raise
                log.warning("stopping at frame %d: %s", k, e)
                return
            if img is None:
                return
            stage_s["decode"].append(time.perf_counter() - t0)
            frame = Frame(img, k, k / fps, "process")
            pending.append(frame)
            k += 1
            if frame.seq % every == 0:
                yield frame

    n = 0

    def advance(frame: Frame, updates: list) -> None:
        nonlocal n
        t2 = time.perf_counter()
        tracks = step.advance(frame, updates)
        if evaluator is not None:
            evaluator.observe(n, src.truth(n), (frame.width, frame.height))
        t3 = time.perf_counter()
        stage_s["track"].append(t3 - t2)
        if len(tracks):
            xyxy = tracks.xyxy.astype(np.float64)
            rows.append(np.column_stack([
                np.full(len(tracks), n + 1), tracks.track_id, xyxy[:, 0], xyxy[:, 1],
                xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1], tracks.score]))
        if writer is not None:
            out = step.draw(frame, tracks)
            t4 = time.perf_counter()
            writer.write(out)
            stage_s["draw"].append(t4 - t3)
            stage_s["encode"].append(time.perf_counter() - t4)
        n += 1
        progress.update(n)

    t_start = time.perf_counter()
    try:
        source = (_detections(analyzer, read_frames(), stage_s["detect"]) if pool is None else
                  _pooled(pool, analyzer, read_frames(), stage_s["detect"]))
        for det_frame, dets in source:
            # frames before the detector's one (every-n > 1) have no detections of their own
            while pending and pending[0].seq < det_frame.seq:
                advance(pending.popleft(), [])
            frame = pending.popleft()
            assert frame is det_frame, (frame.seq, det_frame.seq)
            advance(frame, [(frame, dets)])
        while pending:  # the frames after the detector's last one
            advance(pending.popleft(), [])
        analyzer.finish()
    finally:
        progress.close(n)
        src.close()
        if writer is not None:
            writer.close()
        analyzer.close()
    elapsed = time.perf_counter() - t_start
    if args.tracks:
        data = np.concatenate(rows) if rows else np.zeros((0, 7))
        write_mot(args.tracks, data)
    summary: dict[str, Any] = {
        "input": cam.source,
        "detector": cam.detector,
        "every_n": every,
        "frames": n,
        "seconds": round(elapsed, 3),
        "fps": round(n / elapsed, 2) if elapsed > 0 else None,
        "detections": analyzer.detections_total,
        "tracks": analyzer.confirmed_tracks,
        # median per run of the stage: "detect" over the frames the detector ran on only
        "stage_ms": {k: (round(float(np.median(v)) * 1000, 3) if v else None) for k, v in stage_s.items()},
        "stage_runs": {k: len(v) for k, v in stage_s.items()},
        "stage_ms_total": {k: round(float(np.sum(v)) * 1000, 1) for k, v in stage_s.items()},
        "output": args.output,
        "tracks_file": args.tracks,
    }
    pool_stats = None if pool is None else pool.stats()
    summary["detector_pool"] = None if pool_stats is None else {
        k: pool_stats[k] for k in ("kind", "workers", "restarts", "errors", "inference_ms_p50")}
    summary["events"] = dict(sorted(events.counts.items()))
    summary["texts"] = events.texts
    summary.update(analyzer.counters())
    if evaluator is not None:
        ev = evaluator.summary()
        summary.update({k: ev[k] for k in ("parts", "parts_true", "count_exact", "defect_precision",
                                          "defect_recall", "label_read_rate") if k in ev})
        summary["defect_eval"] = ev
    return summary
