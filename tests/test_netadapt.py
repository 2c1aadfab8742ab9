"""NetAdapt: proposals, L2 weight inheritance, selection, and real (tiny) runs on Ray, resume included."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from jobs import Journal, JournalWarning
from latency import predict_ms
from proxytask.data import from_arrays
from proxytask.train import torch_threads
from netadapt.algorithm import run_netadapt
from netadapt.config import NetAdaptConfig, NetAdaptError, expected_iterations, step_ms_at
from netadapt.proposals import STEM, make_proposals, residual_groups, shrink_expansion, shrink_group
from netadapt.selection import select_proposal, selection_metric
from netadapt.weights import (WeightsMismatch, channel_sizes, check_fits, inherit, kept_channels, load_weights,
                              save_weights, tensor_layout)
from search_spaces import ArchSpec, BlockSpec, HeadSpec, StemSpec, build, load_spec, se_width

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "experiments" / "specs"
# Three blocks: a depthwise-separable block with SE (stride 2), then a residual pair {b1, b2}.
TINY = ArchSpec(name="tiny", stem=StemSpec(16, 3, 2, "hswish"),
                blocks=(BlockSpec("bneck", 3, 2, 16, 16, 8, "relu"), BlockSpec("bneck", 3, 2, 48, 24, 0, "relu"),
                        BlockSpec("bneck", 3, 1, 64, 24, 16, "hswish")),
                head=HeadSpec(conv_channels=48, hidden_channels=64))
TINY_PROXY = {"batch_size": 16, "bn_recalibration_batches": 1, "eval_batch_size": 64}
TINY_RUN = dict(finetune_steps=2, long_finetune_steps=2, pretrain_epochs=0.25, proxy_overrides=dict(TINY_PROXY),
                progress=False, concurrency=2)


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def spec(name: str) -> ArchSpec:
    return load_spec(SPECS / f"{name}.yaml")


def blob_arrays(n, classes=4, resolution=16, seed=0):
    """Images whose class is the position of a bright square: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.integers(0, 60, size=(n, 1, resolution, resolution)).astype(np.uint8)
    half = resolution // 2
    for i, label in enumerate(y):
        r, c = divmod(int(label), 2)
        x[i, :, r * half:(r + 1) * half, c * half:(c + 1) * half] += 150
    return x, y


@pytest.fixture(scope="module")
def blobs():
    (tx, ty), (vx, vy) = blob_arrays(96, seed=0), blob_arrays(32, seed=1)
    return from_arrays(tx, ty, vx, vy, name="blobs")


# ----------------------------------------------------------------------------- proposals
# Hand count from the paper's tables. Table 1 (V3-Large): the stem (16) and bneck 16->16 s1 share
# a skip path; then 24 (s2 opens, 72/24 s1 adds), 40 (s2 + two s1), 80 (s2 + three s1),
# 112 (480/112 s1 opens: its input is 80 wide, so no residual; 672/112 adds), 160 (s2 + two s1).
V3_LARGE_GROUPS = [(STEM, 0), (1, 2), (3, 4, 5), (6, 7, 8, 9), (10, 11), (12, 13, 14)]
# Table 2 (V3-Small): the first bneck has stride 2 (no residual), so the stem and it are alone;
# then 24 (s2 + 88/24 s1), 40 (s2 + two s1), 48 (120/48 s1 opens from 40; 144/48 adds), 96 (s2 + two s1).
V3_SMALL_GROUPS = [(STEM,), (0,), (1, 2), (3, 4, 5), (6, 7), (8, 9, 10)]


@pytest.mark.parametrize("name, expected", [("mobilenet_v3_large", V3_LARGE_GROUPS),
                                            ("mobilenet_v3_small", V3_SMALL_GROUPS)])
def test_residual_groups_match_the_tables(name, expected):
    groups = residual_groups(spec(name))
    assert [g.members for g in groups] == expected
    widths = {"mobilenet_v3_large": [16, 24, 40, 80, 112, 160], "mobilenet_v3_small": [16, 16, 24, 40, 48, 96]}
    assert [g.channels for g in groups] == widths[name]


def _check_child(parent: ArchSpec, child: ArchSpec) -> None:
    assert ArchSpec.from_dict(child.to_dict()) == child  # validates again, round trip exact
    for i, block in enumerate(child.blocks):
        in_channels = child.block_inputs[i][0]
        assert child.has_residual(i) == parent.has_residual(i)  # no skip lost, none added
        if child.has_residual(i):
            assert in_channels == block.out_channels and block.stride == 1
        # an expansion layer neither appears nor disappears
        assert (block.expansion_channels != in_channels) == \
               (parent.blocks[i].expansion_channels != parent.block_inputs[i][0])
        if parent.blocks[i].se_channels == se_width(parent.blocks[i].expansion_channels):
            assert block.se_channels == se_width(block.expansion_channels)
    for group in residual_groups(child):
        widths = {child.stem.out_channels if m == STEM else child.blocks[m].out_channels for m in group.members}
        assert len(widths) == 1


