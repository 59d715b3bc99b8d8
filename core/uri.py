"""Source URIs: the grammar every layer shares (the config schema validates `cameras[].source`
with it, `stream/sources.py` opens what it describes, logs and the API show `redact_uri`).

    "0", "/dev/video0"                  webcam
    "clips/cam.mp4", "file:///x/y.avi"  a file
    "rtsp://[user:pass@]host[:port]/p"  RTSP
    "http(s)://host/stream.mjpg"        MJPEG or anything else FFmpeg reads over HTTP
    "sample:bikes"                      a sample clip fetched by `main.py assets`
    "synthetic:conveyor?speed=150"      a synthetic scene (query = scene parameters, core/scenes.py)
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from core.scenes import SCENE_PARAMS, coerce_params

__all__ = ["SOURCE_KINDS", "BACKENDS", "LIVE_KINDS", "ParsedSource", "parse_uri", "redact_uri"]

SOURCE_KINDS = ("webcam", "file", "rtsp", "http", "sample", "synthetic")
BACKENDS = ("auto", "opencv", "pyav")
LIVE_KINDS = frozenset({"webcam", "rtsp", "http"})




@dataclass(frozen=True)
class ParsedSource:
    """kind: one of SOURCE_KINDS. target: webcam index (int) or device path, file path,
    URL, sample name or scene name. params/seed: synthetic scene parameters from the query."""

    kind: str
    target: str | int
    uri: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    @property
    def is_live(self) -> bool:
        return self.kind in LIVE_KINDS


def redact_uri(uri: str) -> str:
    """The URI with any password replaced by *** (safe for logs and error messages)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host += f":{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


_WEBCAM_DEV = re.compile(r"^/dev/video(\d+)$")
_SAMPLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def parse_uri(uri: str | int) -> ParsedSource:
    """Classify and normalise a source URI (syntax only: files are not checked for existence).

    Raises ValueError naming the problem; the config validator relies on this.
    """
    if isinstance(uri, bool) or not isinstance(uri, (str, int)):
        raise ValueError(f"source must be a string or a webcam index, got {type(uri).__name__}")
    raw = str(uri)
    s = raw.strip()
    if not s:
        raise ValueError("source URI is empty")
    if isinstance(uri, int) or s.isdigit():
        idx = int(s)
        if not 0 <= idx < 64:
            raise ValueError(f"webcam index {idx} is out of range 0..63")
        return ParsedSource("webcam", idx, s)
    if _WEBCAM_DEV.match(s):
        return ParsedSource("webcam", s, s)
    low = s.lower()
    if low.startswith("sample:"):
        name = s[len("sample:"):].strip()
        if not name or not _SAMPLE_NAME.match(name) or ".." in name:
            raise ValueError(f"bad sample name in {s!r}: expected sample:NAME with NAME made of "
                             f"letters, digits, '_', '-', '.' (e.g. sample:bikes)")
        return ParsedSource("sample", name, s)
    if low.startswith("synthetic:"):
        rest = s[len("synthetic:"):].strip()
        name, _, query = rest.partition("?")
        name = name.strip()
        if name not in SCENE_PARAMS:
            raise ValueError(f"unknown synthetic scene {name!r} in {s!r} "
                             f"(known: {', '.join(sorted(SCENE_PARAMS))})")
        params: dict[str, Any] = {}
        seed: int | None = None
        for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
            if key == "seed":
                try:
                    seed = int(value)
                except ValueError:
                    raise ValueError(f"bad seed {value!r} in {s!r}: expected an integer") from None
                continue
            params[key] = value
        if query and not params and seed is None:
            raise ValueError(f"cannot parse the parameters {query!r} in {s!r} (use ?key=value&...)")
        coerce_params(name, params)  # validates names, types and bounds
        return ParsedSource("synthetic", name, s, params, seed)
    if "://" in s:
        try:
            parts = urlsplit(s)
            _ = parts.port  # raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"malformed URL {redact_uri(s)!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme == "file":
            path = unquote(parts.path)
            if not path:
                raise ValueError(f"file URI {s!r} has no path")
            return ParsedSource("file", str(Path(path).expanduser()), s)
        if scheme in ("rtsp", "rtsps", "http", "https"):
            if not parts.hostname:
                raise ValueError(f"URL {redact_uri(s)!r} has no host")
            kind = "rtsp" if scheme.startswith("rtsp") else "http"
            return ParsedSource(kind, s, s)
        raise ValueError(f"unsupported URL scheme {scheme!r} in {redact_uri(s)!r} "
                         f"(supported: rtsp, rtsps, http, https, file)")
    if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:(?!\\)", s) and not os.path.exists(s):
        # "foo:bar" that is neither a known prefix nor an existing file name
        prefix = s.split(":", 1)[0]
        if len(prefix) > 1:
            raise ValueError(f"unknown source prefix {prefix + ':'!r} in {s!r} "
                             f"(known: sample:, synthetic:, rtsp://, http(s)://, file://)")
    return ParsedSource("file", str(Path(s).expanduser()), s)
