"""Weight inheritance for NetAdapt proposals: keep the filters with the largest L2 norm.

Every tensor of a built network (``search_spaces.build``: torchvision's layout) is described by
the *channel space* of each of its dimensions (:func:`tensor_layout`): the width of a residual
group (``bottleneck:b3+b4+b5``), of one block's expansion (``expansion:b4``), of its squeeze-and-
excite (``se:b4``), of the head's 1x1 conv (``head``), of the hidden linear layer (``hidden``), the
input image channels (``input``) or the classes (``classes``). A proposal shrinks spaces; the
child's tensors are the parent's, indexed along every dimension by the channels kept in that
dimension's space. So the filters kept by a layer and the matching input channels of every layer
that consumes them (the depthwise filters, BN weights and statistics, SE fc1/fc2, the projection,
the next block, the head and the classifier) always agree.

The channels kept in a space are those whose *filters* have the largest L2 norm (NetAdapt, Yang et
al. 2018): the rows of the layer(s) producing that space. A residual group has several producers
(the stem or the block that opens the skip path, and each residual block's projection); a channel's
norm is then the root of the sum of its squared norms over all producers, so one index set serves
the whole skip path. Ties keep the lower index; kept channels stay in their original order. When
no space shrinks, the child's tensors equal the parent's and the outputs are exactly preserved.

Checkpoints are plain ``torch.save(state_dict)`` files, read with ``weights_only=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from search_spaces import ArchSpec

from .proposals import STEM, layer_label, residual_groups, topology


class WeightsMismatch(ValueError):
    """Weights that do not fit a spec; ``tensor`` names the first mismatched tensor."""

    def __init__(self, tensor: str, problem: str, spec_name: str = ""):
        self.tensor = tensor
        self.problem = problem
        where = f" spec {spec_name!r}" if spec_name else " the spec"
        super().__init__(f"weights do not fit{where}: first mismatched tensor {tensor!r}: {problem}")


@dataclass(frozen=True)
class Slot:
    """One tensor: the channel space of each dimension (None: not a channel dimension) and
    whether its rows are the filters that make the channels of its first dimension."""

    spaces: tuple[str | None, ...]
    filters: bool = False


def _group_spaces(spec: ArchSpec) -> dict[int, str]:
    return {m: f"bottleneck:{g.label}" for g in residual_groups(spec) for m in g.members}


def channel_sizes(spec: ArchSpec) -> dict[str, int]:
    """Width of every channel space of ``spec``."""
    sizes = {"input": spec.in_channels, "classes": spec.num_classes}
    for group in residual_groups(spec):
        sizes[f"bottleneck:{group.label}"] = group.channels
    for i, (block, (in_channels, _)) in enumerate(zip(spec.blocks, spec.block_inputs)):
        if block.operator == "bneck" and block.expansion_channels != in_channels:
            sizes[f"expansion:{layer_label(i)}"] = block.expansion_channels
        if block.se_channels:
            sizes[f"se:{layer_label(i)}"] = block.se_channels
    if spec.head.conv_channels is not None:
        sizes["head"] = spec.head.conv_channels
    if spec.head.hidden_channels is not None:
        sizes["hidden"] = spec.head.hidden_channels
    return sizes


def tensor_layout(spec: ArchSpec) -> dict[str, Slot]:
    """Every state-dict key of ``build(spec)``, in the model's order, with its channel spaces."""
    group_of = _group_spaces(spec)
    layout: dict[str, Slot] = {}

    def conv_bn(prefix: str, out_space: str, in_space: str, depthwise: bool = False) -> None:
        layout[f"{prefix}.0.weight"] = Slot((out_space, None if depthwise else in_space, None, None),
                                            filters=not depthwise)
        for name in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{prefix}.1.{name}"] = Slot((out_space,))
        layout[f"{prefix}.1.num_batches_tracked"] = Slot(())

    previous = group_of[STEM]
    conv_bn("features.0", previous, "input")
    for i, (block, (in_channels, _)) in enumerate(zip(spec.blocks, spec.block_inputs)):
        prefix, out = f"features.{i + 1}.block", group_of[i]
        if block.operator == "conv":
            conv_bn(f"{prefix}.0", out, previous)
        else:
            j, expansion = 0, previous  # a depthwise-separable block filters its input's channels
            if block.expansion_channels != in_channels:
                expansion = f"expansion:{layer_label(i)}"
                conv_bn(f"{prefix}.0", expansion, previous)
                j = 1
            conv_bn(f"{prefix}.{j}", expansion, expansion, depthwise=True)
            j += 1
            if block.se_channels:
                se = f"se:{layer_label(i)}"
                layout[f"{prefix}.{j}.fc1.weight"] = Slot((se, expansion, None, None), filters=True)
                layout[f"{prefix}.{j}.fc1.bias"] = Slot((se,))
                layout[f"{prefix}.{j}.fc2.weight"] = Slot((expansion, se, None, None))
                layout[f"{prefix}.{j}.fc2.bias"] = Slot((expansion,))
                j += 1
            conv_bn(f"{prefix}.{j}", out, expansion)
        previous = out
    if spec.head.conv_channels is not None:
        conv_bn(f"features.{len(spec.blocks) + 1}", "head", previous)
        previous = "head"
    last = 1
    if spec.head.hidden_channels is not None:
        layout["classifier.0.weight"] = Slot(("hidden", previous), filters=True)
        layout["classifier.0.bias"] = Slot(("hidden",))
        previous, last = "hidden", 3
    layout[f"classifier.{last}.weight"] = Slot(("classes", previous))
    layout[f"classifier.{last}.bias"] = Slot(("classes",))
    return layout


