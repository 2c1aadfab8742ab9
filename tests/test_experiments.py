"""Section 5 transforms, the regenerated tables and the reproduction pipeline end to end.

Golden figures come from the paper (Tables 1-3, via the rows copied into experiments.tables) or
from hand counts here, never from the code under test.
"""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from search_spaces import ArchSpec, BlockSpec, HeadSpec, SpecError, StemSpec, from_arch_string, load_spec, reference
from latency import predict_ms
from search_spaces.transforms import (efficient_last_stage, fixed_se, hswish_second_half, redesign, stem_16_hswish)

ROOT = Path(__file__).resolve().parents[1]
PRE = ROOT / "experiments" / "specs_pre_redesign"


def original_form(**changes) -> ArchSpec:
    """A small pre-redesign network by hand: 32-filter ReLU stem, MnasNet SE, original last stage."""
    blocks = (
        BlockSpec("bneck", 3, 1, 32, 16, 8, "relu", "sigmoid"),  # depthwise-separable (exp = stem width)
        BlockSpec("bneck", 3, 2, 96, 24, 4, "relu", "sigmoid"),
        BlockSpec("bneck", 5, 2, 72, 40, 0, "relu"),
        BlockSpec("bneck", 3, 2, 240, 80, 10, "relu", "sigmoid"),
        BlockSpec("bneck", 3, 1, 480, 160, 0, "relu"),  # the last block: 80 -> 480 -> dw -> 160
    )
    spec = ArchSpec(name="hand", stem=StemSpec(32, 3, 2, "relu"), blocks=blocks,
                    head=HeadSpec(conv_channels=640, hidden_channels=None, nonlinearity="relu"), resolution=224)
    return spec.replace(**changes) if changes else spec


# ----------------------------------------------------------------------------- the pre-redesign networks
@pytest.mark.parametrize("network", ["large", "small"])
def test_redesign_of_the_pre_redesign_network_is_the_published_one(network):
    pre = load_spec(PRE / f"mobilenet_v3_{network}_pre.yaml")
    published = reference(f"mobilenet_v3_{network}")
    ours = redesign(pre)
    assert ours.replace(name=published.name) == published
    assert ours.hash == published.hash
    # The pre-redesign form really is the other form: original last stage, 32-filter ReLU stem, ReLU only.
    assert pre.head.form == "original" and pre.stem == StemSpec(32, 3, 2, "relu")
    assert {b.nonlinearity for b in pre.blocks} == {"relu"} and len(pre.blocks) == len(published.blocks) + 1


@pytest.mark.parametrize("network, table, known", [("large", "PAPER_TABLE1", set()),
                                                     ("small", "PAPER_TABLE2", {"conv"})])
def test_redesigned_network_matches_the_paper_rows(network, table, known):
    from experiments import tables

    pre = load_spec(PRE / f"mobilenet_v3_{network}_pre.yaml")
    df = tables.compare_structure(redesign(pre), getattr(tables, table), "Table 1" if network == "large" else "Table 2")
    assert set(df.loc[df["differs"] != "", "layer"]) == known  # Table 2's SE tick on the 576 conv only
    assert (df.loc[df["layer"].isin(known), "note"] != "").all()


def test_efficient_last_stage_on_the_paper_large_saves_latency():
    from latency import predict_ms

    pre = load_spec(PRE / "mobilenet_v3_large_pre.yaml")
    after = efficient_last_stage(pre)
    # Figure 5: the 960 expansion stays as the head conv, 1280 moves past the pool, 320 and the dw go.
    assert (after.head.conv_channels, after.head.hidden_channels) == (960, 1280)
    assert predict_ms(after, "pixel1") < predict_ms(pre, "pixel1") - 5  # the paper: 7 ms (11 %) saved


# ----------------------------------------------------------------------------- each transform alone
def test_efficient_last_stage_alone():
    spec = original_form()
    out = efficient_last_stage(spec)
    assert out.blocks == spec.blocks[:-1] and out.stem == spec.stem
    assert out.head == HeadSpec(conv_channels=480, hidden_channels=640, nonlinearity="relu")
    assert spec.head.hidden_channels is None  # pure: the input is unchanged
    # Hand count of what goes: the last block's dw 3x3 (480 ch at 14x14) and projection 480->160 at
    # 14x14, the 160->640 conv at 14x14; what comes: 480->640 at 1x1. The 80->480 expansion stays.
    from search_spaces import count_madds

    removed = 196 * 9 * 480 + 196 * 480 * 160 + 196 * 160 * 640
    assert count_madds(spec) - count_madds(out) == removed - 480 * 640


def test_stem_16_hswish_alone():
    spec = original_form()
    out = stem_16_hswish(spec)
    assert out.stem == StemSpec(16, 3, 2, "hswish")
    # The depthwise-separable first block stays one (expansion = its new input) and gets its residual.
    assert out.blocks[0].expansion_channels == 16 and out.has_residual(0) and not spec.has_residual(0)
    assert out.blocks[1:] == spec.blocks[1:]
    # A first block with an expansion layer keeps its widths.
    first = dataclasses.replace(spec.blocks[0], expansion_channels=96)
    assert stem_16_hswish(spec.replace(blocks=(first, *spec.blocks[1:]))).blocks[0].expansion_channels == 96


