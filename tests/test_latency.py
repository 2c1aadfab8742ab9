"""Latency tables: real ONNX Runtime / torch timing on small ops, tables, predictor, resume, validation."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from latency import (BadRowsError, MissingOpsError, ProvenanceMismatch, TargetError, load_table, load_target,
                     merge_tables, predict)
from latency.backends import Protocol, get_backend
from latency.profiler import ops_for_specs, profile_ops
from search_spaces import reference

ROOT = Path(__file__).resolve().parents[1]
FAST = Protocol(warmup=1, repeats=3, rounds=2)


def small_spec(name="mobilenet_v3_small", resolution=32):
    return reference(name, 0.35, resolution)


@pytest.fixture(scope="module")
def small_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("tables") / "ort.csv"
    return profile_ops(ops_for_specs([small_spec()]), get_backend("onnxruntime", 1), path, FAST, progress=False,
                       log=None)


def test_table_round_trip(small_table):
    loaded = load_table(small_table.path)
    pd.testing.assert_frame_equal(loaded.rows, small_table.rows, check_dtype=False)
    assert loaded.provenance == small_table.provenance
    p = loaded.provenance
    assert p["backend"] == "onnxruntime" and p["threads"] == 1 and p["runtime"].startswith("onnxruntime ")
    assert p["protocol"] == FAST.to_dict() and p["device"] and p["os"] and p["created"] and p["torch"]
    rows = loaded.rows
    assert (rows["median_ms"] >= 0).all() and (rows["overhead_ms"] > 0).all() and (rows["count"] == 6).all()


def test_prediction_equals_sum_of_breakdown(small_table):
    spec = small_spec()
    prediction = predict(spec, small_table)
    df = prediction.breakdown
    assert len(df) == len(spec.op_keys())
    assert prediction.latency_ms == pytest.approx(df["latency_ms"].sum() + prediction.network_overhead_ms)
    assert list(df["op_key"]) == [k.to_str() for k in spec.op_keys()]
    assert prediction.latency_ms > 0


def test_correction_keeps_breakdown_consistent(small_table, tmp_path):
    table = load_table(small_table.path)
    table.provenance["network_correction"] = {"scale": 1.5, "offset_ms": 0.25}
    spec = small_spec()
    raw = predict(spec, load_table(small_table.path)).latency_ms
    corrected = predict(spec, table)
    assert corrected.latency_ms == pytest.approx(1.5 * raw + 0.25)
    assert corrected.latency_ms == pytest.approx(corrected.breakdown["latency_ms"].sum() + corrected.network_overhead_ms)


def test_missing_op_error_lists_keys_and_command(small_table):
    other = reference("mobilenet_v3_large", 0.35, 32)
    missing = [k for k in other.op_keys() if k not in small_table]
    assert missing
    with pytest.raises(MissingOpsError) as info:
        predict(other, small_table)
    message = str(info.value)
    assert info.value.missing == list(dict.fromkeys(missing))
    assert missing[0].to_str() in message
    assert "python -m latency.profile --backend onnxruntime --threads 1" in message
    assert str(small_table.path) in message


def test_fill_is_explicit_and_reported(small_table):
    other = reference("mobilenet_v3_large", 0.35, 32)
    prediction = predict(other, small_table, fill="madds")
    assert prediction.filled and set(prediction.filled) == {k for k in other.op_keys() if k not in small_table}
    assert prediction.breakdown["filled"].sum() == sum(k in prediction.filled for k in other.op_keys())
    assert np.isfinite(prediction.latency_ms) and prediction.latency_ms > 0


def test_refuses_to_merge_different_provenance(small_table, tmp_path):
    other = load_table(small_table.path)
    other.provenance = dict(other.provenance, threads=2)
    with pytest.raises(ProvenanceMismatch, match="threads differs"):
        merge_tables([small_table, other])
    same = load_table(small_table.path)
    assert len(merge_tables([small_table, same])) == len(small_table)


def test_profiling_into_a_table_of_other_protocol_is_refused(small_table):
    with pytest.raises(ProvenanceMismatch, match="protocol"):
        profile_ops(small_spec().op_keys(), get_backend("onnxruntime", 1), small_table.path,
                    Protocol(warmup=1, repeats=4, rounds=2), progress=False, log=None)


def test_the_protocol_statistic_chooses_the_column(small_table, tmp_path):
    rows = small_table.rows
    assert small_table.statistic == "min" and small_table.latency_column == "min_ms"
    assert (rows["min_ms"] >= 0).all() and rows["min_ms"].notna().all()
    keys = small_spec().op_keys()
    assert np.allclose(small_table.lookup_ms(keys), rows.loc[[k.to_str() for k in keys], "min_ms"])
    with pytest.raises(ProvenanceMismatch, match="protocol"):  # one table, one statistic
        profile_ops(keys, get_backend("onnxruntime", 1), small_table.path,
                    Protocol(warmup=1, repeats=3, rounds=2, statistic="median"), progress=False, log=None)
    median = profile_ops(keys[:2], get_backend("onnxruntime", 1), tmp_path / "median.csv",
                         Protocol(warmup=1, repeats=3, rounds=2, statistic="median"), progress=False, log=None)
    assert median.latency_column == "median_ms"
    assert np.allclose(median.lookup_ms(keys[:2]), median.rows.loc[[k.to_str() for k in keys[:2]], "median_ms"])
    with pytest.raises(ValueError, match="Protocol.statistic: 'mean' is not one of min, median"):
        Protocol(statistic="mean")


def test_table_without_provenance_is_refused(small_table, tmp_path):
    bare = tmp_path / "bare.csv"
    bare.write_text(small_table.path.read_text())
    with pytest.raises(ValueError, match="no provenance"):
        load_table(bare)


def test_torch_backend_times_an_op():
    op = small_spec().op_keys()[3]
    from search_spaces import build_op

    samples = get_backend("torch", 1).measure(build_op(op), op.input_shape, FAST)
    assert samples.shape == (6,) and (samples > 0).all() and np.isfinite(samples).all()


def test_unknown_backend_names_choices():
    with pytest.raises(ValueError, match="backend: 'tpu' is not one of onnxruntime, torch, tflite, android"):
        get_backend("tpu")


def _rows(path):
    return pd.read_csv(path).set_index("op_key") if path.exists() else pd.DataFrame()


def test_resume_after_killing_a_real_profiler(tmp_path):
    out = tmp_path / "resume.csv"
    cmd = [sys.executable, "-m", "latency.profile", "--backend", "onnxruntime", "--threads", "1", "--specs",
           "mobilenet_v3_large", "mobilenet_v3_small", "--resolution", "64", "--out", str(out), "--chunk", "2",
           "--warmup", "2", "--repeats", "20", "--rounds", "3", "--no-progress"]
    total = len(ops_for_specs([reference("mobilenet_v3_large", 1.0, 64), reference("mobilenet_v3_small", 1.0, 64)]))
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_rows(out)) < 4:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _rows(out)
    assert 4 <= len(before) < total, "the profiler finished before it could be killed"
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{len(before)} op(s) already measured, {total - len(before)} to go" in result.stdout
    after = _rows(out)
    assert len(after) == total
    # The rows measured before the kill were kept, not measured again.
    pd.testing.assert_frame_equal(after.loc[before.index], before)


def test_predict_cli_json(small_table, tmp_path):
    target = tmp_path / "mine.yaml"
    target.write_text(f"kind: measured\nbackend: onnxruntime\nthreads: 1\ntable: {small_table.path}\n")
    result = subprocess.run([sys.executable, "-m", "latency.predict", "mobilenet_v3_small", "--width", "0.35",
                             "--resolution", "32", "--target", str(target), "--json"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["target"] == "mine" and out["latency_ms"] == pytest.approx(predict(small_spec(), small_table).latency_ms)
    missing = subprocess.run([sys.executable, "-m", "latency.predict", "mobilenet_v3_large", "--target", str(target)],
                             cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 2 and "missing from latency table" in missing.stderr
    assert "python -m latency.profile" in missing.stderr


def test_validate_end_to_end(tmp_path):
    from latency.validate import validate

    summary = validate(tmp_path / "t.csv", get_backend("onnxruntime", 1), 4, tmp_path / "val", seed=1,
                       protocol=FAST, resolution=32, progress=False)
    for key in ("n", "mape", "max_abs_pct_error", "kendall_tau", "spearman"):
        assert key in summary and np.isfinite(summary[key])
    assert summary["n"] == 4 + 8  # 4 random + the 8 reference networks
    assert (tmp_path / "val" / "scatter.png").stat().st_size > 1000
    models = pd.read_csv(tmp_path / "val" / "models.csv")
    assert len(models) == 12 and (models["measured_ms"] > 0).all()
    # The fitted correction is stored with the table.
    assert "network_correction" in load_table(tmp_path / "t.csv").provenance


# ----------------------------------------------------------------------------- bad rows, provenance, trust
def _copy_table(table, tmp_path, name="copy.csv"):
    """The fixture's table files under a new name; returns the CSV path and its rows as text."""
    path = tmp_path / name
    path.write_text(table.path.read_text())
    table.provenance_path(path).write_text(table.provenance_path(table.path).read_text())
    return path


