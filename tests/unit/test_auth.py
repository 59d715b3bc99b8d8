"""Auth building blocks without a server: password hashes, credentials, the per-address
throttle (an injected clock, no sleeps), signed sessions, and the auth keys of the config."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from core.config import SECRET_HASH_RE, ConfigError, ServerConfig, parse_config
from web import auth
from web.sessions import SessionError, SessionManager
from web.throttle import Throttle, client_key

FAST = 100_000  # the fewest iterations the config accepts: quick tests
CAMS = [{"name": "a", "source": "synthetic:crossing", "detector": "none"}]


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


# ------------------------------------------------------------------ hashes
def test_hash_round_trip_and_format():
    h = auth.hash_secret("correct horse", iterations=FAST)
    assert h.startswith("pbkdf2_sha256$100000$") and "correct horse" not in h
    assert auth.verify_hash("correct horse", h)
    assert not auth.verify_hash("correct hors", h)
    # change the digest's last character for certain: a fixed "A" was a no-op when the hash
    # already ended in it (a random salt made that happen once in CI); +16 in the alphabet
    # changes its high bits (its low 2 bits are base64 padding a decoder may ignore)
    abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    bad = h[:-2] + abc[(abc.index(h[-2]) + 16) % 64] + h[-1]
    assert not auth.verify_hash("correct horse", bad)
    assert not auth.verify_hash("x", "plain-text")
    # two hashes of one password differ (random salt); the config accepts what we write
    assert auth.hash_secret("correct horse", iterations=FAST) != h
    assert SECRET_HASH_RE.match(h) and auth.HASH_RE is SECRET_HASH_RE
    assert auth.hash_secret("pw", salt="abcdefgh12345678", iterations=FAST) == \
        auth.hash_secret("pw", salt="abcdefgh12345678", iterations=FAST)
    with pytest.raises(ValueError):
        auth.hash_secret("pw", iterations=1000)


def test_django_format_compatible():
    """Django's pbkdf2_sha256 hashes verify too (same format: salt used as text)."""
    import hashlib
    dk = hashlib.pbkdf2_hmac("sha256", b"s3cret", b"SaltSaltSalt", 100_000)
    assert auth.verify_hash("s3cret", f"pbkdf2_sha256$100000$SaltSaltSalt${base64.b64encode(dk).decode()}")


def test_parse_authorization():
    b = lambda s: "Basic " + base64.b64encode(s.encode()).decode()  # noqa: E731
    assert auth.parse_authorization("Bearer abc") == ("bearer", None, "abc")
    assert auth.parse_authorization("bearer   abc  ") == ("bearer", None, "abc")
    assert auth.parse_authorization(b("alice:pw:with:colons")) == ("basic", "alice", "pw:with:colons")
    assert auth.parse_authorization(b(":tok")) == ("basic", None, "tok")
    # ones that can never succeed are not credentials (not throttled, plain 401)
    for h in (None, "", "Bearer", "Bearer ", "Token abc", b("nocolon"), b("alice:"), "Basic %%%",
              "Basic " + base64.b64encode(b"\xff\xfe:x").decode()):
        assert auth.parse_authorization(h) is None, h


# ------------------------------------------------------------------ credentials
def _server(monkeypatch, **kw) -> ServerConfig:
    monkeypatch.setenv("VIGIL_T_VIEWER", "viewer-secret-1")
    return parse_config({"server": kw, "cameras": CAMS}).server


