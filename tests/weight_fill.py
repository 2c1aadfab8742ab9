"""Deterministic, closed-form tensor values for the golden weight fixtures.

Shared by ``tests/data/make_weight_fixtures.py`` (which fills torchvision's and timm's models
and records their logits) and ``tests/test_weights.py`` (which rebuilds the same state dict
from the recorded ``[key, shape]`` manifest). Every value is a function of the key and the
element index only, so no random generator, library model or binary file is needed.
"""

from __future__ import annotations

import math
import zlib

import torch

INPUT_SHAPE = (1, 3, 224, 224)


def _wave(key: str, n: int) -> torch.Tensor:
    """sin(0.37 * i + phase(key)) for i < n, computed in float64."""
    phase = float(zlib.crc32(key.encode("utf-8")) % 1000)
    return torch.sin(0.37 * torch.arange(n, dtype=torch.float64) + phase)


def fill_tensor(key: str, shape) -> torch.Tensor:
    """The fixture value of state-dict tensor ``key`` with ``shape``.

    * ``num_batches_tracked``: 0 (int64);
    * ``running_mean`` 0.1 s; ``running_var`` 0.01 (1 + 0.25 (1 + s)); any ``bias`` 0.1 s;
    * a 1-D ``weight`` (a BatchNorm scale) 0.1 (1 + 0.1 s);
    * a conv / linear ``weight`` s * sqrt(2 / fan_in), fan_in = prod(shape[1:]);

    where s = sin(0.37 i + crc32(key) mod 1000) over the flattened index i.

    The running variances are small (0.01 to 0.015, as in trained MobileNets, where many are
    far below 1) and the BN scales shrink by the same factor of 10 in standard deviation, so
    activations keep their size while the logits depend on the BN epsilon (1e-3 vs 1e-5)
    clearly: a fixture then fails if the epsilon is not set.
    """
    shape = tuple(int(d) for d in shape)
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    n = math.prod(shape)
    s = _wave(key, n)
    if key.endswith("running_mean"):
        v = 0.1 * s
    elif key.endswith("running_var"):
        v = 0.01 * (1.0 + 0.25 * (1.0 + s))
    elif key.endswith("bias"):
        v = 0.1 * s
    elif len(shape) == 1:
        v = 0.1 * (1.0 + 0.1 * s)
    else:
        v = s * math.sqrt(2.0 / math.prod(shape[1:]))
    return v.reshape(shape).to(torch.float32)


def fill_state_dict(manifest) -> dict[str, torch.Tensor]:
    """A state dict from a ``[[key, shape], ...]`` manifest, in manifest order."""
    return {key: fill_tensor(key, shape) for key, shape in manifest}


def make_input() -> torch.Tensor:
    """The fixture input: 0.5 sin(0.01 i) over a 1x3x224x224 tensor, float32."""
    n = math.prod(INPUT_SHAPE)
    return (0.5 * torch.sin(0.01 * torch.arange(n, dtype=torch.float64))).reshape(INPUT_SHAPE).to(torch.float32)
