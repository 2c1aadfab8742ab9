"""Every network the builder accepts must train (issue: a ReLU head broke backward).

The property test draws valid specs over every field the spec allows (every nonlinearity of the
stem, blocks and head, both operators, SE on and off with either gate, heads with and without
the 1x1 conv and the hidden layer, skips, dropout) and runs one real training step on each:
forward, cross-entropy, backward, SGD step. It checks that the loss is finite and that every
parameter receives a finite gradient.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import search_spaces as ss
from proxytask.data import from_arrays
from proxytask.train import ProxyConfig, failure_reason, train_child
from search_spaces.spec import NONLINEARITIES

from strategies import arch_specs


def _one_step(model: torch.nn.Module, resolution: int, in_channels: int, num_classes: int) -> float:
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(2, in_channels, resolution, resolution)
    y = torch.arange(2) % num_classes
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    optimizer.step()
    return float(loss.detach())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=arch_specs(max_blocks=5, resolutions=(16, 24, 32)))
def test_every_buildable_spec_takes_a_training_step(spec):
    torch.manual_seed(0)
    model = ss.build(spec)
    loss = _one_step(model, spec.resolution, spec.in_channels, spec.num_classes)
    assert math.isfinite(loss)


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("reference", ["mobilenet_v3_large", "mobilenet_v3_small", "mnasnet_a1", "mobilenet_v2"])
def test_reference_heads_train_with_every_nonlinearity(reference, nonlinearity):
    """The issue's reproducer, for every head nonlinearity on every reference network."""
    spec = ss.reference(reference)
    spec = spec.replace(head=dataclasses.replace(spec.head, nonlinearity=nonlinearity))
    m = ss.build(spec).train()
    m(torch.randn(2, 3, 64, 64)).sum().backward()
    assert all(p.grad is not None for p in m.parameters())


@pytest.mark.parametrize("hidden", [None, 48])
@pytest.mark.parametrize("conv", [None, 32])
def test_relu_heads_with_and_without_layers_train(hidden, conv):
    spec = ss.reference("mobilenet_v3_small", resolution=96)
    spec = spec.replace(head=dataclasses.replace(spec.head, nonlinearity="relu", conv_channels=conv,
                                                 hidden_channels=hidden), num_classes=5)
    loss = _one_step(ss.build(spec), 32, 3, 5)
    assert math.isfinite(loss)


def test_no_inplace_module_follows_an_activation_that_saves_its_output():
    """Static check of the hazard's pattern in every built reference: an in-place module right
    after ReLU / ReLU6 (whose backward reads their output) in any Sequential."""
    saves_output = (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.Hardtanh, torch.nn.Sigmoid)
    for name in ("mobilenet_v3_large", "mobilenet_v3_small", "mnasnet_a1", "mobilenet_v2"):
        model = ss.build(ss.reference(name))
        for seq in model.modules():
            if not isinstance(seq, torch.nn.Sequential):
                continue
            items = list(seq)
            for before, after in zip(items, items[1:]):
                if isinstance(before, saves_output):
                    assert not getattr(after, "inplace", False), f"{name}: {after} overwrites {before}'s output"


def _relu_head_spec():
    spec = ss.reference("mobilenet_v3_small", width=0.5)
    return spec.replace(name="v3s_relu_head", head=dataclasses.replace(spec.head, nonlinearity="relu"))


def test_relu_head_child_trains_through_the_proxy():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (96, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.arange(96) % 4
    data = from_arrays(x[:64], y[:64], x[64:80], y[64:80], test_x=x[80:], test_y=y[80:], name="noise")
    result = train_child(_relu_head_spec(), data, ProxyConfig(epochs=1, batch_size=16, threads=1))
    assert result.status == "ok", result.reason
    assert math.isfinite(result.train_loss)


def test_a_failing_child_is_one_line_naming_network_and_cause():
    # batch of 1 at a 1x1 feature map: BatchNorm cannot train (a real failure, not a mock)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8, generator=gen)
    y = torch.arange(12) % 2
    data = from_arrays(x[:4], y[:4], x[4:8], y[4:8], test_x=x[8:], test_y=y[8:], name="tiny")
    spec = _relu_head_spec()
    result = train_child(spec, data, ProxyConfig(epochs=1, batch_size=1, threads=1))
    assert result.status == "error"
    assert "\n" not in result.reason
    assert result.reason.startswith(f"network {spec.name} (hash {spec.hash[:12]}): ValueError: ")


def test_failure_reason_flattens_autograd_errors_to_one_line():
    lin = torch.nn.Linear(4, 4)
    hazard = torch.nn.Sequential(lin, torch.nn.ReLU(inplace=True), torch.nn.Dropout(0.5, inplace=True))
    with pytest.raises(RuntimeError) as info:
        hazard(torch.randn(3, 4)).sum().backward()
    line = failure_reason(_relu_head_spec(), info.value, limit=120)
    assert line.startswith("network v3s_relu_head (hash ") and "RuntimeError: one of the variables" in line
    assert "\n" not in line and len(line) <= 120
