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
from jobs import JournalMismatch, JournalWarning
from nas.strategies import (EvolutionStrategy, RandomStrategy, RLStrategy, advantages, make_strategy,
                            surrogate)
from search_spaces import ArchSpec, load_spec
from search_spaces.spaces import get_space

ROOT = Path(__file__).resolve().parents[1]
TINY = {"max_steps": 2, "batch_size": 16, "bn_recalibration_batches": 1, "resolution": 32}


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


# ----------------------------------------------------------------------------- the RL update, by hand
# Rewards of a batch of four; their population std: deviations from the mean 0.5 are -0.3, -0.1,
# 0.1, 0.3, whose squares average 0.05, so the spread is sqrt(0.05) = 0.2236068.
def test_advantages_match_hand_computed_values():
    rewards = torch.tensor([0.2, 0.4, 0.6, 0.8])
    assert advantages(rewards, 0.5).tolist() == pytest.approx([-1.3416408, -0.4472136, 0.4472136, 1.3416408])
    # against a moving baseline 0.3: (0.2 - 0.3) / 0.2236068 = -0.4472136, ...
    assert advantages(rewards, 0.3).tolist() == pytest.approx([-0.4472136, 0.4472136, 1.3416408, 2.2360680])
    # equal rewards (a batch of failed children), also after the baseline moved: no information
    assert advantages(torch.zeros(4), 0.45).tolist() == [0.0] * 4
    assert advantages(torch.tensor([0.5, 0.5 + 1e-9]), 0.2).tolist() == [0.0, 0.0]


def test_surrogates_match_hand_computed_values():
    up, down = torch.tensor([0.5, 0.5, -0.5, -0.5]), torch.zeros(4)  # ratio e^0.5 = 1.6487213, e^-0.5 = 0.6065307
    advantage = torch.tensor([1.0, -1.0, 1.0, -1.0])
    # PPO, clip 0.2: min(r A, clip(r, 0.8, 1.2) A)
    assert surrogate("ppo", up, down, advantage, 0.2).tolist() == pytest.approx([1.2, -1.6487213, 0.6065307, -0.8])
    assert surrogate("reinforce", torch.tensor([-2.0, -1.0]), torch.zeros(2), torch.tensor([0.5, -3.0]),
                     0.2).tolist() == [-1.0, 3.0]


# Samples of a controller over two decisions (2 and 3 options); at the start the policy is uniform,
# so every sample has log-prob -log 6 and entropy log 6 = 1.7917595, and the gradient of log p(a)
# with respect to decision k's logits is onehot(a_k) - 1/n_k (the entropy's is zero).
SAMPLES = [(0, 0), (1, 2), (0, 1), (1, 0)]


def test_rl_losses_and_gradients_match_hand_computed_values():
    advantage = torch.tensor([1.0, -0.5, 0.25, -1.0])  # mean -0.0625
    samples = torch.tensor(SAMPLES)
    uniform = torch.full((4,), -1.7917595)
    cases = {
        # REINFORCE: -(mean(-log 6 x A) + 0.01 log 6) = -(0.1119850 + 0.0179176); bias gradients
        # -mean(A_i (onehot - 1/n)): head 0 option 0: -((1 + 0.25) / 4 + 0.5 x 0.0625) = -0.34375, ...
        ("reinforce", 0.0): (-0.1299026, [-0.34375, 0.34375], [-0.0208333, -0.0833333, 0.1041667]),
        # PPO with behaviour log-probs 0.5 below (ratio 1.6487213): A > 0 clipped at 1.2 A (no gradient),
        # A < 0 kept at ratio x A: objective mean (1.2 - 0.8243606 + 0.3 - 1.6487213) / 4 = -0.2432705;
        # head 0 option 0: -(ratio / 4)((-0.5)(-0.5) + (-1)(-0.5)) = -0.3091352, ...
        ("ppo", 0.5): (0.2253529, [-0.3091352, 0.3091352], [0.2060902, -0.2060902, 0.0]),
    }
    for (algorithm, shift), (loss_value, head0, head1) in cases.items():
        strategy = RLStrategy([2, 3], algorithm=algorithm, batch_size=4, entropy_weight=0.01)
        loss = strategy.loss(samples, uniform - shift, advantage)
        loss.backward()
        heads = strategy.controller.heads
        assert float(loss.detach()) == pytest.approx(loss_value, abs=1e-6), algorithm
        assert heads[0].bias.grad.tolist() == pytest.approx(head0, abs=1e-6), algorithm
        assert heads[1].bias.grad.tolist() == pytest.approx(head1, abs=1e-6), algorithm


