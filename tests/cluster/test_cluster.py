"""Vigil on a real Ray cluster on this machine (runtime/cluster.py; the `cluster` extra).

One local cluster for the module (ray.cluster_utils: a head with no camera slots and two
worker nodes with 6 each, all bound to 127.0.0.1, token auth, health checks at 500 ms x 3),
joined by a real VigilServer the way `--cluster HOST:PORT` joins one: 6 synthetic cameras
with a motion detector and a counting line (track and line events all the time).

- placement spreads them over both workers; /api/cameras gives each one's node; /api/cluster
  lists the nodes; the dashboard streams a camera living on a worker (the MJPEG decodes);
  unwatched cameras send the head only status and events (no frame arrays cross nodes);
- a worker node SIGKILLed: every camera LIVE again on the survivor within 10 s, camera_moved
  events say from where to where, track ids of the new epoch are new, and the store holds
  every camera's events with no delivery duplicated or skipped;
- more cameras than slots: the rest are PENDING (listed, not lost) until a node joins, then
  placed on it.

Skips without Ray; under VIGIL_CI=1 a missing Ray fails.
"""
from __future__ import annotations

import collections
import json
import sqlite3
import threading
import time

import cv2
import numpy as np
import pytest
import requests

from tests.conftest import require
from tests.integration.webutil import make_config, read_mjpeg_parts
from tests.timing import wait_for

pytestmark = pytest.mark.timeout(420)

N_CAMERAS = 6


