"""Render benchmark results (from `bench all`) as Markdown with PNG plots.

    python main.py bench report FILE.json [--out BENCHMARKS.md] [--soak SOAK.json] [--plots-dir DIR]

Writes: a machine / versions section, a headline table of the project goals (measured value
and pass / FAIL), one table per benchmark with the command that reproduces it, and plots
(matplotlib, Agg) in --plots-dir (default: `plots/` next to the Markdown), linked relatively.
A benchmark that is absent, skipped or errored shows "not run: reason"; a goal whose figure
is missing shows "n/a" with the reason, never a made-up number.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable

Row = list[Any]

# ------------------------------------------------------------------ helpers


def get(d: Any, path: str, default: Any = None) -> Any:
    """d["a"]["b"][2] for path "a.b.2"; default where any step is missing."""
    cur = d
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return default
    return cur


def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if abs(v) >= 10000:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x, digits) for x in v) if v else "none"
    if isinstance(v, dict):
        return ", ".join(f"{k} {fmt(x, digits)}" for k, x in v.items())
    return str(v)


def _cell(v: Any) -> str:
    s = v if isinstance(v, str) else fmt(v)
    return s.replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: Iterable[Row]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def not_run(res: dict[str, Any] | None) -> str | None:
    """Why a benchmark has no usable result, or None when it has one."""
    if res is None:
        return "not in the results file"
    if not isinstance(res, dict):
        return f"unexpected result {type(res).__name__}"
    if "skipped" in res:
        return str(res["skipped"])
    if "error" in res:
        tail = (res.get("stderr_tail") or "").strip().splitlines()
        last = f" ({tail[-1][:200]})" if tail else ""
        return f"{res['error']}{last}"
    return None


# ------------------------------------------------------------------ goals
Goal = tuple[str, str, str, str]  # (goal, target, measured, result)


def _check(ok: bool) -> str:
    return "pass" if ok else "**FAIL**"


def goals(results: dict[str, Any], soak: dict[str, Any] | None) -> list[Goal]:
    R = results
    rows: list[Goal] = []

    def add(bench: str, goal: str, target: str, fn: Callable[[dict[str, Any]], tuple[str, str]]) -> None:
        res = R.get(bench)
        why = not_run(res)
        if why is not None:
            rows.append((goal, target, "—", f"n/a: {bench} not run: {why}"))
            return
        try:
            measured, result = fn(res)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
            measured, result = "—", f"n/a: field missing ({type(e).__name__}: {e})"
        rows.append((goal, target, measured, result))

    def need(v: Any, what: str) -> Any:
        if v is None:
            raise KeyError(what)
        return v

    add("pipeline", "Pipeline overhead vs bare decode+draw+encode", "ratio <= 1.3",
        lambda r: (f"{fmt(need(r.get('ratio'), 'ratio'))} ({fmt(r.get('pipeline_ms'))} / {fmt(r.get('bare_ms'))} ms)",
                   _check(r["ratio"] <= 1.3)))
    add("detectors", "YOLOv3-tiny: ONNX Runtime vs cv2.dnn (whole detect)", "ratio <= 1.0",
        lambda r: (f"{fmt(need(r.get('yolo_ratio'), 'yolo_ratio'))} ({fmt(r.get('yolo_ort_ms'))} / "
                   f"{fmt(r.get('yolo_cv2_ms'))} ms, {fmt(get(r, 'threads.0'))} thread)",
                   _check(r["yolo_ratio"] <= 1.0)))
    add("tracker", "Tracker, boxes only, vs SORT baseline (MOT15)", ">= 1.0x",
        lambda r: (f"{fmt(need(r.get('ratio'), 'ratio'))}x ({fmt(r.get('hz'))} vs {fmt(r.get('baseline_hz'))} Hz)",
                   _check(r["ratio"] >= 1.0)))

    def dhash(r: dict[str, Any]) -> tuple[str, str]:
        if r.get("dhash_hz") is None:
            return "—", f"n/a: {r.get('dhash_skipped', 'dhash_hz missing')}"
        return f"{fmt(r['dhash_hz'])} Hz", _check(r["dhash_hz"] >= 1500)
    add("tracker", "Tracker with dHash appearance (PETS09 on vtest.avi)", ">= 1500 Hz", dhash)

    def ocr(r: dict[str, Any]) -> tuple[str, str]:
        ratio = get(r, "ocr.ratio_pytesseract_vs_tesserocr")
        if ratio is None:
            fresh = get(r, "ocr.ratio_fresh_api_vs_reused")
            return (f"pytesseract {get(r, 'ocr.pytesseract', 'absent')}; fresh-API baseline {fmt(fresh)}x",
                    "n/a: pytesseract absent")
        return f"{fmt(ratio)}x", _check(ratio >= 10)
    add("ocr", "Tesseract per line: tesserocr (reused API) vs pytesseract", ">= 10x", ocr)

    def overlay(r: dict[str, Any]) -> tuple[str, str]:
        v = need(get(r, "draw_only_ms.full_ms"), "draw_only_ms.full_ms")
        return (f"{fmt(v)} ms draw ({fmt(get(r, 'median_ms.full_ms'))} ms with the frame copy)",
                _check(v < 1.0))
    add("overlay", "Overlay draw, 768x576, 10 tracks, zones, lines, status", "< 1 ms", overlay)

    def encodes(r: dict[str, Any]) -> tuple[str, str]:
        lv = [x for x in r.get("levels", []) if x.get("viewers", 0) >= 1]
        if not lv:
            raise KeyError("levels")
        e = [x["encodes_per_frame"] for x in lv]
        none = next((x for x in r["levels"] if x.get("viewers") == 0), None)
        extra = f"; 0 viewers: {none.get('encodes')} encodes" if none else ""
        ok = all(abs(v - 1.0) <= 0.02 for v in e) and (none is None or none.get("encodes") == 0)
        return f"{fmt(min(e))}..{fmt(max(e))} over {len(e)} levels{extra}", _check(ok)
    add("viewers", "JPEG encodes per published frame, any number of viewers", "= 1 (0 with no viewer)", encodes)

    def drop(r: dict[str, Any]) -> tuple[str, str]:
        lv = {x["viewers"]: x for x in r.get("levels", [])}
        if 1 not in lv or 50 not in lv:
            raise KeyError("levels 1 and 50")
        f1, f50 = lv[1]["published_fps"], lv[50]["published_fps"]
        d = (1 - f50 / f1) * 100 if f1 else float("nan")
        return f"{d:.1f} % ({fmt(f1)} -> {fmt(f50)} fps)", _check(d <= 10.0)
    add("viewers", "Published fps drop, 1 -> 50 viewers", "<= 10 %", drop)

    for k, label in (("pipeline_ms", "capture -> hub"), ("http_ms", "capture -> HTTP client")):
        add("latency", f"Latency {label}, p50 / p95", "measured",
            lambda r, k=k: (f"{fmt(need(get(r, k + '.p50'), k))} / {fmt(get(r, k + '.p95'))} ms "
                            f"(n={fmt(_latency_n(r, k[:-3]))})", "info"))

    def defects(r: dict[str, Any]) -> tuple[str, str]:
        p, rc, lr = (need(get(r, k + ".median"), k) for k in ("defect_precision", "defect_recall", "label_read_rate"))
        return (f"{fmt(p)} / {fmt(rc)} / {fmt(lr)} (median of {len(r.get('seeds', []))} seeds)",
                _check(p >= 0.9 and rc >= 0.9 and lr >= 0.8))
    add("defects", "Defect watch: precision / recall / label read rate", ">= 0.9 / 0.9 / 0.8", defects)

    if soak is not None:
        v = soak.get("verdicts", {})
        for key, goal, target in (("rss", "Soak: RSS growth after warm-up", "<= 5 %"),
                                  ("threads", "Soak: thread count flat", "no floor / median growth"),
                                  ("fds", "Soak: open fds flat", "no floor / median growth"),
                                  ("fps", "Soak: fps stable (min vs median)", ">= 90 %")):
            d = v.get(key)
            if not isinstance(d, dict):
                rows.append((goal, target, "—", f"n/a: {v.get('error') or soak.get('error') or 'missing'}"))
                continue
            if key == "rss":
                m = f"{fmt(d['growth_pct'])} % ({fmt(d['slope_mb_per_min'])} MB/min)"
                target = f"<= {fmt(d['tolerance_pct'])} %"
            elif key == "fps":
                worst = min((x.get("min_over_median") or 0.0 for c in d["cameras"].values() for x in c.values()),
                            default=None)
                m = f"worst min/median {fmt(worst)}"
                if d.get("others_cores_max") is not None:
                    m += f" (other processes took up to {fmt(d['others_cores_max'])} cores)"
            else:
                m = f"{d['min']}..{d['max']} (tol {d['tolerance']})"
                if "floor_growth" in d:
                    m = (f"{d['min']}..{d['max']}, floor {d['floor_growth']:+d}, median "
                         f"{d['median_growth']:+g} (tol {d['tolerance']})")
            rows.append((goal, target, m, _check(bool(d.get("pass")))))
    return rows


# ------------------------------------------------------------------ plots
def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _latency_series(res: dict[str, Any]) -> list[tuple[str, dict[str, Any], list[float] | None]]:
    """(label, percentiles, samples or None) for capture->hub and capture->HTTP; samples are read
    from `<kind>_samples_ms` or `<kind>_ms.samples`, whichever the benchmark provides."""
    out = []
    for kind, lab in (("pipeline", "capture -> hub"), ("http", "capture -> HTTP client")):
        d = res.get(f"{kind}_ms") or {}
        if d.get("p50") is None:
            continue
        smp = res.get(f"{kind}_samples_ms") or d.get("samples")
        out.append((lab, d, [float(x) for x in smp] if isinstance(smp, list) and smp else None))
    return out


def _latency_n(res: dict[str, Any], kind: str) -> Any:
    d = res.get(f"{kind}_ms") or {}
    if d.get("n") is not None:
        return d["n"]
    smp = res.get(f"{kind}_samples_ms") or d.get("samples")
    if isinstance(smp, list):
        return len(smp)
    rounds = [get(r, f"{kind}_ms.n") for r in res.get("per_round") or []]
    return sum(rounds) if rounds and all(isinstance(n, int) for n in rounds) else None


def plot_latency(res: dict[str, Any], path: Path) -> bool:
    """Histogram of the samples a benchmark exposes; for a path with percentiles only, its
    p50 / p95 as vertical lines (or bars when no path has samples)."""
    plt = _plt()
    series = _latency_series(res)
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = ("tab:blue", "tab:orange")
    if any(smp for _, _, smp in series):
        hi = max(max(smp) if smp else float(d.get("max") or d["p95"]) for _, d, smp in series)
        bins = [hi * i / 50 for i in range(51)]
        for (lab, d, smp), c in zip(series, colors):
            if smp:
                ax.hist(smp, bins=bins, alpha=0.6, color=c,
                        label=f"{lab}: {len(smp)} frames, p50 {fmt(d['p50'])}, p95 {fmt(d['p95'])} ms")
            for q, style in (("p50", "-"), ("p95", "--")):
                if d.get(q) is not None:
                    ax.axvline(d[q], color=c, linestyle=style, linewidth=1,
                               label=None if smp else f"{lab} {q} {fmt(d[q])} ms (no samples)")
        ax.set_xlabel("latency (ms); lines: p50 (solid), p95 (dashed)")
        ax.set_ylabel("frames")
    else:
        stats = ("p50", "p95", "max")
        width = 0.8 / len(series)
        for i, (lab, d, _) in enumerate(series):
            xs = [j + i * width for j in range(len(stats))]
            vals = [d.get(q) or 0.0 for q in stats]
            bars = ax.bar(xs, vals, width, label=lab)
            ax.bar_label(bars, labels=[fmt(v) for v in vals], fontsize=8)
        ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(stats))], stats)
        ax.set_ylabel("latency (ms)")
        ax.set_title("percentiles only: the benchmark does not expose its samples", fontsize=9)
    fig.suptitle(f"Latency, {res.get('source')} ({res.get('detector')} detector)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_viewers(res: dict[str, Any], path: Path) -> bool:
    plt = _plt()
    lv = [x for x in res.get("levels", []) if "published_fps" in x]
    if len(lv) < 2:
        return False
    n = [x["viewers"] for x in lv]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(n, [x["published_fps"] for x in lv], "o-", label="published fps")
    ax.set_xlabel("concurrent MJPEG viewers")
    ax.set_ylabel("published fps")
    ax.set_ylim(0, max(x["published_fps"] for x in lv) * 1.25 + 0.1)
    ax2 = ax.twinx()
    ax2.plot(n, [x.get("cpu_percent") for x in lv], "s--", color="tab:red", label="server CPU %")
    ax2.set_ylabel("server CPU % (100 = one core)")
    ax2.set_ylim(bottom=0)
    for x in lv:
        if "encodes_per_frame" in x:
            ax.annotate(f"{fmt(x['encodes_per_frame'])} enc/frame", (x["viewers"], x["published_fps"]),
                        textcoords="offset points", xytext=(0, 8), ha="center", fontsize=7)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="lower left", fontsize=8)
    fig.suptitle(f"Viewer scaling, {res.get('source')}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_detectors(res: dict[str, Any], path: Path) -> bool:
    plt = _plt()
    items = [(k[:-3], v) for k, v in res.items()
             if k.endswith("_ms") and not k.endswith("_p90_ms") and isinstance(v, (int, float))
             and "infer" not in k]
    if not items:
        return False
    items = [(f"{k} (per line)" if k.startswith("ocr_") else k, v) for k, v in items]
    items.sort(key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(items) + 1.5))
    bars = ax.barh([k for k, _ in items], [v for _, v in items], color="tab:blue")
    ax.bar_label(bars, labels=[fmt(v) for _, v in items], fontsize=8)
    size = "x".join(str(v) for v in res.get("frame_size") or [])
    ax.set_xlabel(f"median ms per frame ({size}, {fmt(get(res, 'threads.0'))} thread)")
    fig.suptitle("Detectors on vtest.avi frames")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_soak(soak: dict[str, Any], rss_path: Path, fps_path: Path) -> list[Path]:
    plt = _plt()
    s = soak.get("series") or []
    if len(s) < 2:
        return []
    t = [x["t"] / 60.0 for x in s]
    warm = soak.get("warmup_s", 0) / 60.0
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    ax.plot(t, [x["rss_mb"] for x in s], "-", marker=".", label="RSS")
    ax.axvspan(0, warm, color="0.9", label="warm-up (not judged)")
    ax.set_ylabel("RSS (MB)")
    r = get(soak, "verdicts.rss")
    if isinstance(r, dict):
        ax.set_title(f"RSS growth after warm-up {fmt(r.get('growth_pct'))} %, "
                     f"slope {fmt(r.get('slope_mb_per_min'))} MB/min", fontsize=9)
    ax.legend(fontsize=8)
    bx.plot(t, [x["threads"] for x in s], "-", label="threads")
    bx.plot(t, [x["fds"] for x in s], "-", label="open fds")
    bx.axvspan(0, warm, color="0.9")
    bx.set_xlabel("minutes")
    bx.set_ylabel("count")
    bx.legend(fontsize=8)
    fig.suptitle(f"Soak: {', '.join(soak.get('cameras', []))}, {len(soak.get('viewer_paths', []))} viewers")
    fig.tight_layout()
    fig.savefig(rss_path, dpi=100)
    plt.close(fig)
    out = [rss_path]
    cams = list((s[-1].get("cameras") or {}).keys())
    if cams:
        fig, ax = plt.subplots(figsize=(7, 4))
        for cam in cams:
            for key, style in (("source_fps", "-"), ("published_fps", "--")):
                pts = [(x["t"] / 60.0, get(x, f"cameras.{cam}.{key}")) for x in s]
                pts = [(a, b) for a, b in pts if b is not None]
                if pts:
                    ax.plot([a for a, _ in pts], [b for _, b in pts], style, marker=".",
                            label=f"{cam} {key.replace('_fps', '')}")
        ax.axvspan(0, warm, color="0.9")
        ax.set_xlabel("minutes")
        ax.set_ylabel(f"fps over each {fmt(soak.get('sample_s'))} s interval")
        top = max((b for ln in ax.get_lines() for b in ln.get_ydata()), default=1.0)
        ax.set_ylim(0, top * 1.15)
        handles, labels = ax.get_legend_handles_labels()
        others = [(x["t"] / 60.0, x["others_cores"]) for x in s if x.get("others_cores") is not None]
        if others:  # a dip in published fps next to the CPU other processes took
            ax2 = ax.twinx()
            ax2.fill_between([a for a, _ in others], [b for _, b in others], step="mid", color="tab:gray",
                             alpha=0.25, label="cores used by other processes")
            ax2.set_ylim(0, max(float(get(soak, "machine.cores", 2) or 2), max(b for _, b in others)))
            ax2.set_ylabel("cores used by other processes")
            h2, l2 = ax2.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        ax.legend(handles, labels, fontsize=7, loc="lower right")
        fig.suptitle("Soak: per-camera fps")
        fig.tight_layout()
        fig.savefig(fps_path, dpi=100)
        plt.close(fig)
        out.append(fps_path)
    return out


# ------------------------------------------------------------------ sections
def _show(p: Path | str) -> str:
    """A path as a command line would name it: relative when under the working folder."""
    p = Path(p).resolve()
    try:
        return p.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.as_posix()


def _cmd(res: dict[str, Any] | None, name: str) -> str:
    c = res.get("_command") if isinstance(res, dict) else None
    return c or f"python main.py bench {name} --json"


def _repro(cmds: list[str]) -> str:
    return "Reproduce:\n\n```sh\n" + "\n".join(cmds) + "\n```"


def sec_pipeline(r: dict[str, Any]) -> list[str]:
    order = ("decode", "track", "exposure", "draw", "encode")
    cols = [("bare", "bare_stage_ms", "bare_ms"), ("pipeline", "pipeline_stage_ms", "pipeline_ms")]
    if "tracked_stage_ms" in r:  # the same pipeline with tracks drawn (boxes, labels, trails)
        cols.append(("pipeline with tracks", "tracked_stage_ms", "tracked_pipeline_ms"))
    stages = sorted({k for _, key, _ in cols for k in (r.get(key) or {})},
                    key=lambda k: order.index(k) if k in order else len(order))
    rows = [[st, *[get(r, f"{key}.{st}") for _, key, _ in cols]] for st in stages]
    rows.append(["**total ms/frame**", *[r.get(tot) for _, _, tot in cols]])
    rows.append(["ratio to bare", 1.0, r.get("ratio"), *([r.get("tracked_ratio")] if len(cols) > 2 else [])])
    return [f"Input {r.get('input')}, {r.get('frames')} frames x {r.get('rounds')} alternating rounds; "
            f"ratio {fmt(r.get('ratio'))} (median of per-round ratios {fmt(r.get('ratios'))}).",
            table(["stage", *[f"{c} (ms)" for c, _, _ in cols]], rows),
            table(["threaded pipeline", "value"],
                  [["source fps (unpaced)", r.get("source_fps")], ["published fps", r.get("threaded_fps")],
                   ["frames dropped", r.get("dropped")]])]


def sec_latency(r: dict[str, Any]) -> list[str]:
    rows = [[lab, get(r, f"{k}_ms.p50"), get(r, f"{k}_ms.p95"), get(r, f"{k}_ms.max"), _latency_n(r, k)]
            for k, lab in (("pipeline", "capture -> hub (pipeline)"), ("http", "capture -> HTTP client"))]
    if r.get("per_round"):
        rows += [[f"round {i + 1}: {lab}", get(x, f"{k}_ms.p50"), get(x, f"{k}_ms.p95"), get(x, f"{k}_ms.max"),
                  get(x, f"{k}_ms.n")] for i, x in enumerate(r["per_round"])
                 for k, lab in (("pipeline", "hub"), ("http", "HTTP"))]
    def fps(key: str) -> Any:
        if r.get(key) is not None:
            return r[key]
        v = sorted(x[key] for x in r.get("per_round") or [] if x.get(key) is not None)
        return v[len(v) // 2] if v else None
    rounds = f", {r['rounds']} rounds" if r.get("rounds") else ""
    return [f"Source {r.get('source')}, detector {r.get('detector')}{rounds}, source {fmt(fps('source_fps'))} fps, "
            f"published {fmt(fps('published_fps'))} fps.",
            table(["path", "p50 (ms)", "p95 (ms)", "max (ms)", "samples"], rows)]


def sec_viewers(r: dict[str, Any]) -> list[str]:
    rows = [[x.get("viewers"), x.get("viewers_seen"), x.get("published_fps"), x.get("cpu_percent"),
             x.get("encodes_per_frame", x.get("encodes")), x.get("frames_sent_per_s"), x.get("client_mbit_s")]
            for x in r.get("levels", [])]
    return [f"Source {r.get('source')}; fps ratio at the most viewers vs 1: {fmt(r.get('fps_ratio_max_vs_1'))}. "
            "At 0 viewers the encodes column is the raw count (expected 0).",
            table(["viewers", "seen by hub", "published fps", "server CPU %", "encodes / frame",
                   "frames sent / s", "client Mbit/s"], rows)]


def sec_detectors(r: dict[str, Any]) -> list[str]:
    by = r.get("by_threads") or {"?": r}
    keys: list[str] = []
    for row in by.values():
        for k, v in row.items():
            if k not in keys and not isinstance(v, (dict, list)) and not k.startswith("ocr_sample"):
                keys.append(k)
    rows = [[k, *[by[t].get(k) for t in by]] for k in keys]
    return [f"{r.get('frames')} frames of {r.get('video')} {'x'.join(str(v) for v in r.get('frame_size') or [])} "
            f"({r.get('other_frames')} for the non-YOLO detectors); medians per frame.",
            table(["figure", *[f"{t} thread(s)" for t in by]], rows)]


def sec_tracker(r: dict[str, Any]) -> list[str]:
    rows = [["Vigil tracker, boxes only (Hz)", r.get("hz"), fmt(r.get("hz_runs"))],
            ["SORT baseline (Hz)", r.get("baseline_hz"), fmt(r.get("baseline_hz_runs"))],
            ["ratio", r.get("ratio"), ""],
            ["with dHash (Hz)", r.get("dhash_hz"), fmt(r.get("dhash_hz_runs"))],
            ["dHash rate / SORT rate", r.get("dhash_ratio_to_baseline"), ""]]
    return [f"{r.get('sequences')} MOT15 sequences, {r.get('updates')} updates, "
            f"{fmt(r.get('dets_per_frame'))} detections per frame, {r.get('repeats')} repeats (medians); "
            f"dHash on {r.get('dhash_frames')} frames, {fmt(r.get('dhash_dets_per_frame'))} dets/frame.",
            table(["figure", "median", "runs"], rows)]


def sec_ocr(r: dict[str, Any]) -> list[str]:
    o, p = r.get("ocr") or {}, r.get("text_pipeline") or {}
    rows = []
    for k, v in list(o.items()) + list(p.items()):
        if isinstance(v, dict) and "median" in v:
            rows.append([k, v.get("median"), v.get("p90"), v.get("n")])
    info = [[k, v] for k, v in list(o.items()) + list(p.items()) if not isinstance(v, dict)]
    return [f"{r.get('repeats')} repeats, {r.get('threads')} threads.",
            table(["figure (ms)", "median", "p90", "samples"], rows),
            table(["figure", "value"], info)]


def sec_overlay(r: dict[str, Any]) -> list[str]:
    med, draw, ratio = r.get("median_ms", {}), r.get("draw_only_ms", {}), r.get("ratio_to_copy", {})
    rows = [[k[:-3], med.get(k), draw.get(k), ratio.get(k)] for k in med]
    return [f"{r.get('width')}x{r.get('height')}, {r.get('tracks')} tracks, {r.get('frames_per_run')} draws x "
            f"{r.get('repeats')} runs (medians); label sprite cache speed-up {fmt(r.get('sprite_cache_speedup'))}x.",
            table(["variant", "ms (incl. copy)", "draw only (ms)", "x copy"], rows)]


def sec_defects(r: dict[str, Any]) -> list[str]:
    rows = [[k, get(r, f"{k}.median"), get(r, f"{k}.min")]
            for k in ("defect_precision", "defect_recall", "label_read_rate", "judge_ms_median", "part_ms_median")]
    rows += [[f"baseline dHash-only {k}", get(r, f"baseline_dhash.{k}.median"), get(r, f"baseline_dhash.{k}.min")]
             for k in ("defect_precision", "defect_recall")]
    per = [[x.get("seed"), x.get("parts"), x.get("parts_true"), x.get("defect_precision"), x.get("defect_recall"),
            x.get("label_read_rate"), x.get("fps")] for x in r.get("runs", [])]
    return [f"Seeds {fmt(r.get('seeds'))}, {r.get('frames')} frames each at {fmt(r.get('speed_px_s'))} px/s; "
            f"part counts exact on every seed: {fmt(r.get('count_exact_all'))}; recall vs baseline "
            + (f"{fmt(r['recall_ratio_vs_baseline'])}x." if r.get("recall_ratio_vs_baseline") is not None
               else "n/a (the baseline found no defect)."),
            table(["figure", "median", "min"], rows),
            table(["seed", "parts", "true parts", "precision", "recall", "label rate", "fps"], per)]


def sec_soak(s: dict[str, Any]) -> list[str]:
    v = s.get("verdicts", {})
    rows = []
    for key in ("rss", "threads", "fds", "viewers", "api"):
        d = v.get(key)
        if isinstance(d, dict):
            rows.append([key, fmt({k: x for k, x in d.items() if k != "pass"}), _check(bool(d.get("pass")))])
    for cam, per in (get(v, "fps.cameras") or {}).items():
        for k, d in per.items():
            rows.append([f"{cam} {k}", fmt({x: y for x, y in d.items() if x != "pass"}), _check(bool(d.get("pass")))])
    last = (s.get("series") or [{}])[-1]
    lat = [[c, get(d, "latency_p50_ms"), get(d, "latency_p95_ms"), get(d, "dropped")]
           for c, d in (last.get("cameras") or {}).items()]
    head = (f"{fmt(s.get('minutes'))} min, warm-up {fmt(s.get('warmup_s'))} s, a sample every "
            f"{fmt(s.get('sample_s'))} s ({v.get('samples_after_warmup')} judged); cameras "
            f"{fmt(s.get('cameras'))}; viewers {fmt(s.get('viewer_paths'))}; API polled every "
            f"{fmt(s.get('api_poll_s'))} s; other processes used {fmt(get(v, 'fps.others_cores_median'))} "
            f"cores (median, max {fmt(get(v, 'fps.others_cores_max'))}) of {get(s, 'machine.cores', '?')}. "
            f"Overall: {_check(bool(v.get('pass')))}"
            + (f" ({s['error']})" if s.get("error") else "") + ".")
    return [head, table(["check", "figures", "result"], rows),
            "At the last sample:", table(["camera", "latency p50 (ms)", "p95 (ms)", "frames dropped"], lat)]


SECTIONS: list[tuple[str, str, Callable[[dict[str, Any]], list[str]]]] = [
    ("pipeline", "Pipeline overhead", sec_pipeline),
    ("latency", "Latency", sec_latency),
    ("viewers", "Viewers", sec_viewers),
    ("detectors", "Detectors", sec_detectors),
    ("tracker", "Tracker", sec_tracker),
    ("ocr", "OCR and text pipeline", sec_ocr),
    ("overlay", "Overlay", sec_overlay),
    ("defects", "Defect watch", sec_defects),
]


MODULE_TITLES = {"store": "Event store (review queries)", "multicam": "Many cameras",
                 "tracker-peers": "Tracker peers (same detections, same scorer)", "cluster": "Cluster"}


def _module_sections(results: dict[str, Any]) -> list[tuple[str, str, Callable[[dict[str, Any]], list[str]]]]:
    """Benchmarks without a renderer here whose own module has `markdown(result) -> str`
    (bench/store.py, multicam.py, tracker_peers.py, cluster.py): rendered by that function,
    its own leading heading dropped (the report writes the section's heading)."""
    import importlib

    known = {name for name, _, _ in SECTIONS}
    out = []
    for name in results:
        if name in known:
            continue
        try:
            fn = getattr(importlib.import_module("bench." + name.replace("-", "_")), "markdown", None)
        except ImportError:
            fn = None
        if fn is None:
            continue

        def body(res: dict[str, Any], fn: Callable[..., str] = fn) -> list[str]:
            lines = fn(res).strip("\n").split("\n")
            while lines and (lines[0].startswith("#") or not lines[0].strip()):
                lines.pop(0)
            return ["\n".join(lines)]
        out.append((name, MODULE_TITLES.get(name, name), body))
    return out


# ------------------------------------------------------------------ render
def sec_faults(faults: dict[str, Any]) -> list[str]:
    """The fault suite's counts (test-artifacts/fault-summary.json, written by tests/fault)."""
    rows = ["| test | faults injected | recovered | inputs tried | HTTP 500s | outcome |",
            "|---|---|---|---|---|---|"]
    for name, t in sorted((faults.get("tests") or {}).items()):
        rows.append(f"| `{name}` | {fmt(t.get('faults_injected'))} | {fmt(t.get('recoveries'))} | "
                    f"{fmt(t.get('inputs_tried'))} | {fmt(t.get('http_500'))} | {t.get('outcome', '—')} |")
    tot = faults.get("totals") or {}
    rows.append(f"| **total** | {fmt(tot.get('faults_injected'))} | {fmt(tot.get('recoveries'))} | "
                f"{fmt(tot.get('inputs_tried'))} | {fmt(tot.get('http_500'))} | |")
    return [f"Recorded {faults.get('updated', '?')}; the suite runs in CI (`pytest -m fault`).", "\n".join(rows)]


def render(results_file: Path, out: Path, soak_file: Path | None = None,
           plots_dir: Path | None = None, faults_file: Path | None = None) -> dict[str, Any]:
    """Write the Markdown report (and its plots); return {"markdown": path, "plots": [paths]}."""
    data = json.loads(Path(results_file).read_text())
    soak = json.loads(Path(soak_file).read_text()) if soak_file else None
    results: dict[str, Any] = data.get("results") or {}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plots_dir = Path(plots_dir) if plots_dir else out.parent / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    rel = lambda p: Path(os.path.relpath(p, out.parent)).as_posix()  # noqa: E731
    src = _show(results_file)
    report_cmd = f"python main.py bench report {src} --out {_show(out)}" + (
        f" --soak {_show(soak_file)}" if soak_file else "")
    plots: list[Path] = []

    md: list[str] = ["# Vigil benchmarks", ""]
    m = data.get("machine") or {}
    md += [f"Results: `{src}`, started {data.get('started', '?')}, git `{data.get('git') or 'unknown'}`"
           f"{', **quick** sizes' if data.get('quick') else ''}; benchmarks took "
           f"{fmt(data.get('total_seconds'))} s in all.", "",
           "## Machine", "",
           table(["", ""], [["CPU", m.get("cpu") or m.get("cpu_model")], ["cores", m.get("cores")],
                            ["platform", m.get("platform")],
                            ["python", get(m, "versions.python")],
                            *[[k, v] for k, v in (m.get("packages") or {
                                k: v for k, v in (m.get("versions") or {}).items() if k != "python"}).items()]]),
           ""]
    la = data.get("load_avg_1m") or {}
    if la:
        md += ["The machine may be shared: 1-minute load average before / after each benchmark "
               f"({m.get('cores', '?')} cores): "
               + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in la.items()) + ".", ""]

    md += ["## Goals", "", table(["goal", "target", "measured", "result"], goals(results, soak)), "",
           "Every figure is measured against its baseline in the same run (ratios) and is a median "
           "of several runs or frames; see each benchmark below.", ""]

    for name, title, fn in [*SECTIONS, *_module_sections(results)]:
        res = results.get(name)
        md += [f"## {title}", ""]
        why = not_run(res)
        if why is not None:
            md += [f"not run: {why}", "", _repro([f"python main.py bench {name} --json"]), ""]
            continue
        try:
            body = fn(res)
        except Exception as e:  # noqa: BLE001 - one odd result must not lose the whole report
            body = [f"could not render: {type(e).__name__}: {e}"]
        for part in body:
            md += [part, ""]
        fig: Path | None = None
        try:
            if name == "latency":
                fig = plots_dir / "latency.png"
                fig = fig if plot_latency(res, fig) else None
            elif name == "viewers":
                fig = plots_dir / "viewers_fps.png"
                fig = fig if plot_viewers(res, fig) else None
            elif name == "detectors":
                fig = plots_dir / "detectors.png"
                fig = fig if plot_detectors(res, fig) else None
        except Exception as e:  # noqa: BLE001
            md += [f"(plot failed: {type(e).__name__}: {e})", ""]
            fig = None
        if fig is not None:
            plots.append(fig)
            md += [f"![{title}]({rel(fig)})", ""]
        md += [_repro([_cmd(res, name), report_cmd] if fig else [_cmd(res, name)]), ""]

    md += ["## Soak", ""]
    if soak is None:
        md += ["not run: no soak result given (`--soak SOAK.json`)", "",
               _repro(["python main.py bench soak --minutes 30 --out bench/results/soak.json"]), ""]
    else:
        try:
            body = sec_soak(soak)
        except Exception as e:  # noqa: BLE001
            body = [f"could not render: {type(e).__name__}: {e}"]
        for part in body:
            md += [part, ""]
        figs = plot_soak(soak, plots_dir / "soak_rss.png", plots_dir / "soak_fps.png")
        plots += figs
        md += [f"![soak]({rel(f)})" for f in figs] + [""]
        md += [_repro([f"python main.py bench soak --minutes {fmt(soak.get('minutes'))} --warmup-s "
                       f"{fmt(soak.get('warmup_s'))} --sample-s {fmt(soak.get('sample_s'))} --out "
                       f"{_show(soak_file)}", report_cmd]), ""]

    md += ["## Fault suite", ""]
    if faults_file is None or not Path(faults_file).is_file():
        md += ["not run: no fault summary given (`--faults test-artifacts/fault-summary.json`)", ""]
    else:
        md += sec_faults(json.loads(Path(faults_file).read_text())) + [""]
        md += [_repro(["python -m pytest tests/fault -m fault  # writes test-artifacts/fault-summary.json"]), ""]

    md += ["## Reproduce everything", "",
           _repro([f"python main.py bench all{' --quick' if data.get('quick') else ''} --out {src}",
                   report_cmd]), ""]
    out.write_text("\n".join(md))
    return {"markdown": str(out), "plots": [str(p) for p in plots]}
