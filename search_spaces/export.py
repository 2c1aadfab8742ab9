"""``python -m search_spaces.export NAME_OR_YAML [--onnx OUT.onnx] [--timm] [--yaml OUT.yaml]``.

``--onnx`` writes the built model (freshly initialised unless ``--weights``) and checks it in
ONNX Runtime against PyTorch; ``--timm`` prints the arch string and timm's ``arch_def``;
``--yaml`` writes the spec. Every argument is checked before anything is built or written
(output paths writable, weights readable and of the spec's shapes); a bad one is one line on
stderr and exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jobs.cli import ArgumentParser, check_output_file, fail, integer, number
from .codecs import timm_arch_def, to_arch_string
from jobs.safe_io import InputError, echo, load_state_dict
from .spec import MAX_RESOLUTION, MIN_RESOLUTION, SpecError, resolve_spec

ONNX_TOLERANCE = 1e-4


def weights_problem(model, state: dict) -> str | None:
    """Why ``state`` does not fit ``model`` (missing, unexpected or misshapen tensors), or None."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshapen = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing:
        return f"{len(missing)} tensor(s) of the network are missing, the first {missing[0]!r:.80}"
    if unexpected:
        return f"{len(unexpected)} tensor(s) are not in the network, the first {unexpected[0]!r:.80}"
    if misshapen:
        key = misshapen[0]
        return (f"{len(misshapen)} tensor(s) have the wrong shape, the first {key!r:.80} is "
                f"{tuple(state[key].shape)}, the network needs {tuple(expected[key].shape)}")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m search_spaces.export", description=__doc__.splitlines()[0])
    parser.add_argument("spec", metavar="NAME_OR_YAML", help="reference name, spec YAML file or arch string")
    parser.add_argument("--width", type=number("a width multiplier", 0.1, 4), default=None,
                        help="width multiplier, 0.1 to 4")
    parser.add_argument("--resolution", type=integer(MIN_RESOLUTION, "an input size in pixels", MAX_RESOLUTION),
                        default=None, help=f"input resolution, {MIN_RESOLUTION} to {MAX_RESOLUTION}")
    parser.add_argument("--onnx", metavar="OUT", help="write an ONNX model here")
    parser.add_argument("--weights", metavar="CKPT", help="state dict (.pt, loaded with weights_only=True)")
    parser.add_argument("--timm", action="store_true", help="print the timm-style arch string")
    parser.add_argument("--yaml", metavar="OUT", help="write the spec as YAML here")
    args = parser.parse_args(argv)
    if args.onnx is None and args.yaml is None and not args.timm:
        parser.error("nothing to do: give --onnx OUT, --timm or --yaml OUT")
    if args.weights is not None and args.onnx is None:
        fail("--weights", "weights only go into the --onnx model; add --onnx OUT")
    for flag, path in (("--onnx", args.onnx), ("--yaml", args.yaml)):
        if path is not None:
            check_output_file(flag, path)
    if args.onnx is not None and args.yaml is not None and Path(args.onnx).absolute() == Path(args.yaml).absolute():
        fail("--yaml", f"{echo(args.yaml)} is also the --onnx file; give two paths")
    try:
        spec = resolve_spec(args.spec, args.width, args.resolution)
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    model = None
    if args.onnx is not None:
        from .builder import build

        model = build(spec).eval()
        if args.weights is not None:
            try:
                state = load_state_dict(args.weights, what="file")
            except InputError as err:
                fail("--weights", str(err))
            problem = weights_problem(model, state)
            if problem:
                fail("--weights", f"{echo(args.weights)} does not fit {spec.name}: {problem}")
            model.load_state_dict(state)
    if args.timm:
        print(to_arch_string(spec))
        print("# timm arch_def:", timm_arch_def(spec))
    if args.yaml is not None:
        Path(args.yaml).parent.mkdir(parents=True, exist_ok=True)
        spec.to_yaml(args.yaml)
        print(f"wrote {args.yaml}")
    if model is not None:
        import torch

        from .onnx_io import export_onnx, onnx_max_abs_diff

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
