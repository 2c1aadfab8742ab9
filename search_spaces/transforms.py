"""Pure ArchSpec -> ArchSpec transforms (the spec is never changed in place)."""

from __future__ import annotations

from ._divisible import make_divisible
from .spec import ArchSpec, BlockSpec, SpecError, se_width


def scale_width(spec: ArchSpec, width: float) -> ArchSpec:
    """Scale every channel count of ``spec`` by ``width`` (the official MobileNet rule).

    Output widths are ``make_divisible(c * width)``; expansion layers keep their ratio to the
    (scaled) block input; MobileNetV3-style SE widths are recomputed from the new expansion,
    other SE widths scale with it; the head's final feature layer is kept for ``width < 1``.
    """
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0.1 <= width <= 4:
        raise SpecError("width", f"{width!r} is not a width multiplier in [0.1, 4]")
    if width == 1.0:
        return spec
    c = lambda v: make_divisible(v * width)  # noqa: E731
    stem = spec.stem.__class__(c(spec.stem.out_channels), spec.stem.kernel, spec.stem.stride, spec.stem.nonlinearity)
    blocks, in_old, in_new = [], spec.stem.out_channels, stem.out_channels
    for block in spec.blocks:
        exp = block.expansion_channels
        if exp is not None:
            new_exp = in_new if exp == in_old else make_divisible(in_new * exp / in_old)
        else:
            new_exp = None
        se = block.se_channels
        if se:
            se = se_width(new_exp) if se == se_width(exp) else max(1, round(se * new_exp / exp))
        blocks.append(BlockSpec(block.operator, block.kernel, block.stride, new_exp, c(block.out_channels), se,
                                block.nonlinearity, block.se_gate, block.skip))
        in_old, in_new = block.out_channels, c(block.out_channels)
    head = spec.head
    conv, hidden = head.conv_channels, head.hidden_channels
    if hidden is not None:
        conv = c(conv) if conv is not None else None
        hidden = make_divisible(hidden * max(1.0, width))
    elif conv is not None:
        conv = make_divisible(conv * max(1.0, width))
    return spec.replace(name=f"{spec.name}_x{width:g}", stem=stem, blocks=tuple(blocks),
                        head=head.__class__(conv, hidden, head.nonlinearity))
