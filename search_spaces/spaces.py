"""Factorized hierarchical search spaces (MnasNet, Tan et al. 2019), as data.

A space is a skeleton of stages ("blocks" in MnasNet's words: base output width, base number
of layers, stride, input resolution fixed by the strides) plus, per stage, the decisions the
controller makes: conv operator, kernel, squeeze-and-excite, skip op, width multiplier of the
base, layers relative to the base, and MobileNetV3's nonlinearity. Every layer of a stage
repeats the stage's choices (stride only on the first layer).

A *sample* is a tuple of choice indices, one per decision (``space.decisions``, stage-major);
its *tokens* are readable strings (``s3.kernel=5``); both round-trip exactly. Every sample
decodes to a valid :class:`ArchSpec`. Spaces are YAML files in ``search_spaces/spaces/`` (or
any path): a user adds one by writing such a file.

Operators: ``conv`` (regular conv; SE does not apply to it and is dropped), ``dsconv``
(depthwise-separable, a bneck whose expansion equals its input), ``mbconvN`` (inverted
bottleneck with expansion ratio N: expansion = make_divisible(N x input)).
"""

from __future__ import annotations

import itertools
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

from ._divisible import make_divisible
from .opkey import OpKey
from jobs.safe_io import InputError, load_yaml, read_text, yaml_problem
from .spec import NONLINEARITIES, ArchSpec, BlockSpec, HeadSpec, SpecError, StemSpec, se_width

