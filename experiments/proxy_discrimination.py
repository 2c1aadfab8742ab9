"""``python -m experiments.proxy_discrimination``: forwards to :mod:`experiments.benchmarks.proxy_discrimination` (kept so documented commands work)."""

import sys

from experiments.benchmarks.proxy_discrimination import main

if __name__ == "__main__":
    sys.exit(main())
