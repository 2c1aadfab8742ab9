"""Published mobile networks with an ImageNet top-1, written as our specs, for the fidelity benchmark.

    python -m experiments.benchmarks.published_networks [--out experiments/data/tuning]

writes one YAML per network below; ``experiments/data/tuning_networks.csv`` names them with their
published top-1 and its source. Each is the nearest form our :class:`search_spaces.ArchSpec`
expresses; where it differs from the original, :data:`NOTES` says how (the CSV repeats it).

* MnasNet-B1 at width alpha, as torchvision builds it (``torchvision.models.mnasnet``: every
  width but the 1280 head rounded with ``_round_to_multiple_of(d * alpha, 8, 0.9)``; the first
  block a depthwise-separable conv 32 -> 16; ReLU; no SE).
* MobileNetV1 at width alpha (Howard et al. 2017; TF-slim's ``mobilenet_v1.py``: depth
  ``max(int(d * alpha), 8)``): a 3x3 stem and 13 depthwise-separable blocks, no head conv.
* FBNet-A / -B / -C (Wu et al. 2019; ``mobile_cv/arch/fbnet_v2/fbnet_modeldef_cls_fbnet.py`` of
  facebookresearch/mobile-vision): inverted residuals with the expansion relative to the block's
  input, "skip" blocks left out, a 1x1 head conv (1504 / 1984 / 1984).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from search_spaces import ArchSpec
from search_spaces.spec import BlockSpec, HeadSpec, StemSpec

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "tuning"

NOTES = {
    "mobilenet_v1": "nearest form: our depthwise-separable block has no nonlinearity after its pointwise conv "
                    "(MobileNetV1 has ReLU6 there); dropout 0.2 as our other specs",
    "fbnet_a": "nearest form: the three 1x1 convs with 2 groups (ir_k*_g2) are dense here; skip blocks omitted",
    "fbnet_b": "skip block omitted (an identity)",
    "fbnet_c": "skip block omitted (an identity)",
    "mnasnet_b1": "as torchvision builds it",
}


def _round_to_multiple_of(value: float, divisor: int = 8, round_up_bias: float = 0.9) -> int:
    """torchvision's MnasNet rounding (``torchvision.models.mnasnet._round_to_multiple_of``)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded if rounded >= round_up_bias * value else rounded + divisor


def _bneck(kernel: int, stride: int, expansion: int, out: int, nl: str = "relu", skip: bool = True) -> BlockSpec:
    return BlockSpec("bneck", kernel, stride, expansion, out, nonlinearity=nl, skip=skip)


def mnasnet_b1(alpha: float) -> ArchSpec:
    """MnasNet-B1 at width ``alpha`` as torchvision's ``MNASNet(alpha)``."""
    d = [_round_to_multiple_of(c * alpha) for c in (32, 16, 24, 40, 80, 96, 192, 320)]
    blocks = [_bneck(3, 1, d[0], d[1], skip=False)]  # depthwise-separable: dw 3x3, then 1x1 to 16, no skip
    stacks = [(d[1], d[2], 3, 2, 3, 3), (d[2], d[3], 5, 2, 3, 3), (d[3], d[4], 5, 2, 6, 3),
              (d[4], d[5], 3, 1, 6, 2), (d[5], d[6], 5, 2, 6, 4), (d[6], d[7], 3, 1, 6, 1)]
    for cin, cout, kernel, stride, factor, repeats in stacks:
        blocks.append(_bneck(kernel, stride, cin * factor, cout))
        blocks += [_bneck(kernel, 1, cout * factor, cout) for _ in range(repeats - 1)]
    return ArchSpec(name=f"mnasnet_b1_{_tag(alpha)}", stem=StemSpec(d[0], 3, 2, "relu"), blocks=tuple(blocks),
                    head=HeadSpec(conv_channels=1280, hidden_channels=None, nonlinearity="relu"))