@pytest.mark.parametrize("name", ["mobilenet_v3_large", "mobilenet_v3_small", "mnasnet_a1", "mobilenet_v2"])
def test_every_proposal_keeps_every_skip_valid_and_meets_the_step(name):
    parent = spec(name)
    parent_ms = predict_ms(parent, "pixel1")
    step = 0.01 * parent_ms
    proposals = make_proposals(parent, step, "pixel1")
    kinds = [p.kind for p in proposals]
    groups = residual_groups(parent)
    assert kinds.count("bottleneck") == len(groups)
    feasible = [p for p in proposals if p.feasible]
    assert len(feasible) >= len(proposals) // 2
    for p in feasible:
        _check_child(parent, p.spec)
        assert p.to_channels % 8 == 0 and p.to_channels < p.from_channels
        assert p.cut_ms >= step - 1e-12
        assert p.latency_ms == pytest.approx(predict_ms(p.spec, "pixel1"))
        if p.kind == "bottleneck":
            assert {p.spec.stem.out_channels if m == STEM else p.spec.blocks[m].out_channels
                    for m in p.layers} == {p.to_channels}
        else:
            assert p.spec.blocks[p.layers[0]].expansion_channels == p.to_channels
    for p in proposals:
        if not p.feasible:
            assert p.reason


def test_the_chosen_width_is_the_largest_multiple_of_8_that_meets_the_step():
    # Independent of the proposal code: widths of V3-Small's block 4 expansion set by hand.
    parent = spec("mobilenet_v3_small")
    parent_ms = predict_ms(parent, "pixel1")
    step = 0.02 * parent_ms

    def with_expansion(width):
        blocks = list(parent.blocks)
        blocks[4] = dataclasses.replace(blocks[4], expansion_channels=width, se_channels=se_width(width))
        return parent.replace(blocks=tuple(blocks))

    cuts = {w: parent_ms - predict_ms(with_expansion(w), "pixel1") for w in range(232, 7, -8)}
    expected = max(w for w, cut in cuts.items() if cut >= step)
    proposal = next(p for p in make_proposals(parent, step, "pixel1") if p.name == "expansion:b4")
    assert proposal.to_channels == expected
    assert proposal.spec == with_expansion(expected)
    assert proposal.next_width_cut_ms == pytest.approx(cuts[expected + 8]) and cuts[expected + 8] < step


def test_group_shrink_follows_consumers_and_never_adds_a_residual():
    large = spec("mobilenet_v3_large")
    child = shrink_group(large, residual_groups(large)[0], 8)  # stem + b0 (a depthwise-separable block)
    assert child.stem.out_channels == child.blocks[0].out_channels == child.blocks[0].expansion_channels == 8
    assert child.has_residual(0)
    small = spec("mobilenet_v3_small")
    child = shrink_group(small, residual_groups(small)[4], 40)  # b6+b7: 48 -> 40, b6's input is 40 wide
    assert child.blocks[6].out_channels == child.block_inputs[6][0] == 40
    assert not child.has_residual(6) and child.blocks[6].skip is False and child.has_residual(7)
    child = shrink_expansion(small, 9, 512)
    assert child.blocks[9].expansion_channels == 512 and child.blocks[9].se_channels == se_width(512) == 128


def test_proposals_that_cannot_meet_the_step_are_skipped_with_the_reason():
    parent = spec("mobilenet_v3_small")
    proposals = make_proposals(parent, 0.5 * predict_ms(parent, "pixel1"), "pixel1")
    assert not any(p.feasible for p in proposals)
    assert all("below the step target" in p.reason for p in proposals)
    narrow = shrink_group(parent, residual_groups(parent)[0], 8)
    stem = make_proposals(narrow, 0.001, "pixel1")[0]
    assert stem.name == "bottleneck:stem" and not stem.feasible and "minimum width" in stem.reason
    with pytest.raises(ValueError, match="step_ms"):
        make_proposals(parent, 0.0, "pixel1")


# ----------------------------------------------------------------------------- weights
def _randomise(model: torch.nn.Module, seed: int = 0) -> dict:
    """Random weights and BN statistics (so that every tensor matters)."""
    gen = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    for key, value in state.items():
        if value.is_floating_point():
            noise = torch.randn(value.shape, generator=gen)
            state[key] = noise.abs() + 0.5 if key.endswith("running_var") else noise * 0.5
    model.load_state_dict(state)
    return model.state_dict()


def _proxy(s: ArchSpec) -> ArchSpec:
    return s.replace(resolution=32, num_classes=5)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mobilenet_v3_large", "mnasnet_a1", "mobilenet_v2"])
