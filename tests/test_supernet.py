"""The weight-sharing signal (proxytask.supernet): exact subnet extraction, the elastic
dimensions, training checkpoints and resume, the cache key and bad inputs. Tiny inputs, real
training steps."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from proxytask import from_arrays
from proxytask.supernet.mapping import nearest_report, nearest_sample, sample_of, subnet_from_sample, subnet_of
from proxytask.supernet.model import Supernet, SupernetError
from proxytask.supernet.scoring import SupernetScorer
from proxytask.supernet.training import (SupernetConfig, cache_key, extreme_sample, key_parts, load_supernet,
                                         train_supernet)
from proxytask.train import ProxyConfig
from search_spaces import reference
from search_spaces.spaces import get_space, space_from_dict

TINY = {
    "name": "tiny", "resolution": 32, "num_classes": 3, "se_gate": "hsigmoid",
    "stem": {"out_channels": 8, "kernel": 3, "stride": 2, "nonlinearity": "hswish"},
    "stages": [{"out_channels": 8, "layers": 1, "stride": 1}, {"out_channels": 16, "layers": 2, "stride": 2},
               {"out_channels": 24, "layers": 2, "stride": 2}],
    "head": {"conv_channels": 32, "hidden_channels": 40, "nonlinearity": "hswish"},
    "choices": {"operator": ["conv", "dsconv", "mbconv3", "mbconv6"], "kernel": [3, 5, 7], "se": [0, 0.25],
                "skip": ["identity", "none"], "width": [0.75, 1.0, 1.5], "layers": [-1, 0, 1],
                "nonlinearity": ["relu", "hswish"]},
}


@pytest.fixture(scope="module")
def tiny():
    return space_from_dict(TINY)


def tiny_data(seed: int = 0, n: int = 48):
    rng = np.random.default_rng(seed)
    x = lambda k: rng.integers(0, 256, (k, 3, 16, 16), dtype=np.uint8)  # noqa: E731
    y = lambda k: np.arange(k) % 3  # noqa: E731
    return from_arrays(x(n), y(n), x(12), y(12), test_x=x(12), test_y=y(12), name=f"random-{seed}")


PROXY = ProxyConfig(batch_size=8, threads=1, seed=0, channels_last=False, bn_recalibration_batches=2)


def randomise(net: Supernet) -> Supernet:
    """BN statistics and affine terms and the kernel transforms away from their initial values,
    so that slicing mistakes show."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=gen))
                module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
                module.weight.copy_(torch.randn(module.num_features, generator=gen))
                module.bias.copy_(torch.randn(module.num_features, generator=gen))
        for name, p in net.named_parameters():
            if ".transforms." in name:
                p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return net.eval()


# --------------------------------------------------------------------------- exact extraction
@pytest.mark.parametrize("name", ["mobilenetv3", "mnasnet", "tiny"])
def test_extracted_subnet_gives_identical_outputs(name, tiny):
    space = tiny if name == "tiny" else get_space(name)
    torch.manual_seed(0)
    net = randomise(Supernet(space, num_classes=5, in_channels=3))
    rng = random.Random(7)
    count = 8 if name == "tiny" else 3
    samples = [extreme_sample(space, True), extreme_sample(space, False)] + [space.random_sample(rng) for _ in range(count)]
    x = torch.randn(2, 3, 24, 24)
    for sample in samples:
        spec = space.decode(sample)
        subnet = subnet_of(space, spec)
        with torch.no_grad():
            expected = net(x, subnet)
            got = net.extract(subnet)(x)
        assert torch.equal(expected, got), space.to_tokens(sample)


def test_every_sample_maps_back_to_its_network(tiny):
    rng = random.Random(1)
    for space in (tiny, get_space("mobilenetv3"), get_space("mnasnet")):
        for _ in range(30):
            spec = space.decode(space.random_sample(rng))
            assert space.decode(sample_of(space, spec)).hash == spec.hash


# --------------------------------------------------------------------------- elastic dimensions
def test_elastic_kernel_is_the_transformed_centre(tiny):
    net = randomise(Supernet(tiny, 3))
    dw = net.layers[0].depthwise
    big = dw.weight[:4, :1]
    k5 = dw.filters(4, 1, 5)
    want5 = (big[:, :, 1:6, 1:6].reshape(-1, 25) @ dw.transforms["7to5"].T).view(4, 1, 5, 5)
    assert torch.allclose(k5, want5)
    k3 = dw.filters(4, 1, 3)
    want3 = (want5[:, :, 1:4, 1:4].reshape(-1, 9) @ dw.transforms["5to3"].T).view(4, 1, 3, 3)
    assert torch.allclose(k3, want3)
    fresh = Supernet(tiny, 3).layers[0].depthwise  # identity transforms: the plain centre
    assert torch.equal(fresh.filters(4, 1, 3), fresh.weight[:4, :1, 2:5, 2:5])
    fresh.filters(4, 1, 3).sum().backward()  # the transform matrices learn
    assert fresh.transforms["5to3"].grad.abs().sum() > 0 and fresh.transforms["7to5"].grad.abs().sum() > 0


