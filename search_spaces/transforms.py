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


# --------------------------------------------------------------------------- Section 5: the redesign
# "Searching for MobileNetV3", Section 5 ("Network Improvements"): after search and NetAdapt the
# paper redesigns the expensive layers at both ends of the network by hand. Each change below is
# one pure transform usable on any spec; :func:`redesign` applies all four in the paper's order.
#
# "The last block" in our spec form. The *original last stage* (MobileNetV2, MnasNet, the
# searched networks before Section 5) is the last entry of ``spec.blocks``, an inverted
# bottleneck with a 1x1 expansion layer (e.g. 160 -> 960 -> depthwise 3x3 -> projection 320),
# followed by ``head.conv_channels`` (a 1x1 conv with BN to 1280 at the last resolution), global
# pooling and the classifier, with ``head.hidden_channels`` None. The *efficient last stage*
# (Figure 5) keeps that block's expansion as the head's 1x1 conv with BN (960, at the block's
# input resolution), pools, moves the old 1x1 conv past the pool as the hidden layer without BN
# (1280, at 1x1) and drops the block's filtering (depthwise, and its SE if any) and projection
# layers.


def _check_spec(spec: object) -> ArchSpec:
    if not isinstance(spec, ArchSpec):
        raise SpecError("spec", f"expected an ArchSpec, got {type(spec).__name__}")
    return spec


def efficient_last_stage(spec: ArchSpec) -> ArchSpec:
    """Figure 5: the original last stage -> the efficient last stage (see the comment above).

    The head's 1x1 conv gets the last block's ``expansion_channels`` and the old
    ``head.conv_channels`` become ``head.hidden_channels``; the last block is removed; the head
    keeps its nonlinearity. With Table 1's numbers: ``bneck 960 -> 320`` + ``conv 1x1 1280`` +
    pool becomes ``conv 1x1 960`` + pool + ``conv 1x1 NBN 1280``. If the last block has stride 2
    its expansion ran before the stride, so the head conv (and the pool) now run at the larger
    resolution, where that layer already ran.

    Raises :class:`SpecError` when ``spec`` is not in the original form (the head already has a
    hidden layer, or no 1x1 conv), has a single block, or its last block has no 1x1 expansion
    layer to keep (a regular conv, or a bneck whose expansion equals its input).
    """
    spec = _check_spec(spec)
    head = spec.head
    if head.hidden_channels is not None:
        raise SpecError("head.hidden_channels", f"{head.hidden_channels} is set: {spec.name!r} already has the "
                                                "efficient last stage (a hidden layer after pooling)")
    if head.conv_channels is None:
        raise SpecError("head.conv_channels", "is null: the original last stage needs the 1x1 conv before pooling "
                                              "that the efficient last stage moves past it")
    n = len(spec.blocks)
    if n < 2:
        raise SpecError("blocks", f"{spec.name!r} has 1 block; the efficient last stage removes the last block "
                                  "and needs another before it")
    last = spec.blocks[-1]
    in_channels, _ = spec.block_inputs[-1]
    if last.operator != "bneck" or last.expansion_channels == in_channels:
        kind = "a regular conv" if last.operator != "bneck" else "a bneck without expansion layer"
        raise SpecError(f"blocks[{n - 1}]", f"is {kind}; the efficient last stage keeps the last block's "
                                            "1x1 expansion layer as the head's conv, and this block has none")
    new_head = dataclasses.replace(head, conv_channels=last.expansion_channels, hidden_channels=head.conv_channels)
    return spec.replace(name=f"{spec.name}_els", blocks=spec.blocks[:-1], head=new_head)