def test_cluster_without_ray_is_a_readable_error(tmp_path):
    """`run --cluster` where Ray is not importable names the extra to install (no traceback)."""
    import subprocess
    import sys
    from tests.conftest import ROOT
    code = ("import sys, runpy; sys.modules['ray'] = None; "
            "sys.argv = ['main.py', 'run', '--cluster', 'local:2', '--source', 'synthetic:crossing']; "
            "runpy.run_path('main.py', run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "requirements-cluster.txt" in r.stderr and "Traceback" not in r.stderr, r.stderr
    bad = subprocess.run([sys.executable, "main.py", "run", "--cluster", "nowhere"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--cluster" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_an_unreachable_head_is_a_readable_error():
    """`run --cluster HOST:PORT` with nothing listening there fails at once, naming it (Ray
    itself would retry for minutes)."""
    _ray_or_skip()
    import socket
    import subprocess
    import sys
    from tests.conftest import ROOT
    with socket.socket() as s:  # a free port, closed again: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "main.py", "run", "--cluster", f"127.0.0.1:{port}", "--port", "0",
                        "--source", "synthetic:crossing"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "cannot reach the Ray head" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and time.monotonic() - t0 < 60


def _ray_or_skip():
    import importlib.util  # not imported here: Ray reads its auth settings at import
    require(importlib.util.find_spec("ray") is not None,
            "Ray is not installed (pip install -r requirements-cluster.txt -c constraints.txt)")


def cameras(n: int, prefix: str = "cam", prefer: dict[int, str] | None = None) -> list[dict]:
    return [{"name": f"{prefix}{i}", **({"node": prefer[i]} if prefer and i in prefer else {}), "source": "synthetic:crossing", "detector": "motion", "seed": i,
             "synthetic": {"width": 320, "height": 180, "fps": 10, "objects": 3, "speed_min": 90,
                           "speed_max": 160, "size_min": 24, "size_max": 40, "pause_max": 0.3},
             "detector_params": {"warmup_frames": 10},
             "lines": [{"name": "mid", "points": [[0.3, 0.0], [0.3, 1.0]], "normalized": True,
                        "hysteresis_px": 2, "confirm_frames": 1, "classes": []}]}
            for i in range(n)]


@pytest.fixture(scope="module")
def cluster():
    _ray_or_skip()
    from core.config import ClusterConfig
    from runtime.cluster import LocalCluster, local_env
    local_env()  # before `import ray`
    local = LocalCluster(2, ClusterConfig(capacity=6))
    try:
        yield local
    finally:
        import ray
        ray.shutdown()
        local.shutdown()


def _start(cfg, local):
    """A VigilServer joining the module's cluster by address (as `--cluster HOST:PORT`)."""
    from web.server import VigilServer
    srv = VigilServer(cfg)
    srv.vigil.local = local  # shown in /api/cluster (raylet pids); not owned: not shut down
    srv.bind()
    srv.start_pipelines()
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    srv.base = srv.url.rstrip("/")
    srv.thread = t
    return srv


def _stop(srv) -> None:
    srv.shutdown(timeout=5.0)
    srv.thread.join(5.0)


def _states(srv) -> dict[str, tuple[str, str | None]]:
    r = requests.get(srv.base + "/api/cameras", timeout=5)
    r.raise_for_status()
    return {c["name"]: (c["state"], c["node"]) for c in r.json()["cameras"]}


@pytest.fixture(scope="module")
def server(cluster, tmp_path_factory):
    # cam0 and cam1 prefer worker1 (soft)
    cfg = make_config(cameras(N_CAMERAS, prefer={0: "worker1", 1: "worker1"}), data_dir=str(tmp_path_factory.mktemp("cluster-data")))
    data = cfg.model_dump(mode="python")
    data["cluster"]["address"] = cluster.address
    from core.config import parse_config
    cfg = parse_config(data, "test")
    srv = _start(cfg, cluster)
    try:
        live = wait_for(lambda: all(s == "LIVE" for s, _ in _states(srv).values()), 180, 0.5)
        assert live, f"cameras not LIVE within 180 s: {_states(srv)}"
        yield srv
    finally:
        _stop(srv)


def test_placed_over_workers_api_and_a_worker_camera_streams(server):
    st = _states(server)
    per_node = collections.Counter(node for _, node in st.values())
    assert set(per_node) == {"worker1", "worker2"}, st  # the head has no camera slots
    assert sorted(per_node.values()) == [3, 3], per_node  # spread by free slots
    assert st["cam0"][1] == st["cam1"][1] == "worker1", st  # their preferred node
    info = requests.get(server.base + "/api/cluster", timeout=5).json()
    assert info["enabled"] and info["pending"] == [] and info["auth_mode"] == "token"
    nodes = {n["name"]: n for n in info["nodes"]}
    assert {"head", "worker1", "worker2"} <= set(nodes)
    for name in ("worker1", "worker2"):
        n = nodes[name]
        assert n["alive"] and n["capacity"] == 6 and n["address"] == "127.0.0.1"
        assert sorted(n["cameras"]) == sorted(c for c, (_, node) in st.items() if node == name)
        assert isinstance(n.get("raylet_pid"), int)
    assert nodes["head"]["capacity"] == 0 and nodes["head"]["cameras"] == []
    metrics = requests.get(server.base + "/metrics", timeout=10).text
    assert 'vigil_cluster_node_alive{node="worker1"} 1.0' in metrics
    assert 'vigil_cluster_node_cameras{node="worker2"} 3.0' in metrics
    page = requests.get(server.base + "/", timeout=10).text
    assert 'id="cluster"' in page and 'data-role="node"' in page and ">worker2</span>" in page

    # unwatched: only status and events crossed (a 320x180 frame is 173 KB, 10 of them a second)
    rx0 = {c: v["rx_bytes"] for c, v in info["cameras"].items()}
    time.sleep(3.0)
    info2 = requests.get(server.base + "/api/cluster", timeout=5).json()
    for c, v in info2["cameras"].items():
        per_s = (v["rx_bytes"] - rx0[c]) / 3.0
        assert 0 < per_s < 40_000, (c, per_s)

    cam = next(c for c, (_, node) in st.items() if node == "worker2")
    parts = read_mjpeg_parts(f"{server.base}/stream/{cam}.mjpg?width=160", 8, timeout=20)
    seqs = [p["seq"] for p in parts]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    img = cv2.imdecode(np.frombuffer(parts[-1]["data"], np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[1] == 160
    # two viewers on the head share one fetch per frame (and one encode on the node)
    remote = server.vigil.cameras[cam]
    feed = remote.frames("overlay")
    f0, e0 = feed.fetches, remote.status().encodes.get("overlay", 0)
    got: list[list[dict]] = []
    viewers = [threading.Thread(target=lambda: got.append(read_mjpeg_parts(
        f"{server.base}/stream/{cam}.mjpg?width=160", 10, timeout=20))) for _ in range(2)]
    for t in viewers:
        t.start()
    for t in viewers:
        t.join(30)
    assert len(got) == 2 and all(len(g) == 10 for g in got)
    fetched = feed.fetches - f0
    a, b = ({p["seq"] for p in g} for g in got)
    print(f"2 viewers x 10 parts: {fetched} fetches, {len(a & b)} frames in common")
    assert len(a & b) >= 6, (sorted(a), sorted(b))  # the same frames...
    assert fetched <= 15, fetched  # ... fetched once for both, not once per viewer (20)
    time.sleep(0.6)  # the next status poll
    encoded = remote.status().encodes.get("overlay", 0) - e0
    assert encoded <= fetched + 6, (encoded, fetched)
    r = requests.get(f"{server.base}/snapshot/{cam}.jpg", timeout=10)
    assert r.status_code == 200 and cv2.imdecode(np.frombuffer(r.content, np.uint8), 1).shape[1] == 320
    tr = requests.get(f"{server.base}/api/cameras/{cam}/tracks", timeout=10).json()
    assert tr["camera"] == cam and tr["frame_seq"] is not None


def test_ray_listens_on_loopback_only(cluster):
    """Every socket the cluster's processes listen on (GCS, raylets, object managers, agents,
    workers) is bound to 127.0.0.1: nothing of the local cluster is reachable from the network."""
    import ipaddress
    import psutil
    pids: set[int] = set()
    for node in [cluster.cluster.head_node, *cluster.workers.values()]:
        pids |= cluster.node_pids(node)
    listening = []
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except psutil.Error:
            continue
        listening += [(pid, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    assert len(listening) >= 4, listening  # GCS, raylets...

    def loopback(ip: str) -> bool:
        a = ipaddress.ip_address(ip)
        return (getattr(a, "ipv4_mapped", None) or a).is_loopback
    assert all(loopback(ip) for _, ip, _ in listening), listening


def test_a_driver_without_the_token_is_refused(cluster):
    """Token authentication is on: a driver with another token cannot join the cluster."""
    import os
    import subprocess
    import sys
    # RAY_NUM_REDIS_GET_RETRIES: its connect attempts (one a second; default 20)
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 64, RAY_NUM_REDIS_GET_RETRIES="3")
    code = f"import ray; ray.init(address={cluster.address!r}); print('JOINED')"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "JOINED" not in out, out[-2000:]
    assert "InvalidAuthToken" in out or "Authentication" in out, out[-2000:]


def _stored(srv) -> list[dict]:
    path = srv.vigil.store.path
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT id, camera, kind, track_id, data FROM events ORDER BY id").fetchall()
    finally:
        con.close()
    return [{"id": i, "camera": c, "kind": k, "track_id": t, "data": json.loads(d)} for i, c, k, t, d in rows]


def test_worker_killed_cameras_live_again_within_10s_events_intact(server, cluster):
    from runtime.cluster import EPOCH_ID_STRIDE
    before = _states(server)
    victim = "worker1"
    moved = sorted(c for c, (_, node) in before.items() if node == victim)
    assert moved
    time.sleep(2.0)  # events flowing on every camera
    t0 = time.monotonic()
    cluster.kill_worker(victim)
    ok = wait_for(lambda: all(s == "LIVE" and n == "worker2" for s, n in _states(server).values()), 10.0, 0.1)
    took = time.monotonic() - t0
    assert ok, f"not every camera LIVE on worker2 within 10 s of the kill: {_states(server)}"
    print(f"failover: all {N_CAMERAS} cameras LIVE again {took:.2f} s after the kill")

    time.sleep(4.0)  # events continue on the new placement
    info = requests.get(server.base + "/api/cluster", timeout=5).json()
    nodes = {n["name"]: n for n in info["nodes"]}
    assert nodes[victim]["alive"] is False and nodes[victim]["cameras"] == []
    assert sorted(nodes["worker2"]["cameras"]) == sorted(before)
    evs = requests.get(server.base + "/api/events?kind=camera_moved&limit=50", timeout=5).json()["events"]
    moves = {e["camera"]: e["data"] for e in evs}
    assert sorted(moves) == moved
    assert all(m["from"] == victim and m["to"] == "worker2" and m["epoch"] == 1 for m in moves.values())

    rows = _stored(server)
    deliveries = collections.defaultdict(list)
    for r in rows:
        d = r["data"].get("delivery")
        if d is not None:
            deliveries[(r["camera"], d["epoch"])].append(d["seq"])
    for cam in before:
        epochs = sorted(e for c, e in deliveries if c == cam)
        assert epochs == ([0, 1] if cam in moved else [0]), (cam, epochs)
        for e in epochs:
            seqs = deliveries[(cam, e)]
            # every event the camera handed over is stored once, in order, none skipped
            assert seqs == list(range(1, len(seqs) + 1)), (cam, e, seqs[:20])
        last = deliveries[(cam, epochs[-1])]
        assert len(last) >= 3, (cam, "events did not continue", last)
        kinds = {r["kind"] for r in rows if r["camera"] == cam}
        assert "line_crossed" in kinds or "track_started" in kinds, (cam, kinds)
    for cam in moved:  # the new epoch's track ids are new
        ids = {r["track_id"] for r in rows if r["camera"] == cam and r["track_id"] is not None
               and r["data"].get("delivery", {}).get("epoch") == 1}
        assert ids and min(ids) > EPOCH_ID_STRIDE, (cam, sorted(ids)[:5])


def test_over_capacity_pending_until_a_node_joins(server, cluster, tmp_path):
    """worker2 (6 slots) is the only node left: 8 cameras leave 2 PENDING; a node joining
    with 4 slots takes them. load0 prefers a node that is not there: it runs elsewhere."""
    _stop(server)  # its 6 cameras free worker2's slots
    cfg = make_config(cameras(8, prefix="load", prefer={0: "worker3"}), data_dir=str(tmp_path))
    data = cfg.model_dump(mode="python")
    data["cluster"]["address"] = cluster.address
    from core.config import parse_config
    srv = _start(parse_config(data, "test"), cluster)
    try:
        def settled():
            st = _states(srv)
            return st if sum(s == "LIVE" for s, _ in st.values()) == 6 else None
        st = wait_for(settled, 60, 0.25)
        assert st, _states(srv)
        pending = sorted(c for c, (s, _) in st.items() if s == "PENDING")
        assert len(pending) == 2 and all(st[c][1] is None for c in pending), st
        assert st["load0"] == ("LIVE", "worker2"), st  # soft: its preferred node is absent
        info = requests.get(srv.base + "/api/cluster", timeout=5).json()
        assert sorted(info["pending"]) == pending
        ready = requests.get(srv.base + "/readyz", timeout=5)
        assert ready.status_code == 503 and sorted(ready.json()["starting"]) == pending

        cluster.add_worker(capacity=4, name="worker3")
        ok = wait_for(lambda: all(s == "LIVE" for s, _ in _states(srv).values()), 120, 0.5)
        st = _states(srv)
        assert ok, st
        assert sorted(c for c, (_, n) in st.items() if n == "worker3") == pending
    finally:
        _stop(srv)
