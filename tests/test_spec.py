"""ArchSpec: validation, YAML round trip, hashing, op keys."""

import dataclasses
import os
import re
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings

from search_spaces import ArchSpec, BlockSpec, HeadSpec, OpKey, SpecError, StemSpec, load_spec, make_divisible, reference
from search_spaces.references import WIDTHS, names
from strategies import arch_specs


def all_references():
    for name in names():
        for width in WIDTHS:
            yield reference(name, width)
    yield reference("mobilenet_v3_large", 1.0, 160)
    yield reference("mobilenet_v3_small", 0.75, expansion="scaled")


@pytest.mark.parametrize("spec", list(all_references()), ids=lambda s: s.name)
def test_yaml_round_trip_references(spec, tmp_path):
    path = tmp_path / "spec.yaml"
    spec.to_yaml(path)
    loaded = load_spec(path)
    assert loaded == spec
    assert loaded.hash == spec.hash
    assert loaded.to_yaml() == spec.to_yaml()


@settings(max_examples=250, deadline=None)
@given(arch_specs())
def test_yaml_round_trip_generated(spec):
    assert ArchSpec.from_yaml(spec.to_yaml()) == spec
    assert hash(spec) == hash(ArchSpec.from_yaml(spec.to_yaml()))


@settings(max_examples=200, deadline=None)
@given(arch_specs())
def test_op_key_string_round_trip(spec):
    keys = spec.op_keys()
    # stem, blocks, [head conv], pool, [hidden], classifier
    assert len(keys) == len(spec.blocks) + 3 + (spec.head.conv_channels is not None) + (
        spec.head.hidden_channels is not None)
    for key in keys:
        assert OpKey.from_str(key.to_str()) == key


def test_make_divisible_matches_official_rule():
    # Worked by hand from the rule: 16*0.75=12 -> 16; 24*0.35=8.4 -> 8; 24*0.75=18 -> 16 loses >10 % -> 24.
    assert make_divisible(12) == 16
    assert make_divisible(8.4) == 8
    assert make_divisible(18) == 24
    assert make_divisible(30) == 32
    assert make_divisible(1600) == 1600
    assert make_divisible(4) == 8
    assert make_divisible(960 * 0.35) == 336


def test_hash_ignores_name_and_tracks_architecture():
    spec = reference("mobilenet_v3_small")
    assert spec.replace(name="other").hash == spec.hash
    assert spec.replace(resolution=192).hash != spec.hash
    blocks = list(spec.blocks)
    blocks[3] = BlockSpec("bneck", 3, 2, 96, 40, 24, "hswish")
    assert spec.replace(blocks=tuple(blocks)).hash != spec.hash
    assert len(spec.hash) == 16 and int(spec.hash, 16) >= 0


def test_hash_is_stable_across_processes():
    code = "from search_spaces import reference; print(reference('mobilenet_v3_large').hash)"
    hashes = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip() for seed in ("1", "2")}
    assert hashes == {reference("mobilenet_v3_large").hash}


def test_residual_rule():
    spec = reference("mobilenet_v3_large")
    # Table 1: a residual wherever stride 1 and input width == output width.
    expected = [i for i, (b, (cin, _)) in enumerate(zip(spec.blocks, spec.block_inputs))
                if b.stride == 1 and cin == b.out_channels]
    assert [i for i in range(len(spec.blocks)) if spec.has_residual(i)] == expected == [0, 2, 4, 5, 7, 8, 9, 11, 13, 14]
    a1 = reference("mnasnet_a1")
    assert a1.blocks[0].skip is False


def test_block_inputs_follow_table1():
    spec = reference("mobilenet_v3_large")
    # The "Input" column of Table 1 (resolution, channels) for every bneck row.
    table1 = [(112, 16), (112, 16), (56, 24), (56, 24), (28, 40), (28, 40), (28, 40), (14, 80), (14, 80), (14, 80),
              (14, 80), (14, 112), (14, 112), (7, 160), (7, 160)]
    assert [(size, c) for c, size in spec.block_inputs] == table1
    assert spec.final_resolution == 7


