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


# --------------------------------------------------------------------------- nonlinearity placement
# Table 5 of the paper ("Effect of non-linearities on MobileNetV3-Large") compares the default
# placement with ReLU everywhere and with h-swish switched on from a later or earlier layer.
# (Imports here, not at the top, because this section was appended to the module.)
import dataclasses  # noqa: E402

from .spec import NONLINEARITIES  # noqa: E402


def _check_nonlinearity(path: str, value: object) -> str:
    if not isinstance(value, str) or value not in NONLINEARITIES:
        raise SpecError(path, f"{value!r} is not one of {', '.join(NONLINEARITIES)}")
    return value


def _nl_name(spec: ArchSpec, suffix: str) -> str:
    return f"{spec.name}_{suffix}"


def with_nonlinearity(spec: ArchSpec, nonlinearity: str) -> ArchSpec:
    """``spec`` with one nonlinearity in every block, the stem and the head (Table 5's "ReLU" row).

    SE gates (hard-sigmoid / sigmoid) are not activations of the main path and stay as they are.
    """
    nl = _check_nonlinearity("nonlinearity", nonlinearity)
    blocks = tuple(dataclasses.replace(b, nonlinearity=nl) for b in spec.blocks)
    return spec.replace(name=_nl_name(spec, nl), stem=dataclasses.replace(spec.stem, nonlinearity=nl),
                        blocks=blocks, head=dataclasses.replace(spec.head, nonlinearity=nl))


def hswish_from(spec: ArchSpec, channels: int | None = None, index: int | None = None, *,
                stem: str = "hswish") -> ArchSpec:
    """h-swish from one block onward and in the head, ReLU in the blocks before it (Table 5's "h-swish @N").

    Give exactly one of ``channels`` (the first block whose *output* channels equal it, the
    paper's N) or ``index`` (a block index, 0-based, negative counts from the end).

    The stem: the paper's MobileNetV3 has an h-swish stem although its first six blocks use
    ReLU, so the stem's activation is a separate choice from the "@N" switch; this function sets
    it to ``stem`` ("hswish" by default, as in the paper's V3, whatever ``spec`` had), so the
    result depends only on the architecture and the switch point. With that reading
    ``hswish_from(mobilenet_v3_large, channels=80)`` is the paper's default model, ``channels=16``
    (block 0) is h-swish everywhere and ``channels=112`` (block 10) is Table 5's "h-swish @112".
    Pass ``stem="relu"`` for the other reading of "ReLU before it".
    """
    stem_nl = _check_nonlinearity("stem", stem)
    if (channels is None) == (index is None):
        raise SpecError("channels", "give exactly one of channels (a block's output width) or index (a block index)")
    if index is not None:
        if isinstance(index, bool) or not isinstance(index, int):
            raise SpecError("index", f"{index!r} is not a block index (an integer)")
        n = len(spec.blocks)
        if not -n <= index < n:
            raise SpecError("index", f"{index} is out of range for {n} blocks (use 0..{n - 1} or -{n}..-1)")
        start = index % n
    else:
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise SpecError("channels", f"{channels!r} is not a channel count (a positive integer)")
        matches = [i for i, b in enumerate(spec.blocks) if b.out_channels == channels]
        if not matches:
            widths = ", ".join(str(w) for w in dict.fromkeys(b.out_channels for b in spec.blocks))
            raise SpecError("channels", f"no block of {spec.name!r} has {channels} output channels "
                                        f"(its blocks have {widths})")
        start = matches[0]
    blocks = tuple(dataclasses.replace(b, nonlinearity="hswish" if i >= start else "relu")
                   for i, b in enumerate(spec.blocks))
    suffix = f"hs{channels}" if channels is not None else f"hsb{start}"
    return spec.replace(name=_nl_name(spec, suffix), stem=dataclasses.replace(spec.stem, nonlinearity=stem_nl),
                        blocks=blocks, head=dataclasses.replace(spec.head, nonlinearity="hswish"))
