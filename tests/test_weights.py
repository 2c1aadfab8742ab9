"""search_spaces.import_state_dict against golden fixtures from the real torchvision and timm.

The fixtures (tests/data/weights_<layout>_<model>.json, written by
tests/data/make_weight_fixtures.py with the libraries installed) hold each library model's
``[key, shape]`` manifest, its BatchNorm eps and its logits for deterministic weights and input
(tests/weight_fill.py). Here the same state dict is rebuilt without the libraries, imported
into the model built from the matching reference spec, and the logits are compared.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from search_spaces import build, import_state_dict, reference
from search_spaces.weights import BN_EPS
from weight_fill import fill_state_dict, make_input

DATA = Path(__file__).resolve().parent / "data"
FIXTURES = sorted(DATA.glob("weights_*.json"))
EXPECTED = {"weights_torchvision_mobilenet_v3_large.json", "weights_torchvision_mobilenet_v3_small.json",
            "weights_timm_mobilenetv3_large_100.json", "weights_timm_mobilenetv3_small_075.json"}


@functools.lru_cache(maxsize=None)
def load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


@functools.lru_cache(maxsize=None)
def _filled(name: str) -> tuple:
    return tuple(fill_state_dict(load(name)["state_dict"]).items())


def state(name: str) -> dict:
    """A fresh dict (shared, never mutated tensors) of the fixture's filled state dict."""
    return dict(_filled(name))


def target_model(fixture: dict) -> nn.Module:
    return build(reference(fixture["reference"], fixture["width"], num_classes=fixture["num_classes"]))


def bn_eps(model: nn.Module) -> set[float]:
    return {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)}


def logits(model: nn.Module) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(make_input()).reshape(-1)


