"""``python -m search_spaces.write_specs [--out experiments/specs]``: write Table 3's reference specs as YAML."""

from __future__ import annotations

import argparse

from .references import write_specs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m search_spaces.write_specs", description=__doc__.split(":")[1])
    parser.add_argument("--out", default="experiments/specs", help="output folder (default: experiments/specs)")
    args = parser.parse_args(argv)
    for path in write_specs(args.out):
        print(path)


if __name__ == "__main__":
    main()
