"""Regenerate the golden fixtures ``tests/data/weights_<layout>_<model>.json``.

Needs the real torchvision and timm importable (they are not project dependencies; the tests
never run this script). For example, with both unpacked under /tmp::

    PYTHONPATH=/tmp/timm_pkg:/tmp/tv_pkg python tests/data/make_weight_fixtures.py

For each library model (``num_classes=10``) it fills every state-dict tensor with
``tests/weight_fill.fill_tensor`` (a closed-form function of the key and element index), runs
an eval-mode forward pass on ``tests/weight_fill.make_input()`` and writes JSON holding the
``[key, shape]`` manifest in state-dict order, the library's BatchNorm eps and the 10 logits.
``tests/test_weights.py`` rebuilds the same state dict from the manifest, imports it with
``search_spaces.import_state_dict`` and compares the logits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, for weight_fill

from weight_fill import INPUT_SHAPE, fill_tensor, make_input  # noqa: E402

NUM_CLASSES = 10

# (layout, library model name, reference name, width)
FIXTURES = (
    ("torchvision", "mobilenet_v3_large", "mobilenet_v3_large", 1.0),
    ("torchvision", "mobilenet_v3_small", "mobilenet_v3_small", 1.0),
    ("timm", "mobilenetv3_large_100", "mobilenet_v3_large", 1.0),
    ("timm", "mobilenetv3_small_075", "mobilenet_v3_small", 0.75),
)


def library_model(layout: str, name: str) -> tuple[torch.nn.Module, str]:
    if layout == "torchvision":
        import torchvision.models

        return getattr(torchvision.models, name)(num_classes=NUM_CLASSES), f"torchvision {torchvision.__version__}"
    import timm

    return timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES), f"timm {timm.__version__}"


def make_fixture(layout: str, name: str, reference: str, width: float) -> dict:
    model, library = library_model(layout, name)
    state = model.state_dict()
    filled = {key: fill_tensor(key, value.shape) for key, value in state.items()}
    model.load_state_dict(filled, strict=True)
    model.eval()
    eps = sorted({m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)})
    if len(eps) != 1:
        raise RuntimeError(f"{name}: expected one BatchNorm eps, found {eps}")
    with torch.no_grad():
        logits = model(make_input())
    return {
        "layout": layout,
        "model": name,
        "library": f"{library}, torch {torch.__version__}",
        "reference": reference,
        "width": width,
        "num_classes": NUM_CLASSES,
        "bn_eps": eps[0],
        "input": {"shape": list(INPUT_SHAPE), "function": "weight_fill.make_input"},
        "state_dict": [[key, list(value.shape)] for key, value in state.items()],
        "logits": [float(v) for v in logits.reshape(-1)],
    }


def main() -> None:
    for layout, name, reference, width in FIXTURES:
        fixture = make_fixture(layout, name, reference, width)
        path = HERE / f"weights_{layout}_{name}.json"
        path.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
        print(f"{path}: {len(fixture['state_dict'])} tensors, logits {fixture['logits'][:3]}...")


if __name__ == "__main__":
    main()
