"""Sample efficiency of the search strategies on a cheap objective with a known optimum.

    python -m experiments.bench_strategies [--seeds 5] [--max-samples 20000] [--out results/bench_strategies.json]

The objective: a reduced ``mobilenetv3`` space (per stage: kernel 3/5, SE 0/0.25, width
0.75/1.0/1.25; 12^6 = 3.0e6 samples over 42 decisions, 30 of them fixed), the reward of the
paper ``ACC x (LAT / T)^-0.15`` with LAT the ``pixel1`` prediction of the decoded network and
ACC a fixed synthetic accuracy (a seeded per-choice score added over the decisions, so that
bigger choices help but cost latency). The optimum is exact: the space is enumerated
exhaustively with numpy, using that a network's latency is a sum over stages whose terms depend
only on the stage's choices and the previous stage's width (per-stage tables from the real
predictor), and accuracy is a sum of per-choice scores. For each strategy and seed
the script counts the samples until one reaches 98 % of the optimum reward; the figure is the
median over seeds (runs that never reach it count as ``--max-samples``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from latency import predict_ms
from nas.reward import reward
from nas.strategies import make_strategy
from search_spaces.spaces import get_space

REDUCED = dict(operator=["mbconv6"], kernel=[3, 5], se=[0, 0.25], skip=["identity"],
               width=[0.75, 1.0, 1.25], layers=[0], nonlinearity=["hswish"])


class Objective:
    def __init__(self, seed: int = 0, target: str = "pixel1", w: float = -0.15):
        self.space = get_space("mobilenetv3").reduced(name="bench", **REDUCED)
        self.target, self.w = target, w
        rng = np.random.default_rng(seed)
        # Synthetic accuracy: base + per (decision, option) score; larger widths/kernels/SE help on average.
        self.scores = []
        for stage, name, opts in self.space.decisions:
            trend = np.linspace(0.0, 1.0, len(opts)) if name in ("width", "kernel", "se", "operator") else np.zeros(len(opts))
            self.scores.append(0.012 * trend + 0.006 * rng.standard_normal(len(opts)))
        self.base_accuracy = 0.55
        self.target_ms = predict_ms(self.space.decode(tuple(0 for _ in self.space.decisions)).replace(
            name="x"), target) * 1.15
        self._cache: dict[tuple, float] = {}

    def accuracy(self, sample) -> float:
        return self.base_accuracy + float(sum(s[c] for s, c in zip(self.scores, sample)))

    def latency(self, sample) -> float:
        key = tuple(sample)
        if key not in self._cache:
            self._cache[key] = predict_ms(self.space.decode(key, name="x"), self.target)
        return self._cache[key]

    def __call__(self, sample) -> float:
        return reward(self.accuracy(sample), self.latency(sample), self.target_ms, self.w)

    def optimum(self) -> tuple[float, tuple]:
        """Exact best reward over the whole space (exhaustive enumeration)."""
        space, per = self.space, len(self.space.choices)
        n_stages = len(space.stages)
        names = [name for name, _ in space.choices]
        width_i = names.index("width")
        stage_choices = list(itertools.product(*(range(len(o)) for _, o in space.choices)))  # 12 per stage
        n_w = len(space.options["width"])
        lut = predict_ms.__globals__["resolve_table"](self.target)
        base = [0] * space.num_decisions
        blocks_per_stage = [st.layers for st in space.stages]  # layers offset fixed at 0
        starts = np.cumsum([0] + blocks_per_stage)
        # stage_lat[s][w_prev, c] and stage_acc[s][c]
        stage_lat = np.zeros((n_stages, n_w, len(stage_choices)))
        stage_acc = np.zeros((n_stages, len(stage_choices)))
        head_lat = np.zeros(n_w)
        for s in range(n_stages):
            for ci, choice in enumerate(stage_choices):
                stage_acc[s, ci] = sum(self.scores[s * per + j][c] for j, c in enumerate(choice))
                for wp in range(n_w):
                    sample = list(base)
                    if s > 0:
                        sample[(s - 1) * per + width_i] = wp
                    sample[s * per:(s + 1) * per] = choice
                    keys = space.decode(tuple(sample), name="x").op_keys()
                    stage_lat[s, wp, ci] = lut.lookup_ms(keys[1 + starts[s]:1 + starts[s + 1]]).sum()
                    if s == n_stages - 1 and wp == 0:
                        head_lat[choice[width_i]] = lut.lookup_ms(keys[1 + starts[-1]:]).sum()
        stem = lut.lookup_ms(space.decode(tuple(base), name="x").op_keys()[:1]).sum()
        widths = np.array([c[width_i] for c in stage_choices])
        # Enumerate: arrays over all combinations so far (index = combination of stage choices).
        lat = stem + stage_lat[0, 0]  # stage 0's input is the stem, whatever "previous width" says
        acc = stage_acc[0].copy()
        last_w = widths.copy()
        for s in range(1, n_stages):
            lat = (lat[:, None] + stage_lat[s][last_w]).reshape(-1)
            acc = (acc[:, None] + stage_acc[s][None, :]).reshape(-1)
            last_w = np.broadcast_to(widths[None, :], (len(last_w), len(widths))).reshape(-1)
        lat = lat + head_lat[last_w]
        acc = self.base_accuracy + acc
        exponent = np.where(lat <= self.target_ms, self.w, self.w)
        rewards = acc * (lat / self.target_ms) ** exponent
        best = int(rewards.argmax())
        digits = np.unravel_index(best, (len(stage_choices),) * n_stages)
        sample = []
        for d in digits:
            sample.extend(stage_choices[d])
        best_sample = tuple(int(x) for x in sample)
        assert abs(self(best_sample) - rewards[best]) < 1e-6 * rewards[best], "enumeration disagrees with the objective"
        self.all_rewards = rewards
        return float(rewards[best]), best_sample


def samples_to_reach(strategy_name: str, objective: Objective, threshold: float, seed: int, max_samples: int) -> int:
    counts = [len(opts) for _, _, opts in objective.space.decisions]
    options = {"batch_size": 16, "lr": 0.01, "entropy_weight": 0.01} if strategy_name == "rl" else {}
    strategy = make_strategy(strategy_name, counts, seed=seed, **options)
    for i in range(1, max_samples + 1):
        sample = strategy.ask()
        value = objective(sample)
        if value >= threshold:
            return i
        strategy.tell(sample, value)
    return max_samples


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.bench_strategies", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--max-samples", type=int, default=20000)
    p.add_argument("--fraction", type=float, default=0.98)
    p.add_argument("--strategies", nargs="+", default=["random", "evolution", "rl"])
    p.add_argument("--out", type=Path, default=Path("results/bench_strategies.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    objective = Objective(seed=0)
    start = time.monotonic()
    best, best_sample = objective.optimum()
    threshold = args.fraction * best
    print(f"space {objective.space.size:.3g} samples; optimum reward {best:.4f} "
          f"({time.monotonic() - start:.0f} s); threshold {threshold:.4f}")
    hit_rate = float((objective.all_rewards >= threshold).mean())
    print(f"fraction of the space above the threshold: {hit_rate:.2e} (random needs ~{1 / hit_rate:.0f} samples)")
    results = {}
    for name in args.strategies:
        runs = []
        for seed in range(args.seeds):
            t0 = time.monotonic()
            runs.append(samples_to_reach(name, objective, threshold, seed, args.max_samples))
            print(f"  {name:9s} seed {seed}: {runs[-1]} samples ({time.monotonic() - t0:.0f} s)", flush=True)
        results[name] = {"samples": runs, "median": statistics.median(runs)}
        print(f"{name:9s} median samples to {100 * args.fraction:.0f} % of the optimum: {results[name]['median']}")
    summary = {"optimum_reward": best, "optimum_sample": list(best_sample), "threshold": threshold,
               "fraction": args.fraction, "max_samples": args.max_samples, "space_size": objective.space.size,
               "random_hit_rate": hit_rate, "results": results,
               "command": "python -m experiments.bench_strategies " + " ".join(argv or [])}
    if "random" in results and "rl" in results:
        summary["rl_over_random"] = results["rl"]["median"] / results["random"]["median"]
        print(f"RL / random = {summary['rl_over_random']:.2f} (target <= 0.33)")
    if "random" in results and "evolution" in results:
        summary["evolution_over_random"] = results["evolution"]["median"] / results["random"]["median"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
