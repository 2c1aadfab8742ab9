"""``python -m experiments.reproduce``: forwards to :mod:`experiments.pipeline.reproduce` (kept so documented commands work)."""

import sys

from experiments.pipeline.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
