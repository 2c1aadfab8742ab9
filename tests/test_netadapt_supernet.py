"""NetAdapt with ``--signal supernet``: subnets at arbitrary channel counts extracted exactly, a
tiny real run scored by a real (tiny) supernet, and the one-line errors: a seed the supernet
cannot run, a resume with the other signal."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from netadapt.config import NetAdaptConfig, NetAdaptError
from netadapt.proposals import make_proposals, residual_groups, shrink_expansion, shrink_group
from netadapt.supernet_signal import seed_slots
from proxytask.supernet.mapping import subnet_of
from proxytask.supernet.model import Supernet, SupernetError
from proxytask.supernet.widths import extract_at_widths, subnet_at_widths
from proxytask.train import torch_threads
from search_spaces import build
from search_spaces.spaces import space_from_dict

TINY = {
    "name": "tiny_na", "resolution": 32, "num_classes": 4, "se_gate": "hsigmoid",
    "stem": {"out_channels": 16, "kernel": 3, "stride": 2, "nonlinearity": "hswish"},
    "stages": [{"out_channels": 16, "layers": 1, "stride": 1}, {"out_channels": 24, "layers": 2, "stride": 2},
               {"out_channels": 32, "layers": 2, "stride": 2}],
    "head": {"conv_channels": 48, "hidden_channels": 64, "nonlinearity": "hswish"},
    "choices": {"operator": ["dsconv", "mbconv3", "mbconv6"], "kernel": [3, 5], "se": [0, 0.25],
                "skip": ["identity", "none"], "width": [0.5, 1.0], "layers": [-1, 0, 1],
                "nonlinearity": ["relu", "hswish"]},
}
ROOT = Path(__file__).resolve().parents[1]
# The CLI runs in a temporary folder (its supernet cache, runs/supernet/, goes there): the checkout
# stays importable from it
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def space():
    return space_from_dict(TINY)


def seed_spec(space):
    """The seed: mbconv6 with SE everywhere, full width, the base depth (stem and b0 share a skip path)."""
    tokens = []
    for s, stage in enumerate(space.stages):
        tokens += [f"s{s}.operator={'dsconv' if s == 0 else 'mbconv6'}", f"s{s}.kernel={3 if s < 2 else 5}",
                   "s{}.se=0.25".format(s), f"s{s}.skip=identity", f"s{s}.width=1.0", f"s{s}.layers=0",
                   f"s{s}.nonlinearity={'relu' if s == 1 else 'hswish'}"]
    return space.decode(space.from_tokens(tokens), name="tiny_seed")


def randomised_supernet(space) -> Supernet:
    """A supernet with BN statistics, affine terms and kernel transforms away from their initial
    values, so that a wrong slice shows."""
    from test_supernet import randomise

    torch.manual_seed(0)
    return randomise(Supernet(space, num_classes=4, in_channels=3))


def first_channels(full: dict, model: torch.nn.Module) -> dict:
    """Every tensor of ``model``'s state dict as the first channels (rows, columns, kernel taps) of
    the same tensor in ``full``: OFA's slicing, written out independently of the code under test."""
    return {name: full[name][tuple(slice(0, n) for n in value.shape)].clone()
            for name, value in model.state_dict().items()}


