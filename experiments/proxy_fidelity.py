"""Does the accuracy signal rank networks as ImageNet does? Train networks of known top-1 with it.

    python -m experiments.proxy_fidelity [--networks CSV] [--seeds 3] [--data SOURCE]
        [--profile cpu|gpu] [--proxy KEY=VALUE ...] [--device cpu|cuda] [--workers N] --out DIR

``--networks``: a CSV with columns ``spec,width,resolution,top1`` (default: the seven Table 3
networks with public specs, ``experiments/data/table3_networks.csv``). ``spec`` is a reference
name, a YAML path (relative to the CSV's folder) or an arch string; ``width`` scales it with
:func:`search_spaces.transforms.scale_width` (references are built at that width directly).

Every network is trained with exactly the signal the search uses (:func:`proxytask.profiles.signal`
of ``--profile``, ``--data`` and ``--proxy``), once per seed, and scored on the *test* split.
Written to ``DIR``:

* ``networks.csv``: spec, width, resolution, top1, ``pixel1_ms`` (predicted), ``madds``,
  ``acc_seed{N}`` per seed, ``acc_mean``, ``seconds_per_child``;
* ``summary.json``: ``n``, ``spearman``, ``kendall`` (seed-mean proxy accuracy against top-1),
  ``latency_matched_spearman``, ``madds_latency_matched_spearman`` (the baseline: log MAdds in
  place of the proxy accuracy), ``seed_spearman`` (mean over seed pairs of the Spearman between
  two seeds' accuracies; ``seed_spearman_min`` beside it), ``seconds_per_child``, ``device``,
  the signal's settings;
* ``accuracy_vs_top1.png`` and ``residuals.png``;
* ``runs.jsonl``: one line per finished (network, seed); a rerun with the same settings trains
  only what is missing.

Latency-matched: proxy accuracy and top-1 are each fitted by least squares on
(1, log L, (log L)^2), L the pixel1 prediction, and the Spearman of the two residuals is taken.
It asks what a platform-aware search needs: at equal latency, does the signal prefer the network
ImageNet prefers?
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing
import os
import signal as os_signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobs import Journal, atomic_write, atomic_write_text

DEFAULT_NETWORKS = Path(__file__).with_name("data") / "table3_networks.csv"
COLUMNS = ("spec", "width", "resolution", "top1")


class FidelityError(ValueError):
    """A bad networks CSV or argument; the message names the row and field."""


@dataclass(frozen=True)
class Network:
    row: int
    label: str
    spec: object  # ArchSpec at its own resolution and width
    width: float
    resolution: int
    top1: float


# --------------------------------------------------------------------------- the CSV
def read_networks(path: str | Path) -> list[Network]:
    """Parse and resolve a networks CSV; a bad row is a FidelityError naming row and field."""
    from search_spaces import SpecError, load_spec, reference
    from search_spaces.references import names as reference_names
    from search_spaces.transforms import scale_width

    path = Path(path)
    if not path.is_file():
        raise FidelityError(f"--networks: {path} is not a file; give a CSV with columns {','.join(COLUMNS)}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise FidelityError(f"--networks: cannot read {path} ({type(err).__name__}); give a UTF-8 CSV") from None
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise FidelityError(f"{path}: missing column {missing[0]!r}; the header must name {','.join(COLUMNS)}")
    networks = []
    for row_number, row in enumerate(reader, start=2):  # row 1 is the header
        where = f"{path} row {row_number}"

        def number(field: str, kind=float, low=None, high=None):
            raw = (row.get(field) or "").strip()
            try:
                value = kind(raw)
            except ValueError:
                raise FidelityError(f"{where}: {field}: {raw!r} is not a number") from None
            if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
                raise FidelityError(f"{where}: {field}: {raw!r} must be in [{low}, {high}]")
            return value

        width = number("width", float, 0.1, 4.0)
        resolution = number("resolution", int, 32, 512)
        top1 = number("top1", float, 0.0, 100.0)
        name = (row.get("spec") or "").strip()
        if not name:
            raise FidelityError(f"{where}: spec: empty; give a reference name ({', '.join(reference_names())}), "
                                f"a YAML path or an arch string")
        try:
            if name in reference_names():
                spec = reference(name, width, resolution)
            else:
                candidate = path.parent / name
                source = str(candidate) if candidate.suffix in (".yaml", ".yml") else name
                if candidate.suffix in (".yaml", ".yml") and not candidate.is_file():
                    raise FidelityError(f"{where}: spec: {name!r}: no such file next to the CSV ({candidate})")
                spec = load_spec(source).replace(resolution=resolution)
                if width != 1.0:
                    spec = scale_width(spec, width)
        except FidelityError:
            raise
        except (SpecError, ValueError, KeyError) as err:
            message = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
            raise FidelityError(f"{where}: spec: {name!r} is not a reference name, YAML file or arch string "
                                f"({message})") from None
        networks.append(Network(row_number, f"{name}@{width:g}x{resolution}", spec, width, resolution, top1))
    if len(networks) < 4:
        raise FidelityError(f"{path}: {len(networks)} network(s); the statistics need at least 4 rows")
    return networks


# --------------------------------------------------------------------------- the statistics
def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    value = spearmanr(a, b)[0]
    return float(value) if np.isfinite(value) else float("nan")


def quadratic_residuals(values, latency_ms) -> np.ndarray:
    """Residuals of ``values`` after a least-squares fit on (1, log L, (log L)^2)."""
    log_l = np.log(np.asarray(latency_ms, dtype=float))
    design = np.stack([np.ones_like(log_l), log_l, log_l ** 2], axis=1)
    values = np.asarray(values, dtype=float)
    coefficients, *_ = np.linalg.lstsq(design, values, rcond=None)
    return values - design @ coefficients


def latency_matched_spearman(proxy_accuracy, top1, latency_ms) -> float:
    """Spearman of the residuals of proxy accuracy and of top-1, each fitted on log latency."""
    return _spearman(quadratic_residuals(proxy_accuracy, latency_ms), quadratic_residuals(top1, latency_ms))


def fidelity_statistics(accuracy: np.ndarray, top1, latency_ms, madds) -> dict:
    """``accuracy``: (networks, seeds) test accuracies. The summary's statistics."""
    from scipy.stats import kendalltau

    mean = accuracy.mean(axis=1)
    seeds = accuracy.shape[1]
    pairs = [_spearman(accuracy[:, i], accuracy[:, j]) for i in range(seeds) for j in range(i + 1, seeds)]
    return {
        "n": int(len(mean)),
        "spearman": _spearman(mean, top1),
        "kendall": float(kendalltau(mean, top1)[0]),
        "latency_matched_spearman": latency_matched_spearman(mean, top1, latency_ms),
        "madds_latency_matched_spearman": latency_matched_spearman(np.log(madds), top1, latency_ms),
        "madds_spearman": _spearman(madds, top1),
        "seed_spearman": float(np.mean(pairs)) if pairs else float("nan"),
        "seed_spearman_min": float(np.min(pairs)) if pairs else float("nan"),
        "seed_sd_points": float(100 * np.mean(accuracy.std(axis=1, ddof=1))) if seeds > 1 else float("nan"),
    }