def mobilenet_v1(alpha: float) -> ArchSpec:
    """MobileNetV1 at width ``alpha`` (TF-slim's depth rule), in its nearest form (:data:`NOTES`)."""
    def depth(c: int) -> int:
        return max(int(c * alpha), 8)

    layers = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    blocks, cin = [], depth(32)
    for out, stride in layers:
        blocks.append(_bneck(3, stride, cin, depth(out), nl="relu6", skip=False))
        cin = depth(out)
    return ArchSpec(name=f"mobilenet_v1_{_tag(alpha)}", stem=StemSpec(depth(32), 3, 2, "relu6"), blocks=tuple(blocks),
                    head=HeadSpec(conv_channels=None, hidden_channels=None, nonlinearity="relu6"))


# (kernel, out, stride, expansion) per block of mobile-vision's fbnet_a/b/c; "skip" blocks left out.
_FBNET = {
    "fbnet_a": ([(3, 24, 2, 3), (3, 24, 1, 1),
                 (5, 32, 2, 6), (3, 32, 1, 3), (5, 32, 1, 1), (3, 32, 1, 3),
                 (5, 64, 2, 6), (5, 64, 1, 3), (5, 64, 1, 1), (5, 64, 1, 6),
                 (3, 112, 1, 6), (5, 112, 1, 1), (5, 112, 1, 3), (3, 112, 1, 1),
                 (5, 184, 2, 6), (5, 184, 1, 6), (5, 184, 1, 3), (5, 184, 1, 6), (5, 352, 1, 6)], 1504),
    "fbnet_b": ([(3, 16, 1, 1),
                 (3, 24, 2, 6), (5, 24, 1, 1), (3, 24, 1, 1), (3, 24, 1, 1),
                 (5, 32, 2, 6), (5, 32, 1, 3), (3, 32, 1, 6), (5, 32, 1, 6),
                 (5, 64, 2, 6), (5, 64, 1, 6), (5, 64, 1, 3),
                 (5, 112, 1, 6), (3, 112, 1, 1), (5, 112, 1, 1), (5, 112, 1, 3),
                 (5, 184, 2, 6), (5, 184, 1, 1), (5, 184, 1, 6), (5, 184, 1, 6), (3, 352, 1, 6)], 1984),
    "fbnet_c": ([(3, 16, 1, 1),
                 (3, 24, 2, 6), (3, 24, 1, 1), (3, 24, 1, 1),
                 (5, 32, 2, 6), (5, 32, 1, 3), (5, 32, 1, 6), (3, 32, 1, 6),
                 (5, 64, 2, 6), (5, 64, 1, 3), (5, 64, 1, 6), (5, 64, 1, 6),
                 (5, 112, 1, 6), (5, 112, 1, 6), (5, 112, 1, 6), (5, 112, 1, 3),
                 (5, 184, 2, 6), (5, 184, 1, 6), (5, 184, 1, 6), (5, 184, 1, 6), (3, 352, 1, 6)], 1984),
}


def fbnet(name: str) -> ArchSpec:
    """FBNet-A, -B or -C (``name``: ``fbnet_a`` ...) in its nearest form (:data:`NOTES`)."""
    rows, head = _FBNET[name]
    blocks, cin = [], 16
    for kernel, out, stride, factor in rows:
        blocks.append(_bneck(kernel, stride, cin * factor, out))
        cin = out
    return ArchSpec(name=name, stem=StemSpec(16, 3, 2, "relu"), blocks=tuple(blocks),
                    head=HeadSpec(conv_channels=head, hidden_channels=None, nonlinearity="relu"))


def _tag(alpha: float) -> str:
    return f"{alpha:g}".replace(".", "")


def published() -> dict[str, ArchSpec]:
    """Every network this module writes, by file stem."""
    specs = [mnasnet_b1(a) for a in (0.5, 0.75, 1.0, 1.3)] + [mobilenet_v1(a) for a in (0.25, 0.5, 0.75, 1.0)]
    specs += [fbnet(n) for n in ("fbnet_a", "fbnet_b", "fbnet_c")]
    return {s.name: s for s in specs}


def write(out: Path = DEFAULT_OUT) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, spec in published().items():
        family = next(k for k in NOTES if name.startswith(k))
        path = out / f"{name}.yaml"
        spec.to_yaml(path, header=f"Generated by `python -m experiments.benchmarks.published_networks`; do not edit.\n"
                                  f"{family}: {NOTES[family]}")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.benchmarks.published_networks",
                                description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(DEFAULT_OUT))
    a = p.parse_args(argv)
    for path in write(Path(a.out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
