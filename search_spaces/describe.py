"""``python -m search_spaces.describe NAME_OR_YAML [--width W] [--resolution R] [--json]``.

Prints the layer table (input/output shape, MAdds, params, activation bytes) and totals; with
``--json`` one JSON object with ``name``, ``params``, ``madds`` (plain counts), ``resolution``,
``blocks`` and more.
"""

from __future__ import annotations

import argparse
import json
import sys

from .codecs import to_arch_string
from .cost import describe
from .spec import SpecError, resolve_spec


def summary(spec) -> dict:
    df = describe(spec)
    totals = df.attrs["totals"]
    return {
        "name": spec.name, "hash": spec.hash, "resolution": spec.resolution, "num_classes": spec.num_classes,
        "params": totals["params"], "madds": totals["madds"], "activation_bytes": totals["activation_bytes"],
        "peak_activation_bytes": totals["peak_activation_bytes"], "num_blocks": len(spec.blocks),
        "blocks": [b.to_dict() for b in spec.blocks], "head": spec.head.__dict__ | {"form": spec.head.form},
        "arch_string": to_arch_string(spec),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search_spaces.describe", description=__doc__.splitlines()[0])
    parser.add_argument("spec", metavar="NAME_OR_YAML", help="reference name, spec YAML file or arch string")
    parser.add_argument("--width", type=float, default=None, help="width multiplier")
    parser.add_argument("--resolution", type=int, default=None, help="input resolution in pixels")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        spec = resolve_spec(args.spec, args.width, args.resolution)
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary(spec)))
        return 0
    df = describe(spec)
    totals = df.attrs["totals"]
    print(f"{spec.name}  ({spec.resolution}x{spec.resolution}, {spec.num_classes} classes, hash {spec.hash})")
    print(df.drop(columns=["op_key"]).to_string(index=False))
    print(f"total: {totals['params']:,} params, {totals['madds']:,} MAdds ({totals['madds'] / 1e6:.1f}M), "
          f"peak activation {totals['peak_activation_bytes'] / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
