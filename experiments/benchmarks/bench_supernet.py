"""The weight-sharing signal's cost and rank agreement (issue 19).

    python -m experiments.benchmarks.bench_supernet scratch [--children 20] [--epochs 3] [--seed 0]
    python -m experiments.benchmarks.bench_supernet train   [--epochs 3] [--threads 2]
    python -m experiments.benchmarks.bench_supernet score   [--children 40] [--threads 1]
    python -m experiments.benchmarks.bench_supernet rank
    python -m experiments.benchmarks.bench_supernet dimensions [--children 4]

``scratch`` trains ``--children`` random children of the ``mobilenetv3`` space from scratch with
the ``cpu`` signal at ``--epochs`` (a journal: a rerun continues). ``train`` trains (or reuses)
the supernet of the main job's setting (the ``cpu`` signal's data and proxy settings) and
records its wall time. ``score`` times scoring random children and the nearest subnet of
MobileNetV3-Large with the supernet on one thread. ``rank`` scores the scratch children with the
supernet and reports Spearman against scratch accuracy (and MAdds against scratch). Timed runs
should hold the CPU lock (``flock /tmp/cpu.lock python -m ...``). Results: results/supernet/.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

OUT = Path("results/supernet")
COMMAND = "python -m experiments.benchmarks.bench_supernet " + " ".join(sys.argv[1:])
SPACE = "mobilenetv3"


SOURCE = {"profile": "cpu", "data": "default", "tag": ""}  # --profile, --data, --tag (main)


def _signal(threads: int, epochs: float | None = None):
    from proxytask.profiles import signal

    overrides = {"threads": threads}
    if epochs is not None:
        overrides["epochs"] = epochs
    return signal(SOURCE["profile"], data=SOURCE["data"], overrides=overrides)


def _children(n: int, seed: int):
    from search_spaces.spaces import get_space

    space = get_space(SPACE)
    rng = random.Random(seed)
    return space, [space.sample_spec(rng) for _ in range(n)]


def _record(name: str, data: dict) -> None:
    from jobs import atomic_write_text

    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_text(OUT / f"{name}.json", json.dumps(data, indent=1) + "\n")
    print(json.dumps({k: v for k, v in data.items() if not isinstance(v, (list, dict))}))


def cmd_scratch(a) -> None:
    from jobs import Journal
    from proxytask.train import train_child

    sig = _signal(1, a.epochs)
    data = sig.load()
    space, children = _children(a.children, a.seed)
    journal = Journal(OUT / f"scratch{SOURCE['tag']}_e{a.epochs:g}_s{a.seed}.jsonl")
    done = {r["hash"] for r in journal.repair()}
    for sample, spec in children:
        if spec.hash in done:
            continue
        result = train_child(spec, data, sig.proxy)
        journal.append({"hash": spec.hash, "sample": list(sample), "accuracy": result.accuracy,
                        "test_accuracy": result.test_accuracy, "cpu_seconds": result.cpu_seconds,
                        "status": result.status})
        print(f"{spec.name}: {result.accuracy:.4f} ({result.cpu_seconds:.0f} CPU-s)", flush=True)


def _supernet(threads: int, epochs: float):
    from proxytask.supernet.__main__ import default_out
    from proxytask.supernet.training import SupernetConfig, train_supernet
    from search_spaces.spaces import get_space

    sig = _signal(threads)
    data = sig.load()
    space = get_space(SPACE)
    config = SupernetConfig(epochs=epochs)
    out = default_out(space, data, sig.data, sig.proxy, config, sig.patch)
    start = time.perf_counter()
    net, meta = train_supernet(space, data, sig.data, sig.proxy, config, out=out, resume=True, progress=True,
                               patch=sig.patch)
    return net, meta, data, sig, space, time.perf_counter() - start, out


def cmd_train(a) -> None:
    _, meta, data, sig, space, seconds, out = _supernet(a.threads, a.epochs)
    _record(f"train_e{a.epochs:g}", {"command": COMMAND, "space": SPACE, "epochs": a.epochs,
                                     "threads": a.threads, "steps": meta["total_steps"],
                                     "train_seconds_recorded": meta["seconds"], "wall_seconds_this_call": seconds,
                                     "checkpoint": str(out), "losses": meta["losses"]})


def cmd_score(a) -> None:
    from proxytask.supernet.mapping import nearest_sample, subnet_from_sample
    from proxytask.supernet.scoring import SupernetScorer
    from search_spaces import count_madds, reference

    if a.untrained:  # the cost of scoring does not depend on the weights
        from proxytask.supernet.training import new_supernet
        from search_spaces.spaces import get_space

        sig, space = _signal(a.threads), get_space(SPACE)
        data = sig.load()
        net = new_supernet(space, data, sig.proxy).eval()
    else:
        net, meta, data, sig, space, _, _ = _supernet(a.threads, a.epochs)
    proxy = sig.proxy.replace(threads=a.threads)
    # the search's scorer reads validation only (nas.trial); reports also score the test split
    search = SupernetScorer(net, space, data, proxy, bn_batches=a.bn_batches, val_size=a.val_size, test=False)
    report = SupernetScorer(net, space, data, proxy, bn_batches=a.bn_batches, val_size=a.val_size, test=True)
    _, children = _children(a.children, 1000 + a.seed)
    search.score(children[0][1])  # warm-up (first-call allocations)
    results = [search.score(spec) for _, spec in children]
    times, walls = [r.cpu_seconds for r in results], [r.seconds for r in results]
    with_test = [report.score(spec).cpu_seconds for _, spec in children]
    large = space.decode(nearest_sample(space, reference("mobilenet_v3_large", 1.0, 224)))
    subnet_from_sample(space, nearest_sample(space, large))
    large_times = [search.score(large).cpu_seconds for _ in range(3)]
    _record(f"score_t{a.threads}", {
        "command": COMMAND, "threads": a.threads, "resolution": proxy.resolution,
        "wall_seconds_per_child_mean": statistics.mean(walls), "untrained_weights": a.untrained,
        "bn_batches": a.bn_batches, "val_size": a.val_size, "children": len(times),
        "splits": "validation only, as a search scores (test=False)",
        "cpu_seconds_per_child_mean": statistics.mean(times), "cpu_seconds_per_child_max": max(times),
        "children_per_second_one_core": 1 / statistics.mean(times),
        "cpu_seconds_per_child_with_test_split": statistics.mean(with_test),
        "v3_large_nearest_madds_m": count_madds(large) / 1e6,
        "v3_large_cpu_seconds": statistics.median(large_times),
        "load_average_1min_after": __import__("os").getloadavg()[0]})


def cmd_steptime(a) -> None:
    """Seconds per sandwich step (largest, smallest, 2 random subnets; forward, backward, update),
    the main job's data and settings, and the training time of ``--epochs`` it implies."""
    import torch

    from proxytask.supernet.mapping import subnet_from_sample
    from proxytask.supernet.training import _optimizer, extreme_sample, new_supernet, sandwich_step
    from proxytask.train import _train_batches, learning_rate
    from search_spaces.spaces import get_space

    sig, space = _signal(a.threads), get_space(SPACE)
    data = sig.load()
    proxy = sig.proxy.replace(epochs=a.epochs)
    torch.set_num_threads(a.threads)
    net = new_supernet(space, data, proxy)
    opt = _optimizer(net, proxy)
    subnets = {"largest": subnet_from_sample(space, extreme_sample(space, True)),
               "smallest": subnet_from_sample(space, extreme_sample(space, False))}
    total = proxy.total_steps(data)
    walls, cpus = [], []
    for step, x, y in _train_batches(data, proxy, 0, a.steps + 1):
        w0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad()
        sandwich_step(net, space, x, y, step, proxy, __import__("proxytask.supernet.training", fromlist=["x"])
                      .SupernetConfig(epochs=a.epochs), subnets)
        opt.step(*learning_rate(step, total, proxy))
        if step:  # the first step pays one-time allocations
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
    _record(f"steptime_t{a.threads}", {
        "command": COMMAND, "threads": a.threads, "steps_timed": len(walls),
        "wall_seconds_per_step": statistics.mean(walls), "cpu_seconds_per_step": statistics.mean(cpus),
        "epochs": a.epochs, "steps_per_run": total,
        "implied_training_wall_seconds": statistics.mean(walls) * total})


