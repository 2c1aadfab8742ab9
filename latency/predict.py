"""``python -m latency.predict NAME_OR_YAML --target T [--width W] [--resolution R] [--json] [--fill madds]``.

Prints the per-op breakdown and the total; with ``--json`` one JSON object with
``latency_ms``, ``target``, the per-op latencies and ``extrapolations`` (why the prediction
leaves the target's calibration domain, one line each; ``[]`` inside it; the ops concerned are
marked ``extrapolated``). A bad argument is one line on stderr and exit status 2.

This module is the command line only. ``latency.predict`` (the attribute of the package) stays
the function :func:`latency.predictor.predict`, also after this module is imported: see
:mod:`search_spaces._cli_names`.
"""

from __future__ import annotations

import json
import sys

from search_spaces import SpecError
from jobs.cli import ArgumentParser, integer, positive_float
from search_spaces.spec import resolve_spec

from .predictor import predict
from .table import MissingOpsError, ProvenanceMismatch
from .targets import TargetError, load_target, target_names


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m latency.predict", description=__doc__.splitlines()[0])
    parser.add_argument("spec", metavar="NAME_OR_YAML")
    parser.add_argument("--target", required=True, help=f"one of {', '.join(target_names())} or a target YAML")
    parser.add_argument("--width", type=positive_float("a width multiplier such as 0.75"))
    parser.add_argument("--resolution", type=integer(1, "an input resolution in pixels such as 224"))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--fill", choices=["madds"], help="estimate ops missing from the table (reported)")
    args = parser.parse_args(argv)
    try:
        target = load_target(args.target)
    except TargetError as err:
        print(f"error: argument --target: {err}", file=sys.stderr)
        return 2
    try:
        spec = resolve_spec(args.spec, args.width, args.resolution)
        prediction = predict(spec, target, fill=args.fill)
    except (SpecError, TargetError, MissingOpsError, ProvenanceMismatch, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(prediction.to_dict(), allow_nan=False))
        return 0
    df = prediction.breakdown
    print(f"{spec.name} on {prediction.target} ({spec.resolution}x{spec.resolution})")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if prediction.filled:
        print(f"note: {len(prediction.filled)} op(s) estimated by --fill {args.fill}, not looked up")
    for reason in prediction.extrapolations:
        print(f"extrapolation: {reason}")
    print(f"per-network overhead: {prediction.network_overhead_ms:.4f} ms")
    print(f"total: {prediction.latency_ms:.3f} ms" + (" (extrapolated)" if prediction.extrapolations else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
