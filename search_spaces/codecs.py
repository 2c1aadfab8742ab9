"""timm-style arch strings: ArchSpec <-> text. Never modules.

The string is one line: an optional ``NAME:`` prefix, then stages separated by ``|`` whose
blocks are separated by ``,``. The middle stages are timm's arch-def tokens
(``ir_r3_k5_s2_e3_c40_se0.25_nre``; see timm's ``_efficientnet_builder._decode_block_str``)
and paste into timm's ``decode_arch_def`` after splitting on ``|`` and ``,``. Two tokens of
ours frame them: ``stem_k3_s2_c16_nhs`` first and ``head_c1280_nhs`` (hidden layer width and
nonlinearity, ``nc`` classes, ``d`` dropout) last; the head's 1x1 conv is timm's final
``cn_r1_k1_s1_c960`` stage. Example (MobileNetV3-Small)::

    mobilenet_v3_small:stem_k3_s2_c16_nhs|ds_r1_k3_s2_e1_c16_se0.25_nre|ir_r1_k3_s2_e4.5_c24_nre,
    ir_r1_k3_s1_e3.67_c24_nre|ir_r1_k5_s2_e4_c40_se0.25,ir_r2_k5_s1_e6_c40_se0.25|...|cn_r1_k1_s1_c576|head_c1024

Conventions (timm's): ``ds`` is a bneck without expansion layer (expansion = input), ``ir`` a
bneck with ratio ``e`` (expansion channels = round(input * e)), ``cn`` a regular conv; ``r``
repeats a block (stride only on the first); a block without ``n..`` token uses the stem's
nonlinearity; ``se0.25`` is MobileNetV3's SE (make_divisible(exp / 4, 8), hard-sigmoid). Other
SE widths are written ``sc{N}`` (absolute channels) and a sigmoid gate ``gs``; ``noskip`` turns
the residual off. Round trips are exact (a spec with an empty name is written ``:stem_...``).

Nothing is dropped silently: an unknown or repeated token, an option a block type does not take
(``cn`` with ``e``/``se``/``sc``/``gs``, ``ds`` with a ratio other than ``e1``, ``gs`` without
SE), ``r0``, ``head_c0``, a head conv with ``r``/``s`` other than 1, a head nonlinearity written
twice, or more than :data:`~search_spaces.spec.MAX_BLOCKS` blocks is a :class:`SpecError`
naming the token. Numbers are ASCII digits; strings are at most :data:`MAX_ARCH_STRING_CHARS`.
"""

from __future__ import annotations

import math
import re

from .spec import MAX_BLOCKS, ArchSpec, BlockSpec, HeadSpec, SpecError, StemSpec, se_width
from ._divisible import make_divisible
from jobs.safe_io import echo

NL_TOKENS = {"relu": "re", "relu6": "r6", "hswish": "hs", "swish": "sw"}
NL_FROM_TOKEN = {v: k for k, v in NL_TOKENS.items()}
_NUMBER = re.compile(r"([a-z]+?)([0-9][0-9.]{0,11})")  # fullmatch: ASCII digits, 12 at most
MAX_ARCH_STRING_CHARS = 20_000
_MISSING = object()


def looks_like_arch_string(text: str) -> bool:
    return "stem_" in text and "|" in text and "\n" not in text


def _ratio(exp: int, cin: int) -> str:
    """Shortest decimal ratio e with round(cin * e) == exp (and timm's make_divisible agreeing)."""
    for decimals in range(0, 7):
        e = round(exp / cin, decimals)
        text = f"{e:.{decimals}f}".rstrip("0").rstrip(".") if decimals else str(int(e))
        value = float(text)
        if round(cin * value) == exp and (exp % 8 or make_divisible(cin * value) == exp):
            return text
    raise SpecError("expansion_channels", f"{exp} cannot be written as a ratio of {cin}")  # pragma: no cover


def _block_token(block: BlockSpec, cin: int, repeats: int, default_nl: str) -> str:
    if block.operator == "conv":
        parts = ["cn", f"r{repeats}", f"k{block.kernel}", f"s{block.stride}", f"c{block.out_channels}"]
    elif block.expansion_channels == cin:
        parts = ["ds", f"r{repeats}", f"k{block.kernel}", f"s{block.stride}", "e1", f"c{block.out_channels}"]
    else:
        parts = ["ir", f"r{repeats}", f"k{block.kernel}", f"s{block.stride}",
                 f"e{_ratio(block.expansion_channels, cin)}", f"c{block.out_channels}"]
    if block.se_channels:
        if block.se_channels == se_width(block.expansion_channels):
            parts.append("se0.25")
        else:
            parts.append(f"sc{block.se_channels}")
        if block.se_gate == "sigmoid":
            parts.append("gs")
    if block.nonlinearity != default_nl:
        parts.append("n" + NL_TOKENS[block.nonlinearity])
    if not block.skip:
        parts.append("noskip")
    return "_".join(parts)


