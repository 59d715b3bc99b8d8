"""Token auth: Bearer header, HTTP Basic password (so `http://vigil:TOKEN@host/stream/x.mjpg`
works in OpenCV, FFmpeg, VLC and MJPEG camera integrations), or a cookie set by /login.

Compared in constant time. The cookie holds an HMAC of the token, not the token itself.
The token is never logged.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Optional

COOKIE = "vigil_session"
OPEN_PATHS = frozenset({"/healthz", "/login", "/static/login.css"})


def cookie_value(token: str) -> str:
    return hmac.new(token.encode(), b"vigil-session-v1", hashlib.sha256).hexdigest()


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def presented_ok(token: str, authorization: Optional[str], cookie: Optional[str]) -> bool:
    """True if any credential presented matches the token."""
    ok = False
    if authorization:
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer" and value:
            ok |= _eq(value, token)
        elif scheme == "basic" and value:
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            _, sep, password = decoded.partition(":")
            if sep:
                ok |= _eq(password, token)
    if cookie:
        ok |= _eq(cookie, cookie_value(token))
    return ok