SPACE_DIR = Path(__file__).parent / "spaces"
DECISIONS = ("operator", "kernel", "se", "skip", "width", "layers", "nonlinearity")
_MBCONV = re.compile(r"^mbconv(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class Stage:
    out_channels: int
    layers: int
    stride: int


@dataclass(frozen=True)
class SearchSpace:
    name: str
    stem: StemSpec
    stages: tuple[Stage, ...]
    head: HeadSpec
    choices: tuple[tuple[str, tuple], ...]  # decision name -> options, for every stage
    resolution: int = 224
    num_classes: int = 1000
    dropout: float = 0.2
    se_gate: str = "hsigmoid"
    description: str = ""
    reference: str | None = None  # the hand-made network this space generalises (default target latency)

    # ----------------------------------------------------------------- decisions
    @property
    def options(self) -> dict[str, tuple]:
        return dict(self.choices)

    @property
    def decisions(self) -> tuple[tuple[int, str, tuple], ...]:
        """(stage, decision name, options) of every decision, in sample order."""
        return tuple((s, name, opts) for s in range(len(self.stages)) for name, opts in self.choices)

    @property
    def num_decisions(self) -> int:
        return len(self.stages) * len(self.choices)

    @property
    def size(self) -> int:
        """Number of distinct samples (not of distinct networks: conv ignores SE)."""
        return math.prod(len(opts) for _, _, opts in self.decisions)

    def random_sample(self, rng: random.Random) -> tuple[int, ...]:
        return tuple(rng.randrange(len(opts)) for _, _, opts in self.decisions)

    def check_sample(self, sample: Sequence[int]) -> tuple[int, ...]:
        if len(sample) != self.num_decisions:
            raise SpecError("sample", f"has {len(sample)} choices; space {self.name!r} makes {self.num_decisions}")
        for i, ((stage, name, opts), c) in enumerate(zip(self.decisions, sample)):
            if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < len(opts):
                raise SpecError(f"sample[{i}]", f"{c!r} is not a choice index of s{stage}.{name} (0..{len(opts) - 1})")
        return tuple(sample)

    def to_tokens(self, sample: Sequence[int]) -> tuple[str, ...]:
        sample = self.check_sample(sample)
        return tuple(f"s{stage}.{name}={opts[c]}" for (stage, name, opts), c in zip(self.decisions, sample))

    def from_tokens(self, tokens: Sequence[str]) -> tuple[int, ...]:
        if len(tokens) != self.num_decisions:
            raise SpecError("tokens", f"has {len(tokens)} tokens; space {self.name!r} makes {self.num_decisions}")
        out = []
        for i, ((stage, name, opts), token) in enumerate(zip(self.decisions, tokens)):
            prefix = f"s{stage}.{name}="
            if not token.startswith(prefix):
                raise SpecError(f"tokens[{i}]", f"{token!r} should start with {prefix!r}")
            text = token[len(prefix):]
            matches = [j for j, o in enumerate(opts) if str(o) == text]
            if not matches:
                raise SpecError(f"tokens[{i}]", f"{text!r} is not one of {', '.join(map(str, opts))}")
            out.append(matches[0])
        return tuple(out)

    def stage_choices(self, sample: Sequence[int]) -> list[dict[str, Any]]:
        sample = self.check_sample(sample)
        per = len(self.choices)
        return [{name: opts[sample[s * per + j]] for j, (name, opts) in enumerate(self.choices)}
                for s in range(len(self.stages))]

    # ----------------------------------------------------------------- decoding
    def _block(self, choice: dict, in_channels: int, out: int, stride: int) -> BlockSpec:
        op, nl = choice["operator"], choice["nonlinearity"]
        skip = choice["skip"] == "identity"
        if op == "conv":
            return BlockSpec("conv", choice["kernel"], stride, None, out, 0, nl, "hsigmoid", skip)
        if op == "dsconv":
            exp = in_channels
        else:
            exp = make_divisible(in_channels * float(_MBCONV.match(op).group(1)))
        se = se_width(exp) if choice["se"] else 0
        return BlockSpec("bneck", choice["kernel"], stride, exp, out, se, nl, self.se_gate, skip)

    def decode(self, sample: Sequence[int], name: str | None = None) -> ArchSpec:
        """The ArchSpec of ``sample`` (at the space's resolution and classes)."""
        blocks, channels = [], self.stem.out_channels
        for stage, choice in zip(self.stages, self.stage_choices(sample)):
            out = make_divisible(stage.out_channels * choice["width"])
            for i in range(max(1, stage.layers + choice["layers"])):
                blocks.append(self._block(choice, channels, out, stage.stride if i == 0 else 1))
                channels = out
        spec = ArchSpec(name="", stem=self.stem, blocks=tuple(blocks), head=self.head, num_classes=self.num_classes,
                        resolution=self.resolution, dropout=self.dropout)
        return spec.replace(name=name or f"{self.name}_{spec.hash[:8]}")

    def sample_spec(self, rng: random.Random) -> tuple[tuple[int, ...], ArchSpec]:
        sample = self.random_sample(rng)
        return sample, self.decode(sample)

    # ----------------------------------------------------------------- reduced spaces
    def reduced(self, name: str | None = None, **options: Sequence) -> "SearchSpace":
        """The same skeleton with fewer options per decision (e.g. ``kernel=[3]``)."""
        unknown = [k for k in options if k not in self.options]
        if unknown:
            raise SpecError(unknown[0], f"unknown decision; expected one of {', '.join(self.options)}")
        choices = []
        for decision, opts in self.choices:
            new = tuple(options.get(decision, opts))
            bad = [o for o in new if o not in opts]
            if bad or not new:
                raise SpecError(decision, f"{bad[0] if bad else 'nothing'!r} is not an option of this space "
                                          f"({', '.join(map(str, opts))})")
            choices.append((decision, new))
        return _replace(self, name=name or f"{self.name}_reduced", choices=tuple(choices))

    def enumerate(self, limit: int = 1_000_000) -> Iterator[tuple[int, ...]]:
        """Every sample of the space (refuses spaces larger than ``limit``)."""
        if self.size > limit:
            raise SpecError("space", f"{self.name!r} has {self.size:.3g} samples, more than the limit {limit}; "
                                     "enumerate a reduced() space")
        return itertools.product(*(range(len(opts)) for _, _, opts in self.decisions))

    # ----------------------------------------------------------------- op keys
    def all_op_keys(self, resolution: int | None = None) -> list[OpKey]:
        """Every distinct op any sample can produce, at every position (for profiling)."""
        space = self if resolution is None else _replace(self, resolution=resolution)
        keys: dict[OpKey, None] = {}
        o = space.options
        widths = lambda st: sorted({make_divisible(st.out_channels * w) for w in o["width"]})  # noqa: E731
        proto = space.decode(tuple(0 for _ in space.decisions))
        size = -(-space.resolution // space.stem.stride)
        keys.update(dict.fromkeys(proto.op_keys()[:1]))
        previous = [space.stem.out_channels]
        for stage in space.stages:
            outs = widths(stage)
            for op, k, se, skip, nl in itertools.product(o["operator"], o["kernel"], o["se"], o["skip"],
                                                         o["nonlinearity"]):
                choice = {"operator": op, "kernel": k, "se": se, "skip": skip, "nonlinearity": nl}
                for cin in previous:
                    for out in outs:
                        keys[_op_key(space._block(choice, cin, out, stage.stride), cin, size)] = None
                        if max(1, stage.layers + max(o["layers"])) > 1:
                            keys[_op_key(space._block(choice, out, out, 1), out, -(-size // stage.stride))] = None
            size = -(-size // stage.stride)
            previous = outs
        # Head ops for every possible last width.
        keys.update(dict.fromkeys(_head_keys(space, previous)))
        return list(keys)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "reference": self.reference, "description": self.description, "resolution": self.resolution,
            "num_classes": self.num_classes, "dropout": self.dropout, "se_gate": self.se_gate,
            "stem": self.stem.__dict__, "head": self.head.__dict__,
            "stages": [s.__dict__ for s in self.stages],
            "choices": {name: list(opts) for name, opts in self.choices},
        }


def _replace(space: SearchSpace, **changes) -> SearchSpace:
    import dataclasses

    return dataclasses.replace(space, **changes)


def _op_key(block: BlockSpec, cin: int, size: int) -> OpKey:
    residual = block.skip and block.stride == 1 and cin == block.out_channels
    return OpKey(operator=block.operator, resolution=size, in_channels=cin,
                 expansion_channels=block.expansion_channels or 0, out_channels=block.out_channels,
                 kernel=block.kernel, stride=block.stride, se_channels=block.se_channels,
                 se_gate=block.se_gate if block.se_channels else "none", nonlinearity=block.nonlinearity,
                 residual=residual)


def _head_keys(space: SearchSpace, last_widths: Sequence[int]) -> list[OpKey]:
    size = -(-space.resolution // space.stem.stride)
    for stage in space.stages:
        size = -(-size // stage.stride)
    keys = []
    for last in last_widths:
        channels = last
        if space.head.conv_channels is not None:
            keys.append(OpKey("conv", size, last, space.head.conv_channels, 1, 1, space.head.nonlinearity))
            channels = space.head.conv_channels
        keys.append(OpKey("pool", size, channels, channels, size, 1, "none"))
        if space.head.hidden_channels is not None:
            keys.append(OpKey("linear", 1, channels, space.head.hidden_channels, 1, 1, space.head.nonlinearity))
            channels = space.head.hidden_channels
        keys.append(OpKey("linear", 1, channels, space.num_classes, 1, 1, "none"))
    return keys


# --------------------------------------------------------------------------- YAML
_OPERATOR_OK = lambda o: o in ("conv", "dsconv") or bool(_MBCONV.match(str(o)))  # noqa: E731
_VALIDATORS = {
    "operator": (_OPERATOR_OK, "conv, dsconv or mbconvN (N an expansion ratio)"),
    "kernel": (lambda o: o in (3, 5, 7), "3, 5 or 7"),
    "se": (lambda o: o in (0, 0.25), "0 or 0.25"),
    "skip": (lambda o: o in ("identity", "none"), "identity or none"),
    "width": (lambda o: isinstance(o, (int, float)) and not isinstance(o, bool) and 0.1 <= o <= 4, "a multiplier"),
    "layers": (lambda o: isinstance(o, int) and not isinstance(o, bool) and -8 <= o <= 8, "an integer offset"),
    "nonlinearity": (lambda o: o in NONLINEARITIES, ", ".join(NONLINEARITIES)),
}


def space_from_dict(data: Any) -> SearchSpace:
    if not isinstance(data, dict):
        raise SpecError("", "a search space must be a mapping")
    allowed = {"name", "reference", "description", "resolution", "num_classes", "dropout", "se_gate", "stem", "head", "stages",
               "choices"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SpecError(unknown[0], f"unknown field; expected one of {', '.join(sorted(allowed))}")
    for required in ("name", "stem", "stages", "choices"):
        if required not in data:
            raise SpecError(required, "missing required field")
    choices = data["choices"]
    if not isinstance(choices, dict) or sorted(choices) != sorted(DECISIONS):
        raise SpecError("choices", f"must give options for exactly: {', '.join(DECISIONS)}")
    ordered = []
    for name in DECISIONS:
        opts = choices[name]
        if not isinstance(opts, list) or not opts:
            raise SpecError(f"choices.{name}", "must be a non-empty list")
        ok, text = _VALIDATORS[name]
        for i, o in enumerate(opts):
            if not ok(o):
                raise SpecError(f"choices.{name}[{i}]", f"{o!r} is not valid; expected {text}")
        ordered.append((name, tuple(opts)))
    try:
        stem = StemSpec(**data["stem"])
    except SpecError as err:
        raise err.prefixed("stem") from None
    try:
        head = HeadSpec(**data.get("head", {}))
    except SpecError as err:
        raise err.prefixed("head") from None
    stages = []
    for i, s in enumerate(data["stages"]):
        if not isinstance(s, dict) or sorted(s) != ["layers", "out_channels", "stride"]:
            raise SpecError(f"stages[{i}]", "needs exactly out_channels, layers, stride")
        if s["stride"] not in (1, 2) or not isinstance(s["layers"], int) or s["layers"] < 1 or s["out_channels"] < 1:
            raise SpecError(f"stages[{i}]", f"{s} is not a stage (stride 1 or 2, layers >= 1, out_channels >= 1)")
        stages.append(Stage(**s))
    space = SearchSpace(name=data["name"], stem=stem, stages=tuple(stages), head=head, choices=tuple(ordered),
                        resolution=data.get("resolution", 224), num_classes=data.get("num_classes", 1000),
                        dropout=data.get("dropout", 0.2), se_gate=data.get("se_gate", "hsigmoid"),
                        description=data.get("description", ""), reference=data.get("reference"))
    space.decode(tuple(0 for _ in space.decisions))  # validates the skeleton
    return space


def space_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in SPACE_DIR.glob("*.yaml")))


def get_space(name_or_path: str | Path) -> SearchSpace:
    """A space by name (``mnasnet``, ``mobilenetv3``) or from a YAML file."""
    text = str(name_or_path)
    path = Path(text) if text.endswith((".yaml", ".yml")) else SPACE_DIR / f"{text}.yaml"
    if not path.is_file():
        raise SpecError("space", f"{text!r} is not one of {', '.join(space_names())} nor a space YAML file")
    try:
        return space_from_dict(load_yaml(read_text(path, what="space file")))
    except InputError as err:
        raise SpecError("space", str(err)) from None
    except yaml.YAMLError as err:
        raise SpecError("space", f"{path.name} is not valid YAML: {yaml_problem(err)}") from None
    except SpecError as err:
        raise SpecError(err.path, f"{err.problem} (in {path.name})") from None
