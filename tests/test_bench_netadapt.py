"""experiments.benchmarks.bench_netadapt: the pure pieces (interpolation at equal latency, the verdict, the
selection-noise statistics) on synthetic numbers with known answers, and one tiny real run of the
noise part on Ray (resumed from its cache)."""

import json
import math

import pytest

from experiments.benchmarks.bench_netadapt import (cheapest_above_noise, equal_latency_verdict, interpolate_at, noise,
                                        noise_statistics, summary)


# ----------------------------------------------------------------------------- equal latency
def test_interpolate_at_is_linear_in_latency():
    assert interpolate_at(12.0, (10.0, 0.40), (14.0, 0.48)) == pytest.approx(0.44)
    assert interpolate_at(11.0, (10.0, 0.40), (14.0, 0.48)) == pytest.approx(0.42)
    assert interpolate_at(10.0, (10.0, 0.40), (14.0, 0.48)) == pytest.approx(0.40)  # the endpoints
    assert interpolate_at(14.0, (10.0, 0.40), (14.0, 0.48)) == pytest.approx(0.48)
    assert interpolate_at(12.0, (10.0, 0.50), (14.0, 0.30)) == pytest.approx(0.40)  # slower may be worse
    assert interpolate_at(12.0, (12.0, 0.40), (12.0, 0.50)) == pytest.approx(0.45)  # one latency: the mean


@pytest.mark.parametrize("latency, low, high", [(9.0, (10.0, 0.4), (14.0, 0.5)), (15.0, (10.0, 0.4), (14.0, 0.5)),
                                                (12.0, (14.0, 0.4), (10.0, 0.5))])
def test_interpolate_at_refuses_to_extrapolate(latency, low, high):
    with pytest.raises(ValueError, match="interpolate_at"):
        interpolate_at(latency, low, high)


def test_equal_latency_verdict_known_answer():
    # Uniform: 10 ms and 14 ms; NetAdapt at 12 ms sits halfway, so the baseline per seed is the
    # mean of the two: 0.44, 0.46, 0.48 (mean 0.46, sd 0.02). NetAdapt: 0.45, 0.47, 0.49.
    v = equal_latency_verdict(12.0, [0.45, 0.47, 0.49], (10.0, [0.40, 0.42, 0.44]), (14.0, [0.48, 0.50, 0.52]))
    assert v["weight_above"] == pytest.approx(0.5)
    assert v["uniform_interpolated"]["accuracies"] == pytest.approx([0.44, 0.46, 0.48])
    assert v["uniform_interpolated"]["mean"] == pytest.approx(0.46)
    assert v["uniform_interpolated"]["std"] == pytest.approx(0.02)
    assert v["netadapt"]["mean"] == pytest.approx(0.47) and v["netadapt"]["std"] == pytest.approx(0.02)
    assert v["difference"] == pytest.approx(0.01)
    assert v["netadapt_ge_uniform"] is True and v["statement"] == "NetAdapt >= uniform: True"
    # A quarter of the way: 0.40 + 0.25 * 0.08 = 0.42 for the first seed; NetAdapt below it now.
    v = equal_latency_verdict(11.0, [0.41, 0.41], (10.0, [0.40, 0.40]), (14.0, [0.48, 0.48]))
    assert v["uniform_interpolated"]["mean"] == pytest.approx(0.42)
    assert v["difference"] == pytest.approx(-0.01) and v["netadapt_ge_uniform"] is False


def test_equal_latency_verdict_skips_failed_seeds_and_missing_sides():
    v = equal_latency_verdict(12.0, [0.45, None, math.nan], (10.0, [0.40, None, 0.44]), (14.0, [0.48, 0.50, 0.52]))
    assert v["netadapt"]["accuracies"] == [0.45] and v["netadapt"]["std"] == 0.0
    assert v["uniform_interpolated"]["accuracies"] == pytest.approx([0.44, 0.48])  # seed 1 failed below
    v = equal_latency_verdict(12.0, [0.45], None, (14.0, [0.48]))
    assert v["uniform_interpolated"] is None and v["netadapt_ge_uniform"] is None
    assert "cannot interpolate" in v["statement"]


def test_summary():
    assert summary([0.1, 0.3]) == {"accuracies": [0.1, 0.3], "n": 2, "mean": pytest.approx(0.2),
                                   "std": pytest.approx(math.sqrt(0.02))}
    assert summary([None, math.nan]) == {"accuracies": [], "n": 0, "mean": None, "std": None}


# ----------------------------------------------------------------------------- selection noise
def test_noise_statistics_known_answer():
    a = {0: 1.0, 1: 2.0, 2: 3.0, 3: 6.0}
    b = {0: 2.0, 1: 1.0, 2: 4.0, 3: 5.0}  # a - b = -1, 1, -1, 1: sd sqrt(4/3), one score sqrt(2/3)
    s = noise_statistics(a, b, {k: v / 100 for k, v in a.items()}, {k: v / 100 for k, v in b.items()})
    assert s["proposals"] == 4
    assert s["noise"] == pytest.approx(math.sqrt(2 / 3))
    assert s["noise_accuracy"] == pytest.approx(math.sqrt(2 / 3) / 100)
    assert s["lead"] == pytest.approx(2.0)  # means 1.5, 1.5, 3.5, 5.5
    assert s["lead_over_noise"] == pytest.approx(2.0 / math.sqrt(2 / 3))
    assert s["lead_exceeds_noise"] is True
    assert (s["winner_a"], s["winner_b"], s["winner_mean"], s["winner_agrees"]) == (3, 3, 3, True)
    assert s["spread"] == pytest.approx(math.sqrt(11 / 3))


