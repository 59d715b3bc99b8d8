"""Text pipeline speed: Tesseract per line (tesserocr, one reused API) against its baselines,
DBNet box detection per 768x576 frame, and the whole detect+read pipeline.

    python main.py bench ocr --json [--repeats 5] [--threads 2]

Lines are the 13 DBNet line boxes of imageTextN.png, cut out and prepared exactly as the
text detector does (deskew crop, gray, 40 px high). Per-line figures are medians over all
lines x repeats. Baselines measured in the same run on the same prepared crops:
  - pytesseract (`tesseract` subprocess per call, --psm 7) when both the module and the
    binary exist; otherwise recorded as absent;
  - tesserocr with a fresh PyTessBaseAPI per line (what any per-call wrapper, pytesseract
    included, pays at least: loading the language model every time).
ratios are baseline_ms / tesserocr_ms (goal vs pytesseract >= 10).
DBNet frames: vtest.avi (768x576 street scene, few text boxes) and imageTextN.png resized to
768x576 (a page: 13 lines); pipeline = DBNet + OCR of every box, ocr_workers 1 and 2.
"""
from __future__ import annotations

import os
import shutil
import sys
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
TEXT_IMAGE = SHARED / "images" / "text" / "imageTextN.png"
VIDEO = SHARED / "video" / "opencv" / "vtest.avi"
FRAME_SIZE = (768, 576)


def _ms(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def _stats(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples, dtype=np.float64)
    return {"median": round(float(np.median(a)), 3), "p90": round(float(np.percentile(a, 90)), 3),
            "n": int(a.size)}


def machine() -> dict[str, Any]:
    """The shared machine description (bench/common.py)."""
    return common_machine()


def load_vtest(n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(VIDEO))
    frames: list[np.ndarray] = []
    try:
        i = 0
        while len(frames) < n and cap.grab():
            if i % 25 == 0:
                ok, img = cap.retrieve()
                if ok:
                    frames.append(img)
            i += 1
    finally:
        cap.release()
    return frames


def bench_lines(repeats: int) -> dict[str, Any]:
    import tesserocr

    from detectors.ocr import TessReader, crop_rotated, prepare_line
    from detectors.text import TextDetector

    page = cv2.imread(str(TEXT_IMAGE))
    det = TextDetector(recognize=False)
    rb, _, _ = det.boxes(page)
    reader = TessReader()
    crops = [crop_rotated(page, r) for r in rb]
    prepared = [prepare_line(c, reader.target_height) for c in crops if c is not None]
    out: dict[str, Any] = {"lines": len(prepared),
                           "line_size_px": [int(np.median([p.shape[1] for p in prepared])),
                                            int(prepared[0].shape[0])]}

    def tess_reused(g: np.ndarray) -> str:
        api = reader._api()  # the per-thread API the detector uses
        api.SetImageBytes(g.tobytes(), g.shape[1], g.shape[0], 1, g.shape[1])
        return api.GetUTF8Text()

    def tess_fresh(g: np.ndarray) -> str:
        with tesserocr.PyTessBaseAPI(path=reader.tessdata, lang="eng",
                                     psm=tesserocr.PSM.SINGLE_LINE,
                                     oem=tesserocr.OEM.LSTM_ONLY) as api:
            api.SetImageBytes(g.tobytes(), g.shape[1], g.shape[0], 1, g.shape[1])
            return api.GetUTF8Text()

    reused = [t for g in prepared for t in _ms(lambda g=g: tess_reused(g), repeats)]
    out["tesserocr_line_ms"] = _stats(reused)
    out["read_crop_line_ms"] = _stats([t for c in crops
                                       for t in _ms(lambda c=c: reader.read_crop(c), repeats)])
    fresh = [t for g in prepared for t in _ms(lambda g=g: tess_fresh(g), max(1, repeats // 2),
                                             warmup=0)]
    out["tesserocr_fresh_api_line_ms"] = _stats(fresh)
    out["ratio_fresh_api_vs_reused"] = round(float(np.median(fresh) / np.median(reused)), 2)

    try:
        import pytesseract

        exe = shutil.which(getattr(pytesseract.pytesseract, "tesseract_cmd", "tesseract"))
        if exe is None:
            raise FileNotFoundError("no tesseract binary on PATH")
        pytesseract.get_tesseract_version()
    except Exception as exc:  # noqa: BLE001 - ImportError, TesseractNotFoundError, ...
        out["pytesseract"] = f"absent ({type(exc).__name__}: {exc})"[:200]
        out["ratio_pytesseract_vs_tesserocr"] = None
    else:
        py = [t for g in prepared
              for t in _ms(lambda g=g: pytesseract.image_to_string(g, config="--psm 7"),
                           max(1, repeats // 2))]
        out["pytesseract_line_ms"] = _stats(py)
        out["ratio_pytesseract_vs_tesserocr"] = round(float(np.median(py) / np.median(reused)), 2)
        out["pytesseract"] = "present"
    reader.close()
    return out


def bench_pipeline(repeats: int, threads: int) -> dict[str, Any]:
    from detectors.text import TextDetector

    page = cv2.resize(cv2.imread(str(TEXT_IMAGE)), FRAME_SIZE, interpolation=cv2.INTER_CUBIC)
    street = load_vtest(8) if VIDEO.is_file() else []
    out: dict[str, Any] = {"frame_size": list(FRAME_SIZE)}
    det_only = TextDetector(recognize=False, threads=threads)
    out["provider"] = det_only.provider
    out["dbnet_page_ms"] = _stats(_ms(lambda: det_only.boxes(page), repeats * 2, warmup=2))
    out["dbnet_page_boxes"] = int(len(det_only.boxes(page)[0]))
    if street:
        out["dbnet_vtest_ms"] = _stats([t for f in street
                                        for t in _ms(lambda f=f: det_only.boxes(f), repeats)])
        out["dbnet_vtest_boxes_per_frame"] = round(float(np.mean(
            [len(det_only.boxes(f)[0]) for f in street])), 2)
    else:
        out["dbnet_vtest"] = f"absent ({VIDEO})"
    for workers in (1, 2):
        det = TextDetector(threads=threads, ocr_workers=workers)
        try:
            out[f"pipeline_page_ms_workers{workers}"] = _stats(_ms(lambda: det.detect(page),
                                                                   repeats, warmup=1))
            if street:
                out[f"pipeline_vtest_ms_workers{workers}"] = _stats(
                    [t for f in street for t in _ms(lambda f=f: det.detect(f), repeats)])
            if workers == 1:
                d = det.detect(page)
                out["page_lines_read"] = int(sum(t is not None for t in d.text))
                out["page_sample_text"] = next((t for t in d.text if t), "")[:80]
        finally:
            det.close()
    return out


def run(repeats: int, threads: int) -> dict[str, Any]:
    result: dict[str, Any] = {"bench": "ocr", "repeats": repeats, "threads": threads}
    if not TEXT_IMAGE.is_file():
        return {**result, "error": f"{TEXT_IMAGE} not found"}
    try:
        result["machine"] = machine()
    except Exception as exc:  # noqa: BLE001
        return {**result, "error": f"{type(exc).__name__}: {exc}"[:300]}
    old = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        result["ocr"] = bench_lines(repeats)
        result["text_pipeline"] = bench_pipeline(repeats, threads)
    except Exception as exc:  # noqa: BLE001 - report instead of a traceback
        result["error"] = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        cv2.setNumThreads(old)
    result["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)  # a shared machine skews ms
    return result
