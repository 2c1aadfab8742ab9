"""``python -m search_spaces.export NAME_OR_YAML [--onnx OUT.onnx] [--timm] [--yaml OUT.yaml]``.

``--onnx`` writes the built model (freshly initialised unless ``--weights``) and checks it in
ONNX Runtime against PyTorch; ``--timm`` prints the arch string and timm's ``arch_def``;
``--yaml`` writes the spec.
"""

from __future__ import annotations

import argparse
import sys

from .codecs import timm_arch_def, to_arch_string
from .spec import SpecError, resolve_spec

ONNX_TOLERANCE = 1e-4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search_spaces.export", description=__doc__.splitlines()[0])
    parser.add_argument("spec", metavar="NAME_OR_YAML", help="reference name, spec YAML file or arch string")
    parser.add_argument("--width", type=float, default=None)
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--onnx", metavar="OUT", help="write an ONNX model here")
    parser.add_argument("--weights", metavar="CKPT", help="state dict (.pt, loaded with weights_only=True)")
    parser.add_argument("--timm", action="store_true", help="print the timm-style arch string")
    parser.add_argument("--yaml", metavar="OUT", help="write the spec as YAML here")
    args = parser.parse_args(argv)
    if not (args.onnx or args.timm or args.yaml):
        parser.error("nothing to do: give --onnx OUT, --timm or --yaml OUT")
    try:
        spec = resolve_spec(args.spec, args.width, args.resolution)
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.timm:
        print(to_arch_string(spec))
        print("# timm arch_def:", timm_arch_def(spec))
    if args.yaml:
        spec.to_yaml(args.yaml)
        print(f"wrote {args.yaml}")
    if args.onnx:
        import torch

        from .builder import build
        from .onnx_io import export_onnx, onnx_max_abs_diff

        model = build(spec).eval()
        if args.weights:
            model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
        shape = (1, spec.in_channels, spec.resolution, spec.resolution)
        export_onnx(model, shape, args.onnx)
        diff = onnx_max_abs_diff(model, args.onnx, torch.randn(shape))
        print(f"wrote {args.onnx}: ONNX Runtime vs PyTorch max |diff| = {diff:.2e}")
        if diff > ONNX_TOLERANCE:
            print(f"error: ONNX Runtime output differs from PyTorch by {diff:.2e} > {ONNX_TOLERANCE}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
