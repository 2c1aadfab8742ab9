"""DenseSpec -> torch.nn.Module: a feature extractor over the built backbone and the two heads.

``build_dense(dense)`` is a pure function of the spec, like :func:`search_spaces.build`. The
backbone is ``search_spaces.build(dense.features_spec)`` with its classification head dropped;
for LR-ASPP its depthwise convs are then dilated by ``dense.rates`` (the only place dilation
lives: op keys and costs do not depend on it). Module paths match the rows of
:func:`search_spaces.heads.describe_dense`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..builder import ConvNormAct, build
from ..spec import ArchSpec
from .spec import DenseSpec, LRASPPSpec
from .taps import FeatureTap, feature_taps


class FeatureExtractor(nn.Module):
    """Runs a built network's ``features`` up to its last tap and returns ``{tap name: tensor}``.

    A tap on a whole module (stem, block, head conv) is that module's output; a tap inside a
    block (``features.i.block.j``: expansion or depthwise output) is read between the block's
    layers, and the block then finishes as usual (residual included). No hooks: the forward is
    plain code, so tracing and ONNX export see every tensor.
    """

    def __init__(self, features: nn.Sequential, taps: dict[str, FeatureTap]):
        super().__init__()
        self.taps = dict(taps)
        self._inner: dict[int, dict[int, str]] = {}  # module index -> {layer index in .block -> tap name}
        self._outer: dict[int, list[str]] = {}  # module index -> tap names of its output
        last = 0
        for name, tap in self.taps.items():
            parts = tap.module_path.split(".")
            index = int(parts[1])
            if len(parts) == 2:
                self._outer.setdefault(index, []).append(name)
            else:  # features.i.block.j
                self._inner.setdefault(index, {})[int(parts[3])] = name
            last = max(last, index)
        self.features = nn.Sequential(*list(features)[:last + 1])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for index, module in enumerate(self.features):
            inner = self._inner.get(index)
            if inner:
                y = x
                for j, layer in enumerate(module.block):
                    y = layer(y)
                    if j in inner:
                        out[inner[j]] = y
                x = y + x if module.use_res_connect else y
            else:
                x = module(x)
            for name in self._outer.get(index, ()):
                out[name] = x
        return {name: out[name] for name in self.taps}


def dilate(features: nn.Sequential, rates: tuple[int, ...]) -> None:
    """Dilate every k x k conv (k > 1) of block i by ``rates[i]``, keeping 'same' padding (in place)."""
    for index, rate in enumerate(rates):
        if rate == 1:
            continue
        for conv in features[index + 1].modules():
            if isinstance(conv, nn.Conv2d) and conv.kernel_size[0] > 1:
                conv.dilation = (rate, rate)
                conv.padding = (rate * (conv.kernel_size[0] // 2), rate * (conv.kernel_size[1] // 2))


class LRASPPHead(nn.Module):
    """Lite R-ASPP (Figure 10); see :class:`~search_spaces.heads.LRASPPSpec`."""

    def __init__(self, low_channels: int, high_channels: int, num_classes: int, inter_channels: int = 128,
                 pool: tuple[int, int, int, int] | None = None):
        super().__init__()
        self.pool_size = pool
        self.cbr = ConvNormAct(high_channels, inter_channels, 1, activation="relu")
        self.scale = nn.Conv2d(high_channels, inter_channels, 1, bias=False)
        self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)

    def gate(self, high: torch.Tensor) -> torch.Tensor:
        if self.pool_size is None:
            return torch.sigmoid(self.scale(F.adaptive_avg_pool2d(high, 1)))
        kh, kw, sh, sw = self.pool_size
        h, w = high.shape[-2:]
        pooled = F.avg_pool2d(high, (min(kh, h), min(kw, w)), (sh, sw))
        gate = torch.sigmoid(self.scale(pooled))
        return F.interpolate(gate, size=(h, w), mode="bilinear", align_corners=False)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = self.cbr(high) * self.gate(high)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.high_classifier(x) + self.low_classifier(low)


class Segmenter(nn.Module):
    """Backbone + LR-ASPP; returns class logits at the input's size (N x classes x H x W)."""

    def __init__(self, backbone: FeatureExtractor, head: LRASPPHead, spec: DenseSpec | None = None):
        super().__init__()
        self.spec = spec
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        logits = self.head(features["low"], features["high"])
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _extra_block(in_channels: int, out_channels: int) -> nn.Sequential:
    mid = out_channels // 2
    return nn.Sequential(ConvNormAct(in_channels, mid, 1, activation="relu6"),
                         ConvNormAct(mid, mid, 3, 2, groups=mid, activation="relu6"),
                         ConvNormAct(mid, out_channels, 1, activation="relu6"))


