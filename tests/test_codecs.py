"""Arch strings: exact round trips, timm's official arch_def reproduced, unknown tokens rejected."""

import pytest
from hypothesis import given, settings

from search_spaces import SpecError, from_arch_string, load_spec, reference, timm_arch_def, to_arch_string
from search_spaces.references import WIDTHS, names
from strategies import arch_specs

# Copied from timm (timm/models/mobilenetv3.py, _gen_mobilenet_v3): the official definitions.
TIMM_V3_LARGE = [
    ['ds_r1_k3_s1_e1_c16_nre'],
    ['ir_r1_k3_s2_e4_c24_nre', 'ir_r1_k3_s1_e3_c24_nre'],
    ['ir_r3_k5_s2_e3_c40_se0.25_nre'],
    ['ir_r1_k3_s2_e6_c80', 'ir_r1_k3_s1_e2.5_c80', 'ir_r2_k3_s1_e2.3_c80'],
    ['ir_r2_k3_s1_e6_c112_se0.25'],
    ['ir_r3_k5_s2_e6_c160_se0.25'],
    ['cn_r1_k1_s1_c960'],
]
TIMM_V3_SMALL = [
    ['ds_r1_k3_s2_e1_c16_se0.25_nre'],
    ['ir_r1_k3_s2_e4.5_c24_nre', 'ir_r1_k3_s1_e3.67_c24_nre'],
    ['ir_r1_k5_s2_e4_c40_se0.25', 'ir_r2_k5_s1_e6_c40_se0.25'],
    ['ir_r2_k5_s1_e3_c48_se0.25'],
    ['ir_r3_k5_s2_e6_c96_se0.25'],
    ['cn_r1_k1_s1_c576'],
]


def test_v3_arch_defs_equal_timm():
    assert timm_arch_def(reference("mobilenet_v3_large")) == TIMM_V3_LARGE
    assert timm_arch_def(reference("mobilenet_v3_small")) == TIMM_V3_SMALL


@pytest.mark.parametrize("name", names())
@pytest.mark.parametrize("width", WIDTHS)
def test_reference_round_trip(name, width):
    spec = reference(name, width)
    text = to_arch_string(spec)
    assert from_arch_string(text) == spec
    assert load_spec(text) == spec
    assert to_arch_string(from_arch_string(text)) == text


def test_timm_string_decodes_to_reference():
    # timm's own strings (with our stem/head frame) decode to the paper's Table 1.
    body = "|".join(",".join(stage) for stage in TIMM_V3_LARGE)
    spec = from_arch_string(f"mobilenet_v3_large:stem_k3_s2_c16_nhs|{body}|head_c1280")
    assert spec == reference("mobilenet_v3_large")


@settings(max_examples=200, deadline=None)
@given(arch_specs())
def test_generated_round_trip(spec):
    assert from_arch_string(to_arch_string(spec)) == spec


@pytest.mark.parametrize("text,message", [
    ("stem_k3_s2_c16_nhs|ir_r1_k3_s1_e3_c16_zz9|head", "unknown token 'zz9'"),
    ("stem_k3_s2_c16_nhs|xx_r1_k3_s1_c16|head", "unknown block type 'xx'"),
    ("stem_k3_s2_c16_nhs|ir_r1_k4_s1_e3_c16|head", "token[0].kernel: 4 is not one of 3, 5, 7"),
    ("stem_k3_s2_c16_nhs|ir_r1_s1_e3_c16|head", "lacks its 'k' value"),
    ("stem_k3_s2_c16_nhs|ir_r1_k3_s1_e3_c16_se0.5|head", "se0.5 is not supported"),
    ("stem_k3_s2_c16_nhs|ir_r1_k3_s1_e3_c16|head_c1280_q7", "unknown token 'q7'"),
])
def test_bad_strings(text, message):
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        from_arch_string(text)
