"""Subnets at arbitrary channel counts: a network of the space's frame whose layers are no wider
than the supernet's, though not a sample of the space (NetAdapt's proposals: expansion and
output widths cut to any multiple of 8).

The supernet slices channels (the first ``exp`` expansion channels, the first ``out`` output
channels, the first ``in`` input channels of the next layer, the first ``se`` squeeze channels),
so any width up to a slot's widest is a slice of its weights, as once-for-all's
``get_active_subnet`` slices any active width. :func:`subnet_at_widths` places the blocks of such
a network in the supernet's slots (one-line :class:`SupernetError` naming the first block, or the
stem or head, the supernet cannot run); :func:`extract_at_widths` returns
``search_spaces.build(spec)`` holding those slices (:meth:`Supernet.extract`). The stem's output
channels are elastic here too (its first ``out`` filters), which no sample of a space uses.

Which slot runs a block: for a sample of the space, the slots of :func:`subnet_of` (exact); for
any other network, the split of its blocks into the space's stages (each stage one to its most
layers, the first with the stage's stride, the rest stride 1, every block fitting its slot) whose
output widths are closest to the stages' base widths (sum of ``|log(out / base)|``).
"""

from __future__ import annotations

import math

from search_spaces import ArchSpec, BlockSpec
from search_spaces.spaces import SearchSpace

from .mapping import subnet_of
from .model import Slot, Subnet, Supernet, SupernetError, build_slots, max_layers


def _frame_problem(space: SearchSpace, spec: ArchSpec) -> str | None:
    """Why the stem or head of ``spec`` is not one the supernet of ``space`` has (None if it is)."""
    stem, head = spec.stem, space.head
    if (stem.kernel, stem.stride, stem.nonlinearity) != (space.stem.kernel, space.stem.stride, space.stem.nonlinearity):
        return (f"stem: kernel {stem.kernel}, stride {stem.stride}, {stem.nonlinearity} is not the supernet's "
                f"stem (kernel {space.stem.kernel}, stride {space.stem.stride}, {space.stem.nonlinearity})")
    if stem.out_channels > space.stem.out_channels:
        return f"stem: {stem.out_channels} output channels, wider than the supernet's {space.stem.out_channels}"
    if (spec.head.conv_channels, spec.head.hidden_channels, spec.head.nonlinearity) != \
            (head.conv_channels, head.hidden_channels, head.nonlinearity):
        def words(h) -> str:
            return f"conv {h.conv_channels}, hidden {h.hidden_channels}, {h.nonlinearity}"

        return f"head: {words(spec.head)} is not the supernet's head ({words(head)})"
    if head.conv_channels is None:
        return ("head: the space's head has no conv layer, so the supernet's classifier reads only its widest "
                "last stage; narrower last layers have no weights there")
    return None


def block_problem(space: SearchSpace, slot: Slot, block: BlockSpec, cin: int, first: bool) -> str | None:
    """Why ``block`` (input ``cin`` channels; ``first`` of its stage) cannot run in ``slot``."""
    stride = space.stages[slot.stage].stride if first else 1
    ops = space.options["operator"]
    where = f"slot {slot.stage}.{slot.index}"
    if block.stride != stride:
        return f"stride {block.stride}, but {where} has stride {stride}"
    if block.kernel not in space.options["kernel"]:
        return f"kernel {block.kernel} is not one of the supernet's {list(space.options['kernel'])}"
    if block.nonlinearity not in space.options["nonlinearity"]:
        return f"nonlinearity {block.nonlinearity!r} is not one of the space's {list(space.options['nonlinearity'])}"
    if block.operator == "conv" and "conv" not in ops:
        return "operator conv (a regular convolution) is not an operator of this supernet's space"
    if cin > slot.max_in:
        return f"input {cin} channels, wider than the supernet's {slot.max_in} at {where}"
    if block.out_channels > slot.max_out:
        return f"output {block.out_channels} channels, wider than the supernet's {slot.max_out} at {where}"
    if block.operator == "conv":
        return None
    if block.expansion_channels != cin and not any(op.startswith("mbconv") for op in ops):
        return "an expansion layer, which no operator of this supernet's space has"
    if block.expansion_channels == cin and "dsconv" not in ops:
        return "no expansion layer (a depthwise-separable block), which no operator of this supernet's space is"
    if block.expansion_channels > slot.max_exp:
        return f"expansion {block.expansion_channels} channels, wider than the supernet's {slot.max_exp} at {where}"
    if block.has_se:
        if not any(space.options["se"]):
            return "squeeze-and-excite, which this supernet's space never uses"
        if block.se_gate != space.se_gate:
            return f"SE gate {block.se_gate!r}, the supernet's is {space.se_gate!r}"
        if block.se_channels > slot.max_se:
            return f"squeeze {block.se_channels} channels, wider than the supernet's {slot.max_se} at {where}"
    return None


