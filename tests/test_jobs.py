"""Shared job plumbing: the journal's reading rule, Ray start-up, the --proxy KEY=VALUE parser."""

import argparse
import json

import pytest

from jobs import Journal, JournalMismatch, JournalWarning
from jobs.cli import parse_overrides
from jobs.ray_setup import start_ray, stop_ray


def _journal(tmp_path, n=3) -> Journal:
    journal = Journal(tmp_path / "journal.jsonl")
    for i in range(n):
        journal.append({"index": i, "reward": i / 10})
    return journal


def test_a_damaged_middle_line_costs_only_itself(tmp_path):
    journal = _journal(tmp_path)
    lines = journal.path.read_text().splitlines(keepends=True)
    journal.path.write_text("".join(lines[:1] + ["garbage {\n"] + lines[1:]))
    damaged = journal.path.read_bytes()
    with pytest.warns(JournalWarning, match=rf"{journal.path}:2: damaged journal line skipped") as caught:
        assert journal.repair() == [{"index": i, "reward": i / 10} for i in range(3)]
    assert len(caught) == 1 and journal.damaged == [2]
    assert journal.path.read_bytes() == damaged  # nothing is cut but a torn last line
    with pytest.warns(JournalWarning):
        journal.append({"index": 3, "reward": 0.3})
        assert [r["index"] for r in journal.read()] == [0, 1, 2, 3]


def test_a_torn_last_line_is_left_out_then_cut(tmp_path):
    journal = _journal(tmp_path, 2)
    good = journal.path.read_bytes()
    with open(journal.path, "a") as f:
        f.write('{"index": 2, "rew')  # a kill in the middle of a write
    assert [r["index"] for r in journal.read()] == [0, 1]
    with pytest.warns(JournalWarning, match=rf"{journal.path}:3: cut a torn last line"):
        journal.repair()
    assert journal.path.read_bytes() == good
    with open(journal.path, "a") as f:
        f.write('{"index": 2')
    with pytest.warns(JournalWarning, match="torn"):
        journal.append({"index": 3})  # starts on a line of its own
    assert [r["index"] for r in journal.read()] == [0, 1, 3]


def test_records_are_strict_json(tmp_path):
    journal = Journal(tmp_path / "j.jsonl")
    journal.append({"wall_s": float("nan"), "nested": [float("inf"), 1.5]})
    assert json.loads(journal.path.read_text()) == {"wall_s": None, "nested": [None, 1.5]}


def test_a_journal_that_disagrees_with_its_state_file_is_refused(tmp_path):
    journal = _journal(tmp_path, 2)
    state = tmp_path / "searcher.json"
    journal.check_state(journal.read(), state, [0, 1])  # agrees
    for records in (journal.read(), []):  # short, or empty / missing
        with pytest.raises(JournalMismatch) as err:
            journal.check_state(records, state, [0, 1, 2])
        message = str(err.value)
        assert "\n" not in message and str(journal.path) in message and str(state) in message
    assert "(index 0, 1, 2)" in message


def test_records_lost_to_damaged_lines_are_named_not_refused(tmp_path):
    journal = _journal(tmp_path, 3)
    lines = journal.path.read_text().splitlines(keepends=True)
    journal.path.write_text("".join([lines[0], '{"index": 1, "rew\n', lines[2]]))  # record 1 damaged in place
    with pytest.warns(JournalWarning):
        records = journal.read()
    with pytest.warns(JournalWarning, match=r"index 1 that .*searcher.json counts as done were on damaged lines"):
        journal.check_state(records, tmp_path / "searcher.json", [0, 1, 2])
    with pytest.raises(JournalMismatch):
        journal.check_state(records, tmp_path / "searcher.json", [0, 1, 2, 3])  # one damaged line, two missing


def test_parse_overrides_reads_yaml_values_and_refuses_a_flag_without_equals():
    parser = argparse.ArgumentParser()
    assert parse_overrides(["lr=0.05", "grad_clip_norm=null", " device = cuda"], parser, "lr=0.05") == {
        "lr": 0.05, "grad_clip_norm": None, "device": "cuda"}
    with pytest.raises(SystemExit):
        parse_overrides(["lr"], parser, "lr=0.05")


