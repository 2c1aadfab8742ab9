"""Load torchvision's and timm's MobileNetV3 state dicts into a model built from a spec.

:func:`import_state_dict` is a pure key/shape mapping: it never imports torchvision or timm.

* ``layout="torchvision"``: :func:`search_spaces.build` uses torchvision's MobileNetV3 module
  names, so keys map one to one (``features.0.0.weight`` -> ``features.0.0.weight``).
* ``layout="timm"``: timm's ``MobileNetV3`` (and ``EfficientNet``-class MobileNetV2 / MnasNet)
  names are translated. The map is derived from the built model's structure (which blocks have
  an expansion layer or SE, whether the classifier has a hidden layer), not from a table of V3
  layers, so any width multiplier works:

  - ``conv_stem``, ``bn1`` -> ``features.0.0``, ``features.0.1``;
  - the n-th timm block ``blocks.S.I`` (stages walked in order) -> ``features.n``:
    DepthwiseSeparableConv ``conv_dw``/``bn1``, ``se.conv_reduce``/``se.conv_expand``,
    ``conv_pw``/``bn2`` -> ``block.0.{0,1}``, ``block.1.fc1``/``fc2``, ``block.(1|2).{0,1}``;
    InvertedResidual ``conv_pw``/``bn1``, ``conv_dw``/``bn2``, ``se.*``, ``conv_pwl``/``bn3`` ->
    ``block.0``, ``block.1``, ``block.2.fc1``/``fc2``, ``block.(2|3)``;
    ConvBnAct ``conv``/``bn1`` -> a ``conv`` block's ``block.0``, or (V3's last stage) the
    head's 1x1 conv, the last entry of ``features``;
  - ``conv_head`` (a 1x1 Conv2d with bias, e.g. ``[1280, 960, 1, 1]``) -> ``classifier.0``, the
    hidden Linear (reshaped to ``[1280, 960]``); in models without a hidden layer (MobileNetV2,
    MnasNet) ``conv_head``, ``bn2`` -> the head's 1x1 conv instead;
  - ``classifier`` -> the last Linear of ``classifier``.

Loading is strict: every model tensor must be filled and every checkpoint tensor used (only
``num_batches_tracked`` may be absent from the checkpoint; the model's value is then kept).
Any misfit raises a one-line :class:`ValueError` naming the first offending key and both
shapes, before the model is touched.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch
from torch import nn

LAYOUTS = ("torchvision", "timm")

# BatchNorm epsilon of each layout's MobileNetV3: torchvision (like TF) uses 1e-3; timm's
# mobilenetv3_* use PyTorch's default 1e-5 (only timm's tf_* ports use 1e-3, and those also
# use TF "same" padding, which this builder does not reproduce).
BN_EPS = {"torchvision": 1e-3, "timm": 1e-5}

_TIMM_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.(.+)$")


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


def _conv_norm_map(src: str, dst: str, conv: str, bn: str) -> dict[str, str]:
    """timm ``src.conv`` / ``src.bn`` -> our ``dst.0`` / ``dst.1`` (a ConvNormAct)."""
    return {f"{dst}.0": f"{src}{conv}", f"{dst}.1": f"{src}{bn}"}


def _unit_map(unit: nn.Module, ours: str, theirs: str) -> dict[str, str]:
    """Module-prefix map (our prefix -> timm prefix) of one block or of the head conv."""
    from .builder import ConvBlock, ConvNormAct, InvertedResidual, SqueezeExcitation

    if isinstance(unit, InvertedResidual):
        layers = list(unit.block)
        convs = [i for i, m in enumerate(layers) if isinstance(m, ConvNormAct)]
        se = [i for i, m in enumerate(layers) if isinstance(m, SqueezeExcitation)]
        out: dict[str, str] = {}
        if len(convs) == 3:  # timm InvertedResidual: conv_pw/bn1, conv_dw/bn2, se, conv_pwl/bn3
            expand, dw, project = convs
            out.update(_conv_norm_map(f"{theirs}.", f"{ours}.block.{expand}", "conv_pw", "bn1"))
            out.update(_conv_norm_map(f"{theirs}.", f"{ours}.block.{dw}", "conv_dw", "bn2"))
            out.update(_conv_norm_map(f"{theirs}.", f"{ours}.block.{project}", "conv_pwl", "bn3"))
        else:  # timm DepthwiseSeparableConv: conv_dw/bn1, se, conv_pw/bn2
            dw, project = convs
            out.update(_conv_norm_map(f"{theirs}.", f"{ours}.block.{dw}", "conv_dw", "bn1"))
            out.update(_conv_norm_map(f"{theirs}.", f"{ours}.block.{project}", "conv_pw", "bn2"))
        for i in se:
            out[f"{ours}.block.{i}.fc1"] = f"{theirs}.se.conv_reduce"
            out[f"{ours}.block.{i}.fc2"] = f"{theirs}.se.conv_expand"
        return out
    if isinstance(unit, ConvBlock):
        return _conv_norm_map(f"{theirs}.", f"{ours}.block.0", "conv", "bn1")
    if isinstance(unit, ConvNormAct):  # the head's 1x1 conv, timm's last-stage ConvBnAct
        return _conv_norm_map(f"{theirs}.", ours, "conv", "bn1")
    raise TypeError(f"model: {ours} is a {type(unit).__name__}, which has no timm equivalent")


def _timm_key_map(model: nn.Module, state_dict: Mapping[str, Any]) -> tuple[dict[str, str], str]:
    """Our state-dict key -> timm key, for every tensor of ``model``; plus a note on block counts."""
    from .builder import ConvNormAct

    features = list(model.features)
    linears = [i for i, m in enumerate(model.classifier) if isinstance(m, nn.Linear)]
    head_conv = len(features) > 1 and isinstance(features[-1], ConvNormAct)
    hidden = len(linears) == 2
    prefixes: dict[str, str] = {"features.0.0": "conv_stem", "features.0.1": "bn1"}

    # Our units in timm's block order. With a hidden Linear (MobileNetV3) timm's last stage is
    # the head's 1x1 ConvBnAct and conv_head is the hidden Linear; without one (MobileNetV2,
    # MnasNet) the head conv is timm's conv_head + bn2.
    units = list(range(1, len(features) if hidden or not head_conv else len(features) - 1))
    theirs = sorted({(int(m.group(1)), int(m.group(2))) for k in state_dict
                     if isinstance(k, str) and (m := _TIMM_BLOCK.match(k))})
    note = f"the checkpoint has {len(theirs)} blocks, the model {len(units)}"
    for n, index in enumerate(units):
        their = f"blocks.{theirs[n][0]}.{theirs[n][1]}" if n < len(theirs) else f"blocks.?.{n}"
        prefixes.update(_unit_map(features[index], f"features.{index}", their))
    if head_conv and not hidden:
        prefixes.update({f"features.{len(features) - 1}.0": "conv_head", f"features.{len(features) - 1}.1": "bn2"})
    if hidden:
        prefixes[f"classifier.{linears[0]}"] = "conv_head"
    if linears:
        prefixes[f"classifier.{linears[-1]}"] = "classifier"

    key_map: dict[str, str] = {}
    for key in model.state_dict():
        module, _, name = key.rpartition(".")
        if module not in prefixes:  # pragma: no cover - every builder module is mapped above
            raise TypeError(f"model: {key} has no timm equivalent")
        key_map[key] = f"{prefixes[module]}.{name}"
    return key_map, note


def _check_arguments(model, state_dict, layout: str) -> None:
    """One error for a layout, a model or a state dict :func:`import_state_dict` cannot take."""
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise ValueError(f"layout: {layout!r} is not one of {', '.join(LAYOUTS)}")
    if not (isinstance(model, nn.Module) and isinstance(getattr(model, "features", None), nn.Sequential)
            and isinstance(getattr(model, "classifier", None), nn.Sequential)):
        raise TypeError(f"model: expected a network from search_spaces.build(spec), got {type(model).__name__}")
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"state_dict: expected a mapping of tensor names to tensors, got {type(state_dict).__name__}")
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise ValueError(f"state_dict: key {key!r} is not a string")
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{key}: checkpoint value is a {type(value).__name__}, not a tensor")


def _matched_tensors(own: dict, state_dict: Mapping[str, Any], key_map: dict, note: str) -> dict:
    """The model's tensors (``own``) filled from the checkpoint through ``key_map`` (model key ->
    checkpoint key); a missing, misshapen or unused checkpoint tensor is a one-line ValueError."""
    loaded: dict[str, torch.Tensor] = {}
    for key, target in own.items():
        source = key_map[key]
        via = "" if source == key else f" (timm key {source})"
        if source not in state_dict:
            if key.endswith("num_batches_tracked"):
                loaded[key] = target
                continue
            extra = f"; {note}" if note and ".?." in source else ""
            raise ValueError(f"{key}: missing from the checkpoint{via}{extra}")
        value = state_dict[source]
        if _shape(value) != _shape(target):
            # timm's conv_head is a 1x1 Conv2d; ours is the equivalent Linear.
            if value.dim() == 4 and target.dim() == 2 and _shape(value) == (*_shape(target), 1, 1):
                value = value.reshape(target.shape)
            else:
                raise ValueError(f"{key}: checkpoint shape {_shape(value)} does not fit the model's "
                                 f"{_shape(target)}{via}")
        loaded[key] = value
    used = set(key_map.values())
    for source in state_dict:
        if source not in used:
            raise ValueError(f"{source}: unexpected key in the checkpoint; the model has no tensor for it"
                             + (f" ({note})" if note else ""))
    return loaded


def import_state_dict(model: nn.Module, state_dict: Mapping[str, Any], layout: str = "torchvision") -> nn.Module:
    """Load a torchvision or timm MobileNetV3 state dict into ``model``; returns ``model``.

    ``model`` is a network from :func:`search_spaces.build` of the spec matching the checkpoint
    (e.g. ``reference("mobilenet_v3_large", 0.75)`` for timm's ``mobilenetv3_large_075``);
    ``layout`` is ``"torchvision"`` (keys map one to one) or ``"timm"`` (keys are translated,
    see the module docstring). In eval mode the model then computes what the source model does.

    BatchNorm epsilon: torchvision's MobileNetV3 uses ``eps=1e-3`` and timm's ``mobilenetv3_*``
    PyTorch's default ``1e-5``. The epsilon is not stored in a state dict, so on success this
    function sets ``eps`` of every ``BatchNorm2d`` of ``model`` to the layout's value
    (``BN_EPS[layout]``); without that the outputs would differ.

    Loading is strict: every model tensor must come from the checkpoint (only
    ``num_batches_tracked`` may be absent; the model's own counter is then kept) and every
    checkpoint tensor must be used. A misfit raises a one-line ``ValueError`` naming the first
    offending key, e.g. ``features.4.block.2.fc1.weight: checkpoint shape (32, 72, 1, 1) does not
    fit the model's (24, 72, 1, 1)``; the model is left unchanged then.
    """
    _check_arguments(model, state_dict, layout)
    own = model.state_dict()
    if layout == "torchvision":
        key_map, note = {k: k for k in own}, ""
    else:
        key_map, note = _timm_key_map(model, state_dict)
    loaded = _matched_tensors(own, state_dict, key_map, note)
    model.load_state_dict(loaded, strict=True)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = BN_EPS[layout]
    return model