def stem_16_hswish(spec: ArchSpec) -> ArchSpec:
    """Section 5.1: the first layer becomes 16 filters with h-swish (kernel and stride kept).

    A first block without expansion layer (its expansion equals the old stem width: a
    depthwise-separable conv) keeps having none, so its expansion becomes 16 as well; every
    other width stays as searched. A first block that now has equal input and output widths,
    stride 1 and ``skip`` gets its residual (Table 1's first bneck 16 -> 16).
    """
    spec = _check_spec(spec)
    old = spec.stem.out_channels
    blocks = list(spec.blocks)
    first = blocks[0]
    if first.operator == "bneck" and first.expansion_channels == old:
        se = first.se_channels
        if se and se == se_width(old):
            se = se_width(16)  # a MobileNetV3-style SE follows its expansion
        blocks[0] = dataclasses.replace(first, expansion_channels=16, se_channels=se)
    return spec.replace(name=f"{spec.name}_stem16", stem=dataclasses.replace(spec.stem, out_channels=16,
                                                                              nonlinearity="hswish"),
                        blocks=tuple(blocks))


def hswish_second_half(spec: ArchSpec, from_resolution: int | None = 14, from_index: int | None = None) -> ArchSpec:
    """Section 5.2: h-swish only in the deeper layers, ReLU before; the stem keeps its own.

    The switch is the first block whose *output* is ``from_resolution`` x ``from_resolution``
    or smaller (at the spec's own input resolution), i.e. with the default 14 at 224 input the
    stride-2 block that produces the 14x14 maps (Table 1's ``bneck 3x3 240 -> 80``, Table 2's
    ``bneck 5x5 96 -> 40``); ``from_index`` (a block index, negative from the end) picks the
    block directly and takes precedence. Blocks from the switch on and the head use h-swish,
    blocks before it ReLU (via :func:`hswish_from`); the stem's nonlinearity is left as it is
    (:func:`stem_16_hswish` sets it).
    """
    spec = _check_spec(spec)
    if from_index is None:
        if isinstance(from_resolution, bool) or not isinstance(from_resolution, int) or from_resolution < 1:
            raise SpecError("from_resolution", f"{from_resolution!r} is not a feature-map size in pixels "
                                               "(a positive integer); or give from_index")
        sizes = [-(-size // b.stride) for b, (_, size) in zip(spec.blocks, spec.block_inputs)]
        matches = [i for i, size in enumerate(sizes) if size <= from_resolution]
        if not matches:
            raise SpecError("from_resolution", f"no block of {spec.name!r} outputs {from_resolution}x"
                                               f"{from_resolution} or smaller (its smallest is {min(sizes)}x"
                                               f"{min(sizes)} at input {spec.resolution}); give from_index")
        from_index = matches[0]
    else:
        n = len(spec.blocks)
        if isinstance(from_index, bool) or not isinstance(from_index, int) or not -n <= from_index < n:
            raise SpecError("from_index", f"{from_index!r} is not a block index of {spec.name!r} "
                                          f"(0..{n - 1} or -{n}..-1)")
        from_index %= n
    out = hswish_from(spec, index=from_index, stem=spec.stem.nonlinearity)
    return out.replace(name=f"{spec.name}_hsb{from_index}")


def fixed_se(spec: ArchSpec) -> ArchSpec:
    """Section 5.3: every squeeze-and-excite bottleneck becomes ``make_divisible(exp / 4, 8)``
    with a hard-sigmoid gate. Blocks without SE keep none; a spec without SE is returned as is
    (a searched network may have chosen no SE anywhere)."""
    spec = _check_spec(spec)
    blocks = tuple(dataclasses.replace(b, se_channels=se_width(b.expansion_channels), se_gate="hsigmoid")
                   if b.has_se else b for b in spec.blocks)
    if blocks == spec.blocks:
        return spec
    return spec.replace(name=f"{spec.name}_se4", blocks=blocks)


def redesign(spec: ArchSpec, *, from_resolution: int = 14, from_index: int | None = None,
             name: str | None = None) -> ArchSpec:
    """Section 5 as one transform: :func:`efficient_last_stage`, :func:`stem_16_hswish`,
    :func:`hswish_second_half` (``from_resolution`` / ``from_index``) and :func:`fixed_se`.

    A spec that already has the efficient last stage (a search in the ``mobilenetv3`` space,
    whose skeleton has it) keeps its head; every other failure of a step is raised. The
    result is named ``name`` or ``<spec.name>_v3``. Applied to the paper's pre-redesign
    networks (``experiments/specs_pre_redesign/``) it gives Tables 1 and 2.
    """
    spec = _check_spec(spec)
    out = spec if spec.head.hidden_channels is not None else efficient_last_stage(spec)
    out = fixed_se(hswish_second_half(stem_16_hswish(out), from_resolution, from_index))
    return out.replace(name=name or f"{spec.name}_v3")


# --------------------------------------------------------------------------- reduced tail (Tables 6-7)
# The paper's detection and segmentation backbones halve the channels after the C4 tap: Table 6's
# "†" rows ("channels in the blocks between C4 and C5 are reduced by a factor of 2") and Table 7's
# RF2 ("reduce the filters in the last block by a factor of 2").


def _c4_block_index(spec: ArchSpec) -> int:
    """Index of the first block whose output reaches output stride 32 (its expansion is the C4 tap)."""
    stride = spec.stem.stride
    for index, block in enumerate(spec.blocks):
        stride *= block.stride
        if stride >= 32:
            return index
    raise SpecError("blocks", f"{spec.name!r} never reaches output stride 32 (its blocks end at 1/{stride}), "
                              "so it has no tail between C4 and C5 to reduce")


def reduced_tail(spec: ArchSpec, divisor: int = 2, *, reduce_c4_expansion: bool = False) -> ArchSpec:
    """``spec`` with the channels between the C4 tap and C5 divided by ``divisor``.

    The C4 block is the first block that reaches 1/32 (Table 1's 13th bneck in V3-Large, Table 2's
    9th in V3-Small). Its output and every later block's output and expansion are divided (then
    rounded with :func:`make_divisible`); SE widths follow their expansion (MobileNetV3's rule is
    recomputed, other widths scale); a block without an expansion layer keeps none; the head's
    1x1 conv and hidden layer are divided too. With the default this is torchvision's
    ``mobilenet_v3_*(reduced_tail=True)`` and Table 6's "†" backbones: the C4 expansion itself
    (672 / 288, the tapped layer) keeps its width.

    ``reduce_c4_expansion=True`` also divides the C4 block's expansion (672 -> 336, 288 -> 144):
    DeepLab's ``mobilenet_v3_*_seg`` definition, i.e. Table 7's RF2, whose published parameter
    counts (1.51M, 0.47M) it reproduces.
    """
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1:
        raise SpecError("divisor", f"{divisor!r} is not a positive integer")
    if not isinstance(reduce_c4_expansion, bool):
        raise SpecError("reduce_c4_expansion", f"{reduce_c4_expansion!r} is not a boolean")
    if divisor == 1:
        return spec
    start = _c4_block_index(spec)
    blocks = list(spec.blocks[:start])
    in_old = in_new = spec.blocks[start - 1].out_channels if start else spec.stem.out_channels
    for index, block in enumerate(spec.blocks[start:], start):
        exp = block.expansion_channels
        if exp is None:
            new_exp = None
        elif exp == in_old:
            new_exp = in_new  # no expansion layer: stays so
        elif index > start or reduce_c4_expansion:
            new_exp = make_divisible(exp / divisor)
        else:
            new_exp = exp
        se = block.se_channels
        if se and new_exp != exp:
            se = se_width(new_exp) if se == se_width(exp) else max(1, round(se * new_exp / exp))
        out = make_divisible(block.out_channels / divisor)
        blocks.append(dataclasses.replace(block, expansion_channels=new_exp, out_channels=out, se_channels=se))
        in_old, in_new = block.out_channels, out
    head = spec.head
    conv = make_divisible(head.conv_channels / divisor) if head.conv_channels is not None else None
    hidden = make_divisible(head.hidden_channels / divisor) if head.hidden_channels is not None else None
    suffix = f"rf{divisor}" if reduce_c4_expansion else f"rt{divisor}"
    return spec.replace(name=f"{spec.name}_{suffix}", blocks=tuple(blocks),
                        head=dataclasses.replace(head, conv_channels=conv, hidden_channels=hidden))
