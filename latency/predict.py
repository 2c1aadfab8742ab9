"""``python -m latency.predict NAME_OR_YAML --target T [--width W] [--resolution R] [--json] [--fill madds]``.

Prints the per-op breakdown and the total; with ``--json`` one JSON object with
``latency_ms``, ``target`` and the per-op latencies.
"""

from __future__ import annotations

import argparse
import json
import sys

from search_spaces import SpecError
from search_spaces.spec import resolve_spec

from .predictor import predict
from .table import MissingOpsError
from .targets import TargetError, target_names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m latency.predict", description=__doc__.splitlines()[0])
    parser.add_argument("spec", metavar="NAME_OR_YAML")
    parser.add_argument("--target", required=True, help=f"one of {', '.join(target_names())} or a target YAML")
    parser.add_argument("--width", type=float)
    parser.add_argument("--resolution", type=int)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--fill", choices=["madds"], help="estimate ops missing from the table (reported)")
    args = parser.parse_args(argv)
    try:
        spec = resolve_spec(args.spec, args.width, args.resolution)
        prediction = predict(spec, args.target, fill=args.fill)
    except (SpecError, TargetError, MissingOpsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(prediction.to_dict()))
        return 0
    df = prediction.breakdown
    print(f"{spec.name} on {prediction.target} ({spec.resolution}x{spec.resolution})")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if prediction.filled:
        print(f"note: {len(prediction.filled)} op(s) estimated by --fill {args.fill}, not looked up")
    print(f"per-network overhead: {prediction.network_overhead_ms:.4f} ms")
    print(f"total: {prediction.latency_ms:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
