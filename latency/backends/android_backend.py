"""TFLite's ``benchmark_model`` on an Android phone over adb, pinned to one large core.

The paper's latencies are TFLite float inference on a single large core of a Pixel phone. This
backend converts a module with :meth:`TFLiteBackend.convert` (NHWC inputs/outputs, see
``tflite_backend``), pushes the .tflite to the phone and times it there with TFLite's own
``benchmark_model`` binary, under ``taskset MASK`` (by default the mask of the one core with the
highest ``cpuinfo_max_freq``, i.e. a large core).

What :meth:`AndroidBackend.measure` returns. ``benchmark_model`` prints only summary statistics
of its timed runs (count/first/curr/min/max/avg/std, plus p5/median/p95 in recent builds), never
the individual run times. ``measure()`` therefore runs the binary ``protocol.rounds`` times
(each a fresh process: ``protocol.warmup`` warm-up runs, then ``protocol.repeats`` timed runs)
and returns one value per invocation: that invocation's ``avg`` in milliseconds. The array has
``protocol.rounds`` entries, not ``rounds * repeats``; no per-run figure is invented. The full
parsed statistics of each invocation are kept in :attr:`AndroidBackend.last_runs`.

Prerequisites: ``adb`` on the host, one authorised phone, and the ``benchmark_model`` binary
for the phone's ABI at ``benchmark_binary`` (TFLite's README: ``bazel build -c opt
--config=android_arm64 tensorflow/lite/tools/benchmark:benchmark_model``, then ``adb push`` it
and ``chmod +x`` it). Without them every device call raises :class:`BackendUnavailable`.
"""

from __future__ import annotations

import hashlib
import math
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from torch import nn

from .base import Backend, BackendUnavailable, Compiled, Protocol, cpu_model
from .tflite_backend import _version

DEFAULT_BINARY = "/data/local/tmp/benchmark_model"
REMOTE_DIR = "/data/local/tmp"
BUILD_HINT = ("build it with `bazel build -c opt --config=android_arm64 "
              "tensorflow/lite/tools/benchmark:benchmark_model`, then `adb push "
              "bazel-bin/tensorflow/lite/tools/benchmark/benchmark_model /data/local/tmp` and "
              "`adb shell chmod +x /data/local/tmp/benchmark_model`")

_SAFE_ARG = re.compile(r"^[A-Za-z0-9_./+=:,-]+$")  # adb shell joins arguments into one remote sh command line
_MASK = re.compile(r"^(?:0x)?([0-9a-fA-F]+)$")
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf"


# --------------------------------------------------------------------------------------------
# Pure functions: command construction and output parsing.
# --------------------------------------------------------------------------------------------

def normalize_cpu_mask(mask: str | int) -> str:
    """A taskset affinity mask as lower-case hex without ``0x`` (``'0x80'``, ``'80'``, 128 -> ``'80'``)."""
    if isinstance(mask, bool):
        raise ValueError(f"cpu_mask: {mask!r} is not a hex affinity mask")
    if isinstance(mask, int):
        value = mask
    else:
        match = _MASK.match(str(mask).strip())
        if not match:
            raise ValueError(f"cpu_mask: {mask!r} is not a hex affinity mask such as '80' (cpu 7) or 'f0'")
        value = int(match.group(1), 16)
    if value <= 0:
        raise ValueError(f"cpu_mask: {mask!r} selects no cpu")
    return format(value, "x")


def _check_arg(name: str, value: str) -> str:
    if not _SAFE_ARG.match(value):
        raise ValueError(f"{name}: {value!r} must be a plain path or token (letters, digits, _ . / + = : , -), "
                         "since adb shell hands it to the phone's sh")
    return value


def _check_count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: {value!r} is not an integer >= {minimum}")
    return value


