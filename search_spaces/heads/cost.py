"""Cost counting of dense models from the spec alone (no torch), in the backbones' convention.

MAdds are the multiply-accumulates of convolutions and linear layers (half of what
``torch.utils.flop_counter`` reports for the built model; the tests check that equality);
parameters are every trainable tensor of the built model (conv weights and biases, BN weight
and bias; a row's ``bn_params`` says how many are BN's). Not counted, as for backbones: batch
norm, activations, the gate's multiply, the sum of the two classifiers, average pooling,
bilinear upsampling (none is a conv or linear layer; ``torch.utils.flop_counter`` counts none
of them either) and SSD's box decoding and non-maximum suppression (post-processing outside
the network). The backbone's classification
head (global pool, hidden layer, classifier) is not part of a dense model.

Rows carry the module path of the built model (:func:`search_spaces.heads.build_dense`), so a
row's ``params`` can be checked against ``module.get_submodule(path)``.
"""

from __future__ import annotations

import pandas as pd

from ..cost import op_layers
from ..opkey import OpKey
from .spec import DenseSpec, LRASPPSpec

COLUMNS = ["part", "layer", "kind", "input", "output", "madds", "params", "bn_params"]


def _shape(*dims: int) -> str:
    return "x".join(map(str, dims))


def _conv(layer: str, kind: str, size: tuple[int, int], cin: int, cout: int, kernel: int = 1, stride: int = 1,
          groups: int = 1, norm: str = "bn", positions: tuple[int, int] | None = None) -> dict:
    """One conv layer's row; ``norm`` 'bn' (BN weight + bias), 'bias' (conv bias) or 'none'."""
    h, w = size
    oh, ow = positions or (-(-h // stride), -(-w // stride))
    weights = kernel * kernel * (cin // groups) * cout
    extra = {"bn": 2 * cout, "bias": cout, "none": 0}[norm]
    return {"part": "head", "layer": layer, "kind": kind, "input": _shape(cin, h, w), "output": _shape(cout, oh, ow),
            "madds": oh * ow * weights, "params": weights + extra, "bn_params": 2 * cout if norm == "bn" else 0}


def _free(layer: str, kind: str, channels: int, size: tuple[int, int], out: tuple[int, int]) -> dict:
    return {"part": "head", "layer": layer, "kind": kind, "input": _shape(channels, *size),
            "output": _shape(channels, *out), "madds": 0, "params": 0, "bn_params": 0}


def backbone_rows(dense: DenseSpec) -> list[dict]:
    paths = [f"backbone.features.{i}" for i in range(len(dense.backbone_op_keys()))]
    rows = []
    for op, path in zip(dense.backbone_op_keys(), paths):
        for layer in op_layers(op, path):
            rows.append({"part": "backbone", "layer": layer.layer, "kind": layer.kind,
                         "input": _shape(*layer.in_shape), "output": _shape(*layer.out_shape),
                         "madds": layer.madds, "params": layer.params,
                         "bn_params": 2 * layer.out_shape[0] if layer.kind in ("conv", "dwconv") else 0})
    return rows


def _lraspp_rows(dense: DenseSpec) -> list[dict]:
    head: LRASPPSpec = dense.head
    taps = dense.taps
    high, low, F, K = taps["high"].channels, taps["low"].channels, head.inter_channels, head.num_classes
    hi, lo = dense.feature_size(head.output_stride), dense.feature_size(head.low_stride)
    pooled = dense.pooled_size()
    return [
        _conv("head.cbr.0", "conv", hi, high, F),
        _free("head.pool", "pool", high, hi, pooled),
        _conv("head.scale", "conv", pooled, high, F, norm="none"),
        _free("head.gate", "mul", F, hi, hi),
        _free("head.upsample", "upsample", F, hi, lo),
        _conv("head.high_classifier", "conv", lo, F, K, norm="bias"),
        _conv("head.low_classifier", "conv", lo, low, K, norm="bias"),
        _free("head.sum", "add", K, lo, lo),
        _free("head.output", "upsample", K, lo, (dense.height, dense.width)),
    ]


def _ssdlite_rows(dense: DenseSpec) -> list[dict]:
    head = dense.head
    sizes, channels = dense.map_sizes(), dense.map_channels()
    rows, cin = [], channels[1]
    for i, out in enumerate(head.extra_channels):
        mid, size, down = out // 2, sizes[1 + i], sizes[2 + i]
        rows += [_conv(f"head.extra.{i}.0.0", "conv", size, cin, mid),
                 _conv(f"head.extra.{i}.1.0", "dwconv", size, mid, mid, 3, 2, groups=mid),
                 _conv(f"head.extra.{i}.2.0", "conv", down, mid, out)]
        cin = out
    for name, per_anchor in (("cls", head.num_classes), ("box", 4)):
        for j, (c, size, anchors) in enumerate(zip(channels, sizes, head.anchors)):
            rows += [_conv(f"head.{name}.{j}.0.0", "dwconv", size, c, c, 3, groups=c),
                     _conv(f"head.{name}.{j}.1", "conv", size, c, anchors * per_anchor, norm="bias")]
    return rows


def head_rows(dense: DenseSpec) -> list[dict]:
    return _lraspp_rows(dense) if isinstance(dense.head, LRASPPSpec) else _ssdlite_rows(dense)


def describe_dense(dense: DenseSpec) -> pd.DataFrame:
    """One row per layer (backbone, then head); totals in ``df.attrs['totals']``."""
    df = pd.DataFrame(backbone_rows(dense) + head_rows(dense), columns=COLUMNS)
    part = df.groupby("part")[["params", "madds"]].sum()
    df.attrs["totals"] = {
        "params": int(df["params"].sum()), "madds": int(df["madds"].sum()),
        "backbone_params": int(part.loc["backbone", "params"]), "backbone_madds": int(part.loc["backbone", "madds"]),
        "head_params": int(part.loc["head", "params"]), "head_madds": int(part.loc["head", "madds"]),
    }
    return df


def count_params(dense: DenseSpec) -> int:
    return describe_dense(dense).attrs["totals"]["params"]


def count_madds(dense: DenseSpec) -> int:
    return describe_dense(dense).attrs["totals"]["madds"]


# --------------------------------------------------------------------------- latency keys
def head_op_keys(dense: DenseSpec) -> tuple[OpKey, ...]:
    """The head's ops as latency-table keys, in execution order.

    Every layer maps to the operator that builds and costs like it: 1x1 convs are ``conv`` keys
    (their bias / missing BN is no latency difference), the gate's 1x1 conv on the pooled map a
    ``linear`` key with a sigmoid (a ``conv`` key where the paper's strided pool leaves more than
    one position), SSDLite's extra layers and predictors ``bneck`` keys (expansion = half width /
    none; the extra layer's ReLU6 after its projection is the only difference, fused on TFLite),
    the gate's multiply ``mul``, the classifiers' sum ``add`` and the bilinear resizes
    ``upsample`` keys (integer factor in ``stride``; the resize of the paper pool's gate map back
    to 1/16 has no integer factor and no key).
    """
    if isinstance(dense.head, LRASPPSpec):
        return _lraspp_keys(dense)
    return _ssdlite_keys(dense)


def _key(operator: str, size: tuple[int, int], cin: int, cout: int, **fields) -> OpKey:
    fields = {"kernel": 1, "stride": 1, "nonlinearity": "none", **fields}
    return OpKey(operator=operator, resolution=size[0], width=size[1], in_channels=cin, out_channels=cout, **fields)


def _lraspp_keys(dense: DenseSpec) -> tuple[OpKey, ...]:
    head: LRASPPSpec = dense.head
    taps = dense.taps
    high, low, F, K = taps["high"].channels, taps["low"].channels, head.inter_channels, head.num_classes
    hi, lo = dense.feature_size(head.output_stride), dense.feature_size(head.low_stride)
    pooled = dense.pooled_size()
    keys = [_key("conv", hi, high, F, nonlinearity="relu"),
            _key("pool", hi, high, high, kernel=hi[0])]
    if pooled == (1, 1):
        keys.append(_key("linear", (1, 1), high, F, nonlinearity="sigmoid"))
    else:
        keys.append(_key("conv", pooled, high, F, nonlinearity="sigmoid"))
    keys += [_key("mul", hi, F, F),
             _key("upsample", hi, F, F, stride=head.output_stride // head.low_stride),
             _key("conv", lo, F, K),
             _key("conv", lo, low, K),
             _key("add", lo, K, K),
             _key("upsample", lo, K, K, stride=head.low_stride)]
    return tuple(keys)


def _ssdlite_keys(dense: DenseSpec) -> tuple[OpKey, ...]:
    head = dense.head
    sizes, channels = dense.map_sizes(), dense.map_channels()
    keys, cin = [], channels[1]
    for i, out in enumerate(head.extra_channels):
        keys.append(_key("bneck", sizes[1 + i], cin, out, expansion_channels=out // 2, kernel=3, stride=2,
                         nonlinearity="relu6"))
        cin = out
    for per_anchor in (head.num_classes, 4):
        for c, size, anchors in zip(channels, sizes, head.anchors):
            keys.append(_key("bneck", size, c, anchors * per_anchor, expansion_channels=c, kernel=3,
                             nonlinearity="relu6"))
    return tuple(keys)