@pytest.mark.parametrize("item, words", [
    ("lr=[1", "not a YAML value (expected ',' or ']'"),
    ('lr="', "not a YAML value"),
    ("lr=*undefined", "not a YAML value (found undefined alias"),
    ("lr=!!python/object/apply:os.system [echo]", "not a YAML value (could not determine a constructor"),
    ("lr=" + "[" * 300 + "]" * 300, "the value is 600 characters long"),
    ("=5", "write KEY=VALUE"),
], ids=["unclosed", "quote", "alias", "python_tag", "long", "no_key"])
def test_parse_overrides_turns_bad_values_into_one_usage_line(item, words, capsys):
    parser = argparse.ArgumentParser(prog="x")
    with pytest.raises(SystemExit) as stop:
        parse_overrides([item], parser, "lr=0.05")
    err = capsys.readouterr().err.splitlines()
    assert stop.value.code == 2 and err[-1].startswith("x: error: --proxy ") and words in err[-1], err
    assert len(err[-1]) < 400 and "e.g. --proxy lr=0.05" in err[-1]


def test_start_ray_leaves_a_running_ray_alone(ray_session):
    import ray

    assert start_ray(cpus=4) is False
    stop_ray(False)
    assert ray.is_initialized()


def _sleep_then(value):
    import os
    import time

    if value == "die":
        os._exit(1)  # a worker that dies, as an out-of-memory kill would
    time.sleep(0.2)
    return {"value": value, "start": time.time() - 0.2, "end": time.time()}


def test_at_most_runs_n_tasks_at_a_time_and_yields_a_dead_worker_as_an_error(ray_session):
    import ray

    from jobs.ray_pool import at_most

    task = ray.remote(num_cpus=0.1, max_retries=0)(_sleep_then)
    items = [1, 2, "die", 3, 4]
    seen = list(at_most(2, items, task.remote))
    assert sorted(map(str, (item for item, _, _ in seen))) == sorted(map(str, items))
    [(_, result, err)] = [s for s in seen if s[0] == "die"]
    assert result is None and isinstance(err, Exception)
    spans = [r for _, r, e in seen if e is None]
    for r in spans:  # never more than two running at any moment
        assert sum(s["start"] <= r["start"] < s["end"] for s in spans) <= 2


def _imports(path):
    """(module, names) for every import statement in ``path``, read with ast (nothing is run)."""
    import ast

    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def test_shared_helpers_have_one_home_in_jobs():
    """Generic CLI and safe-reading helpers live in jobs/, which imports none of our packages; no
    package reaches into another's private module, and the atomic writer comes from jobs."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for moved in ("cliargs.py", "safe_io.py", "_lazy.py"):
        assert not (root / "search_spaces" / moved).exists(), f"search_spaces/{moved} belongs in jobs/"
    ours = ("search_spaces", "latency", "proxytask", "nas", "netadapt", "experiments")
    for path in sorted((root / "jobs").glob("*.py")):
        for module, _ in _imports(path):
            assert not module.startswith(ours), f"{path.name} imports {module}: jobs/ is the leaf"
    for package in ("search_spaces", "latency", "proxytask", "nas", "netadapt", "experiments", "tests"):
        for path in sorted((root / package).rglob("*.py")):
            for module, names in _imports(path):
                where = f"{path.relative_to(root)} imports {module}"
                assert module not in ("search_spaces.cliargs", "search_spaces.safe_io", "search_spaces._lazy"), where
                assert not (module.endswith("table") and {"atomic_write", "atomic_write_text"} & set(names)), where


def test_library_functions_are_at_most_60_lines():
    """Functions in library code fit on a screen: split where a name can say what each part does."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    long = []
    for package in ("jobs", "search_spaces", "latency", "proxytask", "nas", "netadapt"):
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                    long.append(f"{path.relative_to(root)}:{node.lineno} {node.name} "
                                f"({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long


def test_statistics_helpers_on_known_numbers():
    from jobs.stats import finite_or_none, finite_values, interpolate, mean_sd

    assert finite_values([1, 2.5, None, float("nan"), float("inf"), True, "3"]) == [1.0, 2.5]
    assert finite_or_none(float("-inf")) is None and finite_or_none(2) == 2.0
    assert mean_sd([]) == (None, None) and mean_sd([0.5]) == (0.5, 0.0)
    mean, sd = mean_sd([1.0, 2.0, 3.0, float("nan")])
    assert mean == pytest.approx(2.0) and sd == pytest.approx(1.0)  # sample sd of 1, 2, 3
    curve = [(20.0, 0.7), (10.0, 0.5)]
    assert interpolate(curve, 15.0) == pytest.approx(0.6) and interpolate(curve, 10.0) == pytest.approx(0.5)
    assert interpolate(curve, 9.0) is None and interpolate(curve, 21.0) is None  # never extrapolated
    assert interpolate([(12.0, 0.4), (12.0, 0.5)], 12.0) == pytest.approx(0.45)  # one x twice: the mean
    assert interpolate(curve, 20.0 + 1e-12, tolerance=1e-9) == pytest.approx(0.7)
