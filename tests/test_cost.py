"""Cost counting: exact parameter counts of the official models, MAdds vs Table 3 and vs torch."""

import pytest
import torch
from hypothesis import given, settings
from torch.utils.flop_counter import FlopCounterMode

from search_spaces import build, build_op, count_madds, count_params, describe, op_cost, reference
from search_spaces.references import TABLE3
from strategies import arch_specs

# Parameter counts of the official models with 1000 classes, counted by their own code:
# torchvision / timm (V3, V2), timm's port of tensorflow/tpu (MnasNet).
OFFICIAL_PARAMS = {
    ("mobilenet_v3_large", 1.0): 5_483_032,
    ("mobilenet_v3_small", 1.0): 2_542_856,
    ("mobilenet_v3_large", 0.75): 3_993_528,  # TF-slim / timm mobilenetv3_large_075 (ratio rule)
    ("mobilenet_v3_small", 0.75): 2_041_872,  # TF-slim / timm mobilenetv3_small_075
    ("mobilenet_v2", 1.0): 3_504_872,
    ("mobilenet_v2", 0.35): 1_677_128,
    ("mnasnet_a1", 1.0): 3_887_038,
    ("mnasnet_small", 1.0): 2_030_264,
}
# torchvision's scaling rule with the head kept at 1280 / 1024 (../shared/reference/NOTES.md).
SCALED_PARAMS = {("mobilenet_v3_large", 0.75): 3_928_296, ("mobilenet_v3_small", 0.75): 2_020_768}

# Table 3 rows we cannot meet within 2 %, and why (the official definition is counted instead).
KNOWN_DEVIATIONS = {
    # tensorflow/tpu's mnasnet_small (stem 8, as timm ports it) counts 68.34M MAdds, 5 % above the
    # 65.1M the MnasNet paper quotes; no counting convention (e.g. dropping the classifier: 67.1M)
    # closes the gap, so the published figure belongs to a slightly different network.
    ("mnasnet_small", 1.0): 68_339_184,  # timm mnasnet_small under torch.utils.flop_counter / 2
}


@pytest.mark.parametrize("key", list(OFFICIAL_PARAMS), ids=lambda k: f"{k[0]}_{k[1]}")
def test_params_equal_official_models(key):
    spec = reference(*key)
    assert count_params(spec) == OFFICIAL_PARAMS[key]
    assert sum(p.numel() for p in build(spec).parameters()) == OFFICIAL_PARAMS[key]


@pytest.mark.parametrize("key", list(SCALED_PARAMS), ids=lambda k: k[0])
def test_params_of_scaled_rule(key):
    spec = reference(*key, expansion="scaled")
    assert count_params(spec) == SCALED_PARAMS[key]
    assert sum(p.numel() for p in build(spec).parameters()) == SCALED_PARAMS[key]


@pytest.mark.parametrize("key", list(TABLE3), ids=lambda k: f"{k[0]}_{k[1]}")
def test_madds_against_table3(key):
    madds = count_madds(reference(*key))
    if key in KNOWN_DEVIATIONS:
        assert madds == KNOWN_DEVIATIONS[key]
    else:
        paper = TABLE3[key]["madds_m"] * 1e6
        assert abs(madds / paper - 1) <= 0.02, (madds, paper)


def _torch_madds(model, shape):
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            model.eval()(torch.zeros(shape))
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("key", list(TABLE3), ids=lambda k: f"{k[0]}_{k[1]}")
def test_madds_equal_flop_counter(key):
    spec = reference(*key)
    assert count_madds(spec) == _torch_madds(build(spec), (1, 3, 224, 224))


@settings(max_examples=40, deadline=None)
@given(arch_specs(max_blocks=5, resolutions=(16, 24, 33)))
def test_generated_specs_counts_equal_torch(spec):
    model = build(spec)
    assert count_params(spec) == sum(p.numel() for p in model.parameters())
    assert count_madds(spec) == _torch_madds(model, (1, spec.in_channels, spec.resolution, spec.resolution))


def test_describe_rows_match_modules():
    spec = reference("mobilenet_v3_small")
    model = build(spec)
    modules = dict(model.named_modules())
    df = describe(spec)
    for row in df.itertuples():
        layer = row.layer
        # A conv row is named by its conv; its params include the BN that follows (path ...0 -> ...1).
        module = modules[layer]
        params = sum(p.numel() for p in module.parameters())
        if layer.endswith(".0") and isinstance(module, torch.nn.Conv2d):
            params += sum(p.numel() for p in modules[layer[:-1] + "1"].parameters())
        assert params == row.params, layer
    assert df.attrs["totals"]["params"] == 2_542_856
    assert df["madds"].sum() == count_madds(spec)


def test_describe_shapes_follow_table2():
    df = describe(reference("mobilenet_v3_small"))
    # Table 2's Input column for the head conv and the pool.
    assert df.loc[df.layer == "features.12.0", "input"].item() == "96x7x7"
    assert df.loc[df.layer == "avgpool", "input"].item() == "576x7x7"
    assert df.loc[df.layer == "classifier.3", "output"].item() == "1000"


def test_op_cost_equals_built_op():
    for op in reference("mobilenet_v3_large").op_keys():
        module = build_op(op)
        madds, params = op_cost(op)
        assert params == sum(p.numel() for p in module.parameters())
        assert madds == _torch_madds(module, op.input_shape)
