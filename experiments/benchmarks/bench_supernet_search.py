"""RL against random search and evolution on the weight-sharing signal (issue 19).

    python -m experiments.benchmarks.bench_supernet_search run [--strategies rl random evolution]
        [--seeds 0 1 2] [--children 1000] [--epochs 1.5] [--val-size 500] [--profile P --data SOURCE]
    python -m experiments.benchmarks.bench_supernet_search report

``run`` searches the ``mobilenetv3`` space for the ``pixel1`` target as ``nas.search --signal
supernet`` does (its default target, w = -0.07, the strategy's options of the search), but in one
process and without Ray, so thousands of children fit in minutes: each child is scored by the
main job's supernet (trained first, or reused from ``runs/supernet/``) on 500 validation images,
BN recalibrated, and rewarded ``ACC x (LAT / T)^w`` with LAT the ``pixel1`` prediction. A
network met twice is scored once (the score is deterministic). Every child is journaled (one
JSONL per strategy and seed under ``runs/bench_supernet_search/KEY/``, KEY the supernet's): a
rerun replays the journal through the strategy and goes on. Two processes (one per core), each
with a part of the ``--strategies`` / ``--seeds``, share nothing but the journals' folder.

``report`` reads the journals and writes ``results/supernet/strategies.json`` and
``strategies.png``: per strategy and seed, the best validation reward reached and the child that
first reached it, and the best reward after 100, 250, 500 and 1,000 children.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path("runs/bench_supernet_search")
OUT = Path("results/supernet")
COMMAND = "python -m experiments.benchmarks.bench_supernet_search " + " ".join(sys.argv[1:])
CHECKPOINTS = (100, 250, 500, 1000, 2000, 5000)


def _setup(epochs: float, val_size: int):
    from nas.reward import W_LARGE
    from nas.runner import default_target_ms
    from proxytask.supernet.scoring import SupernetScorer

    from .bench_supernet import _supernet

    net, meta, data, sig, space, _, checkpoint = _supernet(2, epochs)
    scorer = SupernetScorer(net, space, data, sig.proxy.replace(threads=1), val_size=val_size, test=False)
    target_ms, _ = default_target_ms(space, "pixel1")
    return scorer, space, target_ms, W_LARGE, Path(checkpoint).name


def _memo(folder: Path) -> dict[tuple, float]:
    """Accuracy of every network any journal of this supernet has scored."""
    from jobs import Journal

    return {tuple(r["sample"]): r["accuracy"] for path in folder.glob("*.jsonl") for r in Journal(path).read()}


def _search(name: str, seed: int, children: int, scorer, space, target_ms: float, w: float, folder: Path,
            memo: dict) -> None:
    from tqdm import tqdm

    from jobs import Journal
    from latency import predict_ms
    from nas.reward import reward
    from nas.runner import SearchConfig
    from nas.strategies import make_strategy

    counts = [len(opts) for _, _, opts in space.decisions]
    options = {"batch_size": SearchConfig().rl_batch_size} if name == "rl" else {}
    strategy = make_strategy(name, counts, seed=seed, **options)
    journal = Journal(folder / f"{name}_s{seed}.jsonl")
    done = list(journal.repair())
    for record in done:  # replay: the strategy asks the same samples given the same rewards
        sample = strategy.ask()
        if list(sample) != record["sample"]:
            raise SystemExit(f"{folder / f'{name}_s{seed}.jsonl'}: child {record['child']} differs on replay; delete the file to rerun")
        strategy.tell(sample, record["reward"])
    best = max((r["reward"] for r in done), default=0.0)
    with tqdm(total=children, initial=len(done), desc=f"{name} seed {seed}", unit="child") as bar:
        for child in range(len(done), children):
            sample = tuple(strategy.ask())
            spec = space.decode(sample, name=f"{name}_{seed}_{child}")
            cached = sample in memo
            cpu = time.process_time()
            if not cached:
                result = scorer.score(spec)
                memo[sample] = result.accuracy if result.ok else None
            accuracy = memo[sample]
            latency_ms = predict_ms(spec, "pixel1")
            value = reward(accuracy, latency_ms, target_ms, w) if accuracy is not None else 0.0
            strategy.tell(sample, value)
            journal.append({"child": child, "sample": list(sample), "accuracy": accuracy, "latency_ms": latency_ms,
                            "reward": value, "cached": cached, "cpu_seconds": time.process_time() - cpu})
            best = max(best, value)
            bar.update(1)
            bar.set_postfix(best=f"{best:.4f}")


def cmd_run(a) -> None:
    import torch

    from jobs import atomic_write_text

    torch.set_num_threads(1)
    scorer, space, target_ms, w, key = _setup(a.epochs, a.val_size)
    folder = ROOT / key
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "setting.json", json.dumps({"supernet": key, "epochs": a.epochs, "val_size": a.val_size,
                                                     "profile": a.profile, "data": a.data,
                                                     "target": "pixel1", "target_ms": target_ms, "w": w}) + "\n")
    memo = _memo(folder)
    for name in a.strategies:
        for seed in a.seeds:
            _search(name, seed, a.children, scorer, space, target_ms, w, folder, memo)


def _runs(folder: Path) -> dict[str, dict[int, list[dict]]]:
    from jobs import Journal

    runs: dict[str, dict[int, list[dict]]] = {}
    for path in sorted(folder.glob("*_s*.jsonl")):
        name, _, seed = path.stem.rpartition("_s")
        runs.setdefault(name, {})[int(seed)] = list(Journal(path).read())
    return runs


def _summary(records: list[dict]) -> dict:
    rewards = [r["reward"] for r in records]
    best, running, curve = max(rewards), float("-inf"), []
    for value in rewards:
        running = max(running, value)
        curve.append(running)
    first = rewards.index(best)
    top = records[first]
    return {"children": len(records), "best_reward": best, "best_at_child": first + 1,
            "best_accuracy": top["accuracy"], "best_latency_ms": top["latency_ms"],
            "unique_networks": len({tuple(r["sample"]) for r in records}),
            "cpu_seconds": sum(r["cpu_seconds"] for r in records),
            **{f"best_after_{n}": curve[n - 1] for n in CHECKPOINTS if n <= len(curve)}}, curve


def cmd_report(a) -> None:
    from jobs import atomic_write_text

    settings = sorted(ROOT.glob("*/setting.json"), key=lambda p: p.stat().st_mtime)
    if not settings:
        raise SystemExit(f"no runs under {ROOT}; run `... bench_supernet_search run` first")
    folder = settings[-1].parent
    setting = json.loads(settings[-1].read_text())
    runs, table, curves = _runs(folder), {}, {}
    for name, seeds in runs.items():
        per_seed = {}
        for seed, records in sorted(seeds.items()):
            per_seed[seed], curves[(name, seed)] = _summary(records)
        bests = [s["best_reward"] for s in per_seed.values()]
        table[name] = {"seeds": per_seed, "best_reward_mean": statistics.mean(bests),
                       "best_reward_sd": statistics.stdev(bests) if len(bests) > 1 else 0.0,
                       "best_at_child_median": statistics.median(s["best_at_child"] for s in per_seed.values())}
        print(f"{name:9s} best reward {table[name]['best_reward_mean']:.4f} +- {table[name]['best_reward_sd']:.4f} "
              f"(seeds {', '.join(f'{b:.4f}' for b in bests)}), reached at child "
              f"{[s['best_at_child'] for s in per_seed.values()]}")
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_text(OUT / "strategies.json", json.dumps({"command": COMMAND, "setting": setting,
                                                           "strategies": table}, indent=1) + "\n")
    _plot(curves, setting)
    print(f"wrote {OUT / 'strategies.json'} and strategies.png")


def _plot(curves: dict, setting: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jobs import atomic_savefig

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    colours = {"rl": "C0", "random": "C1", "evolution": "C2"}
    for (name, seed), curve in sorted(curves.items()):
        ax.plot(range(1, len(curve) + 1), curve, color=colours.get(name, "k"), lw=1,
                label=name if seed == min(s for n, s in curves if n == name) else None)
    ax.set(xscale="log", xlabel="children scored", ylabel="best validation reward so far",
           title=f"Search strategies on the supernet signal (pixel1, T = {setting['target_ms']:.1f} ms, "
                 f"w = {setting['w']})")
    ax.legend()
    atomic_savefig(fig, OUT / "strategies.png")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.benchmarks.bench_supernet_search",
                                description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--strategies", nargs="+", default=["rl", "random", "evolution"],
                   choices=["rl", "random", "evolution"])
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    r.add_argument("--children", type=int, default=1000)
    r.add_argument("--epochs", type=float, default=None, help="supernet epochs (default: the main job's)")
    r.add_argument("--val-size", type=int, default=500)
    r.add_argument("--profile", default="cpu", help="signal profile (default cpu: the main job's)")
    r.add_argument("--data", default="default", help="signal data source (default: the embedded photos)")
    sub.add_parser("report")
    a = p.parse_args(argv)
    if a.cmd == "run":
        from .bench_supernet import SOURCE

        SOURCE.update(profile=a.profile, data=a.data)
        if a.epochs is None:
            from proxytask.supernet.__main__ import MAIN_JOB_EPOCHS

            a.epochs = MAIN_JOB_EPOCHS
        cmd_run(a)
    else:
        cmd_report(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
