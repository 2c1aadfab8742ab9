"""The pixel1 cost model and the Table 5 nonlinearity transforms.

Golden figures come from the paper (Howard et al. 2019): Table 1's NL column, Table 3's and
Table 5's P-1 columns, copied here independently of the code under test.
"""

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latency import calibrate, pixel1
from latency.table import COLUMNS, LatencyTable, load_table
from latency.targets import load_target
from search_spaces import OpKey, OpKeyError, SpecError, reference
from search_spaces.references import TABLE3
from search_spaces.transforms import hswish_from, with_nonlinearity
from strategies import arch_specs

ROOT = Path(__file__).resolve().parents[1]

# Table 3, column P-1 (ms), rows with a reference spec.
PAPER_TABLE3_P1 = {
    ("mobilenet_v3_large", 1.0): 51, ("mobilenet_v3_large", 0.75): 39, ("mnasnet_a1", 1.0): 71,
    ("mobilenet_v2", 1.0): 64, ("mobilenet_v3_small", 1.0): 15.8, ("mobilenet_v3_small", 0.75): 12.8,
    ("mnasnet_small", 1.0): 20.3, ("mobilenet_v2", 0.35): 16.6,
}
# Table 5, column P-1 (ms).
PAPER_TABLE5_P1 = {"default": 51.4, "relu": 50.5, "hswish@16": 53.5, "hswish@112": 51.0}
# Table 1, NL column of MobileNetV3-Large: stem, 15 bneck rows, last 1x1 conv and 1x1 NBN conv.
TABLE1_STEM_NL = "HS"
TABLE1_BLOCK_NL = ["RE"] * 6 + ["HS"] * 9
TABLE1_HEAD_NL = "HS"
SHORT = {"relu": "RE", "hswish": "HS"}


@pytest.fixture(scope="module")
def table():
    return pixel1.pixel1_table()


def table5_specs():
    v3l = reference("mobilenet_v3_large")
    return {"default": v3l, "relu": with_nonlinearity(v3l, "relu"), "hswish@16": hswish_from(v3l, channels=16),
            "hswish@112": hswish_from(v3l, channels=112)}


# --------------------------------------------------------------------------- published data
def test_published_figures_are_the_papers():
    t3 = {(p.reference, p.width): p.p1_ms for p in pixel1.TABLE3_P1 + pixel1.NOT_FITTED}
    assert t3 == PAPER_TABLE3_P1
    assert {k: v["p1_ms"] for k, v in TABLE3.items()} == PAPER_TABLE3_P1
    assert {p.variant: p.p1_ms for p in pixel1.TABLE5_P1} == PAPER_TABLE5_P1


# --------------------------------------------------------------------------- benchmark targets
def test_leave_one_out_mape_within_10_percent():
    loo = pixel1.leave_one_out()
    published = [p.p1_ms for p in pixel1.PUBLISHED]
    errors = [abs(pred / pub - 1) for pred, pub in zip(loo, published)]
    assert len(errors) == 11  # Table 3's 7 fitted rows + Table 5's 4
    assert np.mean(errors) <= 0.10, errors
    assert max(errors) < 0.25, errors


def test_loo_leaves_the_network_out():
    v3l = next(p for p in pixel1.TABLE3_P1 if p.label == "V3-Large 1.0")
    assert pixel1.loo_exclusions(v3l) == ("V3-Large 1.0",)
    relu = next(p for p in pixel1.TABLE5_P1 if p.variant == "relu")
    assert pixel1.loo_exclusions(relu) == ("ReLU",)
    full = pixel1.fit()
    assert pixel1.fit(["V3-Large 1.0"]).coefficients != full.coefficients
    assert "V3-Large 1.0" not in pixel1.fit(["V3-Large 1.0"]).fitted_on


@pytest.mark.parametrize("key", [("mobilenet_v3_large", 1.0), ("mobilenet_v3_large", 0.75),
                                 ("mobilenet_v3_small", 1.0), ("mobilenet_v3_small", 0.75)], ids=str)