# --------------------------------------------------------------------------- arbitrary widths
def test_arbitrary_widths_equal_building_the_spec_and_copying_the_first_channels(space):
    net = randomised_supernet(space)
    seed = seed_spec(space)
    slots = subnet_of(space, seed).slots
    full = net.extract(subnet_of(space, seed)).state_dict()  # the seed is a sample: proven exact in test_supernet
    groups = residual_groups(seed)
    narrower = [shrink_expansion(seed, 1, 40), shrink_expansion(seed, 4, 72),
                shrink_group(seed, groups[0], 8),  # the stem's group: the stem is sliced too
                shrink_group(shrink_expansion(seed, 2, 56), groups[1], 16)]
    x = torch.randn(3, 3, 32, 32)
    for spec in narrower:
        with pytest.raises(SupernetError):
            subnet_of(space, spec)  # not a sample of the space: only the arbitrary-width path runs it
        assert subnet_at_widths(space, spec).slots == slots  # found again without being told
        got = extract_at_widths(net, spec, slots)
        expected = build(spec.replace(num_classes=4, in_channels=3))
        expected.load_state_dict(first_channels(full, expected))
        expected.eval()
        with torch.no_grad():
            assert torch.equal(got(x), expected(x)), spec.to_dict()
        if spec.stem.out_channels == seed.stem.out_channels:  # the supernet's own forward slices on the fly
            with torch.no_grad():
                assert torch.equal(got(x), net(x, subnet_at_widths(space, spec, slots)))


def test_every_proposal_of_a_reference_network_is_a_subnet_of_the_mobilenetv3_supernet():
    """MobileNetV3-Large is not a sample of the mobilenetv3 space (mixed expansions), but no layer
    of it is wider than the supernet's: it and every proposal NetAdapt makes of it run exactly."""
    from search_spaces import reference
    from search_spaces.spaces import get_space

    space = get_space("mobilenetv3")
    v3 = reference("mobilenet_v3_large", 1.0, 224)
    slots = seed_slots(NetAdaptConfig(spec=v3, budget_ratio=0.9, signal_kind="supernet"), v3)
    proposals = [p.spec for p in make_proposals(v3, 0.5, "pixel1") if p.feasible]
    assert len(proposals) >= 20  # every group and expansion layer of V3-Large
    for spec in proposals:
        subnet = subnet_at_widths(space, spec, slots)
        assert subnet.slots == slots and subnet.inputs == tuple(c for c, _ in spec.block_inputs)


def test_a_network_the_supernet_cannot_run_is_one_line_naming_the_layer(space, tmp_path):
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(dict(TINY, reference=None)))
    seed = seed_spec(space)
    wide = seed.replace(blocks=(seed.blocks[0], dataclasses.replace(seed.blocks[1], expansion_channels=400))
                        + seed.blocks[2:])
    seven = seed.replace(blocks=seed.blocks[:2] + (dataclasses.replace(seed.blocks[2], kernel=7),) + seed.blocks[3:])
    stem = seed.replace(stem=dataclasses.replace(seed.stem, out_channels=24))
    for spec, words in ((wide, "blocks[1]: expansion 400 channels, wider than the supernet's 96 at slot 1.0"),
                        (seven, "blocks[2]: kernel 7 is not one of the supernet's [3, 5]"),
                        (stem, "stem: 24 output channels, wider than the supernet's 16")):
        with pytest.raises(SupernetError) as caught:
            subnet_at_widths(space, spec)
        assert words in str(caught.value) and "\n" not in str(caught.value)
        with pytest.raises(NetAdaptError) as caught:
            seed_slots(NetAdaptConfig(spec=spec, budget_ratio=0.9, signal_kind="supernet",
                                      space=str(tmp_path / "space.yaml")), spec)
        assert words in str(caught.value) and str(caught.value).endswith(
            "use --signal scratch (fine-tunes instead), or a --space whose supernet can run it")
    with pytest.raises(NetAdaptError, match="^space: "):
        seed_slots(NetAdaptConfig(spec=seed, budget_ratio=0.9, signal_kind="supernet", space="nowhere"), seed)


# --------------------------------------------------------------------------- the CLI, end to end
@pytest.fixture(scope="module")
def files(tmp_path_factory, space):
    """The tiny space's YAML, the seed's YAML and an image folder of 4 learnable classes."""
    from PIL import Image

    root = tmp_path_factory.mktemp("na_supernet")
    (root / "space.yaml").write_text(yaml.safe_dump(dict(TINY, reference=None)))
    seed_spec(space).to_yaml(root / "seed.yaml")
    rng = np.random.default_rng(0)
    for i in range(96):
        label = i % 4
        image = rng.integers(0, 60, size=(16, 16)).astype(np.uint8)
        r, c = divmod(label, 2)
        image[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] += 150
        folder = root / "images" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    return root


