"""The supernet of a search space: one set of weights that every sample of the space slices.

Elastic dimensions (once-for-all, Cai et al. 2020; BigNAS, Yu et al. 2020):

* **kernel**: every depthwise (and regular) convolution keeps the largest kernel of the space; a
  smaller kernel is the centre of the next larger one multiplied by a learned ``k² x k²``
  transform matrix (once-for-all's ``5to3_matrix``, ``7to5_matrix``; initialised to the
  identity, one per layer, shared by its channels);
* **expansion**: the expanded channels of a bottleneck are the first ``exp`` channels of the
  widest one (mbconv6 at the widest input); a ``dsconv`` (expansion 1: no expansion conv) uses the
  first ``in`` channels of the same depthwise and projection weights;
* **depth**: a stage of ``n`` layers runs the first ``n`` of its ``base + max(layers)`` slots;
* **width**: output channels are the first ``out`` of the widest; the next layer reads the first
  ``in`` input channels of its weights;
* **squeeze-and-excite** on or off (the squeeze width is ``se_width(exp)``, the first channels of
  the widest squeeze), **ReLU or h-swish**, **skip** on or off: no weights of their own;
* a regular ``conv`` operator keeps weights of its own (per slot, elastic in kernel and width).

:meth:`Supernet.forward` runs a :class:`Subnet` (what :func:`subnet_of` makes of an ArchSpec) and
:meth:`Supernet.extract` copies its weights into ``search_spaces.build(spec)``: in eval mode the
two give identical outputs (same operations on the same tensors).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces import ArchSpec, BlockSpec
from search_spaces._divisible import make_divisible
from search_spaces.builder import BN_EPS, BN_MOMENTUM, _init_weights, build
from search_spaces.spaces import _MBCONV, SearchSpace
from search_spaces.spec import se_width


class SupernetError(ValueError):
    """A spec, checkpoint or setting the supernet cannot take; the message is one line naming it."""


@dataclass(frozen=True)
class Slot:
    """One layer position of the supernet: the widest shapes any sample can give it."""

    stage: int
    index: int  # layer within the stage
    stride: int
    max_in: int
    max_exp: int
    max_se: int
    max_out: int


@dataclass(frozen=True)
class Subnet:
    """A child of the supernet: ``blocks[i]`` runs in slot ``slots[i]`` with input ``inputs[i]``."""

    spec: ArchSpec
    slots: tuple[int, ...]
    inputs: tuple[int, ...]


def _ratio(op: str) -> float | None:
    match = _MBCONV.match(op)
    return float(match.group(1)) if match else None


def stage_widths(space: SearchSpace) -> list[list[int]]:
    widths = space.options["width"]
    return [sorted({make_divisible(stage.out_channels * w) for w in widths}) for stage in space.stages]


def max_layers(space: SearchSpace) -> list[int]:
    top = max(space.options["layers"])
    return [max(1, stage.layers + top) for stage in space.stages]


def build_slots(space: SearchSpace) -> list[Slot]:
    """Every layer position of ``space`` with its widest shapes (exact: a maximum over the options)."""
    ops = space.options["operator"]
    slots, previous = [], [space.stem.out_channels]
    for s, (stage, outs, n) in enumerate(zip(space.stages, stage_widths(space), max_layers(space))):
        for j in range(n):
            ins = previous if j == 0 else outs
            exps = [c for c in ins if "dsconv" in ops]
            exps += [make_divisible(c * _ratio(op)) for c in ins for op in ops if _ratio(op)]
            exps = exps or [1]
            slots.append(Slot(s, j, stage.stride if j == 0 else 1, max(ins), max(exps),
                              max(se_width(e) for e in exps), max(outs)))
        previous = outs
    return slots


class ElasticKernel(nn.Module):
    """The once-for-all kernel: the largest kernel, and smaller ones as transformed centres."""

    def __init__(self, out_channels: int, in_channels: int, kernels: list[int]):
        super().__init__()
        self.kernels = sorted(set(kernels))
        k = self.kernels[-1]
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, k, k))
        # one matrix per step down (e.g. 7to5, 5to3), identity-initialised, shared by the channels
        self.transforms = nn.ParameterDict({f"{big}to{small}": nn.Parameter(torch.eye(small * small))
                                            for small, big in zip(self.kernels, self.kernels[1:])})

    def filters(self, out_channels: int, in_channels: int, kernel: int) -> torch.Tensor:
        if kernel not in self.kernels:
            raise SupernetError(f"kernel: {kernel} is not one of the supernet's {self.kernels}")
        weight = self.weight[:out_channels, :in_channels]
        for big, small in zip(reversed(self.kernels), reversed(self.kernels[:-1])):
            if big <= kernel:
                break
            start = (big - small) // 2
            centre = weight[:, :, start:start + small, start:start + small].reshape(-1, small * small)
            weight = F.linear(centre, self.transforms[f"{big}to{small}"]).view(out_channels, in_channels, small, small)
        return weight.contiguous()


class ElasticBN(nn.Module):
    """BatchNorm over the first ``c`` channels of the widest one (once-for-all's DynamicBatchNorm2d)."""

    def __init__(self, channels: int, eps: float, momentum: float):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=eps, momentum=momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, bn = x.shape[1], self.bn
        if c == bn.num_features:
            return bn(x)
        factor = 0.0
        if bn.training:
            bn.num_batches_tracked += 1
            factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        return F.batch_norm(x, bn.running_mean[:c], bn.running_var[:c], bn.weight[:c], bn.bias[:c],
                            bn.training, factor, bn.eps)


def _act(x: torch.Tensor, name: str) -> torch.Tensor:
    if name == "relu":
        return F.relu(x)
    if name == "hswish":
        return F.hardswish(x)
    if name == "relu6":
        return F.relu6(x)
    if name == "swish":
        return F.silu(x)
    if name == "hsigmoid":
        return F.hardsigmoid(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    raise SupernetError(f"nonlinearity: {name!r} is not one the supernet runs")


class SuperLayer(nn.Module):
    """A slot: the widest bottleneck (expand, depthwise, SE, project) and a regular conv of its own."""

    def __init__(self, slot: Slot, kernels: list[int], with_conv: bool, norm: dict):
        super().__init__()
        self.slot = slot
        self.expand = nn.Parameter(torch.empty(slot.max_exp, slot.max_in, 1, 1))
        self.expand_bn = ElasticBN(slot.max_exp, **norm)
        self.depthwise = ElasticKernel(slot.max_exp, 1, kernels)
        self.depthwise_bn = ElasticBN(slot.max_exp, **norm)
        self.se_reduce = nn.Conv2d(slot.max_exp, slot.max_se, 1)
        self.se_expand = nn.Conv2d(slot.max_se, slot.max_exp, 1)
        self.project = nn.Parameter(torch.empty(slot.max_out, slot.max_exp, 1, 1))
        self.project_bn = ElasticBN(slot.max_out, **norm)
        self.conv = ElasticKernel(slot.max_out, slot.max_in, kernels) if with_conv else None
        self.conv_bn = ElasticBN(slot.max_out, **norm) if with_conv else None

    # ---------------------------------------------------------- the active weights of a block
    def weights(self, block: BlockSpec, cin: int) -> dict[str, torch.Tensor]:
        """The tensors ``block`` (input ``cin`` channels) uses, named as in the built model."""
        out = block.out_channels
        if block.operator == "conv":
            if self.conv is None:
                raise SupernetError("operator: conv is not an operator of this supernet's space")
            return {"conv": self.conv.filters(out, cin, block.kernel)}
        exp = block.expansion_channels
        w = {"depthwise": self.depthwise.filters(exp, 1, block.kernel),
             "project": self.project[:out, :exp].contiguous()}
        if exp != cin:
            w["expand"] = self.expand[:exp, :cin].contiguous()
        if block.se_channels:
            se = block.se_channels
            w.update(se_w1=self.se_reduce.weight[:se, :exp].contiguous(), se_b1=self.se_reduce.bias[:se],
                     se_w2=self.se_expand.weight[:exp, :se].contiguous(), se_b2=self.se_expand.bias[:exp])
        return w

    def forward(self, x: torch.Tensor, block: BlockSpec, residual: bool) -> torch.Tensor:
        cin, nl = x.shape[1], block.nonlinearity
        w = self.weights(block, cin)
        pad = block.kernel // 2
        if block.operator == "conv":
            y = _act(self.conv_bn(F.conv2d(x, w["conv"], None, block.stride, pad)), nl)
        else:
            y = x
            if "expand" in w:
                y = _act(self.expand_bn(F.conv2d(y, w["expand"])), nl)
            y = F.conv2d(y, w["depthwise"], None, block.stride, pad, 1, y.shape[1])
            y = _act(self.depthwise_bn(y), nl)
            if "se_w1" in w:
                s = F.relu(F.conv2d(F.adaptive_avg_pool2d(y, 1), w["se_w1"], w["se_b1"]))
                y = _act(F.conv2d(s, w["se_w2"], w["se_b2"]), block.se_gate) * y
            y = self.project_bn(F.conv2d(y, w["project"]))
        return y + x if residual else y


class Supernet(nn.Module):
    """The supernet of ``space`` for ``num_classes`` classes and ``in_channels`` input channels."""

    def __init__(self, space: SearchSpace, num_classes: int, in_channels: int = 3, *,
                 bn_eps: float = BN_EPS, bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        self.space, self.num_classes, self.in_channels = space, num_classes, in_channels
        norm = dict(eps=bn_eps, momentum=bn_momentum)
        self.slot_specs = build_slots(space)
        kernels = list(space.options["kernel"])
        with_conv = "conv" in space.options["operator"]
        stem = space.stem
        self.stem = nn.Conv2d(in_channels, stem.out_channels, stem.kernel, stem.stride, stem.kernel // 2, bias=False)
        self.stem_bn = nn.BatchNorm2d(stem.out_channels, **norm)
        self.layers = nn.ModuleList(SuperLayer(slot, kernels, with_conv, norm) for slot in self.slot_specs)
        head = space.head
        final = max(stage_widths(space)[-1])
        channels = final
        self.head_conv = self.head_bn = None
        if head.conv_channels is not None:
            self.head_conv = nn.Parameter(torch.empty(head.conv_channels, final, 1, 1))
            self.head_bn = nn.BatchNorm2d(head.conv_channels, **norm)
            channels = head.conv_channels
        self.hidden = nn.Linear(channels, head.hidden_channels) if head.hidden_channels is not None else None
        self.classifier = nn.Linear(head.hidden_channels or channels, num_classes)
        self.dropout = space.dropout
        self.reset_parameters()
        self.first_slot = [next(i for i, s in enumerate(self.slot_specs) if s.stage == st)
                           for st in range(len(space.stages))]

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """torchvision's MobileNetV3 initialisation (the builder's) on the widest tensors."""
        _init_weights(self)
        for name, p in self.named_parameters():
            if name.endswith(("expand", "project", "head_conv", ".weight")) and p.dim() == 4 \
                    and ".transforms." not in name:
                nn.init.kaiming_normal_(p, mode="fan_out")

    # ----------------------------------------------------------------- running a child
    def forward(self, x: torch.Tensor, subnet: Subnet) -> torch.Tensor:
        spec = subnet.spec
        stem = spec.stem
        x = _act(self.stem_bn(self.stem(x)), stem.nonlinearity)
        for i, (block, slot) in enumerate(zip(spec.blocks, subnet.slots)):
            x = self.layers[slot](x, block, spec.has_residual(i))
        if self.head_conv is not None:
            x = self.head_bn(F.conv2d(x, self.head_conv[:, :x.shape[1]].contiguous()))
            x = _act(x, spec.head.nonlinearity)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        if self.hidden is not None:
            x = _act(self.hidden(x), spec.head.nonlinearity)
        x = F.dropout(x, self.dropout, self.training)
        return self.classifier(x)

    # ----------------------------------------------------------------- extraction
    @torch.no_grad()
    def extract(self, subnet: Subnet, *, bn_eps: float | None = None, bn_momentum: float = BN_MOMENTUM) -> nn.Module:
        """``search_spaces.build(spec)`` (at the supernet's classes and input channels) holding the
        subnet's weights and BN statistics: in eval mode it computes what :meth:`forward` does."""
        spec = subnet.spec.replace(num_classes=self.num_classes, in_channels=self.in_channels)
        model = build(spec, bn_eps=self.stem_bn.eps if bn_eps is None else bn_eps, bn_momentum=bn_momentum)
        state = {}
        _copy_bn(state, "features.0.1", self.stem_bn, spec.stem.out_channels)
        state["features.0.0.weight"] = self.stem.weight[:spec.stem.out_channels]  # all of it for a sample
        for i, (block, slot, cin) in enumerate(zip(spec.blocks, subnet.slots, subnet.inputs)):
            state.update(_block_state(self.layers[slot], block, cin, f"features.{i + 1}.block"))
        n = len(spec.blocks) + 1
        if self.head_conv is not None:
            state[f"features.{n}.0.weight"] = self.head_conv[:, :spec.final_channels]
            _copy_bn(state, f"features.{n}.1", self.head_bn, self.head_bn.num_features)
        index = 0
        if self.hidden is not None:
            state["classifier.0.weight"], state["classifier.0.bias"] = self.hidden.weight, self.hidden.bias
            index = 2
        state[f"classifier.{index + 1}.weight"] = self.classifier.weight
        state[f"classifier.{index + 1}.bias"] = self.classifier.bias
        model.load_state_dict({k: v.detach().clone().contiguous() for k, v in state.items()}, strict=True)
        model.eval()
        return model


def _copy_bn(state: dict, prefix: str, bn: nn.BatchNorm2d, c: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        state[f"{prefix}.{name}"] = getattr(bn, name)[:c]
    state[f"{prefix}.num_batches_tracked"] = bn.num_batches_tracked


def _block_state(layer: SuperLayer, block: BlockSpec, cin: int, prefix: str) -> dict:
    """The state-dict entries of ``builder.InvertedResidual`` / ``ConvBlock`` for ``block``."""
    w, state = layer.weights(block, cin), {}
    if block.operator == "conv":
        state[f"{prefix}.0.0.weight"] = w["conv"]
        _copy_bn(state, f"{prefix}.0.1", layer.conv_bn.bn, block.out_channels)
        return state
    exp, j = block.expansion_channels, 0
    if "expand" in w:
        state[f"{prefix}.0.0.weight"] = w["expand"]
        _copy_bn(state, f"{prefix}.0.1", layer.expand_bn.bn, exp)
        j = 1
    state[f"{prefix}.{j}.0.weight"] = w["depthwise"]
    _copy_bn(state, f"{prefix}.{j}.1", layer.depthwise_bn.bn, exp)
    j += 1
    if "se_w1" in w:
        state.update({f"{prefix}.{j}.fc1.weight": w["se_w1"], f"{prefix}.{j}.fc1.bias": w["se_b1"],
                      f"{prefix}.{j}.fc2.weight": w["se_w2"], f"{prefix}.{j}.fc2.bias": w["se_b2"]})
        j += 1
    state[f"{prefix}.{j}.0.weight"] = w["project"]
    _copy_bn(state, f"{prefix}.{j}.1", layer.project_bn.bn, block.out_channels)
    return state


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["Supernet", "Subnet", "Slot", "SupernetError", "build_slots", "stage_widths", "max_layers",
           "param_count"]
