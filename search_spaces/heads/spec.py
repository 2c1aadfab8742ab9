"""Dense-prediction models as data: a backbone ArchSpec, a head spec and an input size H x W.

:class:`LRASPPSpec` is the paper's segmentation head (Section 6.4, Figure 10), :class:`SSDLiteSpec`
its detection head (Section 6.3, SSDLite of MobileNetV2 Section 6.2). A :class:`DenseSpec` joins
one of them to a backbone at an input size. Like :class:`~search_spaces.ArchSpec` it is frozen,
validated at construction and plain data: ``op_keys()`` lists its ops for the latency tables
(``latency.predict(dense, "pixel1")`` works on it as on an ArchSpec), ``describe()`` counts its
costs (:mod:`search_spaces.heads.cost`), :func:`search_spaces.heads.build_dense` builds it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from typing import ClassVar, Union

from ..opkey import OpKey
from jobs.safe_io import echo
from ..spec import MAX_RESOLUTION, MIN_RESOLUTION, ArchSpec, SpecError
from .taps import POINTS, FeatureTap, atrous, feature_tap, final_stride

# Figure 10: "49x49 avg pool, stride (16, 20)" on the 1/16 features (49 = a 769-pixel training crop / 16).
PAPER_POOL = (49, 49, 16, 20)
# TF Object Detection API SSDLite: 3 boxes on the lowest layer (reduce_boxes_in_lowest_layer), 6 on the rest.
TF_ANCHORS = (3, 6, 6, 6, 6, 6)
TORCHVISION_ANCHORS = (6, 6, 6, 6, 6, 6)


def _positive(path: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(path, f"{value!r} is not an integer >= {minimum}")


def parse_resolution(value: Union[int, str, tuple, list]) -> tuple[int, int]:
    """``320`` / ``"320"`` -> (320, 320); ``"1024x2048"`` / ``(1024, 2048)`` -> (1024, 2048) (height x width)."""
    if isinstance(value, str):
        parts = value.lower().split("x")
        if len(parts) not in (1, 2) or not all(re.fullmatch(r"[0-9]{1,9}", p.strip()) for p in parts):
            raise SpecError("resolution", f"{echo(value)} is not a size: write 320 or HEIGHTxWIDTH like 1024x2048")
        value = tuple(int(p) for p in parts)
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) not in (1, 2):
        raise SpecError("resolution", f"{echo(value)} is not a size (an int or height x width)")
    value = tuple(value) * (2 if len(value) == 1 else 1)
    for name, v in zip(("height", "width"), value):
        _positive(f"resolution.{name}", v, MIN_RESOLUTION)
        if v > MAX_RESOLUTION:
            raise SpecError(f"resolution.{name}", f"{v} is above the maximum {MAX_RESOLUTION}")
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class LRASPPSpec:
    """Lite R-ASPP (Figure 10).

    The 1/``output_stride`` features (C5 of the dilated backbone) go through a 1x1 conv of
    ``inter_channels`` (F) filters + BN + ReLU, times a gate: average pooling -> 1x1 conv (F, no
    bias) -> sigmoid. ``pool`` None pools globally (torchvision); ``(kh, kw, sh, sw)`` is the
    paper's large-kernel pool with stride (:data:`PAPER_POOL`), kernel clipped to the feature
    size, gate resized back bilinearly. The product is upsampled bilinearly to the 1/8 features,
    classified by a 1x1 conv (with bias) and added to a 1x1 classifier of the 1/8 skip tap
    (``low_point`` of :func:`~search_spaces.heads.feature_tap`: "output" as torchvision, or
    "depthwise" as DeepLab's ``layer_7/depthwise_output``); the sum is upsampled to the input.
    """

    num_classes: int = 19
    inter_channels: int = 128
    output_stride: int = 16
    low_stride: int = 8
    low_point: str = "output"
    pool: tuple[int, int, int, int] | None = None
    kind: ClassVar[str] = "lraspp"

    def __post_init__(self) -> None:
        _positive("num_classes", self.num_classes)
        _positive("inter_channels", self.inter_channels)
        _positive("output_stride", self.output_stride, 2)
        _positive("low_stride", self.low_stride, 2)
        if self.low_stride >= self.output_stride or self.output_stride % self.low_stride:
            raise SpecError("low_stride", f"{self.low_stride} must divide output_stride {self.output_stride} "
                                          "and be smaller")
        if self.low_point not in POINTS:
            raise SpecError("low_point", f"{self.low_point!r} is not one of {', '.join(POINTS)}")
        if self.pool is not None:
            if isinstance(self.pool, list):
                object.__setattr__(self, "pool", tuple(self.pool))
            if not isinstance(self.pool, tuple) or len(self.pool) != 4:
                raise SpecError("pool", f"{self.pool!r} is not (kernel_h, kernel_w, stride_h, stride_w) or None")
            for i, v in enumerate(self.pool):
                _positive(f"pool[{i}]", v)


@dataclass(frozen=True)
class SSDLiteSpec:
    """SSDLite: prediction layers on C4 (the 1/16 expansion) and C5, plus extra feature layers.

    Each extra layer is a 1x1 conv to half its width, a 3x3 depthwise conv with stride 2 and a
    1x1 conv to its width (BN + ReLU6 after each). Every feature map gets a class and a box
    predictor: 3x3 depthwise + BN + ReLU6, then a 1x1 conv (with bias) to ``anchors[i] x
    num_classes`` or ``anchors[i] x 4`` outputs. ``anchors`` per feature map: :data:`TF_ANCHORS`
    (the TF Object Detection API's, which reproduce Table 6) or :data:`TORCHVISION_ANCHORS`.
    """

    num_classes: int = 91
    anchors: tuple[int, ...] = TF_ANCHORS
    extra_channels: tuple[int, ...] = (512, 256, 256, 128)
    kind: ClassVar[str] = "ssdlite"

    def __post_init__(self) -> None:
        _positive("num_classes", self.num_classes)
        for name in ("anchors", "extra_channels"):
            value = getattr(self, name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, name, value)
            if not isinstance(value, tuple):
                raise SpecError(name, f"{value!r} is not a list of integers")
            for i, v in enumerate(value):
                _positive(f"{name}[{i}]", v, 2 if name == "extra_channels" else 1)
        if len(self.anchors) != 2 + len(self.extra_channels):
            raise SpecError("anchors", f"{len(self.anchors)} entries for {2 + len(self.extra_channels)} feature maps "
                                       "(C4, C5 and one per extra layer)")
        if max(self.anchors) > 6:
            raise SpecError("anchors", "at most 6 boxes per location (ratios 1, 2, 1/2, 3, 1/3 and one more scale)")


HeadSpecs = Union[LRASPPSpec, SSDLiteSpec]


def _size(size: int, stride: int) -> int:
    return -(-size // stride)


@dataclass(frozen=True)
class DenseSpec:
    """A backbone with a dense-prediction head at an input of ``height`` x ``width`` pixels.

    The backbone is used as given (apply :func:`search_spaces.transforms.reduced_tail` first for
    the paper's † / RF2 variants) except for its ``resolution`` (the input is ``height`` x
    ``width``) and its classification head (pool, hidden layer, classifier), which are dropped;
    its head 1x1 conv is kept as C5. LR-ASPP runs it dilated to its ``output_stride``
    (:func:`~search_spaces.heads.atrous`).
    """

    backbone: ArchSpec
    head: HeadSpecs
    height: int
    width: int

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, ArchSpec):
            raise SpecError("backbone", "expected an ArchSpec")
        if not isinstance(self.head, (LRASPPSpec, SSDLiteSpec)):
            raise SpecError("head", "expected an LRASPPSpec or an SSDLiteSpec")
        _positive("height", self.height, 8)
        _positive("width", self.width, 8)
        self.taps  # validates that the backbone has the layers the head needs

    # ----------------------------------------------------------------- derived values
    @property
    def name(self) -> str:
        head = f"lraspp{self.head.inter_channels}" if isinstance(self.head, LRASPPSpec) else self.head.kind
        return f"{self.backbone.name}_{head}_{self.height}x{self.width}"

    @property
    def hash(self) -> str:
        data = {"backbone": self.backbone.hash, "head": self.head.kind, **dataclasses.asdict(self.head),
                "size": [self.height, self.width]}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def resolution(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def features_spec(self) -> ArchSpec:
        """The backbone as it runs: dilated to the head's output stride for LR-ASPP."""
        return self._atrous[0]

    @property
    def rates(self) -> tuple[int, ...]:
        """Depthwise dilation rate of every block of :attr:`features_spec`."""
        return self._atrous[1]

    @property
    def _atrous(self) -> tuple[ArchSpec, tuple[int, ...]]:
        cached = self.__dict__.get("_atrous_cache")
        if cached is None:
            if isinstance(self.head, LRASPPSpec):
                cached = atrous(self.backbone, self.head.output_stride)
            else:
                cached = (self.backbone, (1,) * len(self.backbone.blocks))
            object.__setattr__(self, "_atrous_cache", cached)
        return cached

    @property
    def taps(self) -> dict[str, FeatureTap]:
        """The backbone layers the head reads: ``low``/``high`` (LR-ASPP) or ``C4``/``C5`` (SSDLite)."""
        spec, head = self.features_spec, self.head
        if isinstance(head, LRASPPSpec):
            if final_stride(spec) != head.output_stride:
                raise SpecError("head.output_stride", f"{self.backbone.name!r} ends at 1/{final_stride(spec)}, "
                                                      f"not at 1/{head.output_stride}")
            return {"low": feature_tap(spec, head.low_stride, head.low_point, "low"),
                    "high": feature_tap(spec, head.output_stride, "last", "high")}
        c4 = feature_tap(spec, 16, "last", "C4")
        c5 = feature_tap(spec, 32, "last", "C5")
        return {"C4": c4, "C5": c5}

    def feature_size(self, output_stride: int) -> tuple[int, int]:
        """Spatial size (h, w) at an output stride: every strided layer pads 'same', so ceil(size / stride)."""
        return _size(self.height, output_stride), _size(self.width, output_stride)

    def map_sizes(self) -> tuple[tuple[int, int], ...]:
        """SSDLite: the (h, w) of each predicted feature map (C4, C5, extras)."""
        if not isinstance(self.head, SSDLiteSpec):
            raise SpecError("head", "only SSDLite has several feature maps")
        sizes = [self.feature_size(16), self.feature_size(32)]
        for _ in self.head.extra_channels:
            h, w = sizes[-1]
            sizes.append((_size(h, 2), _size(w, 2)))
        return tuple(sizes)

    def map_channels(self) -> tuple[int, ...]:
        taps = self.taps
        return (taps["C4"].channels, taps["C5"].channels, *self.head.extra_channels)

    def pooled_size(self) -> tuple[int, int]:
        """LR-ASPP: the size of the gate's pooled map (1 x 1 for global pooling)."""
        head = self.head
        if not isinstance(head, LRASPPSpec):
            raise SpecError("head", "only LR-ASPP has a pooled gate")
        if head.pool is None:
            return (1, 1)
        h, w = self.feature_size(head.output_stride)
        kh, kw = min(head.pool[0], h), min(head.pool[1], w)
        return ((h - kh) // head.pool[2] + 1, (w - kw) // head.pool[3] + 1)

    # ----------------------------------------------------------------- ops and costs
    def backbone_op_keys(self) -> tuple[OpKey, ...]:
        """The backbone's ops at H x W (stem, blocks, head conv), in execution order."""
        spec = self.features_spec
        n = 1 + len(spec.blocks) + (spec.head.conv_channels is not None)
        tall = spec.replace(resolution=self.height).op_keys()[:n]
        wide = spec.replace(resolution=self.width).op_keys()[:n]
        return tuple(dataclasses.replace(a, width=b.resolution) for a, b in zip(tall, wide))

    def head_op_keys(self) -> tuple[OpKey, ...]:
        """The head's ops (see :func:`search_spaces.heads.cost.head_op_keys`)."""
        from .cost import head_op_keys

        return head_op_keys(self)

    def op_keys(self) -> tuple[OpKey, ...]:
        """Every op in execution order: what latency tables are keyed by (as ArchSpec.op_keys)."""
        cached = self.__dict__.get("_op_keys")
        if cached is None:
            cached = self.backbone_op_keys() + self.head_op_keys()
            object.__setattr__(self, "_op_keys", cached)
        return cached

    def describe(self):
        """One row per layer with MAdds and params; totals in ``.attrs['totals']``."""
        from .cost import describe_dense

        return describe_dense(self)


def lraspp(backbone: ArchSpec, *, resolution=(1024, 2048), num_classes: int = 19, inter_channels: int = 128,
           **options) -> DenseSpec:
    """``backbone`` with an LR-ASPP head (defaults: Table 7's F = 128, Cityscapes' 19 classes, 1024 x 2048)."""
    height, width = parse_resolution(resolution)
    return DenseSpec(backbone, LRASPPSpec(num_classes=num_classes, inter_channels=inter_channels, **options),
                     height, width)


def ssdlite(backbone: ArchSpec, *, resolution=320, num_classes: int = 91, **options) -> DenseSpec:
    """``backbone`` with an SSDLite head (defaults: Table 6's 320 x 320, COCO's 91 classes, TF's anchors)."""
    height, width = parse_resolution(resolution)
    return DenseSpec(backbone, SSDLiteSpec(num_classes=num_classes, **options), height, width)


HEADS = ("lraspp", "ssdlite")
DEFAULT_RESOLUTION = {"lraspp": (1024, 2048), "ssdlite": (320, 320)}


def with_head(backbone: ArchSpec, head: str, *, resolution=None, num_classes: int | None = None,
              reduced: bool = False) -> DenseSpec:
    """``backbone`` with the named head (``lraspp`` / ``ssdlite``), as the describe CLI takes it.

    Defaults are the paper's: 1024 x 2048 and 19 classes for LR-ASPP (F = 128), 320 x 320 and 91
    classes for SSDLite. ``reduced`` first halves the tail the way that head's table does:
    Table 7's RF2 (C4 expansion included) for LR-ASPP, Table 6's † (torchvision's) for SSDLite.
    """
    from ..transforms import reduced_tail

    if head not in HEADS:
        raise SpecError("head", f"{head!r} is not one of {', '.join(HEADS)}")
    if reduced:
        backbone = reduced_tail(backbone, reduce_c4_expansion=head == "lraspp")
    make = lraspp if head == "lraspp" else ssdlite
    options = {} if num_classes is None else {"num_classes": num_classes}
    return make(backbone, resolution=DEFAULT_RESOLUTION[head] if resolution is None else resolution, **options)


def summary(dense: DenseSpec) -> dict:
    """Plain-data description (the describe CLI's JSON): ``params`` and ``madds`` as plain counts."""
    totals = dense.describe().attrs["totals"]
    return {"name": dense.name, "hash": dense.hash, "head": dense.head.kind, **dataclasses.asdict(dense.head),
            "resolution": [dense.height, dense.width], "backbone": dense.backbone.name,
            "backbone_hash": dense.backbone.hash, **totals,
            "taps": {name: dataclasses.asdict(tap) for name, tap in dense.taps.items()}}