def test_hswish_second_half_alone():
    spec = original_form()
    out = hswish_second_half(spec)  # block outputs 112, 56, 28, 14, 14: h-swish from block 3 (the first at 14x14)
    assert [b.nonlinearity for b in out.blocks] == ["relu", "relu", "relu", "hswish", "hswish"]
    assert out.head.nonlinearity == "hswish" and out.stem == spec.stem
    assert [b.nonlinearity for b in hswish_second_half(spec, from_index=1).blocks] == ["relu"] + ["hswish"] * 4
    assert [b.nonlinearity for b in hswish_second_half(spec, from_index=-1).blocks] == ["relu"] * 4 + ["hswish"]
    # The size is the spec's own: at 160 input the first map of 14x14 or less is block 3's 10x10.
    assert hswish_second_half(spec.replace(resolution=160)).blocks[3].nonlinearity == "hswish"
    assert hswish_second_half(spec.replace(resolution=160)).blocks[2].nonlinearity == "relu"


def test_fixed_se_alone():
    spec = original_form()
    out = fixed_se(spec)
    # make_divisible(exp / 4, 8) by hand: 32 -> 8, 96 -> 24, 240 -> 64; hard-sigmoid gates.
    assert [b.se_channels for b in out.blocks] == [8, 24, 0, 64, 0]
    assert {b.se_gate for b in out.blocks if b.has_se} == {"hsigmoid"}
    no_se = spec.replace(blocks=tuple(dataclasses.replace(b, se_channels=0) for b in spec.blocks))
    assert fixed_se(no_se) is no_se


def test_redesign_keeps_an_efficient_last_stage_from_the_mobilenetv3_space():
    from search_spaces.spaces import get_space

    space = get_space("mobilenetv3")
    spec = space.decode(tuple(0 for _ in space.decisions))
    out = redesign(spec)
    assert out.head == dataclasses.replace(spec.head, nonlinearity="hswish") and len(out.blocks) == len(spec.blocks)
    assert out.stem == StemSpec(16, 3, 2, "hswish")


@pytest.mark.parametrize("make, call, path, words", [
    (lambda: reference("mobilenet_v3_large"), efficient_last_stage, "head.hidden_channels", "already has"),
    (lambda: original_form(head=HeadSpec(None, None, "relu")), efficient_last_stage, "head.conv_channels", "is null"),
    (lambda: original_form(blocks=original_form().blocks[:1]), efficient_last_stage, "blocks", "has 1 block"),
    (lambda: original_form(blocks=(*original_form().blocks[:4], BlockSpec("conv", 3, 1, None, 160))),
     efficient_last_stage, "blocks[4]", "regular conv"),
    (lambda: original_form(blocks=(*original_form().blocks[:4], BlockSpec("bneck", 3, 1, 80, 160))),
     efficient_last_stage, "blocks[4]", "without expansion layer"),
    (original_form, lambda s: hswish_second_half(s, from_resolution=0), "from_resolution", "not a feature-map"),
    (original_form, lambda s: hswish_second_half(s, from_resolution=2), "from_resolution", "no block"),
    (original_form, lambda s: hswish_second_half(s, from_index=5), "from_index", "not a block index"),
    (lambda: "mobilenet_v3_large", redesign, "spec", "expected an ArchSpec"),
    (lambda: None, fixed_se, "spec", "expected an ArchSpec"),
])
def test_bad_inputs_name_the_field_in_one_line(make, call, path, words):
    with pytest.raises(SpecError) as info:
        call(make())
    assert info.value.path == path and words in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------- the tables
def _tables_command(cwd, *args, prelude=""):
    """``python -m experiments.tables ARGS`` run from ``cwd`` (``prelude``: Python run first)."""
    code = f"{prelude}\nimport sys\nfrom experiments.tables import main\nsys.exit(main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture(scope="module")