def test_tensor_layout_describes_the_built_network(name):
    s = _proxy(spec(name))
    layout, sizes = tensor_layout(s), channel_sizes(s)
    state = build(s).state_dict()
    assert list(layout) == list(state)
    for key, tensor in state.items():
        assert len(layout[key].spaces) == tensor.dim(), key
        for space, size in zip(layout[key].spaces, tensor.shape):
            assert space is None or sizes[space] == size, key


def test_unshrunk_network_outputs_are_preserved_exactly():
    parent = _proxy(spec("mobilenet_v3_small"))
    model = build(parent).eval()
    state = _randomise(model)
    child = build(parent).eval()
    child.load_state_dict(inherit(state, parent, parent))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(child(x), model(x))


def test_shrunk_network_keeps_exactly_the_largest_norm_filters():
    parent = _proxy(spec("mobilenet_v3_small"))
    state = _randomise(build(parent))
    # Block 4 (features.5): expansion 240 -> 200, SE 64 -> 48; layers: 0 expand, 1 depthwise, 2 SE, 3 project.
    child = _proxy(shrink_expansion(spec("mobilenet_v3_small"), 4, 200))
    new = inherit(state, parent, child)
    p = "features.5.block"
    norms = state[f"{p}.0.0.weight"].flatten(1).norm(dim=1)
    kept = torch.topk(norms, 200).indices.sort().values
    assert torch.equal(new[f"{p}.0.0.weight"], state[f"{p}.0.0.weight"][kept])
    assert torch.equal(new[f"{p}.0.1.running_var"], state[f"{p}.0.1.running_var"][kept])
    assert torch.equal(new[f"{p}.1.0.weight"], state[f"{p}.1.0.weight"][kept])  # depthwise filters
    assert torch.equal(new[f"{p}.3.0.weight"], state[f"{p}.3.0.weight"][:, kept])  # projection inputs
    se_norms = state[f"{p}.2.fc1.weight"].flatten(1).norm(dim=1)
    assert se_width(200) == 48
    se_kept = torch.topk(se_norms, 48).indices.sort().values
    assert torch.equal(new[f"{p}.2.fc1.weight"], state[f"{p}.2.fc1.weight"][se_kept][:, kept])
    assert torch.equal(new[f"{p}.2.fc2.weight"], state[f"{p}.2.fc2.weight"][kept][:, se_kept])
    # A residual group (b3+b4+b5, 40 -> 32): one index set, ranked by the norms over its three projections.
    group = residual_groups(parent)[3]
    child = _proxy(shrink_group(spec("mobilenet_v3_small"), group, 32))
    projections = ["features.4.block.3.0.weight", "features.5.block.3.0.weight", "features.6.block.3.0.weight"]
    summed = sum(state[k].flatten(1).pow(2).sum(1) for k in projections)
    kept = torch.topk(summed, 32).indices.sort().values
    assert torch.equal(kept_channels(state, parent, child)["bottleneck:b3+b4+b5"], kept)
    new = inherit(state, parent, child)
    for key in projections:
        assert torch.equal(new[key], state[key][kept])
    assert torch.equal(new["features.5.block.0.0.weight"], state["features.5.block.0.0.weight"][:, kept])
    assert torch.equal(new["features.7.block.0.0.weight"], state["features.7.block.0.0.weight"][:, kept])


@pytest.mark.parametrize("proposal", ["bottleneck:stem", "bottleneck:b3+b4+b5", "expansion:b9",
                                      "bottleneck:b8+b9+b10"])
def test_removing_dead_channels_leaves_the_outputs_unchanged(proposal):
    """Zero the filters (and BN affine and mean) of the channels a proposal removes: they then
    contribute nothing, so the shrunk network must compute the same function. This checks that every
    consumer (depthwise, SE, projection, next block, head) drops exactly the matching inputs."""
    base = spec("mobilenet_v3_small")
    p = next(q for q in make_proposals(base, 0.001, "pixel1") if q.name == proposal)
    parent, child = _proxy(base), _proxy(p.spec)
    model = build(parent).eval()
    state = _randomise(model, seed=1)
    psizes, csizes = channel_sizes(parent), channel_sizes(child)
    layout = tensor_layout(parent)
    dead = {space: torch.arange(csizes[space], psizes[space]) for space in psizes if csizes[space] < psizes[space]}
    assert dead
    for key, slot in layout.items():
        space = slot.spaces[0] if slot.spaces else None
        if space in dead and (slot.filters or key.endswith((".1.weight", ".1.bias", "running_mean", "fc1.bias"))):
            state[key][dead[space]] = 0
    model.load_state_dict(state)
    shrunk = build(child).eval()
    shrunk.load_state_dict(inherit(state, parent, child))
    for space, removed in dead.items():
        assert torch.equal(kept_channels(state, parent, child)[space], torch.arange(csizes[space]))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(shrunk(x), model(x), rtol=1e-4, atol=1e-5)


