"""The ``pixel1`` target: a per-op cost model standing in for the paper's Pixel-1 phone.

The paper measured its networks on one large core of a Google Pixel 1 (TFLite, float, batch 1).
We have no phone, so this module models that device from the figures the paper published, and
from nothing else: Table 3's P-1 column for the rows with a reference spec and Table 5's P-1
column (the h-swish ablation). The published figures live below as data, with their source.
Other published Pixel-1 numbers (MnasNet's, ProxylessNAS's) come from older runtimes and are
kept out. Nothing here is a measurement, and the provenance says so.

Table 3's "Mnas-small" row is not fitted (:data:`NOT_FITTED`): the paper's 65.1M-MAdds network
is MnasNet's first small model, whose architecture was never released; the public
``mnasnet_small`` (68.3M MAdds) is a different network, so its published 20.3 ms says nothing
exact about any spec we have. Its prediction is reported beside the fit, never scored.

Model. An op's latency is a non-negative linear function of five counts taken from the op key
alone (:func:`op_features`; layers as in :func:`search_spaces.cost.op_layers`):

``dense_mmadds``
    MAdds (millions) of GEMM-like layers: 1x1 and regular convs, linear layers, SE's two FCs.
``depthwise_mmadds``
    MAdds of depthwise convs, plus one MAdd per input element of every global average pool
    (the head's pool and SE's squeeze): both are memory-bound per-channel reductions.
``elementwise_mpasses``
    Millions of element passes of the element-wise ops TFLite does not fuse into the conv:
    h-swish 1 pass per activated element, swish 2 (sigmoid + multiply), a hard-sigmoid SE gate
    1 and a sigmoid gate 2 per gate element, SE's excite multiply 1 per element, a residual add
    1 per output element. ReLU and ReLU6 are fused (0 passes). The dense heads' ops
    (:mod:`search_spaces.heads`): a sigmoid 2 per element, ``mul`` / ``add`` / ``upsample``
    (bilinear) 1 per output element, priors like the residual add's.
``se_blocks``
    Squeeze-and-excite blocks (a fixed cost each).
``layers``
    Conv, depthwise, linear and pool layers (a fixed per-layer dispatch cost).

Fit, deterministic and in two stages (:func:`fit`), using :func:`scipy.optimize.nnls`:

1. The element-pass coefficient comes from Table 5 alone. Its four rows differ only in where
   h-swish is used, so their differences to Table 5's own V3-Large row (51.4 ms) depend on this
   one coefficient (least squares through the origin, non-negative). Pricing residual adds and
   SE's multiply with the same per-pass cost is a prior: the published figures cannot tell those
   element-wise ops apart from h-swish.
2. The other four coefficients: NNLS on Table 3's seven fitted networks, in relative terms (each
   row divided by its published latency), after subtracting the element-pass cost of stage 1.

Honest errors. Leave-one-out (:func:`leave_one_out`) refits without one network and predicts
it; but V3-Large 0.75 left out keeps V3-Large 1.0 in the fit, a sibling that differs only in
width, which flatters the error. Leave-one-family-out (:func:`leave_one_family_out`) leaves out
every Table 3 width of the network at once (V3-Large 1.0 and 0.75 together; V3-Small; V2 1.0
and 0.35) and is the figure to quote for a network family the model has never seen.

Calibration domain (:meth:`ModelTable.extrapolations`): the published networks have 1x1, 3x3
and 5x5 kernels, regular convolutions only in the stem and as 1x1 layers, and 224x224 inputs.
A prediction with 7x7 kernels, a regular k x k convolution after the stem, an input outside
128-256 pixels (feature maps within a factor of about 1.75 of those the fit saw), or a dense
head's element-wise ops (priced by priors only) is an extrapolation, and ``latency.predict``
says so.

The V3-Large duplicate (Table 3: 51 ms, Table 5: 51.4 ms for the same network) is resolved by
role: Table 3 compares networks, so its 51 ms sets the absolute level; Table 5 is an ablation
measured together, so only its differences to its own 51.4 ms baseline enter the fit. The
0.4 ms (0.8 %) between the two tables is then a session offset that never biases the
h-swish cost. Both figures are still reported against the prediction.

``network_overhead_ms`` is 0: every published network has 37-54 layers, so a per-network
constant cannot be told from the per-layer one, and only per-op costs reach a search.
"""

