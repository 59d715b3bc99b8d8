"""Hypothesis fuzzing of the HTTP API of a running server (waitress, loopback), with and without
a token: random paths under the known route prefixes and random ones, random query values for
camera/kind/since/limit/width/fps, random headers (Authorization garbage, cookies,
Last-Event-ID), random methods and bodies.

Every response must be a handled one: no 500, no "Traceback" in any body, and every error on
/api/* (and every 4xx/5xx the app itself answers) is JSON with an "error" message. Streaming
responses are closed right after their headers."""
from __future__ import annotations

import base64
import collections
import json
import os
import string
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st

from core.config import parse_config
from tests.fault.util import serve

pytestmark = pytest.mark.fault

TOKEN = "fuzz-token-0123456789"
CAMERAS = ["cross", "belt"]
EXAMPLES = int(os.environ.get("VIGIL_FAULT_FUZZ_EXAMPLES", "500"))
STREAM_TYPES = ("multipart/x-mixed-replace", "text/event-stream")

# ---------------------------------------------------------------- strategies
_seg_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=24)
camera_name = st.one_of(
    st.sampled_from(CAMERAS), st.sampled_from(CAMERAS),  # real cameras half of the time
    st.sampled_from(CAMERAS + ["nope", "CROSS", "cross ", "a" * 65, "", "..", "-", "_"]),
    st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=70),
    _seg_text,
)
event_id = st.one_of(st.integers(-5, 50), st.integers(10**17, 10**40),
                     st.sampled_from(["x", "1.5", "-1", "1e3", "0x10", " 1"]))
ROUTES = [
    "/", "/login", "/healthz", "/readyz", "/metrics", "/api/cameras", "/api/events",
    "/api/events/stream", "/static/login.css", "/static/app.js", "/api", "/api/", "/favicon.ico",
]


@st.composite
def paths(draw) -> str:
    kind = draw(st.integers(0, 7)) % 5  # 0, 1: known routes; 2: event snapshots; 3, 4: random
    q = lambda s: quote(str(s), safe="")  # noqa: E731
    if kind == 0:
        return draw(st.sampled_from(ROUTES))
    cam = q(draw(camera_name))
    if kind == 1:
        tpl = draw(st.sampled_from(["/stream/{}.mjpg", "/exposure/{}.mjpg", "/snapshot/{}.jpg",
                                    "/exposure/{}.jpg", "/api/cameras/{}", "/api/cameras/{}/tracks",
                                    "/api/cameras/{}/exposure/reset", "/stream/{}", "/snapshot/{}.png"]))
        return tpl.format(cam)
    if kind == 2:
        return f"/api/events/{q(draw(event_id))}/snapshot.jpg"
    prefix = draw(st.sampled_from(["/api/", "/api/cameras/", "/api/events/", "/stream/", "/exposure/",
                                   "/snapshot/", "/static/", "/", "/metrics/", "/login/"]))
    segs = draw(st.lists(_seg_text.map(q), min_size=0, max_size=4))
    return prefix + "/".join(segs)


number_text = st.one_of(
    st.integers(-10**6, 10**6).map(str), st.integers(-(10**40), 10**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "nan", "inf", "-inf", "1e400", "0", "-0", "1_000", "0x20", " 5", "5 ", "½", "٣"]),
)
query = st.dictionaries(
    st.sampled_from(["camera", "kind", "since", "limit", "width", "fps", "after", "x"]),
    st.one_of(number_text, _seg_text, camera_name,
              st.sampled_from(["line_crossed", "camera_state", "track_started", "LINE_CROSSED", "zzz"])),
    max_size=5)

def _latin1(s: str) -> str:
    """Header values travel as latin-1: send non-latin text as its UTF-8 bytes (as browsers do)."""
    return s.encode("utf-8").decode("latin-1")


header_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                              blacklist_characters="\x7f"), max_size=80).map(str.strip)


@st.composite
def auth_header(draw, token: str | None) -> dict[str, str]:
    h: dict[str, str] = {}
    if token and draw(st.booleans()):  # the right token (in several spellings) half of the time
        h["Authorization"] = draw(st.sampled_from([
            f"Bearer {token}", f"bearer  {token} ",
            "Basic " + base64.b64encode(f"vigil:{token}".encode()).decode(),
            "Basic " + base64.b64encode(f":{token}".encode()).decode()]))
        choice = -1
    else:
        choice = draw(st.integers(0, 6))
    if choice == 1:
        h["Authorization"] = "Bearer " + draw(header_value)
    elif choice == 2:
        raw = draw(st.binary(max_size=60))
        h["Authorization"] = "Basic " + draw(st.sampled_from([base64.b64encode(raw).decode(),
                                                              raw.hex(), "%%%", ""]))
    elif choice == 3:
        h["Authorization"] = draw(header_value)
    elif choice == 4 and token:  # near misses
        h["Authorization"] = draw(st.sampled_from([f"Bearer {token}x", f"Bearer {token[:-1]}",
                                                   f"Token {token}", f"Bearer{token}", token]))
    elif choice == 5:
        h["Cookie"] = "vigil_session=" + quote(draw(header_value), safe="")
    if draw(st.booleans()):
        h["Last-Event-ID"] = draw(st.one_of(number_text.map(_latin1), header_value))
    if draw(st.integers(0, 3)) == 0:
        h[draw(st.sampled_from(["Accept", "Content-Type", "X-Forwarded-For", "Range", "If-None-Match",
                                "Accept-Encoding", "X-Junk"]))] = draw(header_value)
    return h