def test_table3_v3_rows_within_10_percent(table, key):
    predicted = table.predict_ms(reference(*key))
    assert abs(predicted / PAPER_TABLE3_P1[key] - 1) <= 0.10, predicted


def test_table5_order(table):
    ms = {k: table.predict_ms(s) for k, s in table5_specs().items()}
    assert ms["relu"] < ms["hswish@112"] < ms["default"] < ms["hswish@16"], ms
    # The published ordering, for reference: 50.5 < 51 < 51.4 < 53.5.
    p = PAPER_TABLE5_P1
    assert p["relu"] < p["hswish@112"] < p["default"] < p["hswish@16"]


def test_hswish_costs_more_than_relu_per_op(table):
    op = reference("mobilenet_v3_large").op_keys()[8]
    relu = OpKey(**{**op.__dict__, "nonlinearity": "relu"})
    hswish = OpKey(**{**op.__dict__, "nonlinearity": "hswish"})
    swish = OpKey(**{**op.__dict__, "nonlinearity": "swish"})
    assert table.lookup_ms([relu])[0] < table.lookup_ms([hswish])[0] < table.lookup_ms([swish])[0]


def test_width_and_resolution_sweeps_are_monotone(table):
    for name in ("mobilenet_v3_large", "mobilenet_v3_small"):
        by_width = [table.predict_ms(reference(name, w)) for w in (0.35, 0.5, 0.75, 1.0, 1.25)]
        by_res = [table.predict_ms(reference(name, 1.0, r)) for r in (96, 128, 160, 192, 224, 256)]
        assert np.all(np.diff(by_width) > 0) and np.all(np.diff(by_res) > 0), (by_width, by_res)


def test_fit_is_deterministic_and_nonnegative():
    a, b = pixel1.fit(), pixel1.fit()
    assert a == b
    assert all(c >= 0 for c in a.coefficients)
    assert a.as_dict()["elementwise_mpasses"] > 0  # Table 5 pins a positive h-swish cost


# --------------------------------------------------------------------------- honest figures
# The paper's Table 3: Mnas-small has 65.1M MAdds (MnasNet's first small model, never released).
PAPER_MNAS_SMALL_MADDS = 65.1e6


def test_mnas_small_is_not_fitted_on_the_public_spec():
    from search_spaces import count_madds

    public = reference("mnasnet_small")
    assert abs(count_madds(public) / PAPER_MNAS_SMALL_MADDS - 1) > 0.03  # a different network
    assert "Mnas-small" not in {p.label for p in pixel1.PUBLISHED}
    assert "Mnas-small" not in pixel1.fit().fitted_on
    assert "never released" in pixel1.NOT_FITTED_REASON["Mnas-small"]
    with pytest.raises(ValueError, match="Mnas-small"):
        pixel1.fit(exclude=["Mnas-small"])  # not a fitted point, so nothing to exclude


def test_leave_one_family_out_leaves_every_width_out():
    by_label = {p.label: p for p in pixel1.PUBLISHED}
    assert set(pixel1.lofo_exclusions(by_label["V3-Large 0.75"])) == {"V3-Large 1.0", "V3-Large 0.75"}
    assert set(pixel1.lofo_exclusions(by_label["V2 0.35"])) == {"V2 1.0", "V2 0.35"}
    assert set(pixel1.lofo_exclusions(by_label["MnasNet-A1"])) == {"MnasNet-A1"}
    # A Table 5 variant: its own figure and every Table 3 width of V3-Large; the other variants stay.
    assert set(pixel1.lofo_exclusions(by_label["ReLU"])) == {"ReLU", "V3-Large 1.0", "V3-Large 0.75"}
    lofo = pixel1.leave_one_family_out()
    errors = [abs(pred / p.p1_ms - 1) for pred, p in zip(lofo, pixel1.PUBLISHED)]
    assert len(errors) == 11 and np.mean(errors) <= 0.10, errors
    # V3-Large 0.75 is predicted without its 1.0 sibling: not the leave-one-out prediction.
    index = list(by_label).index("V3-Large 0.75")
    assert lofo[index] != pytest.approx(pixel1.leave_one_out()[index], abs=1e-9)