from __future__ import annotations

import functools
import json
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from jobs import atomic_write_text
from search_spaces import ArchSpec, OpKey, OpKeyError, reference
from search_spaces.cost import op_layers
from search_spaces.transforms import hswish_from, with_nonlinearity

from .table import COLUMNS, LatencyTable, MeasuredTable, key_columns, now_iso

SOURCE = ("calibrated from published measurements (Howard et al. 2019, Tables 3 and 5), not measured")
PAPER = "Howard et al., 'Searching for MobileNetV3', ICCV 2019"

FEATURES = ("dense_mmadds", "depthwise_mmadds", "elementwise_mpasses", "se_blocks", "layers")
COEFFICIENT_UNITS = {
    "dense_mmadds": "ms per million MAdds (1x1 / regular convs, linear layers, SE FCs)",
    "depthwise_mmadds": "ms per million MAdds (depthwise convs, global average pools)",
    "elementwise_mpasses": "ms per million element passes (h-swish, swish, SE gate and multiply, residual add)",
    "se_blocks": "ms per squeeze-and-excite block",
    "layers": "ms per conv / depthwise / linear / pool layer",
}
# Element passes per activated element. ReLU / ReLU6 are fused into the conv by TFLite.
ACTIVATION_PASSES = {"relu": 0, "relu6": 0, "none": 0, "hswish": 1, "swish": 2, "sigmoid": 2}
# Element passes per output element of the dense heads' element-wise ops (search_spaces.heads):
# priors like the residual add's 1 pass; a bilinear resize reads four inputs per output but is
# priced as one pass (the published figures say nothing about resizes). Each is also a layer.
ELEMENTWISE_OP_PASSES = {"upsample": 1, "mul": 1, "add": 1}
GATE_PASSES = {"hsigmoid": 1, "sigmoid": 2, "none": 0}
# The calibration domain (see the module docstring and ModelTable.extrapolations).
DOMAIN_KERNELS = (1, 3, 5)
DOMAIN_INPUT_PIXELS = (128, 256)
_ELEMENTWISE = FEATURES.index("elementwise_mpasses")
_LEVEL = tuple(i for i in range(len(FEATURES)) if i != _ELEMENTWISE)  # fitted on Table 3


# --------------------------------------------------------------------------- published figures
@dataclass(frozen=True)
class PublishedPoint:
    """One published Pixel-1 latency: a network (reference name, width, nonlinearity variant)."""

    label: str
    table: str  # "Table 3" or "Table 5"
    p1_ms: float
    reference: str
    width: float = 1.0
    variant: str = "default"  # default / relu / hswish@N

    @property
    def network(self) -> tuple[str, float, str]:
        return (self.reference, self.width, self.variant)

    @property
    def family(self) -> str:
        """The network family: every width and variant of one reference network."""
        return self.reference

    def spec(self) -> ArchSpec:
        spec = reference(self.reference, self.width)
        if self.variant == "default":
            return spec
        if self.variant == "relu":
            return with_nonlinearity(spec, "relu")
        if self.variant.startswith("hswish@"):
            return hswish_from(spec, channels=int(self.variant.split("@")[1]))
        raise ValueError(f"variant: {self.variant!r} is not default, relu or hswish@N")


