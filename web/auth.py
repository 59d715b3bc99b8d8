"""Who may do what: roles, users and their credentials.

Roles, lowest first: OPEN (anyone: /healthz, the sign-in page), VIEWER (the dashboard, streams,
snapshots, events and clips, the read-only API, /metrics) and ADMIN (everything, including the
controls: exposure reset, session rotation, any write endpoint). Every route declares its
minimum role in web.app's ROUTE_ROLES; a route that does not is treated as ADMIN (and the test
over the URL map fails).

Users come from the config: `server.token` is one admin credential (as before: any user name
with HTTP Basic), and `server.users` are named users with a role whose secret is `env:NAME`
(read when the server starts) or a PBKDF2-SHA256 hash made by `python main.py hash-password`
(600,000 iterations by default, OWASP's 2023 figure; `pbkdf2_sha256$ITER$SALT$HASH`, the
format Django uses). Plain passwords are never kept in the config.

Credentials are presented as `Authorization: Bearer SECRET`, HTTP Basic `user:SECRET` (so
`http://user:SECRET@host/stream/x.mjpg` works in OpenCV, FFmpeg, VLC and camera integrations:
the secret is checked against that user, or against every secret when no user has that name),
or at /login, which sets a signed session cookie (web.sessions). A secret that verified is
remembered for a few minutes under a keyed digest (so an MJPEG client reconnecting, or
snapshots polled with Basic, do not pay the KDF each time); wrong ones are throttled per
address (web.throttle). Secrets are compared in constant time and never logged.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import string
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import IntEnum
from typing import Callable, Optional

from core.config import SECRET_HASH_ITERATIONS, SECRET_HASH_RE


class Role(IntEnum):
    OPEN = 0
    VIEWER = 1
    ADMIN = 2

    @property
    def label(self) -> str:
        return self.name.lower()


ROLES = {"viewer": Role.VIEWER, "admin": Role.ADMIN}

COOKIE = "vigil_session"
# static files anyone may fetch (the sign-in page's stylesheet); every route's role is in web.app
OPEN_PATHS = frozenset({"/static/login.css"})
TOKEN_USER = "token"  # the name server.token signs in as (reserved: no server.users entry may take it)
MAX_SECRET = 1024

# ------------------------------------------------------------------ password hashes
HASH_ALGO = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 600_000
# the format and the accepted iterations are the config's (server.users[].secret)
MIN_ITERATIONS, MAX_ITERATIONS = SECRET_HASH_ITERATIONS
HASH_RE = SECRET_HASH_RE
_SALT_CHARS = string.ascii_letters + string.digits


def hash_secret(secret: str, iterations: int = DEFAULT_ITERATIONS, salt: Optional[str] = None) -> str:
    """`pbkdf2_sha256$ITERATIONS$SALT$BASE64(HASH)` of a password or token (22-character salt)."""
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"iterations must be {MIN_ITERATIONS}..{MAX_ITERATIONS}, got {iterations}")
    salt = salt or "".join(secrets.choice(_SALT_CHARS) for _ in range(22))
    dk = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8"), salt.encode("ascii"), iterations)
    return f"{HASH_ALGO}${iterations}${salt}${base64.b64encode(dk).decode('ascii')}"


def verify_hash(secret: str, encoded: str) -> bool:
    m = HASH_RE.match(encoded)
    if m is None:
        return False
    iterations, salt, want = int(m.group(1)), m.group(2), base64.b64decode(m.group(3))
    try:
        got = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8", "surrogatepass"),
                                  salt.encode("ascii"), iterations)
    except (UnicodeError, ValueError):
        return False
    return hmac.compare_digest(got, want)


# ------------------------------------------------------------------ credentials
def parse_authorization(header: Optional[str]) -> Optional[tuple[str, Optional[str], str]]:
    """(scheme, user or None, secret) for a Bearer or Basic header that could succeed; None
    for none or for ones that never can (other schemes, bad base64, no secret)."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if not value or len(value) > 4 * MAX_SECRET:
        return None
    if scheme == "bearer":
        return "bearer", None, value
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        if not sep or not password:
            return None
        return "basic", (user or None), password
    return None


