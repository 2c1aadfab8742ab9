"""Exact cost counting from the spec alone (no torch): MAdds, parameters, activation bytes.

Convention (the one torchvision, the paper's Table 3 and ``torch.utils.flop_counter`` share):
MAdds are the multiply-accumulates of convolutions and fully connected layers, i.e. exactly
half of what ``torch.utils.flop_counter.FlopCounterMode`` reports for the built model.
Element-wise work is not counted: batch norm (folded into the conv at inference), activations,
the SE scaling multiply, residual additions, biases and average pooling. Parameters count every
trainable tensor of the built model (BN weight and bias included, running statistics not).
Activation bytes are the op's output tensor at batch 1 in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .opkey import OpKey
from .spec import ArchSpec

BYTES_PER_VALUE = 4  # float32


@dataclass(frozen=True)
class LayerCost:
    layer: str  # module path in the built model
    kind: str  # conv / dwconv / se / linear / pool
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    madds: int
    params: int


def _conv(layer: str, kind: str, size: int | tuple[int, int], cin: int, cout: int, k: int, stride: int,
          groups: int = 1, bn: bool = True) -> LayerCost:
    h, w = (size, size) if isinstance(size, int) else size
    oh, ow = -(-h // stride), -(-w // stride)
    madds = oh * ow * k * k * (cin // groups) * cout
    params = k * k * (cin // groups) * cout + (2 * cout if bn else cout)
    return LayerCost(layer, kind, (cin, h, w), (cout, oh, ow), madds, params)


def op_layers(op: OpKey, prefix: str = "") -> list[LayerCost]:
    """The layers of one op with their costs; ``prefix`` is the op's module path."""
    p = f"{prefix}." if prefix else ""
    r = (op.resolution, op.in_width)  # height, width
    if op.operator == "conv":
        return [_conv(f"{p}0", "conv", r, op.in_channels, op.out_channels, op.kernel, op.stride)]
    if op.operator == "pool":
        return [LayerCost(prefix or "avgpool", "pool", (op.in_channels, *r), (op.in_channels, 1, 1), 0, 0)]
    if op.operator in ("upsample", "mul", "add"):  # element-wise: no MAdds, no parameters
        return [LayerCost(prefix or op.operator, op.operator, (op.in_channels, *r),
                          (op.out_channels, op.out_resolution, op.out_width), 0, 0)]
    if op.operator == "linear":
        return [LayerCost(prefix or "linear", "linear", (op.in_channels,), (op.out_channels,),
                          op.in_channels * op.out_channels, op.in_channels * op.out_channels + op.out_channels)]
    # bneck
    rows, j, exp = [], 0, op.expansion_channels
    if exp != op.in_channels:
        rows.append(_conv(f"{p}block.{j}.0", "conv", r, op.in_channels, exp, 1, 1))
        j += 1
    rows.append(_conv(f"{p}block.{j}.0", "dwconv", r, exp, exp, op.kernel, op.stride, groups=exp))
    j += 1
    out = (op.out_resolution, op.out_width)
    if op.se_channels:
        se = op.se_channels
        rows.append(LayerCost(f"{p}block.{j}", "se", (exp, *out), (exp, *out), 2 * exp * se,
                              2 * exp * se + se + exp))
        j += 1
    rows.append(_conv(f"{p}block.{j}.0", "conv", out, exp, op.out_channels, 1, 1))
    return rows


def _module_paths(spec: ArchSpec) -> list[str]:
    """Module path of each op of ``spec.op_keys()`` in the built model."""
    paths = ["features.0"] + [f"features.{i + 1}" for i in range(len(spec.blocks))]
    if spec.head.conv_channels is not None:
        paths.append(f"features.{len(spec.blocks) + 1}")
    paths.append("avgpool")
    if spec.head.hidden_channels is not None:
        paths.append("classifier.0")
    paths.append(f"classifier.{_classifier_index(spec)}")
    return paths


def _classifier_index(spec: ArchSpec) -> int:
    # [Linear, act, Dropout, Linear] with a hidden layer, [Dropout, Linear] without.
    return 3 if spec.head.hidden_channels is not None else 1


def describe(spec: ArchSpec) -> pd.DataFrame:
    """One row per layer: op index, module path, kind, shapes, MAdds, params, activation bytes.

    Totals are in ``df.attrs['totals']`` (``params``, ``madds``, ``activation_bytes``,
    ``peak_activation_bytes``) and from :func:`count_params` / :func:`count_madds`.
    """
    rows = []
    for index, (op, path) in enumerate(zip(spec.op_keys(), _module_paths(spec))):
        for layer in op_layers(op, path):
            out_values = 1
            for d in layer.out_shape:
                out_values *= d
            rows.append({
                "op": index, "op_key": op.to_str(), "layer": layer.layer, "kind": layer.kind,
                "input": "x".join(map(str, layer.in_shape)), "output": "x".join(map(str, layer.out_shape)),
                "madds": layer.madds, "params": layer.params, "activation_bytes": out_values * BYTES_PER_VALUE,
            })
    df = pd.DataFrame(rows)
    df.attrs["totals"] = {
        "params": int(df["params"].sum()),
        "madds": int(df["madds"].sum()),
        "activation_bytes": int(df["activation_bytes"].sum()),
        "peak_activation_bytes": int(df["activation_bytes"].max()),
    }
    return df


def op_cost(op: OpKey) -> tuple[int, int]:
    """(MAdds, params) of one op."""
    layers = op_layers(op)
    return sum(x.madds for x in layers), sum(x.params for x in layers)


def count_madds(spec: ArchSpec) -> int:
    return sum(op_cost(op)[0] for op in spec.op_keys())


def count_params(spec: ArchSpec) -> int:
    return sum(op_cost(op)[1] for op in spec.op_keys())