# Howard et al. 2019, Table 3 ("Floating point performance on the Pixel family of phones"),
# column P-1, rows whose network we have exactly (Proxyless has no spec; Mnas-small: NOT_FITTED).
TABLE3_P1 = (
    PublishedPoint("V3-Large 1.0", "Table 3", 51.0, "mobilenet_v3_large", 1.0),
    PublishedPoint("V3-Large 0.75", "Table 3", 39.0, "mobilenet_v3_large", 0.75),
    PublishedPoint("MnasNet-A1", "Table 3", 71.0, "mnasnet_a1", 1.0),
    PublishedPoint("V2 1.0", "Table 3", 64.0, "mobilenet_v2", 1.0),
    PublishedPoint("V3-Small 1.0", "Table 3", 15.8, "mobilenet_v3_small", 1.0),
    PublishedPoint("V3-Small 0.75", "Table 3", 12.8, "mobilenet_v3_small", 0.75),
    PublishedPoint("V2 0.35", "Table 3", 16.6, "mobilenet_v2", 0.35),
)
# Table 3, column P-1, rows published for a network we do not have: reported, never fitted or scored.
NOT_FITTED = (PublishedPoint("Mnas-small", "Table 3", 20.3, "mnasnet_small", 1.0),)
NOT_FITTED_REASON = {
    "Mnas-small": ("the paper's Mnas-small (65.1M MAdds) is MnasNet's first small model, whose architecture was "
                   "never released; the public mnasnet_small (68.3M MAdds) is a different network"),
}
# Howard et al. 2019, Table 5 ("Effect of non-linearities on MobileNetV3-Large"), column P-1
# (optimized h-swish). "h-swish @N": h-swish from the first layer with N channels on.
TABLE5_P1 = (
    PublishedPoint("V3-Large 1.0 (Table 5)", "Table 5", 51.4, "mobilenet_v3_large", 1.0, "default"),
    PublishedPoint("ReLU", "Table 5", 50.5, "mobilenet_v3_large", 1.0, "relu"),
    PublishedPoint("h-swish @16", "Table 5", 53.5, "mobilenet_v3_large", 1.0, "hswish@16"),
    PublishedPoint("h-swish @112", "Table 5", 51.0, "mobilenet_v3_large", 1.0, "hswish@112"),
)
PUBLISHED = TABLE3_P1 + TABLE5_P1
TABLE5_BASELINE = TABLE5_P1[0]


# --------------------------------------------------------------------------- features
def op_features(op: OpKey) -> np.ndarray:
    """The five counts of :data:`FEATURES` for one op (see the module docstring)."""
    for name in ("resolution", "in_channels", "out_channels", "kernel", "stride"):
        value = getattr(op, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise OpKeyError(f"{name}: {value!r} is not a positive integer (op {op.to_str()})")
    dense = depthwise = passes = 0.0
    se_blocks = layers = 0
    for layer in op_layers(op):
        if layer.kind in ("conv", "linear"):
            dense += layer.madds
            layers += 1
        elif layer.kind == "dwconv":
            depthwise += layer.madds
            layers += 1
        elif layer.kind == "pool":
            depthwise += float(np.prod(layer.in_shape))
            layers += 1
        elif layer.kind in ELEMENTWISE_OP_PASSES:
            passes += float(np.prod(layer.out_shape)) * ELEMENTWISE_OP_PASSES[layer.kind]
            layers += 1
        elif layer.kind == "se":
            elements = float(np.prod(layer.in_shape))
            dense += layer.madds
            depthwise += elements  # squeeze: a global average pool
            passes += elements + op.expansion_channels * GATE_PASSES[op.se_gate]  # excite multiply, gate
            se_blocks += 1
    out_pixels = op.out_resolution * op.out_width
    if op.operator == "bneck":
        exp = op.expansion_channels
        activated = (op.resolution * op.in_width * exp if exp != op.in_channels else 0) + out_pixels * exp
    elif op.operator == "conv":
        activated = out_pixels * op.out_channels
    elif op.operator == "linear":
        activated = op.out_channels
    else:
        activated = 0
    passes += activated * ACTIVATION_PASSES[op.nonlinearity]
    if op.residual:
        passes += out_pixels * op.out_channels
    return np.array([dense / 1e6, depthwise / 1e6, passes / 1e6, se_blocks, layers], dtype=float)


def spec_features(spec: ArchSpec) -> np.ndarray:
    """Sum of :func:`op_features` over the ops of ``spec``."""
    return np.sum([op_features(op) for op in spec.op_keys()], axis=0)


# --------------------------------------------------------------------------- fit
@dataclass(frozen=True)
class Calibration:
    """Fitted coefficients (ms per unit of each feature) and the points they were fitted on."""

    coefficients: tuple[float, ...]
    excluded: tuple[str, ...] = ()
    fitted_on: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, float]:
        return dict(zip(FEATURES, self.coefficients))

    def predict_ms(self, spec_or_features: ArchSpec | np.ndarray) -> float:
        x = spec_features(spec_or_features) if isinstance(spec_or_features, ArchSpec) else spec_or_features
        return float(np.dot(x, self.coefficients))


