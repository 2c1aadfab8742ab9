"""Train a set of networks from scratch with one accuracy signal, several seeds each, resumably.

:func:`train_grid` is what the reproduction's equal-footing comparison runs (ours, the paper's
network and its width-multiplier curve): every (network, seed) is one
:func:`proxytask.train.train_child` with the signal's data and settings, at most ``workers`` at
once (spawned processes, one torch thread each), each result journaled as it finishes
(:class:`jobs.Journal`), so a killed run retrains only what is missing. The journal is keyed by
the signal and the spec's hash: a changed signal or network trains again.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Callable

from jobs import Journal

_WORKER: dict = {}


def _init_worker(data, proxy) -> None:
    _WORKER.update(data=data, proxy=proxy)


def _train(job: tuple) -> dict:
    from proxytask.train import torch_threads, train_child
    from search_spaces import ArchSpec

    label, seed, spec_dict, keep = job
    keep_state: dict = {}
    with torch_threads(1):
        result = train_child(ArchSpec.from_dict(spec_dict), _WORKER["data"], _WORKER["proxy"].replace(seed=seed),
                             on_model=(lambda model: keep_state.update(model=model)) if keep else None)
    state = None
    if keep and result.status == "ok" and "model" in keep_state:
        state = {k: v.detach().to("cpu", copy=True) for k, v in keep_state["model"].state_dict().items()}
    return {"label": label, "seed": seed, "status": result.status, "reason": result.reason,
            "val_accuracy": result.accuracy, "test_accuracy": result.test_accuracy, "seconds": result.seconds,
            "state": state}


def train_grid(specs: dict, seeds: int, sig, *, workers: int = 1, journal: str | Path,
               keep: tuple[str, int] | None = None, log: Callable[[str], None] = print) -> tuple[dict, dict | None]:
    """Train each of ``specs`` (label -> ArchSpec) with ``seeds`` seeds on ``sig`` (a
    :class:`proxytask.profiles.Signal`). Returns ``({label: [run per seed, in seed order]},
    state)``: a run is a dict with ``status``, ``val_accuracy``, ``test_accuracy``, ``seconds``;
    ``state`` is the state dict of the ``keep`` = (label, seed) training when it ran now."""
    data = sig.load(seed=0)
    proxy = sig.proxy
    signal_key = {"signal": sig.describe(), "data": data.name}
    book = Journal(Path(journal))
    done = {}
    for entry in book.repair():
        if entry.get("key") == signal_key and isinstance(entry.get("run"), dict):
            run = entry["run"]
            done[(run["label"], run["hash"], run["seed"])] = run
    jobs = [(label, seed, spec.to_dict(), keep == (label, seed)) for label, spec in specs.items()
            for seed in range(seeds) if (label, spec.hash, seed) not in done]
    hashes = {label: spec.hash for label, spec in specs.items()}
    state = None

    def record(run: dict) -> None:
        nonlocal state
        kept = run.pop("state", None)
        if kept is not None:
            state = kept
        run["hash"] = hashes[run["label"]]
        done[(run["label"], run["hash"], run["seed"])] = run
        book.append({"key": signal_key, "run": run})
        log(f"  {run['label']:<24} seed {run['seed']}: {run['status']:<8} test {100 * run['test_accuracy']:.2f} % "
            f"(val {100 * run['val_accuracy']:.2f} %), {run['seconds']:.0f} s")

    if jobs:
        log(f"training {len(jobs)} network-seed pair(s) from scratch on {data.summary()} "
            f"({proxy.total_steps(data)} steps each, {min(workers, len(jobs))} at once)")
    if workers > 1 and len(jobs) > 1:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(data, proxy)) as pool:
            for run in pool.imap_unordered(_train, jobs):
                record(run)
    else:
        _init_worker(data, proxy)
        for job in jobs:
            record(_train(job))
    runs = {label: [done.get((label, spec.hash, seed)) for seed in range(seeds)] for label, spec in specs.items()}
    return runs, state


def test_accuracies(runs: list[dict | None]) -> list[float]:
    """The test accuracies of the runs that finished (failed or missing seeds left out)."""
    return [r["test_accuracy"] for r in runs if r is not None and r["status"] == "ok"]


__all__ = ["train_grid", "test_accuracies"]