def _same_repeat(first: BlockSpec, first_in: int, other: BlockSpec, other_in: int) -> bool:
    """``other`` (stride 1) is a repeat of ``first`` in timm's sense."""
    if other.stride != 1 or other.operator != first.operator or other.kernel != first.kernel:
        return False
    if (other.out_channels, other.nonlinearity, other.se_gate, other.skip) != (
            first.out_channels, first.nonlinearity, first.se_gate, first.skip):
        return False
    if first.operator == "bneck":
        if (first.expansion_channels == first_in) != (other.expansion_channels == other_in):
            return False
        if first.expansion_channels != first_in:
            ratio = float(_ratio(first.expansion_channels, first_in))
            if round(other_in * ratio) != other.expansion_channels:
                return False
    first_se = "v3" if first.se_channels and first.se_channels == se_width(first.expansion_channels) else first.se_channels
    other_se = "v3" if other.se_channels and other.se_channels == se_width(other.expansion_channels) else other.se_channels
    return first_se == other_se and (first_se == "v3" or first.se_channels == other.se_channels)


def to_arch_string(spec: ArchSpec, *, name: bool = True) -> str:
    """The arch string of ``spec`` (see the module docstring)."""
    default_nl = spec.stem.nonlinearity
    stem = f"stem_k{spec.stem.kernel}_s{spec.stem.stride}_c{spec.stem.out_channels}_n{NL_TOKENS[default_nl]}"
    if spec.resolution != 224:
        stem += f"_res{spec.resolution}"
    if spec.in_channels != 3:
        stem += f"_i{spec.in_channels}"
    inputs = [c for c, _ in spec.block_inputs]
    stages: list[list[str]] = []
    i = 0
    previous_out = None
    while i < len(spec.blocks):
        block, cin = spec.blocks[i], inputs[i]
        j = i + 1
        while j < len(spec.blocks) and _same_repeat(block, cin, spec.blocks[j], inputs[j]):
            j += 1
        token = _block_token(block, cin, j - i, default_nl)
        # timm starts a stage at a stride-2 block or a change of width.
        if not stages or block.stride == 2 or block.out_channels != previous_out:
            stages.append([token])
        else:
            stages[-1].append(token)
        previous_out = block.out_channels
        i = j
    parts = [stem] + [",".join(stage) for stage in stages]
    head_nl = "" if spec.head.nonlinearity == default_nl else "_n" + NL_TOKENS[spec.head.nonlinearity]
    if spec.head.conv_channels is not None:
        parts.append(f"cn_r1_k1_s1_c{spec.head.conv_channels}{head_nl}")
    head = "head"
    if spec.head.hidden_channels is not None:
        head += f"_c{spec.head.hidden_channels}"
    if head_nl and spec.head.conv_channels is None:
        head += head_nl
    if spec.num_classes != 1000:
        head += f"_nc{spec.num_classes}"
    if spec.dropout != 0.2:
        head += f"_d{spec.dropout:g}"
    parts.append(head)
    text = "|".join(parts)
    return f"{spec.name}:{text}" if name else text


def timm_arch_def(spec: ArchSpec) -> list[list[str]]:
    """timm's ``arch_def`` (list of stages of block strings) for ``spec``, head conv included."""
    return [stage.split(",") for stage in to_arch_string(spec, name=False).split("|")[1:-1]]


def _parse_token(token: str, path: str) -> tuple[str, dict[str, str], set[str]]:
    ops = token.split("_")
    kind, options, flags = ops[0], {}, set()
    for op in ops[1:]:
        if op in ("noskip", "gs"):
            key, value = op, None
        elif op.startswith("n") and op[1:] in NL_FROM_TOKEN:
            key, value = "n", NL_FROM_TOKEN[op[1:]]
        else:
            match = _NUMBER.fullmatch(op)
            if not match and re.fullmatch(r"[a-z]+[0-9][0-9.]*", op):
                raise SpecError(path, f"{echo(op, 40)} in {echo(token)}: a number longer than 12 characters")
            if not match:
                raise SpecError(path, f"unknown token {echo(op, 40)} in {echo(token)}")
            key, value = match.group(1), match.group(2)
        if key in options or key in flags:
            raise SpecError(path, f"{echo(op, 40)} repeats the '{key}' token in {echo(token)}; write it once")
        if value is None:
            flags.add(key)
        else:
            options[key] = value
    return kind, options, flags