# --------------------------------------------------------------------------- training
_WORKER: dict = {}


def _init_worker(data, proxy) -> None:
    _WORKER.update(data=data, proxy=proxy)


def _train(job: tuple) -> dict:
    from proxytask.train import train_child

    index, seed, spec = job
    result = train_child(spec, _WORKER["data"], _WORKER["proxy"].replace(seed=seed))
    return {"index": index, "seed": seed, "status": result.status, "reason": result.reason,
            "val_accuracy": result.accuracy, "test_accuracy": result.test_accuracy, "seconds": result.seconds}


def run_fidelity(networks: list[Network], *, seeds: int = 3, profile: str = "cpu", data: str = "default",
                 overrides: dict | None = None, workers: int = 1, out: str | Path, verbose: bool = True,
                 patch: int | None = None) -> dict:
    from latency import predict_ms
    from proxytask.profiles import signal
    from search_spaces import count_madds

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sig = signal(profile, data=data, overrides=overrides, patch=patch)
    device = sig.proxy.torch_device()  # a clear error before any work when CUDA is asked for but absent
    start = time.perf_counter()
    proxy_data = sig.load()
    settings = {"signal": sig.describe(), "networks": [n.label for n in networks], "data": proxy_data.name}
    journal = Journal(out / "runs.jsonl")  # damaged lines are skipped with a warning, never lost
    done = {(entry["run"]["index"], entry["run"]["seed"]): entry["run"] for entry in journal.repair()
            if entry.get("settings") == settings and isinstance(entry.get("run"), dict)}
    jobs = [(i, seed, n.spec) for i, n in enumerate(networks) for seed in range(seeds) if (i, seed) not in done]
    runs = list(done.values())

    def record(run: dict) -> None:
        runs.append(run)
        journal.append({"settings": settings, "run": run})
        if verbose:
            print(f"{networks[run['index']].label:<28} seed {run['seed']}: {run['status']:<8} "
                  f"test {100 * run['test_accuracy']:.2f} % val {100 * run['val_accuracy']:.2f} % "
                  f"{run['seconds']:.1f} s {run['reason'][:80]}", flush=True)

    if verbose:
        print(f"{len(networks)} networks x {seeds} seeds, {len(jobs)} to train; data {proxy_data.summary()}; "
              f"signal {sig.profile}: {sig.describe()['proxy']}", flush=True)
    if workers > 1 and len(jobs) > 1:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(proxy_data, sig.proxy)) as pool:
            for run in pool.imap_unordered(_train, jobs):
                record(run)
    else:
        _init_worker(proxy_data, sig.proxy)
        for job in jobs:
            record(_train(job))

    accuracy = np.full((len(networks), seeds), np.nan)
    seconds = np.full((len(networks), seeds), np.nan)
    for run in runs:
        if run["status"] == "ok" and run["seed"] < seeds:
            accuracy[run["index"], run["seed"]] = run["test_accuracy"]
            seconds[run["index"], run["seed"]] = run["seconds"]
    failed = [f"{networks[r['index']].label} seed {r['seed']}: {r['reason']}" for r in runs if r["status"] != "ok"]
    latency = np.array([predict_ms(n.spec, "pixel1") for n in networks])
    madds = np.array([count_madds(n.spec) for n in networks], dtype=float)
    top1 = np.array([n.top1 for n in networks])
    rows = []
    for i, n in enumerate(networks):
        rows.append({"spec": n.label.split("@")[0], "width": n.width, "resolution": n.resolution, "top1": n.top1,
                     "pixel1_ms": round(float(latency[i]), 3), "madds": int(madds[i]),
                     **{f"acc_seed{s}": (round(float(accuracy[i, s]), 4) if np.isfinite(accuracy[i, s]) else "")
                        for s in range(seeds)},
                     "acc_mean": round(float(np.nanmean(accuracy[i])), 4) if np.isfinite(accuracy[i]).any() else "",
                     "seconds_per_child": round(float(np.nanmean(seconds[i])), 2) if np.isfinite(seconds[i]).any() else ""})
    _write_csv(out / "networks.csv", rows)
    ok = np.isfinite(accuracy).all(axis=1)
    summary: dict = {"n": int(ok.sum())}
    if ok.sum() >= 4:
        summary.update(fidelity_statistics(accuracy[ok], top1[ok], latency[ok], madds[ok]))
    summary.update(seconds_per_child=float(np.nanmean(seconds)) if np.isfinite(seconds).any() else None,
                   device=str(device) if device.type == "cpu" else _gpu_name(device),
                   workers=workers, seeds=seeds, failed=failed, data_summary=proxy_data.summary(),
                   signal=sig.describe(), wall_seconds=round(time.perf_counter() - start, 1),
                   cpu_count=os.cpu_count(),
                   command="python -m experiments.proxy_fidelity " + " ".join(sys.argv[1:]) if sys.argv[1:] else None)
    _atomic_json(out / "summary.json", summary)
    if ok.sum() >= 4:
        _plots(out, [n.label for n in networks], accuracy, top1, latency, ok)
    return summary