BASE = reference("mobilenet_v3_small").to_dict()


def _bad(path, value):
    data = {**BASE, "blocks": [dict(b) for b in BASE["blocks"]], "stem": dict(BASE["stem"]), "head": dict(BASE["head"])}
    target = data
    parts = path.replace("]", "").replace("[", ".").split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is KeyError:
        del target[parts[-1]]
    else:
        target[parts[-1]] = value
    return data


@pytest.mark.parametrize("path,value,message", [
    ("blocks[3].kernel", 4, "blocks[3].kernel: 4 is not one of 3, 5, 7"),
    ("blocks[0].stride", 3, "blocks[0].stride: 3 is not one of 1, 2"),
    ("blocks[2].nonlinearity", "gelu", "blocks[2].nonlinearity: 'gelu' is not one of relu, relu6, hswish, swish"),
    ("blocks[1].out_channels", 0, "blocks[1].out_channels: 0 is below the minimum 1"),
    ("blocks[1].out_channels", 24.5, "blocks[1].out_channels: 24.5 is not an integer"),
    ("blocks[4].expansion_channels", KeyError, "blocks[4].expansion_channels: missing required field"),
    ("blocks[4].operator", "dsconv", "blocks[4].operator: 'dsconv' is written as operator 'bneck'"),
    ("blocks[4].operator", "conv", "blocks[4].expansion_channels: must be omitted (null) for operator 'conv'"),
    ("blocks[5].se_channels", -1, "blocks[5].se_channels: -1 is below the minimum 0"),
    ("blocks[5].skip", "yes", "blocks[5].skip: 'yes' is not a boolean"),
    ("blocks[6].kernal", 3, "blocks[6].kernal: unknown field; expected one of operator, kernel"),
    ("stem.stride", 4, "stem.stride: 4 is not one of 1, 2"),
    ("head.hidden_channels", -5, "head.hidden_channels: -5 is below the minimum 1"),
    ("resolution", 4, "resolution: 4 is below the minimum 8"),
    ("dropout", 1.5, "dropout: 1.5 is not a probability in [0, 1)"),
    ("num_classes", True, "num_classes: True is not an integer"),
    ("blocks", [], "blocks: expected a non-empty list of blocks"),
    ("colour", "red", "colour: unknown field"),
])
def test_bad_specs_name_the_field(path, value, message):
    with pytest.raises(SpecError) as info:
        ArchSpec.from_dict(_bad(path, value))
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_bad_yaml_file_names_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(reference("mobilenet_v3_small").to_yaml().replace("kernel: 5", "kernel: 4", 1))
    with pytest.raises(SpecError, match=r"^blocks\[3\]\.kernel: 4 is not one of 3, 5, 7 \(in .*bad.yaml\)$"):
        load_spec(path)
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("blocks: [\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path / "broken.yaml")


def test_se_auto_in_yaml():
    text = reference("mobilenet_v3_large").to_yaml().replace("se_channels: 240", "se_channels: auto")
    assert ArchSpec.from_yaml(text) == reference("mobilenet_v3_large")


def test_yaml_uses_safe_load_only(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("!!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)


def test_specs_are_frozen():
    spec = reference("mobilenet_v3_small")
    with pytest.raises(AttributeError):
        spec.resolution = 10  # type: ignore[misc]
    assert isinstance(spec.blocks, tuple)
    built_from_list = ArchSpec("x", StemSpec(), list(spec.blocks), HeadSpec())
    assert isinstance(built_from_list.blocks, tuple)


# --------------------------------------------------------------------------- hostile input (issue #14)
@pytest.mark.parametrize("path,value", [
    ("blocks[3].kernel", 5.0), ("blocks[0].stride", 2.0), ("stem.kernel", 3.0), ("stem.stride", 2.0),
    ("blocks[1].out_channels", 24.0), ("resolution", 224.0), ("blocks[2].kernel", True),
])
def test_floats_and_bools_in_integer_fields_are_refused(path, value):
    # kernel: 3.0 used to pass, compare equal to the integer spec and hash differently.
    with pytest.raises(SpecError) as info:
        ArchSpec.from_dict(_bad(path, value))
    assert str(info.value).startswith(f"{path}: {value!r} is not")


@pytest.mark.parametrize("path,value", [
    ("resolution", 10**30), ("resolution", 100_000), ("resolution", 4097), ("stem.out_channels", 1_000_000_000),
    ("blocks[2].expansion_channels", 8193), ("head.hidden_channels", 10**6), ("num_classes", 100_001),
    ("in_channels", 10_000),
])
def test_sizes_have_upper_bounds(path, value):
    with pytest.raises(SpecError, match=rf"^{re.escape(path)}: {value} is above the maximum"):
        ArchSpec.from_dict(_bad(path, value))
    assert ArchSpec.from_dict(_bad("resolution", 4096)).resolution == 4096


def test_at_most_64_blocks():
    spec = reference("mobilenet_v3_small")
    repeats = tuple(dataclasses.replace(spec.blocks[-1], stride=1) for _ in range(64 - len(spec.blocks)))
    assert len(spec.replace(blocks=spec.blocks + repeats).blocks) == 64
    with pytest.raises(SpecError, match=r"^blocks: 65 blocks; at most 64"):
        spec.replace(blocks=spec.blocks + repeats + repeats[:1])
    with pytest.raises(SpecError, match=r"^blocks: 65 blocks; at most 64"):
        ArchSpec.from_dict({**BASE, "blocks": BASE["blocks"] * 5 + BASE["blocks"][:10]})


def test_block_inputs_are_computed_once():
    # op_keys() used to recompute block_inputs for every block (quadratic in the blocks).
    spec = reference("mobilenet_v3_large")
    assert spec.block_inputs is spec.block_inputs
    assert [k.residual for k in spec.op_keys()[1:16]] == [spec.has_residual(i) for i in range(15)]


def test_billion_laughs_is_refused_fast_with_a_short_message(tmp_path):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\nname: *a8\n")
    assert path.stat().st_size < 1300  # the 1.2 kB file: 18 s, 2.7 GB, a 448 MB message
    start = time.perf_counter()
    with pytest.raises(SpecError, match="expands to more than 100,000 nodes") as info:
        load_spec(path)
    assert time.perf_counter() - start < 1 and len(str(info.value)) < 400


@pytest.mark.parametrize("text,message", [
    (b"name: x\nresolution: \xff\xfe\n", r"spec file '.*bad\.yaml' is not UTF-8 text \(byte 0xff at offset 20\)"),
    (b"name: " + b"[" * 900 + b"]" * 900 + b"\n", "nested deeper than 32 levels"),
    (b"name: x\nresolution: " + b"9" * 100_000 + b"\n", "an integer of 100,000 characters; at most 40"),
])
def test_malformed_files_are_one_line(tmp_path, text, message):
    # UnicodeDecodeError, RecursionError and ValueError tracebacks before.
    path = tmp_path / "bad.yaml"
    path.write_bytes(text)
    with pytest.raises(SpecError, match=message) as info:
        load_spec(path)
    assert "\n" not in str(info.value) and "bad.yaml" in str(info.value)


def test_oversized_file_is_refused(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# padding\n" * 120_000)
    with pytest.raises(SpecError, match=r"is larger than 1,048,576 bytes"):
        load_spec(path)


def test_messages_echo_a_bounded_value():
    huge = [["x" * 1000] * 1000] * 1000  # shared rows: cheap to hold, 1 GB to print
    for path in ("name", "blocks[0].kernel", "dropout"):
        with pytest.raises(SpecError) as info:
            ArchSpec.from_dict(_bad(path, huge))
        assert len(str(info.value)) < 300


@pytest.mark.parametrize("name", ["a|b", "a:b", "a\nb", " padded", "padded ", "bell\x07", "x" * 201])
def test_names_that_break_arch_strings_are_refused(name):
    with pytest.raises(SpecError, match=r"^name: "):
        reference("mobilenet_v3_small").replace(name=name)