def test_weights_that_do_not_fit_are_refused_naming_the_first_mismatched_tensor(tmp_path):
    small = _proxy(spec("mobilenet_v3_small"))
    state = build(small).state_dict()
    child = _proxy(shrink_group(spec("mobilenet_v3_small"), residual_groups(small)[2], 16))  # b1+b2: 24 -> 16
    with pytest.raises(WeightsMismatch, match=r"first mismatched tensor 'features.2.block.2.0.weight'") as err:
        check_fits(state, child)
    assert err.value.tensor == "features.2.block.2.0.weight" and "(16, 72, 1, 1)" in str(err.value)
    missing = {k: v for k, v in state.items() if k != "features.3.block.1.1.running_mean"}
    with pytest.raises(WeightsMismatch, match="features.3.block.1.1.running_mean.*missing"):
        check_fits(missing, small)
    with pytest.raises(WeightsMismatch, match="'extra.weight'.*not in the spec"):
        check_fits({**state, "extra.weight": torch.zeros(1)}, small)
    save_weights(state, tmp_path / "w.pt")
    assert all(torch.equal(v, state[k]) for k, v in load_weights(tmp_path / "w.pt").items())
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="weights_only=True"):
        load_weights(tmp_path / "bad.pt")


# ----------------------------------------------------------------------------- selection and schedule
def test_ratio_and_accuracy_selection_choose_differently():
    parent_accuracy = 0.80
    results = [  # A loses a little more accuracy but cuts five times as much latency
        {"index": 0, "status": "ok", "accuracy_after": 0.790, "cut_ms": 1.0},
        {"index": 1, "status": "ok", "accuracy_after": 0.795, "cut_ms": 0.2},
        {"index": 2, "status": "diverged", "accuracy_after": None, "cut_ms": 5.0},
    ]
    assert selection_metric(0.790, parent_accuracy, 1.0, "ratio") == pytest.approx(-0.010)
    assert selection_metric(0.795, parent_accuracy, 0.2, "ratio") == pytest.approx(-0.025)
    assert select_proposal(results, parent_accuracy, "ratio")["index"] == 0
    assert select_proposal(results, parent_accuracy, "accuracy")["index"] == 1
    tie = [dict(results[1], index=3), results[1]]
    assert select_proposal(tie, parent_accuracy, "accuracy")["index"] == 1  # ties go to the lower index
    assert select_proposal([results[2]], parent_accuracy, "ratio") is None


def test_selection_noise_is_pooled_over_iterations_and_leaves_the_winners_curse_out():
    """The noise of a choice, on a simulated run with a known seed noise sigma: every iteration,
    16 near-tied proposals scored once, the best re-scored with other seeds. One iteration's two
    scores of its winner (the old estimate) overstate sigma (the first is a maximum of 16) and have
    one degree of freedom; the pooled estimates come near sigma."""
    import numpy as np

    from netadapt.selection import pooled_noise_accuracy

    rng = np.random.default_rng(0)
    sigma, iterations = 0.02, 300
    groups1, groups2, old = [], [], []
    for _ in range(iterations):
        true = rng.normal(0.5, 0.002, 16)
        first = true + rng.normal(0, sigma, 16)
        winner = int(np.argmax(first))
        rescores = list(true[winner] + rng.normal(0, sigma, 2))
        groups1.append((float(first[winner]), rescores[:1]))
        groups2.append((float(first[winner]), rescores))
        old.append(abs(first[winner] - rescores[0]) / np.sqrt(2))  # sd of the winner's two scores
    assert np.sqrt(np.mean(np.square(old))) > 1.3 * sigma  # the defect: the winner's curse inflates it
    two, dof = pooled_noise_accuracy(groups2)
    assert dof == iterations and two == pytest.approx(sigma, rel=0.1)
    one, dof = pooled_noise_accuracy(groups1)
    assert dof == iterations - 1 and 0.7 * sigma < one < 1.1 * sigma
    assert pooled_noise_accuracy(groups1[:1]) == (None, 0)  # one iteration, one re-score: no estimate


def test_pooled_noise_of_finished_histories_on_known_numbers(tmp_path, capsys):
    from netadapt.noise import main

    rows = ["iteration,chosen,lead,margin,noise,noise_accuracy,latency_cut_ms",
            "0,True,,,,,", "1,True,0.05,0.2,0.02,0.03,0.5", "1,False,,,,,0.4", "2,True,0.03,0.01,0.06,0.04,0.5"]
    (tmp_path / "history.csv").write_text("\n".join(rows) + "\n")
    assert main([str(tmp_path / "history.csv")]) == 0
    out = json.loads(capsys.readouterr().out)
    rms = ((0.03 ** 2 + 0.04 ** 2) / 2) ** 0.5  # 0.0354; per ms of a 0.5 ms cut: 0.0707
    assert out["iterations"] == 2 and out["pooled_noise_accuracy_rms"] == pytest.approx(rms)
    assert (out["lead_exceeds_recorded_noise"], out["lead_exceeds_pooled_noise"]) == (1, 0)
    assert (out["margin_exceeds_recorded_noise"], out["margin_exceeds_pooled_noise"]) == (1, 1)
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing.csv")])


