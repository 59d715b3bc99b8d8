"""The README is tested (issue 11).

Every `python main.py ...` / `main.py ...` / `make ...` command that README.md documents (the
"Command line" table, the "Measured numbers" table, inline code spans and `$ ` / `make` lines in
code blocks) is parsed out of the README itself, so a newly documented command or option is
covered without touching this file:

1. every distinct subcommand (`bench NAME` expanded to every benchmark name the README lists)
   answers `--help` with exit 0 and lists every `--option` the README shows for it; a bogus
   option is a readable error (non-zero exit, no traceback), as the README promises;
2. the cheap commands run for real, as written, with the README's placeholders (DET.txt, GT.txt,
   CLIP, INPUT, PATH, FILE.json, out.mp4, tracks.txt, `…`, N, NAME, ...) replaced by small real
   inputs, and the figures the README quotes (TUD-Stadtmitte MOTA / IDF1, the scorer oracle, the
   appearance ids) are checked against what the command prints; `make` targets are checked with
   `make -n`;
3. a meta-check that enough commands were found and every Command-line row was covered, so a
   README reformat cannot silently make this test test nothing.

Real data (../shared/data) and assets skip with a reason when absent, fail under VIGIL_CI=1.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pytest

from tests.conftest import ROOT, data_file

README = ROOT / "README.md"
README_TEXT = README.read_text(encoding="utf-8")
PYTHON = sys.executable  # the venv's python when run as `.venv/bin/python -m pytest`

TUD = "mot/MOT15/TUD-Stadtmitte"
PETS_DET = "mot/MOT15/PETS09-S2L1/det/det.txt"
VTEST = "video/opencv/vtest.avi"

# The floor a README reformat must not fall under (the README may add more, never fewer).
KNOWN_SUBCOMMANDS = {"run", "check-config", "schema", "assets", "process", "eval-mot", "bench"}
KNOWN_BENCHES = {"pipeline", "latency", "viewers", "detectors", "tracker", "ocr", "overlay",
                 "defects", "all", "report", "soak"}
KNOWN_MAKE_TARGETS = {"run", "test", "gpu"}


# ============================================================================ README parsing
@dataclass(frozen=True)
class Cmd:
    """One documented command. `args` are the words after `main.py` (or after `make`)."""
    kind: str                     # "main" or "make"
    text: str                     # as in the README, whitespace normalised, `\\|` unescaped
    args: tuple[str, ...]
    where: str                    # heading of the README section it is in
    row: str | None = None        # the whole table row, when it sits in a table
    extra_options: tuple[str, ...] = ()   # options named in the row's other code spans
    bench_names: tuple[str, ...] = ()     # for `bench NAME`: the names that row lists
    lead: bool = False            # the first code span of a table row (its command column)


def _clean(word: str) -> str:
    """`[--config` -> `--config`, `F]` -> `F`, `[run]` -> `run`, `on|off]` -> `on|off`."""
    return word.strip("[]()").rstrip(",;:")


def _options(words: Iterable[str]) -> list[str]:
    out = []
    for w in words:
        w = _clean(w).split("=", 1)[0]
        if re.fullmatch(r"--[a-z][a-z0-9-]*", w):
            out.append(w)
    return out


def _split_cells(row: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def _commands_in(span: str) -> list[tuple[str, tuple[str, ...], str]]:
    """(kind, args, text) for each command in a code span (`a && b` is two commands)."""
    out = []
    span = " ".join(span.replace("\\|", "|").split())
    for part in span.split("&&"):
        part = part.strip()
        if part.startswith("$ "):
            part = part[2:].strip()
        words = part.split()
        if words[:2] == ["python", "main.py"]:
            out.append(("main", tuple(words[2:]), part))
        elif words[:1] == ["main.py"] and len(words) > 1:
            out.append(("main", tuple(words[1:]), part))
        elif words[:1] == ["make"] and len(words) > 1:
            out.append(("make", tuple(words[1:]), part))
    return out


def parse_readme(text: str) -> list[Cmd]:
    lines = text.splitlines()
    prose: list[str] = []
    heading_at: list[str] = []
    fenced: list[tuple[str, str]] = []   # (heading, line)
    heading, in_fence = "", False
    for ln in lines:
        if ln.lstrip().startswith("```"):
            in_fence = not in_fence
            prose.append("")
        elif in_fence:
            fenced.append((heading, ln))
            prose.append("")
        else:
            if ln.startswith("#"):
                heading = ln.lstrip("#").strip()
            prose.append(ln)
        heading_at.append(heading)

    cmds: list[Cmd] = []
    # code blocks: `$ python main.py ...` transcripts and `make X   # comment` lines
    for head, ln in fenced:
        ln = ln.split(" #", 1)[0].strip()
        if ln.startswith(("$ ", "make ", "python main.py ")):
            for kind, args, t in _commands_in(ln):
                cmds.append(Cmd(kind, t, args, head))
    # inline code spans anywhere else (tables included; spans may wrap lines)
    joined = "\n".join(prose)
    for m in re.finditer(r"`([^`]+)`", joined):
        lineno = joined.count("\n", 0, m.start())
        line = prose[lineno]
        in_table = line.lstrip().startswith("|")
        row = line if in_table else None
        extra: tuple[str, ...] = ()
        names: tuple[str, ...] = ()
        lead = False
        if in_table:
            spans = [s.replace("\\|", "|") for s in re.findall(r"`([^`]+)`", line)]
            this = m.group(1).replace("\\|", "|")
            lead = bool(spans) and spans[0] == this and _split_cells(line)[0].startswith("`")
            others = [s for s in spans if s != this]
            # `--check`, `--tracks FILE` in a row's description are options of that row's command
            # (`pip download --no-deps` is not: it does not start with an option)
            extra = tuple(_options(w for s in others if s.startswith("--") for w in s.split()))
            names = tuple(s for s in others if re.fullmatch(r"[a-z][a-z0-9-]*", s))
        for kind, args, t in _commands_in(m.group(1)):
            cmds.append(Cmd(kind, t, args, heading_at[lineno], row, extra, names, lead))
    return cmds


COMMANDS = parse_readme(README_TEXT)
MAIN_CMDS = [c for c in COMMANDS if c.kind == "main"]
MAKE_CMDS = list({c.text: c for c in reversed([c for c in COMMANDS if c.kind == "make"])}.values())[::-1]
TABLE_CMDS = [c for c in MAIN_CMDS if c.where == "Command line" and c.lead]  # its table's rows
BENCH_NAME_LIST = sorted({n for c in TABLE_CMDS if c.args[:2] == ("bench", "NAME") for n in c.bench_names})


def keys_of(cmd: Cmd) -> list[tuple[str, ...]]:
    """The subcommand(s) a command exercises: ("run",), ("eval-mot",), ("bench", "overlay")."""
    words = [_clean(w) for w in cmd.args]
    words = [w for w in words if w]
    if not words or words[0].startswith("-"):
        return [("run",)]  # `run` is the default command
    if words[0] == "bench":
        name = words[1] if len(words) > 1 else ""
        if name == "NAME":
            return [("bench", n) for n in (cmd.bench_names or BENCH_NAME_LIST)]
        return [("bench", name)]
    return [(words[0],)]


def _collect() -> dict[tuple[str, ...], dict[str, list[str]]]:
    """subcommand -> {option: [README commands that show it]} (options may be empty)."""
    subs: dict[tuple[str, ...], dict[str, list[str]]] = {}
    for c in MAIN_CMDS:
        for key in keys_of(c):
            opts = subs.setdefault(key, {})
            for o in [*_options(c.args), *c.extra_options]:
                opts.setdefault(o, []).append(c.text)
    return subs


SUBCOMMANDS = _collect()


# ============================================================================ running
def _tail(s: str, n: int = 2500) -> str:
    return s if len(s) <= n else "..." + s[-n:]


def run_main(args: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [PYTHON, "main.py", *map(str, args)]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"timed out after {timeout} s: {shlex.join(cmd)}\nstderr tail:\n"
                    f"{_tail((e.stderr or b'').decode(errors='replace') if isinstance(e.stderr, bytes) else (e.stderr or ''))}")


def explain(r: subprocess.CompletedProcess, readme: str | None = None) -> str:
    cmd = shlex.join(map(str, r.args))
    return ((f"\nREADME: {readme}" if readme else "") + f"\nran:    {cmd}\nexit:   {r.returncode}\n"
            f"stderr tail:\n{_tail(r.stderr)}\nstdout tail:\n{_tail(r.stdout, 1200)}")


def expect_ok(r: subprocess.CompletedProcess, readme: str | None = None) -> None:
    assert r.returncode == 0, "command failed" + explain(r, readme)
    assert "Traceback" not in r.stderr, "traceback on stderr" + explain(r, readme)


_PLACEHOLDER = re.compile(r"…|\.\.\.|\||\b[A-Z][A-Z0-9_]*\b")
_PLACEHOLDER_FILES = {"out.mp4", "tracks.txt"}


def is_placeholder(word: str) -> bool:
    return bool(_PLACEHOLDER.search(word)) or word in _PLACEHOLDER_FILES


def materialize(cmd: Cmd, values: dict[str, str], drop: Iterable[str] = (),
                extra: Sequence[str] = ()) -> list[str]:
    """The README command's words with placeholders filled from `values` (keyed by the option
    whose value it is, or by the positional placeholder itself); literal words are kept unless
    `values` overrides them (e.g. an --out that would write into the repository). Options in
    `drop` (optional ones the README brackets) are left out; `extra` is appended."""
    words = [w for w in (_clean(w) for w in cmd.args) if w]
    drop = set(drop)
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w.startswith("--"):
            opt = w.split("=", 1)[0]
            val = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else None
            i += 2 if val is not None else 1
            if opt in drop:
                continue
            out.append(opt)
            if val is not None:
                if opt in values:
                    val = values[opt]
                elif is_placeholder(val):
                    raise AssertionError(f"test bug: no value for {opt} {val} in `{cmd.text}`")
                out.append(val)
        else:
            i += 1
            if w in values:
                out.append(values[w])
            elif is_placeholder(w):
                raise AssertionError(f"test bug: no value for {w} in `{cmd.text}`")
            else:
                out.append(w)
    return [*out, *extra]


def find_cmd(key: tuple[str, ...], options: Iterable[str] = (), *, where: str | None = None,
             contains: str | None = None) -> Cmd:
    """The first README command for `key` showing all `options` (fails if the README lost it)."""
    options = set(options)
    for c in MAIN_CMDS:
        if key in keys_of(c) and options <= set(_options(c.args)) \
                and (where is None or c.where == where) and (contains is None or contains in c.text):
            return c
    pytest.fail(f"README no longer documents a `main.py {' '.join(key)}` command with "
                f"{sorted(options)}" + (f" in '{where}'" if where else "")
                + (f" containing {contains!r}" if contains else "") + ": update the README or this test")


def measured_row(cmd: Cmd) -> tuple[str, str, str]:
    """(what, measured, goal) of the Measured-numbers row a command sits in."""
    assert cmd.row is not None and cmd.where == "Measured numbers", cmd
    cells = _split_cells(cmd.row)
    assert len(cells) >= 4, f"Measured-numbers row has changed shape: {cmd.row}"
    return cells[0], cells[1].replace("*", ""), cells[2]


def numbers(s: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+(?:\.\d+)?", s.replace(",", ""))]


def decimals(s: str) -> int:
    return len(s.split(".", 1)[1]) if "." in s else 0


def last_json(stdout: str) -> dict:
    """The JSON object a command printed (the whole stdout, or its last JSON line)."""
    try:
        obj = json.loads(stdout)
    except json.JSONDecodeError:
        obj = None
        for line in reversed(stdout.strip().splitlines()):
            if line.strip().startswith("{"):
                try:
                    obj = json.loads(line)
                    break
                except json.JSONDecodeError:
                    pass
    assert isinstance(obj, dict), f"no JSON object on stdout:\n{_tail(stdout)}"
    return obj


# ============================================================================ 1. --help
@pytest.mark.parametrize("key", sorted(SUBCOMMANDS), ids=lambda k: "-".join(k))
def test_help_lists_documented_options(key):
    r = run_main([*key, "--help"], timeout=60)
    expect_ok(r, f"`{' '.join(key)}` ({len(SUBCOMMANDS[key])} documented options)")
    assert "usage" in r.stdout.lower(), "no usage line in --help" + explain(r)
    missing = {o: cmds for o, cmds in SUBCOMMANDS[key].items()
               if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", r.stdout)}
    assert not missing, (
        f"`main.py {' '.join(key)} --help` does not list the options the README shows for it: "
        + "; ".join(f"{o} (README: `{cmds[0]}`)" for o, cmds in sorted(missing.items())) + explain(r))


@pytest.mark.parametrize("key", sorted(SUBCOMMANDS), ids=lambda k: "-".join(k))
def test_bad_option_is_a_readable_error(key):
    """README: "Errors are one readable message on stderr and a non-zero exit, never a traceback"."""
    r = run_main([*key, "--no-such-option-xyz"], timeout=60)
    assert r.returncode != 0, "a bogus option was accepted" + explain(r)
    assert "Traceback" not in r.stderr and r.stderr.strip(), "not a readable error" + explain(r)


# ============================================================================ 2. real runs
def test_check_config_shipped_config_is_ok():
    c = find_cmd(("check-config",), where="Command line")
    r = run_main(materialize(c, {"PATH": "config.yaml"}), timeout=60)
    expect_ok(r, c.text)
    assert r.stdout.strip() == "ok", "check-config on config.yaml did not print `ok`" + explain(r, c.text)


def _transcript(command: str) -> list[str]:
    """The output lines shown after `$ COMMAND` in a README code block."""
    block = re.search(rf"^\$ {re.escape(command)}\n(.*?)^```", README_TEXT, re.MULTILINE | re.DOTALL)
    assert block, f"README has no `$ {command}` transcript any more"
    return [ln.strip() for ln in block.group(1).splitlines() if ln.strip()]


def test_check_config_bad_file_names_the_keys(tmp_path):
    import yaml
    c = next((c for c in MAIN_CMDS if c.args[:1] == ("check-config",) and "bad.yaml" in c.args), None)
    assert c, "README no longer shows the `$ python main.py check-config bad.yaml` example"
    expected = _transcript(c.text.removeprefix("$ "))
    # The README's example: cameras[0].detect_every = 0 and an unknown key cameras[0].bogus
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["cameras"][0]["detect_every"] = 0
    data["cameras"][0]["bogus"] = 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, sort_keys=False))
    r = run_main(materialize(c, {"bad.yaml": str(bad)}), timeout=60)
    assert r.returncode == 2, "a bad config must exit 2" + explain(r, c.text)
    assert "Traceback" not in r.stderr, explain(r, c.text)
    shown = [ln.strip() for ln in (r.stdout + r.stderr).splitlines()]
    for line in expected:
        want = line.replace("bad.yaml", str(bad))
        assert want in shown, f"README shows the line {line!r}; output lacks it" + explain(r, c.text)


def test_schema_prints_json_with_every_documented_section():
    c = find_cmd(("schema",), where="Command line")
    r = run_main(materialize(c, {}), timeout=60)
    expect_ok(r, c.text)
    schema = json.loads(r.stdout)
    props = set(schema.get("properties", {}))
    para = re.search(r"^Sections: (.*?)\n\n", README_TEXT, re.MULTILINE | re.DOTALL)
    assert para, "README's `Sections:` paragraph is gone"
    top = re.sub(r"\([^()]*\)", "", para.group(1))  # what is in parentheses are sub-keys
    sections = re.findall(r"`([a-z_]+)`", top)
    assert len(sections) >= 5, f"parsed too few sections from the README: {sections}"
    assert set(sections) <= props, f"sections the README names but the schema lacks: {set(sections) - props}"


def test_assets_check(models_dir, samples_dir):
    c = find_cmd(("assets",), ["--check", "--models", "--samples"], where="Command line")
    r = run_main(materialize(c, {"--models": str(models_dir), "--samples": str(samples_dir)}), timeout=90)
    expect_ok(r, c.text)


def test_run_rejects_a_bad_port_without_starting():
    """The `run` row with every option filled; an out-of-range port is refused naming --port
    (starting the dashboard itself is covered by test_run_signal.py)."""
    c = find_cmd(("run",), ["--config", "--source", "--port", "--host"], where="Command line")
    args = materialize(c, {"--config": "config.yaml", "--source": "synthetic:crossing",
                           "--port": "70000", "--host": "127.0.0.1"})
    r = run_main(args, timeout=60)
    assert r.returncode != 0, "port 70000 accepted" + explain(r, c.text)
    assert "--port" in r.stderr and "Traceback" not in r.stderr, explain(r, c.text)


def test_eval_mot_tud_stadtmitte_matches_readme():
    c = find_cmd(("eval-mot",), ["--det", "--gt", "--json"], where="Measured numbers")
    what, measured, _goal = measured_row(c)
    assert "MOTA / IDF1 / ID switches" in what, f"row changed shape: {c.row}"
    figures = re.findall(r"\d+(?:\.\d+)?", measured)[:3]
    det, gt = data_file(f"{TUD}/det/det.txt"), data_file(f"{TUD}/gt/gt.txt")
    r = run_main(materialize(c, {"--det": str(det), "--gt": str(gt)}))
    expect_ok(r, c.text)
    res = last_json(r.stdout)
    assert {"mota", "idf1"} <= set(res), f"JSON lacks mota/idf1: {sorted(res)}"
    for name, fig in zip(("mota", "idf1", "id_switches"), figures):
        got = round(float(res[name]), decimals(fig))
        assert got == float(fig), f"README says {name} {fig}, command gives {res[name]}" + explain(r, c.text)


def test_eval_mot_scorer_oracle_matches_readme():
    c = find_cmd(("eval-mot",), ["--tracks", "--gt"], where="Measured numbers")
    what, measured, _goal = measured_row(c)
    oracle_name = re.search(r"\(([\w.]+\.txt)\)", what)
    assert oracle_name, f"row no longer names the oracle file: {c.row}"
    tracks = data_file(f"{TUD}/reference_tracker_output/{oracle_name.group(1)}")
    gt = data_file(f"{TUD}/gt/gt.txt")
    values = {"--tracks": str(tracks), "--gt": str(gt)}
    plain = run_main(materialize(c, values))  # as written: a table
    expect_ok(plain, c.text)
    assert "idf1" in plain.stdout.lower() and "mota" in plain.stdout.lower(), explain(plain, c.text)
    r = run_main(materialize(c, values, extra=["--json"] if "--json" not in c.args else []))
    expect_ok(r, c.text)
    res = last_json(r.stdout)
    for name in ("IDF1", "MOTA"):
        m = re.search(rf"{name} (\d+\.\d+)", measured)
        assert m, f"README row lacks the {name} figure: {c.row}"
        got = round(float(res[name.lower()]), decimals(m.group(1)))
        assert got == float(m.group(1)), f"README: {name} {m.group(1)}; scorer: {res[name.lower()]}"


def test_eval_mot_appearance_on_off_matches_readme():
    """`eval-mot --video … --appearance on|off` on vtest + PETS09 det (the row's own words; the
    README command omits --det, which the row's description names)."""
    c = find_cmd(("eval-mot",), ["--video", "--appearance"], where="Measured numbers")
    _what, measured, _goal = measured_row(c)
    m = re.search(r"(\d+) / (\d+\.\d+) with dHash vs (\d+) / (\d+\.\d+) without", measured)
    assert m, f"row changed shape: {c.row}"
    det, video = data_file(PETS_DET), data_file(VTEST)
    expected = {"on": (m.group(1), m.group(2)), "off": (m.group(3), m.group(4))}
    for mode, (ids, length) in expected.items():
        args = materialize(c, {"--video": str(video), "--appearance": mode},
                           extra=["--det", str(det), "--json"])
        r = run_main(args)
        expect_ok(r, c.text)
        res = last_json(r.stdout)
        assert int(res["ids"]) == int(ids), f"appearance {mode}: README {ids} ids, got {res['ids']}"
        got = round(float(res["mean_track_length"]), decimals(length))
        assert got == float(length), f"appearance {mode}: README mean length {length}, got {got}"


def test_process_short_clip_writes_everything(tmp_path, models_dir):
    c = find_cmd(("process",), ["--output", "--tracks", "--json", "--max-frames"], where="Command line")
    clip = data_file(VTEST)
    out, tracks = tmp_path / "tmp.mp4", tmp_path / "tmp.txt"
    values = {"INPUT": str(clip), "--detector": "yolo", "--every-n": "2", "--max-frames": "20",
              "--output": str(out), "--tracks": str(tracks)}
    r = run_main(materialize(c, values), timeout=120)
    expect_ok(r, c.text)
    res = last_json(r.stdout)
    assert res.get("frames") == 20, f"--max-frames 20 processed {res.get('frames')} frames"
    assert out.is_file() and out.stat().st_size > 1000, f"--output {out} not written"
    assert out.read_bytes()[4:8] == b"ftyp", "--output is not an mp4"
    try:
        import av
    except ImportError:
        av = None
    if av is not None:
        with av.open(str(out)) as cont:
            st = cont.streams.video[0]
            assert st.codec_context.name == "h264"
            assert sum(1 for _ in cont.decode(st)) == 20
    assert tracks.is_file(), f"--tracks {tracks} not written"
    rows = [ln.split(",") for ln in tracks.read_text().splitlines() if ln.strip()]
    assert rows, "no tracks on 20 frames of vtest (people in every frame)"
    assert all(len(row) == 10 for row in rows), "tracks file is not MOTChallenge (10 fields)"


def test_process_synthetic_conveyor_readme_example():
    c = next((c for c in MAIN_CMDS if c.args[:2] == ("process", "synthetic:conveyor")), None)
    assert c, "README no longer shows `python main.py process synthetic:conveyor ...`"
    after = README_TEXT.replace("\n", " ").split(c.text, 1)
    assert len(after) == 2, c.text
    keys = re.findall(r"`([a-z_]+)`", after[1].split(". ", 1)[0])
    assert len(keys) >= 3, f"README lists too few summary keys after the example: {keys}"
    r = run_main(materialize(c, {}), timeout=150)  # ~10 s measured on the 2-core VM
    expect_ok(r, c.text)
    res = last_json(r.stdout)
    missing = [k for k in keys if k not in res]
    assert not missing, f"README says the summary adds {keys}; missing: {missing}"
    assert res["parts"] == res["parts_true"], f"parts {res['parts']} vs truth {res['parts_true']}"
    for k in ("defect_precision", "defect_recall", "label_read_rate"):
        if k in res:
            assert 0.0 <= float(res[k]) <= 1.0, (k, res[k])


def test_bench_overlay_quick_prints_one_json_object():
    c = find_cmd(("bench", "overlay"), where="Measured numbers")
    # --json from the Command-line row `bench NAME [--json]`; small sizes to keep it quick
    r = run_main(materialize(c, {}, extra=["--json", "--frames", "20", "--repeats", "1"]), timeout=90)
    expect_ok(r, c.text)
    try:
        res = json.loads(r.stdout)
    except json.JSONDecodeError:
        pytest.fail("README: benchmarks print one JSON object; stdout is not exactly that" + explain(r))
    assert isinstance(res, dict) and "full_ms" in res.get("median_ms", {}), res


def _fake_soak() -> dict:
    from bench.soak import verdicts
    series = [{"t": 10.0 * i, "rss_mb": 400.0 + 0.1 * i, "threads": 66, "fds": 26,
               "cpu_percent": 50.0, "load_1m": 1.0,
               "cameras": {"street": {"source_fps": 25.0, "published_fps": 25.0,
                                      "latency_p50_ms": 20.0, "latency_p95_ms": 40.0, "dropped": 0}}}
              for i in range(13)]
    client = {"streams": [{"path": "/stream/street.mjpg", "status": 200, "bytes": 10, "parts": 300,
                           "closed_early": False, "max_gap_s": 0.3}],
              "api": {"ok": 100, "errors": 0, "last_error": None}}
    return {"benchmark": "soak", "minutes": 2, "warmup_s": 30.0, "sample_s": 10.0,
            "cameras": ["street"], "viewer_paths": ["/stream/street.mjpg"], "api_poll_s": 1.0,
            "series": series, "client": client, "verdicts": verdicts(series, 30.0, client=client)}


def test_bench_all_then_report_chain(tmp_path):
    """The Measured-numbers recipe `bench all --out X && bench report X --out BENCHMARKS.md
    --soak S`, with --quick (Command-line row) and --only overlay to keep it to seconds; the
    outputs go to a temporary folder, never over the repository's BENCHMARKS.md."""
    chain = [c for c in MAIN_CMDS if c.where == "Measured numbers" and c.row is None
             and c.args[:1] == ("bench",)]
    all_cmd = next((c for c in chain if c.args[:2] == ("bench", "all")), None)
    rep_cmd = next((c for c in chain if c.args[:2] == ("bench", "report")), None)
    assert all_cmd and rep_cmd, "README lost its `bench all ... && bench report ...` recipe"
    results = tmp_path / "full.json"
    r = run_main(materialize(all_cmd, {"--out": str(results)},
                             extra=["--quick", "--only", "overlay"]), timeout=150)
    expect_ok(r, all_cmd.text)
    data = json.loads(results.read_text())
    assert "full_ms" in data["results"]["overlay"].get("median_ms", {}), data["results"]["overlay"]

    soak = tmp_path / "soak.json"
    soak.write_text(json.dumps(_fake_soak()))
    md = tmp_path / "BENCHMARKS.md"
    report_file = next(w for w in rep_cmd.args[2:] if not w.startswith("--"))
    r = run_main(materialize(rep_cmd, {report_file: str(results), "--out": str(md), "--soak": str(soak)}),
                 timeout=120)
    expect_ok(r, rep_cmd.text)
    text = md.read_text()
    assert "## Goals" in text and "overlay" in text.lower(), _tail(text)
    assert list((tmp_path / "plots").glob("*.png")), "no PNG plots next to the report"


def test_bench_report_command_line_row(tmp_path):
    """`bench report FILE.json [--out BENCHMARKS.md] [--soak SOAK.json]` on a tiny results file."""
    c = find_cmd(("bench", "report"), ["--out", "--soak"], where="Command line")
    res = tmp_path / "r.json"
    res.write_text(json.dumps({"machine": {"cores": 2, "cpu": "test", "platform": "test",
                                           "versions": {"python": "3"}}, "results": {}}))
    soak = tmp_path / "soak.json"
    soak.write_text(json.dumps(_fake_soak()))
    md = tmp_path / "out" / "B.md"
    r = run_main(materialize(c, {"FILE.json": str(res), "--out": str(md), "--soak": str(soak)}), timeout=120)
    expect_ok(r, c.text)
    assert md.is_file() and "## Goals" in md.read_text()


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
@pytest.mark.parametrize("cmd", MAKE_CMDS, ids=lambda c: c.text)
def test_make_target_exists(cmd):
    """`make -n` only: the documented targets exist (nothing is installed, served or tested)."""
    r = subprocess.run(["make", "-n", *cmd.args], capture_output=True, text=True, cwd=ROOT, timeout=60,
                       check=False)
    assert r.returncode == 0, f"`{cmd.text}` ({cmd.where}) is not a working make target" + explain(r)
    for arg in cmd.args:
        if "=" in arg:  # a documented variable must reach the recipe (`make run CONFIG=my.yaml`)
            assert arg.split("=", 1)[1] in r.stdout, f"`{cmd.text}`: {arg} not used" + explain(r)


# ============================================================================ 3. meta
def test_readme_parse_found_the_commands():
    assert len(COMMANDS) >= 10, f"only {len(COMMANDS)} commands parsed out of README.md"
    assert len(TABLE_CMDS) >= 8, f"Command line table: only {len(TABLE_CMDS)} rows parsed"
    table_keys = {k for c in TABLE_CMDS for k in keys_of(c)}
    assert KNOWN_SUBCOMMANDS <= {k[0] for k in table_keys}, \
        f"Command line table lost subcommands: {KNOWN_SUBCOMMANDS - {k[0] for k in table_keys}}"
    assert KNOWN_BENCHES <= {k[1] for k in table_keys if k[0] == "bench"}, \
        f"benchmarks missing from the table: {KNOWN_BENCHES - {k[1] for k in table_keys if k[0] == 'bench'}}"
    # every Command-line row's subcommand is one the --help test runs
    assert table_keys <= set(SUBCOMMANDS)
    # every `bench X` named anywhere in the README is one the table lists
    named = {k for k in SUBCOMMANDS if k[0] == "bench"}
    assert named <= table_keys, f"benchmarks in the README but not in the table: {named - table_keys}"
    total = sum(len(v) for v in SUBCOMMANDS.values())
    assert total >= 20, f"only {total} documented options found"
    assert KNOWN_MAKE_TARGETS <= {c.args[0] for c in MAKE_CMDS}, [c.text for c in MAKE_CMDS]
    assert len(BENCH_NAME_LIST) >= 8, f"`bench NAME` row lists only {BENCH_NAME_LIST}"
    assert ("bench", "NAME") not in SUBCOMMANDS and ("bench", "") not in SUBCOMMANDS
