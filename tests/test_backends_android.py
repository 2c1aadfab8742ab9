"""The android backend: benchmark_model command line, output parser, and refusal without a phone."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from latency.backends import BackendUnavailable, Protocol, get_backend
from latency.backends.android_backend import (
    AndroidBackend,
    benchmark_command,
    largest_core_mask,
    normalize_cpu_mask,
    parse_adb_devices,
    parse_benchmark_output,
    parse_cpu_max_freqs,
)

SAMPLE = Path(__file__).parent / "data" / "benchmark_model_output.txt"


# --- command construction ----------------------------------------------------------------------

def test_command_with_serial_mask_threads_and_runs():
    cmd = benchmark_command("/data/local/tmp/op.tflite", threads=1, warmup_runs=10, num_runs=50, cpu_mask="0x80",
                            serial="FA6A10301234")
    assert cmd == ["adb", "-s", "FA6A10301234", "shell", "taskset", "80", "/data/local/tmp/benchmark_model",
                   "--graph=/data/local/tmp/op.tflite", "--num_threads=1", "--warmup_runs=10", "--warmup_min_secs=0",
                   "--num_runs=50", "--min_secs=0", "--use_xnnpack=true"]


def test_command_options():
    cmd = benchmark_command("/data/local/tmp/m.tflite", threads=4, warmup_runs=0, num_runs=7, adb="/opt/sdk/adb",
                            binary="/data/local/tmp/bm", use_xnnpack=False, extra_flags=("--enable_op_profiling=true",))
    assert cmd[:2] == ["/opt/sdk/adb", "shell"]  # no serial, no taskset
    assert "taskset" not in cmd and "-s" not in cmd
    assert cmd[2] == "/data/local/tmp/bm"
    for flag in ("--num_threads=4", "--warmup_runs=0", "--num_runs=7", "--use_xnnpack=false",
                 "--enable_op_profiling=true"):
        assert flag in cmd


@pytest.mark.parametrize("kwargs, match", [
    (dict(threads=0), "threads"),
    (dict(num_runs=0), "num_runs"),
    (dict(warmup_runs=-1), "warmup_runs"),
    (dict(cpu_mask="big"), "cpu_mask"),
    (dict(cpu_mask="0"), "selects no cpu"),
    (dict(serial="abc; reboot"), "serial"),
])
def test_command_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        benchmark_command("/data/local/tmp/op.tflite", **kwargs)


def test_command_rejects_shell_metacharacters_in_paths():
    with pytest.raises(ValueError, match="graph"):
        benchmark_command("/data/local/tmp/a b.tflite")


def test_cpu_masks():
    assert normalize_cpu_mask("F0") == "f0"
    assert normalize_cpu_mask("0x08") == "8"
    assert normalize_cpu_mask(128) == "80"
    # Pixel (2016): cpu0-1 little at 1.59 GHz, cpu2-3 large at 2.15 GHz -> one large core.
    assert largest_core_mask({0: 1593600, 1: 1593600, 2: 2150400, 3: 2150400}) == "8"
    # Pixel 4: 4 little, 3 large, 1 prime -> the prime core.
    assert largest_core_mask({**{c: 1785600 for c in range(4)}, 4: 2419200, 5: 2419200, 6: 2419200,
                              7: 2841600}) == "80"


def test_parse_cpu_freqs_and_devices():
    text = ("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq 1593600\n"
            "/sys/devices/system/cpu/cpu10/cpufreq/cpuinfo_max_freq 2841600\n"
            "/sys/devices/system/cpu/cpu2/cpufreq/cpuinfo_max_freq 2150400\n")
    assert parse_cpu_max_freqs(text) == {0: 1593600, 10: 2841600, 2: 2150400}
    devices = "List of devices attached\nFA6A10301234\tdevice\nemulator-5554\tunauthorized\n\n"
    assert parse_adb_devices(devices) == [("FA6A10301234", "device"), ("emulator-5554", "unauthorized")]
    assert parse_adb_devices("* daemon started successfully\nList of devices attached\n\n") == []


# --- parsing ------------------------------------------------------------------------------------

def test_parse_sample_file_exactly():
    r = parse_benchmark_output(SAMPLE.read_text())
    assert r["count"] == 50
    assert (r["first"], r["curr"], r["min"], r["max"], r["avg"], r["std"]) == (15852, 15813, 15704, 16677,
                                                                                15796.2, 137)
    assert (r["p5"], r["median"], r["p95"]) == (15712, 15771, 15910)
    w = r["warmup"]
    assert (w["count"], w["first"], w["curr"], w["min"], w["max"], w["avg"], w["std"]) == (10, 17466, 16265, 16020,
                                                                                            17466, 16224.6, 419)
    assert (r["init_us"], r["first_inference_us"], r["warmup_avg_us"], r["inference_avg_us"]) == (9871, 17466,
                                                                                                   16224.6, 15796.2)
    assert (r["delegated_nodes"], r["total_nodes"], r["delegate"]) == (112, 112, "TfLiteXNNPackDelegate")
    assert r["warnings"] == []


# Older builds: no "INFO: " prefix, no percentiles; a single warm-up run prints "count=1 curr=X";
# avg >= 1e6 us prints in ostream's default %g form. (Numbers illustrative.)
OLD_FORMAT = """STARTING!
Min num runs: [50]
Num threads: [1]
Graph: [/data/local/tmp/big.tflite]
Loaded model /data/local/tmp/big.tflite
The input model file size (MB): 67.3128
Initialized session in 6.12ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=1 curr=1402311

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=1250112 curr=1248730 min=1239954 max=1261408 avg=1.24866e+06 std=4021

