"""ArchSpec -> torch.nn.Module. A pure function: it reads the spec and never changes it.

Module names and order follow torchvision's MobileNetV3 (``features.0`` the stem,
``features.i.block.j`` the layers of block i, the head's 1x1 conv last in ``features``,
``avgpool``, ``classifier``), so that torchvision's state dicts map one to one and timm's map
by a key table (:mod:`search_spaces.weights`).
"""

from __future__ import annotations

import torch
from torch import nn

from .opkey import OpKey
from .spec import ArchSpec

BN_EPS = 1e-3  # TF / torchvision MobileNetV3 value
BN_MOMENTUM = 0.1  # torch's default; torchvision's 0.01 leaves running stats unconverged in short proxy runs


def make_activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    if name == "swish":
        return nn.SiLU(inplace=True)
    if name == "hsigmoid":
        return nn.Hardsigmoid(inplace=True)
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "none":
        return nn.Identity()
    raise ValueError(f"nonlinearity: {name!r} is not one of relu, relu6, hswish, swish")


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> activation (omitted for 'none'); torchvision's Conv2dNormActivation."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 activation: str = "relu", bn_eps: float = BN_EPS, bn_momentum: float = BN_MOMENTUM):
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum),
        ]
        if activation != "none":
            layers.append(make_activation(activation))
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcitation(nn.Module):
    """Global pool -> 1x1 conv (squeeze) -> ReLU -> 1x1 conv -> gate, scaling the input."""

    def __init__(self, channels: int, squeeze_channels: int, gate: str = "hsigmoid"):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = make_activation(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 bottleneck: [1x1 expand] -> depthwise kxk -> [SE] -> 1x1 linear projection."""

    def __init__(self, in_channels: int, expansion_channels: int, out_channels: int, kernel: int, stride: int,
                 se_channels: int, se_gate: str, activation: str, residual: bool,
                 bn_eps: float = BN_EPS, bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        norm = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
        layers: list[nn.Module] = []
        if expansion_channels != in_channels:
            layers.append(ConvNormAct(in_channels, expansion_channels, 1, activation=activation, **norm))
        layers.append(ConvNormAct(expansion_channels, expansion_channels, kernel, stride,
                                  groups=expansion_channels, activation=activation, **norm))
        if se_channels:
            layers.append(SqueezeExcitation(expansion_channels, se_channels, se_gate))
        layers.append(ConvNormAct(expansion_channels, out_channels, 1, activation="none", **norm))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = residual
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out


class ConvBlock(nn.Module):
    """MnasNet's 'regular conv' block: kxk conv + BN + activation, with an optional residual."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, activation: str,
                 residual: bool, bn_eps: float = BN_EPS, bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        self.block = nn.Sequential(ConvNormAct(in_channels, out_channels, kernel, stride, activation=activation,
                                               bn_eps=bn_eps, bn_momentum=bn_momentum))
        self.use_res_connect = residual
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out


class MobileNet(nn.Module):
    """The network an ArchSpec describes. ``spec`` is kept for reference (it is immutable)."""

    def __init__(self, spec: ArchSpec, features: nn.Sequential, classifier: nn.Sequential):
        super().__init__()
        self.spec = spec
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = classifier

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _block_module(op: OpKey, **norm) -> nn.Module:
    if op.operator == "bneck":
        return InvertedResidual(op.in_channels, op.expansion_channels, op.out_channels, op.kernel, op.stride,
                                op.se_channels, op.se_gate, op.nonlinearity, op.residual, **norm)
    return ConvBlock(op.in_channels, op.out_channels, op.kernel, op.stride, op.nonlinearity, op.residual, **norm)


def _init_weights(model: nn.Module) -> None:
    # torchvision's MobileNetV3 initialisation.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def build(spec: ArchSpec, *, bn_eps: float = BN_EPS, bn_momentum: float = BN_MOMENTUM) -> MobileNet:
    """Build the PyTorch model of ``spec`` (freshly initialised, in train mode)."""
    if not isinstance(spec, ArchSpec):
        raise TypeError(f"build() takes an ArchSpec, got {type(spec).__name__}; use load_spec() first")
    norm = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
    keys = spec.op_keys()
    stem = keys[0]
    layers: list[nn.Module] = [ConvNormAct(stem.in_channels, stem.out_channels, stem.kernel, stem.stride,
                                           activation=stem.nonlinearity, **norm)]
    for op in keys[1:1 + len(spec.blocks)]:
        layers.append(_block_module(op, **norm))
    if spec.head.conv_channels is not None:
        layers.append(ConvNormAct(spec.final_channels, spec.head.conv_channels, 1,
                                  activation=spec.head.nonlinearity, **norm))
    channels = spec.head.conv_channels or spec.final_channels
    classifier: list[nn.Module] = []
    if spec.head.hidden_channels is not None:
        classifier += [nn.Linear(channels, spec.head.hidden_channels), make_activation(spec.head.nonlinearity)]
        channels = spec.head.hidden_channels
    # Out-of-place dropout: torchvision's in-place one overwrites the activation's output, which
    # ReLU / ReLU6 (unlike h-swish) keep for their backward pass, so a ReLU head could not train.
    # Same module layout (classifier.{0,1,2,3}), so weight import is unchanged.
    classifier += [nn.Dropout(p=spec.dropout), nn.Linear(channels, spec.num_classes)]
    model = MobileNet(spec, nn.Sequential(*layers), nn.Sequential(*classifier))
    _init_weights(model)
    return model


class Elementwise(nn.Module):
    """A dense head's element-wise product or sum, timed alone on one input (``x * x``, ``x + x``)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x if self.kind == "mul" else x + x


def build_op(op: OpKey, *, bn_eps: float = BN_EPS, bn_momentum: float = BN_MOMENTUM) -> nn.Module:
    """Build one op alone; its input has shape ``op.input_shape``. Used by the latency profiler."""
    norm = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
    if op.operator == "conv":
        module: nn.Module = ConvNormAct(op.in_channels, op.out_channels, op.kernel, op.stride,
                                        activation=op.nonlinearity, **norm)
    elif op.operator == "bneck":
        module = _block_module(op, **norm)
    elif op.operator == "pool":
        module = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    elif op.operator == "linear":
        module = nn.Sequential(nn.Linear(op.in_channels, op.out_channels), make_activation(op.nonlinearity))
    elif op.operator == "upsample":
        module = nn.Upsample(scale_factor=op.stride, mode="bilinear", align_corners=False)
    elif op.operator in ("mul", "add"):
        module = Elementwise(op.operator)
    else:  # pragma: no cover - OpKey validates operators
        raise ValueError(f"operator: {op.operator!r} cannot be built")
    _init_weights(module)
    return module