def test_noise_ignores_a_common_offset_and_sees_disagreement():
    a = {0: 1.0, 1: 2.0, 2: 3.0}
    shifted = noise_statistics(a, {k: v + 10 for k, v in a.items()})
    assert shifted["noise"] == pytest.approx(0.0) and shifted["lead_over_noise"] == math.inf
    # Seeds pick different winners; the lead is small against the noise.
    s = noise_statistics({0: 1.0, 1: 1.2, 2: 0.0}, {0: 1.3, 1: 0.9, 2: 0.1})
    assert (s["winner_a"], s["winner_b"], s["winner_agrees"]) == (1, 0, False)
    assert s["winner_mean"] == 0 and s["lead"] == pytest.approx(0.1)  # means 1.15, 1.05, 0.05
    diffs = [-0.3, 0.3, -0.1]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    assert s["noise"] == pytest.approx(sd / math.sqrt(2))
    assert s["lead_over_noise"] == pytest.approx(0.1 / (sd / math.sqrt(2))) and s["lead_exceeds_noise"] is False
    # Ties go to the lower index, as NetAdapt's selection does.
    assert noise_statistics({4: 1.0, 2: 1.0}, {4: 1.0, 2: 1.0})["winner_a"] == 2


def test_noise_statistics_leaves_failed_proposals_out():
    s = noise_statistics({0: 1.0, 1: 2.0, 2: math.nan, 3: 5.0}, {0: 1.0, 1: 2.5, 2: 1.0})
    assert s["proposals"] == 2 and s["lead"] == pytest.approx(1.25)
    one = noise_statistics({0: 1.0}, {0: 2.0})
    assert one["noise"] is None and one["lead"] is None and one["lead_over_noise"] is None
    assert one["winner_agrees"] is True


def test_cheapest_above_noise_prefers_fewer_steps_then_fewer_images():
    rows = [{"steps": 10, "eval_images": 512, "lead_over_noise": 0.5},
            {"steps": 10, "eval_images": 1685, "lead_over_noise": 1.5},
            {"steps": 50, "eval_images": 512, "lead_over_noise": 3.0},
            {"steps": 50, "eval_images": 1685, "lead_over_noise": None}]
    assert cheapest_above_noise(rows) is rows[1]
    assert cheapest_above_noise(rows[:1]) is None


# ----------------------------------------------------------------------------- a tiny real run
def test_tiny_noise_run_on_the_grid_resumes_from_its_journal(tmp_path):
    from netadapt.config import NetAdaptConfig
    from search_spaces import ArchSpec, BlockSpec, HeadSpec, StemSpec

    tiny = ArchSpec(name="tiny", stem=StemSpec(16, 3, 2, "hswish"),
                    blocks=(BlockSpec("bneck", 3, 2, 16, 16, 8, "relu"), BlockSpec("bneck", 3, 2, 48, 24, 0, "relu"),
                            BlockSpec("bneck", 3, 1, 64, 24, 16, "hswish")),
                    head=HeadSpec(conv_channels=48, hidden_channels=64))
    config = NetAdaptConfig(spec=tiny, budget_ratio=0.8, step_ratio=0.05, out=str(tmp_path / "run"), val_size=64,
                            pretrain_epochs=0.03, progress=False,
                            proxy_overrides={"resolution": 16, "batch_size": 16, "bn_recalibration_batches": 1,
                                             "eval_batch_size": 512})
    lines = []
    result = noise(config, steps=(2, 3), log=lines.append)
    assert (tmp_path / "run" / "seed.pt").exists()  # pre-trained, as NetAdapt's seed step would
    from proxytask.grid import journaled_results

    cache = journaled_results(tmp_path / "run" / "bench_trainings.jsonl")  # the one grid's journal
    assert len(cache) == 2 * 2 * result["proposals"] and result["proposals"] >= 2
    assert all(r["status"] == "ok" and 0 <= r["val_subset_accuracy"] <= 1 for r in cache.values())
    assert result["eval_images"]["subset"] == 64 and result["eval_images"]["whole"] > 64
    assert [(r["steps"], r["eval_images"]) for r in result["table"]] == [
        (2, 64), (2, result["eval_images"]["whole"]), (3, 64), (3, result["eval_images"]["whole"])]
    for row in result["table"]:
        assert row["proposals"] == result["proposals"] and row["noise"] is not None and row["noise"] >= 0
        assert row["lead"] is not None and row["lead"] >= 0 and row["winner_agrees"] in (True, False)
    for detail in result["details"]:  # seeds A and B really differ
        assert any(p["metric"][0] != p["metric"][1] for p in detail["proposals"])
    # A rerun trains nothing and gives the same table.
    again_lines = []
    again = noise(config, steps=(2, 3), log=again_lines.append)
    assert not any("training(s) to run" in line for line in again_lines)
    assert json.dumps(again["table"], sort_keys=True) == json.dumps(result["table"], sort_keys=True)
