"""``python -m experiments.bench_strategies``: forwards to :mod:`experiments.benchmarks.bench_strategies` (kept so documented commands work)."""

import sys

from experiments.benchmarks.bench_strategies import main

if __name__ == "__main__":
    sys.exit(main())