def _with_block(spec, index, **changes):
    import dataclasses

    blocks = list(spec.blocks)
    blocks[index] = dataclasses.replace(blocks[index], **changes)
    return spec.replace(blocks=tuple(blocks))


def test_the_papers_networks_are_inside_the_calibration_domain():
    import latency

    for point in pixel1.PUBLISHED + pixel1.NOT_FITTED:
        prediction = latency.predict(point.spec(), "pixel1")
        assert prediction.extrapolations == () and prediction.extrapolated == (), point.label
    for resolution in (128, 256):
        assert latency.predict(reference("mobilenet_v3_small", 1.0, resolution), "pixel1").extrapolations == ()


@pytest.mark.parametrize("make, words, ops", [
    (lambda: _with_block(reference("mobilenet_v3_large"), 3, kernel=7), "7x7 kernels", (4,)),
    (lambda: _with_block(reference("mobilenet_v3_large"), 2, operator="conv", expansion_channels=None),
     "regular 3x3 convolutions after the stem", (3,)),
    (lambda: reference("mobilenet_v3_large", 1.0, 96), "input 96x96 outside 128-256", tuple(range(20))),
    (lambda: reference("mobilenet_v3_large", 1.0, 320), "input 320x320 outside 128-256", tuple(range(20))),
], ids=["7x7", "regular-conv-block", "res96", "res320"])
def test_extrapolations_are_flagged(make, words, ops):
    import latency

    prediction = latency.predict(make(), "pixel1")
    assert len(prediction.extrapolations) == 1 and words in prediction.extrapolations[0]
    assert prediction.extrapolated == ops  # op 0 is the stem: block b is op b + 1
    out = prediction.to_dict()
    assert out["extrapolations"] == list(prediction.extrapolations)
    assert [i for i, op in enumerate(out["ops"]) if op["extrapolated"]] == list(ops)


def test_predict_cli_flags_extrapolations():
    args = [sys.executable, "-m", "latency.predict", "mobilenet_v3_small", "--target", "pixel1", "--resolution", "96"]
    text = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    assert text.returncode == 0, text.stderr
    assert "extrapolation: input 96x96 outside 128-256" in text.stdout and "(extrapolated)" in text.stdout
    out = json.loads(subprocess.run(args + ["--json"], capture_output=True, text=True, cwd=ROOT).stdout)
    assert len(out["extrapolations"]) == 1 and all(op["extrapolated"] for op in out["ops"])


# --------------------------------------------------------------------------- the table
op_keys = st.builds(
    OpKey,
    operator=st.sampled_from(["conv", "bneck", "pool", "linear"]),
    resolution=st.integers(1, 320), in_channels=st.integers(1, 1280), out_channels=st.integers(1, 1280),
    kernel=st.sampled_from([1, 3, 5, 7]), stride=st.sampled_from([1, 2]),
    nonlinearity=st.sampled_from(["relu", "relu6", "hswish", "swish", "none"]),
    expansion_channels=st.integers(1, 1920), se_channels=st.just(0), residual=st.booleans(),
).flatmap(lambda k: st.one_of(st.just(k), st.integers(1, 480).map(
    lambda se: OpKey(**{**k.__dict__, "se_channels": se, "se_gate": "hsigmoid"}))))


def _with(key, **changes):
    return OpKey(**{**key.__dict__, **changes})


@settings(max_examples=300, deadline=None)
@given(op_keys)
def test_every_op_key_has_a_finite_positive_latency(key):
    table = pixel1.pixel1_table()
    ms = table.lookup_ms([key])
    assert ms.shape == (1,) and math.isfinite(ms[0]) and ms[0] > 0
    assert table.missing([key]) == []
    assert sum(table.breakdown(key).values()) == pytest.approx(ms[0])


