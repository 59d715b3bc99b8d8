"""Detector protocol and the name -> factory registry.

A detector is built from its config section (the pydantic model for its kind in
core/config.py, the only place its parameters and bounds are declared), optionally
with keyword overrides validated by that same model; `detect(frame)` must never
raise on an empty, tiny, grayscale, huge or non-contiguous image: it returns a
(possibly empty) `Detections` instead.

`close()` releases what the detector holds (ONNX Runtime sessions, OpenCV cascades and
networks, OCR thread pools and Tesseract APIs). It is idempotent, and a closed detector stays
safe to call: `detect()` after `close()` returns an empty `Detections` for that frame (with
its seq/ts) instead of raising, because a thread that outlived its join timeout may still
hand it one last frame. The owner closes it after the threads using it have stopped
(stream.analyzer.Analyzer.close, called by CameraPipeline.stop and process).

`detect_batch(frames) -> list[Detections]` (one result per frame, in order) is the batched
form: a detector that can run several frames in one inference (YOLO: one ONNX Runtime run
for the batch, its converted model takes a dynamic batch) defines it; for every other
detector `detect_batch(detector, frames)` below is a loop over detect(). Callers that batch
(the detector pool) go through that function, so every detector can be handed a batch.
The batched result of a frame equals its single detect() result (tests/unit/test_yolo_batch.py).
"""
from __future__ import annotations

import functools
import importlib
import logging
from typing import Any, Callable, Mapping, Protocol, Sequence, TypeVar, runtime_checkable

import numpy as np

from core.config import Section, resolve_section
from core.imaging import to_bgr_uint8
from core.types import Detections, Frame

log = logging.getLogger("vigil.detectors")


class DetectorError(RuntimeError):
    """A detector could not be built (missing model file, bad parameter...)."""


S = TypeVar("S", bound=Section)


def config_section(model: type[S], cfg: S | Mapping[str, Any] | None, overrides: Mapping[str, Any],
                   name: str) -> S:
    """The detector's section (`cfg`, or the defaults) with keyword `overrides` applied and
    validated by the section's model; problems raise DetectorError naming 'name.key'."""
    return resolve_section(model, cfg, overrides, where=name, error=DetectorError)


@runtime_checkable
class Detector(Protocol):
    name: str
    class_names: list[str]

    def detect(self, frame: Frame | np.ndarray) -> Detections: ...

    def close(self) -> None: ...


@runtime_checkable
class BatchDetector(Detector, Protocol):
    """A detector with a real batched path (`detect_batch`, one inference for all frames)."""

    def detect_batch(self, frames: Sequence[Frame | np.ndarray]) -> list[Detections]: ...


def detect_batch(detector: Detector, frames: Sequence[Frame | np.ndarray]) -> list[Detections]:
    """Detections of every frame, in order: the detector's own detect_batch when it has one
    (one inference for the batch), else a loop over detect() (the protocol's default)."""
    frames = list(frames)
    if not frames:
        return []
    batched = getattr(detector, "detect_batch", None)
    if batched is not None:
        out = list(batched(frames))
        if len(out) != len(frames):
            raise DetectorError(f"{getattr(detector, 'name', detector)}: detect_batch returned "
                                f"{len(out)} results for {len(frames)} frames")
        return out
    return [detector.detect(f) for f in frames]


# name -> "module:Class"; imported lazily so that importing detectors/ has no side effects
_REGISTRY: dict[str, str] = {
    "none": "detectors.base:NullDetector",
    "haar": "detectors.haar:HaarDetector",
    "hog": "detectors.hog:HogDetector",
    "yolo": "detectors.yolo:YoloDetector",
    "text": "detectors.text:TextDetector",
    "motion": "detectors.motion:MotionDetector",
}


def register(name: str, target: str) -> None:
    _REGISTRY[name] = target


def names() -> list[str]:
    return sorted(_REGISTRY)


