"""Darknet cfg + weights -> ONNX, with numpy and onnx.helper only.

Supported sections: [net], [convolutional] (batch_normalize folded into the conv,
groups, activations leaky/linear/relu/logistic/mish/swish), [maxpool] (Darknet's
asymmetric padding: size-1 in total, the extra pixel on the right/bottom), [upsample]
(nearest), [route] (layers, groups/group_id), [shortcut] (add), [yolo] and [dropout]
(identity at inference). Anything else raises DarknetError naming the section and line.

The graph stops at the raw conv output feeding each [yolo] layer: one output per head,
(N, A*(5+C), H, W), so it can be compared bit-for-bit-ish with cv2.dnn. Decoding (sigmoid,
exp, anchors) is done by detectors/yolo.py from the anchors stored in the model metadata.

Batch norm is folded into each conv as  y = scale * (x - mean) / sqrt(var + 1e-6) + bias,
the form cv2.dnn's Darknet importer uses (measured: exact to 6e-8 on random weights). The
Darknet implementations disagree with each other here: pjreddie's CPU path divides by
sqrt(var) + 1e-6, its cuDNN path and AlexeyAB's by sqrt(var + 1e-5). With trained weights
(variances far above 1e-5) all forms agree to ~1e-4; tests/unit/test_darknet.py shows that with
tiny variances only the cv2 form matches cv2.dnn.
"""
from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.digest import sha256_of
from detectors.base import DetectorError

log = logging.getLogger("vigil.detectors.darknet")

__all__ = [
    "DarknetError", "Section", "parse_cfg", "plan", "expected_weight_count", "read_weights",
    "convert", "fold_batchnorm", "known_mask_fix", "apply_masks", "TINY_WEIGHTS_SHA256",
    "ensure_onnx", "ensure_tiny_onnx", "read_metadata", "cfg_text_with_masks",
    "FORMAT_VERSION", "BN_EPS", "INPUT_NAME",
]

FORMAT_VERSION = "1"
BN_EPS = 1e-6          # y = (x - mean) / sqrt(var + BN_EPS), as cv2.dnn folds it
LEAKY_SLOPE = 0.1
INPUT_NAME = "images"  # (N, C, H, W) float32, RGB in [0, 1]
OPSET = 17
TINY_URL = "https://pjreddie.com/media/files/yolov3-tiny.weights"
# sha256 of pjreddie's official COCO yolov3-tiny.weights. Those weights were trained with
# mask = 1,2,3 on the stride-16 head (pjreddie/darknet#851), but most copies of
# yolov3-tiny.cfg say 0,1,2: decoded with the smaller anchors every box of that head comes
# out about half size (person recall on PETS09-S2L1 at IoU 0.3: 0.05 instead of 0.95).
TINY_WEIGHTS_SHA256 = "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c"
TINY_TRAINED_MASKS = [[3, 4, 5], [1, 2, 3]]


class DarknetError(DetectorError):
    """A Darknet cfg/weights pair could not be read or converted."""


def how_to_get(path: Path) -> str:
    """One sentence telling the user how to obtain a missing/corrupt model file."""
    name = Path(path).name
    if name.startswith("yolov3-tiny") or name == "coco.names":
        return ("run `python main.py assets` to fetch and convert the YOLOv3-tiny files "
                f"(weights: {TINY_URL})")
    return ("supply the matching Darknet .cfg and .weights by path (for full YOLOv3: "
            "yolov3.cfg and yolov3.weights from https://pjreddie.com/darknet/yolo/, "
            "then set detectors.yolo.cfg and detectors.yolo.model to them)")


# --------------------------------------------------------------------------- cfg parsing

