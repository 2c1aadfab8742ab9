"""``python -m experiments.hostile_inputs --n 1000``: fresh hostile inputs against the six CLIs.

For each of ``search_spaces.describe``, ``search_spaces.export``, ``latency.predict``,
``latency.profile``, ``nas.search`` (``--dry-run``) and ``netadapt.run`` (``--dry-run``) it
draws ``--n`` argument lists (:mod:`experiments.hostile.argv`: hostile specs, YAML files, arch
strings, numbers and paths, mixed with valid ones), runs each in-process through the CLI's
``main(argv)`` under a ``--timeout`` guard (10 s), plus ``--subprocess`` of them per CLI as real
``python -m`` processes, and prints one row per CLI:

* accepted: a valid list that exited 0;
* clean errors: an invalid list refused with exit status 2 and one stderr line ``error: ...``;
* tracebacks: an exception escaped ``main``; hangs: the guard fired;
* silent: an invalid list that exited 0 (an invalid value accepted);
* refused valid: a valid list refused; messy: refused, but not as one ``error:`` line.

The first three columns should hold everything. ``--seed`` repeats a draw (default: a fresh
one, printed). Exit status 1 if any traceback, hang, silent acceptance, refused valid or messy
error is found (each is listed).

Then the surfaces beyond the command line (:mod:`experiments.hostile.surfaces`), ``--files``
cases each: hostile journals, run configs and pipeline configs, ``--data`` folders, fidelity
CSVs, latency tables; and ``--signals`` SIGINT / SIGTERM at random moments of a tiny real
search. Two more outcomes count there: *escaped* (a file outside the run folder, the target of a
planted link, changed) and *nonfinite* (a JSON output holds a bare NaN or Infinity).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .argv import MAKERS, Workdir, argv_case
from .cases import CLIS, Case

SURFACES = ("journal", "config", "data", "fidelity", "table", "signal")
OUTCOMES = ("accepted", "clean", "traceback", "hang", "silent", "refused_valid", "messy")
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Outcome:
    kind: str  # one of OUTCOMES
    detail: str
    seconds: float


class _Timeout(BaseException):
    """Raised by the guard's alarm (a BaseException, so no ``except Exception`` swallows it)."""


@contextlib.contextmanager
def guard(seconds: float):
    """Raise :class:`_Timeout` in this (the main) thread after ``seconds``."""
    def fire(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def classify(case: Case, code: int, stderr: str, seconds: float) -> Outcome:
    lines = [line for line in stderr.splitlines() if line.strip()]
    if code == 0:
        kind = "silent" if case.valid is False else "accepted"
        return Outcome(kind, case.why if kind == "silent" else "", seconds)
    clean = len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) <= 1000 and code == 2
    if not clean:
        return Outcome("messy", f"exit {code}: {stderr.strip()[:300]!r}", seconds)
    if case.valid is True:
        return Outcome("refused_valid", lines[0][:300], seconds)
    return Outcome("clean", lines[0], seconds)


def run_in_process(case: Case, timeout_s: float = 10.0) -> Outcome:
    """Run ``case`` through its CLI's ``main(argv)`` in this process, output captured."""
    main = importlib.import_module(CLIS[case.kind]).main
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    try:
        with guard(timeout_s), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(case.value))
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except _Timeout:
        return Outcome("hang", f"over {timeout_s:g} s", time.perf_counter() - start)
    except Exception as error:  # what a user would see as a traceback
        return Outcome("traceback", f"{type(error).__name__}: {str(error)[:300]}", time.perf_counter() - start)
    return classify(case, code or 0, err.getvalue(), time.perf_counter() - start)


def run_subprocess(case: Case, timeout_s: float) -> Outcome:
    """Run ``case`` as ``python -m MODULE ARGV`` (``timeout_s`` includes the interpreter's start)."""
    start = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, "-m", CLIS[case.kind], *case.value], capture_output=True, text=True,
                                timeout=timeout_s, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return Outcome("hang", f"over {timeout_s:g} s (subprocess)", time.perf_counter() - start)
    if "Traceback (most recent call last)" in result.stderr:
        return Outcome("traceback", result.stderr.strip().splitlines()[-1][:300], time.perf_counter() - start)
    return classify(case, result.returncode, result.stderr, time.perf_counter() - start)


def run(n: int, seed: int, clis: list[str], timeout_s: float, subprocesses: int, work: Path) -> dict:
    rnd = random.Random(seed)
    workdir = Workdir(work)
    rows, problems = {}, []
    for cli in clis:
        counts: Counter = Counter()
        slowest = 0.0
        cases = [argv_case(cli, rnd, workdir) for _ in range(n)]
        for case in cases:
            outcome = run_in_process(case, timeout_s)
            counts[outcome.kind] += 1
            slowest = max(slowest, outcome.seconds)
            if outcome.kind not in ("accepted", "clean"):
                problems.append((cli, outcome, case))
        sample = [c for c in rnd.sample(cases, min(subprocesses, n)) if not any("\0" in a for a in c.value)]
        for case in sample:
            outcome = run_subprocess(case, timeout_s + 30)
            counts[f"sub_{outcome.kind}"] += 1
            if outcome.kind not in ("accepted", "clean"):
                problems.append((cli, outcome, case))
        rows[cli] = {"counts": counts, "slowest_s": slowest, "subprocess": len(sample)}
    return {"rows": rows, "problems": problems}