def tables_out(tmp_path_factory):
    # No --out: the default writes under runs/tables, never over the committed results/.
    cwd = tmp_path_factory.mktemp("cwd")
    result = _tables_command(cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (cwd / "results").exists()
    return cwd / "runs" / "tables", result.stdout


def test_tables_command_writes_every_file_with_its_command(tables_out):
    out, stdout = tables_out
    tables = ("table1", "table2", "table3", "table5", "table6", "table7", "figure7_points")
    for name in ["tables.md"] + [f"tables_{n}.csv" for n in tables]:
        assert "python -m experiments.tables --out results/" in (out / name).read_text().splitlines()[0]
    for png in ("figure1_top1_vs_p1.png", "figure7_multiplier_resolution.png"):
        assert (out / "figures" / png).read_bytes()[:4] == b"\x89PNG"
    assert "Tables 6 and 7: 2 head tables" in stdout and "holds" in stdout


def test_tables_6_and_7_are_always_included(tables_out):
    out, _ = tables_out
    md = (out / "tables.md").read_text()
    assert "### Table 6: SSDLite" in md and "### Table 7: LR-ASPP" in md and "not available" not in md.lower()
    # The paper's figures (Howard et al. 2019): Table 6, SSDLite on V3 4.97M params; Table 7, LR-ASPP row 8, 1.51M.
    t6 = pd.read_csv(out / "tables_table6.csv", skiprows=1).set_index("backbone")
    t7 = pd.read_csv(out / "tables_table7.csv", skiprows=1).set_index("N")
    assert t6.loc["V3", "paper params (M)"] == 4.97 and abs(t6.loc["V3", "ours params (M)"] / 4.97 - 1) < 0.02
    assert t7.loc[8, "paper params (M)"] == 1.51 and abs(t7.loc[8, "ours params (M)"] / 1.51 - 1) < 0.02


def test_tables_fail_loudly_without_the_heads_package(tmp_path):
    # search_spaces.heads made unimportable: the command must fail, not drop Tables 6 and 7.
    result = _tables_command(tmp_path, "--out", str(tmp_path / "out"),
                             prelude="import sys\nsys.modules['search_spaces.heads'] = None")
    assert result.returncode != 0
    assert not (tmp_path / "out" / "tables.md").exists()


def test_table3_carries_our_counts_close_to_the_paper(tables_out):
    out, _ = tables_out
    t3 = pd.read_csv(out / "tables_table3.csv", skiprows=1).set_index("network")
    # Paper (Table 3): V3-Large 1.0 219M MAdds / 5.4M params; V3-Small 1.0 56M / 2.5M; V3-Large 0.75 155M / 4.0M.
    for label, madds, params in (("V3-Large 1.0", 219, 5.4), ("V3-Small 1.0", 56, 2.5), ("V3-Large 0.75", 155, 4.0)):
        assert t3.loc[label, "MAdds paper (M)"] == madds and t3.loc[label, "params paper (M)"] == params
        assert abs(t3.loc[label, "MAdds ours (M)"] / madds - 1) < 0.02
        assert abs(t3.loc[label, "params ours (M)"] / params - 1) < 0.02
    assert np.isnan(t3.loc["Proxyless", "MAdds ours (M)"]) and "no spec" in t3.loc["Proxyless", "note"]
    assert t3["P-1 ours (ms)"].drop("Proxyless").gt(0).all() and len(t3) == 9
    # Mnas-small: the paper's network (65.1M MAdds) was never released; its P-1 is not compared.
    assert t3.loc["Mnas-small", "MAdds paper (M)"] == 65.1 and "never released" in t3.loc["Mnas-small", "note"]
    assert t3.loc[["Mnas-small", "Proxyless"], ["P-1 LOO (ms)", "P-1 LOFO (ms)", "P-1 diff %"]].isna().all().all()
    assert t3["P-1 LOFO (ms)"].drop(["Mnas-small", "Proxyless"]).gt(0).all()


def test_table5_order_and_structure_tables(tables_out):
    out, _ = tables_out
    md = (out / "tables.md").read_text()
    assert "Ours: relu < hswish@112 < default < hswish@16: holds" in md
    t2 = pd.read_csv(out / "tables_table2.csv", skiprows=1)
    assert list(t2.loc[t2["differs"].notna(), "layer"]) == ["conv"]
    t1 = pd.read_csv(out / "tables_table1.csv", skiprows=1)
    assert len(t1) == 20 and t1["differs"].isna().all()


# ----------------------------------------------------------------------------- the pipeline
TINY_SPACE = """
name: tiny_original
reference: mnasnet_a1
resolution: 224
num_classes: 1000
se_gate: sigmoid
stem: {out_channels: 16, kernel: 3, stride: 2, nonlinearity: relu}
stages:
- {out_channels: 16, layers: 1, stride: 2}
- {out_channels: 24, layers: 1, stride: 2}
- {out_channels: 32, layers: 1, stride: 2}
- {out_channels: 48, layers: 1, stride: 2}
head: {conv_channels: 128, hidden_channels: null, nonlinearity: relu}
choices:
  operator: [mbconv3]
  kernel: [3, 5]
  se: [0, 0.25]
  skip: [identity]
  width: [1.0]
  layers: [0]
  nonlinearity: [relu]
"""


def _tiny_images(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in range(3):
        folder = root / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(16):
            image = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
            image[..., label] += 150
            Image.fromarray(image).save(folder / f"{i}.png")
    return root


def _tiny_config(tmp_path: Path, network: str, seed: str) -> Path:
    """A config on the code path of ``experiments/configs/NETWORK.yaml`` (large: a given seed, no
    search; small: search, seed within NetAdapt's reach), shrunk to seconds."""
    import yaml

    (tmp_path / "space.yaml").write_text(TINY_SPACE)
    steps = {"max_steps": 2, "batch_size": 8, "bn_recalibration_batches": 1, "eval_batch_size": 16, "resolution": 32}
    images = tmp_path / "images"
    if not images.exists():
        _tiny_images(images)
    config_file = tmp_path / f"tiny_{network}.yaml"
    config_file.write_text(yaml.safe_dump({
        "network": network, "target_ms": 15.8 if network == "small" else 51.0, "data": f"imagefolder:{images}",
        "seed": seed,
        "search": {"space": str(tmp_path / "space.yaml"), "w": -0.15, "children": 2, "rl_batch_size": 2,
                   "retries": 0, "proxy": steps},
        "netadapt": {"budget_ms": 1.0,  # unreachable: one iteration, then stopped
                     "options": {"max_iterations": 1, "finetune_steps": 1, "long_finetune_steps": 1,
                                 "noise_seeds": 2, "step_ratio": 0.05}},
        "final_training": {"epochs": 0.5, "seeds": 2, "widths": [0.5], "workers": 1},
    }))
    return config_file


def _check_pipeline_outputs(out: Path, summary: dict, network: str) -> None:
    import torch

    from search_spaces import build

    state = json.loads((out / "pipeline.json").read_text())
    assert list(state["stages"]) == ["search", "netadapt", "redesign", "definition"]
    assert state["stages"]["netadapt"]["iterations"] == 1  # one NetAdapt iteration, then stopped
    assert state["stages"]["netadapt"]["status"] == "stopped"
    name = f"mobilenet_v3_{network}_ours"
    ours = load_spec(out / "definition" / f"{name}.yaml")
    pre = load_spec(out / "pre_redesign.yaml")
    assert ours.head.form == "efficient" and len(ours.blocks) == len(pre.blocks) - 1
    assert ours.stem == StemSpec(16, 3, 2, "hswish") and ours.head.conv_channels == pre.blocks[-1].expansion_channels
    state_dict = torch.load(out / "definition" / "model.pt", weights_only=True)
    assert state_dict.keys() == build(ours).state_dict().keys()
    assert summary["emitted"]["onnx_max_abs_diff"] < 1e-4 and (out / "definition" / "model.onnx").stat().st_size > 0
    assert from_arch_string(summary["emitted"]["arch_string"]) == ours
    table = "Table 2" if network == "small" else "Table 1"
    diff = pd.read_csv(out / "definition" / "diff.csv")
    assert {"stem", "b0", "conv", "pool", "hidden", "classifier"} <= set(diff["layer"])
    md = (out / "summary.md").read_text()
    assert f"Layer by layer against {table}" in md and "Expansion ratios per stage" in md
    # the equal-footing comparison: the contract other tools read
    comparison = summary["comparison"]
    assert set(comparison) == {"ours", "reference"}
    for side in comparison.values():
        assert set(side) == {"target", "latency_ms", "test_accuracy"} and len(side["test_accuracy"]) == 2
        assert all(0 <= a <= 1 for a in side["test_accuracy"]) and side["latency_ms"] > 0
        assert side["target"] == summary["target"]
    assert comparison["ours"]["latency_ms"] == pytest.approx(predict_ms(ours, summary["target"]), abs=1e-3)
    assert comparison["reference"]["latency_ms"] == pytest.approx(
        predict_ms(reference(f"mobilenet_v3_{network}"), summary["target"]), abs=1e-3)
    # the proxy-trained weights exist exactly when summary.md links them
    assert (out / "definition" / "proxy_trained.pt").is_file() == ("proxy_trained.pt" in md)
    assert [c["width"] for c in summary["reference_curve"]] == [0.5, 1.0]
    assert (out / "comparison.png").stat().st_size > 0
    trainings = [json.loads(line) for line in (out / "definition" / "trainings.jsonl").read_text().splitlines()]
    assert len(trainings) == 3 * 2  # ours, paper x 0.5, paper x 1.0; two seeds each
    blocks = pd.read_csv(out / "definition" / "structure.csv")
    assert {"seed exp", "netadapt exp", "NetAdapt cut (exp)", "paper exp"} <= set(blocks.columns)
    # NetAdapt's one iteration measured its noise: the chosen proposal fine-tuned with two more seeds
    # (one iteration with one re-score has no pooled estimate by design: netadapt.selection)
    history = pd.read_csv(out / "netadapt" / "round_0" / "history.csv")
    chosen = history[(history["chosen"] == True) & (history["iteration"] == 1)]  # noqa: E712
    assert len(chosen) == 1 and chosen["noise"].notna().all() and "lead" in history.columns


def test_tiny_pipeline_small_path_searches_then_adapts(tmp_path, ray_session):
    import ray

    from experiments.pipeline.stages import PipelineError, run_pipeline
    from experiments.pipeline.config import load_config

    config_file = _tiny_config(tmp_path, "small", "search")
    config = load_config("small", config_file)
    out = tmp_path / "run"
    summary = run_pipeline(config, out, progress=False, log=lambda line: None)
    assert ray.is_initialized()  # the session's Ray was used, not shut down
    assert (out / "search" / "trials.csv").exists()
    state = json.loads((out / "pipeline.json").read_text())
    assert state["stages"]["search"]["seed_reach"] is not None
    assert (state["stages"]["search"]["signal"], state["config"]["search"]["signal"]) == ("scratch", "scratch")
    assert "children scored by training each from scratch" in (out / "summary.md").read_text()
    _check_pipeline_outputs(out, summary, "small")
    assert summary["paper_spec"]["madds_m"] == pytest.approx(56.51, abs=0.01)

    # A second run resumes: every stage is skipped; without resume the folder is refused.
    lines = []
    again = run_pipeline(config, out, resume=True, progress=False, log=lines.append)
    assert again["ours"] == summary["ours"] and all("skipped" in line for line in lines)
    with pytest.raises(PipelineError, match="already holds a pipeline run"):
        run_pipeline(config, out, progress=False, log=lambda line: None)
    changed = load_config("small", config_file, **{"search.children": 3})
    with pytest.raises(PipelineError, match="search changed since the search stage finished"):
        run_pipeline(changed, out, resume=True, progress=False, log=lambda line: None)


def test_tiny_pipeline_large_path_starts_from_the_given_seed(tmp_path, ray_session):
    from experiments.pipeline.stages import run_pipeline
    from experiments.pipeline.config import load_config

    (tmp_path / "seed.yaml").write_text(TINY_SEED)
    config = load_config("large", _tiny_config(tmp_path, "large", "seed.yaml"))
    out = tmp_path / "run"
    summary = run_pipeline(config, out, progress=False, log=lambda line: None)
    assert not (out / "search").exists()  # the seed is given: no search, as the paper did for Large
    assert load_spec(out / "seed.yaml").blocks == load_spec(tmp_path / "seed.yaml").blocks
    _check_pipeline_outputs(out, summary, "large")


TINY_SEED = """
name: tiny_seed
resolution: 224
num_classes: 1000
stem: {out_channels: 16, kernel: 3, stride: 2, nonlinearity: relu}
blocks:
- {operator: bneck, kernel: 3, stride: 2, expansion_channels: 48, out_channels: 16, se_channels: 0}
- {operator: bneck, kernel: 5, stride: 2, expansion_channels: 64, out_channels: 24, se_channels: 8}
- {operator: bneck, kernel: 3, stride: 2, expansion_channels: 96, out_channels: 40, se_channels: 0}
- {operator: bneck, kernel: 3, stride: 1, expansion_channels: 120, out_channels: 48, se_channels: 0}
head: {conv_channels: 128, hidden_channels: null, nonlinearity: relu}
"""


def test_pipeline_configs_load_and_bad_keys_are_named(tmp_path):
    from experiments.pipeline.config import ConfigError, load_config

    large, small = load_config("large"), load_config("small")
    assert (large["search"]["w"], small["search"]["w"]) == (-0.07, -0.15)
    assert (large["target_ms"], small["target_ms"]) == (51.0, 15.8)  # Table 3's P-1 of V3-Large / V3-Small
    bad = tmp_path / "bad.yaml"
    bad.write_text("network: large\nsearch: {childs: 3}\n")
    with pytest.raises(ConfigError, match=r"^search\.childs: unknown setting"):
        load_config("large", bad)
    other = tmp_path / "other.yaml"
    other.write_text("network: large\n")
    with pytest.raises(ConfigError, match="is for 'large', not 'small'"):
        load_config("small", other)


# ----------------------------------------------------------------------------- seed, noise, verdict
def _trials(tmp_path: Path, space, rows: list[tuple[tuple[int, ...], float]]) -> Path:
    """A search's trials.csv: one finished child per (sample, reward)."""
    folder = tmp_path / "search"
    folder.mkdir()
    pd.DataFrame([{"index": i, "tokens": " ".join(space.to_tokens(sample)), "reward": reward, "status": "ok"}
                  for i, (sample, reward) in enumerate(rows)]).to_csv(folder / "trials.csv", index=False)
    return folder


def test_seed_choice_skips_the_best_child_that_netadapt_cannot_bring_to_the_budget(tmp_path):
    """The best child by reward sits far above the budget: NetAdapt's capacity (max_iterations x
    delta) cannot close the gap, so the next child within reach is NetAdapt's seed."""
    from experiments.pipeline.stages import choose_seed, netadapt_reach
    from experiments.pipeline.config import load_config
    from search_spaces.spaces import get_space

    (tmp_path / "space.yaml").write_text(TINY_SPACE)
    space = get_space(str(tmp_path / "space.yaml"))
    samples = list(space.enumerate(limit=1000))
    by_latency = sorted(samples, key=lambda s: predict_ms(space.decode(s), "pixel1"))
    fast, slow = by_latency[0], by_latency[-1]
    fast_ms = predict_ms(space.decode(fast), "pixel1")
    slow_ms = predict_ms(space.decode(slow), "pixel1")
    assert slow_ms > fast_ms * 1.02
    # a budget just above the fast child; delta 1 % of the latency, at most one iteration: the slow
    # child needs more than one step, the fast one none
    config_file = tmp_path / "c.yaml"
    import yaml

    config_file.write_text(yaml.safe_dump({"network": "small", "search": {"space": str(tmp_path / "space.yaml")},
                                           "netadapt": {"budget_ms": float(fast_ms * 1.001), "options": {
                                               "max_iterations": 1, "step_ratio": 0.005}}}))
    config = load_config("small", config_file)
    folder = _trials(tmp_path, space, [(slow, 0.9), (fast, 0.5)])
    reach = lambda spec: netadapt_reach(spec, config)  # noqa: E731
    assert not reach(space.decode(slow))["reachable"] and reach(space.decode(fast))["reachable"]
    assert reach(space.decode(slow))["needed_ms"] == pytest.approx(slow_ms - fast_ms * 1.001)
    spec, note, r = choose_seed(folder, str(tmp_path / "space.yaml"), reach)
    assert spec.blocks == space.decode(fast).blocks and "rank 2" in note and r["reachable"]
    # without the reach rule the best reward wins, as before
    spec, note, _ = choose_seed(folder, str(tmp_path / "space.yaml"))
    assert spec.blocks == space.decode(slow).blocks and "rank 1" in note
    # a budget nobody can reach: the smallest cut is taken and the note says so
    config.settings["netadapt"]["budget_ms"] = float(fast_ms * 0.5)
    spec, note, r = choose_seed(folder, str(tmp_path / "space.yaml"), reach)
    assert spec.blocks == space.decode(fast).blocks and "NO child is within NetAdapt's reach" in note


def test_netadapt_reach_counts_steps_iterations_and_rounds(tmp_path):
    """Capacity = max_iterations x delta, delta = step_ratio x the seed's latency (an independent
    count on MnasNet-A1: 70.0 ms on pixel1, 7.23 ms saved by the redesign)."""
    from experiments.pipeline.stages import netadapt_reach
    from experiments.pipeline.config import load_config

    config = load_config("large")
    a1 = reference("mnasnet_a1")
    r = netadapt_reach(a1, config)
    latency = predict_ms(a1, "pixel1")
    options = config["netadapt"]["options"]
    assert r["capacity_ms"] == pytest.approx(options["max_iterations"] * options["step_ratio"] * latency)
    assert r["budget_ms"] == pytest.approx(51.0 + 7.227, abs=0.01) and r["reachable"]
    config.settings["netadapt"]["options"] = {**options, "max_iterations": 1, "step_ratio": 0.01}
    assert not netadapt_reach(a1, config)["reachable"]  # 11.8 ms to cut, 1 x 0.7 ms possible
    config.settings["netadapt"]["options"] = {**options, "max_iterations": 16, "step_ratio": 0.01}
    assert not netadapt_reach(a1, config)["reachable"]  # 16 x 0.70 = 11.2 ms < 11.77 ms
    config.settings["netadapt"]["options"] = {**options, "max_iterations": 17, "step_ratio": 0.01}
    assert netadapt_reach(a1, config)["reachable"]  # 17 x 0.70 = 11.9 ms


def test_lead_and_noise_on_known_numbers():
    from netadapt.selection import lead_and_noise

    out = lead_and_noise([0.5, 0.2, None, 0.45], noise_accuracy=0.02, scale=5.0, dof=3)
    assert out["lead"] == pytest.approx(0.05)
    assert out["noise"] == pytest.approx(0.1)  # 0.02 accuracy x 5 metric per accuracy (a 0.2 ms cut)
    assert out["noise_accuracy"] == 0.02 and out["noise_dof"] == 3
    assert out["lead_exceeds_noise"] is False
    assert out["margin"] == pytest.approx(0.5 - 0.45)  # median of 0.5, 0.45, 0.2
    single = lead_and_noise([0.5], None)
    assert single["lead"] is None and single["noise"] is None and single["lead_exceeds_noise"] is None


def test_verdict_and_the_reference_curve_on_known_numbers():
    from experiments.pipeline.comparison import interpolate, verdict

    assert interpolate([(10, 0.5), (20, 0.7)], 15) == pytest.approx(0.6)
    assert interpolate([(20, 0.7), (10, 0.5)], 10) == pytest.approx(0.5)
    assert interpolate([(10, 0.5), (20, 0.7)], 25) is None
    curve = [{"width": 0.5, "latency_ms": 10.0, "test_accuracy": [0.5, 0.5]},
             {"width": 1.0, "latency_ms": 20.0, "test_accuracy": [0.7, 0.7]}]
    v = verdict({"latency_ms": 15.0, "test_accuracy": [0.62, 0.64]}, {"latency_ms": 20.0, "test_accuracy": [0.7, 0.7]},
                curve)
    assert v["delta"] == pytest.approx(-0.07) and v["not_slower"] and v["meets_target"] is False
    assert v["curve_at_ours_ms"] == pytest.approx(0.6) and v["above_curve"] == pytest.approx(0.03)
    v = verdict({"latency_ms": 19.0, "test_accuracy": [0.71]}, {"latency_ms": 20.0, "test_accuracy": [0.7]}, curve)
    assert v["meets_target"] is True
    v = verdict({"latency_ms": 21.0, "test_accuracy": [0.9]}, {"latency_ms": 20.0, "test_accuracy": [0.7]}, curve)
    assert v["meets_target"] is False and v["not_slower"] is False and v["curve_at_ours_ms"] is None


def test_structure_report_pairs_mnasnet_a1_with_v3_large_expansion_by_expansion():
    """Table 1 against MnasNet-A1 (independent counts from the two papers): V3-Large's expansions
    are smaller in blocks 1-2 (64, 72 vs 96, 144) and 7-9 (200, 184, 184 vs 480)."""
    from experiments.pipeline.structure import cut_agreement, stages_of, structure_report

    a1, v3 = reference("mnasnet_a1"), reference("mobilenet_v3_large")
    assert stages_of(a1) == [0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 5, 6]
    blocks, stages = structure_report(a1, a1, v3, v3, a1)
    assert list(blocks["paper exp"][[1, 2, 7, 8, 9]]) == [64, 72, 200, 184, 184]
    assert list(blocks["paper_seed exp"][[1, 2, 7, 8, 9]]) == [96, 144, 480, 480, 480]
    agreement = cut_agreement(blocks)
    assert {1, 2, 7, 8, 9} <= set(agreement["paper_cut"]) and agreement["netadapt_cut"] == []
    assert stages.loc[3, "paper_seed exp ratio"] == pytest.approx(6.0)
    assert stages.loc[3, "paper exp ratio"] == pytest.approx((240 / 40 + 200 / 80 + 184 / 80 + 184 / 80) / 4, abs=0.01)


@pytest.mark.parametrize("settings, words", [
    ({"seed": 0}, "seed: 0 is a number"),
    ({"seed": "no_such_net"}, "seed:"),
    ({"random_seed": -1}, "random_seed: -1 must be an integer"),
    ({"search": {"netadapt_share": 1.5}}, "search.netadapt_share: 1.5"),
    ({"final_training": {"seeds": 0}}, "final_training.seeds: 0"),
    ({"final_training": {"widths": [0.0]}}, "final_training.widths"),
    ({"netadapt": {"iterations": 4}}, "netadapt.iterations: unknown setting"),
    ({"search": {"signal": "weights"}}, r"^search\.signal: 'weights' must be scratch .* or supernet"),
    ({"search": {"signal": None}}, r"^search\.signal: None must be scratch"),
    ({"search": {"signal_kind": "supernet"}}, r"^search\.signal_kind: unknown setting; expected .*\bsignal\b"),
    ({"search": {"signal": "supernet", "supernet_epochs": 0}}, r"^search\.supernet_epochs: 0 must be null"),
    ({"search": {"signal": "supernet", "supernet_epochs": "2"}}, r"^search\.supernet_epochs: '2' must be null"),
    ({"search": {"signal": "supernet", "supernet_epochs": 1e9}}, r"^search\.supernet_epochs: 1000000000.0 must be"),
    ({"search": {"supernet_epochs": 2}}, r"^search\.supernet_epochs: 2 is set but search\.signal is scratch"),
])
def test_pipeline_config_errors_name_the_field(tmp_path, settings, words):
    import yaml

    from experiments.pipeline.config import ConfigError, load_config

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"network": "large", **settings}))
    with pytest.raises(ConfigError, match=words) as info:
        load_config("large", path)
    assert "\n" not in str(info.value)