def expected_shapes(spec: ArchSpec) -> dict[str, tuple[int, ...]]:
    """Key -> shape of ``build(spec).state_dict()`` (built once; the builder is the authority)."""
    from search_spaces import build

    return {k: tuple(v.shape) for k, v in build(spec).state_dict().items()}


def check_fits(state: dict, spec: ArchSpec) -> None:
    """Raise :class:`WeightsMismatch` naming the first tensor (in the model's order, then the
    checkpoint's) that is missing, has the wrong shape, or is not part of ``spec``'s network."""
    if not isinstance(state, dict):
        raise WeightsMismatch("<file>", f"expected a state dict (torch.save(model.state_dict())), "
                                        f"got {type(state).__name__}", spec.name)
    expected = expected_shapes(spec)
    for key, shape in expected.items():
        if key not in state:
            raise WeightsMismatch(key, "missing from the weights", spec.name)
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise WeightsMismatch(key, f"is a {type(value).__name__}, not a tensor", spec.name)
        if tuple(value.shape) != shape:
            raise WeightsMismatch(key, f"has shape {tuple(value.shape)} in the weights, the spec needs {shape}",
                                  spec.name)
    for key in state:
        if key not in expected:
            raise WeightsMismatch(key, "is in the weights but not in the spec's network", spec.name)


def filter_norms(state: dict, spec: ArchSpec, space: str) -> torch.Tensor:
    """L2 norm of the filters making each channel of ``space`` (summed in squares over producers)."""
    total = None
    for key, slot in tensor_layout(spec).items():
        if slot.filters and slot.spaces[0] == space:
            rows = state[key].detach().reshape(state[key].shape[0], -1).double().pow(2).sum(1)
            total = rows if total is None else total + rows
    if total is None:
        raise KeyError(f"{space}: no layer produces this channel space")
    return total.sqrt()


def kept_channels(state: dict, parent: ArchSpec, child: ArchSpec) -> dict[str, torch.Tensor]:
    """Channel space -> indices (ascending) of the parent's channels the child keeps, for every
    space the child narrows; the largest filter norms win, ties keep the lower index."""
    parent_sizes, child_sizes = channel_sizes(parent), channel_sizes(child)
    if topology(parent) != topology(child) or set(parent_sizes) != set(child_sizes):
        raise ValueError(f"{child.name!r} does not have the topology of {parent.name!r}: NetAdapt children "
                         "only narrow layers (same blocks, expansion layers, SE, residuals and head)")
    keep = {}
    for space, size in child_sizes.items():
        if size == parent_sizes[space]:
            continue
        if size > parent_sizes[space] or space in ("input", "classes"):
            raise ValueError(f"{space}: the child has {size} channels, the parent {parent_sizes[space]}; "
                             "NetAdapt only removes channels of layers")
        norms = filter_norms(state, parent, space)
        order = torch.sort(norms, descending=True, stable=True).indices
        keep[space] = order[:size].sort().values
    return keep


def inherit(state: dict, parent: ArchSpec, child: ArchSpec) -> dict[str, torch.Tensor]:
    """The child's state dict from the parent's: every tensor indexed by the kept channels.

    ``parent``/``child`` are the specs as built (classes and input channels of the training
    data). Raises :class:`WeightsMismatch` when ``state`` does not fit ``parent``.
    """
    check_fits(state, parent)
    keep = kept_channels(state, parent, child)
    out = {}
    for key, slot in tensor_layout(child).items():
        tensor = state[key]
        for dim, space in enumerate(slot.spaces):
            if space in keep:
                tensor = tensor.index_select(dim, keep[space])
        out[key] = tensor.detach().clone()
    return out


# --------------------------------------------------------------------------- files
def save_weights(state: dict, path: str | Path) -> None:
    """``torch.save(state)`` so that a kill leaves either the old file or the new one."""
    from jobs import atomic_write

    atomic_write(path, lambda f: torch.save({k: v.detach().cpu() for k, v in state.items()}, f), binary=True)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict saved with ``torch.save``; read with ``weights_only=True`` (no pickled code).

    Every failure (missing, a folder, empty, truncated, not a torch file, pickled code, not a dict
    of tensors) is one ``ValueError`` line naming the file (``jobs.safe_io``).
    """
    from jobs.safe_io import echo, load_state_dict

    path = Path(path)
    try:
        empty = path.is_file() and path.stat().st_size == 0
    except (OSError, ValueError) as err:  # a name too long for the file system, a NUL byte
        raise ValueError(f"weights {echo(str(path))} cannot be read "
                         f"({getattr(err, 'strerror', None) or err})") from None
    if empty:
        raise ValueError(f"weights {echo(str(path))} is an empty file (0 bytes), not a torch.save(state_dict) "
                         "file; was it written by an interrupted run?")
    return load_state_dict(path, what="weights")
