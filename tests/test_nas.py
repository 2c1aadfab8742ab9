"""NAS: reward, strategies on toy rewards, and real (tiny) Ray Tune searches end to end."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from nas.reward import INVALID_REWARD, reward
from nas.strategies import EvolutionStrategy, RandomStrategy, RLStrategy, make_strategy
from search_spaces import ArchSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]
TINY = {"max_steps": 2, "batch_size": 16, "bn_recalibration_batches": 1}


# ----------------------------------------------------------------------------- reward
def test_reward_soft_constraint_matches_the_formula():
    assert reward(0.75, 80.0, 80.0, -0.07) == pytest.approx(0.75)
    assert reward(0.75, 160.0, 80.0, -0.07) == pytest.approx(0.75 * 2 ** -0.07)
    assert reward(0.75, 40.0, 80.0, -0.07) == pytest.approx(0.75 * 0.5 ** -0.07)  # faster: a bonus
    assert reward(0.6, 30.0, 15.0, -0.15) == pytest.approx(0.6 * 2 ** -0.15)


def test_reward_hard_constraint():
    assert reward(0.7, 40.0, 80.0, alpha=0.0, beta=-1.0) == pytest.approx(0.7)
    assert reward(0.7, 160.0, 80.0, alpha=0.0, beta=-1.0) == pytest.approx(0.35)


def test_reward_rejects_bad_latency_and_handles_missing_accuracy():
    with pytest.raises(ValueError, match="target_ms"):
        reward(0.5, 10.0, 0.0)
    with pytest.raises(ValueError, match="latency_ms"):
        reward(0.5, float("nan"), 10.0)
    assert reward(float("nan"), 10.0, 10.0) == INVALID_REWARD


# ----------------------------------------------------------------------------- strategies
COUNTS = [4, 2, 2, 2, 3, 3, 2] * 3


def toy_reward(sample, target=tuple(i % n for i, n in enumerate(COUNTS))):
    return sum(a == b for a, b in zip(sample, target)) / len(sample)


def run_strategy(strategy, n):
    rewards = []
    for _ in range(n):
        sample = strategy.ask()
        assert len(sample) == len(COUNTS) and all(0 <= c < k for c, k in zip(sample, COUNTS))
        rewards.append(toy_reward(sample))
        strategy.tell(sample, rewards[-1])
    return rewards


@pytest.mark.parametrize("name,n", [("rl", 240), ("evolution", 240)])
def test_strategies_climb_a_toy_reward(name, n):
    torch.set_num_threads(1)
    rewards = run_strategy(make_strategy(name, COUNTS, seed=0, **({"lr": 0.05} if name == "rl" else {})), n)
    random_rewards = run_strategy(RandomStrategy(COUNTS, seed=0), n)
    first, last = sum(rewards[:40]) / 40, sum(rewards[-40:]) / 40
    assert last > first + 0.15, (first, last)
    assert last > sum(random_rewards[-40:]) / 40 + 0.15


@pytest.mark.parametrize("cls", [RandomStrategy, EvolutionStrategy, RLStrategy])
def test_state_round_trip_continues_identically(cls):
    a = cls(COUNTS, seed=3)
    run_strategy(a, 37)
    state = json.loads(json.dumps(a.state_dict()))  # plain JSON, no pickle
    b = cls(COUNTS, seed=99)
    b.load_state_dict(state)
    assert run_strategy(a, 20) == run_strategy(b, 20)


def test_state_of_another_strategy_is_refused():
    with pytest.raises(ValueError, match="checkpoint is for strategy 'random'"):
        EvolutionStrategy(COUNTS).load_state_dict(RandomStrategy(COUNTS).state_dict())


def test_unknown_strategy():
    with pytest.raises(ValueError, match="strategy: 'bayes' is not one of rl, random, evolution"):
        make_strategy("bayes", COUNTS)


# ----------------------------------------------------------------------------- Ray Tune searches
def _search(tmp_path, ray_session, **changes):
    from nas.runner import SearchConfig, run_search

    config = SearchConfig(out=str(tmp_path / "run"), children=3, concurrency=2, progress=False,
                          proxy_overrides=dict(TINY), rl_batch_size=2, retries=0)
    for key, value in changes.items():
        setattr(config, key, value)
    return run_search(config), Path(config.out)


def test_tiny_ray_tune_search_end_to_end(tmp_path, ray_session):
    summary, out = _search(tmp_path, ray_session, children=4)
    trials = pd.read_csv(out / "trials.csv")
    assert summary["children_trained"] == 4 and len(trials) == 4
    assert set(trials["status"]) == {"ok"}
    assert trials["accuracy"].between(0, 1).all() and (trials["latency_ms"] > 0).all()
    best = load_spec(out / "best.yaml")
    assert isinstance(best, ArchSpec) and best.resolution == 224
    assert summary["best_reward"] == pytest.approx(trials["reward"].max())
    assert (out / "pareto.png").stat().st_size > 1000
    assert json.loads((out / "searcher.json").read_text())["strategy"]["name"] == "rl"
    # Rewards follow the paper's formula from the recorded accuracy and latency.
    row = trials.iloc[0]
    assert row["reward"] == pytest.approx(reward(row["accuracy"], row["latency_ms"], summary["target_ms"], -0.07))


def test_diverging_children_get_the_invalid_reward(tmp_path, ray_session):
    summary, out = _search(tmp_path, ray_session, strategy="random", children=2,
                           proxy_overrides=dict(TINY, lr=1e12, grad_clip_norm=None))
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 2 and set(trials["status"]) == {"diverged"}
    assert (trials["reward"] == INVALID_REWARD).all()
    assert trials["reason"].str.len().min() > 0


def test_crashing_children_are_recorded_and_the_search_goes_on(tmp_path, ray_session):
    summary, out = _search(tmp_path, ray_session, strategy="random", children=2, data=f"imagefolder:{tmp_path}/none")
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 2 and set(trials["status"]) == {"error"}
    assert (trials["reward"] == INVALID_REWARD).all()


def test_existing_run_needs_resume(tmp_path, ray_session):
    from nas.runner import SearchError

    _search(tmp_path, ray_session, strategy="random", children=1)
    with pytest.raises(SearchError, match="pass --resume"):
        _search(tmp_path, ray_session, strategy="random", children=1)


def test_cuda_children_need_gpus_per_trial(tmp_path, ray_session):
    from nas.runner import SearchError

    with pytest.raises(SearchError, match=r"proxy.device: 'cuda' needs GPUs for the trials; pass --gpus-per-trial 1"):
        _search(tmp_path, ray_session, strategy="random", children=1, proxy_overrides={**TINY, "device": "cuda"})


def test_resume_after_killing_a_real_search(tmp_path, ray_session):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "nas.search", "--target", "pixel1", "--children", "6", "--out", str(out),
           "--address", ray_session, "--concurrency", "2", "--rl-batch-size", "2", "--no-progress"]
    cmd += [arg for key, value in TINY.items() for arg in ("--proxy", f"{key}={value}")]
    env = dict(os.environ)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = out / "journal.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if journal.exists() and len(journal.read_text().splitlines()) >= 2:
            break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = [json.loads(line) for line in journal.read_text().splitlines()]
    assert 2 <= len(before) < 6, "the search finished before it could be killed"
    result = subprocess.run(cmd + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    after = [json.loads(line) for line in journal.read_text().splitlines()]
    trained = [r for r in after if r.get("trained", True)]
    assert len(trained) == 6
    # Children completed before the kill were kept as they were, never trained again.
    assert after[:len(before)] == before
    assert len({r["index"] for r in after}) == len(after)
    assert len(pd.read_csv(out / "trials.csv")) == len(after)


def test_journal_survives_a_torn_last_line(tmp_path):
    from nas.searcher import Journal

    journal = Journal(tmp_path / "journal.jsonl")
    journal.append({"index": 0})
    with open(journal.path, "a") as f:
        f.write('{"index": 1, "rew')  # a kill in the middle of a write
    assert journal.read() == [{"index": 0}]
    journal.append({"index": 2})
    assert journal.read() == [{"index": 0}, {"index": 2}]