def _edit_csv(path, edit):
    rows = pd.read_csv(path, dtype=str, keep_default_na=False)
    rows = edit(rows)
    rows.to_csv(path, index=False)
    return rows


def _blank(rows, i, column="min_ms"):
    rows.loc[i, column] = ""
    return rows


def _negative(rows, i, column="min_ms"):
    rows.loc[i, column] = "-49.8"
    return rows


def _duplicate(rows, i):
    return pd.concat([rows, rows.iloc[[i]]], ignore_index=True)


@pytest.mark.parametrize("edit, line, words", [
    (lambda r: _blank(r, 2), 4, "min_ms is empty, not a number"),
    (lambda r: _negative(r, 0), 2, "min_ms is -49.8, not a finite number >= 0"),
    (lambda r: _negative(r, 1, "overhead_ms"), 3, "overhead_ms is -49.8"),
    (lambda r: _blank(r, 1, "op_key"), 3, "the op_key is empty"),
    (lambda r: _duplicate(r, 3), 5, "the op_key is duplicated"),
], ids=["empty", "negative", "negative-overhead", "no-key", "duplicated"])
def test_bad_rows_are_refused_on_load_naming_the_line(small_table, tmp_path, edit, line, words):
    path = _copy_table(small_table, tmp_path)
    rows = _edit_csv(path, edit)
    with pytest.raises(BadRowsError) as info:
        load_table(path)
    message = str(info.value)
    assert f"line {line}" in message and words in message and str(path) in message
    assert "\n" not in message and "latency.profile" in message
    if "op_key is empty" not in words:  # the row's key is named (CSV line N is data row N - 2)
        assert rows["op_key"][line - 2] in message