@pytest.mark.parametrize("algorithm", ["ppo", "reinforce"])
def test_an_update_takes_the_hand_computed_step(algorithm):
    # First batch: the baseline is the batch mean 0.45; spread sqrt(0.1025) = 0.3201562; advantages
    # (1.4055638, -1.0932163, 0.4685213, -0.7808688). The objective's gradient for decision k's
    # option j is mean(A_i [a_ik = j]) (the advantages sum to zero): head 0: A0 + A2 > 0, A1 + A3 < 0;
    # head 1: A0 + A3 > 0, A2 > 0, A1 < 0. Adam's first step moves each bias by lr x the sign.
    strategy = RLStrategy([2, 3], algorithm=algorithm, batch_size=4, ppo_epochs=1, lr=0.01)
    for sample, value in zip(SAMPLES, [0.9, 0.1, 0.6, 0.2]):
        strategy.tell(sample, value)
    assert strategy.updates == 1 and strategy.baseline == pytest.approx(0.45)
    heads = strategy.controller.heads
    assert heads[0].bias.tolist() == pytest.approx([0.01, -0.01], rel=1e-4)
    assert heads[1].bias.tolist() == pytest.approx([0.01, 0.01, -0.01], rel=1e-4)


@pytest.mark.parametrize("algorithm", ["ppo", "reinforce"])
def test_equal_rewards_leave_the_policy_unchanged(algorithm):
    strategy = RLStrategy([2, 3], algorithm=algorithm, batch_size=4)
    for sample, value in zip(SAMPLES, [0.9, 0.1, 0.6, 0.2]):
        strategy.tell(sample, value)  # a first update: the baseline is 0.45, the policy no longer uniform
    before = {k: v.clone() for k, v in strategy.controller.state_dict().items()}
    probabilities = strategy.probabilities()
    for sample in SAMPLES:
        strategy.tell(sample, INVALID_REWARD)  # a batch of failed children
    assert all(torch.equal(before[k], v) for k, v in strategy.controller.state_dict().items())
    assert strategy.probabilities() == probabilities and strategy.updates == 1
    assert strategy.baseline == pytest.approx(0.9 * 0.45) and not strategy.buffer


def test_identical_samples_in_flight_keep_their_own_behaviour_log_probs():
    strategy = RLStrategy([2, 2], seed=0, batch_size=4)

    def log_prob(sample):
        with torch.no_grad():
            return float(strategy.controller(actions=torch.tensor([sample]))[1][0])

    first = strategy.ask()
    first_logp = log_prob(first)
    others = [s for s in [(0, 0), (1, 1), (0, 1), (1, 0)] if s != first] * 2
    for sample, value in zip(others, [1.0, 0.0, 0.5, 0.2]):
        strategy.tell(sample, value)  # children of an earlier run: an update while `first` is in flight
    while strategy.ask() != first:  # the same network again, from the updated policy
        pass
    second_logp = log_prob(first)
    assert abs(second_logp - first_logp) > 1e-4
    restored = RLStrategy([2, 2], seed=1, batch_size=4)
    restored.load_state_dict(json.loads(json.dumps(strategy.state_dict())))
    for s in (strategy, restored):
        s.tell(first, 0.3)
        s.tell(first, 0.7)
        assert [lp for _, lp, _ in s.buffer] == pytest.approx([first_logp, second_logp])


def test_strategies_leave_torchs_global_generator_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    strategy = RLStrategy(COUNTS, seed=5, batch_size=4)
    run_strategy(strategy, 12)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)  # the strategy's seed alone decides its controller and its samples
    again = RLStrategy(COUNTS, seed=5, batch_size=4)
    fresh = RLStrategy(COUNTS, seed=5, batch_size=4)
    assert all(torch.equal(a, b) for a, b in zip(again.controller.parameters(), fresh.controller.parameters()))
    assert run_strategy(again, 12) == run_strategy(fresh, 12)


# ----------------------------------------------------------------------------- the searcher, without Ray
FIXED = dict(operator=["mbconv3"], se=[0], skip=["identity"], width=[1.0], layers=[0], nonlinearity=["relu"])


def _searcher(run_dir, strategy_name, kernels=(3, 5), budget=10, **options):
    from nas.runner import _latency_fn
    from nas.searcher import StrategySearcher

    space = get_space("mobilenetv3").reduced(kernel=list(kernels), **FIXED)
    strategy = make_strategy(strategy_name, [len(opts) for _, _, opts in space.decisions], seed=0)
    return StrategySearcher(strategy, space, _latency_fn("pixel1"), budget=budget, target_ms=50.0, w=-0.07,
                            alpha=None, beta=None, trial_config={}, run_dir=run_dir, **options)