def factory(name: str) -> Callable[..., Detector]:
    if name not in _REGISTRY:
        raise DetectorError(f"unknown detector {name!r}; known: {', '.join(names())}")
    mod, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(mod), cls)


def build(name: str, cfg: Section | Mapping[str, Any] | None = None) -> Detector:
    """Build a detector by registry name from its config section (the pydantic model, or a
    mapping of keys that override the section's defaults)."""
    if cfg is None or isinstance(cfg, Mapping):
        return factory(name)(**(cfg or {}))
    return factory(name)(cfg)


# the config keys that make a detector's inference single-threaded (a pool runs one such
# session per core side by side: ONNX Runtime's advice, intra = inter = 1); detectors not
# listed (haar, hog, motion, none) use OpenCV, whose thread count is process-wide
# (cv2.setNumThreads), or no inference at all
SINGLE_THREAD_OVERRIDES: dict[str, dict[str, int]] = {
    "yolo": {"intra_op_threads": 1, "inter_op_threads": 1},
    "text": {"threads": 1},
}


def single_thread_overrides(name: str) -> dict[str, int]:
    """Keyword overrides for `name`'s config section that build it with one inference thread
    (empty for detectors without a thread setting)."""
    return dict(SINGLE_THREAD_OVERRIDES.get(name, {}))


def as_bgr(image: np.ndarray | Frame) -> np.ndarray | None:
    """Normalise any input image to a contiguous (H,W,3) uint8 BGR array, or None if unusable
    (core.imaging.to_bgr_uint8: grey, BGRA and other dtypes converted)."""
    return to_bgr_uint8(image.image if isinstance(image, Frame) else image)


def choose_providers(providers: str, available: list[str] | tuple[str, ...], owner: str = "detector") -> list[str]:
    """Config value "auto" | "cpu" | "cuda" -> ONNX Runtime provider list.

    auto takes CUDA only when onnxruntime-gpu is installed and offers it (a GPU is present);
    callers check session.get_providers() afterwards and log what was really used.
    """
    avail = list(available)
    if providers == "cpu":
        return ["CPUExecutionProvider"]
    if providers == "cuda":
        if "CUDAExecutionProvider" not in avail:
            raise DetectorError(f"{owner}.providers: 'cuda' but onnxruntime has no "
                                f"CUDAExecutionProvider (available: {avail}); run `make gpu` "
                                "(onnxruntime-gpu) or use 'auto' or 'cpu'")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    # "auto" (the config schema allows nothing else)
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in avail else []) + \
        ["CPUExecutionProvider"]


def frame_meta(image: np.ndarray | Frame) -> tuple[int, float]:
    if isinstance(image, Frame):
        return image.seq, image.ts
    return -1, float("nan")


D = TypeVar("D")


def closed_guard(detect: Callable[[D, Any], Detections]) -> Callable[[D, Any], Detections]:
    """Decorator for a detector's detect(): after `close()` (the instance's `_closed` is true)
    it returns an empty Detections for the frame instead of running; an exception raised by
    a frame that was in flight while another thread closed the detector also becomes an empty
    result (its resources went away under it). Any other exception propagates as before."""

    @functools.wraps(detect)
    def guarded(self: D, frame: Any) -> Detections:
        if getattr(self, "_closed", False):
            return Detections.empty(*frame_meta(frame))
        try:
            return detect(self, frame)
        except Exception:
            if getattr(self, "_closed", False):
                return Detections.empty(*frame_meta(frame))
            raise

    return guarded


class NullDetector:
    """Finds nothing (for pipelines that only track or show the stream)."""

    name = "none"
    class_names: list[str] = []

    def __init__(self, cfg: Any = None, **_: Any) -> None:
        pass

    def detect(self, frame: Frame | np.ndarray) -> Detections:
        seq, ts = frame_meta(frame)
        return Detections.empty(seq, ts)

    def close(self) -> None:
        """Nothing to release."""
