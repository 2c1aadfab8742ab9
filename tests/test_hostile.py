"""Hostile inputs: every bad spec, arch string or argument list is one clean line, never a
traceback, a hang or a silent acceptance; every valid one is accepted (and round-trips).

Hypothesis drives the generators of :mod:`experiments.hostile.cases` / ``hostile.argv`` through
``st.randoms()`` (so it shrinks a failure to a small input); the expected outcome of each input
comes from the documented rules written there, not from the code under test. Derandomized, a
fixed number of examples: more than 1,000 inputs a run, under a minute on 2 cores, the CLIs
called in-process through ``main(argv)``.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.hostile.argv import Workdir, argv_case, predict_case
from experiments.hostile.cases import (ARCH_MUTATIONS, HOSTILE_VALUES, SPEC_KINDS, YAML_ATTACKS, arch_case,
                                      hostile_yaml, random_arch_string, spec_case)
from experiments.hostile.inputs import run_in_process
from search_spaces import ArchSpec, SpecError, from_arch_string, load_spec, to_arch_string

COUNTS: Counter = Counter()
MAX_MESSAGE = 600


def hostile(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


RANDOMS = st.randoms(use_true_random=False)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return Workdir(tmp_path_factory.mktemp("hostile"))


def _one_line(err: Exception) -> str:
    text = str(err)
    assert "\n" not in text and 0 < len(text) <= MAX_MESSAGE, text[:1000]
    return text


@hostile(400)
@given(rnd=RANDOMS, kind=st.sampled_from(SPEC_KINDS), value=st.sampled_from(HOSTILE_VALUES))
def test_specs(rnd, kind, value):
    case = spec_case(rnd, kind, value)
    COUNTS["specs"] += 1
    try:
        spec = ArchSpec.from_dict(case.value)
    except SpecError as err:
        assert case.valid is not True, f"refused a valid spec ({case.why}): {err}"
        _one_line(err)
        return
    assert case.valid is not False, f"accepted an invalid spec: {case.why}"
    again = ArchSpec.from_yaml(spec.to_yaml())
    assert again == spec and again.hash == spec.hash
    assert from_arch_string(to_arch_string(spec)) == spec


@hostile(100)
@given(rnd=RANDOMS, how=st.sampled_from(YAML_ATTACKS))
def test_spec_files(rnd, how, work):
    data, how = hostile_yaml(rnd, how)
    path = work.write(data)
    COUNTS["spec files"] += 1
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert time.perf_counter() - start < 2, how
    assert path.name in _one_line(info.value), how


@hostile(350)
@given(rnd=RANDOMS, mutation=st.sampled_from(("valid", "renamed") + ARCH_MUTATIONS))
def test_arch_strings(rnd, mutation):
    text = random_arch_string(rnd)
    case = arch_case(rnd, text, mutation)
    COUNTS["arch strings"] += 1
    try:
        spec = from_arch_string(case.value)
    except SpecError as err:
        assert case.valid is not True, f"refused a valid string: {err}"
        _one_line(err)
        return
    assert case.valid is not False, f"accepted an invalid string ({case.why}): {case.value!r}"
    assert to_arch_string(spec) == case.value  # exact round trip, name included


def _check_cli(case) -> None:
    outcome = run_in_process(case, timeout_s=10)
    COUNTS[f"argv {case.kind}"] += 1
    assert outcome.kind in ("accepted", "clean"), (outcome, case.why, case.value)


@hostile(90)
@given(rnd=RANDOMS)
def test_describe_arguments(rnd, work):
    _check_cli(argv_case("describe", rnd, work))


@hostile(90)
@given(rnd=RANDOMS)
def test_export_arguments(rnd, work):
    _check_cli(argv_case("export", rnd, work))


@hostile(60)
@given(rnd=RANDOMS)
def test_predict_spec_arguments(rnd, work):
    _check_cli(predict_case(rnd, work, hostile_targets=False))


@hostile(60)
@given(rnd=RANDOMS)
def test_predict_arguments(rnd, work):
    # hostile targets too: '', a folder's file, a broken target YAML ('kind: [1'), an unknown kind
    _check_cli(argv_case("predict", rnd, work))


@hostile(90)
@given(rnd=RANDOMS)
def test_profile_arguments(rnd, work):
    # every list holds one hostile value ('' for --target/--space/--out included), so none measures
    _check_cli(argv_case("profile", rnd, work))


@hostile(90)
@given(rnd=RANDOMS)
def test_search_arguments(rnd, work):
    _check_cli(argv_case("search", rnd, work))


@hostile(90)
@given(rnd=RANDOMS)
def test_netadapt_arguments(rnd, work):
    _check_cli(argv_case("netadapt", rnd, work))


def test_zz_more_than_1000_inputs_a_run():
    assert sum(COUNTS.values()) >= 1000, COUNTS