def _ok(accuracy):
    return {"status": "ok", "accuracy": accuracy, "seconds": 1.0}


def test_duplicates_are_told_but_not_retrained_and_a_converged_search_says_so(tmp_path):
    from ray.tune.search import Searcher

    searcher = _searcher(tmp_path, "evolution", kernels=(3,), budget=4, max_duplicates=3)  # a one-network space
    assert searcher.suggest("t0")["index"] == 0
    assert searcher.suggest("t1")["index"] == 1  # the same network, still in flight: trained again
    searcher.on_trial_complete("t0", _ok(0.5))
    searcher.on_trial_complete("t1", _ok(0.5))
    assert searcher.suggest("t2") == Searcher.FINISHED
    records = searcher.journal.read()
    assert [r["trained"] for r in records] == [True, True, False, False, False]
    assert [r["index"] for r in records] == [0, 1, 2, 3, 4]
    assert len({r["reward"] for r in records}) == 1  # a duplicate carries the reward its network got
    # Each duplicate is a sample the strategy learns from (MnasNet samples with replacement).
    assert searcher.strategy.told == 5 and len(searcher.strategy.population) == 5
    assert searcher.trained == 2
    assert "stopped early after 2 of 4 children" in searcher.stopped and "3 networks in a row" in searcher.stopped
    assert searcher.suggest("t3") == Searcher.FINISHED


def test_resume_skips_a_damaged_journal_line_and_refuses_a_journal_that_disagrees(tmp_path):
    searcher = _searcher(tmp_path, "random")
    for i in range(3):
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", _ok(0.4 + i / 10))
    journal, state = searcher.journal.path, searcher.state_path
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:1] + ["not json\n"] + lines[1:]))
    resumed = _searcher(tmp_path, "random")
    with pytest.warns(JournalWarning, match=rf"{journal}:2: damaged journal line skipped"):
        assert resumed.resume() == 3
    assert resumed.trained == 3 and resumed.suggest("t3")["index"] == 3
    for damage in (lambda: journal.write_text("".join(lines[:2])), lambda: journal.write_text(""), journal.unlink):
        damage()
        with pytest.raises(JournalMismatch) as err:
            _searcher(tmp_path, "random").resume()
        assert "\n" not in str(err.value) and str(journal) in str(err.value) and str(state) in str(err.value)


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


def test_reference_networks_are_trained_with_the_search_signal_and_not_again_on_resume(tmp_path, ray_session):
    summary, out = _search(tmp_path, ray_session, strategy="random", children=2,
                           references=("mobilenet_v3_small@0.35",))
    saved = json.loads((out / "references.json").read_text())
    entry = saved["references"]["mobilenet_v3_small@0.35"]
    assert entry["status"] == "ok" and 0 <= entry["accuracy"] <= 1 and entry["seconds"] > 0
    assert saved["signal"]["proxy"]["max_steps"] == 2  # the children's signal, overrides included
    [ref] = summary["references"]
    assert (ref["name"], ref["width"], ref["accuracy"]) == ("mobilenet_v3_small", 0.35, entry["accuracy"])
    assert ref["latency_ms"] > 0
    assert ref["reward"] == pytest.approx(reward(ref["accuracy"], ref["latency_ms"], summary["target_ms"], -0.07))
    trials = pd.read_csv(out / "trials.csv")
    dominated = bool(((trials["accuracy"] > ref["accuracy"]) & (trials["latency_ms"] <= ref["latency_ms"])).any())
    assert summary["beats_references"] == {"mobilenet_v3_small@0.35": dominated}
    assert json.loads((out / "summary.json").read_text())["beats_references"] == summary["beats_references"]
    assert (out / "pareto.png").stat().st_size > 1000
    # A resume with the same signal retrains nothing; a new reference is the only one trained.
    again, _ = _search(tmp_path, ray_session, strategy="random", children=2, resume=True,
                       references=("mobilenet_v3_small@0.35", "mobilenet_v2@0.35"))
    entries = json.loads((out / "references.json").read_text())["references"]
    assert entries["mobilenet_v3_small@0.35"] == entry
    assert entries["mobilenet_v2@0.35"]["status"] == "ok"
    assert [r["name"] for r in again["references"]] == ["mobilenet_v3_small", "mobilenet_v2"]
    assert len(pd.read_csv(out / "trials.csv")) == 2
    # Another signal (two threads per trial) is another comparison: the reference is trained again.
    _search(tmp_path, ray_session, strategy="random", children=2, resume=True, cpus_per_trial=2.0,
            references=("mobilenet_v3_small@0.35",))
    retrained = json.loads((out / "references.json").read_text())["references"]["mobilenet_v3_small@0.35"]
    assert retrained["signal"] != entry["signal"] and retrained["finished"] > entry["finished"]