def _leftover(options: dict[str, str]) -> str:
    key = next(iter(options))
    return f"{key}{options[key]}"


def _take(options: dict[str, str], key: str, path: str, token: str, cast=int, default=_MISSING, minimum=1):
    """Option ``key`` of ``token`` as a number >= ``minimum``; ``default`` when absent (required
    when no default is given)."""
    if key not in options:
        if default is not _MISSING:
            return default
        raise SpecError(path, f"{echo(token)} lacks its '{key}' value")
    value = options.pop(key)
    try:
        number = cast(value)
    except ValueError:
        raise SpecError(path, f"{key}{value} in {echo(token)} is not a number") from None
    if not math.isfinite(number) or number < minimum:
        raise SpecError(path, f"{key}{value} in {echo(token)} is below {minimum}; write {key}{minimum} or more")
    return number


def _refuse(options: dict[str, str], flags: set[str], path: str, token: str, takes: str = "",
            why: str = "") -> None:
    """Any option or flag left over is an error (nothing is dropped silently): an unknown token
    (the message lists what the token ``takes``), or one this token cannot have (``why``)."""
    left = [f"{k}{v}" for k, v in options.items()] + sorted(flags)
    if left:
        raise SpecError(path, f"{echo(left[0], 40)} in {echo(token)}: {why}" if why else
                        f"unknown token {echo(left[0], 40)} in {echo(token)}; {takes}")


def _stem_from_token(token: str) -> tuple[StemSpec, int, int]:
    """The stem token: (the stem, the input resolution, the input channels)."""
    kind, opts, flags = _parse_token(token, "stem")
    if kind != "stem":
        raise SpecError("stem", f"{echo(token)} is not a stem token; write stem_k3_s2_c16_nhs")
    stem_nl = opts.pop("n", "hswish")
    try:
        stem = StemSpec(_take(opts, "c", "stem", token), _take(opts, "k", "stem", token, default=3),
                        _take(opts, "s", "stem", token, default=2), stem_nl)
    except SpecError as err:
        raise err if err.path == "stem" else err.prefixed("stem") from None
    resolution = _take(opts, "res", "stem", token, default=224)
    in_channels = _take(opts, "i", "stem", token, default=3)
    _refuse(opts, flags, "stem", token, takes="a stem takes k, s, c, n.., res and i")
    return stem, resolution, in_channels


def _expansion_and_se(kind: str, opts: dict, flags: set, path: str, token: str) -> tuple[float | None, float | None, int]:
    """A block token's (expansion ratio, SE ratio, SE channels); a regular conv has none of them."""
    if kind == "cn":
        _refuse(opts, flags - {"noskip"}, path, token,
                why="a regular conv (cn) has no expansion or SE; use an ir block for those")
        return None, 0.0, 0
    ratio = _take(opts, "e", path, token, cast=float, default=1.0, minimum=0)
    if kind == "ds" and ratio != 1:
        raise SpecError(path, f"{echo(token)}: a ds block expands by e1 (no expansion layer); use ir for another ratio")
    se_ratio = _take(opts, "se", path, token, cast=float, default=None, minimum=0)
    se_abs = _take(opts, "sc", path, token, default=0)
    _refuse(opts, set(), path, token, takes="a block takes r, k, s, e, c, se, sc, n.., gs and noskip")
    if se_ratio is not None and se_ratio != 0.25:
        raise SpecError(path, f"se{se_ratio:g} is not supported; write se0.25 or sc<channels>")
    if se_ratio and se_abs:
        raise SpecError(path, f"{echo(token)} gives the SE twice (se and sc); write one")
    if "gs" in flags and not (se_ratio or se_abs):
        raise SpecError(path, f"gs (a sigmoid SE gate) in {echo(token)} needs an SE; add se0.25 or sc<N>")
    return ratio, se_ratio, se_abs


