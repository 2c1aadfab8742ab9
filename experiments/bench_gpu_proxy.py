"""``python -m experiments.bench_gpu_proxy``: forwards to :mod:`experiments.benchmarks.bench_gpu_proxy` (kept so documented commands work)."""

import sys

from experiments.benchmarks.bench_gpu_proxy import main

if __name__ == "__main__":
    sys.exit(main())
