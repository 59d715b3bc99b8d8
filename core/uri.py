"""Source URIs: one string per camera, in config and on `--source`.

    0, 1, /dev/video0          webcam
    path/to/clip.mp4           video file
    rtsp://host[:port]/path    RTSP camera
    http(s)://host/...         MJPEG or any FFmpeg input over HTTP
    sample:NAME                a clip fetched by `main.py assets`
    synthetic:NAME             a scene rendered by Vigil (conveyor, crossing)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

SYNTHETIC_SCENES = ("conveyor", "crossing")
SOURCE_KINDS = ("webcam", "file", "rtsp", "http", "sample", "synthetic")


@dataclass(frozen=True)
class SourceURI:
    kind: str     # one of SOURCE_KINDS
    target: str   # webcam index/device, file path, URL, sample or scene name
    raw: str

    @property
    def is_live(self) -> bool:
        return self.kind in ("webcam", "rtsp", "http")


def parse_source_uri(uri: str) -> SourceURI:
    """Classify a source URI; raise ValueError saying what is wrong with it."""
    if not isinstance(uri, str):
        raise ValueError(f"source must be a string, got {type(uri).__name__}")
    raw = uri
    uri = uri.strip()
    if not uri:
        raise ValueError("source is empty")
    if re.fullmatch(r"\d{1,3}", uri):
        return SourceURI("webcam", uri, raw)
    if re.fullmatch(r"/dev/video\d{1,3}", uri):
        return SourceURI("webcam", uri, raw)
    low = uri.lower()
    for prefix, kind in (("sample:", "sample"), ("synthetic:", "synthetic")):
        if low.startswith(prefix):
            name = uri[len(prefix):].strip()
            if not name:
                raise ValueError(f"{prefix}NAME needs a name, got {raw!r}")
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or ".." in name:
                raise ValueError(f"bad {kind} name {name!r} (letters, digits, _ . - only)")
            if kind == "synthetic" and name not in SYNTHETIC_SCENES:
                raise ValueError(f"unknown synthetic scene {name!r}; known: {', '.join(SYNTHETIC_SCENES)}")
            return SourceURI(kind, name, raw)
    if "://" in uri:
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        if scheme in ("rtsp", "rtsps"):
            kind = "rtsp"
        elif scheme in ("http", "https"):
            kind = "http"
        elif scheme == "file":
            return SourceURI("file", parts.path, raw)
        else:
            raise ValueError(f"unsupported URL scheme {scheme!r} in {raw!r} "
                             "(use rtsp://, http://, https://, file://)")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port in {raw!r}: {exc}") from None
        if not parts.hostname:
            raise ValueError(f"URL has no host: {raw!r}")
        if port is not None and not (0 < port < 65536):
            raise ValueError(f"bad port {port} in {raw!r}")
        return SourceURI(kind, uri, raw)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:(?![\\/])", uri) and not re.match(r"^[a-zA-Z]:[\\/]", uri):
        raise ValueError(f"unknown source scheme in {raw!r}; use a webcam index, a file path, "
                         "rtsp://, http(s)://, sample:NAME or synthetic:NAME")
    return SourceURI("file", str(Path(uri).expanduser()), raw)
