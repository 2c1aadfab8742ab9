"""``python -m search_spaces.heads [--out results/heads.md]``: Tables 6 and 7, ours vs paper."""

import sys

from .tables import main

sys.exit(main())