@settings(max_examples=300, deadline=None)
@given(op_keys, st.integers(1, 256))
def test_latency_is_monotone_in_channels(key, extra):
    table = pixel1.pixel1_table()
    base = table.lookup_ms([key])[0]
    assert table.lookup_ms([_with(key, out_channels=key.out_channels + extra)])[0] >= base
    assert table.lookup_ms([_with(key, resolution=key.resolution + extra)])[0] >= base
    if key.se_channels:
        assert table.lookup_ms([_with(key, se_channels=key.se_channels + extra)])[0] >= base
    if key.operator != "bneck":
        assert table.lookup_ms([_with(key, in_channels=key.in_channels + extra)])[0] >= base
    else:
        # An expansion equal to the input width means "no expansion layer" (a different op),
        # so widths are compared only while that does not change.
        wider = _with(key, expansion_channels=key.expansion_channels + extra)
        if (key.expansion_channels == key.in_channels) == (wider.expansion_channels == wider.in_channels):
            assert table.lookup_ms([wider])[0] >= base


def test_bad_op_key_is_refused(table):
    with pytest.raises(OpKeyError, match="in_channels"):
        table.lookup_ms([OpKey("conv", 56, 0, 16, 3, 1, "relu")])


@settings(max_examples=50, deadline=None)
@given(arch_specs())
def test_network_latency_is_the_sum_of_its_ops(spec):
    table = pixel1.pixel1_table()
    keys = spec.op_keys()
    total = table.predict_ms(spec)
    assert total == pytest.approx(float(table.lookup_ms(keys).sum()) + table.network_overhead_ms)
    # ... and equals the calibrated model applied to the network's summed features.
    assert total == pytest.approx(table.calibration.predict_ms(spec) + table.network_overhead_ms)


def test_lookup_of_one_spec_is_fast(table):
    keys = reference("mobilenet_v3_large").op_keys()
    table.lookup_ms(keys)
    best = min(_time(lambda: table.lookup_ms(keys), 200) for _ in range(5))
    assert best < 1e-3, f"{best * 1e6:.0f} us per spec"


def _time(fn, repeats):
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def test_provenance_says_not_measured(table):
    assert isinstance(table, LatencyTable)
    p = table.provenance
    assert p["kind"] == "model" and p["backend"] == "pixel1-model" and p["measured"] is False
    assert "not measured" in p["source"] and "Howard et al. 2019" in p["source"]
    assert set(p["coefficients"]) == set(pixel1.FEATURES)
    assert len(p["fit"]["points"]) == 11 and "date" in p
    assert [x["label"] for x in p["not_fitted"]] == ["Mnas-small"]
    assert table.network_overhead_ms == 0.0


def test_target_loads_the_model():
    table = load_target("pixel1").load_table()
    assert isinstance(table, pixel1.ModelTable) and table.name == "pixel1"


def test_latency_predict_uses_the_model(table):
    import latency

    spec = reference("mobilenet_v3_small", 0.75)
    assert latency.predict_ms(spec, "pixel1") == pytest.approx(table.predict_ms(spec))
    assert latency.predict(spec, "pixel1").latency_ms == pytest.approx(table.predict_ms(spec))


def test_write_table_round_trip(table, tmp_path):
    keys = list(reference("mobilenet_v3_small").op_keys()) + list(reference("mnasnet_a1").op_keys())
    path = pixel1.write_table(tmp_path / "pixel1.csv", keys)
    assert (tmp_path / "pixel1.provenance.json").is_file()
    loaded = load_table(path)
    assert list(loaded.rows.reset_index().columns) == COLUMNS
    assert np.allclose(loaded.lookup_ms(keys), table.lookup_ms(keys))
    assert loaded.provenance["kind"] == "model" and loaded.fill_command(keys) is None


# --------------------------------------------------------------------------- transforms
def _nl(spec):
    return (SHORT[spec.stem.nonlinearity], [SHORT[b.nonlinearity] for b in spec.blocks], SHORT[spec.head.nonlinearity])


def test_default_v3_large_matches_table1():
    assert _nl(reference("mobilenet_v3_large")) == (TABLE1_STEM_NL, TABLE1_BLOCK_NL, TABLE1_HEAD_NL)


