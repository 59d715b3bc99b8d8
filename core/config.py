"""The configuration schema (pydantic v2) and its loader.

Every section forbids unknown keys and every value has a type and bounds, so a
typo fails at startup with the file, the key path and what was expected,
instead of on the first frame.
"""
from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional, TypeVar

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError,
                      ValidationInfo, field_validator, model_validator)

from core.scenes import coerce_params
from core.uri import parse_uri


__all__ = ["VigilConfig", "ConfigError", "Section", "load_config", "parse_config", "format_loc",
           "resolve_section"]


class ConfigError(Exception):
    """A configuration problem, with a message meant for a person (no traceback)."""


class Section(BaseModel):
    """A config section. Components (detectors, tracker, defect watch) take their section
    as it is: its fields are the only place a parameter's default and bounds are declared."""
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _fspath(v: Any) -> Any:
    return os.fspath(v) if isinstance(v, os.PathLike) else v


def _pair(lo: int, hi: int, multiple_of: Optional[int] = None) -> Any:
    item = Annotated[int, Field(ge=lo, le=hi, multiple_of=multiple_of)]
    return Annotated[list[item], Field(min_length=2, max_length=2)]


PosInt = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Point = Annotated[list[float], Field(min_length=2, max_length=2)]
Size2 = _pair(1, 10000)
PathStr = Annotated[str, BeforeValidator(_fspath)]  # a str in YAML; a str or a Path from code


# ---------------------------------------------------------------- server
# the secret hash web.auth.hash_secret writes (`python main.py hash-password`); web.auth checks
# it with the same pattern (tests/unit/test_auth.py keeps the two in step)
SECRET_HASH_RE = re.compile(r"^pbkdf2_sha256\$(\d{6,8})\$([A-Za-z0-9./+_-]{8,64})\$([A-Za-z0-9+/]{43}=)$")
SECRET_HASH_ITERATIONS = (100_000, 10_000_000)
SECRET_KEYS = frozenset({"token", "secret", "session_secret", "password"})  # values never echoed in errors


def _env_secret(v: str, what: str, info: ValidationInfo, lo: int = 8, hi: int = 256) -> None:
    """An `env:NAME` secret: the variable must be set and lo..hi characters long (when secrets
    are resolved). The reference itself is what the config keeps."""
    name = v[4:]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", name):
        raise ValueError(f"'env:' needs a variable name, e.g. env:VIGIL_{what.upper()}")
    if not (info.context or {}).get("resolve_secrets", True):
        return
    val = os.environ.get(name)
    if not val:
        raise ValueError(f"environment variable {name!r} named by the {what} is not set")
    if not lo <= len(val) <= hi:
        raise ValueError(f"environment variable {name!r} (the {what}) has {len(val)} characters; "
                         f"it needs {lo} to {hi}")


class UserConfig(Section):
    """A named user (web/auth.py): signs in at /login, or presents the secret as HTTP Basic
    (`name:secret`) or Bearer."""
    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$",
                      description="user name (letters, digits, _ . @ -); 'token' is server.token's")
    role: Literal["viewer", "admin"] = Field(
        "viewer", description="viewer: dashboard, streams, snapshots, events, clips, read-only API; "
                              "admin: also the controls (exposure reset, session rotation, writes)")
    secret: str = Field(
        min_length=5, max_length=300,
        description="'env:NAME' (read at start, 8..256 characters) or a hash from "
                    "`python main.py hash-password` (pbkdf2_sha256$...); never the plain password")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if v == "token":
            raise ValueError("'token' is the name server.token signs in as; pick another")
        return v

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: str, info: ValidationInfo) -> str:
        if v.startswith("env:"):
            _env_secret(v, "secret", info)
            return v
        m = SECRET_HASH_RE.match(v)
        if m is None:
            raise ValueError("must be 'env:NAME' or a hash from `python main.py hash-password` "
                             "(pbkdf2_sha256$...): plain passwords are not kept in the config")
        lo, hi = SECRET_HASH_ITERATIONS
        if not lo <= int(m.group(1)) <= hi:
            raise ValueError(f"the hash has {int(m.group(1))} iterations; {lo}..{hi} are accepted")
        return v


class ThrottleConfig(Section):
    """Wrong credentials per client address (web/throttle.py): `free_failures` distinct wrong
    secrets, then each further one locks the address out for lockout_s, doubling up to
    max_lockout_s (defaults: 1, 2, 4 ... 256, then 300 s)."""
    free_failures: int = Field(5, ge=1, le=100, description="distinct wrong secrets before lock-outs start")
    lockout_s: float = Field(1.0, gt=0, le=3600, description="the first lock-out; doubles with each further failure")
    max_lockout_s: float = Field(300.0, gt=0, le=86400, description="the longest lock-out")
    forget_after_s: float = Field(3600.0, ge=1, le=30 * 86400,
                                  description="an address's failures are forgotten this long after its last one")

    @model_validator(mode="after")
    def _order(self) -> "ThrottleConfig":
        if self.max_lockout_s < self.lockout_s:
            raise ValueError("max_lockout_s must be >= lockout_s")
        if self.forget_after_s < self.max_lockout_s:
            raise ValueError("forget_after_s must be >= max_lockout_s")
        return self


