"""``python -m experiments.bench_ray``: forwards to :mod:`experiments.benchmarks.bench_ray` (kept so documented commands work)."""

import sys

from experiments.benchmarks.bench_ray import main

if __name__ == "__main__":
    sys.exit(main())