def test_step_schedules():
    config = NetAdaptConfig(spec=TINY, budget_ratio=0.9)
    assert step_ms_at(1, 20.0, config) == step_ms_at(7, 20.0, config) == pytest.approx(0.2)
    assert expected_iterations(20.0, 18.0, config) == 10
    decay = NetAdaptConfig(spec=TINY, budget_ratio=0.9, schedule="decay", step_decay=0.5, step_ms=1.0)
    assert [step_ms_at(k, 20.0, decay) for k in (1, 2, 3)] == [1.0, 0.5, 0.25]
    for bad, match in [(dict(budget_ratio=0.9, budget_ms=3.0), "exactly one"), (dict(budget_ratio=-1), "budget_ratio"),
                       (dict(budget_ratio=0.9, select="best"), "select"),
                       (dict(budget_ratio=0.9, step_ratio=0.0), "step_ratio")]:
        with pytest.raises(NetAdaptError, match=match):
            NetAdaptConfig(spec=TINY, **bad).check()


# ----------------------------------------------------------------------------- runs
def test_tiny_run_end_to_end(tmp_path, blobs, ray_session):
    out = tmp_path / "run"
    result = run_netadapt(NetAdaptConfig(spec=TINY, budget_ratio=0.7, step_ratio=0.05, data=blobs, out=str(out),
                                         **TINY_RUN))
    assert result.status == "done" and result.latency_ms <= result.budget_ms
    assert result.budget_ms == pytest.approx(0.7 * predict_ms(TINY, "pixel1"))
    history = pd.read_csv(out / "history.csv")
    for column in ["iteration", "proposal", "channels", "predicted_latency_ms", "accuracy_before", "accuracy_after",
                   "metric", "chosen"]:
        assert column in history.columns
    iterations = history[history["iteration"] > 0]
    assert iterations.groupby("iteration")["chosen"].sum().eq(1).all()
    assert result.iterations == iterations["iteration"].max() >= 2
    evaluated = iterations[iterations["status"] == "ok"]
    assert (evaluated["latency_cut_ms"] >= evaluated["step_target_ms"] - 1e-12).all()
    assert evaluated["accuracy_after"].between(0, 1).all() and evaluated["accuracy_before"].between(0, 1).all()
    final = load_spec(out / "final.yaml")
    assert final.hash == result.spec.hash and predict_ms(final, "pixel1") <= result.budget_ms
    assert final.hash == load_spec(out / f"iter_{result.iterations:02d}.yaml").hash
    check_fits(load_weights(out / "final.pt"), final.replace(resolution=16, num_classes=4, in_channels=1))
    assert (out / "trajectory.png").stat().st_size > 1000
    assert not (out / "proposals").exists() or not any((out / "proposals").rglob("*.pt"))
    with pytest.raises(NetAdaptError, match="--resume"):
        run_netadapt(NetAdaptConfig(spec=TINY, budget_ratio=0.85, step_ratio=0.05, data=blobs, out=str(out),
                                    **TINY_RUN))
    # A damaged line in a finished run's journal costs only itself: the resume keeps every record
    # around it, cuts nothing and redoes nothing.
    journal = out / "journal.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    assert json.loads(lines[0])["type"] == "seed" and json.loads(lines[-1])["type"] == "final"
    journal.write_text("".join(lines[:1] + ["garbage\n"] + lines[1:]))
    damaged = journal.read_bytes()
    resume = NetAdaptConfig(spec=TINY, budget_ratio=0.7, step_ratio=0.05, data=blobs, out=str(out), resume=True,
                            **TINY_RUN)
    with pytest.warns(JournalWarning, match=rf"{journal}:2: damaged journal line skipped"):
        again = run_netadapt(resume)
    assert journal.read_bytes() == damaged
    assert (again.status, again.iterations, again.spec.hash) == (result.status, result.iterations, result.spec.hash)
    # A torn last line (a kill mid-write) is all a resume may cut.
    with open(journal, "a") as f:
        f.write('{"type": "fin')
    with pytest.warns(JournalWarning) as caught:
        run_netadapt(resume)
    assert f"{journal}:{len(lines) + 2}: cut a torn last line" in "\n".join(str(w.message) for w in caught)
    assert journal.read_bytes() == damaged