Inference timings in us: Init: 6120, First inference: 1402311, Warmup (avg): 1.40231e+06, Inference (avg): 1.24866e+06
"""


def test_parse_old_format_and_scientific_notation():
    r = parse_benchmark_output(OLD_FORMAT)
    assert r["count"] == 50 and r["avg"] == 1248660.0 and r["std"] == 4021 and r["min"] == 1239954
    assert "median" not in r
    assert r["warmup"] == {"count": 1, "first": 1402311, "curr": 1402311, "min": 1402311, "max": 1402311,
                           "avg": 1402311, "std": 0.0}
    assert r["warmup_avg_us"] == 1402310.0 and r["init_us"] == 6120
    assert r["delegated_nodes"] is None


def test_parse_all_same_runs():
    text = "INFO: count=3 curr=905(all same)\n\nINFO: count=20 curr=812(all same)\n\nWARN: Unconsumed cmdline flags: --x=1\n"
    r = parse_benchmark_output(text)
    assert (r["count"], r["first"], r["min"], r["max"], r["avg"], r["std"]) == (20, 812, 812, 812, 812, 0)
    assert r["warmup"]["avg"] == 905
    assert r["inference_avg_us"] is None
    assert r["warnings"] == ["WARN: Unconsumed cmdline flags: --x=1"]


def test_op_profiler_summary_is_not_taken_for_the_runs():
    text = SAMPLE.read_text() + (
        "INFO: Operator-wise Profiling Info for Regular Benchmark Runs:\n"
        "\tTimings (microseconds): count=50 first=15001 curr=15010 min=14990 max=15900 avg=15100.5 std=120\n"
        "\tMemory (bytes): count=0\n")
    assert parse_benchmark_output(text)["avg"] == 15796.2
    only_profiler = "Timings (microseconds): count=50 first=15001 curr=15010 min=14990 max=15900 avg=15100.5 std=120\n"
    r = parse_benchmark_output(only_profiler)
    assert r["avg"] == 15100.5 and r["warmup"] is None


@pytest.mark.parametrize("garbage", ["", "hello world\n", "Segmentation fault\n", "count=abc\n",
                                     "/system/bin/sh: /data/local/tmp/benchmark_model: not found\n"])
def test_parse_garbage_raises_clear_error(garbage):
    with pytest.raises(ValueError, match=r"no run statistics line \('count=\.\. first=\.\. avg=\.\.'\) found"):
        parse_benchmark_output(garbage)


def test_parse_failure_reports_tool_errors():
    text = ("INFO: STARTING!\nINFO: Graph: [/data/local/tmp/missing.tflite]\n"
            "ERROR: Could not open '/data/local/tmp/missing.tflite'.\n"
            "ERROR: Failed to mmap model /data/local/tmp/missing.tflite\n")
    with pytest.raises(ValueError, match="Failed to mmap model"):
        parse_benchmark_output(text)


def test_parse_inconsistent_output_raises():
    text = SAMPLE.read_text().replace("Inference (avg): 15796.2", "Inference (avg): 9999.9")
    with pytest.raises(ValueError, match="does not match"):
        parse_benchmark_output(text)
    with pytest.raises(ValueError, match="lacks"):
        parse_benchmark_output("INFO: count=5 first=10 curr=11\n")
    with pytest.raises(ValueError, match="count=0"):
        parse_benchmark_output("INFO: count=0\n")
    with pytest.raises(TypeError):
        parse_benchmark_output(b"count=1 curr=5")


# --- no phone: refuse, never invent figures ----------------------------------------------------

def test_registry_builds_without_touching_a_device():
    backend = get_backend("android", threads=1, serial="FA6A10301234", cpu_mask="8")
    assert isinstance(backend, AndroidBackend)
    assert backend.cpu_mask == "8" and backend.serial == "FA6A10301234"


def test_unavailable_without_adb():
    backend = AndroidBackend(adb="/nonexistent/adb")
    with pytest.raises(BackendUnavailable, match="backend android: no device"):
        backend.measure(nn.Identity(), (1, 8), Protocol(warmup=1, repeats=2, rounds=1))
    with pytest.raises(BackendUnavailable, match="backend android: no device"):
        backend.provenance()
    with pytest.raises(BackendUnavailable, match="backend android: no device"):
        backend.runtime_version()


def test_unavailable_when_adb_not_on_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no adb anywhere
    with pytest.raises(BackendUnavailable, match="adb not found"):
        AndroidBackend().measure(nn.Identity(), (1, 8))


def _fake_adb(tmp_path: Path, devices: str) -> str:
    """A stand-in for the external adb tool: lists ``devices`` and answers every shell command with nothing."""
    path = tmp_path / "adb"
    path.write_text("#!/bin/sh\n"
                    'if [ "$1" = devices ]; then printf "List of devices attached\\n' + devices + '\\n"; fi\n'
                    "exit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.skipif(os.name != "posix", reason="needs a POSIX shell for the stand-in adb")
def test_unavailable_without_an_authorised_device(tmp_path):
    adb = _fake_adb(tmp_path, "emulator-5554\\tunauthorized")
    with pytest.raises(BackendUnavailable, match=r"no device attached and authorised .*emulator-5554 \(unauthorized\)"):
        AndroidBackend(adb=adb).measure(nn.Identity(), (1, 8))
    with pytest.raises(BackendUnavailable, match="no device 'FA6A10301234' ready"):
        AndroidBackend(adb=adb, serial="FA6A10301234").provenance()


@pytest.mark.skipif(os.name != "posix", reason="needs a POSIX shell for the stand-in adb")
def test_unavailable_without_benchmark_binary(tmp_path):
    adb = _fake_adb(tmp_path, "FA6A10301234\\tdevice")
    with pytest.raises(BackendUnavailable, match="no executable benchmark_model at /data/local/tmp/benchmark_model"):
        AndroidBackend(adb=adb).provenance()


def test_compile_points_to_measure():
    with pytest.raises(NotImplementedError, match="measure"):
        AndroidBackend().compile(nn.Identity(), (1, 8))


# --- a real phone, when one is attached ---------------------------------------------------------

def test_on_a_real_phone():
    backend = AndroidBackend()
    try:
        prov = backend.provenance()
    except BackendUnavailable as err:
        pytest.skip(str(err))
    pytest.importorskip("litert_torch")
    assert prov["measured_on"] == "phone" and prov["serial"] and prov["device"]
    times = backend.measure(nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()), (1, 16, 28, 28),
                            Protocol(warmup=2, repeats=5, rounds=2))
    assert times.shape == (2,) and np.all(np.isfinite(times)) and np.all(times > 0)
    assert [r["count"] for r in backend.last_runs] == [5, 5]