def test_search_signal_reaches_the_search_stage(tmp_path):
    """``search.signal`` (issue 19) is the search's ``signal_kind``: the stage's SearchConfig and
    the search's own plan say children are scored with the supernet; the default stays scratch."""
    import yaml

    from experiments.pipeline.config import load_config
    from experiments.pipeline.stages import search_config
    from nas.runner import plan_words, search_plan

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"network": "small", "search": {"signal": "supernet", "supernet_epochs": 0.5}}))
    search, _ = search_config(load_config("small", path), tmp_path / "run")
    assert (search.signal_kind, search.supernet_epochs) == ("supernet", 0.5)
    assert search.out == str(tmp_path / "run" / "search")
    words = plan_words(search_plan(search))
    assert "children scored by: a weight-sharing supernet" in words and "0.5 epochs" in words
    default, _ = search_config(load_config("small"), tmp_path / "run")
    assert (default.signal_kind, default.supernet_epochs) == ("scratch", None)
    assert "children scored by: training each from scratch" in plan_words(search_plan(default))


def test_a_resume_with_another_search_signal_is_refused_in_one_line(tmp_path):
    """Once the search finished (``pipeline.json``), or while it is unfinished (its own
    ``config.json``), a resume with another ``search.signal`` is one line naming it; a run
    recorded before the setting existed resumes as scratch."""
    from experiments.pipeline.config import load_config
    from experiments.pipeline.stages import PipelineError, RunState, check_search_signal, search_config

    out = tmp_path / "run"
    out.mkdir()
    scratch = load_config("small")
    supernet = load_config("small", **{"search.signal": "supernet"})
    RunState(out, scratch, resume=False).finish("search", {"signal": "scratch"})
    with pytest.raises(PipelineError, match=r"^resume: search changed since the search stage finished "
                                            r"\(search\.signal: 'scratch' -> 'supernet'\)") as info:
        RunState(out, supernet, resume=True)
    assert "\n" not in str(info.value)
    state = json.loads((out / "pipeline.json").read_text())
    del state["config"]["search"]["signal"], state["config"]["search"]["supernet_epochs"]  # as written before issue 19
    (out / "pipeline.json").write_text(json.dumps(state))
    RunState(out, scratch, resume=True)  # not refused: the missing setting is its default
    with pytest.raises(PipelineError, match=r"search\.signal: 'scratch' -> 'supernet'"):
        RunState(out, supernet, resume=True)

    # an unfinished search: its config.json, as nas.runner writes it
    search, _ = search_config(scratch, out, resume=True)
    (out / "search").mkdir()
    (out / "search" / "config.json").write_text(json.dumps(search.to_dict()))
    check_search_signal(search, out / "search")
    changed, _ = search_config(supernet, out, resume=True)
    with pytest.raises(PipelineError, match=r"^resume: search\.signal was 'scratch' .* now 'supernet'") as info:
        check_search_signal(changed, out / "search")
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- hostile configs (issue 21)
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)) + "network: large\n"