def test_with_nonlinearity_everywhere():
    v3l = reference("mobilenet_v3_large")
    relu = with_nonlinearity(v3l, "relu")
    assert _nl(relu) == ("RE", ["RE"] * 15, "RE")
    assert [b.se_gate for b in relu.blocks] == [b.se_gate for b in v3l.blocks]  # gates stay
    assert _nl(with_nonlinearity(v3l, "hswish")) == ("HS", ["HS"] * 15, "HS")
    assert _nl(v3l) == (TABLE1_STEM_NL, TABLE1_BLOCK_NL, TABLE1_HEAD_NL)  # input unchanged


def test_hswish_from_channels_and_index():
    v3l = reference("mobilenet_v3_large")
    at112 = hswish_from(v3l, channels=112)
    assert _nl(at112) == ("HS", ["RE"] * 10 + ["HS"] * 5, "HS")
    assert hswish_from(v3l, index=10).hash == at112.hash == hswish_from(v3l, index=-5).hash
    assert hswish_from(v3l, channels=16).hash == with_nonlinearity(v3l, "hswish").hash
    # The paper's default is h-swish from the first 80-channel block (Table 1, row 7) on.
    assert hswish_from(v3l, channels=80).hash == v3l.hash
    assert _nl(hswish_from(v3l, channels=112, stem="relu"))[0] == "RE"
    # Any spec: MobileNetV2 (ReLU6) from its first 96-channel block.
    v2 = hswish_from(reference("mobilenet_v2"), channels=96)
    assert [b.nonlinearity for b in v2.blocks] == ["relu"] * 10 + ["hswish"] * 7


@pytest.mark.parametrize("call, field", [
    (lambda s: hswish_from(s, channels=113), "channels"),
    (lambda s: hswish_from(s), "channels"),
    (lambda s: hswish_from(s, channels=16, index=0), "channels"),
    (lambda s: hswish_from(s, channels=0), "channels"),
    (lambda s: hswish_from(s, index=15), "index"),
    (lambda s: hswish_from(s, index=1.5), "index"),
    (lambda s: hswish_from(s, channels=112, stem="gelu"), "stem"),
    (lambda s: with_nonlinearity(s, "gelu"), "nonlinearity"),
])
def test_transforms_reject_bad_input(call, field):
    with pytest.raises(SpecError) as info:
        call(reference("mobilenet_v3_large"))
    assert info.value.path == field
    assert str(info.value).startswith(f"{field}: ") and "\n" not in str(info.value)


def test_missing_channels_message_names_the_widths():
    with pytest.raises(SpecError, match=r"no block of 'mobilenet_v3_large' has 113 output channels.*16, 24, 40"):
        hswish_from(reference("mobilenet_v3_large"), channels=113)


# --------------------------------------------------------------------------- the CLI
def test_calibrate_json_cli():
    result = subprocess.run([sys.executable, "-m", "latency.calibrate", "--json"], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert {"loo_mape", "lofo_mape", "not_fitted", "table3", "table5", "coefficients", "points"} <= set(out)
    assert out["loo_mape"] <= 0.10 and out["lofo_mape"] <= 0.10 and out["passed"] is True
    assert all({"lofo_ms", "lofo_error_pct", "lofo_left_out"} <= set(p) for p in out["points"])
    assert [p["label"] for p in out["not_fitted"]] == ["Mnas-small"]
    assert "Mnas-small" not in {p["label"] for p in out["points"]}
    assert [r["label"] for r in out["table3"]] == ["V3-Large 1.0", "V3-Large 0.75", "V3-Small 1.0", "V3-Small 0.75"]
    assert all(r["within_10pct"] for r in out["table3"])


def test_calibrate_writes_outputs(tmp_path, capsys):
    assert calibrate.main(["--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "LOO MAPE" in text and "leave-one-family-out MAPE" in text and "not fitted: Mnas-small" in text
    for name in ("points.csv", "sweep.csv", "calibration.json", "pixel1_ops.csv", "pixel1_ops.provenance.json",
                 "pixel1_fit.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "pixel1_fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