def import_error(model, checkpoint, layout) -> str:
    with pytest.raises(ValueError) as info:
        import_state_dict(model, checkpoint, layout)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_all_fixtures_present():
    assert {p.name for p in FIXTURES} == EXPECTED


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_logits_match_library(path):
    # Rebuilt from scratch here (no cache): the fill function itself is under test.
    fixture = json.loads(path.read_text())
    model = target_model(fixture)
    assert import_state_dict(model, fill_state_dict(fixture["state_dict"]), fixture["layout"]) is model
    assert bn_eps(model) == {fixture["bn_eps"]} == {BN_EPS[fixture["layout"]]}
    expected = torch.tensor(fixture["logits"])
    torch.testing.assert_close(logits(model), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_detects_wrong_eps(name):
    # The fixtures are sensitive to the BN epsilon, so they check that it is set.
    fixture = load(name)
    model = import_state_dict(target_model(fixture), state(name), fixture["layout"])
    other = BN_EPS["timm" if fixture["layout"] == "torchvision" else "torchvision"]
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = other
    assert (logits(model) - torch.tensor(fixture["logits"])).abs().max() > 1e-3


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_num_batches_tracked_may_be_absent(name):
    fixture = load(name)
    full = state(name)
    sd = {k: v for k, v in full.items() if not k.endswith("num_batches_tracked")}
    assert len(sd) < len(full)
    model = import_state_dict(target_model(fixture), sd, fixture["layout"])
    torch.testing.assert_close(logits(model), torch.tensor(fixture["logits"]), atol=1e-4, rtol=1e-4)


def test_torchvision_round_trip_of_own_model_any_width():
    for name in ("mobilenet_v3_large", "mobilenet_v3_small"):
        for width in (0.35, 1.25):
            source = build(reference(name, width, num_classes=7)).eval()
            model = import_state_dict(build(reference(name, width, num_classes=7)), source.state_dict(), "torchvision")
            assert bn_eps(model) == {1e-3}
            torch.testing.assert_close(logits(model), logits(source), atol=0, rtol=0)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("layout", ["tf", "TIMM", "", None, 3])
def test_unknown_layout(layout):
    fixture = load("weights_torchvision_mobilenet_v3_small.json")
    message = import_error(target_model(fixture), state("weights_torchvision_mobilenet_v3_small.json"), layout)
    assert message.startswith("layout: ")
    assert repr(layout) in message and "torchvision" in message and "timm" in message


def test_shape_mismatch_names_key_and_shapes():
    fixture = load("weights_torchvision_mobilenet_v3_large.json")
    sd = state("weights_torchvision_mobilenet_v3_large.json")
    sd["features.4.block.2.fc1.weight"] = torch.zeros(32, 72, 1, 1)
    model = target_model(fixture)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    message = import_error(model, sd, "torchvision")
    assert message == ("features.4.block.2.fc1.weight: checkpoint shape (32, 72, 1, 1) does not fit "
                       "the model's (24, 72, 1, 1)")
    # A failed import leaves the model untouched (weights and BN eps).
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert bn_eps(model) == {1e-3}


def test_shape_mismatch_timm_names_both_keys():
    fixture = load("weights_timm_mobilenetv3_large_100.json")
    sd = state("weights_timm_mobilenetv3_large_100.json")
    sd["blocks.2.0.se.conv_reduce.weight"] = torch.zeros(32, 72, 1, 1)
    message = import_error(target_model(fixture), sd, "timm")
    assert message == ("features.4.block.2.fc1.weight: checkpoint shape (32, 72, 1, 1) does not fit "
                       "the model's (24, 72, 1, 1) (timm key blocks.2.0.se.conv_reduce.weight)")


def test_wrong_width_is_a_shape_mismatch():
    fixture = load("weights_timm_mobilenetv3_small_075.json")
    model = build(reference("mobilenet_v3_small", 1.0, num_classes=10))
    message = import_error(model, state("weights_timm_mobilenetv3_small_075.json"), "timm")
    assert message == ("features.4.block.3.0.weight: checkpoint shape (32, 96, 1, 1) does not fit the model's "
                       "(40, 96, 1, 1) (timm key blocks.2.0.conv_pwl.weight)")


def test_wrong_layout_is_reported():
    fixture = load("weights_timm_mobilenetv3_large_100.json")
    message = import_error(target_model(fixture), state("weights_timm_mobilenetv3_large_100.json"), "torchvision")
    assert message == "features.0.0.weight: missing from the checkpoint"


def test_missing_key():
    fixture = load("weights_torchvision_mobilenet_v3_small.json")
    sd = state("weights_torchvision_mobilenet_v3_small.json")
    del sd["features.7.block.0.1.running_var"]
    message = import_error(target_model(fixture), sd, "torchvision")
    assert message == "features.7.block.0.1.running_var: missing from the checkpoint"


def test_missing_key_timm_names_both_keys():
    fixture = load("weights_timm_mobilenetv3_large_100.json")
    sd = state("weights_timm_mobilenetv3_large_100.json")
    del sd["conv_head.bias"]
    message = import_error(target_model(fixture), sd, "timm")
    assert message == "classifier.0.bias: missing from the checkpoint (timm key conv_head.bias)"


def test_missing_block_timm():
    fixture = load("weights_timm_mobilenetv3_small_075.json")
    sd = {k: v for k, v in state("weights_timm_mobilenetv3_small_075.json").items() if not k.startswith("blocks.5.")}
    message = import_error(target_model(fixture), sd, "timm")
    assert message.startswith("features.12.0.weight: missing from the checkpoint")
    assert "the checkpoint has 11 blocks, the model 12" in message


@pytest.mark.parametrize("layout", ["torchvision", "timm"])
def test_unexpected_key(layout):
    name = "weights_torchvision_mobilenet_v3_small.json" if layout == "torchvision" else \
        "weights_timm_mobilenetv3_small_075.json"
    fixture = load(name)
    sd = state(name)
    sd["head.extra.weight"] = torch.zeros(3)
    message = import_error(target_model(fixture), sd, layout)
    assert message.startswith("head.extra.weight: unexpected key in the checkpoint")


def test_unexpected_se_in_timm_checkpoint():
    # A checkpoint whose block has SE imported into a model whose block has none.
    fixture = load("weights_timm_mobilenetv3_small_075.json")
    spec = reference("mobilenet_v3_small", 0.75, num_classes=10)
    spec = spec.replace(blocks=(dataclasses.replace(spec.blocks[0], se_channels=0),) + spec.blocks[1:])
    message = import_error(build(spec), state("weights_timm_mobilenetv3_small_075.json"), "timm")
    assert message.startswith("blocks.0.0.se.conv_reduce.weight: unexpected key in the checkpoint")


def test_non_tensor_value():
    fixture = load("weights_torchvision_mobilenet_v3_small.json")
    sd = state("weights_torchvision_mobilenet_v3_small.json")
    sd["features.0.0.weight"] = [1.0, 2.0]
    message = import_error(target_model(fixture), sd, "torchvision")
    assert message == "features.0.0.weight: checkpoint value is a list, not a tensor"


def test_not_a_built_model():
    with pytest.raises(TypeError, match="model"):
        import_state_dict(nn.Linear(2, 2), {}, "torchvision")