@pytest.mark.parametrize("text, words", [
    (ALIAS_BOMB, "expands to more than"),
    ("network: large\nsearch: {children: 3}\nsearch: {children: 4}\n", "duplicate key"),
    ("network: large\nrandom_seed: " + "9" * 100 + "\n", "integer of 100 characters"),
    ("network: large\n" + "x: [" * 60 + "]" * 60 + "\n", "nested deeper"),
    ("network: large\ntarget_ms: .nan\n", r"^target_ms: nan must be a positive, finite"),
    ("network: large\ntarget_ms: .inf\n", r"^target_ms: inf must be a positive, finite"),
    ("network: large\nnetadapt: {budget_ms: .nan}\n", r"^netadapt\.budget_ms: nan"),
    ("network: large\nfinal_training: {epochs: .inf}\n", r"^final_training\.epochs: inf"),
    ("network: large\nsearch: {proxy: {epoch: 2}}\n", r"^search\.proxy\.'?epoch'?: unknown setting"),
    ("network: large\nfinal_training: {proxy: {lr: .nan}}\n", r"^final_training\.proxy\.lr"),
    ("network: large\nnetadapt: {options: {finetune_step: 3}}\n", r"^netadapt\.options\.finetune_step: unknown"),
    ("- network\n- large\n", "holds a list; a config is a mapping"),
])
def test_hostile_configs_are_refused_whole_and_fast(tmp_path, text, words):
    """Every bad config is one line at load time, before any stage starts: the spec loader's
    YAML bounds apply (an alias bomb is refused in well under a second), and every section is
    checked, the pass-through ones (proxy, options) and non-finite numbers included."""
    import time

    from experiments.pipeline.config import ConfigError, load_config

    path = tmp_path / "c.yaml"
    path.write_text(text)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=words) as info:
        load_config("large", path)
    assert time.perf_counter() - start < 5 and "\n" not in str(info.value)