def test_credentials_roles_and_lookup(monkeypatch):
    h = auth.hash_secret("admin-password", iterations=FAST)
    s = _server(monkeypatch, token="legacy-token-123", users=[
        {"name": "vee", "role": "viewer", "secret": "env:VIGIL_T_VIEWER"},
        {"name": "ada", "role": "admin", "secret": h}])
    c = auth.Credentials(s)
    assert c.enabled
    assert c.check(None, "legacy-token-123").role is auth.Role.ADMIN          # Bearer
    assert c.check("vigil", "legacy-token-123").name == auth.TOKEN_USER       # Basic, any name
    assert c.check("vee", "viewer-secret-1").role is auth.Role.VIEWER
    assert c.check(None, "viewer-secret-1").name == "vee"                      # as a Bearer token
    assert c.check("ada", "admin-password").role is auth.Role.ADMIN
    assert c.check("vee", "admin-password") is None                           # another user's secret
    assert c.check("ada", "wrong") is None and c.check(None, "") is None
    assert c.check(None, "x" * 5000) is None
    assert c.lookup("ada") == ("admin", h) and c.lookup("nobody") is None
    assert c.known_user("vee") == "vee" and c.known_user("hunter2") is None
    # a verified secret is remembered (no KDF for a reconnecting MJPEG client)
    assert c.check("ada", "admin-password") is not None and len(c._cache) >= 1
    # fingerprints are keyed: not the secret, and differ per scheme / user
    fp = c.fingerprint("bearer", None, "viewer-secret-1")
    assert b"viewer-secret-1" not in fp and fp != c.fingerprint("basic", None, "viewer-secret-1")


def test_no_credentials_means_auth_off(monkeypatch):
    assert not auth.Credentials(_server(monkeypatch)).enabled


# ------------------------------------------------------------------ throttle
def test_throttle_kicks_in_grows_and_recovers():
    clk = Clock()
    t = Throttle(free_failures=5, lockout_s=1.0, max_lockout_s=300.0, forget_after_s=3600.0, clock=clk)
    ip = "203.0.113.7"
    assert [t.window(n) for n in (1, 5, 6, 7, 8, 14, 15, 40)] == [0, 0, 1, 2, 4, 256, 300, 300]
    for i in range(5):
        out = t.failure(ip, bytes([i]), "bearer")
        assert out.counted and out.lockout_s == 0 and t.retry_after(ip) == 0
    out = t.failure(ip, b"\x05", "bearer")
    assert out.failures == 6 and out.lockout_s == 1.0
    assert t.retry_after(ip) == pytest.approx(1.0) and t.locked_clients() == 1
    assert t.retry_after("203.0.113.8") == 0  # another address is not affected
    clk.advance(0.5)
    assert t.retry_after(ip) == pytest.approx(0.5)
    clk.advance(0.6)
    assert t.retry_after(ip) == 0 and t.locked_clients() == 0  # recovered
    assert t.failure(ip, b"\x06", "login").lockout_s == 2.0  # the window doubles
    clk.advance(2.01)
    assert t.failure(ip, b"\x07", "basic").lockout_s == 4.0
    assert t.lockouts_total == 3 and t.refused_total == 2
    assert t.failures_total == {"login": 1, "basic": 1, "bearer": 6}
    # forgotten an hour after the last failure (once not locked)
    clk.advance(3600.1)
    assert t.tracked_clients() == 1 and t.retry_after(ip) == 0
    assert t.failure(ip, b"\x08", "bearer").failures == 1


def test_throttle_repeats_do_not_climb_the_ladder():
    """A client retrying one outdated token forever never locks its address out."""
    clk = Clock()
    t = Throttle(free_failures=2, clock=clk)
    for _ in range(50):
        t.failure("198.51.100.1", b"stale", "basic")
    assert t.retry_after("198.51.100.1") == 0 and t.repeats_total == 49
    assert t.seen_before("198.51.100.1", b"stale") and not t.seen_before("198.51.100.2", b"stale")
    assert t.failures_total["basic"] == 50


def test_throttle_keys_and_bounds():
    assert client_key("2001:db8:1:2:3:4:5:6") == client_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("192.0.2.1") == "192.0.2.1" and client_key(None) == "?"
    assert client_key("x" * 500) == "x" * 64
    t = Throttle(free_failures=1, clock=Clock(), max_clients=100)
    for i in range(500):
        t.failure(f"10.0.{i // 256}.{i % 256}", b"g", "bearer")
    assert t.tracked_clients() == 100


