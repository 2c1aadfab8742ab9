"""Hypothesis strategies for specs (shared by the test modules)."""

from hypothesis import strategies as st

from search_spaces import ArchSpec, BlockSpec, HeadSpec, StemSpec
from search_spaces.spec import NONLINEARITIES

channels = st.integers(min_value=1, max_value=96)


@st.composite
def blocks(draw, in_channels: int):
    operator = draw(st.sampled_from(["bneck", "bneck", "bneck", "conv"]))
    if operator == "bneck":
        exp = draw(st.one_of(st.just(in_channels), st.integers(min_value=1, max_value=192)))
        se = draw(st.one_of(st.just(0), st.integers(min_value=1, max_value=48)))
    else:
        exp, se = None, 0
    return BlockSpec(
        operator=operator, kernel=draw(st.sampled_from([3, 5, 7])), stride=draw(st.sampled_from([1, 1, 2])),
        expansion_channels=exp, out_channels=draw(st.one_of(st.just(in_channels), channels)), se_channels=se,
        nonlinearity=draw(st.sampled_from(NONLINEARITIES)), se_gate=draw(st.sampled_from(["hsigmoid", "sigmoid"])),
        skip=draw(st.booleans()))


@st.composite
def arch_specs(draw, max_blocks: int = 8, resolutions=(16, 24, 32, 33, 48, 224)):
    stem = StemSpec(draw(channels), draw(st.sampled_from([1, 3, 5, 7])), draw(st.sampled_from([1, 2])),
                    draw(st.sampled_from(NONLINEARITIES)))
    items, c = [], stem.out_channels
    for _ in range(draw(st.integers(min_value=1, max_value=max_blocks))):
        block = draw(blocks(c))
        items.append(block)
        c = block.out_channels
    head = HeadSpec(draw(st.one_of(st.none(), channels)), draw(st.one_of(st.none(), channels)),
                    draw(st.sampled_from(NONLINEARITIES)))
    return ArchSpec(
        name=draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)),
        stem=stem, blocks=tuple(items), head=head, num_classes=draw(st.integers(min_value=1, max_value=1000)),
        resolution=draw(st.sampled_from(resolutions)), dropout=draw(st.sampled_from([0.0, 0.1, 0.2, 0.5])),
        in_channels=draw(st.sampled_from([1, 3])))