def _prediction_block(channels: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(ConvNormAct(channels, channels, 3, groups=channels, activation="relu6"),
                         nn.Conv2d(channels, outputs, 1))


class SSDLiteHead(nn.Module):
    """Extra feature layers and depthwise-separable class / box predictors (SSDLite).

    ``forward(c4, c5)`` returns ``(class_logits, box_regression)``: N x anchors x classes and
    N x anchors x 4, anchors ordered by feature map, then row, column and box (as
    :func:`search_spaces.heads.ssd.default_boxes`).
    """

    def __init__(self, channels: tuple[int, int], num_classes: int, anchors: tuple[int, ...],
                 extra_channels: tuple[int, ...] = (512, 256, 256, 128)):
        super().__init__()
        self.num_classes = num_classes
        self.anchors = tuple(anchors)
        extra, cin = [], channels[1]
        for out in extra_channels:
            extra.append(_extra_block(cin, out))
            cin = out
        self.extra = nn.ModuleList(extra)
        maps = (*channels, *extra_channels)
        self.cls = nn.ModuleList(_prediction_block(c, a * num_classes) for c, a in zip(maps, anchors))
        self.box = nn.ModuleList(_prediction_block(c, a * 4) for c, a in zip(maps, anchors))
        for module in (self.extra, self.cls, self.box):  # torchvision's SSDLite initialisation
            for m in module.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.normal_(m.weight, 0.0, 0.03)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    @staticmethod
    def _flatten(x: torch.Tensor, per_anchor: int) -> torch.Tensor:
        n, _, h, w = x.shape
        return x.view(n, -1, per_anchor, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, per_anchor)

    def forward(self, c4: torch.Tensor, c5: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = [c4, c5]
        for block in self.extra:
            maps.append(block(maps[-1]))
        logits = torch.cat([self._flatten(p(x), self.num_classes) for p, x in zip(self.cls, maps)], 1)
        boxes = torch.cat([self._flatten(p(x), 4) for p, x in zip(self.box, maps)], 1)
        return logits, boxes


class Detector(nn.Module):
    """Backbone + SSDLite; returns ``(class_logits, box_regression)`` (see :class:`SSDLiteHead`)."""

    def __init__(self, backbone: FeatureExtractor, head: SSDLiteHead, spec: DenseSpec | None = None):
        super().__init__()
        self.spec = spec
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(x)
        return self.head(features["C4"], features["C5"])


def build_feature_extractor(spec: ArchSpec, taps: dict[str, FeatureTap] | None = None) -> FeatureExtractor:
    """The built network of ``spec`` returning its taps (default :func:`~search_spaces.heads.feature_taps`)."""
    return FeatureExtractor(build(spec).features, feature_taps(spec) if taps is None else taps)


def build_dense(dense: DenseSpec) -> nn.Module:
    """Build the model of ``dense`` (freshly initialised, train mode): a Segmenter or a Detector."""
    if not isinstance(dense, DenseSpec):
        raise TypeError(f"build_dense() takes a DenseSpec, got {type(dense).__name__}")
    net = build(dense.features_spec)
    dilate(net.features, dense.rates)
    taps = dense.taps
    backbone = FeatureExtractor(net.features, taps)
    head = dense.head
    if isinstance(head, LRASPPSpec):
        return Segmenter(backbone, LRASPPHead(taps["low"].channels, taps["high"].channels, head.num_classes,
                                              head.inter_channels, head.pool), dense)
    return Detector(backbone, SSDLiteHead((taps["C4"].channels, taps["C5"].channels), head.num_classes,
                                          head.anchors, head.extra_channels), dense)