def _sample(space, **per_stage):
    """A sample with the given option values in every stage (others: the first option)."""
    values = [per_stage.get(name, opts[0]) for name, opts in space.choices]
    return tuple(opts.index(v) for v, (_, opts) in zip(values, space.choices)) * len(space.stages)


def test_elastic_expansion_width_and_depth_slice_the_widest(tiny):
    net = randomise(Supernet(tiny, 3))
    sample = _sample(tiny, operator="mbconv3", width=0.75, layers=-1, kernel=5)
    subnet = subnet_from_sample(tiny, sample)
    model = net.extract(subnet).state_dict()
    # depth: each stage runs the first of its slots (2, 3 and 3 of them)
    assert subnet.slots == (0, 2, 5)
    block, cin = subnet.spec.blocks[1], subnet.inputs[1]
    layer = net.layers[2]
    assert block.expansion_channels == 24 and block.out_channels == 16  # 3 x 8 inputs; 16 x 0.75 -> 16
    assert torch.equal(model["features.2.block.0.0.weight"], layer.expand[:24, :cin])
    assert torch.equal(model["features.2.block.2.0.weight"], layer.project[:16, :24])
    assert torch.equal(model["features.2.block.0.1.running_mean"], layer.expand_bn.bn.running_mean[:24])
    # dsconv: expansion 1, the first `in` channels of the same depthwise and projection
    ds = subnet_from_sample(tiny, _sample(tiny, operator="dsconv", width=1.5, kernel=7))
    state = net.extract(ds).state_dict()
    cin = ds.inputs[1]
    assert ds.spec.blocks[1].expansion_channels == cin and ds.spec.blocks[1].out_channels == 24
    assert torch.equal(state["features.2.block.0.0.weight"], layer.depthwise.weight[:cin])
    assert torch.equal(state["features.2.block.1.0.weight"], layer.project[:24, :cin])
    # SE: the first squeeze channels of the widest
    se = subnet_from_sample(tiny, _sample(tiny, operator="mbconv6", se=0.25))
    block = se.spec.blocks[1]
    state = net.extract(se).state_dict()
    assert torch.equal(state["features.2.block.2.fc1.weight"],
                       layer.se_reduce.weight[:block.se_channels, :block.expansion_channels])


def test_smaller_subnets_cost_less_and_largest_is_widest(tiny):
    largest = subnet_from_sample(tiny, extreme_sample(tiny, True)).spec
    smallest = subnet_from_sample(tiny, extreme_sample(tiny, False)).spec
    assert len(largest.blocks) == 8 and len(smallest.blocks) == 3
    net = Supernet(tiny, 3)
    assert all(b.expansion_channels == s.max_exp for b, s in zip(largest.blocks, net.slot_specs))


# --------------------------------------------------------------------------- outside the space
def test_child_outside_the_space_is_one_line_and_nearest_is_reported():
    space = get_space("mobilenetv3")
    large = reference("mobilenet_v3_large", 1.0, 224)
    with pytest.raises(SupernetError) as err:
        subnet_of(space, large)
    assert "\n" not in str(err.value) and "blocks[" in str(err.value) and "outside the space" in str(err.value)
    report = nearest_report(space, large)
    assert report["exact"] is False and abs(report["madds_distance_m"]) < 0.2 * report["madds_m"]
    assert np.isfinite(report["latency_distance_ms"])
    inside = space.decode(nearest_sample(space, large))
    again = nearest_report(space, inside)
    assert again["exact"] is True and again["madds_distance_m"] == 0 and again["latency_distance_ms"] == 0
    other = reference("mobilenet_v3_small", 1.0, 224)  # another stem and head: no subnet runs it
    with pytest.raises(SupernetError, match="head|stem"):
        subnet_of(space, other)


