"""``python -m search_spaces.describe NAME_OR_YAML [--width W] [--resolution R] [--json] [--head H]``.

Prints the layer table (input/output shape, MAdds, params, activation bytes) and totals; with
``--json`` one JSON object with ``name``, ``params``, ``madds`` (plain counts), ``resolution``,
``blocks`` and more. ``--head lraspp|ssdlite [--resolution HxW] [--num-classes N]`` describes the
backbone with that dense-prediction head instead (:mod:`search_spaces.heads`).

This module is the command line only. ``search_spaces.describe`` (the attribute of the package)
stays the function :func:`search_spaces.cost.describe`, also after this module is imported:
see :mod:`search_spaces._cli_names`.
"""

from __future__ import annotations

import json
import sys

from jobs.cli import ArgumentParser, integer, number
from .codecs import to_arch_string
from .cost import describe
from .heads.spec import HEADS, parse_resolution, with_head
from .heads.spec import summary as head_summary
from .spec import MAX_CLASSES, SpecError, resolve_spec


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
    parser = ArgumentParser(prog="python -m search_spaces.describe", description=__doc__.splitlines()[0])
    parser.add_argument("spec", metavar="NAME_OR_YAML", help="reference name, spec YAML file or arch string")
    parser.add_argument("--width", type=number("a width multiplier", 0.1, 4), default=None,
                        help="width multiplier, 0.1 to 4")
    parser.add_argument("--resolution", default=None, help="input resolution in pixels (HxW such as 1024x2048 "
                                                             "with --head)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--head", choices=HEADS, help="the backbone with a dense-prediction head (Tables 6-7)")
    parser.add_argument("--num-classes", type=integer(1, "a number of classes", MAX_CLASSES), default=None,
                        help="classes of the head (19 / 91 by default)")
    parser.add_argument("--reduced-tail", action="store_true",
                        help="with --head: halve the tail first (Table 7's RF2 for lraspp, Table 6's † for ssdlite)")
    args = parser.parse_args(argv)
    try:
        if args.head:
            return _main_head(args)
        height, width = parse_resolution(args.resolution) if args.resolution is not None else (None, None)
        if height != width:
            raise SpecError("resolution", f"{args.resolution!r}: a backbone's input is square; HxW needs --head")
        spec = resolve_spec(args.spec, args.width, height)
        if args.num_classes is not None:
            spec = spec.replace(num_classes=args.num_classes)
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


def _main_head(args) -> int:
    dense = with_head(resolve_spec(args.spec, args.width), args.head, resolution=args.resolution,
                      num_classes=args.num_classes, reduced=args.reduced_tail)
    if args.json:
        print(json.dumps(head_summary(dense)))
        return 0
    df = dense.describe()
    totals = df.attrs["totals"]
    print(f"{dense.name}  ({dense.height}x{dense.width}, {dense.head.num_classes} classes, hash {dense.hash})")
    print(df.to_string(index=False))
    print(f"total: {totals['params']:,} params, {totals['madds']:,} MAdds ({totals['madds'] / 1e9:.3f}B); "
          f"head {totals['head_params']:,} params, {totals['head_madds']:,} MAdds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