@functools.lru_cache(maxsize=None)
def _point_features(point: PublishedPoint) -> np.ndarray:
    features = spec_features(point.spec())
    features.setflags(write=False)  # cached: shared by every fit
    return features


def fit(exclude: Iterable[str] = (), points: Sequence[PublishedPoint] = PUBLISHED) -> Calibration:
    """Fit the coefficients on ``points`` minus those labelled in ``exclude`` (two stages, see module doc)."""
    excluded = tuple(exclude)
    unknown = [x for x in excluded if x not in {p.label for p in points}]
    if unknown:
        raise ValueError(f"exclude: {unknown[0]!r} is not a published point label")
    from scipy.optimize import nnls

    used = [p for p in points if p.label not in excluded]
    baseline = next((p for p in points if p.table == "Table 5" and p.variant == "default"), None)
    variants = [p for p in used if p.table == "Table 5" and p.variant != "default"]
    if baseline is None or not variants:
        raise ValueError("fit: Table 5's baseline and at least one Table 5 variant are needed to fix the "
                         "element-wise (h-swish) coefficient")
    # Stage 1: Table 5's differences to its own baseline pin the element-pass cost.
    base = _point_features(baseline)
    diffs = np.array([_point_features(p) - base for p in variants])
    if np.abs(np.delete(diffs, _ELEMENTWISE, axis=1)).max() > 1e-9:
        raise ValueError("fit: Table 5 variants must differ from their baseline only in element-wise passes")
    deltas = np.array([p.p1_ms - baseline.p1_ms for p in variants])
    elementwise = float(nnls(diffs[:, [_ELEMENTWISE]], deltas)[0][0])
    # Stage 2: Table 3 sets the level, relative least squares, non-negative.
    level = [p for p in used if p.table == "Table 3"]
    if len(level) < len(_LEVEL):
        raise ValueError(f"fit: {len(level)} Table 3 points cannot fix {len(_LEVEL)} coefficients")
    X = np.array([_point_features(p) for p in level])
    y = np.array([p.p1_ms for p in level])
    rhs = y - elementwise * X[:, _ELEMENTWISE]
    solution = nnls(X[:, _LEVEL] / y[:, None], rhs / y)[0]
    coefficients = np.zeros(len(FEATURES))
    coefficients[list(_LEVEL)] = solution
    coefficients[_ELEMENTWISE] = elementwise
    return Calibration(tuple(float(c) for c in coefficients), excluded, tuple(p.label for p in level + variants))


def loo_exclusions(point: PublishedPoint, points: Sequence[PublishedPoint] = PUBLISHED) -> tuple[str, ...]:
    """What leaving ``point``'s network out removes from the fit.

    Every absolute figure of the same network is removed. Table 5's baseline (51.4 ms) enters
    the fit only as the zero of the differences, which say nothing about the absolute level, so
    it stays; leaving V3-Large 1.0 out removes its Table 3 row (51 ms) for both of its figures.
    """
    return tuple(p.label for p in points
                 if p.network == point.network and not (p.table == "Table 5" and p.variant == "default"))


def lofo_exclusions(point: PublishedPoint, points: Sequence[PublishedPoint] = PUBLISHED) -> tuple[str, ...]:
    """What leaving ``point``'s whole family out removes from the fit: every Table 3 figure of its
    reference network (all widths), plus what :func:`loo_exclusions` removes.

    Table 5's other variants stay: they enter only as differences to their own baseline (the
    h-swish cost, which no other published figure identifies) and carry no absolute level.
    """
    own = set(loo_exclusions(point, points))
    return tuple(p.label for p in points
                 if p.label in own or (p.table == "Table 3" and p.family == point.family))


def leave_one_out(points: Sequence[PublishedPoint] = PUBLISHED) -> list[float]:
    """For each point: its prediction by a fit that excludes its network (see :func:`loo_exclusions`)."""
    return [fit(loo_exclusions(p, points), points).predict_ms(_point_features(p)) for p in points]


def leave_one_family_out(points: Sequence[PublishedPoint] = PUBLISHED) -> list[float]:
    """For each point: its prediction by a fit that excludes its network's family (:func:`lofo_exclusions`)."""
    return [fit(lofo_exclusions(p, points), points).predict_ms(_point_features(p)) for p in points]