def test_an_unknown_reference_network_is_one_line_before_any_work(tmp_path):
    from nas.runner import SearchConfig, SearchError, run_search

    with pytest.raises(SearchError) as err:
        run_search(SearchConfig(out=str(tmp_path / "run"), references=("mobilenet_v9",)))
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("references: 'mobilenet_v9' is not a reference network; use one of ")
    assert "mobilenet_v3_small" in str(err.value) and "NAME@0.75" in str(err.value)
    assert not (tmp_path / "run").exists()
    cli = subprocess.run([sys.executable, "-m", "nas.search", "--references", "mobilenet_v2@9", "--dry-run"],
                         cwd=ROOT, capture_output=True, text=True)
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1
    assert cli.stderr.startswith("error: argument --references: 'mobilenet_v2@9': width '9' is out of range")


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


def test_the_trainable_has_no_test_hook():
    """Library code carries no failure injection: a config key a test once used to fail a child
    changes nothing (tests provoke real failures: data that cannot load, a diverging lr)."""
    import dataclasses

    from nas.trial import child_trainable
    from proxytask.profiles import signal

    sig = signal("cpu", overrides=TINY)
    spec = get_space("mobilenetv3").decode((0,) * len(get_space("mobilenetv3").decisions))
    config = {"spec": spec.to_dict(), "data": sig.data, "patch": sig.patch, "proxy": dataclasses.asdict(sig.proxy),
              "index": 0, "fail_for_test": 0}
    assert child_trainable(config)["status"] == "ok"


def test_pareto_png_is_replaced_atomically_never_rewritten_in_place(tmp_path):
    """pareto.png is rewritten after every child: a kill must never leave a torn PNG. An atomic
    write replaces the file (a new inode); a file linked to the old one keeps its bytes."""
    import os

    from nas.runner import SearchConfig, pareto_plot

    path, twin = tmp_path / "pareto.png", tmp_path / "twin.png"
    twin.write_bytes(b"the previous plot")
    os.link(twin, path)
    ok = pd.DataFrame({"index": [0, 1, 2], "latency_ms": [10.0, 12.0, 15.0], "accuracy": [0.3, 0.4, 0.45],
                       "reward": [0.1, 0.2, 0.15]})
    pareto_plot(ok, path, 12.0, SearchConfig())
    assert twin.read_bytes() == b"the previous plot"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_ino != twin.stat().st_ino


def test_existing_run_needs_resume(tmp_path, ray_session):
    from nas.runner import SearchError

    _search(tmp_path, ray_session, strategy="random", children=1)
    with pytest.raises(SearchError, match="pass --resume"):
        _search(tmp_path, ray_session, strategy="random", children=1)


def test_a_resume_that_would_change_the_resolved_signal_is_refused(tmp_path, ray_session):
    """The same raw flags can resolve to another signal (GPUs switch the profile): a resume compares
    the resolved signal, so trials.csv never mixes two; the error names the field and the fix."""
    from nas.runner import SearchError

    _search(tmp_path, ray_session, strategy="random", children=1, references=())
    with pytest.raises(SearchError) as err:
        _search(tmp_path, ray_session, strategy="random", children=1, references=(), resume=True, gpus_per_trial=1.0)
    message = str(err.value)
    assert "\n" not in message and message.startswith("resume: the accuracy signal changed: ")
    assert "profile was 'cpu', now 'gpu'" in message and "start a new --out" in message
    # threads only change the speed: a resume with more CPUs per trial is the same signal
    _search(tmp_path, ray_session, strategy="random", children=1, references=(), resume=True, cpus_per_trial=2.0)


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
    lines = journal.read_text().splitlines(keepends=True)
    before = [json.loads(line) for line in lines if line.endswith("\n")]  # a torn last line is not a child
    assert 2 <= len(before) < 6, "the search finished before it could be killed"
    journal.write_text("".join(lines[:1] + ["garbage\n"] + lines[1:]))  # a damaged line between two children
    result = subprocess.run(cmd + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{journal}:2: damaged journal line skipped" in result.stderr
    after = [r for r in map(_maybe_json, journal.read_text().splitlines()) if r]
    trained = [r for r in after if r.get("trained", True)]
    assert len(trained) == 6  # no extra child: every good record before and after the damage was kept
    # Children completed before the kill were kept as they were, never trained again.
    assert after[:len(before)] == before
    assert len({r["index"] for r in after}) == len(after)
    assert len(pd.read_csv(out / "trials.csv")) == len(after)


def _maybe_json(line: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None
