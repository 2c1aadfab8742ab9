"""The fidelity benchmark on the weight-sharing signal (``experiments.proxy_fidelity --signal supernet``).

One supernet of ``--space`` is trained per seed (seeds ``proxy.seed ..``, as the scratch grid's)
on the signal's data, or reused from the supernet cache (``runs/supernet/``, keyed by space, data,
settings and seed); every network of the CSV is then scored as its **nearest subnet** (the
networks are references outside the space; ``networks.csv`` gives each one's MAdds and pixel1
distance to it), BN recalibrated, on the validation split, with the test split sealed in
``test_scores.json`` exactly as for scratch training, so ``--choose`` compares both signals.

**Cost.** A scratch setting costs the sum of its children's training; the supernet signal costs
its supernet's training plus one scoring per network. ``summary.json`` gives
``cpu_seconds_per_child`` as that total over the networks scored (per seed, amortised), next to
``supernet_cpu_seconds`` and ``scoring_cpu_seconds_per_child``, so the two signals are compared
at equal CPU time by choosing ``--supernet-epochs`` (a supernet step costs about six scratch
steps: largest, smallest and two random subnets, plus distillation).

Scores journal to ``runs.jsonl`` (one record per network and seed): a rerun scores nothing twice,
and a killed supernet continues from its last checkpoint.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

SPACES = ("mobilenetv3", "mnasnet")


def _supernet(space, sig, proxy_data, seed: int, epochs: float, threads: int, verbose: bool):
    from proxytask.supernet.__main__ import default_out
    from proxytask.supernet.training import SupernetConfig, train_supernet

    proxy = sig.proxy.replace(seed=seed, threads=threads)
    config = SupernetConfig(epochs=epochs)
    out = default_out(space, proxy_data, sig.data, proxy, config, sig.patch)
    if verbose:
        print(f"seed {seed}: supernet {out}", flush=True)
    net, meta = train_supernet(space, proxy_data, sig.data, proxy, config, out=out, resume=True, progress=verbose,
                               patch=sig.patch)
    return net, meta, out


def _check_setting(out: Path, setting: dict) -> None:
    """``out/setting.json`` names what its journal was scored with; another setting is refused."""
    import json

    from jobs import dumps

    from .proxy_fidelity import FidelityError, _atomic_json

    path = out / "setting.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if json.loads(dumps(setting)) != saved:
            changed = sorted(k for k in set(saved) | set(setting) if json.loads(dumps(setting.get(k))) != saved.get(k))
            raise FidelityError(f"--out: {out} holds scores of another setting ({', '.join(changed)}); "
                                "use another --out or the same settings")
        return
    _atomic_json(path, setting)


def _nearest_distance(space, network) -> dict:
    from latency import predict_ms
    from proxytask.supernet.mapping import nearest_sample
    from search_spaces import count_madds

    nearest = space.decode(nearest_sample(space, network.spec)).replace(resolution=network.spec.resolution)
    return {"nearest_madds_delta_m": round((count_madds(nearest) - count_madds(network.spec)) / 1e6, 2),
            "nearest_pixel1_delta_ms": round(predict_ms(nearest, "pixel1") - predict_ms(network.spec, "pixel1"), 3)}


def _score_seed(networks, space, sig, proxy_data, seed, journal, done, *, epochs, threads, bn_batches, val_size,
                verbose) -> dict:
    """Score every network not journaled yet for ``seed``; returns the supernet's record."""
    from proxytask.supernet.scoring import SupernetScorer

    net, meta, out = _supernet(space, sig, proxy_data, seed, epochs, threads, verbose)
    proxy = sig.proxy.replace(seed=seed, threads=1)
    scorer = SupernetScorer(net, space, proxy_data, proxy, bn_batches=bn_batches, val_size=val_size, test=True)
    for network in networks:
        if (network.label, seed) in done:
            continue
        result = scorer.score(network.spec, nearest=True)
        record = {"label": network.label, "seed": seed, "status": result.status, "reason": result.reason,
                  "val_accuracy": result.accuracy, "test_accuracy": result.test_accuracy,
                  "seconds": result.seconds, "cpu_seconds": result.cpu_seconds}
        journal.append(record)
        done[(network.label, seed)] = record
        if verbose:
            print(f"  seed {seed} {network.label}: {result.accuracy:.4f}", flush=True)
    return {"seed": seed, "checkpoint": str(out), "steps": meta.get("total_steps"),
            "wall_seconds": round(float(meta.get("seconds", 0.0)), 1),
            "cpu_seconds": round(float(meta["cpu_seconds"]), 1) if "cpu_seconds" in meta else None,
            "largest_loss_first_last": [meta["losses"][0][1], meta["losses"][-1][1]] if meta.get("losses") else None}


