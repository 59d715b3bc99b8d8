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
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from core.scenes import coerce_params
from core.uri import parse_uri


__all__ = ["VigilConfig", "ConfigError", "load_config", "parse_config", "format_loc"]


class ConfigError(Exception):
    """A configuration problem, with a message meant for a person (no traceback)."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


PosInt = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Point = Annotated[list[float], Field(min_length=2, max_length=2)]
Size2 = Annotated[list[Annotated[int, Field(ge=1, le=10000)]], Field(min_length=2, max_length=2)]


# ---------------------------------------------------------------- server
class ServerConfig(Section):
    host: str = Field("127.0.0.1", description="address to bind; a public address without a token prints a warning")
    port: int = Field(8080, ge=0, le=65535, description="TCP port; 0 picks a free one")
    token: Optional[Annotated[str, Field(min_length=8, max_length=256)]] = Field(
        None, description="access token; 'env:NAME' reads it from an environment variable")
    threads: int = Field(48, ge=4, le=1024, description="WSGI worker threads; each open MJPEG viewer holds one")
    jpeg_quality: int = Field(80, ge=10, le=100)
    stream_timeout_s: float = Field(1.0, gt=0, le=30, description="viewer wait before a keepalive check")

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
    def _token(cls, v: Optional[str]) -> Optional[str]:
        if v and v.startswith("env:"):
            name = v[4:]
            val = os.environ.get(name)
            if not val:
                raise ValueError(f"environment variable {name!r} named by the token is not set")
            return val
        return v


class PathsConfig(Section):
    models: str = Field("models", description="model cache folder (assets)")
    samples: str = Field("samples", description="sample clip cache folder (assets)")
    data: str = Field("var", description="events database, snapshots and clips")


# ---------------------------------------------------------------- detectors
class HaarConfig(Section):
    cascade: str = Field("frontalface_default", description="cascade short name from cv2.data.haarcascades or an XML path")
    equalize: bool = True
    scale_factor: float = Field(1.1, ge=1.01, le=2.0)
    min_neighbors: int = Field(4, ge=0, le=50)
    min_size: Size2 = Field(default_factory=lambda: [24, 24])
    max_size: Optional[Size2] = None
    nested: Optional[str] = Field(None, description="cascade searched inside each box (e.g. eye)")
    nested_required: bool = False
    nested_output: bool = True
    nested_min_neighbors: int = Field(3, ge=0, le=50)
    score_threshold: Fraction = 0.0
    nms_iou: Fraction = 0.4
    max_side: int = Field(1280, ge=64, le=16384)


class HogConfig(Section):
    win_stride: Size2 = Field(default_factory=lambda: [8, 8])
    padding: Size2 = Field(default_factory=lambda: [8, 8])
    scale: float = Field(1.05, ge=1.01, le=2.0)
    hit_threshold: float = Field(0.0, ge=-5.0, le=5.0)
    upscale: float = Field(1.5, ge=1.0, le=4.0, description="people below 128 px tall need 1.5-2x")
    max_side: int = Field(1600, ge=128, le=8192)
    nms_iou: Fraction = 0.3
    score_threshold: Fraction = 0.6
    tighten: bool = True
    tighten_wh: Annotated[list[Annotated[float, Field(ge=0.3, le=1.0)]], Field(min_length=2, max_length=2)] = \
        Field(default_factory=lambda: [0.68, 0.76])
    max_det: int = Field(200, ge=1, le=1000)


class YoloConfig(Section):
    model: str = Field("models/yolov3-tiny.onnx", description=".onnx, or a Darknet .weights with cfg")
    cfg: Optional[str] = None
    names: Optional[str] = None
    input_size: int = Field(416, ge=128, le=1280, multiple_of=32)
    conf_threshold: Fraction = 0.25
    nms_iou: Fraction = 0.45
    classes: list[str] = Field(default_factory=list, description="class names to keep; empty keeps all")
    letterbox: bool = True
    providers: Literal["auto", "cpu", "cuda"] = "auto"
    intra_op_threads: int = Field(0, ge=0, le=64)
    inter_op_threads: int = Field(0, ge=0, le=64)
    max_det: int = Field(300, ge=1, le=10000)


class TextConfig(Section):
    box_detector: Literal["dbnet", "east"] = "dbnet"
    model: Optional[str] = Field(None, description="DBNet .onnx (default from assets) or EAST .pb/.onnx (user supplied)")
    limit_side: int = Field(960, ge=32, le=4096, multiple_of=32)
    det_threshold: float = Field(0.3, gt=0, lt=1)
    box_threshold: float = Field(0.6, gt=0, lt=1)
    unclip_ratio: float = Field(1.5, ge=0.0, le=5.0)
    min_box_size: float = Field(3.0, ge=0, le=1000)
    max_candidates: int = Field(1000, ge=1, le=100000)
    east_confidence: float = Field(0.5, gt=0, lt=1)
    east_nms_iou: float = Field(0.4, gt=0, lt=1)
    east_input: Size2 = Field(default_factory=lambda: [320, 320])
    recognize: bool = True
    lang: str = Field("eng", pattern=r"^[A-Za-z_]{3,40}(\+[A-Za-z_]{3,40})*$")
    psm: int = Field(7, ge=1, le=13)
    min_text_confidence: float = Field(0.0, ge=0, le=100)
    keep_unread: bool = True
    whitelist: Optional[str] = Field(None, max_length=512)
    ocr_line_height: int = Field(40, ge=16, le=128)
    ocr_workers: int = Field(1, ge=1, le=16)
    providers: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(0, ge=0, le=64)
    tessdata: Optional[str] = None


class MotionConfig(Section):
    method: Literal["mog2", "knn"] = "mog2"
    history: int = Field(500, ge=10, le=10000)
    var_threshold: Optional[float] = Field(None, gt=0, le=1000, description="null: the method's default (16 mog2, 400 knn)")
    detect_shadows: bool = False
    learning_rate: float = Field(-1.0, ge=-1.0, le=1.0)
    blur: int = Field(5, ge=0, le=31)
    open_kernel: int = Field(3, ge=0, le=31)
    close_kernel: int = Field(7, ge=0, le=63)
    merge_distance: int = Field(0, ge=0, le=500)
    min_area: float = Field(150.0, ge=1, le=10_000_000)
    max_area: Optional[float] = Field(None, ge=1)
    warmup_frames: int = Field(10, ge=0, le=10000)
    downscale: float = Field(1.0, ge=1.0, le=8.0)
    max_side: int = Field(1280, ge=64, le=8192)
    max_det: int = Field(100, ge=1, le=10000)


class DetectorsConfig(Section):
    haar: HaarConfig = Field(default_factory=HaarConfig)
    hog: HogConfig = Field(default_factory=HogConfig)
    yolo: YoloConfig = Field(default_factory=YoloConfig)
    text: TextConfig = Field(default_factory=TextConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)


DetectorName = Literal["none", "haar", "hog", "yolo", "text", "motion"]


# ---------------------------------------------------------------- tracker
class TrackerConfig(Section):
    """Mirrors trackers.tracker.TrackerParams (same names, defaults and bounds)."""
    max_age_s: float = Field(1.5, ge=0, le=60, description="unmatched longer than this -> lost")
    max_age_frames: int = Field(45, ge=0, le=10000, description="or more missed detector updates than this")
    coast_report_s: float = Field(0.1, ge=0, le=60, description="how long a coasting track is still reported")
    min_hits: int = Field(3, ge=1, le=100)
    warmup_frames: int = Field(3, ge=0, le=100)
    iou_gate: float = Field(0.3, ge=0.01, le=0.99)
    distance_gate: float = Field(0.0, ge=0, le=5)
    appearance: bool = True
    appearance_weight: float = Field(0.5, ge=0, le=10)
    dhash_threshold: int = Field(16, ge=0, le=64)
    reid_window_s: float = Field(5.0, ge=0, le=600)
    reid_radius: float = Field(1.0, ge=0, le=20)
    reid_speed: float = Field(0.5, ge=0, le=20)
    trail_length: int = Field(32, ge=1, le=10000)
    max_tracks: int = Field(256, ge=1, le=100000)
    max_events: int = Field(10000, ge=1, le=10_000_000)
    std_meas: float = Field(0.03, ge=1e-4, le=1.0)
    std_vel0: float = Field(0.6, ge=1e-3, le=100)
    accel: float = Field(0.05, ge=0, le=1000)


# ---------------------------------------------------------------- exposure
class ExposureConfig(Section):
    mode: Literal["ema", "window"] = "ema"
    alpha: float = Field(0.05, ge=0.001, le=1.0)
    window: int = Field(50, ge=2, le=1000)
    trails: bool = True
    trails_weight: Fraction = 0.5


# ---------------------------------------------------------------- events
class WebhookConfig(Section):
    url: str
    timeout_s: float = Field(5.0, gt=0, le=120)
    max_queue: int = Field(1000, ge=1, le=1_000_000)
    retries: int = Field(5, ge=0, le=100)
    kinds: list[str] = Field(default_factory=list, description="event kinds to send; empty sends all")

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
    normalized: bool = True
    reference: Optional[str] = Field(None, description="golden part image; null learns it from the first parts")
    learn_parts: int = Field(5, ge=2, le=50)
    diff_threshold: float = Field(40.0, ge=5, le=200, description="grey-level difference counted as changed")
    area_threshold: float = Field(25.0, ge=1, le=1e6, description="largest changed blob (px) above which a part is DEFECT")
    dhash_threshold: int = Field(14, ge=0, le=64, description="dHash bits above which a part is DEFECT")
    shape_dhash: int = Field(24, ge=0, le=64)
    size_tolerance: Fraction = 0.25
    shape_mismatch: Fraction = 0.08
    learn_mismatch: Fraction = 0.08
    ocr: bool = Field(True, description="read the serial label with Tesseract")
    ocr_psm: int = Field(7, ge=6, le=13)
    ocr_whitelist: str = Field("SN0123456789 ", max_length=256)
    ocr_min_confidence: float = Field(30.0, ge=0, le=100)
    serial_pattern: str = Field(r"S\s*N\s*(\d{3,6})", max_length=256)
    serial_format: str = Field("SN {}", max_length=64)
    min_part_area: float = Field(1500.0, ge=0, le=1e8)
    min_part_side: float = Field(24.0, ge=1, le=1e5)
    margin: Fraction = 0.08
    blur_sigma: float = Field(1.0, ge=0, le=10)
    max_pending: int = Field(64, ge=1, le=10000)
    max_verdicts: int = Field(10000, ge=1, le=10_000_000)
    track_ttl: int = Field(50, ge=1, le=100000)
    snapshot: bool = True
    jpeg_quality: int = Field(85, ge=10, le=100)

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
                        "text_read", "defect_found", "part_passed", "camera_state"]] = \
        Field(default_factory=lambda: ["defect_found", "line_crossed", "zone_enter"])
    pre_roll_s: float = Field(2.0, ge=0, le=30)
    post_roll_s: float = Field(3.0, ge=0, le=60)
    max_clip_s: float = Field(30.0, ge=1, le=600)
    max_ring_mb: float = Field(96.0, ge=1, le=4096, description="memory bound of the pre-roll ring")
    max_mb: float = Field(1000.0, gt=0, le=1_000_000, description="disk bound of this camera's clips")
    crf: int = Field(26, ge=0, le=51, description="x264 quality (lower is better and bigger)")


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
    gate: Literal["none", "motion"] = "none"
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


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class VigilConfig(Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    cameras: list[CameraConfig] = Field(min_length=1, max_length=64)
    detectors: DetectorsConfig = Field(default_factory=DetectorsConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    exposure: ExposureConfig = Field(default_factory=ExposureConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="after")
    def _unique_cameras(self) -> "VigilConfig":
        seen: dict[str, int] = {}
        for i, cam in enumerate(self.cameras):
            if cam.detector_params:
                if cam.detector == "none":
                    raise ValueError(f"cameras[{i}].detector_params: detector 'none' takes no parameters")
                self.detector_section(cam)  # validates, naming the key
            if cam.name in seen:
                raise ValueError(f"cameras[{i}].name: duplicate camera name {cam.name!r} "
                                 f"(also cameras[{seen[cam.name]}])")
            seen[cam.name] = i
        return self

    def detector_section(self, cam: CameraConfig) -> Section:
        """The camera's detector section with its per-camera overrides applied (validated)."""
        base = getattr(self.detectors, cam.detector)
        if not cam.detector_params:
            return base
        i = self.cameras.index(cam)
        try:
            return type(base).model_validate({**base.model_dump(), **cam.detector_params})
        except ValidationError as e:
            errs = [f"cameras[{i}].detector_params.{format_loc(tuple(x['loc']))}: {_describe(x)}"
                    for x in e.errors()]
            raise ValueError("; ".join(errs)) from None

    def camera(self, name: str) -> CameraConfig:
        for c in self.cameras:
            if c.name == name:
                return c
        raise KeyError(name)


# ---------------------------------------------------------------- loading
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


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
    if typ not in ("model_type",) and not isinstance(inp, (dict, list)):
        return f"{msg} (got {inp!r})"
    return msg


def _format_validation(err: ValidationError, where: str) -> str:
    lines = [f"{where}: invalid configuration ({err.error_count()} problem{'s' if err.error_count() != 1 else ''})"]
    for e in err.errors():
        loc = tuple(p for p in e.get("loc", ()) if not (isinstance(p, str) and p.startswith("function-")))
        lines.append(f"  {format_loc(loc)}: {_describe(e)}")
    return "\n".join(lines)


def parse_config(data: Any, where: str = "<config>") -> VigilConfig:
    if data is None:
        raise ConfigError(f"{where}: the file is empty; it needs at least a 'cameras' list")
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of keys, got {type(data).__name__}")
    for k in data:
        if not isinstance(k, str):
            raise ConfigError(f"{where}: {k!r}: keys must be strings")
    try:
        return VigilConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation(e, where)) from None


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


def load_config(path: str | Path) -> VigilConfig:
    """Read, parse and validate a config file; raise ConfigError with a readable message."""
    p = Path(path)
    return parse_config(read_yaml(p), str(p))
