"""The architecture spec: the one data type that carries a network through the framework.

An :class:`ArchSpec` is a frozen, validated, hashable description of a MobileNet-style network:
a stem, a sequence of blocks (one row of the paper's Tables 1-2 each) and a last stage. Every
field is validated once, at construction, and a bad value raises :class:`SpecError` whose
message names the field path and the fix, e.g. ``blocks[3].kernel: 4 is not one of 3, 5, 7``.

Specs are plain data: they never build modules (see :mod:`search_spaces.builder`) and are
written to and read from YAML exactly (:meth:`ArchSpec.to_yaml`, :func:`load_spec`).

Upper bounds (a spec beyond them is a :class:`SpecError`, so no input can make a tool run for
minutes or report absurd figures): at most :data:`MAX_BLOCKS` (64) blocks; every channel count
(stem, expansion, output, SE, head, input) at most :data:`MAX_CHANNELS` (8192); ``num_classes`` at
most :data:`MAX_CLASSES` (100,000); ``resolution`` from 8 to :data:`MAX_RESOLUTION` (4096); a
``name`` of at most :data:`MAX_NAME_CHARS` (200) printable characters without ``|``, ``:``
or surrounding spaces (so that arch strings round-trip it). Integer fields take integers only:
``3.0`` and ``true`` are refused. Spec files are read as UTF-8, at most 1 MiB, with YAML
aliases and nesting bounded (:mod:`jobs.safe_io`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ._divisible import make_divisible
from .opkey import OpKey
from jobs.files import kind_of
from jobs.safe_io import InputError, echo, load_yaml, read_text, shorten, yaml_problem

OPERATORS = ("bneck", "conv")
KERNELS = (3, 5, 7)
STEM_KERNELS = (1, 3, 5, 7)
STRIDES = (1, 2)
NONLINEARITIES = ("relu", "relu6", "hswish", "swish")
SE_GATES = ("hsigmoid", "sigmoid")

# Upper bounds (see the module docstring); the paper's largest figures are far inside them.
MAX_BLOCKS = 64
MAX_CHANNELS = 8192
MAX_CLASSES = 100_000
MIN_RESOLUTION, MAX_RESOLUTION = 8, 4096
MAX_NAME_CHARS = 200
NAME_FORBIDDEN = "|:"

# Short names used in tables (the paper writes RE and HS).
NL_SHORT = {"relu": "RE", "relu6": "R6", "hswish": "HS", "swish": "SW"}


class SpecError(ValueError):
    """A spec field is invalid. ``path`` names the field (``blocks[3].kernel``)."""

    def __init__(self, path: str, problem: str):
        self.path = shorten(path, 120)
        self.problem = shorten(problem, 400)  # one bounded line, whatever the input echoed
        super().__init__(f"{self.path}: {self.problem}" if self.path else self.problem)

    def prefixed(self, prefix: str) -> "SpecError":
        return SpecError(f"{prefix}.{self.path}" if self.path else prefix, self.problem)


# --------------------------------------------------------------------------- field checks
def _check_int(path: str, value: Any, *, minimum: int = 1, maximum: int = MAX_CHANNELS,
               allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(path, f"{echo(value)} is not an integer; write a whole number from {minimum} to {maximum}")
    if value < minimum:
        raise SpecError(path, f"{echo(value)} is below the minimum {minimum}")
    if value > maximum:
        raise SpecError(path, f"{echo(value)} is above the maximum {maximum}")


def _check_choice(path: str, value: Any, choices: tuple) -> None:
    # Exact type: 3.0 == 3 and True == 1, but a spec holds the integer (one spec, one hash).
    if type(value) is not type(choices[0]) or value not in choices:
        raise SpecError(path, f"{echo(value)} is not one of {', '.join(map(str, choices))}")


def _check_bool(path: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise SpecError(path, f"{echo(value)} is not a boolean; write true or false")


def _from_mapping(cls, data: Any, path: str = "") -> Any:
    """Construct dataclass ``cls`` from a mapping, rejecting unknown and missing fields."""
    if not isinstance(data, Mapping):
        raise SpecError(path, f"expected a mapping of fields, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        key = unknown[0] if isinstance(unknown[0], str) else echo(unknown[0], 40)
        raise SpecError(f"{path}.{key}" if path else key, f"unknown field; expected one of {', '.join(names)}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in data]
    if missing:
        raise SpecError(f"{path}.{missing[0]}" if path else missing[0], "missing required field")
    try:
        return cls(**dict(data))
    except SpecError as err:
        raise err.prefixed(path) if path else err


# --------------------------------------------------------------------------- parts
@dataclass(frozen=True)
class StemSpec:
    """First layer: a regular conv with BN and a nonlinearity."""

    out_channels: int = 16
    kernel: int = 3
    stride: int = 2
    nonlinearity: str = "hswish"

    def __post_init__(self) -> None:
        _check_int("out_channels", self.out_channels)
        _check_choice("kernel", self.kernel, STEM_KERNELS)
        _check_choice("stride", self.stride, STRIDES)
        _check_choice("nonlinearity", self.nonlinearity, NONLINEARITIES)


@dataclass(frozen=True)
class BlockSpec:
    """One block, one row of Tables 1-2.

    ``operator`` is ``"bneck"`` (MobileNetV2/V3 inverted residual: 1x1 expansion to
    ``expansion_channels``, depthwise k x k, optional squeeze-and-excite, linear 1x1 projection)
    or ``"conv"`` (a regular k x k conv + BN + nonlinearity, MnasNet's "regular conv").
    A depthwise-separable conv is a ``bneck`` whose expansion equals its input channels: the
    expansion layer is then omitted, exactly as in the official MobileNet models, so one
    network has one spec (and one hash).

    ``se_channels`` is the squeeze width (0: no SE). MobileNetV3 uses
    ``make_divisible(expansion_channels / 4, 8)`` with a hard-sigmoid gate (see
    :func:`se_width`); MnasNet uses a quarter of the block's input with a sigmoid gate.
    A residual is added when ``skip`` is true, the stride is 1 and input equals output width.
    """

    operator: str
    kernel: int
    stride: int
    expansion_channels: int | None
    out_channels: int
    se_channels: int = 0
    nonlinearity: str = "relu"
    se_gate: str = "hsigmoid"
    skip: bool = True

    def __post_init__(self) -> None:
        if type(self.operator) is str and self.operator == "dsconv":
            raise SpecError("operator", "'dsconv' is written as operator 'bneck' with expansion_channels "
                                        "equal to the block's input channels")
        _check_choice("operator", self.operator, OPERATORS)
        _check_choice("kernel", self.kernel, KERNELS)
        _check_choice("stride", self.stride, STRIDES)
        if self.operator == "bneck":
            if self.expansion_channels is None:
                raise SpecError("expansion_channels", "required for operator 'bneck' (the 'exp size' column)")
            _check_int("expansion_channels", self.expansion_channels)
        elif self.expansion_channels is not None:
            raise SpecError("expansion_channels", f"must be omitted (null) for operator {self.operator!r}")
        _check_int("out_channels", self.out_channels)
        _check_int("se_channels", self.se_channels, minimum=0)
        if self.operator == "conv" and self.se_channels:
            raise SpecError("se_channels", "must be 0 for operator 'conv'; use a 'bneck' block for SE")
        _check_choice("nonlinearity", self.nonlinearity, NONLINEARITIES)
        _check_choice("se_gate", self.se_gate, SE_GATES)
        _check_bool("skip", self.skip)
        if not self.se_channels and self.se_gate != "hsigmoid":
            # The gate of an absent SE means nothing: one network, one spec (and one hash).
            object.__setattr__(self, "se_gate", "hsigmoid")

    @property
    def has_se(self) -> bool:
        return self.se_channels > 0

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"operator": self.operator, "kernel": self.kernel, "stride": self.stride}
        if self.expansion_channels is not None:
            out["expansion_channels"] = self.expansion_channels
        out["out_channels"] = self.out_channels
        out["se_channels"] = self.se_channels
        out["nonlinearity"] = self.nonlinearity
        # Fields equal to their default are omitted; reading fills the same default back.
        if self.se_gate != "hsigmoid":
            out["se_gate"] = self.se_gate
        if not self.skip:
            out["skip"] = False
        return out

    @classmethod
    def from_dict(cls, data: Mapping, path: str = "") -> "BlockSpec":
        data = dict(data) if isinstance(data, Mapping) else data
        if isinstance(data, dict) and data.get("operator") == "conv":
            data.setdefault("expansion_channels", None)
        if isinstance(data, dict) and data.get("se_channels") == "auto":
            exp = data.get("expansion_channels")
            if isinstance(exp, int) and not isinstance(exp, bool) and 1 <= exp <= MAX_CHANNELS:
                data["se_channels"] = se_width(exp)
        return _from_mapping(cls, data, path)


@dataclass(frozen=True)
class HeadSpec:
    """The last stage.

    ``conv_channels``: a 1x1 conv + BN + nonlinearity at the last feature resolution (Table 1's
    ``conv2d, 1x1, 960``), or None. Then global average pooling. ``hidden_channels``: a 1x1
    conv without BN + nonlinearity on the pooled features (``conv2d 1x1, NBN, 1280``), or None.
    Then dropout and the classifier.

    The paper's efficient last stage (Figure 5) has both; the original last stage (MobileNetV2,
    MnasNet) has only ``conv_channels`` (1280) and no hidden layer.
    """

    conv_channels: int | None = 960
    hidden_channels: int | None = 1280
    nonlinearity: str = "hswish"

    def __post_init__(self) -> None:
        _check_int("conv_channels", self.conv_channels, allow_none=True)
        _check_int("hidden_channels", self.hidden_channels, allow_none=True)
        _check_choice("nonlinearity", self.nonlinearity, NONLINEARITIES)

    @property
    def form(self) -> str:
        return "efficient" if self.hidden_channels is not None else "original"


def se_width(expansion_channels: int) -> int:
    """MobileNetV3's squeeze width: make_divisible(exp / 4, 8)."""
    return make_divisible(expansion_channels / 4, 8)


