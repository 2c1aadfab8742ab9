"""NetAdapt proposals (MobileNetV3 Section 4.2): what can shrink, and by how much.

Two kinds of proposal, both pure ``ArchSpec -> ArchSpec`` changes:

``expansion``
    the expansion size of one block (the width of its 1x1 expansion conv, depthwise conv and the
    input of its projection);
``bottleneck``
    the output width of a *residual group*: the layers whose outputs are added to the same skip
    path (the stem or the block that opens the path, and every residual block after it) must keep
    one width, so they shrink together. A layer without a residual after it is a group of one.

For each proposal the new width is the largest multiple of 8 below the current one whose predicted
latency cut (on the latency table of the target) meets the step target; a proposal that cannot meet
it at any width is kept in the list, skipped, with the reason.

Proposals never change the topology: a depthwise-separable block (expansion equal to its input,
no expansion layer) keeps its expansion equal to its input when that input shrinks; a width that
would make an expansion layer disappear (expansion equal to the block's input) is not proposed; a
block that had no residual keeps none (``skip`` is set false where the shrink would make its input
and output widths equal). Squeeze-and-excite widths follow the block's rule: MobileNetV3's
``se_width(expansion)`` (make_divisible(exp / 4, 8)), MnasNet's quarter of the block input, or else
their ratio to the expansion.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

from latency import MissingOpsError, predict_ms, resolve_table
from search_spaces import ArchSpec, BlockSpec, se_width

STEM = -1  # the stem's index in ResidualGroup.members
CHANNEL_DIVISOR = 8
KINDS = ("expansion", "bottleneck")


def layer_label(index: int) -> str:
    """``stem`` or ``b<i>`` (0-based block index, as in ``spec.blocks``)."""
    return "stem" if index == STEM else f"b{index}"


@dataclass(frozen=True)
class ResidualGroup:
    """Layers (``STEM`` and/or block indices) whose outputs share one skip path, hence one width."""

    members: tuple[int, ...]
    channels: int

    @property
    def label(self) -> str:
        return "+".join(layer_label(m) for m in self.members)

    @property
    def residual(self) -> bool:
        return len(self.members) > 1


def residual_groups(spec: ArchSpec) -> tuple[ResidualGroup, ...]:
    """The residual groups of ``spec`` in network order.

    Blocks are sequential, so a block's input is the output of the latest group; a block with a
    residual adds its output to that input and joins the group, any other block opens a new one.
    """
    groups: list[list[int]] = [[STEM]]
    for i in range(len(spec.blocks)):
        if spec.has_residual(i):
            groups[-1].append(i)
        else:
            groups.append([i])
    widths = [spec.stem.out_channels] + [b.out_channels for b in spec.blocks]
    return tuple(ResidualGroup(tuple(g), widths[g[0] + 1]) for g in groups)


def has_expansion_layer(spec: ArchSpec, index: int) -> bool:
    """Whether block ``index`` has a 1x1 expansion conv (a bneck whose expansion differs from its input)."""
    block = spec.blocks[index]
    return block.operator == "bneck" and block.expansion_channels != spec.block_inputs[index][0]


def topology(spec: ArchSpec) -> tuple:
    """What a proposal must keep: per block its operator, expansion layer, SE and residual."""
    return tuple((b.operator, has_expansion_layer(spec, i), b.has_se, spec.has_residual(i))
                 for i, b in enumerate(spec.blocks)) + ((spec.head.conv_channels is None,
                                                         spec.head.hidden_channels is None),)


# --------------------------------------------------------------------------- spec changes
def _se_channels(block: BlockSpec, old_in: int, new_in: int, new_exp: int | None) -> int:
    se, old_exp = block.se_channels, block.expansion_channels
    if not se or new_exp is None:
        return se
    if se == se_width(old_exp):  # MobileNetV3: make_divisible(exp / 4, 8)
        return se_width(new_exp)
    if se == max(1, int(old_in * 0.25)):  # MnasNet: a quarter of the block input
        return max(1, int(new_in * 0.25))
    return max(1, round(se * new_exp / old_exp))


def _rebuild(spec: ArchSpec, stem_out: int, outs: Sequence[int], exps: Sequence[int | None]) -> ArchSpec:
    """``spec`` with new stem/block widths; SE widths follow, new residuals are suppressed."""
    blocks, new_in = [], stem_out
    for i, (block, out, exp) in enumerate(zip(spec.blocks, outs, exps)):
        old_in = spec.block_inputs[i][0]
        if block.operator == "bneck" and block.expansion_channels == old_in:
            exp = new_in  # a depthwise-separable block stays one
        skip = block.skip and (spec.has_residual(i) or new_in != out or block.stride != 1)
        blocks.append(dataclasses.replace(block, expansion_channels=exp, out_channels=out,
                                          se_channels=_se_channels(block, old_in, new_in, exp), skip=skip))
        new_in = out
    return spec.replace(stem=dataclasses.replace(spec.stem, out_channels=stem_out), blocks=tuple(blocks))


def shrink_expansion(spec: ArchSpec, index: int, channels: int) -> ArchSpec:
    """``spec`` with block ``index``'s expansion set to ``channels`` (SE follows)."""
    exps = [b.expansion_channels for b in spec.blocks]
    exps[index] = channels
    return _rebuild(spec, spec.stem.out_channels, [b.out_channels for b in spec.blocks], exps)


def shrink_group(spec: ArchSpec, group: ResidualGroup, channels: int) -> ArchSpec:
    """``spec`` with every member of ``group`` producing ``channels`` (consumers follow)."""
    members = set(group.members)
    stem_out = channels if STEM in members else spec.stem.out_channels
    outs = [channels if i in members else b.out_channels for i, b in enumerate(spec.blocks)]
    return _rebuild(spec, stem_out, outs, [b.expansion_channels for b in spec.blocks])


