"""Darknet -> ONNX converter on generated cfgs and random weights, checked against cv2.dnn."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from core.digest import sha256_of
from detectors import darknet
from detectors.base import DetectorError
from detectors.darknet import DarknetError

YOLOV3_ANCHORS = "10,13, 16,30, 33,23, 30,61, 62,45, 59,119, 116,90, 156,198, 373,326"


def _conv(filters: int, size: int, stride: int = 1, bn: bool = True,
          act: str = "leaky") -> str:
    bn_line = "batch_normalize=1\n" if bn else ""
    return (f"[convolutional]\n{bn_line}filters={filters}\nsize={size}\nstride={stride}\n"
            f"pad=1\nactivation={act}\n\n")


def _yolo(mask: str, classes: int, anchors: str = YOLOV3_ANCHORS) -> str:
    return (f"[yolo]\nmask = {mask}\nanchors = {anchors}\nclasses={classes}\nnum=9\n"
            "jitter=.3\nignore_thresh = .7\ntruth_thresh = 1\nrandom=1\n\n")


def yolov3_cfg(div: int = 1, classes: int = 80, size: int = 416) -> str:
    """The standard yolov3.cfg layer structure (Darknet-53 + 3 heads, 107 layers).

    div divides every filter count (div=1 is the real network) so tests can run the same
    topology (23 shortcuts, 4 routes incl. two 2-input concats, 2 upsamples) cheaply.
    """
    f = lambda n: max(2, n // div)  # noqa: E731
    out = 3 * (5 + classes)
    s = f"[net]\nbatch=1\nsubdivisions=1\nwidth={size}\nheight={size}\nchannels=3\n\n"
    s += _conv(f(32), 3)
    for filters, blocks in ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)):
        s += _conv(f(filters), 3, 2)
        for _ in range(blocks):
            s += _conv(f(filters // 2), 1) + _conv(f(filters), 3)
            s += "[shortcut]\nfrom=-3\nactivation=linear\n\n"
    for i, (filters, mask, skip) in enumerate(((512, "6,7,8", None), (256, "3,4,5", 61),
                                                (128, "0,1,2", 36))):
        if skip is not None:
            s += "[route]\nlayers = -4\n\n" + _conv(f(filters), 1)
            s += "[upsample]\nstride=2\n\n" + f"[route]\nlayers = -1, {skip}\n\n"
        for _ in range(3):
            s += _conv(f(filters), 1) + _conv(f(filters * 2), 3)
        s += _conv(out, 1, bn=False, act="linear") + _yolo(mask, classes)
    return s


def tiny_mixed_cfg(classes: int = 2) -> str:
    """A small network exercising every supported layer kind, including yolov3-tiny's
    stride-1 maxpool, a route with groups, a 3-input route and three heads."""
    out = 3 * (5 + classes)
    return ("[net]\nwidth=64\nheight=64\nchannels=3\n\n"
            + _conv(8, 3)                                        # 0  64x64
            + "[maxpool]\nsize=2\nstride=2\n\n"                  # 1  32
            + _conv(16, 3, 2)                                    # 2  16
            + _conv(8, 1) + _conv(16, 3)                         # 3, 4
            + "[shortcut]\nfrom=-3\nactivation=linear\n\n"      # 5
            + "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n\n"     # 6  8ch
            + _conv(16, 3, act="mish")                           # 7
            + "[maxpool]\nsize=2\nstride=1\n\n"                  # 8  16 (asymmetric pad)
            + _conv(16, 3, 2)                                    # 9  8x8
            + _conv(out, 1, bn=False, act="linear")              # 10
            + _yolo("6,7,8", classes)                            # 11
            + "[route]\nlayers=-3\n\n"                           # 12 -> 9
            + _conv(8, 1)                                        # 13
            + "[upsample]\nstride=2\n\n"                         # 14 16x16
            + "[route]\nlayers=-1, 5, 8\n\n"                     # 15 8+16+16
            + _conv(16, 3)                                       # 16
            + _conv(out, 1, bn=False, act="linear")              # 17
            + _yolo("3,4,5", classes)                            # 18
            + "[route]\nlayers=16\n\n"                           # 19 (absolute index)
            + "[upsample]\nstride=2\n\n"                         # 20 32x32
            + _conv(out, 1, bn=False, act="linear")              # 21
            + _yolo("0,1,2", classes))                           # 22


def _random_weights(cfg_text: str, seed: int) -> np.ndarray:
    """Plausible random weights: He-scaled kernels and BN stats with small variances, so the
    (sqrt(var) + eps) form of the batch norm folding matters to the result."""
    _, layers = darknet.plan(darknet.parse_cfg(cfg_text, is_text=True))
    rng = np.random.default_rng(seed)
    parts = []
    for L in layers:
        if L.kind != "conv":
            continue
        p = L.params
        n = p["filters"]
        fan_in = p["in_c"] // p["groups"] * p["size"] ** 2
        parts.append(rng.normal(0, 0.1, n))                            # bias
        if p["bn"]:
            var = 10 ** rng.uniform(-5, 0, n)
            parts += [np.sqrt(var) * rng.uniform(0.5, 1.2, n),           # scale
                      rng.normal(0, 0.1, n), var]                       # mean, var
        parts.append(rng.normal(0, np.sqrt(1.0 / fan_in), n * fan_in))
    w = np.concatenate(parts).astype(np.float32)
    assert w.size == darknet.expected_weight_count(layers)
    return w


def _write_weights(path: Path, values: np.ndarray, major: int = 0, minor: int = 2) -> Path:
    seen_dtype = "<i8" if major * 10 + minor >= 2 else "<i4"
    with open(path, "wb") as f:
        f.write(np.array([major, minor, 0], "<i4").tobytes())
        f.write(np.array([12345], seen_dtype).tobytes())
        f.write(values.astype("<f4").tobytes())
    return path


def _pair(tmp_path: Path, cfg_text: str, seed: int = 0, name: str = "net",
          **kw) -> tuple[Path, Path]:
    cfg = tmp_path / f"{name}.cfg"
    cfg.write_text(cfg_text)
    weights = _write_weights(tmp_path / f"{name}.weights", _random_weights(cfg_text, seed), **kw)
    return cfg, weights


def _cv2_raw(cfg: Path, weights: Path, blob: np.ndarray, yolo_names: list[str]) -> list[np.ndarray]:
    """cv2.dnn outputs of the layer feeding each yolo layer (cv2's yolo output is decoded)."""
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    names = list(net.getLayerNames())
    feeding = [names[names.index(f"permute_{n.split('_')[1]}") - 1] for n in yolo_names]
    net.setInput(blob)
    return list(net.forward(feeding))


def _ort_raw(onnx_path: Path, blob: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(None, {darknet.INPUT_NAME: blob})


def _blob(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (size + 13, size - 7, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(noise, (5, 5), 0)
    return cv2.dnn.blobFromImage(img, 1 / 255.0, (size, size), swapRB=True, crop=False)


def test_full_yolov3_structure_and_weight_count():
    info, layers = darknet.plan(darknet.parse_cfg(yolov3_cfg(), is_text=True))
    assert info == {"width": 416, "height": 416, "channels": 3}
    kinds = [L.kind for L in layers]
    assert len(layers) == 107
    assert kinds.count("conv") == 75 and kinds.count("shortcut") == 23
    assert kinds.count("route") == 4 and kinds.count("upsample") == 2
    assert [i for i, k in enumerate(kinds) if k == "yolo"] == [82, 94, 106]
    assert [layers[i].out_shape for i in (82, 94, 106)] == [(255, 13, 13), (255, 26, 26),
                                                           (255, 52, 52)]
    assert layers[86].inputs == [85, 61] and layers[86].out_shape == (768, 26, 26)
    # the published yolov3.weights holds 62,001,757 floats after its 20-byte header
    assert darknet.expected_weight_count(layers) == 62_001_757
    assert layers[82].params["anchors"] == [[116, 90], [156, 198], [373, 326]]


@pytest.mark.parametrize("cfg_fn,size,seed", [
    (lambda: yolov3_cfg(div=16, classes=3, size=128), 128, 1),
    (lambda: tiny_mixed_cfg(), 64, 2),
    (lambda: tiny_mixed_cfg(), 96, 3),    # runtime size differs from the cfg's [net] size
])
def test_random_network_matches_cv2(tmp_path, cfg_fn, size, seed):
    cfg, weights = _pair(tmp_path, cfg_fn(), seed)
    out = darknet.convert(cfg, weights, tmp_path / "net.onnx")
    meta = darknet.read_metadata(out)
    heads = json.loads(meta["outputs"])
    assert len(heads) == 3 and meta["vigil_format"] == darknet.FORMAT_VERSION
    blob = _blob(size, seed)
    got = _ort_raw(out, blob)
    ref = _cv2_raw(cfg, weights, blob, heads)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        scale = max(1.0, float(np.abs(r).max()))
        assert float(np.abs(g - r).max()) <= 1e-3 * scale


def test_bn_epsilon_form_matches_cv2(tmp_path, monkeypatch):
    """With tiny variances the batch-norm epsilon forms differ by percents: ours matches
    cv2.dnn, Darknet-CPU's (sqrt(var) + 1e-6) does not."""
    cfg, weights = _pair(tmp_path, tiny_mixed_cfg(), 5)
    blob = _blob(64, 5)
    heads = json.loads(darknet.read_metadata(darknet.convert(cfg, weights, tmp_path / "a.onnx"))
                       ["outputs"])
    ref = _cv2_raw(cfg, weights, blob, heads)
    good = _ort_raw(tmp_path / "a.onnx", blob)

    def pjreddie_cpu(w, bias, scale, mean, var):
        f = scale / (np.sqrt(var) + 1e-6)
        return w * f[:, None, None, None], bias - mean * f

    monkeypatch.setattr(darknet, "fold_batchnorm", pjreddie_cpu)
    bad = _ort_raw(darknet.convert(cfg, weights, tmp_path / "b.onnx"), blob)
    err_good = max(float(np.abs(g - r).max()) for g, r in zip(good, ref))
    err_bad = max(float(np.abs(g - r).max()) for g, r in zip(bad, ref))
    assert err_good < 1e-4 and err_bad > 1e-3


def test_metadata_anchors_names_and_int32_seen_header(tmp_path):
    cfg, weights = _pair(tmp_path, tiny_mixed_cfg(classes=2), 7, major=0, minor=1)
    names = tmp_path / "two.names"
    names.write_text("cat\ndog\n\n")
    meta = darknet.read_metadata(darknet.convert(cfg, weights, tmp_path / "m.onnx", names))
    assert json.loads(meta["names"]) == ["cat", "dog"]
    assert json.loads(meta["anchors"])[0] == [[116, 90], [156, 198], [373, 326]]
    assert json.loads(meta["scale_x_y"]) == [1.0, 1.0, 1.0]
    assert meta["num_classes"] == "2" and meta["input_width"] == "64"
    assert json.loads(meta["darknet_header"]) == {"major": 0, "minor": 1, "revision": 0,
                                                  "seen": 12345}


def test_weight_errors_name_the_file(tmp_path):
    text = tiny_mixed_cfg()
    cfg, weights = _pair(tmp_path, text, 0, name="yolov3-tiny")
    good = weights.read_bytes()
    out = tmp_path / "x.onnx"
    assert issubclass(DarknetError, DetectorError)

    weights.write_bytes(good[:-8])
    with pytest.raises(DarknetError, match="truncated") as e:
        darknet.convert(cfg, weights, out)
    assert str(weights) in str(e.value) and "python main.py assets" in str(e.value)

    weights.write_bytes(good + b"\0" * 8)
    with pytest.raises(DarknetError, match="too long"):
        darknet.convert(cfg, weights, out)

    weights.write_bytes(b"\xff" * 64)
    with pytest.raises(DarknetError, match="corrupt"):
        darknet.convert(cfg, weights, out)

    weights.write_bytes(good[:10])
    with pytest.raises(DarknetError, match="truncated"):
        darknet.convert(cfg, weights, out)

    bad = np.frombuffer(good, np.uint8).copy()
    bad[-4:] = np.frombuffer(np.float32(np.nan).tobytes(), np.uint8)
    weights.write_bytes(bad.tobytes())
    with pytest.raises(DarknetError, match="NaN"):
        darknet.convert(cfg, weights, out)

    with pytest.raises(DarknetError, match="not found") as e:
        darknet.convert(cfg, tmp_path / "yolov3.weights", out)
    assert "yolov3.cfg" in str(e.value)     # full model: tells the user to supply it
    assert not out.exists()


def test_cfg_errors(tmp_path):
    with pytest.raises(DarknetError, match="not supported"):
        darknet.plan(darknet.parse_cfg("[net]\nwidth=32\nheight=32\n[region]\nclasses=2\n",
                                       is_text=True))
    with pytest.raises(DarknetError, match="does not exist"):
        darknet.plan(darknet.parse_cfg("[net]\n" + _conv(4, 3) + "[route]\nlayers=-5\n",
                                       is_text=True))
    with pytest.raises(DarknetError, match="channels"):
        darknet.plan(darknet.parse_cfg("[net]\n" + _conv(20, 1) + _yolo("0,1,2", 80),
                                       is_text=True))
    with pytest.raises(DarknetError, match=r"\[net\]"):
        darknet.parse_cfg(_conv(4, 3), is_text=True)
    names = tmp_path / "bad.names"
    names.write_text("a\nb\nc\n")
    cfg, weights = _pair(tmp_path, tiny_mixed_cfg(classes=2), 0)
    with pytest.raises(DarknetError, match="3 names"):
        darknet.convert(cfg, weights, tmp_path / "n.onnx", names)


def test_ensure_onnx_converts_once_and_refreshes(tmp_path):
    cfg, weights = _pair(tmp_path, tiny_mixed_cfg(), 0)
    out = darknet.ensure_onnx(cfg, weights)
    assert out == weights.with_suffix(".onnx")
    stamp = out.stat().st_mtime_ns
    assert darknet.ensure_onnx(cfg, weights) == out and out.stat().st_mtime_ns == stamp
    # same size, different content, older mtime than the onnx: the hash catches it
    _write_weights(weights, _random_weights(tiny_mixed_cfg(), 99))
    os.utime(weights, ns=(stamp - 10**9, stamp - 10**9))
    darknet.ensure_onnx(cfg, weights)
    assert out.stat().st_mtime_ns != stamp
    meta = darknet.read_metadata(out)
    assert meta["weights_sha256"] == sha256_of(weights)


def test_known_mask_fix_only_for_official_tiny_weights():
    cfg = ("[net]\nwidth=64\nheight=64\n" + _conv(255, 1, bn=False, act="linear")
           + _yolo("3,4,5", 80, "10,14, 23,27, 37,58, 81,82, 135,169, 344,319")
           + "[route]\nlayers=-2\n" + _conv(255, 1, bn=False, act="linear")
           + _yolo("0,1,2", 80, "10,14, 23,27, 37,58, 81,82, 135,169, 344,319"))
    _, layers = darknet.plan(darknet.parse_cfg(cfg, is_text=True))
    assert darknet.known_mask_fix(layers, "0" * 64) is None
    fix = darknet.known_mask_fix(layers, darknet.TINY_WEIGHTS_SHA256)
    assert fix == [[3, 4, 5], [1, 2, 3]]
    darknet.apply_masks(layers, fix)
    heads = [L for L in layers if L.kind == "yolo"]
    assert heads[1].params["anchors"] == [[23, 27], [37, 58], [81, 82]]
    assert darknet.known_mask_fix(layers, darknet.TINY_WEIGHTS_SHA256) is None  # now correct
    with pytest.raises(DarknetError):
        darknet.apply_masks(layers, [[0, 1, 2]])


def _random_detector(tmp_path: Path, **kw):
    from detectors.yolo import YoloDetector

    cfg, weights = _pair(tmp_path, tiny_mixed_cfg(classes=2), 11)
    names = tmp_path / "two.names"
    names.write_text("cat\ndog\n")
    return YoloDetector(model=weights, cfg=cfg, names=names, input_size=128, providers="cpu",
                        **kw)


def test_yolo_decode_places_a_crafted_box(tmp_path):
    det = _random_detector(tmp_path, conf_threshold=0.5)
    assert det.class_names == ["cat", "dog"] and det.provider == "CPUExecutionProvider"
    outs = [np.full((1, 3 * 7, g, g), -20.0, np.float32) for g in (4, 8, 16)]
    cell = outs[0][0].reshape(3, 7, 4, 4)
    cell[1, 0:4, 2, 1] = 0.0         # anchor 1, row 2, col 1: centre of the cell, anchor size
    cell[1, 4, 2, 1] = 20.0          # objectness
    cell[1, 6, 2, 1] = 20.0          # class 1 ("dog")
    xyxy, score, cls = det.decode(outs, 128, 128)
    aw, ah = det.anchors[0][1]
    cx, cy = (0.5 + 1) / 4 * 128, (0.5 + 2) / 4 * 128
    np.testing.assert_allclose(xyxy, [[cx - aw / 2, cy - ah / 2, cx + aw / 2, cy + ah / 2]],
                               atol=1e-3)
    assert cls.tolist() == [1] and score[0] > 0.99
    # the same raw outputs through postprocess map back to a 256x256 image (scale 0.5)
    from detectors.yolo import _Transform
    got = det.postprocess(outs, _Transform(0.5, 0.5, 0, 0, 256, 256), seq=7, ts=1.5)
    assert got.frame_seq == 7 and got.ts == 1.5 and list(got.label) == ["dog"]
    np.testing.assert_allclose(got.xyxy, np.clip(xyxy * 2, 0, 256), atol=1e-3)


def test_yolo_detect_never_raises_on_odd_input(tmp_path):
    from core.types import Frame

    det = _random_detector(tmp_path, conf_threshold=0.0, max_det=50)
    rng = np.random.default_rng(0)
    odd = [np.zeros((0, 0, 3), np.uint8), np.zeros((1, 1, 3), np.uint8),
           np.full((2, 900), 7, np.uint8), rng.integers(0, 255, (300, 200, 3), np.uint8)[::2, ::3],
           rng.random((33, 47, 1)) * 255, np.zeros((20, 20, 4), np.uint8), None, "frame"]
    for img in odd:
        out = det.detect(img)
        assert len(out) <= 50 and np.all(np.isfinite(out.xyxy))
    f = Frame(rng.integers(0, 255, (90, 160, 3), np.uint8), seq=3, ts=2.0)
    out = det.detect(f)
    assert out.frame_seq == 3 and out.ts == 2.0 and len(out) > 0
    assert np.all(out.xyxy[:, 2] <= 160) and np.all(out.xyxy[:, 3] <= 90)
    assert np.all(out.xyxy >= 0)


def test_yolo_rejects_bad_parameters(tmp_path):
    from detectors.yolo import YoloDetector

    for kw in ({"input_size": 100}, {"input_size": 1312}, {"conf_threshold": 1.5},
               {"nms_iou": -0.1}, {"intra_op_threads": 65}, {"providers": "tpu"},
               {"max_det": 0}):
        with pytest.raises(DetectorError, match=next(iter(kw))):
            YoloDetector(model=tmp_path / "absent.onnx", **kw)
    with pytest.raises(DetectorError, match="unknown classes"):
        _random_detector(tmp_path, classes=["unicorn"])
    with pytest.raises(DetectorError, match="not found"):
        YoloDetector(model=tmp_path / "absent.onnx")
