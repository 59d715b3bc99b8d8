"""Detector speed on real frames: YOLOv3-tiny on ONNX Runtime vs cv2.dnn (same run), every
other registered detector, and Tesseract line OCR (tesserocr vs pytesseract when present).

    python main.py bench detectors --json [--frames 30] [--threads 1 2]

Frames are vtest.avi (PETS09 S2L1, 768x576) at native size, spread over the clip (the
slower non-YOLO detectors use a subset of --other-frames of them). Every
figure is the median ms per frame over the frames (after 2 warm-up calls) with
cv2.setNumThreads(t) and ORT intra_op_num_threads=t. Top-level keys are for the first
thread count; "by_threads" holds all. yolo_ratio = yolo_ort_ms / yolo_cv2_ms (goal <= 1).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from bench.common import machine as common_machine

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("VIGIL_SHARED_DATA", ROOT.parent / "shared" / "data"))
MODELS = Path(os.environ.get("VIGIL_MODELS", ROOT / "models"))
VIDEO = SHARED / "video" / "opencv" / "vtest.avi"
TEXT_IMAGE = SHARED / "images" / "text" / "imageTextN.png"
WARMUP = 2


def machine() -> dict[str, Any]:
    """The shared machine description (bench/common.py)."""
    return common_machine()


def load_frames(path: Path, n: int) -> list[np.ndarray]:
    """n frames spread evenly over the clip, decoded sequentially (seeking is not exact)."""
    cap = cv2.VideoCapture(str(path))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or n
    want = set(np.linspace(0, max(total - 1, 0), n).astype(int).tolist())
    out: list[np.ndarray] = []
    i = 0
    try:
        while len(out) < len(want) and cap.grab():
            if i in want:
                ok, img = cap.retrieve()
                if ok:
                    out.append(img)
            i += 1
    finally:
        cap.release()
    return out


def time_per_item(fn: Callable[[Any], Any], items: list[Any]) -> dict[str, float]:
    for item in items[:WARMUP]:
        fn(item)
    ts = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        ts.append((time.perf_counter() - t0) * 1000.0)
    arr = np.asarray(ts)
    return {"median": round(float(np.median(arr)), 3),
            "p90": round(float(np.percentile(arr, 90)), 3)}


def time_pair(fa: Callable[[Any], Any], fb: Callable[[Any], Any],
              items: list[Any]) -> tuple[dict[str, float], dict[str, float]]:
    """Time two implementations interleaved item by item (alternating which goes first), so
    load from other processes on a shared machine hits both alike."""
    for item in items[:WARMUP]:
        fa(item)
        fb(item)
    ta, tb = [], []
    for k, item in enumerate(items):
        order = ((fa, ta), (fb, tb)) if k % 2 == 0 else ((fb, tb), (fa, ta))
        for fn, acc in order:
            t0 = time.perf_counter()
            fn(item)
            acc.append((time.perf_counter() - t0) * 1000.0)

    def stats(ts: list[float]) -> dict[str, float]:
        return {"median": round(float(np.median(ts)), 3),
                "p90": round(float(np.percentile(ts, 90)), 3)}
    return stats(ta), stats(tb)


def cv2_yolo_detect(net: Any, img: np.ndarray, conf: float = 0.25, iou: float = 0.45,
                    size: int = 416) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The usual cv2.dnn YOLO recipe, as the baseline: best class per row, threshold, NMS."""
    h, w = img.shape[:2]
    net.setInput(cv2.dnn.blobFromImage(img, 1 / 255.0, (size, size), swapRB=True, crop=False))
    rows = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))
    cls = rows[:, 5:].argmax(1)
    score = rows[np.arange(len(rows)), 5 + cls]
    keep = score > conf
    rows, cls, score = rows[keep], cls[keep], score[keep]
    xywh = np.stack([(rows[:, 0] - rows[:, 2] / 2) * w, (rows[:, 1] - rows[:, 3] / 2) * h,
                     rows[:, 2] * w, rows[:, 3] * h], 1)
    idx = np.asarray(cv2.dnn.NMSBoxesBatched(xywh.tolist(), score.tolist(), cls.tolist(), conf,
                                             iou), dtype=int).reshape(-1)
    return xywh[idx], score[idx], cls[idx]


def bench_yolo(frames: list[np.ndarray], threads: int) -> dict[str, Any]:
    from detectors.darknet import cfg_text_with_masks, ensure_tiny_onnx, read_metadata
    from detectors.yolo import YoloDetector

    onnx_path = ensure_tiny_onnx(MODELS)
    # letterbox=False: both sides then feed the same 416x416 stretched blob
    det = YoloDetector(model=onnx_path, letterbox=False, providers="cpu",
                       intra_op_threads=threads, inter_op_threads=1)
    # cv2.dnn gets the same yolo masks the converter used (see darknet.known_mask_fix)
    masks = json.loads(read_metadata(onnx_path)["masks"])
    cfg_text = cfg_text_with_masks(MODELS / "yolov3-tiny.cfg", masks)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "yolov3-tiny.cfg"
        cfg.write_text(cfg_text)
        net = cv2.dnn.readNetFromDarknet(str(cfg), str(MODELS / "yolov3-tiny.weights"))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    blob = cv2.dnn.blobFromImage(frames[0], 1 / 255.0, (416, 416), swapRB=True, crop=False)
    outs = net.getUnconnectedOutLayersNames()

    def cv2_infer(_: Any) -> None:
        net.setInput(blob)
        net.forward(outs)

    ort_full, cv2_full = time_pair(det.detect, lambda f: cv2_yolo_detect(net, f), frames)
    ort_inf, cv2_inf = time_pair(lambda _: det.raw(blob), cv2_infer, frames)
    n_ort = float(np.mean([len(det.detect(f)) for f in frames[:5]]))
    n_cv2 = float(np.mean([len(cv2_yolo_detect(net, f)[1]) for f in frames[:5]]))
    return {
        "yolo_ort_ms": ort_full["median"], "yolo_ort_p90_ms": ort_full["p90"],
        "yolo_cv2_ms": cv2_full["median"], "yolo_cv2_p90_ms": cv2_full["p90"],
        "yolo_ratio": round(ort_full["median"] / cv2_full["median"], 3),
        "yolo_ort_infer_ms": ort_inf["median"], "yolo_cv2_infer_ms": cv2_inf["median"],
        "yolo_infer_ratio": round(ort_inf["median"] / cv2_inf["median"], 3),
        "yolo_provider": det.provider,
        "yolo_dets_per_frame_ort": round(n_ort, 2), "yolo_dets_per_frame_cv2": round(n_cv2, 2),
    }


