"""Ray Tune throughput: children per hour with 1 vs 2 concurrent trials, and Ray's per-trial overhead.

    python -m experiments.bench_ray [--children 8] [--epochs 1] [--out results/bench_ray.json]

Runs the same small search (random strategy, same seed, so the same children) twice on a local
Ray instance with 2 CPUs: once with one trial at a time, once with two. Children per hour is
children / wall time of the search; Ray's per-trial overhead is the wall time a child occupies
a slot (elapsed x concurrency / children) minus the time the child itself reports training.
Target on 2 cores: 2 concurrent >= 1.6x the throughput of 1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd


def run(concurrency: int, children: int, epochs: float, out: Path) -> dict:
    from nas.runner import SearchConfig, run_search

    start = time.monotonic()
    summary = run_search(SearchConfig(out=str(out), strategy="random", children=children, epochs=epochs,
                                      concurrency=concurrency, cpus_per_trial=1, progress=False, seed=0,
                                      references=()))  # children only: the throughput of the search itself
    wall = time.monotonic() - start
    trials = pd.read_csv(out / "trials.csv")
    train_s = float(trials["wall_s"].mean())
    slot_s = wall * concurrency / children
    return {"concurrency": concurrency, "children": children, "wall_s": round(wall, 1),
            "children_per_hour": round(3600 * children / wall, 1), "mean_child_train_s": round(train_s, 2),
            "slot_s_per_child": round(slot_s, 2), "ray_overhead_s_per_trial": round(slot_s - train_s, 2),
            "best_reward": summary.get("best_reward")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.bench_ray", description=__doc__.splitlines()[0])
    p.add_argument("--children", type=int, default=8)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--out", type=Path, default=Path("results/bench_ray.json"))
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    try:
        results = [run(c, args.children, args.epochs, tmp / f"c{c}") for c in (1, 2)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    speedup = results[1]["children_per_hour"] / results[0]["children_per_hour"]
    for r in results:
        print(f"{r['concurrency']} concurrent: {r['children_per_hour']:.0f} children/h, child trains "
              f"{r['mean_child_train_s']:.1f} s, Ray overhead {r['ray_overhead_s_per_trial']:.1f} s per trial")
    print(f"speed-up 2 vs 1: {speedup:.2f}x (target >= 1.6x)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": results, "speedup": speedup, "command": "python -m experiments.bench_ray "
                                    + " ".join(argv or [])}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
