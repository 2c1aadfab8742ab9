"""``python -m latency.profile``: measure every op a search space or a set of specs needs.

    python -m latency.profile --backend onnxruntime --threads 1 --specs mobilenet_v3_large mobilenet_v3_small \\
        --out tables/host-ort-1t.csv
    python -m latency.profile --target host-ort-1t --space mobilenetv3

Rows are written atomically after every chunk of ops; rerunning the same command (after a
kill, or with more specs) measures only the ops still missing, and again any row of the table
that is unusable (empty, NaN or negative, duplicated). Every argument is checked before anything
is measured (numbers in range, ``--out`` writable): a bad one is one line on stderr and exit
status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from search_spaces import SpecError
from jobs.cli import ArgumentParser, check_output_file, integer
from search_spaces.spec import resolve_spec

from .backends import STATISTICS, BackendUnavailable, Protocol, backend_names, get_backend
from .profiler import elapsed, ops_for_specs, profile_ops
from .table import ProvenanceMismatch
from .targets import TargetError, load_target, target_names


def space_ops(name: str, resolution: int | None = None) -> list:
    from search_spaces.spaces import get_space

    space = get_space(name)
    return space.all_op_keys(resolution=resolution) if resolution else space.all_op_keys()


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m latency.profile", description=__doc__.splitlines()[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--target", help="take backend, threads and table path from this target")
    parser.add_argument("--backend", choices=backend_names())
    parser.add_argument("--threads", type=integer(1, "a number of threads"))
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--space", help="every op the named search space can produce at every position")
    what.add_argument("--specs", nargs="+", metavar="NAME_OR_YAML", help="every op of these specs")
    parser.add_argument("--resolution", type=integer(1, "an input resolution in pixels"),
                        help="input resolution (default: the specs' / space's own)")
    parser.add_argument("--out", help="table CSV to write (its provenance goes beside it)")
    parser.add_argument("--warmup", type=integer(0, "a number of untimed runs"), default=Protocol.warmup)
    parser.add_argument("--repeats", type=integer(1, "a number of runs per round"), default=Protocol.repeats)
    parser.add_argument("--rounds", type=integer(1, "a number of rounds"), default=Protocol.rounds)
    parser.add_argument("--statistic", choices=STATISTICS, default=Protocol.statistic,
                        help="what a row reports: the fastest run (default; robust to a shared machine's noise) or "
                             "the median of the rounds' medians")
    parser.add_argument("--chunk", type=integer(1, "a number of ops per chunk"), default=64,
                        help="ops compiled and interleaved together (more spreads each op's rounds over a longer time)")
    parser.add_argument("--seed", type=integer(0, "a random seed"), default=0)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def checked_args(parser: ArgumentParser, argv: list[str] | None):
    """The parsed flags, with backend, threads and table path taken from ``--target`` where not
    given, every one checked (one usage line, exit 2) before any work."""
    args = parser.parse_args(argv)
    # An empty value is a mistake, never "not given": refuse it before any default fills in.
    for flag, value, fix in (("--target", args.target, f"one of {', '.join(target_names())} or a target YAML"),
                             ("--space", args.space, "a search space name such as mobilenetv3"),
                             ("--out", args.out, "a CSV file path"),
                             *(("--specs", s, "a reference name or a spec YAML") for s in args.specs or ())):
        if value is not None and not value.strip():
            parser.error(f"argument {flag}: an empty value; give {fix}")
    if args.target is not None:
        try:
            target = load_target(args.target)
        except TargetError as err:
            parser.error(f"argument --target: {err}")
        if not target.measurable:
            parser.error(f"argument --target: {target.name} is a calibrated model, not a device; nothing to profile")
        args.backend = args.backend or target.backend
        args.threads = args.threads or target.threads
        args.out = args.out or target.table_path
    if args.backend is None or args.out is None:
        parser.error("give --backend and --out (or --target)")
    check_output_file("--out", args.out)
    args.out = Path(args.out)
    return args


def main(argv: list[str] | None = None) -> int:
    args = checked_args(build_parser(), argv)
    try:
        backend = get_backend(args.backend, args.threads or 1)
        if args.space is not None:
            keys = space_ops(args.space, args.resolution)
        else:
            keys = ops_for_specs(resolve_spec(s, resolution=args.resolution) for s in args.specs)
        protocol = Protocol(args.warmup, args.repeats, args.rounds, args.statistic)
        start = time.monotonic()
        print(f"{len(keys)} distinct ops; backend {backend.runtime_version()}, {backend.threads} thread(s)")
        table = profile_ops(keys, backend, args.out, protocol, chunk=args.chunk, seed=args.seed,
                            progress=not args.no_progress)
    except (SpecError, TargetError, ValueError, BackendUnavailable, ProvenanceMismatch, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rel = (table.rows["iqr_ms"] / (table.rows["median_ms"] + table.rows["overhead_ms"])).median()
    print(f"wrote {args.out}: {len(table)} ops in {elapsed(start)}; median per-op noise IQR/median {100 * rel:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