def _stride_problem(space: SearchSpace, slot: Slot, block: BlockSpec, cin: int, first: bool) -> str | None:
    stride = space.stages[slot.stage].stride if first else 1
    return None if block.stride == stride else f"stride {block.stride}, but slot {slot.stage}.{slot.index} has {stride}"


def _split(space: SearchSpace, spec: ArchSpec, slots: list[Slot], problem=block_problem) -> tuple[int, ...] | None:
    """The slots of ``spec``'s blocks for the closest split into stages where no block has a
    ``problem`` in its slot (None: no split fits)."""
    blocks, inputs = spec.blocks, [c for c, _ in spec.block_inputs]
    counts, stages = max_layers(space), len(space.stages)
    firsts = [sum(counts[:s]) for s in range(stages)]
    best: dict[tuple[int, int], tuple[float, tuple[int, ...]] | None] = {}

    def solve(s: int, i: int):
        if s == stages:
            return (0.0, ()) if i == len(blocks) else None
        if (s, i) not in best:
            result = None
            base = space.stages[s].out_channels
            for length in range(1, counts[s] + 1):
                if i + length > len(blocks) or any(
                        problem(space, slots[firsts[s] + j], blocks[i + j], inputs[i + j], j == 0)
                        for j in range(length)):
                    continue
                rest = solve(s + 1, i + length)
                if rest is None:
                    continue
                cost = rest[0] + sum(abs(math.log(blocks[i + j].out_channels / base)) for j in range(length))
                if result is None or cost < result[0]:
                    result = (cost, tuple(firsts[s] + j for j in range(length)) + rest[1])
            best[(s, i)] = result
        return best[(s, i)]

    found = solve(0, 0)
    return None if found is None else found[1]


def _no_split_reason(space: SearchSpace, spec: ArchSpec, slots: list[Slot]) -> str:
    """The first block that cannot run in its slot of the closest split by strides alone (or why
    the blocks do not split into the stages at all)."""
    placed = _split(space, spec, slots, _stride_problem)
    if placed is not None:
        inputs = [c for c, _ in spec.block_inputs]
        for i, (block, slot) in enumerate(zip(spec.blocks, placed)):
            problem = block_problem(space, slots[slot], block, inputs[i], slots[slot].index == 0)
            if problem:
                return f"blocks[{i}]: {problem}"
    return (f"blocks: its {len(spec.blocks)} blocks do not split into the {len(space.stages)} stages of space "
            f"{space.name!r} (stage s takes 1 to {max_layers(space)}[s] layers, the first with the stage's "
            f"stride {[st.stride for st in space.stages]}[s], each no wider than the supernet there)")


def subnet_at_widths(space: SearchSpace, spec: ArchSpec, slots: tuple[int, ...] | None = None) -> Subnet:
    """The subnet running ``spec`` in the supernet of ``space``: its blocks in ``slots`` (checked),
    or in the slots found as the module docstring says. A stem, head or block the supernet
    cannot run (wider than its slot, a kernel, operator, nonlinearity or SE it lacks, a stride
    that no split gives) is a one-line :class:`SupernetError` naming it."""
    problem = _frame_problem(space, spec)
    if problem:
        raise SupernetError(f"spec {spec.name}: {problem}")
    all_slots = build_slots(space)
    if slots is None:
        try:
            return subnet_of(space, spec)
        except SupernetError:
            slots = _split(space, spec, all_slots)
        if slots is None:
            raise SupernetError(f"spec {spec.name}: {_no_split_reason(space, spec, all_slots)}")
    if len(slots) != len(spec.blocks):
        raise SupernetError(f"spec {spec.name}: {len(spec.blocks)} blocks but {len(slots)} slots")
    inputs = tuple(c for c, _ in spec.block_inputs)
    for i, (block, slot) in enumerate(zip(spec.blocks, slots)):
        if not 0 <= slot < len(all_slots):
            raise SupernetError(f"spec {spec.name}: blocks[{i}]: slot {slot} is not a slot of the supernet")
        problem = block_problem(space, all_slots[slot], block, inputs[i], all_slots[slot].index == 0)
        if problem:
            raise SupernetError(f"spec {spec.name}: blocks[{i}]: {problem}")
    return Subnet(spec, tuple(slots), inputs)


def extract_at_widths(supernet: Supernet, spec: ArchSpec, slots: tuple[int, ...] | None = None):
    """``search_spaces.build(spec)`` (at the supernet's classes and input channels) holding the
    channel slices of ``supernet`` for ``spec`` (:func:`subnet_at_widths`), in eval mode."""
    return supernet.extract(subnet_at_widths(supernet.space, spec, slots))


__all__ = ["block_problem", "extract_at_widths", "subnet_at_widths"]
