"""``python -m experiments.bench_gpu_signal``: forwards to :mod:`experiments.benchmarks.bench_gpu_signal` (kept so documented commands work)."""

import sys

from experiments.benchmarks.bench_gpu_signal import main

if __name__ == "__main__":
    sys.exit(main())
