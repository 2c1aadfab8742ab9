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

from latency import MissingOpsError, ProvenanceMismatch, load_table, merge_tables, predict
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