def cmd_rank(a) -> None:
    from scipy.stats import spearmanr

    from jobs import Journal
    from proxytask.supernet.scoring import SupernetScorer
    from search_spaces import count_madds

    net, meta, data, sig, space, _, out = _supernet(a.threads, a.epochs)
    scorer = SupernetScorer(net, space, data, sig.proxy, bn_batches=a.bn_batches, val_size=a.val_size)
    records = [r for r in Journal(OUT / f"scratch{SOURCE['tag']}_e{a.scratch_epochs:g}_s{a.seed}.jsonl").read() if r["status"] == "ok"]
    rows = []
    for r in records:
        spec = space.decode(tuple(r["sample"]))
        result = scorer.score(spec)
        rows.append({"hash": r["hash"], "scratch": r["accuracy"], "supernet": result.accuracy,
                     "supernet_full_val": None, "madds_m": count_madds(spec) / 1e6})
    full = SupernetScorer(net, space, data, sig.proxy, bn_batches=a.bn_batches, val_size=None)
    for row, r in zip(rows, records):
        row["supernet_full_val"] = full.score(space.decode(tuple(r["sample"]))).accuracy
    col = lambda k: [row[k] for row in rows]  # noqa: E731
    _record(f"rank{SOURCE['tag']}_e{a.epochs:g}_vs_scratch_e{a.scratch_epochs:g}", {
        "profile": SOURCE["profile"], "data": SOURCE["data"],
        "command": COMMAND, "children": len(rows), "supernet_epochs": a.epochs,
        "scratch_epochs": a.scratch_epochs, "val_size": a.val_size, "bn_batches": a.bn_batches,
        "spearman_supernet_vs_scratch": spearmanr(col("supernet"), col("scratch"))[0],
        "spearman_supernet_full_val_vs_scratch": spearmanr(col("supernet_full_val"), col("scratch"))[0],
        "spearman_madds_vs_scratch": spearmanr(col("madds_m"), col("scratch"))[0],
        "spearman_supernet_vs_madds": spearmanr(col("supernet"), col("madds_m"))[0],
        "rows": rows})