# ------------------------------------------------------------------ sessions
def _mgr(folder: Path, clk: Clock, max_age: float = 3600) -> SessionManager:
    return SessionManager(secret_ref=None, folder=folder, max_age_s=max_age, clock=clk)


def _lookup(users):
    return lambda name: users.get(name)


def test_session_valid_tampered_expired(tmp_path):
    clk = Clock(1_700_000_000)
    m = _mgr(tmp_path / "auth", clk)
    users = {"vee": ("viewer", "id1")}
    value, max_age = m.issue("vee", "viewer", "id1")
    assert max_age == 3600 and "id1" not in value
    data, why = m.verify(value, _lookup(users))
    assert data["u"] == "vee" and data["r"] == "viewer" and why == ""
    # tampered: flip a character of the payload, or claim another role with the old signature
    payload, _, sig = value.partition(".")
    forged = base64.urlsafe_b64encode(json.dumps({**data, "r": "admin"}).encode()).decode().rstrip("=")
    for bad in (value[:5] + ("A" if value[5] != "A" else "B") + value[6:], forged + "." + sig,
                "", "garbage", "a." * 600):
        assert m.verify(bad, _lookup(users)) == (None, "tampered"), bad[:40]
    clk.advance(3599)
    assert m.verify(value, _lookup(users))[0] is not None
    clk.advance(2)
    assert m.verify(value, _lookup(users)) == (None, "expired")
    assert m.rejected["tampered"] == 5 and m.rejected["expired"] == 1


def test_session_bound_to_the_user(tmp_path):
    m = _mgr(tmp_path / "auth", Clock())
    value, _ = m.issue("vee", "viewer", "id1")
    assert m.verify(value, _lookup({}))[1] == "unknown_user"                      # user removed
    assert m.verify(value, _lookup({"vee": ("admin", "id1")}))[1] == "unknown_user"  # role changed
    assert m.verify(value, _lookup({"vee": ("viewer", "id2")}))[1] == "unknown_user"  # new password


def test_logout_and_rotation_survive_a_restart(tmp_path):
    folder = tmp_path / "auth"
    clk = Clock(1_700_000_000)
    users = _lookup({"a": ("admin", "k"), "b": ("viewer", "k")})
    m = _mgr(folder, clk)
    secret_file = folder / "session_secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    a, _ = m.issue("a", "admin", "k")
    b, _ = m.issue("b", "viewer", "k")
    assert m.revoke(a) and not m.revoke("not-a-session")
    assert m.verify(a, users)[1] == "revoked" and m.verify(b, users)[0] is not None
    m2 = _mgr(folder, clk)  # a restart: same secret, the logout is remembered
    assert m2.verify(a, users)[1] == "revoked" and m2.verify(b, users)[0] is not None
    m2.rotate()
    assert m2.verify(b, users)[1] == "tampered"  # signed under the old secret
    assert _mgr(folder, clk).verify(b, users)[1] == "tampered"
    # deleting the file is a rotation too
    c, _ = m2.issue("b", "viewer", "k")
    secret_file.unlink()
    assert _mgr(folder, clk).verify(c, users)[1] == "tampered"


def test_session_secret_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("VIGIL_T_SESSION", "s" * 40)
    m = SessionManager(secret_ref="env:VIGIL_T_SESSION", folder=tmp_path, max_age_s=60, clock=Clock())
    v, _ = m.issue("a", "admin", "k")
    assert m.verify(v, _lookup({"a": ("admin", "k")}))[0] is not None
    assert not (tmp_path / "session_secret").exists()
    with pytest.raises(SessionError, match="env"):
        m.rotate()
    monkeypatch.delenv("VIGIL_T_SESSION")
    with pytest.raises(SessionError, match="VIGIL_T_SESSION"):
        SessionManager(secret_ref="env:VIGIL_T_SESSION", folder=tmp_path, max_age_s=60)