def loo_coefficient_ranges(points: Sequence[PublishedPoint] = PUBLISHED) -> dict[str, tuple[float, float]]:
    """(min, max) of each coefficient over the leave-one-out fits: how well the data pin it."""
    fits = np.array([fit(loo_exclusions(p, points), points).coefficients for p in points])
    return {name: (float(lo), float(hi)) for name, lo, hi in zip(FEATURES, fits.min(axis=0), fits.max(axis=0))}


# --------------------------------------------------------------------------- the table
class ModelTable(LatencyTable):
    """Op key -> modelled latency (ms): ``op_features(key) @ coefficients``, cached per key.

    Every op key has a row (nothing is ever missing); rows are computed on first lookup.
    """

    def __init__(self, name: str, calibration: Calibration, provenance: dict, network_overhead_ms: float = 0.0):
        coefficients = np.asarray(calibration.coefficients, dtype=float)
        for feature in ("dense_mmadds", "depthwise_mmadds"):
            if not coefficients[FEATURES.index(feature)] > 0:
                raise ValueError(f"coefficients.{feature}: must be positive so every op costs something")
        self.name = name
        self.calibration = calibration
        self.coefficients = coefficients
        self.provenance = provenance
        self.network_overhead_ms = float(network_overhead_ms)
        self._cache: dict[OpKey, float] = {}

    def latency_ms(self, key: OpKey) -> float:
        value = self._cache.get(key)
        if value is None:
            value = float(op_features(key) @ self.coefficients)
            self._cache[key] = value
        return value

    def lookup_ms(self, keys: Sequence[OpKey]) -> np.ndarray:
        cache = self._cache
        values = [cache.get(k) for k in keys]
        if None in values:
            values = [self.latency_ms(k) if v is None else v for k, v in zip(keys, values)]
        return np.array(values, dtype=float)

    def predict_ms(self, spec: ArchSpec) -> float:
        """Whole-network latency: the sum of the op rows plus ``network_overhead_ms``."""
        return float(self.lookup_ms(spec.op_keys()).sum()) + self.network_overhead_ms

    def breakdown(self, key: OpKey) -> dict[str, float]:
        """The latency of ``key`` split by feature (ms)."""
        return dict(zip(FEATURES, (op_features(key) * self.coefficients).tolist()))

    def extrapolations(self, keys: Sequence[OpKey]) -> list[tuple[str, tuple[int, ...]]]:
        """Where the ops of one network (``keys``, in order, the stem first) leave the calibration
        domain: (reason, indices of the ops concerned) for each way they do; [] inside it."""
        out = []
        convs = ("conv", "bneck")
        odd_kernels = sorted({k.kernel for k in keys if k.operator in convs and k.kernel not in DOMAIN_KERNELS})
        for kernel in odd_kernels:
            ops = tuple(i for i, k in enumerate(keys) if k.operator in convs and k.kernel == kernel)
            out.append((f"{kernel}x{kernel} kernels (op {_ops(ops)}): the published networks have 1x1, 3x3 and "
                        "5x5 kernels only", ops))
        regular = tuple(i for i, k in enumerate(keys) if i > 0 and k.operator == "conv" and k.kernel > 1)
        if regular:
            sizes = "/".join(f"{k}x{k}" for k in sorted({keys[i].kernel for i in regular}))
            out.append((f"regular {sizes} convolutions after the stem (op {_ops(regular)}): the published networks "
                        "have regular convolutions only in the stem and as 1x1 layers", regular))
        if keys:
            low, high = DOMAIN_INPUT_PIXELS
            first = keys[0]
            size = f"{first.resolution}x{first.in_width}"
            if not all(low <= side <= high for side in (first.resolution, first.in_width)):
                out.append((f"input {size} outside {low}-{high} pixels: the published networks are all at 224x224",
                            tuple(range(len(keys)))))
        heads = tuple(i for i, k in enumerate(keys) if k.operator in ELEMENTWISE_OP_PASSES)
        if heads:
            out.append((f"dense-head element-wise ops (op {_ops(heads)}): priced by priors, no published Pixel-1 "
                        "figure has them", heads))
        return out

    def rows_for(self, keys: Iterable[OpKey]) -> pd.DataFrame:
        """One row per distinct key, in latency.table's CSV columns (modelled: count 0)."""
        keys = list(dict.fromkeys(keys))
        ms = self.lookup_ms(keys)
        data = [{"op_key": k.to_str(), "median_ms": v, "mean_ms": v, "iqr_ms": 0.0, "count": 0, "overhead_ms": 0.0,
                 **key_columns(k)} for k, v in zip(keys, ms)]
        return pd.DataFrame(data, columns=COLUMNS)

    def write_table(self, path: str | Path, keys: Iterable[OpKey]) -> Path:
        """Materialise the rows of ``keys`` as ``path`` (latency.table's CSV columns) and its provenance sidecar.

        ``count`` is 0 and ``iqr_ms`` 0: the rows are modelled, not measured. The files load
        with :func:`latency.table.load_table` and give the same lookups.
        """
        path = Path(path)
        atomic_write_text(MeasuredTable.provenance_path(path),
                          json.dumps(self.provenance, indent=2, sort_keys=True) + "\n")
        atomic_write_text(path, self.rows_for(keys).to_csv(index=False))
        return path


