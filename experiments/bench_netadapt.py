"""``python -m experiments.bench_netadapt``: forwards to :mod:`experiments.benchmarks.bench_netadapt` (kept so documented commands work)."""

import sys

from experiments.benchmarks.bench_netadapt import main

if __name__ == "__main__":
    sys.exit(main())