def _blocks_from_tokens(tokens: list[str], channels: int, stem_nl: str) -> tuple[list[BlockSpec], int | None, str | None]:
    """The stage tokens: (the blocks, the head conv's channels and nonlinearity when the last
    token is the 1x1 head conv, else None)."""
    blocks: list[BlockSpec] = []
    for t, token in enumerate(tokens):
        path = f"token[{t}]"
        kind, opts, flags = _parse_token(token, path)
        if kind not in ("ir", "ds", "cn"):
            raise SpecError(path, f"unknown block type {echo(kind, 20)} in {echo(token)}; use ir, ds or cn")
        repeats = _take(opts, "r", path, token, default=1)
        kernel = _take(opts, "k", path, token)
        stride = _take(opts, "s", path, token, default=1)
        out = _take(opts, "c", path, token)
        nl = opts.pop("n", stem_nl)
        if kind == "cn" and kernel == 1 and t == len(tokens) - 1:
            if repeats != 1 or stride != 1:
                raise SpecError(path, f"the head conv {echo(token)} is one 1x1 conv at stride 1; write r1 and s1")
            _refuse(opts, flags, path, token, why="the head conv takes only r1, k1, s1, c and n..")
            return blocks, out, nl
        if repeats > MAX_BLOCKS - len(blocks):
            raise SpecError(path, f"r{repeats} in {echo(token)} makes more than {MAX_BLOCKS} blocks; "
                                  f"at most {MAX_BLOCKS} in all")
        ratio, se_ratio, se_abs = _expansion_and_se(kind, opts, flags, path, token)
        for r in range(repeats):
            exp = None if kind == "cn" else channels if kind == "ds" else round(channels * ratio)
            se = se_width(exp) if se_ratio and exp else se_abs
            try:
                blocks.append(BlockSpec("conv" if kind == "cn" else "bneck", kernel, stride if r == 0 else 1, exp, out,
                                        se, nl, "sigmoid" if "gs" in flags else "hsigmoid", "noskip" not in flags))
            except SpecError as err:
                raise err.prefixed(path) from None
            channels = out
    return blocks, None, None


def _head_from_token(token: str, conv_channels: int | None, conv_nl: str | None, stem_nl: str
                     ) -> tuple[HeadSpec, int, float]:
    """The head token: (the head, the number of classes, the dropout)."""
    kind, opts, flags = _parse_token(token, "head")
    if kind != "head":
        raise SpecError("head", f"{echo(token)} is not a head token; write head or head_c1280")
    hidden = _take(opts, "c", "head", token, default=None)
    head_nl = opts.pop("n", None)
    if head_nl is not None and conv_nl is not None:
        raise SpecError("head", f"{echo(token)}: the head's nonlinearity is written on the head conv token "
                                f"when there is one; remove n{NL_TOKENS[head_nl]} here")
    head_nl = head_nl or conv_nl or stem_nl
    num_classes = _take(opts, "nc", "head", token, default=1000)
    dropout = _take(opts, "d", "head", token, cast=float, default=0.2, minimum=0)
    _refuse(opts, flags, "head", token, takes="a head takes c, n.., nc and d")
    try:
        return HeadSpec(conv_channels, hidden, head_nl), num_classes, dropout
    except SpecError as err:
        raise err.prefixed("head") from None


def from_arch_string(text: str, name: str | None = None) -> ArchSpec:
    """Parse an arch string (see the module docstring) into an ArchSpec."""
    if not isinstance(text, str):
        raise SpecError("arch_string", f"{echo(text)} is not a string")
    if len(text) > MAX_ARCH_STRING_CHARS:
        raise SpecError("arch_string", f"{len(text):,} characters; at most {MAX_ARCH_STRING_CHARS:,}")
    text = text.strip()
    prefix, sep, body = text.partition(":")
    if not sep:
        prefix, body = "arch", text
    parts = body.split("|")
    if len(parts) < 3 or not parts[0].startswith("stem") or not parts[-1].startswith("head"):
        raise SpecError("arch_string", "expected 'stem_...|<stages>|head...' (see search_spaces.codecs)")
    stem, resolution, in_channels = _stem_from_token(parts[0])
    stage_tokens = [tok for stage in parts[1:-1] for tok in stage.split(",")]
    blocks, conv_channels, conv_nl = _blocks_from_tokens(stage_tokens, stem.out_channels, stem.nonlinearity)
    head, num_classes, dropout = _head_from_token(parts[-1], conv_channels, conv_nl, stem.nonlinearity)
    return ArchSpec(name=name if name is not None else prefix, stem=stem, blocks=tuple(blocks), head=head,
                    num_classes=num_classes, resolution=resolution, dropout=dropout, in_channels=in_channels)