def _gpu_name(device) -> str:
    import torch

    return f"{device} ({torch.cuda.get_device_name(device)})"


def _write_csv(path: Path, rows: list[dict]) -> None:
    def write(f) -> None:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(path, write)


def _atomic_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=float) + "\n")


def _plots(out: Path, labels, accuracy, top1, latency, ok) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean = accuracy.mean(axis=1)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.errorbar(top1[ok], 100 * mean[ok], yerr=100 * accuracy[ok].std(axis=1), fmt="o", capsize=3)
    for i in np.flatnonzero(ok):
        ax.annotate(labels[i], (top1[i], 100 * mean[i]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("ImageNet top-1 (%)")
    ax.set_ylabel("proxy test accuracy (%), mean and sd over seeds")
    ax.set_title("Proxy accuracy against ImageNet top-1")
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_top1.png", dpi=120)
    plt.close(fig)
    r_proxy = quadratic_residuals(mean[ok], latency[ok])
    r_top1 = quadratic_residuals(top1[ok], latency[ok])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(r_top1, 100 * r_proxy)
    for label, x, y in zip([labels[i] for i in np.flatnonzero(ok)], r_top1, r_proxy):
        ax.annotate(label, (x, 100 * y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("top-1 residual after a fit on log latency (points)")
    ax.set_ylabel("proxy accuracy residual (points)")
    ax.set_title(f"At equal pixel1 latency: Spearman {_spearman(r_proxy, r_top1):.2f}")
    fig.tight_layout()
    fig.savefig(out / "residuals.png", dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- CLI
def parse_args(argv=None) -> argparse.Namespace:
    from jobs.cli import parse_overrides

    p = argparse.ArgumentParser(prog="python -m experiments.proxy_fidelity", description=__doc__.splitlines()[0])
    p.add_argument("--networks", default=str(DEFAULT_NETWORKS), help="CSV with columns spec,width,resolution,top1")
    p.add_argument("--seeds", type=int, default=3, help="training seeds per network (default 3)")
    p.add_argument("--data", default="default", 
                   help="proxy data: default (embedded photos) | cifar10:PATH (the cifar-10-batches-py folder; its batches are pickles, read by a restricted unpickler: use a folder you trust) | imagefolder:PATH (a folder per class, optionally under train/ val/ test/)")
    p.add_argument("--profile", default=None, choices=["cpu", "gpu"],
                   help="signal profile (default: gpu with --device cuda, else cpu)")
    p.add_argument("--proxy", action="append", default=[], metavar="KEY=VALUE",
                   help="override a ProxyConfig field, e.g. --proxy epochs=2")
    p.add_argument("--patch", type=int, default=None,
                   help="crop side (source pixels) of the embedded photos (default: the profile's)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="where children train")
    p.add_argument("--workers", type=int, default=1, help="children trained at once (processes)")
    p.add_argument("--out", required=True, help="output folder")
    a = p.parse_args(argv)
    if not 1 <= a.seeds <= 20:
        p.error(f"--seeds: {a.seeds} must be from 1 to 20")
    if not 1 <= a.workers <= 64:
        p.error(f"--workers: {a.workers} must be from 1 to 64")
    a.overrides = parse_overrides(a.proxy, p, example="epochs=2")
    if a.device is not None:
        a.overrides.setdefault("device", a.device)
    a.profile = a.profile or ("gpu" if a.device == "cuda" else "cpu")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    os_signal.signal(os_signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        networks = read_networks(a.networks)
        summary = run_fidelity(networks, seeds=a.seeds, profile=a.profile, data=a.data, overrides=a.overrides,
                               workers=a.workers, out=a.out, patch=a.patch)
    except (FidelityError, ValueError, RuntimeError) as err:
        print(f"error: {str(err).splitlines()[0][:500]}", file=sys.stderr)
        return 2
    keys = ("n", "spearman", "kendall", "latency_matched_spearman", "madds_latency_matched_spearman",
            "seed_spearman", "seconds_per_child", "device")
    for key in keys:
        value = summary.get(key)
        print(f"{key:>32}: {value:.3f}" if isinstance(value, float) else f"{key:>32}: {value}")
    print(f"wrote {a.out}/networks.csv, summary.json, accuracy_vs_top1.png, residuals.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