# --------------------------------------------------------------------------- training
def _params(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_sandwich_training_resumes_exactly_and_is_cached(tiny, tmp_path):
    data, config = tiny_data(), SupernetConfig(epochs=1.0, checkpoint_every=2)
    whole, meta = train_supernet(tiny, data, "random", PROXY, config, out=tmp_path / "whole")
    assert meta["finished"] and meta["step"] == 6 and (tmp_path / "whole" / "supernet-6.pt").exists()
    assert all(np.isfinite(loss) for _, loss in meta["losses"])
    part, meta = train_supernet(tiny, data, "random", PROXY, config, out=tmp_path / "cut", max_steps=3)
    assert meta["step"] == 3 and not meta["finished"]
    with pytest.raises(SupernetError, match="--resume"):
        train_supernet(tiny, data, "random", PROXY, config, out=tmp_path / "cut")
    resumed, meta = train_supernet(tiny, data, "random", PROXY, config, out=tmp_path / "cut", resume=True)
    assert meta["finished"]
    a, b = _params(whole), _params(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a finished checkpoint is the cache: returned as it is, no step trained
    again, meta2 = train_supernet(tiny, data, "random", PROXY, config, out=tmp_path / "whole")
    assert meta2["seconds"] == meta2["seconds"] and all(torch.equal(a[k], v) for k, v in again.state_dict().items())
    loaded, _ = load_supernet(tmp_path / "whole", tiny, data, "random", PROXY, config)
    assert all(torch.equal(a[k], v) for k, v in loaded.state_dict().items())


def test_resume_after_a_killed_process(tiny, tmp_path):
    """A real subprocess killed mid-training; the resumed run equals an uncut one."""
    script = f"""
import os, sys, signal
sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})
from test_supernet import TINY, tiny_data, PROXY
from search_spaces.spaces import space_from_dict
from proxytask.supernet import training
from proxytask.supernet.training import SupernetConfig, train_supernet
saved = training.save_checkpoint
def save_then_die(folder, net, opt, meta):
    saved(folder, net, opt, meta)
    if meta["step"] == 4:
        os.kill(os.getpid(), signal.SIGKILL)
training.save_checkpoint = save_then_die
train_supernet(space_from_dict(TINY), tiny_data(), "random", PROXY, SupernetConfig(epochs=1.0, checkpoint_every=2),
               out=sys.argv[1])
"""
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "killed")], capture_output=True, timeout=120)
    assert proc.returncode == -9
    meta = json.loads((tmp_path / "killed" / "supernet.json").read_text())
    assert meta["step"] == 4 and not meta["finished"]
    config = SupernetConfig(epochs=1.0, checkpoint_every=2)
    resumed, _ = train_supernet(tiny, tiny_data(), "random", PROXY, config, out=tmp_path / "killed", resume=True)
    whole, _ = train_supernet(tiny, tiny_data(), "random", PROXY, config, out=tmp_path / "whole")
    a = _params(whole)
    assert all(torch.equal(a[k], v) for k, v in resumed.state_dict().items())


def test_cache_key_names_space_data_and_settings(tiny):
    data, config = tiny_data(), SupernetConfig(epochs=1.0)
    key = cache_key(key_parts(tiny, data, "random", PROXY, config))
    assert key == cache_key(key_parts(tiny, tiny_data(), "random", PROXY, config))
    assert key == cache_key(key_parts(tiny, data, "random", PROXY.replace(threads=2), config.replace(checkpoint_every=9)))
    changed = [key_parts(tiny.reduced(kernel=[3, 5]), data, "random", PROXY, config),
               key_parts(tiny, tiny_data(seed=1), "random", PROXY, config),
               key_parts(tiny, data, "other", PROXY, config),
               key_parts(tiny, data, "random", PROXY.replace(lr=0.05), config),
               key_parts(tiny, data, "random", PROXY, config.replace(epochs=2.0)),
               key_parts(tiny, data, "random", PROXY, config, patch=32)]
    assert len({key} | {cache_key(p) for p in changed}) == 1 + len(changed)


