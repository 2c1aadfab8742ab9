"""The op key: the unit a latency table is keyed by.

A network is a sequence of ops (stem conv, one op per block, head conv, pool, linear layers).
Two ops with equal keys build identical modules on identical input shapes, so they cost the
same on a device; that is what makes per-op lookup tables possible. Keys are frozen and
hashable, and have an exact string form (:meth:`OpKey.to_str` / :meth:`OpKey.from_str`) that
latency tables store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OP_OPERATORS = ("conv", "bneck", "pool", "linear", "upsample", "mul", "add")
OP_NONLINEARITIES = ("relu", "relu6", "hswish", "swish", "none", "sigmoid")
OP_SE_GATES = ("hsigmoid", "sigmoid", "none")

# ASCII digits, at most 9 of them: a key never holds a number int() cannot read quickly.
_N = "[0-9]{1,9}"
_PATTERN = re.compile(
    rf"(?P<operator>[a-z]+)_r(?P<resolution>{_N})(?:x(?P<width>{_N}))?"
    rf"_i(?P<in_channels>{_N})_e(?P<expansion_channels>{_N})"
    rf"_o(?P<out_channels>{_N})_k(?P<kernel>{_N})_s(?P<stride>{_N})_se(?P<se_channels>{_N})"
    r"(?:-(?P<se_gate>hsigmoid|sigmoid))?_(?P<nonlinearity>[a-z0-9]+)(?P<residual>_res)?"
)


class OpKeyError(ValueError):
    """An op key string or field is invalid."""


@dataclass(frozen=True, order=True)
class OpKey:
    """One op at one input shape.

    ``operator``: ``conv`` (regular conv + BN + nonlinearity: stems, 'conv' blocks, the head's
    1x1 conv), ``bneck`` (inverted residual), ``pool`` (global average pool; ``kernel`` is the
    pooled size), ``linear`` (a layer on pooled features, no BN; ``nonlinearity`` 'none' for
    the classifier). ``resolution`` is the (square) input size; ``expansion_channels`` is 0
    where it does not apply, ``se_gate`` is 'none' without SE.

    Dense-prediction heads (:mod:`search_spaces.heads`) add: ``width``, the input's width where
    it differs from its height ``resolution`` (0 = square, the string then reads ``r64x128``);
    the operators ``upsample`` (bilinear resize by the integer factor ``stride``), ``mul`` and
    ``add`` (element-wise products / sums of two ``in_channels`` maps); the ``sigmoid``
    nonlinearity. Keys without them keep their fields and strings.
    """

    operator: str
    resolution: int
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    nonlinearity: str
    expansion_channels: int = 0
    se_channels: int = 0
    se_gate: str = "none"
    residual: bool = False
    width: int = 0

    def __post_init__(self) -> None:
        if self.width == self.resolution:
            object.__setattr__(self, "width", 0)  # square: one key, one string
        if self.operator not in OP_OPERATORS:
            raise OpKeyError(f"operator: {self.operator!r} is not one of {', '.join(OP_OPERATORS)}")
        if self.nonlinearity not in OP_NONLINEARITIES:
            raise OpKeyError(f"nonlinearity: {self.nonlinearity!r} is not one of {', '.join(OP_NONLINEARITIES)}")
        if self.se_gate not in OP_SE_GATES:
            raise OpKeyError(f"se_gate: {self.se_gate!r} is not one of {', '.join(OP_SE_GATES)}")
        if (self.se_channels > 0) != (self.se_gate != "none"):
            raise OpKeyError("se_gate: must be 'none' exactly when se_channels is 0")

    @property
    def in_width(self) -> int:
        """The input's width (``resolution`` is its height)."""
        return self.width or self.resolution

    def _out(self, size: int) -> int:
        if self.operator in ("pool", "linear"):
            return 1
        if self.operator == "upsample":
            return size * self.stride
        return -(-size // self.stride)

    @property
    def out_resolution(self) -> int:
        """Output height."""
        return self._out(self.resolution)

    @property
    def out_width(self) -> int:
        return self._out(self.in_width)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """NCHW shape of the op's input at batch 1 (linear ops take N x C)."""
        if self.operator == "linear":
            return (1, self.in_channels)
        return (1, self.in_channels, self.resolution, self.in_width)

    def to_str(self) -> str:
        se = f"{self.se_channels}" + (f"-{self.se_gate}" if self.se_gate != "none" else "")
        size = f"{self.resolution}x{self.width}" if self.width else f"{self.resolution}"
        return (f"{self.operator}_r{size}_i{self.in_channels}_e{self.expansion_channels}"
                f"_o{self.out_channels}_k{self.kernel}_s{self.stride}_se{se}_{self.nonlinearity}"
                + ("_res" if self.residual else ""))

    __str__ = to_str

    @classmethod
    def from_str(cls, text: str) -> "OpKey":
        match = _PATTERN.fullmatch(text.strip()) if isinstance(text, str) and len(text) <= 200 else None
        if not match:
            raise OpKeyError(f"{text!r:.120} is not an op key (expected e.g. "
                             "'bneck_r56_i24_e72_o40_k5_s2_se24-hsigmoid_relu')")
        g = match.groupdict()
        return cls(
            operator=g["operator"], resolution=int(g["resolution"]), in_channels=int(g["in_channels"]),
            out_channels=int(g["out_channels"]), kernel=int(g["kernel"]), stride=int(g["stride"]),
            nonlinearity=g["nonlinearity"], expansion_channels=int(g["expansion_channels"]),
            se_channels=int(g["se_channels"]), se_gate=g["se_gate"] or "none", residual=bool(g["residual"]),
            width=int(g["width"] or 0))