def test_a_config_that_fails_to_load_is_one_line_from_the_cli(tmp_path, capsys):
    from experiments.pipeline.reproduce import main

    path = tmp_path / "c.yaml"
    for text in ("- a list\n", ALIAS_BOMB, "network: large\nseed: no_such_network\n",
                 b"network: large\n\xff\xfe\x00 not UTF-8"):  # the last raised UnboundLocalError: PipelineError
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        assert main(["large", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "UnboundLocal" not in err
        assert "describe --list" not in err  # the old hint named a flag that does not exist


def test_a_bad_data_source_is_one_line_before_any_work(tmp_path, capsys):
    import time

    from experiments.pipeline.reproduce import main

    empty = tmp_path / "empty"
    empty.mkdir()
    for data, words in ((f"tinyimagenet:{empty}", "has no train"), (f"imagefolder:{tmp_path / 'missing'}", "not a folder"),
                        ("nosuch:thing", "not a known source")):
        start = time.perf_counter()
        assert main(["small", "--data", data, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err and time.perf_counter() - start < 10
        assert not (tmp_path / "o" / "pipeline.json").exists()  # nothing started


def test_bench_netadapt_records_a_command_and_time_per_part():
    from experiments.benchmarks.bench_netadapt import record_part

    old = {"static_cuts": [1], "compare": {"x": 1}, "command": "python -m experiments.bench_netadapt --part all",
           "elapsed_s": 9.0}
    new = record_part(old, "noise", lambda: {"table": []}, "python -m experiments.bench_netadapt --part noise")
    assert "command" not in new and "elapsed_s" not in new
    assert new["provenance"] == {"noise": {"command": "python -m experiments.bench_netadapt --part noise",
                                           "elapsed_s": new["provenance"]["noise"]["elapsed_s"]}}
    assert new["legacy_command"]["command"].endswith("--part all") and new["static_cuts"] == [1]
    again = record_part(new, "static_cuts", lambda: [2], "python -m experiments.bench_netadapt --part cuts")
    assert set(again["provenance"]) == {"noise", "static_cuts"} and again["static_cuts"] == [2]


def test_a_resumed_comparison_links_the_trained_weights_only_when_they_exist(tmp_path):
    """The equal-footing trainings save ours' first-seed weights as they run; a resumed run
    (every training journaled) keeps them, and a summary never links weights that are not there."""
    from experiments.pipeline.comparison import equal_footing
    from experiments.pipeline.definition import _definition_lines
    from proxytask.profiles import signal

    images = tmp_path / "images"
    _tiny_images(images)
    sig = signal("cpu", data=f"imagefolder:{images}", overrides={"resolution": 16, "max_steps": 1, "batch_size": 8,
                                                                 "bn_recalibration_batches": 1, "seed": 3})
    ours = reference("mobilenet_v3_small", 0.35)
    folder = tmp_path / "definition"
    first = equal_footing(ours, "mobilenet_v3_small", [], sig, seeds=1, workers=1, folder=folder, target="pixel1",
                          log=lambda line: None)
    assert first["trained"] == folder / "proxy_trained.pt" and first["trained"].is_file()
    assert first["comparison"]["ours"]["target"] == "pixel1"
    again = equal_footing(ours, "mobilenet_v3_small", [], sig, seeds=1, workers=1, folder=folder, target="pixel1",
                          log=lambda line: None)
    assert again["trained"] == first["trained"]  # resumed: nothing retrained, the weights still there
    first["trained"].unlink()
    lost = equal_footing(ours, "mobilenet_v3_small", [], sig, seeds=1, workers=1, folder=folder, target="pixel1",
                         log=lambda line: None)
    assert lost["trained"] is None
    emitted = {"yaml": "x.yaml", "onnx": False, "arch_string": "a"}
    assert not any("proxy_trained.pt" in line for line in _definition_lines(emitted, lost["trained"] is not None))
    assert any("proxy_trained.pt" in line for line in _definition_lines(emitted, True))