def benchmark_command(graph: str, *, threads: int = 1, warmup_runs: int = 10, num_runs: int = 50,
                      cpu_mask: str | int | None = None, serial: str | None = None, adb: str = "adb",
                      binary: str = DEFAULT_BINARY, use_xnnpack: bool = True,
                      extra_flags: tuple[str, ...] = ()) -> list[str]:
    """The host command (argv) that runs ``benchmark_model`` on ``graph`` (a path on the phone).

    ``--min_secs=0`` and ``--warmup_min_secs=0`` make the tool do exactly ``warmup_runs`` and
    ``num_runs`` runs (their defaults, 0.5 s and 1 s, would add runs to fill the time).
    ``cpu_mask`` prefixes ``taskset MASK`` (hex, as TFLite's README: ``taskset f0``).
    """
    _check_count("threads", threads, 1)
    _check_count("warmup_runs", warmup_runs, 0)
    _check_count("num_runs", num_runs, 1)
    cmd = [adb]
    if serial:
        cmd += ["-s", _check_arg("serial", serial)]
    cmd.append("shell")
    if cpu_mask is not None:
        cmd += ["taskset", normalize_cpu_mask(cpu_mask)]
    cmd += [_check_arg("benchmark_binary", binary),
            f"--graph={_check_arg('graph', graph)}",
            f"--num_threads={threads}",
            f"--warmup_runs={warmup_runs}",
            "--warmup_min_secs=0",
            f"--num_runs={num_runs}",
            "--min_secs=0",
            f"--use_xnnpack={'true' if use_xnnpack else 'false'}"]
    cmd += [_check_arg("extra flag", f) for f in extra_flags]
    return cmd


_STAT_LINE = re.compile(r"^(?:INFO:\s*)?(?P<timings>Timings \(microseconds\):\s*)?count=(?P<count>\d+)(?P<rest>.*)$")
_PAIR = re.compile(rf"(\w+)=({_NUMBER})")
_TIMINGS_LINE = re.compile(
    rf"Inference timings in us: Init: (?P<init>{_NUMBER}), First inference: (?P<first>{_NUMBER}), "
    rf"Warmup \(avg\): (?P<warmup>{_NUMBER}), Inference \(avg\): (?P<inference>{_NUMBER})")
_DELEGATED = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \((\w+)\) node")
_STAT_KEYS = ("first", "curr", "min", "max", "avg", "std")


def _parse_stat(match: re.Match) -> dict:
    """One ``Stat::OutputToStream`` line (tensorflow/core/util/stats_calculator.h) as floats (us)."""
    count = int(match.group("count"))
    rest = match.group("rest")
    values = {k: float(v) for k, v in _PAIR.findall(rest)}
    stat: dict = {"count": count}
    if count == 0:
        return stat
    if "first" in values:  # count=N first=.. curr=.. min=.. max=.. avg=.. std=.. [p5=.. median=.. p95=..]
        missing = [k for k in _STAT_KEYS if k not in values]
        if missing:
            raise ValueError(f"benchmark_model output: statistics line lacks {', '.join(missing)}: "
                             f"'count={count}{rest}'")
        stat.update({k: values[k] for k in _STAT_KEYS})
    elif "curr" in values:  # count=1 curr=X, or count=N curr=X(all same): every run took X
        x = values["curr"]
        stat.update(first=x, curr=x, min=x, max=x, avg=x, std=0.0)
    else:
        raise ValueError(f"benchmark_model output: cannot read statistics line 'count={count}{rest}'")
    for k in ("p5", "median", "p95"):
        if k in values:
            stat[k] = values[k]
    return stat


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=0.5)


def _benchmark_lines(text: str) -> tuple[list, list, "re.Match | None", "re.Match | None", list, list]:
    """The lines of ``benchmark_model`` output sorted by kind: (run statistics, op-profiler
    statistics, the last timings match, the last delegate match, ERROR lines, WARN lines)."""
    run_stats, profiler_stats, errors, warns = [], [], [], []
    timings = delegated = None
    for raw in text.splitlines():
        line = raw.strip()
        match = _STAT_LINE.match(line)
        if match:
            (profiler_stats if match.group("timings") else run_stats).append(_parse_stat(match))
            continue
        if m := _TIMINGS_LINE.search(line):
            timings = m
        elif m := _DELEGATED.search(line):
            delegated = m
        elif line.startswith(("ERROR:", "FATAL:")) or "Benchmarking failed" in line:
            errors.append(line)
        elif line.startswith(("WARN:", "WARNING:")):
            warns.append(line)
    return run_stats, profiler_stats, timings, delegated, errors, warns