# ------------------------------------------------------------------ config
def _cfg(server: dict):
    return parse_config({"server": server, "cameras": CAMS})


def test_config_refuses_plain_passwords_and_never_echoes_them(monkeypatch):
    with pytest.raises(ConfigError) as e:
        _cfg({"users": [{"name": "ada", "secret": "MyRealPassw0rd!"}]})
    assert "server.users[0].secret" in str(e.value) and "hash-password" in str(e.value)
    assert "MyRealPassw0rd" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        _cfg({"token": "short"})
    assert "short" not in str(e.value).split(":", 1)[1].replace("5 characters", "")
    with pytest.raises(ConfigError, match="not set"):
        _cfg({"users": [{"name": "ada", "secret": "env:VIGIL_T_UNSET"}]})
    monkeypatch.setenv("VIGIL_T_SHORT", "abc")
    with pytest.raises(ConfigError, match="has 3 characters"):
        _cfg({"users": [{"name": "ada", "secret": "env:VIGIL_T_SHORT"}]})
    weak = auth.hash_secret("pw", iterations=FAST).replace("$100000$", "$010000$")
    with pytest.raises(ConfigError, match="iterations"):
        _cfg({"users": [{"name": "ada", "secret": weak}]})
    # commands that start no server leave env: references unread
    assert parse_config({"server": {"users": [{"name": "ada", "secret": "env:VIGIL_T_UNSET"}]},
                         "cameras": CAMS}, resolve_secrets=False).server.users[0].secret == "env:VIGIL_T_UNSET"


def test_config_users_names_roles_session_keys(monkeypatch):
    h = auth.hash_secret("pw-pw-pw-pw", iterations=FAST)
    with pytest.raises(ConfigError, match=r"duplicate user name 'ada'"):
        _cfg({"users": [{"name": "ada", "secret": h}, {"name": "ada", "secret": h}]})
    with pytest.raises(ConfigError, match="reserved|server.token"):
        _cfg({"users": [{"name": "token", "secret": h}]})
    with pytest.raises(ConfigError, match="role"):
        _cfg({"users": [{"name": "ada", "role": "root", "secret": h}]})
    with pytest.raises(ConfigError, match="session_secret"):
        _cfg({"session_secret": "literal-secret-in-the-file-0123456789"})
    monkeypatch.setenv("VIGIL_T_SESS", "x" * 10)
    with pytest.raises(ConfigError, match="32 to 512"):
        _cfg({"session_secret": "env:VIGIL_T_SESS"})
    with pytest.raises(ConfigError, match="max_lockout_s"):
        _cfg({"throttle": {"lockout_s": 10, "max_lockout_s": 5}})
    s = _cfg({"users": [{"name": "ada", "secret": h}]}).server
    assert s.users[0].role == "viewer" and s.auth_enabled and not _cfg({}).server.auth_enabled
    # the model, dumped (as --host/--port overrides do), keeps no plain secret
    monkeypatch.setenv("VIGIL_T_V", "viewer-secret-1")
    dumped = json.dumps(_cfg({"users": [{"name": "v", "secret": "env:VIGIL_T_V"}]}).model_dump())
    assert "viewer-secret-1" not in dumped and "env:VIGIL_T_V" in dumped


def test_public_bind_without_auth_is_refused(capsys, tmp_path):
    from web.server import serve
    cfg = parse_config({"server": {"host": "0.0.0.0", "port": 0}, "cameras": CAMS,
                        "paths": {"data": str(tmp_path)}})
    assert serve(cfg) == 2
    err = capsys.readouterr().err
    assert "refusing to bind 0.0.0.0 without auth" in err and "allow_public_without_auth" in err
    assert not any(tmp_path.iterdir())  # nothing was started or created
