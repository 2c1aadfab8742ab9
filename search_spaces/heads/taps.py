"""Feature taps of an ArchSpec, defined by output stride, and the atrous (dilated) form of a spec.

A tap names one layer output of the built network (:func:`search_spaces.build`): its output
stride, its width and its module path. The paper attaches its heads to the layers it calls C4 and
C5: "the last feature extractor layer that has an output stride of 16" and the one at 32
(Section 6.3). In MobileNetV3 that C4 layer is the *expansion* of the first block that goes to
1/32 (Table 1's 13th bneck, 672 channels; Table 2's 9th, 288), and C5 is the head's 1x1 conv
(960 / 576), "the layer immediately before pooling". :func:`feature_tap` generalises this to any
spec and output stride with four points:

``last``       the last layer at that stride (the paper's C4/C5): the expansion of the block that
               leaves the stride if it has one, else the last block output at the stride, or the
               head conv where the network ends at that stride.
``expansion``  the expansion output of the block that leaves the stride.
``depthwise``  the depthwise output of the last block at the stride (DeepLab's
               ``layer_N/depthwise_output`` end points).
``output``     the output of the last block at the stride (the end of the stage).

:func:`feature_taps` gives C3 (1/8, ``output``: the skip LR-ASPP uses), C4 (1/16, ``last``) and
C5 (the final stride, ``last``). Everything here is spec arithmetic; no torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..spec import ArchSpec, SpecError

POINTS = ("last", "expansion", "depthwise", "output")


@dataclass(frozen=True)
class FeatureTap:
    """One tapped layer output. ``block`` is None for the stem and the head conv."""

    name: str
    output_stride: int
    point: str  # expansion / depthwise / output of ``block``, or "stem" / "head_conv"
    block: int | None
    channels: int
    module_path: str  # in search_spaces.build(spec); its output (after BN and activation) is the tap


def block_strides(spec: ArchSpec) -> tuple[tuple[int, int], ...]:
    """(input, output) output stride of every block."""
    stride, out = spec.stem.stride, []
    for block in spec.blocks:
        out.append((stride, stride * block.stride))
        stride *= block.stride
    return tuple(out)


def final_stride(spec: ArchSpec) -> int:
    return block_strides(spec)[-1][1]


def _has_expansion(spec: ArchSpec, index: int) -> bool:
    block = spec.blocks[index]
    in_channels = spec.block_inputs[index][0]
    return block.operator == "bneck" and block.expansion_channels != in_channels


def _block_tap(spec: ArchSpec, name: str, stride: int, index: int, point: str) -> FeatureTap:
    block, path = spec.blocks[index], f"features.{index + 1}"
    if point == "output":
        return FeatureTap(name, stride, "output", index, block.out_channels, path)
    if block.operator != "bneck":
        raise SpecError(f"blocks[{index}]", f"is a regular conv block: it has no {point} layer to tap")
    if point == "expansion":
        return FeatureTap(name, stride, "expansion", index, block.expansion_channels, f"{path}.block.0")
    return FeatureTap(name, stride, "depthwise", index, block.expansion_channels,
                      f"{path}.block.{1 if _has_expansion(spec, index) else 0}")


def _output_tap(spec: ArchSpec, name: str, stride: int) -> FeatureTap:
    at = [i for i, (_, out) in enumerate(block_strides(spec)) if out == stride]
    if at:
        return _block_tap(spec, name, stride, at[-1], "output")
    if spec.stem.stride == stride:
        return FeatureTap(name, stride, "stem", None, spec.stem.out_channels, "features.0")
    raise SpecError("blocks", f"{spec.name!r} has no layer at output stride {stride}")


def feature_tap(spec: ArchSpec, output_stride: int, point: str = "last", name: str | None = None) -> FeatureTap:
    """The layer of ``spec`` at ``output_stride`` (2, 4, 8, ...) selected by ``point`` (see module doc)."""
    if point not in POINTS:
        raise SpecError("point", f"{point!r} is not one of {', '.join(POINTS)}")
    if isinstance(output_stride, bool) or not isinstance(output_stride, int) or output_stride < 1:
        raise SpecError("output_stride", f"{output_stride!r} is not a positive integer")
    name = name or f"1/{output_stride}"
    strides = block_strides(spec)
    if not any(out == output_stride for _, out in strides) and spec.stem.stride != output_stride:
        reached = sorted({spec.stem.stride} | {out for _, out in strides})
        raise SpecError("output_stride", f"{spec.name!r} has no layer at output stride {output_stride} "
                                         f"(its layers are at {', '.join(f'1/{s}' for s in reached)})")
    leaving = next((i for i, (inp, out) in enumerate(strides) if inp == output_stride and out > output_stride), None)
    if point == "output":
        return _output_tap(spec, name, output_stride)
    if point == "depthwise":
        at = [i for i, (_, out) in enumerate(strides) if out == output_stride]
        if not at:
            raise SpecError("output_stride", f"no block of {spec.name!r} ends at output stride {output_stride}")
        return _block_tap(spec, name, output_stride, at[-1], "depthwise")
    if point == "expansion":
        if leaving is None or not _has_expansion(spec, leaving):
            raise SpecError("output_stride", f"no block of {spec.name!r} with an expansion layer leaves "
                                             f"output stride {output_stride}")
        return _block_tap(spec, name, output_stride, leaving, "expansion")
    # last
    if leaving is not None:
        if _has_expansion(spec, leaving):
            return _block_tap(spec, name, output_stride, leaving, "expansion")
        return _output_tap(spec, name, output_stride)
    if spec.head.conv_channels is not None:
        return FeatureTap(name, output_stride, "head_conv", None, spec.head.conv_channels,
                          f"features.{len(spec.blocks) + 1}")
    return _output_tap(spec, name, output_stride)


def feature_taps(spec: ArchSpec) -> dict[str, FeatureTap]:
    """C3 (1/8 block output), C4 (last layer at 1/16) and C5 (last layer at the final stride).

    For MobileNetV3-Large: C3 is block 5's output (40 channels), C4 block 12's expansion (672),
    C5 the head conv (960). For a dilated spec (see :func:`atrous`) C4 and C5 can coincide.
    """
    taps = {}
    for name, stride, point in (("C3", 8, "output"), ("C4", 16, "last"), ("C5", final_stride(spec), "last")):
        try:
            taps[name] = feature_tap(spec, stride, point, name)
        except SpecError:
            continue  # a network that never reaches that stride has no such tap
    return taps


def atrous(spec: ArchSpec, output_stride: int = 16) -> tuple[ArchSpec, tuple[int, ...]]:
    """``spec`` kept at 1/``output_stride``, and the depthwise dilation rate of every block.

    TF-slim's rule (``mobilenet_base(output_stride=...)``, which the paper's DeepLab models use):
    once the features reach ``output_stride``, a block that would stride keeps stride 1 at rate
    1 and every later block's depthwise conv is dilated by the product of the skipped strides.
    A block that loses its stride also loses any residual (it had none), so the built network
    computes the same function with denser features. Costs follow from the returned spec; the
    rates only change the built modules (:func:`search_spaces.heads.build_dense`).
    """
    if isinstance(output_stride, bool) or not isinstance(output_stride, int) or output_stride < 2:
        raise SpecError("output_stride", f"{output_stride!r} is not an output stride (2, 4, 8, 16, 32)")
    if spec.stem.stride > output_stride:
        raise SpecError("output_stride", f"the stem alone reaches 1/{spec.stem.stride}, below 1/{output_stride}")
    current, rate, blocks, rates = spec.stem.stride, 1, [], []
    for block in spec.blocks:
        if current >= output_stride:
            rates.append(rate)
            if block.stride > 1:
                rate *= block.stride
                block = dataclasses.replace(block, stride=1, skip=False)
        else:
            rates.append(1)
            current *= block.stride
        blocks.append(block)
    if current > output_stride:
        raise SpecError("output_stride", f"1/{output_stride} is not reached exactly (a block goes to 1/{current})")
    if all(r == 1 for r in rates) and tuple(blocks) == spec.blocks:
        return spec, tuple(rates)
    return spec.replace(name=f"{spec.name}_os{output_stride}", blocks=tuple(blocks)), tuple(rates)
