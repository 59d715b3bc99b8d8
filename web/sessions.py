"""Signed dashboard sessions: who, which role, until when; verified on every request.

A session cookie is `itsdangerous` URL-safe JSON signed with HMAC-SHA256 under the server's
session secret:

    {"u": user, "r": role, "k": user key, "sid": random id, "iat": issued, "exp": expires}

It is refused when the signature does not verify (tampered, or signed under an older secret),
when `exp` has passed (the server's clock, not the browser's Max-Age), when its `sid` was
signed out (logout), or when `k` no longer matches the user: `k` is a keyed digest of the
user's name, role and configured secret, so removing a user, changing their password or their
role signs their sessions out too.

The secret is `server.session_secret: env:NAME` or, by default, 32 random bytes kept in
`<paths.data>/auth/session_secret` (mode 0600, created on first start). Rotating it (POST
/api/auth/rotate, or deleting the file and restarting) signs everyone out. Logged-out session
ids are kept, with their expiry, in `<paths.data>/auth/revoked.json` until they would have
expired anyway, so a logout survives a restart.

`clock` (wall seconds) is injectable for tests.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from itsdangerous import BadData, URLSafeSerializer

log = logging.getLogger("vigil.auth")

SALT = "vigil.session.v2"
MAX_COOKIE = 1024          # longer cookies are refused unparsed
MAX_REVOKED = 10_000       # more live logged-out sessions than this: rotate (everyone out)
SECRET_FILE = "session_secret"
REVOKED_FILE = "revoked.json"


class SessionError(Exception):
    """The session secret cannot be read or created (message names the file or variable)."""


class SessionManager:
    def __init__(self, *, secret_ref: Optional[str], folder: Optional[Path], max_age_s: float,
                 clock: Callable[[], float] = time.time, environ=os.environ) -> None:
        self.max_age_s = float(max_age_s)
        self.clock = clock
        self.folder = Path(folder) if folder is not None else None
        self.from_env = bool(secret_ref)
        self._lock = threading.Lock()
        self._revoked: dict[str, float] = {}
        self.rejected = {"tampered": 0, "expired": 0, "revoked": 0, "unknown_user": 0}
        if secret_ref:
            name = secret_ref[4:] if secret_ref.startswith("env:") else ""
            value = environ.get(name) if name else None
            if not value:
                raise SessionError(f"server.session_secret: environment variable {name!r} is not set")
            self._secret = value.encode()
        else:
            self._secret = self._load_or_create()
        self._load_revoked()
        self._signer = self._make_signer()

    # ------------------------------------------------------------ secret storage
    def _make_signer(self) -> URLSafeSerializer:
        return URLSafeSerializer(self._secret, salt=SALT,
                                 signer_kwargs={"digest_method": hashlib.sha256})

    def _path(self, name: str) -> Path:
        assert self.folder is not None
        return self.folder / name

    def _load_or_create(self) -> bytes:
        if self.folder is None:
            return secrets.token_hex(32).encode()  # in memory only (sessions end with the process)
        path = self._path(SECRET_FILE)
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                text = path.read_text(encoding="ascii").strip()
            except FileNotFoundError:
                text = self._write_secret(exclusive=True)
                log.info("created a new session secret in %s", path)
        except (OSError, UnicodeDecodeError) as e:
            raise SessionError(f"session secret {path}: {getattr(e, 'strerror', None) or e}") from None
        if len(text) < 32:
            raise SessionError(f"session secret {path} is too short ({len(text)} characters; "
                               "delete it and a new one is made)")
        return text.encode()

    def _write_secret(self, exclusive: bool) -> str:
        text = secrets.token_hex(32)
        path = self._path(SECRET_FILE)
        if exclusive:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first: use theirs
                return path.read_text(encoding="ascii").strip()
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(text + "\n")
            return text
        tmp = path.with_name(SECRET_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text + "\n")
        os.replace(tmp, path)
        return text

    def _load_revoked(self) -> None:
        if self.folder is None:
            return
        try:
            data = json.loads(self._path(REVOKED_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            log.warning("ignoring unreadable %s", self._path(REVOKED_FILE))
            return
        now = self.clock()
        if isinstance(data, dict):
            self._revoked = {str(k): float(v) for k, v in data.items()
                             if isinstance(v, (int, float)) and v > now}

    def _save_revoked(self) -> None:
        if self.folder is None:
            return
        path = self._path(REVOKED_FILE)
        tmp = path.with_name(REVOKED_FILE + ".tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self._revoked, f)
            os.replace(tmp, path)
        except OSError as e:
            log.warning("cannot save signed-out sessions to %s: %s", path, e.strerror or e)

    # ------------------------------------------------------------ sessions
    def user_key(self, name: str, role: str, secret_id: str) -> str:
        """Digest binding a session to the user's current name, role and configured secret."""
        msg = f"{name}\0{role}\0{secret_id}".encode()
        return hmac.new(self._secret, b"user-key\0" + msg, hashlib.sha256).hexdigest()[:16]

    def issue(self, name: str, role: str, secret_id: str) -> tuple[str, int]:
        """(cookie value, max-age seconds) for a new session."""
        now = self.clock()
        payload = {"u": name, "r": role, "k": self.user_key(name, role, secret_id),
                   "sid": secrets.token_urlsafe(12), "iat": int(now), "exp": int(now + self.max_age_s)}
        with self._lock:
            value = self._signer.dumps(payload)
        return value, int(self.max_age_s)

    def _decode(self, value: Optional[str]) -> tuple[Optional[dict], str]:
        if not value or len(value) > MAX_COOKIE:
            return None, "tampered"
        with self._lock:
            signer = self._signer
        try:
            data = signer.loads(value)
        except (BadData, ValueError, TypeError, UnicodeError):
            return None, "tampered"
        if not (isinstance(data, dict) and isinstance(data.get("u"), str) and isinstance(data.get("r"), str)
                and isinstance(data.get("exp"), int) and isinstance(data.get("sid"), str)
                and isinstance(data.get("k"), str)):
            return None, "tampered"
        return data, ""

    def verify(self, value: Optional[str], lookup: Callable[[str], Optional[tuple[str, str]]]
               ) -> tuple[Optional[dict], str]:
        """(payload, "") for a valid session, else (None, reason). `lookup(name)` gives the
        user's current (role, secret id) or None when the user is gone."""
        data, why = self._decode(value)
        if data is None:
            self.rejected[why] += 1
            return None, why
        now = self.clock()
        if data["exp"] <= now:
            self.rejected["expired"] += 1
            return None, "expired"
        with self._lock:
            revoked = data["sid"] in self._revoked
        if revoked:
            self.rejected["revoked"] += 1
            return None, "revoked"
        cur = lookup(data["u"])
        if cur is None or cur[0] != data["r"] or not hmac.compare_digest(
                data["k"], self.user_key(data["u"], cur[0], cur[1])):
            self.rejected["unknown_user"] += 1
            return None, "unknown_user"
        return data, ""

    def revoke(self, value: Optional[str]) -> bool:
        """Sign one session out (logout). False if the cookie was not a session of ours."""
        data, _ = self._decode(value)
        if data is None:
            return False
        now = self.clock()
        with self._lock:
            self._revoked = {k: v for k, v in self._revoked.items() if v > now}
            if data["exp"] > now:
                self._revoked[data["sid"]] = float(data["exp"])
            overflow = len(self._revoked) > MAX_REVOKED
        if overflow:
            log.warning("more than %d signed-out sessions still live: rotating the session "
                        "secret (everyone signs in again)", MAX_REVOKED)
            self.rotate()
        else:
            self._save_revoked()
        return True

    def rotate(self) -> None:
        """A new secret: every session issued so far is refused from now on."""
        if self.from_env:
            raise SessionError("the session secret comes from server.session_secret (env:); "
                               "change that variable and restart to rotate it")
        with self._lock:
            if self.folder is None:
                self._secret = secrets.token_hex(32).encode()
            else:
                try:
                    self._secret = self._write_secret(exclusive=False).encode()
                except OSError as e:
                    raise SessionError(f"cannot write {self._path(SECRET_FILE)}: "
                                       f"{e.strerror or e}") from None
            self._signer = self._make_signer()
            self._revoked = {}
        self._save_revoked()
        log.warning("session secret rotated: every session is signed out")