def bench_others(frames: list[np.ndarray]) -> dict[str, Any]:
    from detectors.base import build, names

    out: dict[str, Any] = {}
    for name in names():
        if name in ("yolo", "none"):
            continue
        try:
            det = build(name, {})
            r = time_per_item(det.detect, frames)
            out[f"{name}_ms"] = r["median"]
            out[f"{name}_p90_ms"] = r["p90"]
        except Exception as exc:  # noqa: BLE001 - a detector not written yet must not stop the run
            out[f"{name}_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return out


def _text_lines(gray: np.ndarray, api_cls: Any, tessdata: str) -> list[np.ndarray]:
    import tesserocr
    from PIL import Image

    with api_cls(path=tessdata, psm=tesserocr.PSM.AUTO) as api:
        api.SetImage(Image.fromarray(gray))
        comps = api.GetComponentImages(tesserocr.RIL.TEXTLINE, True)
    lines = []
    for _, box, _, _ in comps:
        x, y, w, h = box["x"], box["y"], box["w"], box["h"]
        if w >= 8 and h >= 8:
            y0, x0 = max(0, y - 4), max(0, x - 4)
            lines.append(np.ascontiguousarray(gray[y0:y + h + 4, x0:x + w + 4]))
    return lines


def bench_ocr(threads: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        import tesserocr
        from PIL import Image
    except ImportError as exc:
        return {"ocr_error": f"tesserocr unavailable: {exc}"}
    tessdata = next((str(p) for p in (Path(sys.prefix) / "share" / "tessdata",
                                      Path(os.environ.get("TESSDATA_PREFIX", "/nonexistent")))
                     if (p / "eng.traineddata").is_file()), None)
    if tessdata is None or not TEXT_IMAGE.is_file():
        return {"ocr_error": f"tessdata ({tessdata}) or {TEXT_IMAGE} missing"}
    gray = cv2.imread(str(TEXT_IMAGE), cv2.IMREAD_GRAYSCALE)
    lines = _text_lines(gray, tesserocr.PyTessBaseAPI, tessdata)
    out["ocr_lines"] = len(lines)
    if not lines:
        return {**out, "ocr_error": "no text lines found"}
    with tesserocr.PyTessBaseAPI(path=tessdata, psm=tesserocr.PSM.SINGLE_LINE) as api:
        def tess(crop: np.ndarray) -> str:
            api.SetImage(Image.fromarray(crop))
            return api.GetUTF8Text()
        out["ocr_tesserocr_ms"] = time_per_item(tess, lines)["median"]
        out["ocr_sample_text"] = tess(lines[0]).strip()[:80]
    try:
        import pytesseract
        pytesseract.get_tesseract_version()
    except Exception as exc:  # noqa: BLE001 - ImportError or TesseractNotFoundError
        out["ocr_pytesseract"] = f"absent ({type(exc).__name__}: {exc})"[:200]
        return out
    os.environ["OMP_THREAD_LIMIT"] = str(threads)
    r = time_per_item(lambda c: pytesseract.image_to_string(c, config="--psm 7"), lines)
    out["ocr_pytesseract_ms"] = r["median"]
    out["ocr_speedup"] = round(r["median"] / out["ocr_tesserocr_ms"], 2)
    return out


def run(frames_n: int, threads: list[int], other_frames: int = 10) -> dict[str, Any]:
    frames = load_frames(VIDEO, frames_n)
    if len(frames) < 3:
        return {"error": f"could not read frames from {VIDEO}"}
    result: dict[str, Any] = {
        "bench": "detectors", "video": VIDEO.name, "frame_size": list(frames[0].shape[1::-1]),
        "frames": len(frames), "other_frames": min(other_frames, len(frames)),
        "threads": threads, "machine": machine(), "by_threads": {},
    }
    old = cv2.getNumThreads()
    try:
        for t in threads:
            cv2.setNumThreads(t)
            row: dict[str, Any] = {}
            try:
                row.update(bench_yolo(frames, t))
            except Exception as exc:  # noqa: BLE001 - report, keep benchmarking the rest
                row["yolo_error"] = f"{type(exc).__name__}: {exc}"[:300]
            row.update(bench_others(frames[::max(1, len(frames) // other_frames)][:other_frames]))
            row.update(bench_ocr(t))
            result["by_threads"][str(t)] = row
    finally:
        cv2.setNumThreads(old)
    result.update(result["by_threads"][str(threads[0])])
    return result
