"""``python -m netadapt.noise RUN/history.csv [...]``: a finished NetAdapt run's selection noise
pooled over its iterations (:func:`netadapt.report.pooled_from_histories`), from its history files
(one per round of a pipeline run), as one JSON line."""

from __future__ import annotations

import sys
from pathlib import Path

from jobs.cli import ArgumentParser, fail
from jobs.jsonio import dumps


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m netadapt.noise", description=__doc__.splitlines()[0])
    p.add_argument("histories", nargs="+", metavar="HISTORY_CSV", help="history.csv files of one run")
    a = p.parse_args(argv)
    for path in a.histories:
        if not Path(path).is_file():
            fail("HISTORY_CSV", f"{path} is not a file; give a NetAdapt run's history.csv")
    from .report import pooled_from_histories

    try:
        print(dumps(pooled_from_histories(a.histories)))
    except (ValueError, KeyError) as err:
        print(f"error: {a.histories[0]}...: not a NetAdapt history.csv ({type(err).__name__}: {err})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
