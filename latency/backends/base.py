"""The backend interface: "compile this module for this input shape, time it".

A backend turns a ``torch.nn.Module`` and a fixed input shape into a :class:`Compiled` object
whose ``run()`` executes one inference; :meth:`Backend.measure` times repeated runs. Backends
that time on another device (``android``) override :meth:`Backend.measure` instead. Runtimes
are imported lazily, inside the backend, so that ``import latency`` stays light.
"""

from __future__ import annotations

import platform
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from torch import nn


class BackendUnavailable(RuntimeError):
    """The backend's runtime is not installed or its device is not reachable."""


class Compiled(ABC):
    """A module compiled for one input shape; ``run()`` performs one inference."""

    @abstractmethod
    def run(self) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release runtime resources (sessions, temporary files)."""


STATISTICS = ("min", "median")


@dataclass(frozen=True)
class Protocol:
    """How an op is timed: ``warmup`` untimed runs, then ``rounds`` x ``repeats`` timed runs.

    The profiler interleaves rounds across ops (round r of every op, then round r + 1) so that
    slow drifts of the machine spread over all ops instead of biasing some.

    ``statistic`` is what a table row and an end-to-end figure report: ``min`` (the fastest
    run) or ``median`` (the median of the rounds' medians). Noise on a shared machine only ever
    adds time (another tenant on the core's SMT sibling, preemption, migration), and on the
    2-core cloud VMs this project is developed on it is bimodal: runs alternate, at random over
    sub-second periods, between the uncontended time and about twice it, so a median reports
    the share of contended runs rather than the op, and moved by up to 2x between two runs of
    the same op. The minimum estimates the uncontended time, which is stable (Chen & Revels,
    "Robust benchmarking in noisy environments", 2016; Julia's BenchmarkTools reports it for
    this reason). A phone's ``benchmark_model`` average is a median-like figure: choose
    ``median`` on a quiet, pinned device.

    Many short rounds (50 x 2 runs) rather than a few long ones: the contended and uncontended
    periods last a fraction of a second to seconds, so what makes the fastest run reliable is how
    long the samples of one op are spread over, not how many there are. With the profiler's
    chunks of 64 ops a round of a chunk takes about 0.1 s and an op's rounds span about 5 s;
    two profiles of the same 560 ops then agree to 8.6 % (sd of the per-op ratio), against 21 %
    with 5 x 20 runs in chunks of 8 (``results/latency_validation.md``).
    """

    warmup: int = 10
    repeats: int = 2
    rounds: int = 50
    statistic: str = "min"

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise ValueError(f"Protocol.statistic: {self.statistic!r} is not one of {', '.join(STATISTICS)}")
        for name in ("warmup", "repeats", "rounds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "warmup" else 1):
                raise ValueError(f"Protocol.{name}: {value!r} must be an integer >= {0 if name == 'warmup' else 1}")

    def to_dict(self) -> dict:
        return {"warmup": self.warmup, "repeats": self.repeats, "rounds": self.rounds, "statistic": self.statistic}


class Backend(ABC):
    """Base class. Subclasses set ``name`` and implement ``runtime_version`` and ``compile``."""

    name: str = ""
    # True for backends that time on another device (android): the profiler then calls
    # ``measure()`` per op instead of interleaving ``compile()``d runners on this machine.
    remote: bool = False

    def __init__(self, threads: int = 1):
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads: {threads!r} is not a positive integer")
        self.threads = threads

    @abstractmethod
    def runtime_version(self) -> str:
        """Name and version of the runtime, e.g. 'onnxruntime 1.20.1'."""

    @abstractmethod
    def compile(self, module: nn.Module, input_shape: tuple[int, ...]) -> Compiled:
        """Prepare ``module`` (eval mode) for inputs of ``input_shape``."""

    def time_runs(self, compiled: Compiled, repeats: int) -> np.ndarray:
        """Wall time in ms of each of ``repeats`` consecutive runs."""
        out = np.empty(repeats)
        clock = time.perf_counter_ns
        for i in range(repeats):
            start = clock()
            compiled.run()
            out[i] = (clock() - start) / 1e6
        return out

    def measure(self, module: nn.Module, input_shape: tuple[int, ...], protocol: Protocol = Protocol()) -> np.ndarray:
        """Compile, warm up and time ``protocol.rounds * protocol.repeats`` runs (ms)."""
        compiled = self.compile(module, input_shape)
        try:
            for _ in range(protocol.warmup):
                compiled.run()
            return self.time_runs(compiled, protocol.rounds * protocol.repeats)
        finally:
            compiled.close()

    def provenance(self) -> dict:
        """What a table measured with this backend must record."""
        return {
            "backend": self.name,
            "runtime": self.runtime_version(),
            "threads": self.threads,
            "device": cpu_model(),
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
        }


def cpu_model() -> str:
    """The host CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
