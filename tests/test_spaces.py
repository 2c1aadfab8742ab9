"""Search spaces: every sample decodes to a valid spec, tokens round-trip, op enumeration is complete."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search_spaces import ArchSpec, SpecError
from search_spaces.spaces import get_space, space_names


@pytest.mark.parametrize("name", ["mnasnet", "mobilenetv3"])
def test_spaces_are_named(name):
    assert name in space_names()
    space = get_space(name)
    # MnasNet's per-stage decisions (Sec. 4.1) plus the nonlinearity.
    assert [n for n, _ in space.choices] == ["operator", "kernel", "se", "skip", "width", "layers", "nonlinearity"]
    assert space.num_decisions == 7 * len(space.stages)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["mnasnet", "mobilenetv3"]), st.integers(0, 2**32 - 1))
def test_samples_decode_and_round_trip(name, seed):
    space = get_space(name)
    sample = space.random_sample(random.Random(seed))
    spec = space.decode(sample)
    assert isinstance(spec, ArchSpec)
    assert space.from_tokens(space.to_tokens(sample)) == sample
    assert ArchSpec.from_yaml(spec.to_yaml()) == spec


def test_decode_follows_the_choices():
    space = get_space("mobilenetv3")
    choices = space.stage_choices(space.random_sample(random.Random(3)))
    spec = space.decode(space.random_sample(random.Random(3)))
    # Layer counts: base layers + offset, at least one.
    expected_blocks = sum(max(1, st.layers + c["layers"]) for st, c in zip(space.stages, choices))
    assert len(spec.blocks) == expected_blocks
    first = spec.blocks[0]
    assert first.kernel == choices[0]["kernel"] and first.nonlinearity == choices[0]["nonlinearity"]


def test_all_op_keys_cover_every_sample():
    space = get_space("mobilenetv3")
    keys = set(space.all_op_keys())
    rng = random.Random(0)
    for _ in range(200):
        _, spec = space.sample_spec(rng)
        assert set(spec.op_keys()) <= keys


def test_reduced_space_enumerates_exhaustively():
    space = get_space("mobilenetv3").reduced(operator=["mbconv6"], kernel=[3], se=[0], skip=["identity"],
                                              width=[0.75, 1.0], layers=[0], nonlinearity=["relu"])
    samples = list(space.enumerate())
    assert len(samples) == space.size == 2 ** 6
    # Distinct networks, counted by hand: x0.75 leaves 16 and 24 channels unchanged (12 -> 16, 18 -> 24 by
    # the make_divisible rule), so only the 4 later stages differ: 2^4.
    assert len({space.decode(s).hash for s in samples}) == 16
    with pytest.raises(SpecError, match="more than the limit"):
        next(get_space("mobilenetv3").enumerate())


def test_user_space_from_yaml(tmp_path):
    text = (get_space("mobilenetv3").to_dict())
    text["name"] = "mine"
    text["choices"]["kernel"] = [3, 5, 7]
    import yaml

    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(text))
    space = get_space(path)
    assert space.options["kernel"] == (3, 5, 7)
    assert any(k.kernel == 7 for k in space.all_op_keys())


@pytest.mark.parametrize("change,message", [
    (("choices", "kernel", [4]), "choices.kernel[0]: 4 is not valid; expected 3, 5 or 7"),
    (("choices", "operator", ["mbconvx"]), "choices.operator[0]: 'mbconvx' is not valid"),
    (("stem", "stride", 3), "stem.stride: 3 is not one of 1, 2"),
])
def test_bad_space_is_a_clear_error(tmp_path, change, message):
    import yaml

    data = get_space("mobilenetv3").to_dict()
    a, b, value = change
    data[a][b] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as info:
        get_space(path)
    assert str(info.value).startswith(message)


def test_unknown_space_names_choices():
    with pytest.raises(SpecError, match="'nope' is not one of mnasnet, mobilenetv3"):
        get_space("nope")