def _matrices(networks, seed_list: list[int], done: dict) -> dict[str, np.ndarray]:
    """(networks, seeds) arrays of the journaled scores, as the scratch setting's."""
    shape = (len(networks), len(seed_list))
    matrices = {k: np.full(shape, np.nan) for k in ("val", "test", "sotl_e", "seconds", "cpu_seconds")}
    for i, n in enumerate(networks):
        for j, seed in enumerate(seed_list):
            r = done.get((n.label, seed))
            if r is not None and r["status"] == "ok":
                for key, field in (("val", "val_accuracy"), ("test", "test_accuracy"), ("seconds", "seconds"),
                                   ("cpu_seconds", "cpu_seconds")):
                    matrices[key][i, j] = float(r[field])
    return matrices


def run_supernet_fidelity(networks, *, seeds: int = 3, profile: str = "cpu", data: str = "default",
                          overrides: dict | None = None, out: str | Path, space: str = "mobilenetv3",
                          epochs: float | None = None, threads: int = 2, bn_batches: int = 4,
                          val_size: int | None = 500, patch: int | None = None, verbose: bool = True,
                          networks_csv: str | Path | None = None) -> dict:
    """Score the networks with one supernet per seed; write ``summary.json`` and the rest as the
    scratch setting does (:func:`experiments.benchmarks.proxy_fidelity.run_fidelity`)."""
    from jobs import Journal
    from proxytask.grid import grid_seeds
    from proxytask.profiles import signal
    from proxytask.supernet.__main__ import MAIN_JOB_EPOCHS
    from search_spaces.spaces import get_space

    from .proxy_fidelity import _network_rows, _statistics, _write_csv, seal_test_scores, write_summary

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    epochs = MAIN_JOB_EPOCHS if epochs is None else epochs
    sig = signal(profile, data=data, overrides=overrides, patch=patch)
    search_space = get_space(space)
    start = time.perf_counter()
    proxy_data = sig.load()
    seed_list = grid_seeds(sig, seeds)
    _check_setting(out, {"signal": sig.describe(), "space": space, "supernet_epochs": epochs,
                         "bn_batches": bn_batches, "val_size": val_size})
    journal = Journal(out / "runs.jsonl")
    done = {(r["label"], r["seed"]): r for r in journal.repair() if isinstance(r, dict) and "label" in r}
    supernets = [_score_seed(networks, search_space, sig, proxy_data, seed, journal, done, epochs=epochs,
                             threads=threads, bn_batches=bn_batches, val_size=val_size, verbose=verbose)
                 for seed in seed_list]
    matrices = _matrices(networks, seed_list, done)
    rows = _network_rows(networks, matrices, seed_list)
    for row, network in zip(rows, networks):
        row.update(_nearest_distance(search_space, network))
    _write_csv(out / "networks.csv", rows)
    seal_test_scores(out, networks, matrices["test"], seed_list)
    scoring = float(np.nanmean(matrices["cpu_seconds"])) if np.isfinite(matrices["cpu_seconds"]).any() else 0.0
    measured = [s["cpu_seconds"] for s in supernets if s["cpu_seconds"] is not None]  # a reused older cache lacks it
    train_cpu = float(np.mean(measured)) if measured else float("nan")
    stats = _statistics(matrices["val"], networks, intervals=True)
    summary = {**stats, "score": "accuracy", "score_split": "val", "signal_kind": "supernet",
               "scores": {"accuracy": stats, "sotl_e": {}}, "networks_csv": str(networks_csv) if networks_csv else None,
               "cpu_seconds_per_child": train_cpu / len(networks) + scoring,
               "seconds_per_child": float(np.mean([s["wall_seconds"] for s in supernets])) / len(networks)
               + (float(np.nanmean(matrices["seconds"])) if np.isfinite(matrices["seconds"]).any() else 0.0),
               "supernet_cpu_seconds": train_cpu, "scoring_cpu_seconds_per_child": scoring,
               "supernet": {"space": space, "epochs": epochs, "threads": threads, "bn_batches": bn_batches,
                            "val_size": val_size, "per_seed": supernets},
               "device": "cpu", "seeds": seed_list,
               "failed": [f"{r['label']} seed {r['seed']}: {r['reason']}" for r in done.values() if r["status"] != "ok"],
               "data_summary": proxy_data.summary(), "signal": sig.describe(),
               "wall_seconds": round(time.perf_counter() - start, 1), "cpu_count": os.cpu_count(),
               "command": "python -m experiments.proxy_fidelity " + shlex.join(sys.argv[1:]) if sys.argv[1:] else None}
    return write_summary(out, summary, networks, matrices["val"])


__all__ = ["SPACES", "run_supernet_fidelity"]
