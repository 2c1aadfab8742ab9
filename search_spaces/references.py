"""The paper's reference networks as data, registered by name; width and resolution are parameters.

Rows are copied from Tables 1 and 2 of "Searching for MobileNetV3" (Howard et al., 2019),
from torchvision's MobileNetV2 settings and from the MnasNet reference definitions
(tensorflow/tpu ``mnasnet_models.py``, as timm's ``_gen_mnasnet_a1`` / ``_gen_mnasnet_small``).

Width multipliers scale every channel count with :func:`make_divisible`; MobileNetV3's expansion
layers keep their ratio to the scaled block input (the official TF-slim rule, see
``EXPANSION_RULES``), its 16-filter stem is kept below 0.75, and the head's final feature layer
(V3's 1280 / 1024 hidden layer, V2's 1280 conv) is kept for multipliers below 1 and scaled above
1. With these rules the 0.75 models match Table 3 in both MAdds and parameters and load the
official checkpoints' tensors (timm's ports of TF-slim) one for one.

Regenerate the committed YAML files with::

    python -m search_spaces.write_specs --out experiments/specs
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ._divisible import make_divisible
from .spec import ArchSpec, BlockSpec, HeadSpec, SpecError, StemSpec, se_width

# MobileNetV3-Large, Table 1: kernel, exp size, #out, SE, NL, stride
V3_LARGE = (
    (3, 16, 16, False, "relu", 1),
    (3, 64, 24, False, "relu", 2),  # C1: 1/4
    (3, 72, 24, False, "relu", 1),
    (5, 72, 40, True, "relu", 2),  # C2: 1/8
    (5, 120, 40, True, "relu", 1),
    (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "hswish", 2),  # C3: 1/16
    (3, 200, 80, False, "hswish", 1),
    (3, 184, 80, False, "hswish", 1),
    (3, 184, 80, False, "hswish", 1),
    (3, 480, 112, True, "hswish", 1),
    (3, 672, 112, True, "hswish", 1),
    (5, 672, 160, True, "hswish", 2),  # C4: 1/32 (its expansion layer is the 1/16 tap)
    (5, 960, 160, True, "hswish", 1),
    (5, 960, 160, True, "hswish", 1),
)
V3_LARGE_HEAD = (960, 1280)  # conv2d 1x1 (BN, HS) -> pool -> conv2d 1x1 NBN (HS)

# MobileNetV3-Small, Table 2. The official models (TF-slim, torchvision, timm) have no SE on the
# last 1x1 conv (576) whatever the table's tick says; their 2,542,856 parameters prove it.
V3_SMALL = (
    (3, 16, 16, True, "relu", 2),  # C1: 1/4
    (3, 72, 24, False, "relu", 2),  # C2: 1/8
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hswish", 2),  # C3: 1/16
    (5, 240, 40, True, "hswish", 1),
    (5, 240, 40, True, "hswish", 1),
    (5, 120, 48, True, "hswish", 1),
    (5, 144, 48, True, "hswish", 1),
    (5, 288, 96, True, "hswish", 2),  # C4: 1/32
    (5, 576, 96, True, "hswish", 1),
    (5, 576, 96, True, "hswish", 1),
)
V3_SMALL_HEAD = (576, 1024)

# MobileNetV2 (Sandler et al. 2018, Table 2): expansion t, channels c, repeats n, stride s
V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

# MnasNet (Tan et al. 2019): kernel, expansion ratio, channels, repeats, stride, SE (ratio 0.25 of
# the block input, sigmoid gate), skip. Expansion ratio 1 is the depthwise-separable "SepConv".
MNASNET_A1 = (
    (3, 1, 16, 1, 1, False, False),
    (3, 6, 24, 2, 2, False, True),
    (5, 3, 40, 3, 2, True, True),
    (3, 6, 80, 4, 2, False, True),
    (3, 6, 112, 2, 1, True, True),
    (5, 6, 160, 3, 2, True, True),
    (3, 6, 320, 1, 1, False, True),
)
MNASNET_SMALL = (
    (3, 1, 8, 1, 1, False, True),
    (3, 3, 16, 1, 2, False, True),
    (3, 6, 16, 2, 2, False, True),
    (5, 6, 32, 4, 2, True, True),
    (3, 6, 32, 3, 1, True, True),
    (5, 6, 88, 3, 2, True, True),
    (3, 6, 144, 1, 1, False, True),
)

# How a width multiplier scales V3's expansion layers. "ratio" (default): the official TF-slim
# definition (whose checkpoints timm ports): expansion = make_divisible(ratio x scaled input), so
# the 0.75 models have 3,993,528 / 2,041,872 parameters and 154.6M / 43.4M MAdds, matching
# Table 3's 4.0M/155M and 2.0M/44M. "scaled": every expansion scaled on its own
# (torchvision's rule) with the head kept at 1280 / 1024: 3,928,296 / 2,020,768 parameters but
# only 140.6M / 39.5M MAdds, 9-10 % below Table 3.
EXPANSION_RULES = ("ratio", "scaled")

WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.25)
RESOLUTIONS = (96, 128, 160, 192, 224, 256)


def _spec_name(base: str, width: float, resolution: int) -> str:
    name = base if width == 1.0 else f"{base}_{int(round(width * 100)):03d}"
    return name if resolution == 224 else f"{name}_r{resolution}"


def _mobilenet_v3(base: str, rows, head, width: float, resolution: int, num_classes: int,
                  expansion: str) -> ArchSpec:
    if expansion not in EXPANSION_RULES:
        raise SpecError("expansion", f"{expansion!r} is not one of {', '.join(EXPANSION_RULES)}")
    c = lambda v: make_divisible(v * width)  # noqa: E731
    # The official models keep the 16-filter stem below width 0.75 (timm: fix_stem).
    stem = 16 if width < 0.75 else c(16)
    blocks, in_base, in_scaled = [], 16, stem
    for k, exp, out, se, nl, s in rows:
        if exp == in_base:
            exp_scaled = in_scaled  # no expansion layer at any width
        elif expansion == "ratio":
            exp_scaled = make_divisible(in_scaled * exp / in_base)
        else:
            exp_scaled = c(exp)
        blocks.append(BlockSpec("bneck", k, s, exp_scaled, c(out), se_width(exp_scaled) if se else 0, nl))
        in_base, in_scaled = out, c(out)
    conv, hidden = head
    name = _spec_name(base, width, resolution) + ("" if expansion == "ratio" or width == 1.0 else "_scaled")
    return ArchSpec(
        name=name, stem=StemSpec(stem, 3, 2, "hswish"), blocks=tuple(blocks),
        head=HeadSpec(c(conv), make_divisible(hidden * max(1.0, width)), "hswish"),
        num_classes=num_classes, resolution=resolution, dropout=0.2)


def mobilenet_v3_large(width: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                       expansion: str = "ratio") -> ArchSpec:
    return _mobilenet_v3("mobilenet_v3_large", V3_LARGE, V3_LARGE_HEAD, width, resolution, num_classes, expansion)


def mobilenet_v3_small(width: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                       expansion: str = "ratio") -> ArchSpec:
    return _mobilenet_v3("mobilenet_v3_small", V3_SMALL, V3_SMALL_HEAD, width, resolution, num_classes, expansion)


def mobilenet_v2(width: float = 1.0, resolution: int = 224, num_classes: int = 1000) -> ArchSpec:
    stem = make_divisible(32 * width)
    blocks, channels = [], stem
    for t, c, n, s in V2:
        out = make_divisible(c * width)
        for i in range(n):
            blocks.append(BlockSpec("bneck", 3, s if i == 0 else 1, channels * t, out, 0, "relu6"))
            channels = out
    return ArchSpec(
        name=_spec_name("mobilenet_v2", width, resolution), stem=StemSpec(stem, 3, 2, "relu6"), blocks=tuple(blocks),
        head=HeadSpec(make_divisible(1280 * max(1.0, width)), None, "relu6"),
        num_classes=num_classes, resolution=resolution, dropout=0.2)


def _mnasnet(base: str, rows, stem: int, width: float, resolution: int, num_classes: int) -> ArchSpec:
    stem_channels = make_divisible(stem * width)
    blocks, channels = [], stem_channels
    for k, ratio, c, n, s, se, skip in rows:
        out = make_divisible(c * width)
        for i in range(n):
            exp = channels if ratio == 1 else make_divisible(channels * ratio)
            blocks.append(BlockSpec("bneck", k, s if i == 0 else 1, exp, out,
                                    max(1, int(channels * 0.25)) if se else 0, "relu", "sigmoid", skip))
            channels = out
    return ArchSpec(
        name=_spec_name(base, width, resolution), stem=StemSpec(stem_channels, 3, 2, "relu"), blocks=tuple(blocks),
        head=HeadSpec(make_divisible(1280 * width), None, "relu"),
        num_classes=num_classes, resolution=resolution, dropout=0.2)


def mnasnet_a1(width: float = 1.0, resolution: int = 224, num_classes: int = 1000) -> ArchSpec:
    return _mnasnet("mnasnet_a1", MNASNET_A1, 32, width, resolution, num_classes)


def mnasnet_small(width: float = 1.0, resolution: int = 224, num_classes: int = 1000) -> ArchSpec:
    # tensorflow/tpu trains MnasNet-small without dropout.
    return _mnasnet("mnasnet_small", MNASNET_SMALL, 8, width, resolution, num_classes).replace(dropout=0.0)


_REGISTRY: dict[str, Callable[..., ArchSpec]] = {
    "mobilenet_v3_large": mobilenet_v3_large,
    "mobilenet_v3_small": mobilenet_v3_small,
    "mobilenet_v2": mobilenet_v2,
    "mnasnet_a1": mnasnet_a1,
    "mnasnet_small": mnasnet_small,
}

# The rows of Table 3 that have a reference spec: (name, width) -> the paper's figures.
TABLE3 = {
    ("mobilenet_v3_large", 1.0): {"label": "V3-Large 1.0", "top1": 75.2, "madds_m": 219, "params_m": 5.4, "p1_ms": 51},
    ("mobilenet_v3_large", 0.75): {"label": "V3-Large 0.75", "top1": 73.3, "madds_m": 155, "params_m": 4.0, "p1_ms": 39},
    ("mnasnet_a1", 1.0): {"label": "MnasNet-A1", "top1": 75.2, "madds_m": 315, "params_m": 3.9, "p1_ms": 71},
    ("mobilenet_v2", 1.0): {"label": "V2 1.0", "top1": 72.0, "madds_m": 300, "params_m": 3.4, "p1_ms": 64},
    ("mobilenet_v3_small", 1.0): {"label": "V3-Small 1.0", "top1": 67.4, "madds_m": 56, "params_m": 2.5, "p1_ms": 15.8},
    ("mobilenet_v3_small", 0.75): {"label": "V3-Small 0.75", "top1": 65.4, "madds_m": 44, "params_m": 2.0, "p1_ms": 12.8},
    ("mnasnet_small", 1.0): {"label": "Mnas-small", "top1": 64.9, "madds_m": 65.1, "params_m": 1.9, "p1_ms": 20.3},
    ("mobilenet_v2", 0.35): {"label": "V2 0.35", "top1": 60.8, "madds_m": 59.2, "params_m": 1.6, "p1_ms": 16.6},
}


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def reference(name: str, width: float = 1.0, resolution: int = 224, *, num_classes: int = 1000,
              expansion: str = "ratio") -> ArchSpec:
    """The reference network ``name`` at ``width`` and ``resolution`` as an ArchSpec.

    ``expansion`` ("ratio" or "scaled", MobileNetV3 only) picks how widths scale the expansion
    layers; see ``EXPANSION_RULES``.
    """
    if name not in _REGISTRY:
        raise SpecError("name", f"{name!r} is not a reference network; use one of {', '.join(_REGISTRY)}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0.1 <= width <= 4:
        raise SpecError("width", f"{width!r} is not a width multiplier in [0.1, 4]")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
        raise SpecError("resolution", f"{resolution!r} is not an input size in pixels (>= 8)")
    if name.startswith("mobilenet_v3"):
        return _REGISTRY[name](float(width), resolution, num_classes, expansion)
    if expansion != "ratio":
        raise SpecError("expansion", f"only MobileNetV3 has a choice of expansion rule, not {name}")
    return _REGISTRY[name](float(width), resolution, num_classes)


# The files under experiments/specs/: Table 3's rows.
COMMITTED = tuple(TABLE3)

HEADER = "Generated by `python -m search_spaces.write_specs --out experiments/specs`; do not edit."


def write_specs(out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, width in COMMITTED:
        spec = reference(name, width)
        path = out / f"{spec.name}.yaml"
        spec.to_yaml(path, header=HEADER)
        written.append(path)
    return written