# --------------------------------------------------------------------------- proposals
@dataclass(frozen=True)
class Proposal:
    """One proposal of one iteration. ``spec`` is None when it was skipped (``reason`` says why).

    ``latency_ms`` is the child's predicted latency; ``next_width_cut_ms`` the cut one 8-channel
    group wider (the largest width that did *not* meet the target), or None when the chosen width
    is the first one below the current width.
    """

    index: int
    kind: str
    layers: tuple[int, ...]
    from_channels: int
    parent_latency_ms: float
    step_target_ms: float
    to_channels: int | None = None
    latency_ms: float | None = None
    next_width_cut_ms: float | None = None
    spec: ArchSpec | None = None
    reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.kind}:{'+'.join(layer_label(m) for m in self.layers)}"

    @property
    def feasible(self) -> bool:
        return self.spec is not None

    @property
    def cut_ms(self) -> float | None:
        return None if self.latency_ms is None else self.parent_latency_ms - self.latency_ms

    @property
    def channels(self) -> str:
        return f"{self.from_channels}->{self.to_channels if self.to_channels is not None else '?'}"

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "kind": self.kind, "layers": list(self.layers),
                "from_channels": self.from_channels, "to_channels": self.to_channels,
                "parent_latency_ms": self.parent_latency_ms, "latency_ms": self.latency_ms,
                "cut_ms": self.cut_ms, "step_target_ms": self.step_target_ms,
                "next_width_cut_ms": self.next_width_cut_ms, "hash": self.spec.hash if self.spec else None,
                "reason": self.reason}


def candidate_widths(channels: int) -> range:
    """Multiples of 8 strictly below ``channels``, largest first (8 at the least)."""
    return range((channels - 1) // CHANNEL_DIVISOR * CHANNEL_DIVISOR, CHANNEL_DIVISOR - 1, -CHANNEL_DIVISOR)


def _search_width(spec: ArchSpec, parent_ms: float, step_ms: float, table, widths: range, make
                  ) -> tuple[int | None, ArchSpec | None, float | None, float | None, str]:
    """The largest width whose predicted cut meets ``step_ms``: (width, spec, latency, cut one
    group wider, reason if none)."""
    shape, best_cut, missing, previous_cut, tried = topology(spec), None, [], None, 0
    for width in widths:
        child = make(width)
        if topology(child) != shape:
            continue  # it would remove an expansion layer: not a width this proposal can take
        try:
            latency_ms = predict_ms(child, table)
        except MissingOpsError as err:
            missing.extend(err.missing)
            continue
        tried += 1
        cut = parent_ms - latency_ms
        if cut >= step_ms:
            return width, child, latency_ms, previous_cut, ""
        previous_cut = cut
        best_cut = cut if best_cut is None else max(best_cut, cut)
    if best_cut is not None:
        reason = (f"the largest cut, {best_cut:.4f} ms (at 8 channels or the narrowest width in the table), "
                  f"is below the step target {step_ms:.4f} ms")
    elif missing:
        keys = ", ".join(k.to_str() for k in list(dict.fromkeys(missing))[:2])
        reason = f"no narrower width is in the latency table ({len(set(missing))} op(s) missing, e.g. {keys})"
    elif tried == 0 and len(widths):
        reason = "every narrower width would change the topology (remove an expansion layer)"
    else:
        reason = f"already at the minimum width ({CHANNEL_DIVISOR} channels)"
    return None, None, None, None, reason


def make_proposals(spec: ArchSpec, step_ms: float, table, kinds: Sequence[str] = KINDS) -> list[Proposal]:
    """Every proposal for ``spec`` at step target ``step_ms``: bottleneck groups in network order,
    then expansion layers in network order; skipped ones included (``spec`` None, ``reason`` set)."""
    if not step_ms > 0:
        raise ValueError(f"step_ms: {step_ms!r} must be positive")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"kinds: {unknown[0]!r} is not one of {', '.join(KINDS)}")
    table = resolve_table(table)
    parent_ms = predict_ms(spec, table)
    proposals: list[Proposal] = []

    def add(kind: str, layers: tuple[int, ...], channels: int, make) -> None:
        widths = candidate_widths(channels)
        width, child, latency_ms, previous_cut, reason = _search_width(spec, parent_ms, step_ms, table, widths, make)
        if child is not None:
            child = child.replace(name=spec.name)
        proposals.append(Proposal(len(proposals), kind, layers, channels, parent_ms, step_ms, width, latency_ms,
                                  previous_cut, child, reason))

    if "bottleneck" in kinds:
        for group in residual_groups(spec):
            add("bottleneck", group.members, group.channels, lambda w, g=group: shrink_group(spec, g, w))
    if "expansion" in kinds:
        for i, block in enumerate(spec.blocks):
            if has_expansion_layer(spec, i):
                add("expansion", (i,), block.expansion_channels, lambda w, i=i: shrink_expansion(spec, i, w))
    return proposals


def narrowest(spec: ArchSpec) -> ArchSpec:
    """``spec`` with every group and expansion at the narrowest width proposals can reach: the
    floor of the predicted latency NetAdapt can get to (approximately: widths that would remove
    an expansion layer are stepped over)."""
    current, shape = spec, topology(spec)
    for group in residual_groups(spec):
        for width in reversed(candidate_widths(group.channels)):
            child = shrink_group(current, group, width)
            if topology(child) == shape:
                current = child
                break
    for i in range(len(spec.blocks)):
        if has_expansion_layer(spec, i):
            for width in reversed(candidate_widths(current.blocks[i].expansion_channels)):
                child = shrink_expansion(current, i, width)
                if topology(child) == shape:
                    current = child
                    break
    return current