@dataclass
class Section:
    type: str
    options: dict[str, str]
    line: int

    def get_int(self, key: str, default: int | None = None) -> int:
        if key not in self.options:
            if default is None:
                raise DarknetError(f"[{self.type}] at line {self.line}: missing '{key}'")
            return default
        try:
            return int(float(self.options[key]))
        except ValueError:
            raise DarknetError(f"[{self.type}] at line {self.line}: '{key}' is not a number: "
                               f"{self.options[key]!r}") from None

    def get_float(self, key: str, default: float) -> float:
        try:
            return float(self.options.get(key, default))
        except ValueError:
            raise DarknetError(f"[{self.type}] at line {self.line}: '{key}' is not a number: "
                               f"{self.options[key]!r}") from None

    def get_ints(self, key: str, default: list[int] | None = None) -> list[int]:
        raw = self.options.get(key)
        if raw is None or not raw.strip():
            if default is None:
                raise DarknetError(f"[{self.type}] at line {self.line}: missing '{key}'")
            return list(default)
        try:
            return [int(float(v)) for v in raw.split(",") if v.strip()]
        except ValueError:
            raise DarknetError(f"[{self.type}] at line {self.line}: '{key}' must be a list "
                               f"of integers, got {raw!r}") from None


_ALIASES = {"conv": "convolutional", "max": "maxpool", "network": "net"}


