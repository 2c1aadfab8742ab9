"""The one training grid: many trainings at once in spawned processes, each journaled as it ends.

Two layers, both used by every benchmark and by the reproduction's equal-footing comparison:

* :func:`run_journaled`: run ``{key: (function, args)}`` jobs that a :class:`jobs.Journal` does not
  hold yet, at most ``workers`` at once (a ``spawn`` pool: no forked torch or CUDA state; one
  torch thread each), and append ``{"key": key, "result": result}`` as each ends. A killed run
  rerun with the same journal redoes only what is missing. Arguments that many jobs share (the
  data, a state dict) are given once in ``shared`` and named in a job by :class:`Shared`: each
  worker receives them once, at start-up, not once per job.
* :func:`train_grid`: train networks from scratch with one accuracy signal
  (:class:`proxytask.profiles.Signal`), ``seeds`` seeds each. The seeds are the signal's own:
  ``proxy.seed, proxy.seed + 1, ...`` (:func:`grid_seeds`). The resume key of a training is the
  resolved signal's description (:func:`proxytask.profiles.signal_key`, data source and subset
  included) with the loaded data's name, the spec's hash and the seed: a changed signal, subset,
  network or seed trains again, never reuses another's result.

A run records ``status``, ``reason``, ``val_accuracy`` (what a choice may look at),
``test_accuracy`` (what is reported), ``seconds``, ``cpu_seconds``, ``train_loss`` and
``last_epoch_loss`` (the mean training loss over the last epoch, or over the whole schedule when
it is one epoch or less; ``-last_epoch_loss`` ranks as SoTL-E, the sum of training losses over
the last epoch, Ru et al., NeurIPS 2021, since every network of a grid takes the same steps).
"""

from __future__ import annotations

import json
import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from jobs import Journal
from jobs.jsonio import finite

_SHARED: dict = {}


@dataclass(frozen=True)
class Shared:
    """An argument of a job given once in ``shared`` (by this name) and passed to every job that names it."""

    name: str


def _init_worker(shared: dict) -> None:
    _SHARED.clear()
    _SHARED.update(shared)


def _call(item: tuple) -> tuple[str, Any]:
    key, function, args = item
    args = tuple(_SHARED[a.name] if isinstance(a, Shared) else a for a in args)
    return key, function(*args)


def journaled_results(journal: str | Path) -> dict[str, Any]:
    """``{key: result}`` of the records of ``journal`` (damaged lines skipped with a warning)."""
    done = {}
    for entry in Journal(Path(journal)).repair():
        if isinstance(entry.get("key"), str) and "result" in entry:
            done[entry["key"]] = entry["result"]
    return done


def run_journaled(jobs: dict[str, tuple[Callable, tuple]], *, journal: str | Path, shared: dict | None = None,
                  workers: int = 1, on_result: Callable[[str, Any], None] | None = None) -> dict[str, Any]:
    """Run the ``jobs`` the journal lacks, ``workers`` at a time; return ``{key: result}`` for every
    job (finished earlier or now). ``function`` must be importable (a module-level function) and
    return plain JSON data; ``on_result(key, result)`` is called as each one ends (progress)."""
    path = Path(journal)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = journaled_results(path)
    book = Journal(path)
    todo = [(key, function, args) for key, (function, args) in jobs.items() if key not in done]

    def record(key: str, result: Any) -> None:
        result = finite(result)
        done[key] = result
        book.append({"key": key, "result": result})
        if on_result is not None:
            on_result(key, result)

    if workers > 1 and len(todo) > 1:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(workers, len(todo)), initializer=_init_worker, initargs=(shared or {},)) as pool:
            for key, result in pool.imap_unordered(_call, todo):
                record(key, result)
    else:
        _init_worker(shared or {})
        for item in todo:
            record(*_call(item))
    return {key: done[key] for key in jobs if key in done}


# --------------------------------------------------------------------------- training from scratch
def grid_seeds(sig, seeds: int) -> list[int]:
    """The training seeds of a grid on ``sig``: ``seeds`` of them from the signal's ``proxy.seed``."""
    first = int(sig.proxy.seed)
    return list(range(first, first + seeds))


def _last_epoch_loss(history: list[dict]) -> float:
    return float(history[-1]["train_loss"]) if history else float("nan")


def train_one(spec_dict: dict, seed: int, data, proxy) -> dict:
    """One from-scratch training of ``spec_dict`` with ``proxy`` at ``seed`` (a grid job)."""
    from search_spaces import ArchSpec

    from .train import torch_threads, train_child

    with torch_threads(max(1, int(proxy.threads))):
        result = train_child(ArchSpec.from_dict(spec_dict), data, proxy.replace(seed=seed))
    return {"seed": seed, "status": result.status, "reason": result.reason[:300],
            "val_accuracy": result.accuracy, "test_accuracy": result.test_accuracy,
            "seconds": result.seconds, "cpu_seconds": result.cpu_seconds, "train_loss": result.train_loss,
            "last_epoch_loss": _last_epoch_loss(result.history)}


