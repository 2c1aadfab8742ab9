"""Runs that cannot be fooled by their folder: links out of it, FIFOs, a second live run, journal
lines of the wrong shape, non-finite numbers, duplicate YAML keys, broken latency tables, and
Ctrl-C / SIGTERM (one line saying how to resume, the journal intact, exit 130 / 143)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs import Journal, JournalWarning, atomic_write_text
from guards import no_hang

ROOT = Path(__file__).resolve().parents[1]
TINY = {"max_steps": 2, "batch_size": 16, "bn_recalibration_batches": 1, "resolution": 32}




def _one_line(err) -> str:
    text = str(err.value if hasattr(err, "value") else err)
    assert "\n" not in text and len(text) < 600, text
    return text


# ----------------------------------------------------------------------------- links out of the folder
def test_a_journal_linked_out_of_its_folder_is_refused_never_followed(tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("line one\nline two without newline")
    out = tmp_path / "run"
    out.mkdir()
    (out / "journal.jsonl").symlink_to(outside)
    journal = Journal(out / "journal.jsonl")
    for act in (journal.read, journal.repair, lambda: journal.append({"index": 0})):
        with pytest.raises(ValueError) as err:
            act()
        assert "outside" in _one_line(err) and str(out / "journal.jsonl") in str(err.value)
    assert outside.read_text() == "line one\nline two without newline"  # never cut, never appended to


def test_an_output_file_linked_out_of_its_folder_is_refused(tmp_path):
    outside = tmp_path / "precious.json"
    outside.write_text("{}")
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").symlink_to(outside)
    with pytest.raises(ValueError) as err:
        atomic_write_text(out / "summary.json", "{\"x\": 1}")
    assert "outside" in _one_line(err)
    assert outside.read_text() == "{}" and (out / "summary.json").is_symlink()


def test_a_search_whose_journal_links_out_is_one_line(tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\npartial")
    out = tmp_path / "run"
    out.mkdir()
    (out / "journal.jsonl").symlink_to(outside)
    result = subprocess.run([sys.executable, "-m", "nas.search", "--out", str(out), "--children", "1", "--resume",
                             "--no-progress", "--references", "none"]
                            + [arg for key, value in TINY.items() for arg in ("--proxy", f"{key}={value}")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert "outside" in result.stderr
    assert outside.read_text() == "keep me\npartial"


# ----------------------------------------------------------------------------- FIFOs, devices, folders
def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def test_a_fifo_device_or_folder_journal_is_one_line_never_a_hang(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "journal.jsonl").mkdir()
    for path in (_fifo(tmp_path / "fifo.jsonl"), Path("/dev/zero"), tmp_path / "d" / "journal.jsonl"):
        journal = Journal(path)
        for act in (journal.read, lambda: journal.append({"index": 0})):
            with no_hang(), pytest.raises(ValueError) as err:
                act()
            assert str(path) in _one_line(err)


def test_a_fifo_spec_space_or_target_is_one_line_never_a_hang(tmp_path):
    from latency import TargetError, load_target
    from search_spaces import SpecError, load_spec

    fifo = _fifo(tmp_path / "x.yaml")
    with no_hang(), pytest.raises(SpecError) as err:
        load_spec(fifo)
    assert "FIFO" in _one_line(err)
    with no_hang(), pytest.raises(TargetError) as err:
        load_target(str(fifo))
    assert str(fifo) in _one_line(err)


def test_a_fifo_latency_table_or_provenance_is_one_line_never_a_hang(tmp_path):
    from latency import load_table

    table = _fifo(tmp_path / "t.csv")
    (tmp_path / "t.provenance.json").write_text("{}")
    with no_hang(), pytest.raises(ValueError) as err:
        load_table(table)
    assert str(table) in _one_line(err)
    table.unlink()
    table.write_text("op_key,median_ms,overhead_ms\n")
    (tmp_path / "t.provenance.json").unlink()
    _fifo(tmp_path / "t.provenance.json")
    with no_hang(), pytest.raises(ValueError) as err:
        load_table(table)
    assert "t.provenance.json" in _one_line(err)


def test_fifo_state_files_of_a_search_are_one_line_never_a_hang(tmp_path):
    searcher = _searcher(tmp_path)
    _fifo(tmp_path / "searcher.json")
    with no_hang(), pytest.raises(ValueError) as err:
        searcher.resume()
    assert "searcher.json" in _one_line(err)


# ----------------------------------------------------------------------------- a lock on the folder
def _holder(out: Path) -> subprocess.Popen:
    code = ("import sys, time; from jobs import run_lock\n"
            f"with run_lock({str(out)!r}):\n    print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, "holder-marker"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_folder_whose_run_is_alive_is_refused_naming_it_and_a_stale_lock_is_taken_over(tmp_path):
    from jobs import RunLocked, run_lock

    out = tmp_path / "run"
    proc = _holder(out)
    try:
        with pytest.raises(RunLocked) as err:
            with run_lock(out):
                pass
        message = _one_line(err)
        assert f"pid {proc.pid}" in message and "holder-marker" in message
        resumed = subprocess.run([sys.executable, "-m", "nas.search", "--out", str(out), "--children", "1",
                                  "--resume", "--no-progress", "--references", "none"], cwd=ROOT,
                                 capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 2 and resumed.stderr.count("\n") == 1, resumed.stderr[-2000:]
        assert f"pid {proc.pid}" in resumed.stderr
    finally:
        proc.kill()
        proc.wait()
    (out / ".run.lock").write_text(json.dumps({"pid": proc.pid, "command": "dead"}))  # the holder died
    with run_lock(out):
        assert json.loads((out / ".run.lock").read_text())["pid"] == os.getpid()


def test_netadapt_refuses_a_folder_whose_run_is_alive(tmp_path):
    from jobs import RunLocked
    from netadapt.algorithm import run_netadapt
    from netadapt.config import NetAdaptConfig

    out = tmp_path / "run"
    proc = _holder(out)
    try:
        with pytest.raises(RunLocked, match=f"pid {proc.pid}"):
            run_netadapt(NetAdaptConfig(spec="mobilenet_v3_small", budget_ratio=0.9, out=str(out), progress=False))
    finally:
        proc.kill()
        proc.wait()


# ----------------------------------------------------------------------------- journal records of the wrong shape
def _searcher(run_dir, budget=10):
    from nas.runner import _latency_fn
    from nas.searcher import StrategySearcher
    from nas.strategies import make_strategy
    from search_spaces.spaces import get_space

    space = get_space("mobilenetv3").reduced(kernel=[3, 5], operator=["mbconv3"], se=[0], skip=["identity"], width=[1.0],
                                             layers=[0], nonlinearity=["relu"])
    strategy = make_strategy("random", [len(opts) for _, _, opts in space.decisions], seed=0)
    return StrategySearcher(strategy, space, _latency_fn("pixel1"), budget=budget, target_ms=50.0, w=-0.07,
                            alpha=None, beta=None, trial_config={}, run_dir=run_dir)


def _three_children(tmp_path):
    searcher = _searcher(tmp_path)
    for i in range(3):
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"status": "ok", "accuracy": 0.4 + i / 10, "seconds": 1.0})
    return searcher


BAD_RECORDS = {
    "empty object": lambda good: "{}",
    "index a list": lambda good: json.dumps(dict(good, index=[1])),
    "reward a string": lambda good: json.dumps(dict(good, reward="0.5")),
    "reward NaN": lambda good: json.dumps(dict(good, reward=float("nan"))),
    "reward 1e400": lambda good: json.dumps(good).replace(f'"reward": {json.dumps(good["reward"])}',
                                                          '"reward": 1e400'),
    "another space's sample": lambda good: json.dumps(dict(good, sample=good["sample"] + [0, 0])),
    "nested 200,000 deep": lambda good: "[" * 200_000 + "]" * 200_000,
    "nested object 200,000 deep": lambda good: '{"a":' * 200_000 + "1" + "}" * 200_000,
}


@pytest.mark.parametrize("kind", list(BAD_RECORDS))
def test_a_journal_record_of_the_wrong_shape_is_skipped_with_the_warning(tmp_path, kind):
    searcher = _three_children(tmp_path)
    journal = searcher.journal.path
    lines = journal.read_text().splitlines(keepends=True)
    bad = BAD_RECORDS[kind](json.loads(lines[1])) + "\n"
    journal.write_text("".join(lines[:1] + [bad] + lines[1:]))
    resumed = _searcher(tmp_path)
    with pytest.warns(JournalWarning, match=rf"{journal}:2: damaged journal line skipped"):
        assert resumed.resume() == 3
    assert all(isinstance(r["reward"], float) for r in resumed.records)
    assert resumed.suggest("t3")["index"] == 3


@pytest.mark.parametrize("text", ["[]", '"a string"', "3", '{"told": "x"}', '{"told": [0, 1, 2], "pending": 5}',
                                  '{"told": [0, 1, 2], "pending": [], "next_index": 3, "strategy": []}'])
def test_searcher_state_of_the_wrong_type_is_one_line(tmp_path, text):
    _three_children(tmp_path)
    (tmp_path / "searcher.json").write_text(text)
    with pytest.raises(ValueError) as err:
        _searcher(tmp_path).resume()
    assert "searcher" in _one_line(err)


@pytest.mark.parametrize("text", ["[]", "null", '"x"', "NaN"])
def test_a_search_config_of_the_wrong_type_is_one_line(tmp_path, text):
    from nas.runner import SearchConfig, SearchError, run_search

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(text)
    with pytest.raises(SearchError) as err:
        run_search(SearchConfig(out=str(out), resume=True, children=1, progress=False, references=()))
    assert "config.json" in _one_line(err)


NETADAPT_BAD = ['{}', '{"type": 5}', '{"type": "seed"}', '{"type": "proposal", "iteration": [1]}',
                '{"type": "seed", "spec": {}, "hash": "h", "latency_ms": NaN, "budget_ms": 1, "accuracy": 0.5}',
                '{"type": "proposal", "iteration": 1, "index": 0, "name": "p", "hash": "h", "latency_ms": 1, '
                '"cut_ms": 0.1, "status": "ok", "accuracy_before": 0.1, "accuracy_after": 0.2, "metric": 0.3, '
                '"weights": "../../../etc/passwd"}',
                '{"type": "iteration", "iteration": 1, "step_ms": 1, "step_target_ms": 1, "proposals": [3]}']


def test_netadapt_journal_records_of_the_wrong_shape_are_skipped(tmp_path):
    from netadapt.records import record_problem

    good = {"type": "noise", "iteration": 1, "index": 0, "repeat": 1, "status": "ok", "accuracy_after": 0.5,
            "metric": 0.1}
    journal = Journal(tmp_path / "journal.jsonl", check=record_problem)
    journal.path.write_text("".join(line + "\n" for line in [json.dumps(good)] + NETADAPT_BAD + [json.dumps(good)]))
    with pytest.warns(JournalWarning) as caught:
        assert journal.read() == [good, good]
    assert journal.damaged == list(range(2, 2 + len(NETADAPT_BAD))) and len(caught) == len(NETADAPT_BAD)


# ----------------------------------------------------------------------------- non-finite numbers
def test_one_json_writer_never_writes_nan_or_infinity(tmp_path):
    from jobs import dumps
    from jobs.jsonio import loads

    text = dumps({"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "c": (1, float("nan"))})
    assert json.loads(text) == {"a": None, "b": [None, None, 1.5], "c": [1, None]}
    for bad in ("NaN", "[Infinity]", '{"x": -Infinity}', "1e400", "[" * 100_000 + "]" * 100_000):
        with pytest.raises(ValueError):
            loads(bad)


def test_nan_helpers_have_one_home():
    for path in (ROOT / "jobs" / "journal.py", ROOT / "nas" / "runner.py", ROOT / "nas" / "searcher.py",
                 ROOT / "netadapt" / "algorithm.py"):
        text = path.read_text()
        assert "json.dumps(" not in text.replace("json.dumps(trial_config, sort_keys=True)", ""), path


@pytest.mark.parametrize("flag, value", [("--target-ms", "nan"), ("--target-ms", "inf"), ("--w", "nan"),
                                         ("--epochs", "inf"), ("--cpus-per-trial", "nan"),
                                         ("--proxy", "lr=.nan"), ("--proxy", "lr=.inf")])
def test_non_finite_numbers_on_the_command_line_are_refused(flag, value):
    from nas.search import parse_args

    with pytest.raises(SystemExit) as exit_:
        parse_args([flag, value])
    assert exit_.value.code == 2


# ----------------------------------------------------------------------------- duplicate YAML keys
def test_a_spec_with_a_duplicate_key_is_refused_naming_the_key_and_both_lines(tmp_path):
    from search_spaces import SpecError, load_spec, reference

    text = reference("mobilenet_v3_small", 1.0, 224).to_yaml()
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("resolution:"))
    path = tmp_path / "dup.yaml"
    path.write_text("\n".join(lines + [lines[at]]) + "\n")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = _one_line(err)
    assert "duplicate key 'resolution'" in message and f"lines {at + 1} and {len(lines) + 1}" in message
    nested = text.replace("stem: {out_channels: 16, ", "stem: {out_channels: 16, out_channels: 24, ", 1)
    assert nested != text
    path.write_text(nested)
    with pytest.raises(SpecError, match="duplicate key 'out_channels'"):
        load_spec(path)


def test_the_yaml_bounds_still_hold_with_duplicate_key_checks():
    import yaml

    from jobs.safe_io import load_yaml

    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefg", "bcdefgh"))
    with pytest.raises(yaml.YAMLError, match="expands to more than"):
        load_yaml(bomb)
    assert load_yaml("base: &b {a: 1}\nd:\n  <<: *b\n  a: 2\n") == {"base": {"a": 1}, "d": {"a": 2}}  # merge keys


# ----------------------------------------------------------------------------- latency tables
def _table(tmp_path, provenance: str) -> Path:
    path = tmp_path / "t.csv"
    path.write_text("op_key,median_ms,min_ms,overhead_ms\nk,1.0,0.9,0.0\n")
    (tmp_path / "t.provenance.json").write_text(provenance)
    return path


@pytest.mark.parametrize("provenance", ["[]", "[1, 2]", '"text"', "{", '{"network_correction": [1]}',
                                        '{"network_correction": {"scale": "fast"}}',
                                        '{"network_correction": {"scale": 1, "offset_ms": [0]}}',
                                        '{"network_correction": {"scale": NaN}}',
                                        '{"network_correction": {"scale": ' + "9" * 700 + "}}",
                                        '{"protocol": "a description", "network_correction": 3}'])
def test_a_broken_provenance_file_is_one_line_naming_it(tmp_path, provenance):
    from latency import load_table

    path = _table(tmp_path, provenance)
    with pytest.raises(ValueError) as err:
        load_table(path)
    assert "t.provenance.json" in _one_line(err) or str(path) in str(err.value)


def test_a_table_parse_error_names_the_file(tmp_path):
    from latency import load_table

    path = _table(tmp_path, "{}")
    path.write_bytes(b"op_key,median_ms\n\"k,1\n")  # an unterminated quote
    with pytest.raises(ValueError) as err:
        load_table(path)
    assert str(path) in _one_line(err)
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError) as err:
        load_table(path)
    assert str(path) in _one_line(err)


def test_an_unknown_statistic_is_an_error_not_a_silent_median(tmp_path):
    from latency import load_table

    path = _table(tmp_path, '{"protocol": {"statistic": "mean"}}')
    with pytest.raises(ValueError) as err:
        load_table(path)
    assert "statistic" in _one_line(err) and "'mean'" in str(err.value)


# ----------------------------------------------------------------------------- stopping
def _wait_for(journal: Path, proc: subprocess.Popen, count: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        lines = journal.read_text().splitlines() if journal.exists() else []
        if len(lines) >= count:
            return
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"no {count} journaled record(s) before the deadline: {proc.communicate()[1][-2000:]}")


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_a_search_in_one_line_and_a_resume_goes_on(tmp_path, ray_session, signum, status):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "nas.search", "--children", "6", "--out", str(out), "--address", ray_session,
           "--concurrency", "1", "--strategy", "random", "--no-progress", "--references", "none"]
    cmd += [arg for key, value in TINY.items() for arg in ("--proxy", f"{key}={value}")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = out / "journal.jsonl"
    _wait_for(journal, proc, 1)
    started = time.monotonic()
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert time.monotonic() - started < 30
    assert proc.returncode == status, stderr[-3000:]
    assert stderr.strip().count("\n") == 0 and "--resume" in stderr and "Tuner.restore" not in stderr, stderr[-3000:]
    assert "children trained" not in stdout
    before = [json.loads(line) for line in journal.read_text().splitlines(keepends=True) if line.endswith("\n")]
    assert 1 <= len(before) < 6
    result = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    after = [json.loads(line) for line in journal.read_text().splitlines()]
    assert after[:len(before)] == before  # nothing journaled was redone or rewritten
    assert sum(r.get("trained", True) for r in after) == 6


def test_ctrl_c_stops_netadapt_in_one_line_and_a_resume_goes_on(tmp_path, ray_session):
    from PIL import Image
    from test_netadapt import TINY as TINY_SPEC, TINY_PROXY, blob_arrays

    TINY_SPEC.to_yaml(tmp_path / "tiny.yaml")
    x, y = blob_arrays(96, seed=2)
    for i, (image, label) in enumerate(zip(x, y)):
        folder = tmp_path / "images" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0]).save(folder / f"{i}.png")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "netadapt.run", str(tmp_path / "tiny.yaml"), "--target", "pixel1",
           "--data", f"imagefolder:{tmp_path / 'images'}", "--out", str(out), "--no-progress",
           "--finetune-steps", "2", "--long-finetune-steps", "2", "--pretrain-epochs", "0.25",
           "--budget-ratio", "0.85", "--step-ratio", "0.05", "--address", ray_session, "--concurrency", "1"]
    cmd += [arg for key, value in TINY_PROXY.items() for arg in ("--proxy", f"{key}={value}")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = out / "journal.jsonl"
    _wait_for(journal, proc, 3)  # the seed, the first iteration's list, a proposal
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]  # (before it: the data's decoding progress bar, from the start)
    assert last.startswith("stopped by SIGINT") and "--resume" in last and "Traceback" not in stderr, stderr[-3000:]
    before = [json.loads(line) for line in journal.read_text().splitlines(keepends=True) if line.endswith("\n")]
    result = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    after = [json.loads(line) for line in journal.read_text().splitlines()]
    assert after[:len(before)] == before
    done = [(r["iteration"], r["index"]) for r in after if r["type"] == "proposal"]
    assert len(done) == len(set(done))  # no journaled proposal was run again


# ----------------------------------------------------------------------------- the hostile generators themselves
def test_hostile_table_fidelity_and_netadapt_journal_surfaces_find_nothing(tmp_path):
    from experiments.hostile import surfaces as sf
    from experiments.hostile.inputs import guard, run_surfaces

    result = run_surfaces(12, 0, 0, ["table", "fidelity"], 30.0, tmp_path)
    assert result["problems"] == [] and sum(result["rows"]["table"].values()) == 12
    import random

    rnd = random.Random(1)
    for i in range(6):
        (tmp_path / f"n{i}").mkdir()
        case = sf.netadapt_journal_case(rnd, tmp_path / f"n{i}", None)
        assert sf.run_case(case, guard, 30.0)[0] == "accepted"


def test_the_pipeline_refuses_a_folder_whose_run_is_alive(tmp_path):
    out = tmp_path / "run"
    proc = _holder(out)
    try:
        result = subprocess.run([sys.executable, "-m", "experiments.reproduce", "small", "--out", str(out), "--resume",
                                 "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr[-2000:]
        assert f"pid {proc.pid}" in result.stderr
    finally:
        proc.kill()
        proc.wait()
