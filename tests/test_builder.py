"""Builder: forward passes, purity, single ops, ONNX parity in ONNX Runtime, committed specs."""

import filecmp

import pytest
import torch
from hypothesis import given, settings

from search_spaces import build, build_op, reference
from search_spaces.onnx_io import export_onnx, onnx_max_abs_diff
from search_spaces.references import write_specs
from strategies import arch_specs


def randomize(model: torch.nn.Module, seed: int = 0, resolution: int = 224) -> torch.nn.Module:
    """Random weights, then BN statistics measured on random inputs: realistic, well-scaled activations."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.endswith("weight") and tensor.dim() > 1:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / tensor[0].numel()) ** 0.5)
            else:
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=gen) + (1.0 if name.endswith("weight") else 0.0))
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None  # cumulative average over the calibration batches
        model.train()
        for _ in range(2):
            model(torch.randn(4, 3, resolution, resolution, generator=gen))
    return model.eval()


@pytest.mark.parametrize("resolution", [96, 97, 224, 256])
def test_forward_shapes(resolution):
    spec = reference("mobilenet_v3_small", 0.5, resolution, num_classes=7)
    model = build(spec).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, resolution, resolution)).shape == (2, 7)
        features = model.forward_features(torch.randn(1, 3, resolution, resolution))
    assert features.shape[1:] == (spec.head.conv_channels, spec.final_resolution, spec.final_resolution)


def test_build_is_pure():
    spec = reference("mobilenet_v3_large")
    before = (spec.to_yaml(), spec.hash)
    model = build(spec)
    assert (spec.to_yaml(), spec.hash) == before
    assert model.spec is spec


def test_layout_follows_torchvision():
    names = set(dict(build(reference("mobilenet_v3_large")).named_parameters()))
    # A few of torchvision's mobilenet_v3_large state-dict keys.
    for key in ("features.0.0.weight", "features.1.block.0.0.weight", "features.2.block.0.0.weight",
                "features.4.block.2.fc1.weight", "features.4.block.3.0.weight", "features.16.0.weight",
                "classifier.0.weight", "classifier.3.bias"):
        assert key in names


def test_residual_adds_where_the_spec_says():
    spec = reference("mobilenet_v3_large")
    model = build(spec)
    flags = [block.use_res_connect for block in list(model.features)[1:1 + len(spec.blocks)]]
    assert flags == [spec.has_residual(i) for i in range(len(spec.blocks))]


@settings(max_examples=30, deadline=None)
@given(arch_specs(max_blocks=5, resolutions=(16, 33)))
def test_generated_specs_build_and_run(spec):
    model = build(spec).eval()
    with torch.no_grad():
        out = model(torch.randn(1, spec.in_channels, spec.resolution, spec.resolution))
    assert out.shape == (1, spec.num_classes)


def test_ops_alone_have_their_keyed_shapes():
    spec = reference("mobilenet_v3_small")
    for op in spec.op_keys():
        module = build_op(op).eval()
        with torch.no_grad():
            out = module(torch.randn(op.input_shape))
        if op.operator in ("pool", "linear"):
            assert out.shape == (1, op.out_channels)
        else:
            assert out.shape == (1, op.out_channels, op.out_resolution, op.out_resolution)


@pytest.mark.parametrize("name,width", [("mobilenet_v3_large", 1.0), ("mobilenet_v3_small", 1.0),
                                        ("mobilenet_v3_small", 0.75), ("mnasnet_a1", 1.0), ("mobilenet_v2", 0.35)])
def test_onnx_parity(name, width, tmp_path):
    spec = reference(name, width)
    model = randomize(build(spec))
    path = export_onnx(model, (1, 3, 224, 224), tmp_path / "model.onnx")
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        scale = model(x).abs().max().item()
    assert scale > 1e-2  # a meaningful comparison, not two near-zero outputs
    assert onnx_max_abs_diff(model, path, x) < 1e-4


def test_committed_specs_are_current(tmp_path):
    from pathlib import Path

    committed = Path(__file__).resolve().parents[1] / "experiments" / "specs"
    written = write_specs(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in committed.glob("*.yaml"))
    for path in written:
        assert filecmp.cmp(path, committed / path.name, shallow=False), f"{path.name} is stale: rerun the generator"