def table(result: dict) -> str:
    head = ("CLI", "inputs", "accepted", "clean errors", "tracebacks", "silent", "hangs > 10 s", "refused valid",
            "messy", "slowest", "subprocess (clean/ok)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cli, row in result["rows"].items():
        c = row["counts"]
        inputs = sum(c[k] for k in OUTCOMES)
        sub_ok = c["sub_accepted"] + c["sub_clean"]
        lines.append("| " + " | ".join(map(str, (
            CLIS[cli], inputs, c["accepted"], c["clean"], c["traceback"], c["silent"], c["hang"], c["refused_valid"],
            c["messy"], f"{row['slowest_s']:.2f} s", f"{sub_ok}/{row['subprocess']}"))) + " |")
    return "\n".join(lines)


def run_surfaces(files: int, signals: int, seed: int, surfaces: list[str], timeout_s: float, work: Path) -> dict:
    """Outcome counts per surface (:mod:`experiments.hostile.surfaces`) and the problems found."""
    from . import surfaces as sf

    rnd = random.Random(seed)
    templates = sf.Templates(work)
    rows, problems = {}, []
    for name in surfaces:
        counts: Counter = Counter()
        total = signals if name == "signal" else files
        for i in range(total):
            folder = work / f"{name}-{i}"
            folder.mkdir()
            if name == "signal":
                kind, detail, why = sf.signal_case(rnd, folder)
            else:
                case = rnd.choice(sf.SURFACES[name])(rnd, folder, templates)
                kind, detail = sf.run_case(case, guard, timeout_s)
                why = case.why
            counts[kind] += 1
            if kind not in ("accepted", "clean"):
                problems.append((name, kind, detail, why))
            shutil.rmtree(folder, ignore_errors=True)
        rows[name] = counts
    return {"rows": rows, "problems": problems}


def surface_table(result: dict) -> str:
    head = ("surface", "inputs", "accepted", "clean errors", "tracebacks", "hangs", "silent", "refused valid", "messy",
            "escaped", "nonfinite")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, c in result["rows"].items():
        lines.append("| " + " | ".join(map(str, (name, sum(c.values()), c["accepted"], c["clean"], c["traceback"],
                                                  c["hang"], c["silent"], c["refused_valid"], c["messy"], c["escaped"],
                                                  c["nonfinite"]))) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.hostile_inputs", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="argument lists per CLI")
    p.add_argument("--seed", type=int, default=None, help="repeat a draw (default: a fresh seed, printed)")
    p.add_argument("--cli", nargs="+", choices=sorted(MAKERS), default=list(MAKERS), help="the CLIs to attack")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds before a run counts as a hang")
    p.add_argument("--subprocess", type=int, default=5, help="lists per CLI also run as real processes")
    p.add_argument("--surfaces", nargs="*", choices=SURFACES, default=list(SURFACES),
                   help="file and signal surfaces to attack after the CLIs (none: --surfaces with no value)")
    p.add_argument("--files", type=int, default=40, help="cases per file surface")
    p.add_argument("--signals", type=int, default=3, help="signals sent to tiny real searches")
    a = p.parse_args(argv)
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(2**32)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hostile-") as work:
        result = run(a.n, seed, a.cli, a.timeout, a.subprocess, Path(work)) if a.n > 0 else {"rows": {}, "problems": []}
        surfaces = run_surfaces(a.files, a.signals, seed, a.surfaces, a.timeout + 20, Path(work)) if a.surfaces else None
    print(f"seed {seed}, {a.n} inputs per CLI, {time.perf_counter() - start:.0f} s")
    print(table(result))
    shown: Counter = Counter()
    for cli, outcome, case in result["problems"]:
        shown[cli] += 1
        if shown[cli] <= 8:
            detail = " ".join(outcome.detail.split())[:200]
            print(f"- {cli} {outcome.kind}: {detail} <- {case.why[:120]}: {[v[:60] for v in case.value]}")
    if surfaces is not None:
        print(f"\nsurfaces: {a.files} cases per file surface, {a.signals} signals")
        print(surface_table(surfaces))
        shown.clear()
        for name, kind, detail, why in surfaces["problems"]:
            shown[name] += 1
            if shown[name] <= 8:
                print(f"- {name} {kind}: {' '.join(detail.split())[:200]} <- {why[:120]}")
    return 1 if result["problems"] or (surfaces and surfaces["problems"]) else 0


if __name__ == "__main__":
    sys.exit(main())