def conv_out_size(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded conv (padding k // 2): ceil(size / stride)."""
    return math.ceil(size / stride)


# --------------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class ArchSpec:
    """A whole network. Frozen and hashable; ``hash`` is a stable content hash."""

    name: str
    stem: StemSpec
    blocks: tuple[BlockSpec, ...]
    head: HeadSpec = field(default_factory=HeadSpec)
    num_classes: int = 1000
    resolution: int = 224
    dropout: float = 0.2
    in_channels: int = 3

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.stem, StemSpec):
            raise SpecError("stem", "expected a StemSpec")
        if isinstance(self.blocks, list):
            object.__setattr__(self, "blocks", tuple(self.blocks))
        if not isinstance(self.blocks, tuple) or not self.blocks:
            raise SpecError("blocks", "expected a non-empty list of blocks")
        if len(self.blocks) > MAX_BLOCKS:
            raise SpecError("blocks", f"{len(self.blocks)} blocks; at most {MAX_BLOCKS}")
        for i, block in enumerate(self.blocks):
            if not isinstance(block, BlockSpec):
                raise SpecError(f"blocks[{i}]", f"expected a BlockSpec, got {type(block).__name__}")
        if not isinstance(self.head, HeadSpec):
            raise SpecError("head", "expected a HeadSpec")
        _check_int("num_classes", self.num_classes, maximum=MAX_CLASSES)
        _check_int("resolution", self.resolution, minimum=MIN_RESOLUTION, maximum=MAX_RESOLUTION)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise SpecError("dropout", f"{echo(self.dropout)} is not a probability in [0, 1)")
        object.__setattr__(self, "dropout", float(self.dropout))
        _check_int("in_channels", self.in_channels)

    # ----------------------------------------------------------------- derived values
    @property
    def block_inputs(self) -> tuple[tuple[int, int], ...]:
        """(input channels, input resolution) of every block."""
        cached = self.__dict__.get("_block_inputs")
        if cached is not None:
            return cached
        channels = self.stem.out_channels
        size = conv_out_size(self.resolution, self.stem.stride)
        out = []
        for block in self.blocks:
            out.append((channels, size))
            channels = block.out_channels
            size = conv_out_size(size, block.stride)
        object.__setattr__(self, "_block_inputs", tuple(out))  # derived data, not a field (as op_keys)
        return self.__dict__["_block_inputs"]

    @property
    def final_channels(self) -> int:
        return self.blocks[-1].out_channels

    @property
    def final_resolution(self) -> int:
        channels, size = self.block_inputs[-1]
        return conv_out_size(size, self.blocks[-1].stride)

    @property
    def num_features(self) -> int:
        """Width of the features the classifier sees."""
        if self.head.hidden_channels is not None:
            return self.head.hidden_channels
        if self.head.conv_channels is not None:
            return self.head.conv_channels
        return self.final_channels

    def has_residual(self, index: int) -> bool:
        block = self.blocks[index]
        in_channels, _ = self.block_inputs[index]
        return block.skip and block.stride == 1 and in_channels == block.out_channels

    def op_keys(self) -> tuple[OpKey, ...]:
        """The ops of this network in execution order: the unit latency tables are keyed by."""
        cached = self.__dict__.get("_op_keys")
        if cached is None:
            cached = self._compute_op_keys()
            object.__setattr__(self, "_op_keys", cached)  # a cache of derived data, not a field
        return cached

    def _compute_op_keys(self) -> tuple[OpKey, ...]:
        keys = [OpKey(operator="conv", resolution=self.resolution, in_channels=self.in_channels,
                      out_channels=self.stem.out_channels, kernel=self.stem.kernel, stride=self.stem.stride,
                      nonlinearity=self.stem.nonlinearity)]
        for block, (in_channels, size) in zip(self.blocks, self.block_inputs):
            keys.append(OpKey(
                operator=block.operator, resolution=size, in_channels=in_channels,
                expansion_channels=block.expansion_channels or 0, out_channels=block.out_channels,
                kernel=block.kernel, stride=block.stride, se_channels=block.se_channels,
                se_gate=block.se_gate if block.se_channels else "none", nonlinearity=block.nonlinearity,
                residual=block.skip and block.stride == 1 and in_channels == block.out_channels))
        size, channels = self.final_resolution, self.final_channels
        if self.head.conv_channels is not None:
            keys.append(OpKey(operator="conv", resolution=size, in_channels=channels,
                              out_channels=self.head.conv_channels, kernel=1, stride=1,
                              nonlinearity=self.head.nonlinearity))
            channels = self.head.conv_channels
        keys.append(OpKey(operator="pool", resolution=size, in_channels=channels, out_channels=channels,
                          kernel=size, stride=1, nonlinearity="none"))
        if self.head.hidden_channels is not None:
            keys.append(OpKey(operator="linear", resolution=1, in_channels=channels,
                              out_channels=self.head.hidden_channels, kernel=1, stride=1,
                              nonlinearity=self.head.nonlinearity))
            channels = self.head.hidden_channels
        keys.append(OpKey(operator="linear", resolution=1, in_channels=channels, out_channels=self.num_classes,
                          kernel=1, stride=1, nonlinearity="none"))
        return tuple(keys)

    @property
    def hash(self) -> str:
        """Stable content hash of the architecture (every field but ``name``), 16 hex digits."""
        data = self.to_dict()
        data.pop("name")
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> "ArchSpec":
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "resolution": self.resolution,
            "num_classes": self.num_classes,
            "dropout": self.dropout,
            "in_channels": self.in_channels,
            "stem": dataclasses.asdict(self.stem),
            "blocks": [b.to_dict() for b in self.blocks],
            "head": dataclasses.asdict(self.head),
        }

    @classmethod
    def from_dict(cls, data: Any) -> "ArchSpec":
        if not isinstance(data, Mapping):
            raise SpecError("", f"a spec must be a mapping of fields, got {type(data).__name__}")
        data = dict(data)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in data if k not in names]
        if unknown:
            key = unknown[0] if isinstance(unknown[0], str) else echo(unknown[0], 40)
            raise SpecError(key, f"unknown field; expected one of {', '.join(names)}")
        for required in ("name", "stem", "blocks"):
            if required not in data:
                raise SpecError(required, "missing required field")
        data["stem"] = _from_mapping(StemSpec, data["stem"], "stem")
        blocks = data["blocks"]
        if not isinstance(blocks, (list, tuple)) or not blocks:
            raise SpecError("blocks", "expected a non-empty list of blocks")
        if len(blocks) > MAX_BLOCKS:
            raise SpecError("blocks", f"{len(blocks)} blocks; at most {MAX_BLOCKS}")
        data["blocks"] = tuple(BlockSpec.from_dict(b, f"blocks[{i}]") for i, b in enumerate(blocks))
        if "head" in data:
            data["head"] = _from_mapping(HeadSpec, data["head"], "head")
        return cls(**data)

    def to_yaml(self, path: str | Path | None = None, header: str | None = None) -> str:
        """YAML text of the spec (one line per block); written to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=200)
        if header:
            text = "".join(f"# {line}\n" for line in header.splitlines()) + text
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, text: str) -> "ArchSpec":
        """The spec in YAML ``text`` (safe loading, aliases and nesting bounded)."""
        try:
            data = load_yaml(text)
        except yaml.YAMLError as err:
            raise SpecError("", f"not valid YAML: {yaml_problem(err)}") from None
        return cls.from_dict(data)


def load_spec(source: str | Path, **overrides: Any) -> ArchSpec:
    """Read a spec from a YAML file, a reference name, or an arch string.

    ``source`` may be a path to a ``.yaml``/``.yml`` file, a registered reference name
    (``mobilenet_v3_large``; see :func:`search_spaces.reference`), or a timm-style arch string
    as printed by ``python -m search_spaces.export --timm``. ``overrides`` replace fields of
    the loaded spec (e.g. ``resolution=160``).
    """
    from . import codecs, references  # local: both import this module

    text = str(source)
    path = Path(text)
    if codecs.looks_like_arch_string(text):
        spec = codecs.from_arch_string(text)
    elif text in references.names():
        spec = references.reference(text)
    elif path.suffix in (".yaml", ".yml") or _is_file(path):
        if not _is_file(path):
            try:
                what = f"is {kind_of(path.stat().st_mode)}, not a file"  # a FIFO, a device, a folder
            except (OSError, ValueError):
                what = "does not exist"
            raise SpecError("", f"spec file {echo(text)} {what}")
        try:
            spec = ArchSpec.from_yaml(read_text(path, what="spec file"))
        except InputError as err:
            raise SpecError("", str(err)) from None
        except SpecError as err:
            raise SpecError(err.path, f"{err.problem} (in {shorten(text, 120)})") from None
    else:
        raise SpecError("", f"cannot read spec {echo(text)}: not a YAML file, a reference name "
                            f"({', '.join(references.names())}) or an arch string")
    return spec.replace(**overrides) if overrides else spec


def _check_name(name: Any) -> None:
    if not isinstance(name, str):
        raise SpecError("name", f"{echo(name)} is not a string")
    if len(name) > MAX_NAME_CHARS:
        raise SpecError("name", f"{len(name)} characters; at most {MAX_NAME_CHARS}")
    bad = next((c for c in name if c in NAME_FORBIDDEN or not c.isprintable()), None)
    if bad is not None:
        raise SpecError("name", f"{echo(name)} contains {bad!r}; use letters, digits, '_', '-' or '.'")
    if name != name.strip():
        raise SpecError("name", f"{echo(name)} starts or ends with a space; remove it")


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a name longer than the file system allows
        return False


def iter_specs(sources: Iterable[str | Path]) -> list[ArchSpec]:
    return [load_spec(s) for s in sources]


def resolve_spec(source: str | Path, width: float | None = None, resolution: int | None = None) -> ArchSpec:
    """What the CLIs take as NAME_OR_YAML: a reference name (built at ``width``/``resolution``)
    or anything :func:`load_spec` reads, then scaled to ``width`` and set to ``resolution``."""
    from . import references, transforms

    if str(source) in references.names():
        return references.reference(str(source), 1.0 if width is None else width,
                                    224 if resolution is None else resolution)
    spec = load_spec(source)
    if width is not None:
        spec = transforms.scale_width(spec, width)
    if resolution is not None:
        spec = spec.replace(resolution=resolution)
    return spec