class ServerConfig(Section):
    host: str = Field("127.0.0.1", description="address to bind; a public address without auth "
                                               "(token or users) is refused unless allow_public_without_auth")
    port: int = Field(8080, ge=0, le=65535, description="TCP port; 0 picks a free one")
    token: Optional[str] = Field(
        None, description="admin access token, 8..256 characters; 'env:NAME' reads it from an "
                          "environment variable (checked the same way)")
    users: list[UserConfig] = Field(default_factory=list, max_length=256,
                                    description="named users with a role (viewer or admin)")
    session_secret: Optional[str] = Field(
        None, description="null: a random secret kept in <paths.data>/auth/session_secret (made on "
                          "first start); 'env:NAME': from the environment (32..512 characters). "
                          "Changing it signs everyone out")
    session_max_age_s: int = Field(86400, ge=60, le=30 * 86400,
                                   description="a dashboard session ends this long after sign-in")
    behind_tls: bool = Field(False, description="served over https (by a TLS proxy): cookies are Secure")
    trusted_proxies: int = Field(
        0, ge=0, le=5, description="reverse proxies in front: trust this many hops of "
                                   "X-Forwarded-For/-Proto/-Host/-Port (client address, https)")
    allow_public_without_auth: bool = Field(
        False, description="allow binding a non-loopback address with no token and no users")
    throttle: ThrottleConfig = Field(default_factory=ThrottleConfig)
    threads: int = Field(48, ge=4, le=1024, description="WSGI worker threads; each open MJPEG viewer holds one")
    jpeg_quality: int = Field(80, ge=10, le=100)
    stream_timeout_s: float = Field(1.0, gt=0, le=30, description="viewer wait before a keepalive check")
    public_url: Optional[str] = Field(
        None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$", max_length=512,
        description="base URL readers reach this server at (e.g. behind a proxy): event snapshot "
                    "and clip links in the API, SSE and webhooks become absolute")

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if v in ("localhost", "0.0.0.0", "::"):
            return v
        try:
            ipaddress.ip_address(v)
        except ValueError:
            if not v or len(v) > 253 or any(c.isspace() for c in v):
                raise ValueError(f"not an IP address or host name: {v!r}") from None
        return v

    @field_validator("token")
    @classmethod
    def _token(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        """A literal token, or one read from `env:NAME`, must be 8..256 characters. Commands
        that start no server (process) load with resolve_secrets=False: the reference stays."""
        if v is None:
            return v
        what = "the token"
        if v.startswith("env:"):
            name = v[4:]
            if not name:
                raise ValueError("'env:' needs a variable name, e.g. env:VIGIL_TOKEN")
            if not (info.context or {}).get("resolve_secrets", True):
                return v
            val = os.environ.get(name)
            if not val:
                raise ValueError(f"environment variable {name!r} named by the token is not set")
            v, what = val, f"environment variable {name!r} (the token)"
        if not 8 <= len(v) <= 256:
            raise ValueError(f"{what} has {len(v)} characters; a token needs 8 to 256")
        return v

    @field_validator("session_secret")
    @classmethod
    def _session_secret(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        if v is None:
            return v
        if not v.startswith("env:"):
            raise ValueError("must be null (a secret kept in the data folder) or 'env:NAME'")
        _env_secret(v, "session secret", info, lo=32, hi=512)
        return v

    @field_validator("users")
    @classmethod
    def _unique_users(cls, v: list[UserConfig]) -> list[UserConfig]:
        seen: dict[str, int] = {}
        for i, u in enumerate(v):
            if u.name in seen:
                raise ValueError(f"[{i}].name: duplicate user name {u.name!r} (also [{seen[u.name]}])")
            seen[u.name] = i
        return v

    @property
    def auth_enabled(self) -> bool:
        return bool(self.token or self.users)


class PathsConfig(Section):
    models: str = Field("models", description="model cache folder (assets)")
    samples: str = Field("samples", description="sample clip cache folder (assets)")
    data: str = Field("var", description="events database, snapshots and clips")


# ---------------------------------------------------------------- detectors
class HaarConfig(Section):
    """detectors/haar.py: OpenCV cascade classifier."""
    cascade: PathStr = Field("frontalface_default", min_length=1,
                             description="cascade short name from cv2.data.haarcascades or an XML path")
    equalize: bool = Field(True, description="histogram-equalise the gray image first")
    scale_factor: float = Field(1.1, ge=1.01, le=2.0, description="image pyramid step")
    min_neighbors: int = Field(4, ge=0, le=50, description="neighbouring hits a box needs")
    min_size: Size2 = Field(default_factory=lambda: [24, 24], description="smallest box [w, h], frame px")
    max_size: Optional[Size2] = Field(None, description="largest box [w, h], frame px; null: no limit")
    nested: Optional[PathStr] = Field(None, description="cascade searched inside each box (e.g. eye)")
    nested_required: bool = Field(False, description="keep only boxes where the nested cascade fires")
    nested_output: bool = Field(True, description="report nested hits as rows of their own (class 1)")
    nested_min_neighbors: int = Field(3, ge=0, le=50)
    score_threshold: Fraction = Field(0.0, description="drop boxes below this score (votes mapped to 0..1)")
    nms_iou: Fraction = Field(0.4, description="NMS IoU between boxes of one class; 1 disables")
    max_side: int = Field(1280, ge=64, le=16384, description="larger frames are searched downscaled to this side")

    @model_validator(mode="after")
    def _sizes(self) -> "HaarConfig":
        if self.max_size is not None and (self.max_size[0] < self.min_size[0]
                                          or self.max_size[1] < self.min_size[1]):
            raise ValueError(f"max_size {self.max_size} is smaller than min_size {self.min_size}")
        if self.nested_required and not self.nested:
            raise ValueError("nested_required needs a nested cascade")
        return self


class HogConfig(Section):
    """detectors/hog.py: HOG + OpenCV's default people SVM."""
    win_stride: _pair(8, 64, 8) = Field(default_factory=lambda: [8, 8],
                                        description="window step [x, y] in upscaled px, multiples of 8")
    padding: _pair(0, 64) = Field(default_factory=lambda: [8, 8], description="border [x, y] around the image")
    scale: float = Field(1.05, ge=1.01, le=2.0, description="pyramid step")
    hit_threshold: float = Field(0.0, ge=-5.0, le=5.0, description="raw SVM margin a window needs")
    upscale: float = Field(1.5, ge=1.0, le=4.0, description="people below 128 px tall need 1.5-2x")
    max_side: int = Field(1600, ge=128, le=8192, description="cap on the upscaled longest side")
    nms_iou: Fraction = 0.3
    score_threshold: Fraction = Field(0.6, description="minimum sigmoid(SVM margin)")
    tighten: bool = Field(True, description="shrink the 64x128 window to the person inside it")
    tighten_wh: Annotated[list[Annotated[float, Field(ge=0.3, le=1.0)]], Field(min_length=2, max_length=2)] = \
        Field(default_factory=lambda: [0.68, 0.76], description="[w, h] fractions kept by tighten")
    max_det: int = Field(200, ge=1, le=1000)


class YoloConfig(Section):
    """detectors/yolo.py: YOLOv3 (Darknet converted to ONNX) on ONNX Runtime."""
    model: PathStr = Field("models/yolov3-tiny.onnx", description=".onnx, or a Darknet .weights with cfg")
    cfg: Optional[PathStr] = Field(None, description="Darknet .cfg when model is a .weights file")
    names: Optional[PathStr] = Field(None, description="class names file (default: the model's metadata)")
    input_size: int = Field(416, ge=128, le=1280, multiple_of=32)
    conf_threshold: Fraction = Field(0.25, description="objectness x class score threshold")
    nms_iou: Fraction = Field(0.45, description="class-aware NMS IoU")
    classes: list[str] = Field(default_factory=list, description="class names to keep; empty keeps all")
    letterbox: bool = Field(True, description="keep the aspect ratio with padding (false: stretch)")
    providers: Literal["auto", "cpu", "cuda"] = "auto"
    intra_op_threads: int = Field(0, ge=0, le=64, description="0: ONNX Runtime's default")
    inter_op_threads: int = Field(0, ge=0, le=64, description="0: ONNX Runtime's default")
    max_det: int = Field(300, ge=1, le=10000)


# Page segmentation modes Tesseract reads text with: 0 (OSD only) and 2 (layout, no OCR) give none.
TESSERACT_PSM = (1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)


class TextConfig(Section):
    """detectors/text.py: DBNet or EAST boxes, read by Tesseract (detectors/ocr.py)."""
    box_detector: Literal["dbnet", "east"] = "dbnet"
    model: Optional[PathStr] = Field(None, validate_default=True,
                                     description="DBNet .onnx (default from assets) or EAST .pb/.onnx (user supplied)")
    limit_side: int = Field(960, ge=32, le=4096, multiple_of=32, description="DBNet: longest input side")
    det_threshold: float = Field(0.3, gt=0, lt=1, description="DBNet: probability map threshold")
    box_threshold: float = Field(0.6, gt=0, lt=1, description="DBNet: minimum mean probability of a box")
    unclip_ratio: float = Field(1.5, ge=0.0, le=5.0, description="DBNet: box expansion")
    min_box_size: float = Field(3.0, ge=0, le=1000, description="smallest short side kept, model-input px")
    max_candidates: int = Field(1000, ge=1, le=100000)
    east_confidence: float = Field(0.5, gt=0, lt=1)
    east_nms_iou: float = Field(0.4, gt=0, lt=1)
    east_input: _pair(32, 4096, 32) = Field(default_factory=lambda: [320, 320],
                                            description="EAST input [w, h], multiples of 32")
    recognize: bool = Field(True, description="read each box with Tesseract")
    lang: str = Field("eng", pattern=r"^[A-Za-z_]{3,40}(\+[A-Za-z_]{3,40})*$")
    psm: int = Field(7, ge=1, le=13, description=f"Tesseract page segmentation mode, one of {TESSERACT_PSM}")
    min_text_confidence: float = Field(0.0, ge=0, le=100)
    keep_unread: bool = Field(True, description="keep boxes whose text could not be read")
    whitelist: Optional[str] = Field(None, max_length=512)
    ocr_line_height: int = Field(40, ge=16, le=128, description="crops are scaled to this height for OCR")
    ocr_workers: int = Field(1, ge=1, le=16)
    providers: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(0, ge=0, le=64, description="ONNX Runtime intra-op threads; 0: its default")
    tessdata: Optional[PathStr] = Field(None, description="tessdata folder (default: <venv>/share/tessdata)")

    @field_validator("model")
    @classmethod
    def _model(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        if not v and info.data.get("box_detector") == "east":
            raise ValueError("box_detector 'east' needs a model path: frozen_east_text_detection.pb "
                             "or an ONNX export of it (EAST weights are not shipped)")
        return v

    @field_validator("psm")
    @classmethod
    def _psm(cls, v: int) -> int:
        if v not in TESSERACT_PSM:
            raise ValueError(f"must be a Tesseract page segmentation mode in {list(TESSERACT_PSM)} "
                             "(7 = single line, 8 = single word)")
        return v


class MotionConfig(Section):
    """detectors/motion.py: background subtraction boxes (sizes in frame pixels)."""
    method: Literal["mog2", "knn"] = "mog2"
    history: int = Field(500, ge=10, le=10000, description="frames of background history")
    var_threshold: Optional[float] = Field(None, ge=1, le=1000, description="null: the method's default (16 mog2, 400 knn)")
    detect_shadows: bool = False
    learning_rate: float = Field(-1.0, ge=-1.0, le=1.0, description="-1: automatic, else a fixed rate in 0..1")
    blur: int = Field(5, ge=0, le=31, description="Gaussian kernel before subtraction: 0 (off) or odd")
    open_kernel: int = Field(3, ge=0, le=31, description="morphological opening, 0: off")
    close_kernel: int = Field(7, ge=0, le=31, description="morphological closing, 0: off")
    merge_distance: int = Field(0, ge=0, le=200, description="blobs closer than this (px) merge")
    min_area: float = Field(150.0, ge=1, le=10_000_000, description="smallest foreground pixel count of a box")
    max_area: Optional[float] = Field(None, ge=1, description="largest box area; above min_area")
    warmup_frames: int = Field(10, ge=0, le=10000, description="frames only learning the background")
    downscale: float = Field(1.0, ge=1.0, le=8.0)
    max_side: int = Field(1280, ge=64, le=8192, description="longest side the subtractor works on")
    max_det: int = Field(100, ge=1, le=1000)

    @field_validator("learning_rate")
    @classmethod
    def _rate(cls, v: float) -> float:
        if v != -1.0 and v < 0:
            raise ValueError("must be -1 (automatic) or in 0..1")
        return v

    @field_validator("blur")
    @classmethod
    def _blur(cls, v: int) -> int:
        if v and (v < 3 or v % 2 == 0):
            raise ValueError("must be 0 (off) or an odd size in 3..31")
        return v

    @model_validator(mode="after")
    def _areas(self) -> "MotionConfig":
        if self.max_area is not None and self.max_area <= self.min_area:
            raise ValueError(f"max_area ({self.max_area:g}) must exceed min_area ({self.min_area:g})")
        return self


class DetectorsConfig(Section):
    haar: HaarConfig = Field(default_factory=HaarConfig)
    hog: HogConfig = Field(default_factory=HogConfig)
    yolo: YoloConfig = Field(default_factory=YoloConfig)
    text: TextConfig = Field(default_factory=TextConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)


DetectorName = Literal["none", "haar", "hog", "yolo", "text", "motion"]


# ---------------------------------------------------------------- tracker
class TrackerConfig(Section):
    """trackers/tracker.py: every tunable, with defaults meant for any camera (times in
    seconds, sizes relative to the box). `Tracker(TrackerConfig(max_age_s=2))` or
    `Tracker(max_age_s=2)` override fields."""
    max_age_s: float = Field(1.5, ge=0, le=60, description="unmatched longer than this -> lost")
    max_age_frames: int = Field(45, ge=0, le=10000, description="or more missed detector updates than this")
    coast_report_s: float = Field(0.1, ge=0, le=60, description="how long a coasting track is still reported (0: never)")
    min_hits: int = Field(3, ge=1, le=100, description="matched updates before a track is confirmed")
    warmup_frames: int = Field(3, ge=0, le=100, description="the first updates after start/reset confirm at once")
    iou_gate: float = Field(0.3, ge=0.01, le=0.99, description="minimum IoU for a motion match")
    distance_gate: float = Field(0.0, ge=0, le=5, description="second stage for coasting tracks: max centre "
                                 "distance in box heights (0: off)")
    appearance: bool = Field(True, description="use dHash when an image is given")
    appearance_weight: float = Field(0.5, ge=0, le=10, description="cost = (1 - IoU) + weight * hamming / 64")
    dhash_threshold: int = Field(20, ge=0, le=64, description="max Hamming bits for re-identification "
                                 "(unrelated crops differ by ~32 +- 4 bits, so 20 is 3 sigma off; re-id is also "
                                 "gated by the predicted position; 16 left PETS09 at 59 ids, 20 gives 43)")
    gallery_interval_s: float = Field(0.0, ge=0, le=60, description="after its first 4 hashes, a matched "
                                      "track's detection is hashed into its gallery at most this often (and "
                                      "while it touches another track); matches the IoU gate decides alone need "
                                      "no hash. 0 (default): every match. PETS09: 0.2 -> 42 ids with 33 % fewer "
                                      "hashes, 0.3 -> 45 ids with 44 % fewer, but look-alike conveyor parts then "
                                      "get re-identified as one (synthetic:conveyor seeds 1-2 lose 1-3 parts)")
    reid_window_s: float = Field(5.0, ge=0, le=600, description="how long a lost track can get its id back (0: never)")
    reid_radius: float = Field(1.0, ge=0, le=20, description="re-id radius in box heights at loss time ...")
    reid_speed: float = Field(0.5, ge=0, le=20, description="... growing by (track speed + this x height) per second")
    birth_score: float = Field(0.7, ge=0, le=1, description="ByteTrack's split: detections below this score "
                               "can match existing tracks but never start one (low scores are mostly "
                               "occluded people or false alarms; on MOT15 0.7 cuts PETS09 ids 71 -> 64 "
                               "boxes only at equal TUD MOTA/IDF1; 0: every detection can start a track)")
    trail_length: int = Field(32, ge=1, le=10000, description="recent centres kept per track")
    max_tracks: int = Field(256, ge=1, le=100000, description="live tracks (and lost tracks) kept at most")
    max_events: int = Field(10000, ge=1, le=10_000_000, description="undelivered events kept at most")
    std_meas: float = Field(0.03, ge=1e-4, le=1.0, description="Kalman: detector box noise, fraction of box size "
                            "(0.05, DeepSORT's 1/20, gives TUD-Stadtmitte 0.744/0.810/7 switches and PETS09 58 ids "
                            "boxes only, but loses a part of synthetic:conveyor seed 2: kept at 0.03)")
    std_vel0: float = Field(0.6, ge=1e-3, le=100, description="Kalman: initial velocity std, box sizes per second")
    accel: float = Field(0.05, ge=0, le=1000, description="Kalman: white-noise acceleration density")
    oru_min_gap: int = Field(0, ge=0, le=10000, description="OC-SORT's observation-centric re-update: a track "
                             "matched again after at least this many missed updates re-runs its filter from its last "
                             "match along boxes interpolated to the new one, so the velocity it coasted on does not "
                             "stay in its state (0: off). 2: TUD-Stadtmitte 0.732/0.805/9 -> 0.734/0.806/9 alone, but "
                             "PETS09 boxes only 64 -> 65 ids, and with OCM on it undoes OCM's gains (PETS09 with video "
                             "42 -> 45 ids): off by default; 1 (every gap, as OC-SORT) takes TUD IDF1 to 0.750")
    direction_weight: float = Field(0.2, ge=0, le=10, description="OC-SORT's observation-centric momentum (OCM): "
                                    "cost += weight x score x (angle between a track's observed direction and "
                                    "the direction to the detection) / pi, where the IoU gate leaves a choice; "
                                    "directions shorter than 2 sigma of the detector noise are ignored. 0.2 is "
                                    "OC-SORT's inertia: TUD-Stadtmitte 0.732/0.805/9 switches -> 0.735/0.808/7, "
                                    "PETS09 ids 43 -> 42 with video, 64 -> 61 boxes only (0: off)")
    direction_delta: int = Field(3, ge=1, le=30, description="OCM: a track's direction is taken between its "
                                 "observations this many matches apart (OC-SORT's delta_t)")


# ---------------------------------------------------------------- exposure
class ExposureConfig(Section):
    mode: Literal["ema", "window"] = "ema"
    alpha: float = Field(0.05, ge=0.001, le=1.0)
    window: int = Field(50, ge=2, le=1000)
    trails: bool = True
    trails_weight: Fraction = 0.5


# ---------------------------------------------------------------- events
def _event_kinds(v: list[str]) -> list[str]:
    """The `kinds` filter of a sink (webhooks, mqtt): event kind names, each a known one."""
    from core.types import EventKind
    known = {k.value for k in EventKind}
    bad = [k for k in v if k not in known]
    if bad:
        raise ValueError(f"unknown event kind(s) {', '.join(map(repr, bad))}; "
                         f"one of {', '.join(sorted(known))}")
    return v


class WebhookConfig(Section):
    url: str
    timeout_s: float = Field(5.0, gt=0, le=120)
    max_queue: int = Field(1000, ge=1, le=1_000_000)
    retries: int = Field(5, ge=0, le=100)
    kinds: list[str] = Field(default_factory=list, description="event kinds to send; empty sends all")

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        return _event_kinds(v)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not (v.startswith("http://") or v.startswith("https://")) or len(v) < 10:
            raise ValueError(f"webhook url must be http:// or https://, got {v!r}")
        return v


class EventsConfig(Section):
    db: str = Field("events.sqlite3", description="SQLite file, relative to paths.data")
    retention_days: float = Field(30.0, gt=0, le=3650)
    retention_mb: float = Field(500.0, gt=0, le=1_000_000)
    snapshots: bool = True
    webhooks: list[WebhookConfig] = Field(default_factory=list)


# ---------------------------------------------------------------- mqtt
_TOPIC_LEVEL = r"[A-Za-z0-9_.-]+"


class MqttTlsConfig(Section):
    enabled: bool = Field(False, description="connect over TLS (the usual port is 8883)")
    ca_file: Optional[PathStr] = Field(None, description="CA certificates (PEM) that signed the "
                                       "broker's certificate; null: the system's")
    cert_file: Optional[PathStr] = Field(None, description="client certificate (PEM), for brokers "
                                         "that authenticate clients by certificate")
    key_file: Optional[PathStr] = Field(None, description="the client certificate's private key (PEM)")
    insecure: bool = Field(False, description="accept any certificate and host name (testing only: "
                                              "anyone on the path can read and change the traffic)")

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _file(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not Path(v).is_file():
            raise ValueError(f"file not found: {v}")
        return v

    @model_validator(mode="after")
    def _pair(self) -> "MqttTlsConfig":
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        return self


class MqttConfig(Section):
    """Events, camera states and counters to an MQTT broker (events/mqtt.py), with Home
    Assistant discovery; optional commands (exposure / counters reset)."""
    enabled: bool = Field(False, description="publish to the broker below")
    host: str = Field("127.0.0.1", min_length=1, max_length=253, pattern=r"^[^\s/]+$",
                      description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port (1883; 8883 with TLS)")
    tls: MqttTlsConfig = Field(default_factory=MqttTlsConfig)
    username: Optional[str] = Field(None, min_length=1, max_length=256, description="null: connect anonymously")
    password: Optional[str] = Field(
        None, min_length=1, max_length=1024,
        description="'env:NAME' reads it from the environment at start (preferred), or the password itself")
    client_id: str = Field("vigil", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                           description="MQTT client id, also the Home Assistant node id; unique per broker")
    topic_prefix: str = Field("vigil", max_length=128,
                              description="topics are PREFIX/available, PREFIX/events, "
                                          "PREFIX/CAMERA/state, PREFIX/CAMERA/counts/...")
    qos: Literal[0, 1, 2] = Field(1, description="QoS of every message (0 can lose events when the "
                                                 "connection drops; 1 resends until the broker acknowledges)")
    retain: bool = Field(True, description="retain state and counter topics (a new subscriber gets the "
                                           "last values at once); events are never retained")
    kinds: list[str] = Field(default_factory=list, description="event kinds published on PREFIX/events; empty: all")
    max_queue: int = Field(1000, ge=1, le=1_000_000, description="events waiting while the broker is "
                                                                 "away; beyond it the oldest are dropped")
    state_interval_s: float = Field(5.0, ge=0.2, le=3600, description="camera states and counters are "
                                    "read this often (and soon after an event changes them); only "
                                    "changed values are sent")
    keepalive_s: int = Field(60, ge=5, le=3600, description="MQTT keepalive")
    reconnect_min_s: float = Field(1.0, gt=0, le=600, description="first wait before reconnecting; "
                                   "doubles up to reconnect_max_s")
    reconnect_max_s: float = Field(60.0, gt=0, le=3600, description="longest wait between attempts")
    discovery: bool = Field(True, description="publish Home Assistant MQTT discovery configs (a sensor per "
                                              "camera state and counter)")
    discovery_prefix: str = Field("homeassistant", max_length=128,
                                  description="Home Assistant's discovery prefix")
    commands: bool = Field(False, description="obey PREFIX/CAMERA/command (reset_exposure, reset_counters); "
                                              "who may publish there is the broker's to decide (credentials, ACL)")

    @field_validator("topic_prefix", "discovery_prefix")
    @classmethod
    def _topic(cls, v: str) -> str:
        if not re.fullmatch(rf"{_TOPIC_LEVEL}(/{_TOPIC_LEVEL})*", v):
            raise ValueError("topic levels of letters, digits, _ . and - joined by '/' (no wildcards "
                             "+ or #, no empty level, no '/' at either end)")
        return v

    @field_validator("password")
    @classmethod
    def _password(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        if v is not None and v.startswith("env:"):
            _env_secret(v, "mqtt password", info, lo=1, hi=1024)
        return v

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        return _event_kinds(v)

    @model_validator(mode="after")
    def _checks(self) -> "MqttConfig":
        if self.password is not None and self.username is None:
            raise ValueError("password needs username")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self


# ---------------------------------------------------------------- cameras
class ZoneConfig(Section):
    name: str = Field(min_length=1, max_length=64)
    points: list[Point] = Field(min_length=3, max_length=256)
    normalized: bool = Field(False, description="points in 0..1 of the frame size")
    classes: list[str] = Field(default_factory=list, description="classes counted; empty counts all")
    anchor: Literal["bottom", "center"] = Field("bottom", description="track point tested: bottom centre or centre of the box")
    confirm_frames: int = Field(2, ge=1, le=100, description="frames inside/outside before enter/leave counts")

    @model_validator(mode="after")
    def _norm(self) -> "ZoneConfig":
        _check_points(self.points, self.normalized)
        return self


class LineConfig(Section):
    name: str = Field(min_length=1, max_length=64)
    points: list[Point] = Field(min_length=2, max_length=2, description="[[x1,y1],[x2,y2]]; 'in' is crossing to the left of p1->p2")
    normalized: bool = False
    hysteresis_px: float = Field(6.0, ge=0, le=1000)
    confirm_frames: int = Field(3, ge=1, le=100)
    classes: list[str] = Field(default_factory=list)
    anchor: Literal["bottom", "center"] = "bottom"

    @model_validator(mode="after")
    def _norm(self) -> "LineConfig":
        _check_points(self.points, self.normalized)
        if self.points[0] == self.points[1]:
            raise ValueError("line points must differ")
        return self


def _check_points(points: list[list[float]], normalized: bool) -> None:
    for p in points:
        for v in p:
            if v != v or v in (float("inf"), float("-inf")):
                raise ValueError("points must be finite")
            if normalized and not (0.0 <= v <= 1.0):
                raise ValueError(f"normalized point value {v} is outside 0..1")
            if not normalized and not (-100000 <= v <= 100000):
                raise ValueError(f"point value {v} is out of range")


class DefectWatchConfig(Section):
    """Factory-line defect watch (events/defects.py): parts crossing the inspection line are
    compared with a golden reference (learned from the first alike parts, or a file)."""
    enabled: bool = True
    line_x: float = Field(0.5, ge=0, le=1e5, description="vertical inspection line (0..1 when normalized)")
    line: Optional[Annotated[list[Point], Field(min_length=2, max_length=2)]] = Field(
        None, description="instead of line_x: directed line [[x1,y1],[x2,y2]]; a part counts when its "
        "centre crosses from the right-hand to the left-hand side of a walk from p1 to p2 on screen "
        "(the counting lines' 'in'; drawn top to bottom: screen-left to screen-right); only the "
        "segment counts")
    normalized: bool = Field(True, description="line_x / line in fractions of the frame size")
    reference: Optional[PathStr] = Field(None, description="golden part image (the part plus its margin); "
                                         "null learns one per shape from the first alike parts")
    learn_parts: int = Field(5, ge=2, le=50, description="alike parts needed to learn a reference")
    diff_threshold: float = Field(40.0, ge=5, le=200, description="grey-level difference counted as changed")
    area_threshold: float = Field(25.0, ge=1, le=1e6, description="largest changed blob (px) above which a part is DEFECT")
    dhash_threshold: int = Field(14, ge=0, le=64, description="dHash bits above which a part is DEFECT")
    shape_dhash: int = Field(24, ge=0, le=64, description="shape pre-selection: dHash bits to a reference")
    size_tolerance: Fraction = Field(0.25, description="shape pre-selection: relative box size difference")
    shape_mismatch: Fraction = Field(0.08, description="more changed pixels than this after registration: "
                                     "another shape, not a defect")
    learn_mismatch: Fraction = Field(0.08, description="the same bound between two parts of one learning group")
    ocr: bool = Field(True, description="read the serial label with Tesseract")
    ocr_psm: int = Field(7, ge=6, le=13, description="Tesseract page segmentation mode")
    ocr_whitelist: str = Field("SN0123456789 ", max_length=256)
    ocr_min_confidence: float = Field(30.0, ge=0, le=100, description="readings below this are dropped")
    serial_pattern: str = Field(r"S\s*N\s*(\d{3,6})", max_length=256, description="regex, one group: the number")
    serial_format: str = Field("SN {}", max_length=64, description="how a serial is written")
    min_part_area: float = Field(1500.0, ge=0, le=1e8, description="smaller boxes (px^2) are not parts")
    min_part_side: float = Field(24.0, ge=1, le=1e5, description="boxes with a shorter side (px) are not parts")
    margin: Fraction = Field(0.08, description="crop margin, fraction of the part's longer side")
    blur_sigma: float = Field(1.0, ge=0, le=10, description="Gaussian blur before differencing")
    max_pending: int = Field(64, ge=1, le=10000, description="parts waiting for a reference; the oldest beyond "
                             "this gets UNKNOWN")
    pending_parts: int = Field(200, ge=0, le=1_000_000, description="a part matching no reference waits "
                               "for alike parts (to learn one) while at most this many later parts cross, then "
                               "is judged alone (nearest-size reference, else UNKNOWN); bounds the learning "
                               "pool by parts, not hours (0: wait until max_pending)")
    max_verdicts: int = Field(10000, ge=1, le=10_000_000, description="verdict records kept")
    track_ttl: int = Field(50, ge=1, le=100000, description="frames a vanished track's side is remembered")
    snapshot: bool = Field(True, description="attach a JPEG of the judged crop to verdict events")
    jpeg_quality: int = Field(85, ge=10, le=100)

    @model_validator(mode="after")
    def _line(self) -> "DefectWatchConfig":
        if self.line is not None:
            if "line_x" in self.model_fields_set:
                raise ValueError("give line_x or line, not both")
            _check_points(self.line, self.normalized)
            if self.line[0] == self.line[1]:
                raise ValueError("line points must differ")
        elif self.normalized and self.line_x > 1:
            raise ValueError(f"line_x={self.line_x:g} must be in [0, 1] when normalized")
        return self

    @field_validator("serial_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        import re
        try:
            if re.compile(v).groups != 1:
                raise ValueError("needs exactly one group (the serial digits)")
        except re.error as e:
            raise ValueError(f"not a regular expression: {e}") from None
        return v

    @field_validator("serial_format")
    @classmethod
    def _format(cls, v: str) -> str:
        if "{}" not in v:
            raise ValueError("must contain {} where the serial goes")
        return v

    @field_validator("reference")
    @classmethod
    def _reference(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not Path(v).is_file():
            raise ValueError(f"reference image not found: {v}")
        return v


class ClipsConfig(Section):
    """H.264 clips around chosen events (pre-roll from memory, post-roll recorded)."""
    enabled: bool = True
    kinds: list[Literal["track_started", "track_ended", "zone_enter", "zone_leave", "line_crossed",
                        "text_read", "defect_found", "part_passed", "part_unknown",
                        "camera_state"]] = \
        Field(default_factory=lambda: ["defect_found", "line_crossed", "zone_enter"])
    pre_roll_s: float = Field(2.0, ge=0, le=30)
    post_roll_s: float = Field(3.0, ge=0, le=60)
    max_clip_s: float = Field(30.0, ge=1, le=600)
    max_ring_mb: float = Field(96.0, ge=1, le=4096, description="memory bound of the pre-roll ring")
    max_queue_mb: float = Field(64.0, ge=1, le=4096, description="memory bound of the frames waiting "
                                "for the clip encoder; beyond it frames are left out of the clip")
    max_mb: float = Field(1000.0, gt=0, le=1_000_000, description="disk bound of this camera's clips")
    crf: int = Field(26, ge=0, le=51, description="x264 quality (lower is better and bigger)")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = Field(
        "ultrafast", description="x264 speed preset: ultrafast costs ~2.7 ms of CPU per 768x432 frame "
        "(veryfast ~7 ms) for files about twice as big; the live pipeline shares the CPU with it")


class ReconnectConfig(Section):
    initial_backoff_s: float = Field(0.25, gt=0, le=60)
    max_backoff_s: float = Field(2.0, gt=0, le=600)
    max_attempts: int = Field(0, ge=0, le=1_000_000, description="0 retries forever, else FAILED after this many")
    jitter: Fraction = 0.2
    stall_timeout_s: float = Field(2.0, ge=0.1, le=600, description="STALLED after max(this, 5 frame intervals)")

    @model_validator(mode="after")
    def _order(self) -> "ReconnectConfig":
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("max_backoff_s must be >= initial_backoff_s")
        return self


class ResizeConfig(Section):
    width: Optional[int] = Field(None, ge=16, le=8192)
    height: Optional[int] = Field(None, ge=16, le=8192)


class CameraConfig(Section):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                      description="used in URLs: letters, digits, _ and -")
    source: str
    enabled: bool = True
    backend: Literal["auto", "opencv", "pyav"] = "auto"
    loop: bool = Field(True, description="loop files shown live")
    fps: Optional[float] = Field(None, gt=0, le=240, description="pace override for files")
    detector: DetectorName = "yolo"
    detect_every: int = Field(1, ge=1, le=1000, description="run the detector on every Nth frame")
    detector_params: dict[str, Any] = Field(default_factory=dict,
                                            description="overrides of detectors.<detector> for this camera")
    gate: Literal["none", "motion", "motion-region"] = Field(
        "none", description="run the detector only on frames with motion (motion), or only on the "
                            "moving region of them (motion-region: the union box of the motion, "
                            "padded, is cropped and detected)")
    resize: Optional[ResizeConfig] = None
    open_timeout_s: float = Field(5.0, gt=0, le=120)
    read_timeout_s: float = Field(5.0, gt=0, le=120)
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig)
    synthetic: dict[str, Any] = Field(default_factory=dict, description="scene parameters for synthetic: sources")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    zones: list[ZoneConfig] = Field(default_factory=list, max_length=64)
    lines: list[LineConfig] = Field(default_factory=list, max_length=64)
    defect_watch: Optional[DefectWatchConfig] = Field(None, description="factory-line defect watch for this camera")
    clips: Optional[ClipsConfig] = Field(None, description="mp4 clips around chosen events")
    node: Optional[str] = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                                description="cluster mode: the preferred node (soft: while it is "
                                            "gone the camera runs elsewhere)")
    detect_weight: float = Field(1.0, gt=0, le=100, description="this camera's share of the node's "
                                 "detector pool when cameras compete for it, relative to the others")
    detect_fps: Optional[float] = Field(None, gt=0, le=240, description="pool: at most this many "
                                        "detector runs per second for this camera (null: no cap)")

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        # the URI grammar (core/uri.py) checks syntax only; nothing is opened here
        parsed = parse_uri(v)
        if parsed.kind == "file" and not Path(str(parsed.target)).is_file():
            raise ValueError(f"video file not found: {parsed.target}")
        return v

    @model_validator(mode="after")
    def _names(self) -> "CameraConfig":
        if self.synthetic:
            parsed = parse_uri(self.source)
            if parsed.kind != "synthetic":
                raise ValueError("synthetic: scene parameters are only for synthetic: sources")
            try:
                coerce_params(str(parsed.target), {**parsed.params, **self.synthetic})
            except ValueError as e:
                raise ValueError(f"synthetic: {e}") from None
        for what, items in (("zones", self.zones), ("lines", self.lines)):
            seen: set[str] = set()
            for i, it in enumerate(items):
                if it.name in seen:
                    raise ValueError(f"{what}[{i}].name: duplicate name {it.name!r}")
                seen.add(it.name)
        return self


class PoolConfig(Section):
    """The node's detector pool (stream/pool.py): one per detector and model config, shared by
    every camera using it; off, each camera runs its own detector in a thread of its own."""
    enabled: bool = Field(True, description="share one pool of detectors among the cameras")
    workers: Any = Field("auto", description="detectors per pool on CPU: auto (one per core) or "
                         "1..256; each is single-threaded")
    kind: Literal["auto", "threads", "processes", "batch"] = Field(
        "auto", description="auto: batch on a GPU, else processes; threads: in this process; "
                            "processes: worker processes fed through shared memory; batch: one "
                            "session, frames of many cameras batched")
    batch_window_ms: Optional[float] = Field(None, ge=0, le=1000, description="batch: push a batch "
                                             "this long after its first frame (null: one frame "
                                             "period of the fastest camera)")
    max_batch: int = Field(16, ge=1, le=256, description="batch: most frames in one inference")
    timeout_s: float = Field(10.0, gt=0, le=600, description="a request running longer marks its "
                             "worker stuck: the request fails, the worker is replaced and counted")
    opencv_threads: int = Field(1, ge=0, le=256, description="threads one OpenCV call may use in the "
                                "server process (0: OpenCV's default, one per core); the cameras' "
                                "own threads already keep the cores busy")

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, v: Any) -> Any:
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 256):
            return v
        raise ValueError("expected auto or a whole number 1..256")


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class MemoryConfig(Section):
    """Process memory (runtime/memory.py): freed malloc memory given back to the system."""
    trim_interval_s: float = Field(0.0, ge=0, le=3600, description="glibc malloc_trim(0) this "
                                   "often (seconds; 0 = never)")


class ClusterConfig(Section):
    """Cameras on a Ray cluster (runtime/cluster.py; the optional `cluster` extra)."""
    address: Optional[str] = Field(None, description="null: no cluster; local:N (a head and N worker nodes "
                                               "on this machine, 127.0.0.1), auto or HOST:PORT (join "
                                               "a cluster started with `ray start`)")
    capacity: int = Field(8, ge=0, le=1024, description="local:N: cameras per worker node (its "
                          "camera_slot resource)")
    head_capacity: int = Field(0, ge=0, le=1024, description="local:N: cameras the head node runs")
    health_check_period_ms: int = Field(500, ge=100, le=60000, description="local:N: how often "
                                        "the head checks each node")
    health_check_timeout_ms: int = Field(500, ge=100, le=60000, description="local:N: one check's "
                                         "timeout")
    health_check_failure_threshold: int = Field(3, ge=1, le=100, description="local:N: failed "
                                                "checks in a row before a node is declared dead")
    object_store_mb: int = Field(80, ge=78, le=1_000_000, description="local:N: each node's object "
                                 "store (Ray's minimum is 75 MiB)")

    @field_validator("address")
    @classmethod
    def _address(cls, v: Optional[str]) -> Optional[str]:
        if v is None or v == "auto":
            return v
        m = re.fullmatch(r"local:(\d{1,3})", v)
        if m:
            if not 1 <= int(m.group(1)) <= 16:
                raise ValueError("local:N needs 1 <= N <= 16 worker nodes")
            return v
        m = re.fullmatch(r"(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):(\d{1,5})", v)
        if m and 1 <= int(m.group(1)) <= 65535:
            return v
        raise ValueError("expected local:N, auto or HOST:PORT (the Ray head's GCS port)")


class VigilConfig(Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    cameras: list[CameraConfig] = Field(min_length=1, max_length=64)
    detectors: DetectorsConfig = Field(default_factory=DetectorsConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    exposure: ExposureConfig = Field(default_factory=ExposureConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    pool: PoolConfig = Field(default_factory=PoolConfig)

    @model_validator(mode="after")
    def _unique_cameras(self) -> "VigilConfig":
        problems = _duplicate_cameras([c.name for c in self.cameras]) + self.detector_params_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def detector_params_problems(self) -> list[str]:
        """One 'cameras[i].detector_params.key: what is wrong' line per problem."""
        out = []
        for i, cam in enumerate(self.cameras):
            if not cam.detector_params:
                continue
            if cam.detector == "none":
                out.append(f"cameras[{i}].detector_params: detector 'none' takes no parameters")
                continue
            try:
                self.detector_section(cam)
            except ValueError as e:
                out += str(e).split("; ")
        return out

    def detector_section(self, cam: CameraConfig) -> Section:
        """The camera's detector section with its per-camera overrides applied (validated)."""
        base = getattr(self.detectors, cam.detector)
        if not cam.detector_params:
            return base
        return resolve_section(type(base), base, cam.detector_params,
                               where=f"cameras[{self.cameras.index(cam)}].detector_params")

    def camera(self, name: str) -> CameraConfig:
        for c in self.cameras:
            if c.name == name:
                return c
        raise KeyError(name)


# ---------------------------------------------------------------- loading
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _duplicate_cameras(names: list[Any]) -> list[str]:
    seen: dict[Any, int] = {}
    out = []
    for i, name in enumerate(names):
        if isinstance(name, str) and name in seen:
            out.append(f"cameras[{i}].name: duplicate camera name {name!r} (also cameras[{seen[name]}])")
        elif isinstance(name, str):
            seen[name] = i
    return out


def format_loc(loc: tuple[Any, ...]) -> str:
    """('cameras', 0, 'name') -> 'cameras[0].name'; odd keys (empty, spaces, dots, line
    breaks...) are quoted so the path stays one readable line: server['a.b']."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(str(part)):
            out += ("." if out else "") + str(part)
        else:
            out += f"[{str(part)[:80]!r}]"
    return out or "(top level)"


def _describe(err: dict[str, Any]) -> str:
    typ = err.get("type", "")
    msg = err.get("msg", "invalid value")
    if typ == "extra_forbidden":
        return "unknown key"
    if typ == "missing":
        return "required key is missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    inp = err.get("input")
    loc = err.get("loc") or ()
    if loc and loc[-1] in SECRET_KEYS and isinstance(inp, str) and not inp.startswith("env:"):
        return msg  # a secret is never echoed back (it could be a real password)
    if typ not in ("model_type",) and not isinstance(inp, (dict, list)):
        return f"{msg} (got {inp!r})"
    return msg


def _error_lines(err: ValidationError, prefix: Optional[str] = None) -> list[str]:
    """One 'key.path: what is wrong' line per problem, the path under `prefix` when given."""
    out = []
    for e in err.errors():
        loc = tuple(p for p in e.get("loc", ()) if not (isinstance(p, str) and p.startswith("function-")))
        path = format_loc(loc) if loc or not prefix else ""
        if prefix:
            path = prefix + ("" if not path or path.startswith("[") else ".") + path
        out.append(f"{path}: {_describe(e)}")
    return out


def _format_validation(err: ValidationError, where: str, data: Any = None) -> str:
    problems = []
    for line in _error_lines(err):
        # the whole-config checks (duplicate cameras, detector_params) arrive as one
        # "(top level)" error joining their own key-path lines: one line each
        if line.startswith("(top level): ") and ": " in line[len("(top level): "):]:
            problems += line[len("(top level): "):].split("; ")
        else:
            problems.append(line)
    # checks of the whole config run only when every field is valid: run the name check on
    # the raw data too, so a duplicate name is reported next to the other problems
    cams = data.get("cameras") if isinstance(data, dict) else None
    if isinstance(cams, list):
        for p in _duplicate_cameras([c.get("name") if isinstance(c, dict) else None for c in cams]):
            if p not in problems:
                problems.append(p)
    n = len(problems)
    lines = [f"{where}: invalid configuration ({n} problem{'s' if n != 1 else ''})"]
    lines += [f"  {line}" for line in problems]
    return "\n".join(lines)


S = TypeVar("S", bound=Section)


def resolve_section(model: type[S], cfg: S | Mapping[str, Any] | None = None,
                    overrides: Mapping[str, Any] | None = None, *, where: Optional[str] = None,
                    error: type[Exception] = ValueError) -> S:
    """A component's config section: `cfg` (the model itself, a mapping of its keys, or None
    for the defaults) with `overrides` applied, validated by the same model, so bounds are
    declared once, in the schema. Unknown keys and bad values raise `error` naming every
    problem as 'where.key: what is wrong'."""
    if isinstance(cfg, model) and not overrides:
        return cfg
    if cfg is None:
        base: dict[str, Any] = {}
    elif isinstance(cfg, model):
        base = cfg.model_dump(exclude_unset=True)  # what was set: cross-field checks see the same
    elif isinstance(cfg, Mapping):
        base = dict(cfg)
    else:
        raise TypeError(f"{where or model.__name__}: expected a {model.__name__} or a mapping, "
                        f"got {type(cfg).__name__}")
    try:
        return model.model_validate({**base, **(overrides or {})})
    except ValidationError as e:
        raise error("; ".join(_error_lines(e, where))) from None


def parse_config(data: Any, where: str = "<config>", *, resolve_secrets: bool = True) -> VigilConfig:
    """Validate `data`; every problem is reported, one line each, naming its key path.
    resolve_secrets=False leaves `env:` references unread (for commands that start no server)."""
    if data is None:
        raise ConfigError(f"{where}: the file is empty; it needs at least a 'cameras' list")
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of keys, got {type(data).__name__}")
    for k in data:
        if not isinstance(k, str):
            raise ConfigError(f"{where}: {k!r}: keys must be strings")
    try:
        return VigilConfig.model_validate(data, context={"resolve_secrets": resolve_secrets})
    except ValidationError as e:
        raise ConfigError(_format_validation(e, where, data)) from None


def read_yaml(path: Path) -> Any:
    where = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{where}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: is a directory, not a config file") from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot read config file: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{where}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"{where}: YAML nesting is too deep") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        pos = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: YAML syntax error{pos}: {problem}") from None


def load_config(path: str | Path, *, resolve_secrets: bool = True) -> VigilConfig:
    """Read, parse and validate a config file; raise ConfigError with a readable message."""
    p = Path(path)
    return parse_config(read_yaml(p), str(p), resolve_secrets=resolve_secrets)
