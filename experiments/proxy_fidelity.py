"""``python -m experiments.proxy_fidelity``: forwards to :mod:`experiments.benchmarks.proxy_fidelity` (kept so documented commands work)."""

import sys

from experiments.benchmarks.proxy_fidelity import main

if __name__ == "__main__":
    sys.exit(main())