def test_zero_step_scores_recovery_fine_tune_and_noise_are_recorded(tmp_path, blobs, ray_session):
    """T = 0: proposals are scored right after inheriting (untrained: after == before), only the
    chosen one is fine-tuned (its accuracy is the next parent's), and each iteration's chosen
    proposal is scored once more with another seed: noise, lead and margin in history.csv."""
    out = tmp_path / "run"
    run = {**TINY_RUN, "finetune_steps": 0}
    result = run_netadapt(NetAdaptConfig(spec=TINY, budget_ratio=0.8, step_ratio=0.05, data=blobs, out=str(out),
                                         chosen_finetune_steps=3, noise_seeds=2, **run))
    assert result.status == "done" and result.iterations >= 1
    history = pd.read_csv(out / "history.csv")
    scored = history[(history["iteration"] > 0) & (history["status"] == "ok")]
    assert (scored["accuracy_after"] == scored["accuracy_before"]).all()  # no short-term fine-tune
    assert scored["seconds"].notna().all()
    records = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    chosen = [r for r in records if r["type"] == "chosen"]
    noise = [r for r in records if r["type"] == "noise"]
    assert len(noise) == 2 * len(chosen) == 2 * result.iterations
    assert all(r["recovery_steps"] == 3 for r in chosen)
    assert all(0 <= r["accuracy"] <= 1 and r["score"] == pytest.approx(
        history[(history["iteration"] == r["iteration"]) & history["chosen"]]["accuracy_after"].iloc[0]) for r in chosen)
    rows = history[history["chosen"] & (history["iteration"] > 0)]
    assert rows["noise"].notna().all() and rows["noise"].ge(0).all()
    for column in ("lead", "margin", "lead_exceeds_noise", "margin_exceeds_noise", "noise_accuracy"):
        assert column in history.columns
    # the noise is pooled over the iterations (the chosen proposal's own score, a maximum, left out
    # when there are two re-scores): sd of the re-scores around each iteration's mean
    last = chosen[-1]
    squares = dof = 0
    for r in chosen:
        scores = [n["accuracy_after"] for n in noise if n["iteration"] == r["iteration"]]
        squares += sum((s - sum(scores) / len(scores)) ** 2 for s in scores)
        dof += len(scores) - 1
    assert last["noise_dof"] == dof == result.iterations and last["noise_accuracy"] == pytest.approx((squares / dof) ** 0.5)
    assert last["noise"] == pytest.approx(last["noise_accuracy"] / last["cut_ms"])
    final = history[history["chosen"] & (history["iteration"] > 0)]
    assert final["noise_accuracy"].eq(last["noise_accuracy"]).all()  # history.csv: the whole run's pool


class _Killed(Exception):
    pass


def test_a_lost_chosen_record_retrains_no_proposal(tmp_path, blobs, ray_session):
    """A kill right after an iteration's choice is journaled, then that record lost (cut with a torn
    write, a damaged line): the resume chooses again from the proposals' kept weights, training none."""
    out = tmp_path / "run"
    config = dict(spec=TINY, budget_ratio=0.7, step_ratio=0.05, data=blobs, out=str(out), **TINY_RUN)

    def kill_after_the_first_choice(message: str) -> None:
        if message.startswith("iteration 1:"):
            raise _Killed(message)

    with pytest.raises(_Killed):
        run_netadapt(NetAdaptConfig(**config), log=kill_after_the_first_choice)
    journal = out / "journal.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    assert json.loads(lines[-1])["type"] == "chosen"
    journal.write_text("".join(lines[:-1]))  # the chosen record is lost
    trained = [json.loads(line) for line in lines if json.loads(line)["type"] == "proposal"]
    result = run_netadapt(NetAdaptConfig(**config, resume=True), log=lambda message: None)
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    first = [r for r in records if r["type"] == "proposal" and r["iteration"] == 1]
    assert first == trained  # not one proposal of iteration 1 trained again
    chosen = [r for r in records if r["type"] == "chosen"]
    assert [r["iteration"] for r in chosen] == list(range(1, result.iterations + 1))
    assert not (out / "proposals").exists() or not any((out / "proposals").rglob("*.pt"))


def test_a_measured_target_profiles_the_widths_it_lacks_on_demand(tmp_path, blobs, ray_session):
    from latency import load_table
    from latency.backends import Protocol, get_backend
    from latency.profiler import profile_ops

    seed = TINY.replace(resolution=32)
    table = tmp_path / "ort.csv"  # a tiny ONNX Runtime table with the seed's ops only
    profile_ops(seed.op_keys(), get_backend("onnxruntime", 1), table, Protocol(warmup=1, repeats=3, rounds=2),
                progress=False, log=None)
    target = tmp_path / "tiny-ort.yaml"
    target.write_text(f"kind: measured\nbackend: onnxruntime\nthreads: 1\ntable: {table}\n")
    measured = len(load_table(table))
    out = tmp_path / "run"
    run_netadapt(NetAdaptConfig(spec=seed, target=str(target), budget_ratio=0.5, step_ratio=0.05,
                                kinds=("expansion",), max_iterations=1, data=blobs, out=str(out), **TINY_RUN))
    proposals = next(r for r in Journal(out / "journal.jsonl").read() if r["type"] == "iteration")["proposals"]
    assert proposals and not any("latency table" in p["reason"] for p in proposals)
    grown = load_table(table)
    assert len(grown) > measured  # the widths the proposals tried, measured and kept in the table
    for p in proposals:
        if p["to_channels"] is not None:
            child = shrink_expansion(seed, p["layers"][0], p["to_channels"])
            assert predict_ms(child, grown) == pytest.approx(p["latency_ms"])


