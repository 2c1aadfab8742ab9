"""Arch strings: exact round trips, timm's official arch_def reproduced, unknown tokens rejected."""

import time

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


# --------------------------------------------------------------------------- hostile input (issue #14)
STEM = "stem_k3_s2_c16_nhs"


@pytest.mark.parametrize("text,message", [
    # tokens that used to be dropped or overridden silently
    (f"{STEM}|cn_r1_k3_s1_c16_se0.25|head", "'se0.25' in 'cn_r1_k3_s1_c16_se0.25': a regular conv (cn) has no"),
    (f"{STEM}|ds_r1_k3_s1_e6_c16|head", "a ds block expands by e1"),
    (f"{STEM}|ir_r1_k3_s1_e6_c16_k5|head", "'k5' repeats the 'k' token"),
    (f"{STEM}|ir_r1_k3_s1_e6_c16_nre_nhs|head", "'nhs' repeats the 'n' token"),
    (f"{STEM}|ir_r0_k3_s1_e6_c16,ir_r1_k3_s1_e6_c16|head", "r0 in 'ir_r0_k3_s1_e6_c16' is below 1"),
    (f"{STEM}|ir_r1_k3_s1_e6_c16|cn_r1_k1_s1_c96|head_c0", "head: c0 in 'head_c0' is below 1"),
    (f"{STEM}|ir_r1_k3_s1_e6_c16|cn_r1_k1_s2_c96|head", "the head conv 'cn_r1_k1_s2_c96' is one 1x1 conv at stride 1"),
    (f"{STEM}|ir_r1_k3_s1_e6_c16|cn_r3_k1_s1_c96|head", "the head conv 'cn_r3_k1_s1_c96' is one 1x1 conv"),
    (f"{STEM}|ir_r1_k3_s1_e6_c16|cn_r1_k1_s1_c96_nre|head_nhs", "the head's nonlinearity is written on the head conv"),
    (f"{STEM}|ir_r1_k3_s1_e6_c16_gs|head", "gs (a sigmoid SE gate) in 'ir_r1_k3_s1_e6_c16_gs' needs an SE"),
    (f"{STEM}|ir_r1_k3_s1_e6_c16_se0|head", "se0 is not supported"),
    (f"{STEM}|ir_r1_k3_s1_e6_c16_sc0|head", "sc0 in 'ir_r1_k3_s1_e6_c16_sc0' is below 1"),
    (f"{STEM}|ir_r1_k3_s1_e6_c16_se0.25_sc8|head", "gives the SE twice"),
    (f"{STEM}_noskip|ir_r1_k3_s1_e6_c16|head", "stem: unknown token 'noskip'"),
    (f"{STEM}|ir_r1_k3_s1_e6_c16|head_gs", "head: unknown token 'gs'"),
    (f"stemx_k3_s2_c16|ir_r1_k3_s1_e6_c16|head", "is not a stem token"),
    # sizes: r20000 took 73 s; e<400 digits raised OverflowError
    (f"{STEM}|ir_r20000_k3_s1_e6_c16|head", "makes more than 64 blocks"),
    (f"{STEM}|ir_r1_k3_s1_e{'1' * 400}_c16|head", "a number longer than 12 characters"),
    (f"{STEM}_res{10 ** 30}|ir_r1_k3_s1_e6_c16|head", "a number longer than 12 characters"),
    (f"{STEM}_res100000|ir_r1_k3_s1_e6_c16|head", "resolution: 100000 is above the maximum 4096"),
    (f"{STEM}|ir_r1_k\u0663_s1_e6_c16|head", "unknown token 'k\u0663'"),
    # names that break the round trip
    (f"a|b:{STEM}|ir_r1_k3_s1_e6_c16|head", "name: 'a|b' contains '|'"),
    (f"a\nb:{STEM}|ir_r1_k3_s1_e6_c16|head", "name: 'a\\nb' contains"),
])
def test_nothing_is_dropped_silently(text, message):
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        from_arch_string(text)
    assert message in str(info.value), str(info.value)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize("name", ["", "with space", "ñame", "x" * 200, "stem_k3"])
def test_names_round_trip_exactly(name):
    spec = reference("mobilenet_v3_small").replace(name=name)
    text = to_arch_string(spec)
    assert from_arch_string(text) == spec and from_arch_string(text).name == name
    assert load_spec(text) == spec