def parse_benchmark_output(text: str) -> dict:
    """Statistics of the timed runs from the text ``benchmark_model`` prints (microseconds).

    Format (TFLite, tensorflow/lite/tools/benchmark/benchmark_model.cc and
    tensorflow/core/util/stats_calculator.h; recent builds prefix lines with ``INFO: `` and
    append ``p5= median= p95=``)::

        INFO: Running benchmark for at least 10 iterations and at least 0 seconds but ...
        INFO: count=10 first=.. curr=.. min=.. max=.. avg=.. std=.. [p5=.. median=.. p95=..]
        INFO: Running benchmark for at least 50 iterations and at least 0 seconds but ...
        INFO: count=50 first=.. curr=.. min=.. max=.. avg=.. std=..
        INFO: Inference timings in us: Init: .., First inference: .., Warmup (avg): .., Inference (avg): ..

    The last run-statistics line is the timed runs, the one before it the warm-up. Lines
    ``Timings (microseconds): count=..`` belong to the op profiler's summary (the sum of the
    profiled ops per run; printed with ``--enable_op_profiling``) and are used only when the
    output has no run-statistics line at all.

    Returns ``count`` (int) and ``first curr min max avg std`` (floats; ``p5 median p95`` when
    printed) for the timed runs, ``warmup`` (the same for the warm-up, or None), ``init_us``,
    ``first_inference_us``, ``warmup_avg_us``, ``inference_avg_us`` (None without that line),
    ``delegated_nodes`` / ``total_nodes`` / ``delegate`` (None unless the tool logged its
    delegate partitioning) and ``warnings`` (the tool's ``WARN:`` lines).
    Raises ValueError, with the tool's ERROR lines, if there is no statistics line or no run.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_benchmark_output() takes the tool's output as str, got {type(text).__name__}")
    run_stats, profiler_stats, timings, delegated, errors, warns = _benchmark_lines(text)
    stats = run_stats or profiler_stats
    if not stats:
        tail = " | ".join(errors) if errors else " | ".join(text.strip().splitlines()[-3:])[:300]
        raise ValueError("benchmark_model output: no run statistics line ('count=.. first=.. avg=..') found, so "
                         f"the benchmark did not run{': ' + tail if tail else ' (empty output)'}")
    timed = stats[-1]
    if timed["count"] == 0:
        raise ValueError("benchmark_model output: the timed runs have count=0 (was --num_runs 0 or --dry_run set?)"
                         + (": " + " | ".join(errors) if errors else ""))
    warmup = stats[-2] if len(stats) >= 2 and run_stats else None
    result = dict(timed)
    result["warmup"] = warmup
    result.update(init_us=None, first_inference_us=None, warmup_avg_us=None, inference_avg_us=None)
    if timings:
        result.update(init_us=float(timings["init"]), first_inference_us=float(timings["first"]),
                      warmup_avg_us=float(timings["warmup"]), inference_avg_us=float(timings["inference"]))
        if run_stats and not _close(result["inference_avg_us"], timed["avg"]):
            raise ValueError(f"benchmark_model output: 'Inference (avg): {timings['inference']}' does not match the "
                             f"last statistics line's avg={timed['avg']:g}; the output is not one benchmark run")
    result.update(delegated_nodes=int(delegated[1]) if delegated else None,
                  total_nodes=int(delegated[2]) if delegated else None,
                  delegate=delegated[3] if delegated else None)
    result["warnings"] = warns
    return result


def parse_adb_devices(text: str) -> list[tuple[str, str]]:
    """``(serial, state)`` pairs from ``adb devices`` (states: device, unauthorized, offline, ...)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith(("List of devices", "*")):
            out.append((parts[0], parts[1]))
    return out


def parse_cpu_max_freqs(text: str) -> dict[int, int]:
    """``{cpu: max kHz}`` from lines ``/sys/devices/system/cpu/cpuN/cpufreq/cpuinfo_max_freq FREQ``."""
    freqs = {}
    for m in re.finditer(r"cpu(\d+)/cpufreq/cpuinfo_max_freq\s+(\d+)", text):
        freqs[int(m.group(1))] = int(m.group(2))
    return freqs


def largest_core_mask(max_freqs: dict[int, int]) -> str:
    """Hex taskset mask of one core with the highest maximum frequency (the highest-numbered one of
    ties: on big.LITTLE phones the large cores come last)."""
    if not max_freqs:
        raise ValueError("largest_core_mask(): no cpu frequencies")
    top = max(max_freqs.values())
    cpu = max(c for c, f in max_freqs.items() if f == top)
    return format(1 << cpu, "x")