body = st.one_of(st.none(), st.binary(max_size=2048), _seg_text.map(str.encode),
                 st.dictionaries(_seg_text, st.one_of(st.integers(), _seg_text, st.none()), max_size=4)
                 .map(lambda d: json.dumps(d).encode()),
                 st.just(b"token=" + b"A" * 4000))


# ---------------------------------------------------------------- the test
@pytest.mark.parametrize("token", [None, TOKEN], ids=["open", "token"])
def test_api_fuzz(token, tmp_path, fault_report):
    cfg = parse_config({
        "server": {"host": "127.0.0.1", "port": 0, "threads": 32, "token": token},
        "paths": {"data": str(tmp_path / "data")},
        "cameras": [{"name": "cross", "source": "synthetic:crossing", "detector": "none",
                     "synthetic": {"width": 320, "height": 240}},
                    {"name": "belt", "source": "synthetic:conveyor", "detector": "none",
                     "synthetic": {"width": 320, "height": 240}}],
    })
    seen = collections.Counter()
    problems: list[str] = []
    with serve(cfg) as srv:
        base = srv.base
        session = requests.Session()

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(method=st.sampled_from(["GET"] * 6 + ["POST", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"]),
               path=paths(), params=query, headers=auth_header(token), data=body)
        def one(method, path, params, headers, data):
            if method in ("GET", "HEAD", "OPTIONS"):
                data = None
            try:
                r = session.request(method, base + path, params=params, headers=headers, data=data,
                                    timeout=(2, 6), stream=True, allow_redirects=False)
            except requests.exceptions.InvalidHeader:
                seen["client_rejected"] += 1
                return
            seen["inputs"] += 1
            try:
                ctype = r.headers.get("Content-Type", "")
                if ctype.startswith(STREAM_TYPES):
                    seen["streams_opened"] += 1
                    text = ""
                else:
                    text = r.raw.read(1 << 20, decode_content=True).decode("utf-8", "replace")
            finally:
                r.close()
            seen[r.status_code] += 1
            where = f"{method} {path} {params} {list(headers)} -> {r.status_code}"
            if r.status_code >= 500 and r.status_code != 503:
                problems.append(f"{where}: {text[:200]}")
            if "Traceback" in text or 'File "' in text:
                problems.append(f"{where}: traceback in body")
            if r.status_code >= 400 and method != "HEAD" and not path.startswith("/login"):
                ok_json = ctype.startswith("application/json")
                if ok_json:
                    try:
                        ok_json = bool(json.loads(text).get("error"))
                    except ValueError:
                        ok_json = False
                if not ok_json:
                    problems.append(f"{where}: error is not JSON with 'error' ({ctype}): {text[:120]!r}")
            if token and r.status_code < 300 and path not in ("/healthz", "/login", "/static/login.css"):
                good = headers.get("Authorization", "") in (
                    f"Bearer {token}", f"bearer  {token} ",
                    "Basic " + base64.b64encode(f"vigil:{token}".encode()).decode(),
                    "Basic " + base64.b64encode(f":{token}".encode()).decode())
                if not good:
                    problems.append(f"{where}: answered without the token")

        one()
        assert requests.get(base + "/healthz", timeout=5).status_code == 200  # still up
        session.close()

    fault_report.update({
        "inputs_tried": seen["inputs"],
        "faults_injected": seen["inputs"],
        "http_500": sum(v for k, v in seen.items() if isinstance(k, int) and k >= 500 and k != 503),
        "status": {str(k): v for k, v in sorted(seen.items(), key=lambda kv: str(kv[0])) if isinstance(k, int)},
        "streams_opened": seen["streams_opened"],
        "client_rejected": seen["client_rejected"],
        "token": bool(token),
        "problems": problems[:20],
    })
    assert not problems, f"{len(problems)} bad responses:\n" + "\n".join(problems[:20])
    assert seen["inputs"] >= 0.9 * EXAMPLES