def netadapt(files: Path, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "netadapt.run", str(files / "seed.yaml"), "--target", "pixel1",
            "--data", f"imagefolder:{files / 'images'}", "--out", str(cwd / "run"), "--no-progress",
            "--space", str(files / "space.yaml"), "--proxy-resolution", "16", "--proxy", "batch_size=16",
            "--proxy", "bn_recalibration_batches=2", "--long-finetune-steps", "2", "--concurrency", "1",
            *extra]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, env=ENV)


def test_a_tiny_supernet_run_reaches_its_budget_and_a_resume_with_the_other_signal_is_refused(files, tmp_path):
    done = netadapt(files, tmp_path, "--signal", "supernet", "--supernet-epochs", "2", "--budget-ratio", "0.85",
                    "--step-ratio", "0.05")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "done" and summary["latency_ms"] <= summary["budget_ms"]
    [folder] = list((tmp_path / "runs" / "supernet").iterdir())  # trained once, in the cache nas.search reads
    assert json.loads((folder / "supernet.json").read_text())["finished"]
    records = [json.loads(line) for line in (tmp_path / "run" / "journal.jsonl").read_text().splitlines()]
    seed = next(r for r in records if r["type"] == "seed")
    assert str(folder.name) in seed["source"]
    proposals = [r for r in records if r["type"] == "proposal"]
    assert proposals and all(r["signal"] == "supernet" and r["status"] == "ok" for r in proposals)
    assert all(0 <= r["accuracy_after"] <= 1 and r["accuracy_after"] == r["accuracy_before"] for r in proposals)
    chosen = [r for r in records if r["type"] == "chosen"]
    assert len(chosen) == summary["iterations"] >= 1
    for r in chosen:  # the score a choice is made on is the supernet's score of that proposal
        mine = next(p for p in proposals if (p["iteration"], p["index"]) == (r["iteration"], r["index"]))
        assert r["accuracy"] == r["score"] == mine["accuracy_after"]
    assert any(r["type"] == "noise" for r in records)  # re-scored on other BN batches
    assert records[-1]["type"] == "final" and records[-1]["long_finetune_steps"] == 2
    refused = netadapt(files, tmp_path, "--signal", "scratch", "--budget-ratio", "0.85", "--step-ratio", "0.05",
                       "--resume")
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("error: resume: signal_kind was 'supernet' in ") and line.endswith(
        "config.json, now 'scratch'; resume with the same settings")
    again = netadapt(files, tmp_path, "--signal", "supernet", "--supernet-epochs", "2", "--budget-ratio", "0.85",
                     "--step-ratio", "0.05", "--resume")
    assert again.returncode == 0, again.stderr[-3000:]  # the same signal resumes (finished: nothing redone)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["iterations"] == summary["iterations"]


def test_the_cli_refuses_a_seed_the_supernet_cannot_run_before_any_work(files, tmp_path, space):
    seed = seed_spec(space)
    seed.replace(blocks=(seed.blocks[0], dataclasses.replace(seed.blocks[1], expansion_channels=400))
                 + seed.blocks[2:]).to_yaml(tmp_path / "wide.yaml")
    args = [sys.executable, "-m", "netadapt.run", str(tmp_path / "wide.yaml"), "--budget-ratio", "0.9",
            "--signal", "supernet", "--space", str(files / "space.yaml"), "--out", str(tmp_path / "run")]
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "blocks[1]: expansion 400 channels" in proc.stderr and "use --signal scratch" in proc.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()
    for flag in (["--weights", str(tmp_path / "wide.yaml")], ["--chosen-finetune-steps", "3"]):
        proc = subprocess.run(args[:-2] + ["--out", str(tmp_path / "run")] + flag, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, env=ENV)
        assert proc.returncode == 2 and "signal_kind supernet" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