def train_keep(spec_dict: dict, seed: int, data, proxy, path: str) -> dict:
    """:func:`train_one` that also saves the trained state dict to ``path`` (torch.save, tensors only)."""
    import torch

    from search_spaces import ArchSpec

    from .train import torch_threads, train_child

    kept: dict = {}
    with torch_threads(max(1, int(proxy.threads))):
        result = train_child(ArchSpec.from_dict(spec_dict), data, proxy.replace(seed=seed),
                             on_model=lambda model: kept.update(model=model))
    if result.status == "ok" and "model" in kept:
        from jobs import atomic_write

        state = {k: v.detach().to("cpu", copy=True) for k, v in kept["model"].state_dict().items()}
        atomic_write(Path(path), lambda f: torch.save(state, f), binary=True)
    return {"seed": seed, "status": result.status, "reason": result.reason[:300],
            "val_accuracy": result.accuracy, "test_accuracy": result.test_accuracy,
            "seconds": result.seconds, "cpu_seconds": result.cpu_seconds, "train_loss": result.train_loss,
            "last_epoch_loss": _last_epoch_loss(result.history)}


def grid_key(sig, data_name: str, spec_hash: str, seed: int) -> str:
    """The resume key of one training: the resolved signal, the data, the network and the seed."""
    from .profiles import signal_key

    return json.dumps({"signal": signal_key(sig), "data": data_name, "spec": spec_hash, "seed": seed},
                      sort_keys=True, default=str)


def train_grid(specs: dict, seeds: int, sig, *, journal: str | Path, workers: int = 1, data=None,
               keep: tuple[str, int, str | Path] | None = None,
               log: Callable[[str], None] | None = print) -> dict[str, list[dict | None]]:
    """Train each of ``specs`` (label -> ArchSpec) with the :func:`grid_seeds` of ``sig``.

    Returns ``{label: [run per seed, in seed order]}`` (None for a training that did not end).
    ``data``: the signal's data, when the caller has loaded it (else ``sig.load()``). ``keep`` =
    (label, seed, path): that training also saves its trained state dict to ``path``."""
    data = sig.load() if data is None else data
    proxy = sig.proxy.replace(threads=1)
    seed_list = grid_seeds(sig, seeds)
    labels: dict[str, tuple[str, int]] = {}
    jobs: dict[str, tuple[Callable, tuple]] = {}
    for label, spec in specs.items():
        for seed in seed_list:
            key = grid_key(sig, data.name, spec.hash, seed)
            labels[key] = (label, seed)
            if keep is not None and (label, seed) == tuple(keep[:2]):
                jobs[key] = (train_keep, (spec.to_dict(), seed, Shared("data"), proxy, str(keep[2])))
            else:
                jobs[key] = (train_one, (spec.to_dict(), seed, Shared("data"), proxy))
    missing = len(jobs) - len(journaled_results(journal)) if Path(journal).exists() else len(jobs)
    if log is not None and missing > 0:
        log(f"training up to {missing} network-seed pair(s) from scratch on {data.summary()} "
            f"({proxy.total_steps(data)} steps each, seeds {seed_list[0]}..{seed_list[-1]}, {workers} at once)")

    def show(key: str, run: dict) -> None:
        if log is None:
            return
        label, seed = labels[key]
        test, val = run.get("test_accuracy"), run.get("val_accuracy")
        figures = (f"test {100 * test:.2f} % (val {100 * val:.2f} %)" if test is not None and val is not None
                   else run.get("reason", "")[:80])
        log(f"  {label:<28} seed {seed}: {run['status']:<8} {figures}, {run.get('seconds') or 0:.0f} s")

    results = run_journaled(jobs, journal=journal, shared={"data": data}, workers=workers, on_result=show)
    runs: dict[str, list[dict | None]] = {label: [None] * len(seed_list) for label in specs}
    for key, run in results.items():
        label, seed = labels[key]
        runs[label][seed_list.index(seed)] = {**run, "label": label}
    return runs


def test_accuracies(runs: list[dict | None]) -> list[float]:
    """The test accuracies of the runs that finished (failed or missing seeds left out)."""
    return [r["test_accuracy"] for r in runs if r is not None and r["status"] == "ok"
            and r.get("test_accuracy") is not None]


__all__ = ["Shared", "run_journaled", "journaled_results", "grid_seeds", "grid_key", "train_one", "train_keep",
           "train_grid", "test_accuracies"]