# --------------------------------------------------------------------------- bad inputs
def test_bad_checkpoints_are_one_line(tiny, tmp_path):
    data, config = tiny_data(), SupernetConfig(epochs=0.2)
    out = tmp_path / "net"
    train_supernet(tiny, data, "random", PROXY, config, out=out)

    def refused(match, **changes):
        args = dict(space=tiny, data=data, source="random", proxy=PROXY, config=config) | changes
        with pytest.raises(SupernetError, match=match) as err:
            train_supernet(args["space"], args["data"], args["source"], args["proxy"], args["config"], out=out,
                           resume=True)
        assert "\n" not in str(err.value) and str(out) in str(err.value)

    refused("another space", space=tiny.reduced(kernel=[3, 5]))
    refused("another data", data=tiny_data(seed=1))
    refused("another settings", config=config.replace(epochs=0.4))
    meta_path = out / "supernet.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(dict(meta, version=0)))
    refused("version")
    meta_path.write_text(json.dumps(meta))
    checkpoint = out / meta["checkpoint"]
    blob = checkpoint.read_bytes()
    checkpoint.write_bytes(blob[: len(blob) // 2])
    refused("torn")
    meta_path.write_text("{ not json")
    refused("not a supernet checkpoint")


def test_scorer_scores_children_and_refuses_outsiders(tiny, tmp_path):
    data = tiny_data()
    net, _ = train_supernet(tiny, data, "random", PROXY, SupernetConfig(epochs=0.5), out=tmp_path / "net")
    scorer = SupernetScorer(net, tiny, data, PROXY, bn_batches=2, val_size=None)
    spec = tiny.decode(tiny.random_sample(random.Random(0)))
    result = scorer.score(spec)
    assert result.ok and 0 <= result.accuracy <= 1 and 0 <= result.test_accuracy <= 1
    assert scorer.score(spec).accuracy == result.accuracy  # BN recalibration is deterministic
    outsider = spec.replace(blocks=(spec.blocks[0].__class__(**{**spec.blocks[0].__dict__, "out_channels": 200}),)
                            + spec.blocks[1:])
    bad = scorer.score(outsider)
    assert bad.status == "error" and "outside the space" in bad.reason and "\n" not in bad.reason


def test_folding_batchnorm_keeps_the_function(tiny):
    """Scoring folds each conv-BN pair into one conv after recalibration: same logits, no BN left
    behind a conv."""
    from proxytask.supernet.scoring import fold_batchnorm

    for space in (tiny, get_space("mobilenetv3")):
        net = randomise(Supernet(space, num_classes=5, in_channels=3))
        x = torch.randn(3, 3, 24, 24)
        for sample in (extreme_sample(space, True), space.random_sample(random.Random(2))):
            model = net.extract(subnet_of(space, space.decode(sample))).eval()
            with torch.no_grad():
                expected = model(x)
                folded = fold_batchnorm(model)
                got = folded(x)
            assert torch.allclose(expected, got, rtol=1e-4, atol=1e-4), (expected - got).abs().max()
            pairs = [(a, b) for m in folded.modules() if isinstance(m, torch.nn.Sequential)
                     for a, b in zip(list(m), list(m)[1:]) if isinstance(a, torch.nn.Conv2d)]
            assert pairs and not any(isinstance(b, torch.nn.BatchNorm2d) for _, b in pairs)


def test_cli_bad_inputs_are_one_line(tmp_path):
    (tmp_path / "supernet.json").write_text("garbage")
    for argv in (["score", "mobilenet_v3_large", "--supernet", str(tmp_path)],
                 ["score", "mobilenet_v3_large", "--supernet", str(tmp_path / "none")],
                 ["info", str(tmp_path)],
                 ["train", "--data", "nowhere:x"]):
        proc = subprocess.run([sys.executable, "-m", "proxytask.supernet", *argv], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- nas.search --signal supernet
def test_search_with_the_supernet_signal_trains_it_once_and_resumes(tmp_path, monkeypatch, ray_session):
    import pandas as pd
    import yaml

    from nas.runner import SearchConfig, run_search

    monkeypatch.chdir(tmp_path)  # the supernet cache, runs/supernet/, goes here
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(dict(TINY, reference=None)))
    config = SearchConfig(out=str(tmp_path / "run"), space=str(tmp_path / "tiny.yaml"), strategy="random", children=2,
                          concurrency=2, progress=False, retries=0, signal_kind="supernet", supernet_epochs=0.02,
                          proxy_overrides={"batch_size": 16, "resolution": 16, "bn_recalibration_batches": 1})
    summary = run_search(config)
    trials = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert summary["children_trained"] == 2 and set(trials["status"]) == {"ok"}
    assert trials["accuracy"].between(0, 1).all()
    [folder] = list((tmp_path / "runs" / "supernet").iterdir())
    meta = json.loads((folder / "supernet.json").read_text())
    assert meta["finished"] and meta["space"] == "tiny"
    config.resume, config.children = True, 3
    summary = run_search(config)
    assert summary["children_trained"] == 3
    assert json.loads((folder / "supernet.json").read_text())["saved"] == meta["saved"]  # reused, not retrained
    config.signal_kind = "scratch"
    with pytest.raises(ValueError, match="signal_kind"):
        run_search(config)


def test_epochs_written_as_an_integer_are_the_same_supernet(tiny):
    data = tiny_data()
    keys = {cache_key(key_parts(tiny, data, "random", PROXY, SupernetConfig(epochs=e))) for e in (8, 8.0)}
    assert len(keys) == 1