@dataclass(frozen=True)
class Principal:
    """Who a request is from: a user name, their role, and how they proved it (session,
    bearer, basic; `open` when auth is off)."""
    name: str
    role: Role
    via: str


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    secret_id: str                      # what sessions are bound to (never the secret itself)
    _digest: Optional[bytes] = None     # sha256 of an env/token secret ...
    _hash: Optional[str] = None         # ... or its PBKDF2 hash

    def matches(self, secret: str) -> bool:
        if self._digest is not None:
            return hmac.compare_digest(_digest(secret), self._digest)
        return self._hash is not None and verify_hash(secret, self._hash)


class CredentialError(Exception):
    """A configured secret cannot be read (names the key; never the value)."""


class Credentials:
    CACHE_S = 300.0
    CACHE_MAX = 512

    def __init__(self, server_cfg, environ=os.environ, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._key = secrets.token_bytes(32)  # fingerprints and the cache: this process only
        self._lock = threading.Lock()
        self._cache: "OrderedDict[bytes, tuple[str, float]]" = OrderedDict()
        users: dict[str, User] = {}
        token = server_cfg.token
        if token:
            d = _digest(token)
            users[TOKEN_USER] = User(TOKEN_USER, Role.ADMIN, d.hex(), _digest=d)
        for i, u in enumerate(getattr(server_cfg, "users", None) or ()):
            role = ROLES[u.role]
            if u.secret.startswith("env:"):
                value = environ.get(u.secret[4:])
                if not value:
                    raise CredentialError(f"server.users[{i}].secret: environment variable "
                                          f"{u.secret[4:]!r} is not set")
                d = _digest(value)
                users[u.name] = User(u.name, role, d.hex(), _digest=d)
            else:
                users[u.name] = User(u.name, role, u.secret, _hash=u.secret)
        self.users = users
        # cheap comparisons first, the KDF ones last
        self._order = sorted(users.values(), key=lambda u: u._hash is not None)

    @property
    def enabled(self) -> bool:
        return bool(self.users)

    def lookup(self, name: str) -> Optional[tuple[str, str]]:
        """(role name, secret id) of a user, for verifying a session; None if gone."""
        u = self.users.get(name)
        return (u.role.label, u.secret_id) if u is not None else None

    def known_user(self, name: Optional[str]) -> Optional[str]:
        """The name if it is a configured user (safe to log), else None (it could be a password
        typed into the wrong field)."""
        return name if name is not None and name in self.users and name != TOKEN_USER else None

    def fingerprint(self, via: str, user: Optional[str], secret: str) -> bytes:
        """A keyed digest of what was presented: for the throttle and the cache, never stored
        or logged as anything that could be reversed or replayed elsewhere."""
        msg = f"{via}\0{user or ''}\0{secret}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, msg, hashlib.sha256).digest()[:16]

    def check(self, user: Optional[str], secret: str) -> Optional[User]:
        """The user these credentials belong to, or None. With a configured user name only
        that user's secret is tried; otherwise every secret (Bearer, a token as Basic password
        under any name, a login without a name)."""
        if not secret or len(secret) > MAX_SECRET:
            return None
        ck = self.fingerprint("check", user if user in self.users else None, secret)
        now = self.clock()
        with self._lock:
            hit = self._cache.get(ck)
            if hit is not None and hit[1] > now:
                self._cache.move_to_end(ck)
                u = self.users.get(hit[0])
                if u is not None:
                    return u
        named = self.users.get(user) if user else None
        candidates = [named] if named is not None and named.name != TOKEN_USER else self._order
        for u in candidates:
            if u.matches(secret):
                with self._lock:
                    self._cache[ck] = (u.name, now + self.CACHE_S)
                    while len(self._cache) > self.CACHE_MAX:
                        self._cache.popitem(last=False)
                return u
        return None