def test_budget_at_or_above_the_current_latency_finishes_immediately(tmp_path, blobs):
    latency = predict_ms(TINY, "pixel1")
    result = run_netadapt(NetAdaptConfig(spec=TINY, budget_ms=latency, data=blobs, out=str(tmp_path / "a"), **TINY_RUN))
    assert result.status == "within_budget" and result.iterations == 0
    assert "at or above the current latency" in result.message
    assert load_spec(tmp_path / "a" / "final.yaml") == TINY
    assert not (tmp_path / "a" / "journal.jsonl").exists()  # nothing was trained


def test_a_resume_that_would_change_the_resolved_signal_is_refused(tmp_path, blobs):
    """--gpus-per-proposal switches the profile (and device): a resume compares the resolved
    signal, not the raw flags, and names what changed in one line."""
    latency = predict_ms(TINY, "pixel1")
    run = dict(spec=TINY, budget_ms=latency, data=blobs, out=str(tmp_path / "a"), **TINY_RUN)
    run_netadapt(NetAdaptConfig(**run))
    with pytest.raises(NetAdaptError) as err:
        run_netadapt(NetAdaptConfig(**run, resume=True, gpus_per_proposal=1.0))
    message = str(err.value)
    assert "\n" not in message and message.startswith("resume: the accuracy signal changed: ")
    assert "profile was 'cpu', now 'gpu'" in message and "start a new --out" in message
    assert run_netadapt(NetAdaptConfig(**run, resume=True)).status == "within_budget"


def test_unreachable_budget_stops_and_keeps_the_best_spec(tmp_path, blobs, ray_session):
    out = tmp_path / "run"
    result = run_netadapt(NetAdaptConfig(spec=TINY, budget_ms=0.5, step_ratio=0.2, data=blobs, out=str(out),
                                         **TINY_RUN))
    assert result.status == "unreachable" and not result.ok
    assert "unreachable" in result.message and "Kept the best spec reached" in result.message
    assert result.iterations >= 1 and result.latency_ms > result.budget_ms
    final = load_spec(out / "final.yaml")
    assert final.hash == load_spec(out / f"iter_{result.iterations:02d}.yaml").hash
    assert predict_ms(final, "pixel1") == pytest.approx(result.latency_ms)
    assert result.latency_ms < result.initial_latency_ms
    last = pd.read_csv(out / "history.csv").query(f"iteration == {result.iterations + 1}")
    assert len(last) and (last["status"] == "skipped").all() and last["reason"].str.len().min() > 0


# ----------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    """A tiny spec YAML and an image folder of blobs (4 classes)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("cli")
    TINY.to_yaml(root / "tiny.yaml")
    x, y = blob_arrays(96, seed=2)
    for i, (image, label) in enumerate(zip(x, y)):
        folder = root / "images" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0]).save(folder / f"{i}.png")
    return root


def _cli(files: Path, out: Path, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "netadapt.run", str(files / "tiny.yaml"), "--target", "pixel1",
            "--data", f"imagefolder:{files / 'images'}", "--out", str(out), "--no-progress",
            "--finetune-steps", "2", "--long-finetune-steps", "2", "--pretrain-epochs", "0.25"]
    args += [arg for key, value in TINY_PROXY.items() for arg in ("--proxy", f"{key}={value}")]
    return args + list(extra)


def test_cuda_proposals_need_gpus_per_proposal(tmp_path, blobs):
    run = dict(TINY_RUN, proxy_overrides={**TINY_PROXY, "device": "cuda"})
    with pytest.raises(NetAdaptError, match=r"proxy.device: 'cuda' needs GPUs for the proposals; pass "
                                            r"--gpus-per-proposal 1"):
        run_netadapt(NetAdaptConfig(spec=TINY, budget_ratio=0.9, data=blobs, out=str(tmp_path / "a"), **run))
    with pytest.raises(NetAdaptError, match="gpus_per_proposal: -1 must be >= 0"):
        NetAdaptConfig(spec=TINY, budget_ratio=0.9, gpus_per_proposal=-1).check()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_proposal_fine_tuned_on_cuda_matches_the_cpu(blobs):
    from proxytask.train import ProxyConfig
    from netadapt.finetune import evaluate_proposal, finetune_config

    parent = TINY.replace(resolution=16, num_classes=4, in_channels=1)
    child = parent.replace(blocks=(parent.blocks[0], dataclasses.replace(parent.blocks[1], expansion_channels=32),
                                   parent.blocks[2]))
    torch.manual_seed(0)
    state = build(parent).state_dict()
    proxy = finetune_config(ProxyConfig(**TINY_PROXY), blobs, steps=4, lr=0.01, seed=0)
    results = {}
    for device in ("cpu", "cuda"):
        job = {"index": 0, "spec": child.to_dict(), "parent_spec": parent.to_dict(),
               "proxy": dataclasses.asdict(proxy.replace(device=device))}
        results[device] = evaluate_proposal(job, state, blobs)
    assert results["cuda"]["status"] == "ok", results["cuda"]["reason"]
    assert all(v.device.type == "cpu" for v in results["cuda"]["state"].values())  # sent back as CPU tensors
    assert results["cuda"]["train_loss"] == pytest.approx(results["cpu"]["train_loss"], rel=1e-3)


