"""Does the proxy task tell architectures apart? Train random children twice and compare.

    python -m experiments.proxy_discrimination [--children 20] [--seeds 0 1] [--space mobilenetv3]
        [--data default] [--workers 2] [--out results/proxy_discrimination.json]

Children are random samples of the search space (``random.Random(child_seed + i)``), decoded to
specs; each is trained once per training seed with :func:`proxytask.train.train_child`. The report
gives the accuracy of every (child, seed), the spread of the seed-averaged accuracies (max - min
and the 10-90 % interval), the Spearman rank correlation of the accuracies of the first two
seeds (do two independent runs rank the children alike?) and seconds per child. ``--workers``
runs that many trials at once, each with ``ProxyConfig.threads`` threads: the setting of a NAS
run (two concurrent 1-thread trials on two cores).

Every finished run is appended to ``OUT.jsonl`` as it ends; a rerun with the same settings
reads it and trains only what is missing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from proxytask.data import ProxyData, load_data
from proxytask.train import ProxyConfig, train_child

_WORKER_DATA: ProxyData | None = None


def _init_worker(data: ProxyData) -> None:
    global _WORKER_DATA
    _WORKER_DATA = data


def _run(job: tuple) -> dict:
    index, seed, spec, config = job
    result = train_child(spec, _WORKER_DATA, config.replace(seed=seed))
    return {"child": index, "seed": seed, **result.to_dict()}


def children(space_name: str, count: int, child_seed: int = 0) -> list:
    """``count`` random (sample, spec) of the space, child ``i`` drawn with Random(child_seed + i)."""
    from search_spaces.spaces import get_space

    space = get_space(space_name)
    return [space.sample_spec(random.Random(child_seed + i)) for i in range(count)]


def summarise(runs: list[dict], seeds: list[int], names: list[str]) -> dict:
    """Spread, rank correlation and timing of ``runs`` (dicts with child, seed, accuracy, seconds, status)."""
    from scipy.stats import spearmanr

    table = np.full((len(names), len(seeds)), np.nan)
    for run in runs:
        if run["status"] == "ok":
            table[run["child"], seeds.index(run["seed"])] = run["accuracy"]
    ok = ~np.isnan(table).any(axis=1)
    mean = table[ok].mean(axis=1)
    out: dict = {
        "children_ok": int(ok.sum()),
        "failed_runs": [{k: r[k] for k in ("child", "seed", "status", "reason")} for r in runs if r["status"] != "ok"],
        "seconds_per_child": float(np.mean([r["seconds"] for r in runs])),
        "seconds_per_child_max": float(np.max([r["seconds"] for r in runs])),
        "cpu_seconds_per_child": float(np.nanmean([r.get("cpu_seconds", np.nan) for r in runs])),
    }
    if ok.sum() >= 2:
        p10, p90 = np.percentile(mean, [10, 90])
        out.update(spread_points=float(100 * (mean.max() - mean.min())),
                   spread_10_90_points=float(100 * (p90 - p10)),
                   mean_accuracy=float(mean.mean()),
                   seed_noise_points=float(100 * np.mean(np.std(table[ok], axis=1, ddof=1))) if len(seeds) > 1 else None)
    if len(seeds) >= 2 and ok.sum() >= 3:
        rho = spearmanr(table[ok, 0], table[ok, 1])
        out["spearman"] = float(rho.statistic if hasattr(rho, "statistic") else rho.correlation)
        out["spearman_pvalue"] = float(rho.pvalue)
        if len(seeds) > 2:
            pairs = [spearmanr(table[ok, i], table[ok, j])[0] for i in range(len(seeds)) for j in range(i + 1, len(seeds))]
            out["spearman_mean_over_pairs"] = float(np.mean(pairs))
    out["accuracy"] = {names[i]: [None if np.isnan(v) else float(v) for v in table[i]] for i in range(len(names))}
    return out


def run_discrimination(*, children_count: int = 20, seeds: tuple[int, ...] = (0, 1), space: str = "mobilenetv3",
                       data: str | ProxyData = "default", config: ProxyConfig = ProxyConfig(), workers: int = 2,
                       out: str | Path | None = None, child_seed: int = 0, verbose: bool = True) -> dict:
    """Train ``children_count`` random children of ``space`` once per seed; return the summary
    (also written to ``out`` as JSON, with a journal of runs in ``out`` + ``l``)."""
    seeds = list(seeds)
    start = time.perf_counter()
    proxy_data = load_data(data) if isinstance(data, str) else data
    load_seconds = time.perf_counter() - start
    sampled = children(space, children_count, child_seed)
    names = [spec.name for _, spec in sampled]
    journal = Path(str(out) + "l") if out else None
    settings = {"space": space, "data": proxy_data.name, "child_seed": child_seed, "config": asdict(config)}
    done: dict[tuple[int, int], dict] = {}
    if journal and journal.is_file():
        for line in journal.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("settings") == settings:
                done[(entry["run"]["child"], entry["run"]["seed"])] = entry["run"]
    jobs = [(i, seed, spec, config) for i, (_, spec) in enumerate(sampled) for seed in seeds if (i, seed) not in done]
    if journal:
        journal.parent.mkdir(parents=True, exist_ok=True)
    runs = list(done.values())

    def record(run: dict) -> None:
        runs.append(run)
        if journal:
            with journal.open("a") as f:
                f.write(json.dumps({"settings": settings, "run": run}) + "\n")
        if verbose:
            print(f"child {run['child']:>3} seed {run['seed']}: {run['status']:<8} acc {run['accuracy']:.4f} "
                  f"{run['seconds']:.1f}s {run['reason']}", flush=True)

    if workers > 1 and len(jobs) > 1:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(proxy_data,)) as pool:
            for run in pool.imap_unordered(_run, jobs):
                record(run)
    else:
        _init_worker(proxy_data)
        for job in jobs:
            record(_run(job))
    summary = summarise(runs, seeds, names)
    summary.update(settings=settings, seeds=seeds, children=children_count, workers=workers,
                   data_summary=proxy_data.summary(), data_load_seconds=load_seconds,
                   wall_seconds=time.perf_counter() - start,
                   load_average=list(os.getloadavg()), cpu_count=os.cpu_count(), machine=platform.machine(),
                   samples={names[i]: list(sample) for i, (sample, _) in enumerate(sampled)},
                   runs=sorted(runs, key=lambda r: (r["child"], r["seed"])))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(str(out) + ".tmp")
        tmp.write_text(json.dumps(summary, indent=1))
        tmp.replace(out)
    return summary


def format_table(summary: dict) -> str:
    seeds = summary["seeds"]
    lines = [f"{'child':<22}" + "".join(f"{'seed ' + str(s):>9}" for s in seeds) + f"{'mean':>9}"]
    for name, accs in summary["accuracy"].items():
        vals = [a for a in accs if a is not None]
        cells = "".join(f"{'-' if a is None else f'{100 * a:.2f}':>9}" for a in accs)
        lines.append(f"{name:<22}{cells}{(f'{100 * np.mean(vals):.2f}' if vals else '-'):>9}")
    fmt = lambda key, unit="": (f"{summary[key]:.3f}{unit}" if summary.get(key) is not None else "n/a")  # noqa: E731
    lines += [
        "",
        f"data: {summary['data_summary']}",
        f"children ok: {summary['children_ok']}/{summary['children']}, failed runs: {len(summary['failed_runs'])}",
        f"spearman (seed {seeds[0]} vs {seeds[1] if len(seeds) > 1 else '-'}): {fmt('spearman')}",
        f"spread of seed-averaged accuracy: max-min {fmt('spread_points', ' pts')}, "
        f"10-90 % {fmt('spread_10_90_points', ' pts')}; seed noise (sd) {fmt('seed_noise_points', ' pts')}",
        f"seconds per child: mean {fmt('seconds_per_child')}, max {fmt('seconds_per_child_max')}, "
        f"CPU {fmt('cpu_seconds_per_child')} "
        f"({summary['workers']} workers x {summary['settings']['config']['threads']} thread(s)); "
        f"wall {summary['wall_seconds']:.0f} s; load average {', '.join(f'{v:.2f}' for v in summary['load_average'])}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--space", default="mobilenetv3")
    parser.add_argument("--data", default="default")
    parser.add_argument("--workers", type=int, default=2, help="concurrent trials (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="threads per trial (default: ProxyConfig's)")
    parser.add_argument("--epochs", type=float, default=None, help="override ProxyConfig.epochs")
    parser.add_argument("--child-seed", type=int, default=0)
    parser.add_argument("--out", default="results/proxy_discrimination.json")
    args = parser.parse_args(argv)
    # a kill (SIGTERM) unwinds like Ctrl-C, so the worker pool is terminated with us
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    from proxytask.profiles import signal

    changes = {k: v for k, v in (("threads", args.threads), ("epochs", args.epochs)) if v is not None}
    sig = signal("cpu", data=args.data, overrides=changes)  # the signal the search uses
    summary = run_discrimination(children_count=args.children, seeds=tuple(args.seeds), space=args.space,
                                 data=sig.load(), config=sig.proxy, workers=args.workers,
                                 out=args.out, child_seed=args.child_seed)
    print(format_table(summary))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