def test_predict_cli_refuses_an_empty_cell_instead_of_printing_nan(small_table, tmp_path):
    path = _copy_table(small_table, tmp_path)
    _edit_csv(path, lambda r: _blank(r, 2))
    target = tmp_path / "mine.yaml"
    target.write_text(f"kind: measured\nbackend: onnxruntime\nthreads: 1\ntable: {path}\n")
    result = subprocess.run([sys.executable, "-m", "latency.predict", "mobilenet_v3_small", "--width", "0.35",
                             "--resolution", "32", "--target", str(target), "--json"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "NaN" not in result.stdout
    assert result.stderr.count("\n") == 1 and "line 4" in result.stderr and "Traceback" not in result.stderr


def test_profile_rerun_measures_bad_rows_again(small_table, tmp_path):
    path = _copy_table(small_table, tmp_path)
    good = load_table(path).rows
    bad = list(good.index[[0, 2, 4]])
    _edit_csv(path, lambda r: _duplicate(_negative(_blank(r, 0), 2), 4))
    log = []
    keys = ops_for_specs([small_spec()])
    table = profile_ops(keys, get_backend("onnxruntime", 1), path, FAST, progress=False, log=log.append)
    warnings = [m for m in log if m.startswith("warning:")]
    assert len(warnings) == 4  # the blank, the negative and both copies of the duplicate
    assert any("line 2" in m and "min_ms is empty" in m for m in warnings)
    assert f"{len(good) - 3} op(s) already measured, 3 to go" in log[-1]
    reloaded = load_table(path)  # no bad row left on disk
    assert len(reloaded) == len(good) and not reloaded.rows.index.duplicated().any()
    assert (reloaded.rows.loc[bad, "min_ms"] >= 0).all() and reloaded.rows.loc[bad, "min_ms"].notna().all()
    kept = good.index.difference(bad)
    pd.testing.assert_frame_equal(reloaded.rows.loc[kept], good.loc[kept], check_dtype=False)
    assert np.isfinite(predict(small_spec(), table).latency_ms)


@pytest.mark.parametrize("correction, field", [({"scale": -1, "offset_ms": 0.0}, "scale"),
                                               ({"scale": 1.0, "offset_ms": float("nan")}, "offset_ms")])
def test_an_unusable_correction_is_refused(small_table, tmp_path, correction, field):
    path = _copy_table(small_table, tmp_path)
    provenance = json.loads(small_table.provenance_path(path).read_text())
    provenance["network_correction"] = correction
    small_table.provenance_path(path).write_text(json.dumps(provenance))
    with pytest.raises(ValueError, match=f"network_correction.{field}"):
        load_table(path)
    in_memory = load_table(small_table.path)
    in_memory.provenance["network_correction"] = correction
    with pytest.raises(ValueError, match=f"network_correction.{field}"):
        predict(small_spec(), in_memory)


@pytest.mark.parametrize("field, value", [("threads", "2"), ("backend", "torch")])
def test_predict_checks_the_tables_provenance_against_the_target(small_table, tmp_path, field, value):
    target = {"kind": "measured", "backend": "onnxruntime", "threads": "1", "table": str(small_table.path)}
    target[field] = value
    path = tmp_path / "mine.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in target.items()))
    with pytest.raises(ProvenanceMismatch, match=f"measured with {field}="):
        predict(small_spec(), load_target(path))
    result = subprocess.run([sys.executable, "-m", "latency.predict", "mobilenet_v3_small", "--target", str(path)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and f"{field}=" in result.stderr


def test_a_target_yaml_cannot_import_code(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_cost_model.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef table():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "evil.yaml"
    path.write_text("kind: model\nmodel: evil_cost_model:table\n")
    with pytest.raises(TargetError, match="model: 'evil_cost_model:table' is not one of pixel1"):
        load_target(path).load_table()
    assert not marker.exists()
    (tmp_path / "pixel1.yaml").write_text("kind: model\nmodel: pixel1\n")  # a registered name loads
    assert load_target(tmp_path / "pixel1.yaml").load_table().name == "pixel1"


# ----------------------------------------------------------------------------- the CLIs' arguments
def _main(module, argv, capsys):
    """Run ``module.main(argv)`` in this process: (exit status, stderr)."""
    import importlib

    main = importlib.import_module(module).main
    try:
        status = main(argv)
    except SystemExit as stop:
        status = stop.code
    return status, capsys.readouterr().err


PROFILE = ["--backend", "onnxruntime", "--specs", "mobilenet_v3_small", "--resolution", "32", "--no-progress"]
VALIDATE = ["--backend", "onnxruntime", "--n", "2", "--resolution", "32", "--no-progress"]


@pytest.mark.parametrize("module, argv, flag", [
    ("latency.profile", PROFILE + ["--chunk", "-1", "--out", "{tmp}/t.csv"], "--chunk"),
    ("latency.profile", PROFILE + ["--chunk", "0", "--out", "{tmp}/t.csv"], "--chunk"),
    ("latency.profile", PROFILE + ["--threads", "0", "--out", "{tmp}/t.csv"], "--threads"),
    ("latency.profile", PROFILE + ["--rounds", "nan", "--out", "{tmp}/t.csv"], "--rounds"),
    ("latency.profile", PROFILE + ["--repeats", "0", "--out", "{tmp}/t.csv"], "--repeats"),
    ("latency.profile", PROFILE + ["--warmup", "-1", "--out", "{tmp}/t.csv"], "--warmup"),
    ("latency.profile", PROFILE + ["--seed", "-3", "--out", "{tmp}/t.csv"], "--seed"),
    ("latency.profile", PROFILE + ["--out", "{tmp}"], "--out"),
    ("latency.profile", PROFILE + ["--out", "{tmp}/file/t.csv"], "--out"),
    ("latency.profile", ["--target", "pixel1", "--space", "mobilenetv3"], "--target"),
    ("latency.validate", VALIDATE + ["--table", "{tmp}/t.csv", "--out", "{tmp}/v", "--n", "0"], "--n"),
    ("latency.validate", VALIDATE + ["--table", "{tmp}/t.csv", "--out", "{tmp}/v", "--threads", "0"], "--threads"),
    ("latency.validate", VALIDATE + ["--table", "{tmp}/t.csv", "--out", "{tmp}/v", "--seed", "-1"], "--seed"),
    ("latency.validate", VALIDATE + ["--table", "{tmp}", "--out", "{tmp}/v"], "--table"),
    ("latency.validate", VALIDATE + ["--table", "{tmp}/t.csv", "--out", "{tmp}/file"], "--out"),
    ("latency.validate", VALIDATE + ["--table", "{tmp}/t.csv", "--out", "{tmp}/v", "--space", "nope"], "--space"),
    ("latency.predict", ["mobilenet_v3_small", "--target", "pixel1", "--width", "nan"], "--width"),
    ("latency.predict", ["mobilenet_v3_small", "--target", "pixel1", "--width", "-0.5"], "--width"),
    ("latency.predict", ["mobilenet_v3_small", "--target", "pixel1", "--resolution", "0"], "--resolution"),
    ("latency.predict", ["mobilenet_v3_small", "--target", "nope"], "--target"),
    ("latency.calibrate", ["--out", "{tmp}/file"], "--out"),
])
def test_bad_arguments_are_one_line_naming_the_flag(tmp_path, capsys, module, argv, flag):
    (tmp_path / "file").write_text("a regular file\n")
    status, err = _main(module, [a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and flag in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing measured, nothing written


@pytest.mark.skipif(sys.platform != "linux", reason="/proc is Linux's")
def test_profile_checks_that_out_is_writable_before_measuring(capsys, tmp_path):
    # /proc refuses new files even to root (a read-only folder does not, for root).
    status, err = _main("latency.profile", PROFILE + ["--out", "/proc/t.csv"], capsys)
    assert status == 2 and "cannot write in '/proc'" in err and err.count("\n") == 1
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        status, err = _main("latency.profile", PROFILE + ["--out", str(locked / "t.csv")], capsys)
        assert status == 2 and "cannot write in" in err


def test_profile_chunk_minus_one_is_an_error_not_zero_ops(tmp_path):
    result = subprocess.run([sys.executable, "-m", "latency.profile", *PROFILE, "--chunk", "-1",
                             "--out", str(tmp_path / "t.csv")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "wrote" not in result.stdout
    assert result.stderr.count("\n") == 1 and "argument --chunk" in result.stderr
    with pytest.raises(ValueError, match="chunk"):
        profile_ops(small_spec().op_keys(), get_backend("onnxruntime", 1), tmp_path / "t.csv", FAST, chunk=-1,
                    progress=False, log=None)
    assert not (tmp_path / "t.csv").exists()



@pytest.mark.parametrize("data, words", [
    (b"kind: [1\n", "not valid YAML: while parsing a flow sequence"),
    (b"kind: model\nmodel: pixel1\n  units: ms\n", "not valid YAML"),
    (b"- kind\n- model\n", "a target is a mapping of fields"),
    (b"kind: model\nmodel: [pixel1]\n", "model: ['pixel1'] is not a string"),
    (b"a: &a [1, 2]\n" + b"".join(b"%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n"
                                     % ((98 + i,) * 2 + (97 + i,) * 10) for i in range(8)), "100,000 nodes"),
    (b"kind: model\xff\n", "is not UTF-8 text"),
    (b"# padding\n" * 120_000, "is larger than"),
], ids=["parser", "scanner", "list", "model_list", "alias_bomb", "not_utf8", "oversized"])
def test_a_broken_target_file_is_one_line_naming_it(tmp_path, capsys, data, words):
    path = tmp_path / "broken.yaml"
    path.write_bytes(data)
    with pytest.raises(TargetError) as info:
        load_target(path)
    assert "broken.yaml" in str(info.value) and words in str(info.value) and "\n" not in str(info.value)
    status, err = _main("latency.predict", ["mobilenet_v3_small", "--target", str(path)], capsys)
    assert status == 2 and err.count("\n") == 1 and err.startswith("error: argument --target: "), err
    assert "broken.yaml" in err


@pytest.mark.parametrize("flag, argv", [
    ("--target", PROFILE + ["--target", "", "--out", "t.csv"]),
    ("--target", PROFILE + ["--target", " ", "--out", "t.csv"]),
    ("--space", ["--backend", "onnxruntime", "--space", "", "--resolution", "32", "--out", "t.csv"]),
    ("--out", PROFILE + ["--out", ""]),
    ("--specs", ["--backend", "onnxruntime", "--specs", "", "--out", "t.csv"]),
])
def test_profile_refuses_empty_values_before_measuring(tmp_path, capsys, monkeypatch, flag, argv):
    # '' used to count as "not given": --target '' profiled anyway, --space '' crashed, --out '' wrote to '.'.
    monkeypatch.chdir(tmp_path)
    status, err = _main("latency.profile", argv, capsys)
    assert status == 2 and err.count("\n") == 1 and err.startswith(f"error: argument {flag}: an empty value"), err
    assert list(tmp_path.iterdir()) == []  # nothing measured, nothing written


# ----------------------------------------------------------------------------- the CLI modules' names
def test_cli_modules_do_not_replace_the_functions_of_the_same_name():
    script = """
import search_spaces, latency
from search_spaces.cost import describe
from latency.predictor import predict
import search_spaces.describe
from search_spaces.describe import main as describe_main
assert describe_main(["mobilenet_v3_small", "--json"]) == 0
import latency.predict
from latency.predict import main as predict_main
assert predict_main(["mobilenet_v3_small", "--target", "pixel1", "--json"]) == 0
assert search_spaces.describe is describe, search_spaces.describe
assert latency.predict is predict, latency.predict
spec = search_spaces.reference("mobilenet_v3_small")
assert len(search_spaces.describe(spec)) == len(describe(spec))
assert latency.predict(spec, "pixel1").latency_ms > 0
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