def test_cli_bad_inputs(tmp_path, cli_files):
    done = subprocess.run(_cli(cli_files, tmp_path / "same", "--budget-ratio", "1.0"), cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "at or above the current latency" in done.stdout
    assert load_spec(tmp_path / "same" / "final.yaml") == TINY
    other = TINY.replace(stem=dataclasses.replace(TINY.stem, out_channels=24))
    save_weights(build(other.replace(resolution=32, num_classes=4, in_channels=1)).state_dict(), tmp_path / "w.pt")
    refused = subprocess.run(_cli(cli_files, tmp_path / "w", "--budget-ratio", "0.9", "--weights",
                                  str(tmp_path / "w.pt")), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    assert "first mismatched tensor 'features.0.0.weight'" in refused.stderr


def test_resume_after_killing_a_real_run(tmp_path, cli_files, ray_session):
    out = tmp_path / "killed"
    cmd = _cli(cli_files, out, "--budget-ratio", "0.85", "--step-ratio", "0.05", "--address", ray_session,
               "--concurrency", "1")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = out / "journal.jsonl"

    def proposals() -> list[dict]:
        lines = journal.read_text().splitlines() if journal.exists() else []
        return [r for r in map(_maybe_json, lines) if r and r["type"] == "proposal"]

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and len(proposals()) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    _, stderr = proc.communicate()
    before = [r for r in map(_maybe_json, journal.read_text().splitlines()) if r]
    finished = [(r["iteration"], r["index"]) for r in before if r["type"] == "proposal"]
    assert finished, f"no proposal finished before the kill: {stderr[-2000:]}"
    assert not any(r["type"] == "final" for r in before), "the run finished before it was killed"
    result = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming iteration 1: " in result.stdout  # killed mid-iteration: 2+ of its 5 proposals were done
    after = [json.loads(line) for line in journal.read_text().splitlines()]
    assert after[:len(before)] == before  # nothing journaled before the kill was rewritten
    done = [(r["iteration"], r["index"]) for r in after if r["type"] == "proposal"]
    assert len(done) == len(set(done))  # no finished proposal was run again
    assert set(finished) <= set(done)
    assert sum(r["type"] == "seed" for r in after) == 1 and sum(r["type"] == "final" for r in after) == 1
    final = load_spec(out / "final.yaml")
    assert predict_ms(final, "pixel1") <= 0.85 * predict_ms(TINY, "pixel1") + 1e-9
    assert (out / "final.pt").exists() and (out / "trajectory.png").exists()


def _maybe_json(line: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_bytes(b""), "is an empty file (0 bytes)"),  # used to be an IndexError
    (lambda p: p.write_bytes(b"\x00\x01 not a torch file"), "readable with weights_only=True"),
    (lambda p: torch.save([torch.zeros(2)], p), "does not hold a state dict of tensors"),
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: None, "does not exist"),
], ids=["empty", "garbage", "list", "folder", "missing"])
def test_every_unreadable_weights_file_is_one_value_error_naming_it(tmp_path, make, words):
    path = tmp_path / "w.pt"
    make(path)
    with pytest.raises(ValueError) as info:
        load_weights(path)
    message = str(info.value)
    assert words in message and str(path) in message and "\n" not in message and len(message) < 400, message


def test_an_iteration_record_with_a_skipped_proposal_is_not_damaged():
    """A skipped proposal has no spec, so its hash is None: the journal check must accept the
    iteration record NetAdapt itself writes (it once skipped it as a damaged line)."""
    from netadapt.proposals import Proposal
    from netadapt.records import record_problem

    skipped = Proposal(index=2, kind="expansion", layers=(3,), from_channels=8, parent_latency_ms=10.0,
                       step_target_ms=9.9, reason="already at the minimum width (8 channels)")
    record = {"type": "iteration", "iteration": 4, "step_ms": 0.19, "step_target_ms": 9.8,
              "proposals": [skipped.to_dict()]}
    assert skipped.to_dict()["hash"] is None
    assert record_problem(record) is None