def cmd_dimensions(a) -> None:
    """Which elastic dimension a trained supernet has not learnt to share: for ``--children``
    random samples, the largest subnet with one dimension taken from the random sample (all
    stages), and the random sample with one dimension set to the largest's; validation accuracy
    of each (500 images, BN recalibrated)."""
    from proxytask.supernet.scoring import SupernetScorer
    from proxytask.supernet.training import extreme_sample

    net, meta, data, sig, space, _, out = _supernet(a.threads, a.epochs)
    scorer = SupernetScorer(net, space, data, sig.proxy.replace(threads=1), bn_batches=a.bn_batches,
                            val_size=a.val_size, test=False)
    largest, smallest = extreme_sample(space, True), extreme_sample(space, False)
    names = [n for n, _ in space.choices]
    rng = random.Random(1000 + a.seed)
    samples = [space.random_sample(rng) for _ in range(a.children)]

    def mean_accuracy(take_random: set) -> float:
        picks = [[s[i] if names[i % len(names)] in take_random else largest[i] for i in range(len(s))]
                 for s in samples]
        return statistics.mean(scorer.score(space.decode(tuple(p))).accuracy for p in picks)

    everything = set(names)
    _record(f"dimensions{SOURCE['tag']}_e{a.epochs:g}", {
        "command": COMMAND, "profile": SOURCE["profile"], "data": SOURCE["data"], "supernet": str(out),
        "steps": meta.get("total_steps"), "children": a.children, "classes": data.num_classes,
        "largest": scorer.score(space.decode(largest)).accuracy,
        "smallest": scorer.score(space.decode(smallest)).accuracy,
        "random": mean_accuracy(everything),
        "largest_with_only_this_dimension_random": {n: mean_accuracy({n}) for n in names},
        "random_with_this_dimension_largest": {n: mean_accuracy(everything - {n}) for n in names}})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.benchmarks.bench_supernet")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("scratch", "train", "score", "rank", "steptime", "dimensions"):
        q = sub.add_parser(name)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--epochs", type=float, default=3.0 if name == "scratch" else None)
        q.add_argument("--threads", type=int, default=2 if name == "train" else 1)
        q.add_argument("--children", type=int, default=20 if name == "scratch" else 40)
        q.add_argument("--bn-batches", type=int, default=4)
        q.add_argument("--val-size", type=int, default=500)
        q.add_argument("--scratch-epochs", type=float, default=3.0)
        q.add_argument("--untrained", action="store_true", help="score: time with a fresh supernet (no training)")
        q.add_argument("--steps", type=int, default=3, help="steptime: steps timed")
        q.add_argument("--profile", default="cpu", help="signal profile (default cpu: the main job's)")
        q.add_argument("--data", default="default", help="signal data source (default: the embedded photos)")
        q.add_argument("--tag", default="", help="inserted in the result files' names (another signal's runs)")
    a = p.parse_args(argv)
    SOURCE.update(profile=a.profile, data=a.data, tag=f"_{a.tag}" if a.tag else "")
    if a.epochs is None:
        from proxytask.supernet.__main__ import MAIN_JOB_EPOCHS

        a.epochs = MAIN_JOB_EPOCHS
    {"scratch": cmd_scratch, "train": cmd_train, "score": cmd_score, "rank": cmd_rank,
     "steptime": cmd_steptime, "dimensions": cmd_dimensions}[a.cmd](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
