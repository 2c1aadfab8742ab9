"""``python -m experiments.hostile_inputs``: forwards to :mod:`experiments.hostile.inputs` (kept so documented commands work)."""

import sys

from experiments.hostile.inputs import main

if __name__ == "__main__":
    sys.exit(main())