# --------------------------------------------------------------------------------------------
# The backend.
# --------------------------------------------------------------------------------------------

class AndroidBackend(Backend):
    remote = True
    """TFLite ``benchmark_model`` on a phone over adb (see the module docstring)."""

    name = "android"

    def __init__(self, threads: int = 1, serial: str | None = None, adb: str = "adb",
                 benchmark_binary: str = DEFAULT_BINARY, cpu_mask: str | int | None = None,
                 use_xnnpack: bool = True, timeout_s: float = 600.0):
        super().__init__(threads)
        self.serial = _check_arg("serial", serial) if serial else None
        self.adb = adb
        self.benchmark_binary = _check_arg("benchmark_binary", benchmark_binary)
        self.cpu_mask = normalize_cpu_mask(cpu_mask) if cpu_mask is not None else None
        self.use_xnnpack = bool(use_xnnpack)
        self.timeout_s = float(timeout_s)
        self.last_runs: list[dict] = []
        self._device: dict | None = None
        self._tflite = None

    # -- adb -----------------------------------------------------------------------------------

    def _adb_path(self) -> str:
        path = shutil.which(self.adb)
        if path is None:
            raise BackendUnavailable(f"backend android: no device reachable: adb not found ({self.adb!r}); install "
                                     "the Android platform-tools and connect a phone with USB debugging on")
        return path

    def _run(self, args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=timeout or self.timeout_s)
        except FileNotFoundError as err:
            raise BackendUnavailable(f"backend android: no device reachable: cannot run {args[0]!r}") from err
        except subprocess.TimeoutExpired as err:
            raise RuntimeError(f"backend android: {' '.join(args[:6])} ... timed out after {err.timeout} s") from err

    def _adb(self, *args: str, timeout: float | None = None) -> str:
        """Run ``adb -s SERIAL args...``; returns stdout + stderr; raises on a non-zero exit."""
        serial = self._connect()["serial"]
        proc = self._run([self._adb_path(), "-s", serial, *args], timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"backend android: adb -s {serial} {' '.join(args)} failed ({proc.returncode}): "
                               f"{(proc.stderr or proc.stdout).strip()[-500:]}")
        return proc.stdout + proc.stderr

    def _connect(self) -> dict:
        """Find the phone (and cache what provenance needs); raises BackendUnavailable without one."""
        if self._device is not None:
            return self._device
        adb = self._adb_path()
        proc = self._run([adb, "devices"], timeout=60)
        devices = parse_adb_devices(proc.stdout)
        ready = [s for s, state in devices if state == "device"]
        if self.serial:
            state = dict(devices).get(self.serial)
            if state != "device":
                raise BackendUnavailable(
                    f"backend android: no device {self.serial!r} ready "
                    f"({'state ' + state if state else 'not listed'} in `adb devices`; listed: "
                    f"{', '.join(f'{s} ({st})' for s, st in devices) or 'none'})")
            serial = self.serial
        elif len(ready) == 1:
            serial = ready[0]
        elif not ready:
            listed = ", ".join(f"{s} ({st})" for s, st in devices)
            raise BackendUnavailable("backend android: no device attached and authorised (`adb devices` lists "
                                     f"{listed or 'none'})")
        else:
            raise BackendUnavailable(f"backend android: {len(ready)} devices attached ({', '.join(ready)}); "
                                     "choose one with serial=")

        def shell(command: str) -> str:
            p = self._run([adb, "-s", serial, "shell", command], timeout=60)
            return p.stdout.strip()

        if shell(f"test -x {self.benchmark_binary} && echo ok") != "ok":
            raise BackendUnavailable(f"backend android: no executable benchmark_model at {self.benchmark_binary} "
                                     f"on {serial}; {BUILD_HINT}")
        props = {k: shell(f"getprop {k}") for k in ("ro.product.model", "ro.product.manufacturer",
                                                    "ro.soc.model", "ro.board.platform",
                                                    "ro.build.version.release", "ro.product.cpu.abi")}
        digest = shell(f"sha256sum {self.benchmark_binary}").split()
        freqs = parse_cpu_max_freqs(shell(
            "for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; do echo $f $(cat $f); done"))
        self._device = {"serial": serial, "props": props, "binary_sha256": digest[0] if digest else "unknown",
                        "cpu_max_freqs_khz": freqs}
        return self._device

    def effective_cpu_mask(self) -> str:
        """The taskset mask used: ``cpu_mask`` if given, else one core of the highest max frequency."""
        if self.cpu_mask is not None:
            return self.cpu_mask
        freqs = self._connect()["cpu_max_freqs_khz"]
        if not freqs:
            raise BackendUnavailable("backend android: cannot read the phone's cpufreq to find a large core; "
                                     "pass cpu_mask= (e.g. '80' for cpu 7)")
        return largest_core_mask(freqs)

    # -- Backend API -----------------------------------------------------------------------------

    def runtime_version(self) -> str:
        digest = self._connect()["binary_sha256"]
        return f"TFLite benchmark_model {self.benchmark_binary} (sha256 {digest[:16]})"

    def compile(self, module: nn.Module, input_shape: tuple[int, ...]) -> Compiled:
        raise NotImplementedError("backend android: inference runs on the phone, so there is nothing to run on the "
                                  "host; use measure(), which times on the phone with benchmark_model")

    def tflite(self):
        """The converter (the tflite backend); raises BackendUnavailable without litert-torch."""
        if self._tflite is None:
            from .tflite_backend import TFLiteBackend

            self._tflite = TFLiteBackend(threads=self.threads)
        return self._tflite

    def command(self, graph: str, protocol: Protocol) -> list[str]:
        return benchmark_command(graph, threads=self.threads, warmup_runs=protocol.warmup,
                                 num_runs=protocol.repeats, cpu_mask=self.effective_cpu_mask(),
                                 serial=self._connect()["serial"], adb=self._adb_path(),
                                 binary=self.benchmark_binary, use_xnnpack=self.use_xnnpack)

    def measure(self, module: nn.Module, input_shape: tuple[int, ...], protocol: Protocol = Protocol()) -> np.ndarray:
        """Time ``module`` on the phone: ``protocol.rounds`` invocations of benchmark_model, each
        ``protocol.warmup`` warm-up and ``protocol.repeats`` timed runs; returns each
        invocation's mean run time in ms (``protocol.rounds`` values; see the module docstring)."""
        device = self._connect()  # fail fast, before converting
        with tempfile.TemporaryDirectory() as tmp:
            local = self.tflite().convert(module, input_shape, Path(tmp) / "model.tflite")
            digest = hashlib.sha256(local.read_bytes()).hexdigest()[:16]
            remote = f"{REMOTE_DIR}/mnv3nas_{digest}.tflite"
            self._adb("push", str(local), remote)
        runs, out = [], []
        try:
            for _ in range(protocol.rounds):
                proc = self._run(self.command(remote, protocol))
                text = proc.stdout + proc.stderr
                try:
                    stats = parse_benchmark_output(text)
                except ValueError as err:
                    raise RuntimeError(f"backend android: benchmark_model failed on {device['serial']} "
                                       f"(exit {proc.returncode}): {err}") from err
                runs.append(stats)
                out.append(stats["avg"] / 1000.0)
        finally:
            self._run([self._adb_path(), "-s", device["serial"], "shell", f"rm -f {remote}"], timeout=60)
            self.last_runs = runs
        return np.asarray(out, dtype=float)

    def provenance(self) -> dict:
        device = self._connect()
        props = device["props"]
        return {
            "backend": self.name,
            "runtime": self.runtime_version(),
            "threads": self.threads,
            "measured_on": "phone",
            "device": props.get("ro.product.model") or "unknown",
            "serial": device["serial"],
            "manufacturer": props.get("ro.product.manufacturer", ""),
            "soc": props.get("ro.soc.model") or props.get("ro.board.platform", ""),
            "os": f"Android {props.get('ro.build.version.release', '')}".strip(),
            "abi": props.get("ro.product.cpu.abi", ""),
            "cpu_mask": self.effective_cpu_mask(),
            "cpu_max_freqs_khz": {str(k): v for k, v in sorted(device["cpu_max_freqs_khz"].items())},
            "benchmark_binary": self.benchmark_binary,
            "benchmark_binary_sha256": device["binary_sha256"],
            "xnnpack": self.use_xnnpack,
            "converter": f"litert-torch {_version('litert-torch')}",
            "io_layout": "NHWC",
            "samples": "one per benchmark_model invocation: the mean of protocol.repeats runs (ms)",
            "host": cpu_model(),
            "python": platform.python_version(),
        }
