"""Hostile files and signals: the surfaces beyond the command line (``--surfaces`` of
``python -m experiments.hostile_inputs``).

Each generator takes ``rnd`` and a fresh case folder and returns a :class:`FileCase`: a function
that runs the surface (in this process, through the code a user's command runs), whether the
input is valid (True: must succeed; False: must be one clean error; None: either), and the
files outside the run folder that must not change (the targets of links planted in it).

Surfaces:

* ``journal``: a search's ``journal.jsonl`` (lines of the wrong shape, non-finite numbers, deep
  nesting, torn or binary lines, a link out of the folder, a FIFO or folder in its place), read by
  ``python -m nas.search --resume``; and NetAdapt's journal reader on the same kind of lines;
* ``config``: a search's ``config.json`` / ``searcher.json`` of the wrong type or shape (the
  resume), and pipeline config YAMLs (``experiments.pipeline.config.load_config``);
* ``data``: ``--data imagefolder:DIR`` folders (empty classes, FIFOs, folders named like
  images, zero-byte and truncated images, links), checked by ``nas.search --dry-run``;
* ``fidelity``: networks CSVs for ``experiments.benchmarks.proxy_fidelity`` (BOM, duplicate
  rows, ``224.0``, huge fields, FIFO);
* ``table``: a latency table CSV and its provenance (lists, non-numeric corrections, unknown
  statistics, parse errors, FIFOs), read by ``latency.load_table``;
* ``signal``: SIGINT / SIGTERM at a random moment of a tiny real search (a subprocess).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
TINY = {"max_steps": 2, "batch_size": 16, "bn_recalibration_batches": 1, "resolution": 32}
SEARCH = ["--strategy", "random", "--references", "none", "--concurrency", "1", "--no-progress", "--seed", "0"]
SEARCH += [arg for key, value in TINY.items() for arg in ("--proxy", f"{key}={value}")]


@dataclass
class FileCase:
    surface: str
    why: str
    run: Callable[[], int]  # returns an exit status (0 ok, 2 refused); may raise
    valid: bool | None
    watched: dict = field(default_factory=dict)  # path outside the folder -> its bytes, which must not change
    folder: Path | None = None  # JSON files under it must hold no bare NaN / Infinity afterwards


# --------------------------------------------------------------------------- hostile values and lines
def hostile_value(rnd: random.Random):
    return rnd.choice([None, True, "0.5", "", [], {}, [1], {"a": 1}, -1, 2**70, "x" * 5000, 1.5, 0, -0.0,
                       [[[[]]]], "NaN"])


def hostile_line(rnd: random.Random, good: dict) -> str:
    """One journal line a damaged disk, a hand edit or another run could leave."""
    kind = rnd.randrange(12)
    if kind == 0:
        return "{}"
    if kind == 1:
        key = rnd.choice(sorted(good))
        return json.dumps({**good, key: hostile_value(rnd)})
    if kind == 2:
        return json.dumps(good).replace(f'"reward": {json.dumps(good["reward"])}',
                                        f'"reward": {rnd.choice(["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])}')
    if kind == 3:
        depth = rnd.choice([100, 1000, 200_000])
        return rnd.choice(["[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth])
    if kind == 4:
        return json.dumps({**good, "sample": good["sample"] + [0] * rnd.randrange(1, 4)})
    if kind == 5:
        return json.dumps({**good, "sample": [99] * len(good["sample"])})
    if kind == 6:
        return "\ufeff" + json.dumps(good)
    if kind == 7:
        return rnd.choice(["null", "[]", '"text"', "3", "true", "garbage {", "\x00\x01\x02"])
    if kind == 8:
        return json.dumps({k: v for k, v in good.items() if rnd.random() < 0.5})
    if kind == 9:
        return json.dumps({**good, "index": rnd.choice([[1], -5, 1.5, "1", True, None])})
    if kind == 10:
        return json.dumps(good)[: rnd.randrange(1, 40)]  # a torn line, not the last one
    return json.dumps({**good, "extra": "x" * rnd.randrange(100, 100_000)})


# --------------------------------------------------------------------------- runners
def cli_main(module: str, argv: list[str]) -> Callable[[], int]:
    def run() -> int:
        import importlib

        main = importlib.import_module(module).main
        try:
            return main(argv) or 0
        except SystemExit as exit_:
            return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return run


def expect(call: Callable[[], object], errors: tuple) -> Callable[[], int]:
    """Run ``call``; an exception of ``errors`` with a one-line message is a clean refusal (2)."""
    def run() -> int:
        try:
            call()
        except errors as err:
            text = str(err)
            if "\n" in text or len(text) > 1000:
                raise RuntimeError(f"messy error message ({len(text)} chars): {text[:200]!r}") from None
            print(f"error: {text}", file=sys.stderr)
            return 2
        return 0
    return run


# --------------------------------------------------------------------------- templates
class Templates:
    """Run folders made once by real runs, copied for every case."""

    def __init__(self, work: Path):
        self.work = work
        self._search: Path | None = None

    def search(self) -> Path:
        """A finished 3-child tiny search (a real ``python -m nas.search`` run, ~1 minute)."""
        if self._search is None:
            out = self.work / "template-search"
            result = subprocess.run([sys.executable, "-m", "nas.search", "--out", str(out), "--children", "3", *SEARCH],
                                    cwd=ROOT, capture_output=True, text=True, timeout=900)
            if result.returncode != 0:
                raise RuntimeError(f"the template search failed: {result.stderr[-1000:]}")
            self._search = out
        return self._search


def _copy_run(templates: Templates, folder: Path) -> Path:
    out = folder / "run"
    shutil.copytree(templates.search(), out, ignore=shutil.ignore_patterns("ray", ".run.lock", "*.png"))
    return out


def _resume(out: Path) -> Callable[[], int]:
    # --children 1: a resume whose journal keeps one good child trains nothing.
    return cli_main("nas.search", ["--out", str(out), "--children", "1", "--resume", *SEARCH])


def _plant_link(path: Path, folder: Path) -> dict:
    """Make ``path`` a link to a file outside ``folder``; returns {target: bytes} to watch."""
    target = folder / "outside.txt"
    target.write_bytes(b"precious line\npartial line")
    if path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(target)
    return {target: target.read_bytes()}


def _replace_with(path: Path, what: str) -> None:
    if path.exists() or path.is_symlink():
        path.unlink() if not path.is_dir() else shutil.rmtree(path)
    if what == "fifo":
        os.mkfifo(path)
    elif what == "folder":
        path.mkdir()
    elif what == "device":
        path.symlink_to("/dev/zero")  # inside-out link to a device
    elif what == "empty":
        path.write_bytes(b"")


# --------------------------------------------------------------------------- surfaces
def journal_case(rnd: random.Random, folder: Path, templates: Templates) -> FileCase:
    out = _copy_run(templates, folder)
    journal = out / "journal.jsonl"
    lines = journal.read_text().splitlines()
    good = json.loads(lines[-1])
    choice = rnd.randrange(10)
    watched: dict = {}
    if choice == 0:
        watched = _plant_link(journal, folder)
        why, valid = "journal.jsonl links out of the folder", False
    elif choice == 1:
        what = rnd.choice(["fifo", "folder", "device"])
        _replace_with(journal, what)
        why, valid = f"journal.jsonl is a {what}", False
    else:
        bad = [hostile_line(rnd, good) for _ in range(rnd.randrange(1, 4))]
        at = [rnd.randrange(len(lines)) for _ in bad]  # the last good line always stays
        for position, line in sorted(zip(at, bad), key=lambda p: -p[0]):
            lines.insert(position, line)
        journal.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + b"\n")
        why, valid = f"{len(bad)} hostile line(s): {bad[0][:60]!r}", None
    return FileCase("journal", why, _resume(out), valid, watched, out)


def netadapt_journal_case(rnd: random.Random, folder: Path, templates: Templates) -> FileCase:
    from jobs import Journal
    from netadapt.records import record_problem

    good = {"type": "proposal", "iteration": 1, "index": 0, "name": "p", "hash": "h", "latency_ms": 1.0,
            "cut_ms": 0.1, "status": "ok", "accuracy_before": 0.1, "accuracy_after": 0.2, "metric": 0.3,
            "weights": "proposals/iter_01/p00.pt", "reward": 0.0, "sample": [0, 1]}
    lines = [json.dumps(good)] + [hostile_line(rnd, good) for _ in range(rnd.randrange(1, 5))]
    path = folder / "journal.jsonl"
    path.write_text("\n".join(lines) + "\n")
    journal = Journal(path, check=record_problem)

    def run() -> int:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            records = journal.read()
        for record in records:  # what the run would then use: every field it reads has its type
            if record_problem(record):
                raise RuntimeError(f"a bad record was kept: {str(record)[:100]}")
        return 0
    return FileCase("journal", f"netadapt journal: {lines[1][:60]!r}", run, True)


def config_case(rnd: random.Random, folder: Path, templates: Templates) -> FileCase:
    out = _copy_run(templates, folder)
    name = rnd.choice(["config.json", "searcher.json"])
    path = out / name
    data = json.loads(path.read_text())
    choice = rnd.randrange(7)
    watched: dict = {}
    if choice == 0:
        text = rnd.choice(["[]", "null", '"x"', "3", "NaN", "{", "", "\ufeff{}", "[" * 100_000 + "]" * 100_000])
        why = f"{name} is {text[:20]!r}"
    elif choice == 1:
        key = rnd.choice(sorted(data))
        text = json.dumps({**data, key: hostile_value(rnd)})
        why = f"{name}: {key} set to a hostile value"
    elif choice == 2:
        text = json.dumps({k: v for k, v in data.items() if rnd.random() < 0.6})
        why = f"{name}: keys dropped"
    elif choice == 3:
        text = None
        watched = _plant_link(path, folder)
        why = f"{name} links out of the folder"
    elif choice == 4:
        text = None
        what = rnd.choice(["fifo", "folder"])
        _replace_with(path, what)
        why = f"{name} is a {what}"
    elif choice == 5 and name == "config.json":
        text = json.dumps({**data, "target_ms": rnd.choice([float("nan"), float("inf")])})
        why = "config.json: a bare non-finite target_ms"
    else:
        text = json.dumps(data).replace("0.", "1e400*", 1) if rnd.random() < 0.5 else json.dumps(data)[:-3]
        why = f"{name}: damaged text"
    if text is not None:
        path.write_text(text)
    return FileCase("config", why, _resume(out), None, watched, out)


PIPELINE_LINES = ["target_ms: .nan", "target_ms: .inf", "budget_ms: -.inf", "epochs: .nan", "unknown_key: 1",
                  "search: {children: .inf}", "search: [1, 2]", "netadapt: 3", "seed: {a: 1}", "network: small",
                  "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b]",
                  "x: 1\nx: 2", "[" * 200 + "]" * 200, "search:\n  children: 4\n  children: 5", "\x00binary",
                  "data: imagefolder:/nonexistent", "search: {children: 9999999999999999999999999999999999999999999}"]


def pipeline_config_case(rnd: random.Random, folder: Path, templates: Templates) -> FileCase:
    from experiments.pipeline.config import ConfigError, load_config

    path = folder / "config.yaml"
    choice = rnd.randrange(4)
    if choice == 0:
        _replace_with(path, rnd.choice(["fifo", "folder"]))
        why = "the config is not a file"
    else:
        text = "\n".join(rnd.sample(PIPELINE_LINES, rnd.randrange(1, 3)))
        path.write_text("network: large\n" + text + "\n")
        why = text[:60]
    return FileCase("config", f"pipeline config: {why!r}", expect(lambda: load_config("large", path), (ConfigError,)),
                    None)


def data_case(rnd: random.Random, folder: Path, templates: Templates) -> FileCase:
    from PIL import Image

    root = folder / "images"
    root.mkdir()
    valid: bool | None = None
    choice = rnd.randrange(8)
    classes = rnd.randrange(0, 4)
    for c in range(classes):
        (root / f"class{c}").mkdir()
        for i in range(rnd.randrange(0, 3)):
            Image.new("RGB", (rnd.randrange(1, 40), rnd.randrange(1, 40))).save(root / f"class{c}" / f"{i}.png")
    where = root / "class0" if classes else root
    if choice == 0:
        os.mkfifo(where / "x.png")
        why = "a FIFO named x.png"
    elif choice == 1:
        (where / "y.jpg").mkdir()
        why = "a folder named y.jpg"
    elif choice == 2:
        (where / "z.png").write_bytes(b"")
        why = "a zero-byte image"
    elif choice == 3:
        (where / "t.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(rnd.randrange(0, 200)))
        why = "a truncated PNG"
    elif choice == 4:
        (where / "loop").symlink_to(where)
        why = "a link loop"
    elif choice == 5:
        for i in range(rnd.randrange(50, 2000)):
            (root / f"empty{i}").mkdir()
        why = "many empty class folders"
    elif choice == 6:
        (root / "file.png").write_bytes(b"not a folder")
        why = "an image beside the class folders"
    else:
        valid = False if classes == 0 else None
        why = f"{classes} class folder(s)"
    if classes == 0 and choice in (5, 7):
        valid = False
    argv = ["--dry-run", "--data", f"imagefolder:{root}", "--out", str(folder / "run")]
    return FileCase("data", why, cli_main("nas.search", argv), valid)


FIDELITY_HEADER = "spec,width,resolution,top1"


def fidelity_case(rnd: random.Random, folder: Path, templates: Templates) -> FileCase:
    from experiments.benchmarks.proxy_fidelity import FidelityError, read_networks

    good = ["mobilenet_v3_large,1.0,224,75.2", "mobilenet_v3_small,1.0,224,67.4", "mobilenet_v2,1.0,224,72.0",
            "mnasnet_a1,1.0,224,75.2"]
    rows = list(good)
    header = FIDELITY_HEADER
    choice = rnd.randrange(9)
    path = folder / "networks.csv"
    why = ""
    if choice == 0:
        header, why = "\ufeff" + header, "a byte-order mark"
    elif choice == 1:
        rows.append(rnd.choice(good))
        why = "a duplicate row"
    elif choice == 2:
        rows[0] = "mobilenet_v3_large,1.0,224.0,75.2"
        why = "224.0"
    elif choice == 3:
        rows[0] = "mobilenet_v3_large,1.0,224," + "9" * rnd.choice([200, 131_072])
        why = "a huge field"
    elif choice == 4:
        rows[1] = rnd.choice(["x,1,224,50", "mobilenet_v3_small,nan,224,60", "mobilenet_v3_small,1,inf,60",
                              "mobilenet_v3_small,1,224,-1", ",,,", '"unterminated,1,224,60'])
        why = f"a bad row {rows[1]!r}"
    elif choice == 5:
        rows = rows * rnd.randrange(100, 5000)
        why = "many rows"
    elif choice == 6:
        _replace_with(path, rnd.choice(["fifo", "folder"]))
        why = "not a file"
    elif choice == 7:
        header, why = "spec;width;resolution;top1", "another separator"
    else:
        why = "valid"
    if choice != 6:
        path.write_text(header + "\n" + "\n".join(rows) + "\n")
    valid = True if choice in (0, 8) else None
    return FileCase("fidelity", why, expect(lambda: read_networks(path), (FidelityError,)), valid)


def table_case(rnd: random.Random, folder: Path, templates: Templates) -> FileCase:
    from latency import load_table

    path = folder / "t.csv"
    prov = folder / "t.provenance.json"
    rows = "op_key,median_ms,min_ms,overhead_ms\nk1,1.0,0.9,0.0\nk2,2.0,1.9,0.0\n"
    provenance = {"backend": "onnxruntime", "protocol": {"statistic": "median"}}
    choice = rnd.randrange(9)
    valid: bool | None = False
    if choice == 0:
        prov_text, why = rnd.choice(["[]", "[1, 2]", '"x"', "3", "null", "{", ""]), "provenance of the wrong type"
    elif choice == 1:
        correction = rnd.choice([[1], "fast", {"scale": "fast"}, {"scale": [1]}, {"offset_ms": {}}, 3,
                                 {"scale": 2**2000}])
        prov_text, why = json.dumps({**provenance, "network_correction": correction}), f"correction {correction!r:.40}"
    elif choice == 2:
        statistic = rnd.choice(["mean", "p90", None, 3, "", "MIN"])
        prov_text = json.dumps({**provenance, "protocol": {"statistic": statistic}})
        why = f"statistic {statistic!r}"
    elif choice == 3:
        prov_text = json.dumps(provenance)
        rows = rnd.choice(['op_key,median_ms\n"k,1\n', "\xff\xfe garbage", "", "a,b\n1,2\n", "op_key\n" + "k\n" * 5])
        why = f"table text {rows[:20]!r}"
    elif choice == 4:
        prov_text, why = json.dumps(provenance), "the table is a FIFO or folder"
        _replace_with(path, rnd.choice(["fifo", "folder"]))
        rows = None
    elif choice == 5:
        prov_text, why = None, "the provenance is a FIFO or folder"
        _replace_with(prov, rnd.choice(["fifo", "folder"]))
    elif choice == 6:
        prov_text = "[" * 100_000 + "]" * 100_000
        why = "provenance nested 100,000 deep"
    elif choice == 7:
        prov_text = json.dumps(provenance)
        rows = rows.replace("1.0", rnd.choice(["nan", "inf", "-1", "1e400", "x", ""]))
        why = "a bad latency"
    else:
        prov_text, why, valid = json.dumps(provenance), "valid", True
    if rows is not None and not path.exists():
        path.write_bytes(rows.encode("utf-8", "surrogateescape") if isinstance(rows, str) else rows)
    if prov_text is not None:
        prov.write_text(prov_text)
    return FileCase("table", why, expect(lambda: load_table(path), (ValueError, FileNotFoundError)), valid)


SURFACES: dict[str, list[Callable]] = {
    "journal": [journal_case, netadapt_journal_case],
    "config": [config_case, pipeline_config_case],
    "data": [data_case],
    "fidelity": [fidelity_case],
    "table": [table_case],
}


# --------------------------------------------------------------------------- checks after a run
def json_files(folder: Path | None) -> dict:
    """{path: bytes} of the regular JSON files directly in ``folder``."""
    if folder is None or not folder.is_dir():
        return {}
    return {path: path.read_bytes() for path in folder.glob("*.json") if not path.is_symlink() and path.is_file()}


def nonfinite_json(folder: Path | None, before: dict) -> str:
    """A JSON file the run wrote under ``folder`` (not one the case planted as it was) holding a
    bare NaN / Infinity ("" if none)."""
    for path, data in json_files(folder).items():
        if before.get(path) != data and any(token in data for token in (b"NaN", b"Infinity")):
            return str(path.name)
    return ""


def escaped(case: FileCase) -> str:
    for path, data in case.watched.items():
        if Path(path).read_bytes() != data:
            return str(path)
    return ""


# --------------------------------------------------------------------------- signals
def signal_case(rnd: random.Random, folder: Path, timeout_s: float = 300) -> tuple[str, str, str]:
    """SIGINT or SIGTERM at a random moment of a tiny real search: (outcome, detail, why)."""
    signum = rnd.choice([signal.SIGINT, signal.SIGTERM])
    delay = rnd.uniform(1.0, 30.0)
    out = folder / "run"
    cmd = [sys.executable, "-m", "nas.search", "--out", str(out), "--children", "4", *SEARCH]
    why = f"{signal.Signals(signum).name} after {delay:.1f} s"
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signum)
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return "hang", f"not stopped {timeout_s:g} s after the signal", why
    lines = [line for line in stderr.splitlines() if line.strip()]
    journal = out / "journal.jsonl"
    torn_ok = True
    if journal.exists():
        complete = journal.read_text().splitlines(keepends=True)
        try:
            [json.loads(line) for line in complete if line.endswith("\n")]
        except json.JSONDecodeError:
            torn_ok = False
    if not torn_ok:
        return "messy", "a complete journal line is damaged", why
    if "Traceback" in stderr:
        return "traceback", lines[-1][:200] if lines else "", why
    if proc.returncode == 0:
        return "accepted", "finished before the signal", why
    if proc.returncode == 128 + signum and lines and lines[-1].startswith("stopped by") and "--resume" in lines[-1]:
        return "clean", lines[-1][:200], why
    return "messy", f"exit {proc.returncode}: {' | '.join(lines[-3:])[:300]}", why


def run_case(case: FileCase, guard, timeout_s: float) -> tuple[str, str]:
    """(outcome, detail) of one file case, run in this process under ``guard``."""
    err = io.StringIO()
    planted = json_files(case.folder)
    start = time.perf_counter()
    try:
        with guard(timeout_s), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                code = case.run()
    except Exception as error:  # noqa: BLE001 -- what a user would see as a traceback
        return "traceback", f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
    except BaseException as error:  # the guard's timeout
        if type(error).__name__ == "_Timeout":
            return "hang", f"over {timeout_s:g} s"
        raise
    seconds = time.perf_counter() - start
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    leak = escaped(case)
    if leak:
        return "escaped", f"{leak} changed"
    bad_json = nonfinite_json(case.folder, planted)
    if bad_json:
        return "nonfinite", f"{bad_json} holds NaN or Infinity"
    if code == 0:
        return ("silent", "an invalid input accepted") if case.valid is False else ("accepted", f"{seconds:.1f} s")
    errors = [line for line in lines if line.startswith("error:")]
    if code != 2 or len(errors) != 1 or len(errors[0]) > 1000:
        return "messy", f"exit {code}: {' | '.join(lines[-3:])[:300]}"
    if case.valid is True:
        return "refused_valid", errors[0][:200]
    return "clean", errors[0][:200]