def _ops(indices: Sequence[int]) -> str:
    shown = ", ".join(map(str, indices[:8]))
    return shown + (f" and {len(indices) - 8} more" if len(indices) > 8 else "")


def _provenance(calibration: Calibration) -> dict:
    features = {p.label: _point_features(p) for p in PUBLISHED}
    points = []
    for p in PUBLISHED:
        predicted = calibration.predict_ms(features[p.label])
        points.append({"label": p.label, "table": p.table, "published_ms": p.p1_ms, "predicted_ms": round(predicted, 4),
                       "residual_ms": round(predicted - p.p1_ms, 4),
                       "error_pct": round(100 * (predicted / p.p1_ms - 1), 3)})
    return {
        "kind": "model",
        "backend": "pixel1-model",
        "source": SOURCE,
        "measured": False,
        "paper": PAPER,
        "device": "Google Pixel 1, one large core (modelled, not measured)",
        "runtime": "TFLite float as used by the paper (modelled)",
        "threads": 1,
        "batch": 1,
        "protocol": "pixel1-model v2: per-op non-negative linear cost model, two-stage NNLS fit",
        "model": "latency(op) = sum_f coefficient[f] * feature[f](op); network = sum over op_keys + overhead",
        "features": list(FEATURES),
        "coefficients": {k: round(v, 6) for k, v in calibration.as_dict().items()},
        "coefficient_units": COEFFICIENT_UNITS,
        "network_overhead_ms": 0.0,
        "fit": {"points": points,
                "mape_pct": round(float(np.mean([abs(x["error_pct"]) for x in points])), 3)},
        "priors": [
            "one per-element-pass cost for h-swish, swish, SE gate/multiply and residual add, pinned by Table 5",
            "swish and sigmoid cost 2 passes (not identified by the published figures), ReLU/ReLU6 are fused (0)",
            "network_overhead_ms = 0 (not separable from the per-layer cost)",
        ],
        "duplicate_v3_large": ("Table 3 (51 ms) sets the absolute level; Table 5 (51.4 ms) is used only as the "
                               "baseline of its own differences"),
        "published_points": [{"label": p.label, "table": p.table, "p1_ms": p.p1_ms} for p in PUBLISHED],
        "not_fitted": [{"label": p.label, "table": p.table, "p1_ms": p.p1_ms, "reason": NOT_FITTED_REASON[p.label]}
                       for p in NOT_FITTED],
        "domain": {"kernels": list(DOMAIN_KERNELS), "input_pixels": list(DOMAIN_INPUT_PIXELS),
                   "regular_convolutions": "stem and 1x1 only"},
        "date": now_iso(),
    }


@functools.lru_cache(maxsize=1)
def pixel1_table() -> ModelTable:
    """The ``pixel1`` target's table, fitted on first use (milliseconds)."""
    calibration = fit()
    return ModelTable("pixel1", calibration, _provenance(calibration))


def write_table(path: str | Path, keys: Iterable[OpKey]) -> Path:
    """Materialise ``keys`` of :func:`pixel1_table` as a CSV + provenance sidecar."""
    return pixel1_table().write_table(path, keys)
