"""Dense-prediction heads on any backbone: feature taps, LR-ASPP (segmentation), SSDLite (detection).

The paper's Section 6.3-6.4 and Tables 6-7. Spec level (no torch): :func:`feature_taps` /
:func:`feature_tap` name the layers a head reads (C3 at 1/8, C4 = the 1/16 expansion, C5);
:func:`atrous` keeps a backbone at 1/16 with dilated depthwise convs; :class:`DenseSpec`
(:func:`lraspp`, :func:`ssdlite`) is a backbone + head at an input size, with exact costs
(``describe()``) and latency-table op keys (``op_keys()``; ``latency.predict(dense, target)``).
Torch level, loaded on first use: :func:`build_dense`, the head modules and SSD's anchors and loss
(:mod:`search_spaces.heads.ssd`). :func:`paper_tables` gives Tables 6 and 7, ours vs paper
(``python -m search_spaces.heads``). The channel-halving transform is
:func:`search_spaces.transforms.reduced_tail`.
"""

from .cost import count_madds, count_params, describe_dense, head_op_keys
from .spec import (PAPER_POOL, TF_ANCHORS, TORCHVISION_ANCHORS, DenseSpec, LRASPPSpec, SSDLiteSpec, lraspp,
                   parse_resolution, ssdlite)
from .taps import POINTS, FeatureTap, atrous, block_strides, feature_tap, feature_taps, final_stride

_LAZY = {name: "modules" for name in ("build_dense", "build_feature_extractor", "FeatureExtractor", "LRASPPHead",
                                      "SSDLiteHead", "Segmenter", "Detector", "dilate")}
_LAZY["paper_tables"] = "tables"  # Tables 6 and 7, ours vs paper (experiments.tables reads it)

__all__ = ["DenseSpec", "LRASPPSpec", "SSDLiteSpec", "lraspp", "ssdlite", "parse_resolution", "PAPER_POOL",
           "TF_ANCHORS", "TORCHVISION_ANCHORS", "FeatureTap", "POINTS", "feature_tap", "feature_taps", "atrous",
           "block_strides", "final_stride", "describe_dense", "count_params", "count_madds", "head_op_keys", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