def parse_cfg(source: str | Path, *, is_text: bool = False) -> list[Section]:
    """Parse a Darknet cfg file (or its text) into sections, keeping line numbers."""
    if is_text:
        text, where = str(source), "<cfg text>"
    else:
        p = Path(source)
        if not p.is_file():
            raise DarknetError(f"Darknet cfg file not found: {p}; {how_to_get(p)}")
        text, where = p.read_text(encoding="utf-8", errors="replace"), str(p)
    sections: list[Section] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = re.split(r"[#;]", raw, maxsplit=1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise DarknetError(f"{where}:{lineno}: malformed section header {raw!r}")
            name = line[1:-1].strip().lower()
            sections.append(Section(_ALIASES.get(name, name), {}, lineno))
            continue
        if "=" not in line or not sections:
            raise DarknetError(f"{where}:{lineno}: expected key=value inside a section, "
                               f"got {raw!r}")
        key, val = line.split("=", 1)
        sections[-1].options[key.strip()] = val.strip()
    if not sections or sections[0].type != "net":
        raise DarknetError(f"{where}: a Darknet cfg must start with a [net] section")
    return sections


# --------------------------------------------------------------------------- planning

@dataclass
class Layer:
    """One Darknet layer with its resolved shape (at the cfg's nominal input size)."""

    index: int
    kind: str
    section: Section
    out_shape: tuple[int, int, int]                 # C, H, W
    inputs: list[int] = field(default_factory=list)  # absolute layer indices (-1 = image)
    params: dict[str, Any] = field(default_factory=dict)
    n_weights: int = 0


_ACTIVATIONS = {"leaky", "linear", "relu", "logistic", "mish", "swish"}


def plan(sections: list[Section]) -> tuple[dict[str, int], list[Layer]]:
    """Resolve every layer's inputs, output shape and weight count (no weights needed)."""
    net = sections[0]
    width, height = net.get_int("width", 416), net.get_int("height", 416)
    channels = net.get_int("channels", 3)
    if width <= 0 or height <= 0 or channels <= 0:
        raise DarknetError(f"[net] width/height/channels must be positive, got "
                           f"{width}x{height}x{channels}")
    info = {"width": width, "height": height, "channels": channels}
    layers: list[Layer] = []

    def shape_of(i: int) -> tuple[int, int, int]:
        return (channels, height, width) if i < 0 else layers[i].out_shape

    def resolve(sec: Section, idx: int, rel: int) -> int:
        j = idx + rel if rel < 0 else rel
        if not 0 <= j < idx:
            raise DarknetError(f"[{sec.type}] at line {sec.line} (layer {idx}) refers to layer "
                               f"{rel}, which does not exist before it")
        return j

    for sec in sections[1:]:
        i = len(layers)
        prev = i - 1
        c, h, w = shape_of(prev)
        if sec.type == "convolutional":
            n = sec.get_int("filters", 1)
            k = sec.get_int("size", 1)
            s = sec.get_int("stride", 1)
            pad = sec.get_int("padding", 0)
            if sec.get_int("pad", 0):
                pad = k // 2
            groups = sec.get_int("groups", 1)
            bn = bool(sec.get_int("batch_normalize", 0))
            act = sec.options.get("activation", "logistic").strip().lower()
            if act not in _ACTIVATIONS:
                raise DarknetError(f"[convolutional] at line {sec.line}: activation {act!r} "
                                   f"is not supported (supported: {sorted(_ACTIVATIONS)})")
            if any(key in sec.options for key in ("stride_x", "stride_y", "dilation",
                                                  "binary", "xnor", "deform")):
                bad = [key for key in ("stride_x", "stride_y", "dilation", "binary", "xnor",
                                       "deform") if key in sec.options]
                raise DarknetError(f"[convolutional] at line {sec.line}: options {bad} are "
                                   "not supported")
            if n <= 0 or k <= 0 or s <= 0 or groups <= 0 or c % groups or n % groups:
                raise DarknetError(f"[convolutional] at line {sec.line}: invalid filters={n} "
                                   f"size={k} stride={s} groups={groups} for {c} input channels")
            oh, ow = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
            nw = n * (c // groups) * k * k + n * (4 if bn else 1)
            layers.append(Layer(i, "conv", sec, (n, oh, ow), [prev],
                                dict(filters=n, size=k, stride=s, pad=pad, groups=groups,
                                     bn=bn, act=act, in_c=c), nw))
        elif sec.type == "maxpool":
            k = sec.get_int("size", 1)
            s = sec.get_int("stride", k)
            pad = sec.get_int("padding", k - 1)
            if any(key in sec.options for key in ("stride_x", "stride_y", "maxpool_depth")):
                raise DarknetError(f"[maxpool] at line {sec.line}: stride_x/stride_y/"
                                   "maxpool_depth are not supported")
            if k <= 0 or s <= 0 or pad < 0:
                raise DarknetError(f"[maxpool] at line {sec.line}: invalid size={k} "
                                   f"stride={s} padding={pad}")
            oh, ow = (h + pad - k) // s + 1, (w + pad - k) // s + 1
            layers.append(Layer(i, "maxpool", sec, (c, oh, ow), [prev],
                                dict(size=k, stride=s, pad=pad)))
        elif sec.type == "upsample":
            s = sec.get_int("stride", 2)
            if s < 1:
                raise DarknetError(f"[upsample] at line {sec.line}: stride {s} "
                                   "(downsampling) is not supported")
            scale = sec.get_float("scale", 1.0)
            layers.append(Layer(i, "upsample", sec, (c, h * s, w * s), [prev],
                                dict(stride=s, scale=scale)))
        elif sec.type == "route":
            srcs = [resolve(sec, i, r) for r in sec.get_ints("layers")]
            groups = sec.get_int("groups", 1)
            gid = sec.get_int("group_id", 0)
            if groups < 1 or not 0 <= gid < groups:
                raise DarknetError(f"[route] at line {sec.line}: invalid groups={groups} "
                                   f"group_id={gid}")
            shapes = [shape_of(j) for j in srcs]
            if len({(sh[1], sh[2]) for sh in shapes}) != 1:
                raise DarknetError(f"[route] at line {sec.line}: layers {srcs} have different "
                                   f"spatial sizes {shapes}")
            if any(sh[0] % groups for sh in shapes):
                raise DarknetError(f"[route] at line {sec.line}: channels {shapes} not "
                                   f"divisible by groups={groups}")
            oc = sum(sh[0] // groups for sh in shapes)
            layers.append(Layer(i, "route", sec, (oc, shapes[0][1], shapes[0][2]), srcs,
                                dict(groups=groups, group_id=gid)))
        elif sec.type == "shortcut":
            froms = sec.get_ints("from")
            if len(froms) != 1:
                raise DarknetError(f"[shortcut] at line {sec.line}: only one 'from' layer is "
                                   "supported")
            if sec.options.get("weights_type", "none").strip() != "none":
                raise DarknetError(f"[shortcut] at line {sec.line}: weighted shortcuts are "
                                   "not supported")
            j = resolve(sec, i, froms[0])
            if shape_of(j) != (c, h, w):
                raise DarknetError(f"[shortcut] at line {sec.line}: shapes differ "
                                   f"({shape_of(j)} vs {(c, h, w)}); not supported")
            act = sec.options.get("activation", "linear").strip().lower()
            if act not in _ACTIVATIONS:
                raise DarknetError(f"[shortcut] at line {sec.line}: activation {act!r} is not "
                                   "supported")
            layers.append(Layer(i, "shortcut", sec, (c, h, w), [prev, j], dict(act=act)))
        elif sec.type == "yolo":
            anchors_flat = [float(v) for v in sec.options.get("anchors", "").split(",")
                            if v.strip()]
            if not anchors_flat or len(anchors_flat) % 2:
                raise DarknetError(f"[yolo] at line {sec.line}: 'anchors' must be pairs of "
                                   "numbers")
            anchors = np.asarray(anchors_flat, dtype=np.float64).reshape(-1, 2)
            num = sec.get_int("num", len(anchors))
            mask = sec.get_ints("mask", list(range(num)))
            if any(not 0 <= m < len(anchors) for m in mask):
                raise DarknetError(f"[yolo] at line {sec.line}: mask {mask} indexes outside "
                                   f"the {len(anchors)} anchors")
            classes = sec.get_int("classes", 20)
            if c != len(mask) * (5 + classes):
                raise DarknetError(f"[yolo] at line {sec.line}: input has {c} channels but "
                                   f"mask ({len(mask)} anchors) x (5 + {classes} classes) "
                                   f"= {len(mask) * (5 + classes)}")
            if sec.get_int("new_coords", 0):
                raise DarknetError(f"[yolo] at line {sec.line}: new_coords=1 (scaled-YOLOv4) "
                                   "is not supported")
            layers.append(Layer(i, "yolo", sec, (c, h, w), [prev],
                                dict(anchors=anchors[mask].tolist(), classes=classes,
                                     mask=mask, all_anchors=anchors.tolist(),
                                     scale_x_y=sec.get_float("scale_x_y", 1.0))))
        elif sec.type == "dropout":
            layers.append(Layer(i, "identity", sec, (c, h, w), [prev]))
        else:
            raise DarknetError(f"[{sec.type}] at line {sec.line}: layer type not supported "
                               "by Vigil's converter")
        if min(layers[-1].out_shape) <= 0:
            raise DarknetError(f"[{sec.type}] at line {sec.line}: output shape "
                               f"{layers[-1].out_shape} is empty at input {width}x{height}")
    if not any(L.kind == "yolo" for L in layers):
        raise DarknetError("the cfg has no [yolo] layer; only YOLO (v3-style) heads are supported")
    return info, layers


def expected_weight_count(layers: list[Layer]) -> int:
    return int(sum(L.n_weights for L in layers))


def known_mask_fix(layers: list[Layer], weights_sha256: str) -> list[list[int]] | None:
    """The yolo masks the weights were really trained with, when they differ from the cfg.

    Only one case is known: the official yolov3-tiny.weights (matched by sha256) with a cfg
    whose heads say [3,4,5], [0,1,2]. Returns None when the cfg can be used as written.
    """
    heads = [L for L in layers if L.kind == "yolo"]
    if weights_sha256 != TINY_WEIGHTS_SHA256:
        return None
    if [L.params["mask"] for L in heads] == [[3, 4, 5], [0, 1, 2]]:
        return TINY_TRAINED_MASKS
    return None


def apply_masks(layers: list[Layer], masks: list[list[int]]) -> None:
    """Replace the masks (and so the anchors) of the yolo heads, in order."""
    heads = [L for L in layers if L.kind == "yolo"]
    if len(masks) != len(heads):
        raise DarknetError(f"{len(masks)} masks given for {len(heads)} yolo heads")
    for L, mask in zip(heads, masks):
        if len(mask) != len(L.params["mask"]):
            raise DarknetError(f"mask {mask} has {len(mask)} anchors, the head has "
                               f"{len(L.params['mask'])}")
        L.params["mask"] = list(mask)
        L.params["anchors"] = [L.params["all_anchors"][m] for m in mask]


# --------------------------------------------------------------------------- weights

def read_weights(path: Path, expected: int) -> tuple[dict[str, int], np.ndarray]:
    """Read a .weights file: header then exactly `expected` float32 values.

    Header: int32 major, minor, revision, then `seen` as int64 when major*10+minor >= 2
    (and both < 1000, as Darknet checks), else int32.
    """
    p = Path(path)
    if not p.is_file():
        raise DarknetError(f"Darknet weights file not found: {p}; {how_to_get(p)}")
    data = p.read_bytes()
    if len(data) < 16:
        raise DarknetError(f"Darknet weights file {p} is truncated ({len(data)} bytes, no "
                           f"header); {how_to_get(p)}")
    major, minor, revision = (int(v) for v in np.frombuffer(data, "<i4", 3))
    if not (0 <= major < 1000 and 0 <= minor < 1000 and revision >= 0):
        raise DarknetError(f"Darknet weights file {p} is corrupt (header version "
                           f"{major}.{minor}.{revision}); {how_to_get(p)}")
    wide = major * 10 + minor >= 2
    off = 12 + (8 if wide else 4)
    seen = int(np.frombuffer(data, "<i8" if wide else "<i4", 1, 12)[0])
    body = len(data) - off
    have = body // 4
    if body % 4 or have != expected:
        state = "truncated" if have < expected else "too long"
        raise DarknetError(
            f"Darknet weights file {p} is {state}: it holds {have} float32 values "
            f"({body} bytes after the header) but the cfg needs exactly {expected}; the file is "
            f"incomplete or does not belong to this cfg; {how_to_get(p)}")
    values = np.frombuffer(data, "<f4", expected, off)
    if not np.all(np.isfinite(values)):
        raise DarknetError(f"Darknet weights file {p} is corrupt (contains NaN/inf values); "
                           f"{how_to_get(p)}")
    return {"major": major, "minor": minor, "revision": revision, "seen": seen}, values


# --------------------------------------------------------------------------- graph

class _Graph:
    def __init__(self) -> None:
        from onnx import helper  # local import: no heavy import at module import time
        self.h = helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []

    def const(self, name: str, arr: np.ndarray) -> str:
        from onnx import numpy_helper
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, op: str, inputs: list[str], out: str, **attrs: Any) -> str:
        self.nodes.append(self.h.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def activation(self, x: str, act: str, name: str) -> str:
        if act == "linear":
            return x
        if act == "leaky":
            return self.node("LeakyRelu", [x], f"{name}_leaky", alpha=LEAKY_SLOPE)
        if act == "relu":
            return self.node("Relu", [x], f"{name}_relu")
        if act == "logistic":
            return self.node("Sigmoid", [x], f"{name}_sigmoid")
        if act == "swish":
            sig = self.node("Sigmoid", [x], f"{name}_swish_sig")
            return self.node("Mul", [x, sig], f"{name}_swish")
        if act == "mish":
            sp = self.node("Softplus", [x], f"{name}_mish_sp")
            th = self.node("Tanh", [sp], f"{name}_mish_tanh")
            return self.node("Mul", [x, th], f"{name}_mish")
        raise DarknetError(f"activation {act!r} not supported")  # plan() already checked


def _read_names(path: Path | None, classes: int) -> list[str]:
    if path is None:
        return [str(i) for i in range(classes)]
    p = Path(path)
    if not p.is_file():
        raise DarknetError(f"class names file not found: {p}; {how_to_get(p)}")
    names = [ln.strip() for ln in p.read_text(encoding="utf-8", errors="replace").splitlines()]
    names = [n for n in names if n]
    if len(names) != classes:
        raise DarknetError(f"class names file {p} has {len(names)} names but the cfg's [yolo] "
                           f"layers have {classes} classes")
    return names


def fold_batchnorm(w: np.ndarray, bias: np.ndarray, scale: np.ndarray, mean: np.ndarray,
                   var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fold inference batch norm into conv weights (n,c,k,k) and bias (n,), in float64."""
    f = scale / np.sqrt(np.clip(var, 0, None) + BN_EPS)
    return w * f[:, None, None, None], bias - mean * f


def build_model(info: dict[str, int], layers: list[Layer], weights: np.ndarray,
                metadata: dict[str, str]) -> Any:
    """Build the ONNX ModelProto from planned layers and the flat weight vector."""
    import onnx
    from onnx import TensorProto, helper

    g = _Graph()
    outs: list[str] = []           # tensor name per layer
    heads: list[Layer] = []
    pos = 0

    def take(n: int) -> np.ndarray:
        nonlocal pos
        arr = weights[pos:pos + n].astype(np.float64)
        pos += n
        return arr

    def src(j: int) -> str:
        return INPUT_NAME if j < 0 else outs[j]

    for L in layers:
        name = f"l{L.index:03d}_{L.kind}"
        p = L.params
        x = src(L.inputs[0])
        if L.kind == "conv":
            n, k = p["filters"], p["size"]
            bias = take(n)
            if p["bn"]:
                scale, mean, var = take(n), take(n), take(n)
            w = take(n * (p["in_c"] // p["groups"]) * k * k).reshape(n, p["in_c"] // p["groups"],
                                                                      k, k)
            if p["bn"]:
                w, bias = fold_batchnorm(w, bias, scale, mean, var)
            wn = g.const(f"{name}_W", w.astype(np.float32))
            bn_ = g.const(f"{name}_B", bias.astype(np.float32))
            pd = p["pad"]
            y = g.node("Conv", [x, wn, bn_], name, kernel_shape=[k, k],
                       strides=[p["stride"]] * 2, pads=[pd, pd, pd, pd], group=p["groups"])
            outs.append(g.activation(y, p["act"], name))
        elif L.kind == "maxpool":
            pd = p["pad"]
            lo, hi = pd // 2, pd - pd // 2   # darknet: offset -pad/2, the rest right/bottom
            if p["size"] == 1 and p["stride"] == 1 and pd == 0:
                outs.append(x)
            else:
                outs.append(g.node("MaxPool", [x], name, kernel_shape=[p["size"]] * 2,
                                   strides=[p["stride"]] * 2, pads=[lo, lo, hi, hi]))
        elif L.kind == "upsample":
            s = float(p["stride"])
            scales = g.const(f"{name}_scales", np.array([1, 1, s, s], np.float32))
            y = g.node("Resize", [x, "", scales], name, mode="nearest",
                       coordinate_transformation_mode="asymmetric", nearest_mode="floor")
            if p["scale"] != 1.0:
                sc = g.const(f"{name}_mul", np.array(p["scale"], np.float32))
                y = g.node("Mul", [y, sc], f"{name}_scaled")
            outs.append(y)
        elif L.kind == "route":
            parts = []
            groups, gid = p["groups"], p["group_id"]
            for j in L.inputs:
                t = src(j)
                if groups > 1:
                    cj = layers[j].out_shape[0] // groups
                    starts = g.const(f"{name}_s{j}", np.array([gid * cj], np.int64))
                    ends = g.const(f"{name}_e{j}", np.array([(gid + 1) * cj], np.int64))
                    axes = g.const(f"{name}_a{j}", np.array([1], np.int64))
                    t = g.node("Slice", [t, starts, ends, axes], f"{name}_slice{j}")
                parts.append(t)
            outs.append(parts[0] if len(parts) == 1 else
                        g.node("Concat", parts, name, axis=1))
        elif L.kind == "shortcut":
            y = g.node("Add", [x, src(L.inputs[1])], name)
            outs.append(g.activation(y, p["act"], name))
        elif L.kind in ("yolo", "identity"):
            outs.append(x)
            if L.kind == "yolo":
                heads.append(L)
        else:  # pragma: no cover - plan() rejects unknown kinds
            raise DarknetError(f"internal: unknown layer kind {L.kind}")
    if pos != weights.size:  # pragma: no cover - read_weights() checked the count
        raise DarknetError(f"internal: used {pos} of {weights.size} weights")

    out_names = []
    for L in heads:
        oname = f"yolo_{L.index}"
        g.node("Identity", [outs[L.index]], oname)
        out_names.append(oname)

    c = info["channels"]
    inp = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                        ["batch", c, "height", "width"])
    outputs = [helper.make_tensor_value_info(
        o, TensorProto.FLOAT, ["batch", L.out_shape[0], f"{o}_h", f"{o}_w"])
        for o, L in zip(out_names, heads)]
    graph = helper.make_graph(g.nodes, "vigil_darknet", [inp], outputs, initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="vigil.detectors.darknet",
                              producer_version=FORMAT_VERSION)
    model.ir_version = 8
    meta = dict(metadata)
    meta.update({
        "vigil_format": FORMAT_VERSION,
        "input_name": INPUT_NAME,
        "input_width": str(info["width"]),
        "input_height": str(info["height"]),
        "input_channels": str(c),
        "input_format": "NCHW float32 RGB scaled to [0,1]",
        "outputs": json.dumps(out_names),
        "anchors": json.dumps([L.params["anchors"] for L in heads]),
        "masks": json.dumps([L.params["mask"] for L in heads]),
        "scale_x_y": json.dumps([L.params["scale_x_y"] for L in heads]),
        "num_classes": str(heads[0].params["classes"]),
    })
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    return model


def convert(cfg_path: str | Path, weights_path: str | Path, out_path: str | Path,
            names_path: str | Path | None = None, fix_known_masks: bool = True) -> Path:
    """Convert a Darknet cfg + weights pair into an ONNX file (written atomically).

    Raises DarknetError naming the file (and how to get it) when the cfg, weights or names
    are missing, truncated, corrupt or do not match each other. With fix_known_masks, the
    official yolov3-tiny weights get the yolo masks they were trained with (see
    known_mask_fix); the metadata records it under "mask_fix".
    """
    cfg_path, weights_path, out_path = Path(cfg_path), Path(weights_path), Path(out_path)
    sections = parse_cfg(cfg_path)
    info, layers = plan(sections)
    header, weights = read_weights(weights_path, expected_weight_count(layers))
    weights_sha = sha256_of(weights_path)
    fix = known_mask_fix(layers, weights_sha) if fix_known_masks else None
    if fix:
        log.warning("%s: the official yolov3-tiny weights were trained with yolo masks %s, "
                    "not the cfg's %s; using %s", cfg_path, fix,
                    [L.params["mask"] for L in layers if L.kind == "yolo"], fix)
        apply_masks(layers, fix)
    classes = {L.params["classes"] for L in layers if L.kind == "yolo"}
    if len(classes) != 1:
        raise DarknetError(f"{cfg_path}: [yolo] layers disagree on the class count {classes}")
    names = _read_names(Path(names_path) if names_path else None, classes.pop())
    meta = {
        "names": json.dumps(names),
        "cfg_file": cfg_path.name,
        "weights_file": weights_path.name,
        "cfg_sha256": sha256_of(cfg_path),
        "weights_sha256": weights_sha,
        "mask_fix": json.dumps(fix) if fix else "",
        "names_sha256": sha256_of(Path(names_path)) if names_path else "",
        "darknet_header": json.dumps(header),
        "bn_eps": repr(BN_EPS),
    }
    model = build_model(info, layers, weights, meta)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out_path.name + ".", suffix=".tmp", dir=out_path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, out_path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    log.info("converted %s + %s -> %s (%d layers, %d yolo heads, %d weights)", cfg_path.name,
             weights_path.name, out_path, len(layers),
             sum(L.kind == "yolo" for L in layers), weights.size)
    return out_path


def cfg_text_with_masks(cfg_path: str | Path, masks: list[list[int]]) -> str:
    """The cfg's text with the yolo heads' `mask =` lines replaced, in order (to give
    cv2.dnn the same masks the converter used)."""
    text = Path(cfg_path).read_text(encoding="utf-8", errors="replace")
    it = iter(masks)
    out = re.sub(r"(?m)^(\s*mask\s*=).*$",
                 lambda m: m.group(1) + " " + ",".join(str(v) for v in next(it)), text)
    if next(it, None) is not None:
        raise DarknetError(f"{cfg_path}: fewer mask lines than the {len(masks)} masks given")
    return out


def read_metadata(onnx_path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file as a dict (weights are not loaded)."""
    import onnx

    p = Path(onnx_path)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises many kinds
        raise DarknetError(f"ONNX model {p} cannot be read ({exc}); delete it to have it "
                           "converted again") from exc
    return {prop.key: prop.value for prop in model.metadata_props}


def _is_fresh(out: Path, cfg: Path, weights: Path, names: Path | None) -> bool:
    if not out.is_file():
        return False
    inputs = [cfg, weights] + ([names] if names else [])
    if any(out.stat().st_mtime < p.stat().st_mtime for p in inputs):
        return False
    try:
        meta = read_metadata(out)
    except DarknetError:
        return False
    return (meta.get("vigil_format") == FORMAT_VERSION and "masks" in meta
            and meta.get("weights_sha256") == sha256_of(weights)
            and meta.get("cfg_sha256") == sha256_of(cfg)
            and meta.get("names_sha256", "") == (sha256_of(names) if names else ""))


def ensure_onnx(cfg_path: str | Path, weights_path: str | Path, out_path: str | Path | None = None,
                names_path: str | Path | None = None) -> Path:
    """Convert once and reuse: returns out_path (default: beside the weights, .onnx),
    converting only when it is missing, older than an input or built from other inputs.
    Falls back to a per-user temp cache folder when the weights' folder is read-only and
    no out_path was asked for."""
    cfg, weights = Path(cfg_path), Path(weights_path)
    names = Path(names_path) if names_path else None
    for p in (cfg, weights) + ((names,) if names else ()):
        if not p.is_file():
            raise DarknetError(f"model file not found: {p}; {how_to_get(p)}")
    out = Path(out_path) if out_path else weights.with_suffix(".onnx")
    if _is_fresh(out, cfg, weights, names):
        return out
    try:
        return convert(cfg, weights, out, names)
    except OSError:  # read-only folder (EACCES, EROFS...)
        if out_path is not None:
            raise
        alt = Path(tempfile.gettempdir()) / f"vigil-models-{os.getuid()}" / out.name
        if _is_fresh(alt, cfg, weights, names):
            return alt
        log.warning("%s is not writable; caching the converted model at %s", out.parent, alt)
        return convert(cfg, weights, alt, names)


def ensure_tiny_onnx(models_dir: Path) -> Path:
    """models/yolov3-tiny.{cfg,weights} + coco.names -> models/yolov3-tiny.onnx (once)."""
    d = Path(models_dir)
    return ensure_onnx(d / "yolov3-tiny.cfg", d / "yolov3-tiny.weights", d / "yolov3-tiny.onnx",
                       d / "coco.names")


def tiny_onnx_status(models_dir: Path) -> str:
    """"ok" when models/yolov3-tiny.onnx is readable and was converted, by this converter's
    format, from exactly the Darknet files beside it; else "missing", "unreadable" or "stale"."""
    d = Path(models_dir)
    out = d / "yolov3-tiny.onnx"
    if not out.is_file():
        return "missing"
    try:
        read_metadata(out)
    except DarknetError:
        return "unreadable"
    inputs = [d / "yolov3-tiny.cfg", d / "yolov3-tiny.weights", d / "coco.names"]
    if not all(p.is_file() for p in inputs) or not _is_fresh(out, *inputs):
        return "stale"
    return "ok"
