"""Does the accuracy signal rank networks as ImageNet does? Train networks of known top-1 with it.

    python -m experiments.proxy_fidelity [--networks CSV] [--seeds 3] [--data SOURCE]
        [--profile cpu|gpu|tinyimagenet] [--proxy KEY=VALUE ...] [--device cpu|cuda] [--workers N]
        [--score accuracy|sotl_e] [--signal scratch|supernet [--supernet-epochs E] [--space S]] --out DIR
    python -m experiments.proxy_fidelity --choose DIR [DIR ...] [--choose-score accuracy|sotl_e|any] --out DIR

``--networks``: a CSV with columns ``spec,width,resolution,top1`` (more columns, e.g. ``source``
and ``notes``, are kept for the reader). Default: the tuning set,
``experiments/data/tuning_networks.csv``: the seven Table 3 networks and eleven other published
networks with ImageNet top-1 (MnasNet-B1 x4, MobileNetV1 x4, FBNet-A/B/C; each row cites its
top-1). ``spec`` is a reference name, a YAML path (relative to the CSV's folder) or an arch
string; ``width`` scales it. Width variants at 224 px of V3-Large, V3-Small, V2 and MnasNet-A1
other than Table 3's, the minimalistic V3s and ProxylessNAS are kept out of it: they are reserved
for an independent check.

**Honest protocol.** A *setting* (one run of the first form) trains every network once per seed
(:func:`proxytask.grid.train_grid`: seeds ``proxy.seed ..``, resumable) and scores it on the
**validation** split: ``summary.json`` (``score_split: "val"``) and ``networks.csv`` show
validation figures only. The test accuracies are kept sealed in ``test_scores.json``. The second
form (``--choose``) picks the best setting and score on the validation figures (the sum of
``spearman``, ``latency_matched_spearman`` and ``seed_spearman``) and reports the **test** figures
of that one choice, once (``OUT/summary.json``, ``score_split: "test"``, and ``OUT/choice.md``
with every candidate's validation figures).

``--signal supernet`` scores every network as its nearest subnet of a weight-sharing supernet,
one supernet trained per seed (:mod:`experiments.benchmarks.supernet_fidelity`); the figures,
files and ``--choose`` are the same, and ``cpu_seconds_per_child`` counts the supernet's
training, so both signals can be compared at equal CPU time.

Scores (``--score``, both are computed from the same trainings, so ``--choose`` compares both):

* ``accuracy``: top-1 at the end of training (validation split; test once chosen);
* ``sotl_e``: minus the training loss over the last epoch (SoTL-E, Ru et al., NeurIPS 2021: the
  sum of training losses over the last epoch; every network takes the same steps, so the mean
  ranks alike). It uses no held-out images: ``score_split`` is ``"train"`` and its chosen figure
  is the same number it was chosen on.

Statistics (:mod:`experiments.benchmarks.fidelity_stats`): ``spearman``, ``kendall``,
``latency_matched_spearman``, their MAdds and parameter-count baselines, ``seed_spearman``; with 95 % bootstrap
intervals over networks (``spearman_ci95``, ``latency_matched_spearman_ci95``) and one-sided
permutation p-values (``spearman_permutation_p``, ``latency_matched_permutation_p``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import shlex
import signal as os_signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobs import atomic_write, atomic_write_text

from .fidelity_stats import (fidelity_statistics, latency_matched_spearman, quadratic_residuals,  # noqa: F401
                             spearman)

DATA = Path(__file__).resolve().parents[1] / "data"
DEFAULT_NETWORKS = DATA / "tuning_networks.csv"
TABLE3_NETWORKS = DATA / "table3_networks.csv"
COLUMNS = ("spec", "width", "resolution", "top1")
SCORES = ("accuracy", "sotl_e")
MAX_CSV_BYTES = 1 << 20
MAX_ROWS = 500
MAX_FIELD_CHARS = 4096
CHOICE_KEYS = ("spearman", "latency_matched_spearman", "seed_spearman")


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
def _csv_rows(path: Path) -> tuple[list[str], list[dict]]:
    """Header and rows of a networks CSV, bounded (size, rows, field length); a byte-order mark is dropped."""
    if not path.is_file():
        raise FidelityError(f"--networks: {path} is not a file; give a CSV with columns {','.join(COLUMNS)}")
    if path.stat().st_size > MAX_CSV_BYTES:
        raise FidelityError(f"--networks: {path} is {path.stat().st_size:,} bytes; a networks CSV is at most "
                            f"{MAX_CSV_BYTES:,}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise FidelityError(f"--networks: cannot read {path} ({type(err).__name__}); give a UTF-8 CSV") from None
    reader = csv.DictReader(io.StringIO(text))
    rows = []
    try:
        for row in reader:
            if len(rows) >= MAX_ROWS:
                raise FidelityError(f"{path}: more than {MAX_ROWS} rows; split the CSV")
            long = [k for k, v in row.items() if isinstance(v, str) and len(v) > MAX_FIELD_CHARS]
            if long:
                raise FidelityError(f"{path} row {reader.line_num}: {long[0]}: longer than {MAX_FIELD_CHARS} "
                                    "characters")
            rows.append(row)
    except csv.Error as err:
        raise FidelityError(f"{path} row {reader.line_num}: not a CSV row ({str(err)[:80]})") from None
    return [f.strip() for f in (reader.fieldnames or [])], rows


def _number(row: dict, field: str, where: str, kind=float, low=None, high=None):
    raw = (row.get(field) or "").strip()
    try:
        value = float(raw)
    except ValueError:
        raise FidelityError(f"{where}: {field}: {raw[:40]!r} is not a number") from None
    if kind is int and math.isfinite(value):
        if value != int(value):
            raise FidelityError(f"{where}: {field}: {raw[:40]!r} is not a whole number")
        value = int(value)
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        raise FidelityError(f"{where}: {field}: {raw[:40]!r} must be in [{low}, {high}]")
    return value


def _resolve_spec(name: str, width: float, resolution: int, path: Path, where: str):
    from search_spaces import SpecError, load_spec, reference
    from search_spaces.references import names as reference_names
    from search_spaces.transforms import scale_width

    if not name:
        raise FidelityError(f"{where}: spec: empty; give a reference name ({', '.join(reference_names())}), "
                            f"a YAML path or an arch string")
    try:
        if name in reference_names():
            return reference(name, width, resolution)
        candidate = path.parent / name
        is_yaml = candidate.suffix in (".yaml", ".yml")
        if is_yaml and not candidate.is_file():
            raise FidelityError(f"{where}: spec: {name[:80]!r}: no such file next to the CSV ({candidate})")
        spec = load_spec(str(candidate) if is_yaml else name).replace(resolution=resolution)
        return scale_width(spec, width) if width != 1.0 else spec
    except FidelityError:
        raise
    except (SpecError, ValueError, KeyError, OSError) as err:
        message = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
        raise FidelityError(f"{where}: spec: {name[:80]!r} is not a reference name, YAML file or arch string "
                            f"({message})") from None


def read_networks(path: str | Path) -> list[Network]:
    """Parse and resolve a networks CSV; a bad row is a FidelityError naming row and field."""
    path = Path(path)
    header, rows = _csv_rows(path)
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise FidelityError(f"{path}: missing column {missing[0]!r}; the header must name {','.join(COLUMNS)}")
    networks: list[Network] = []
    seen: dict[tuple, int] = {}
    for row_number, row in enumerate(rows, start=2):  # row 1 is the header
        row = {(k or "").strip(): v for k, v in row.items()}
        where = f"{path} row {row_number}"
        width = _number(row, "width", where, float, 0.1, 4.0)
        resolution = _number(row, "resolution", where, int, 32, 512)
        top1 = _number(row, "top1", where, float, 0.0, 100.0)
        name = (row.get("spec") or "").strip()
        spec = _resolve_spec(name, width, resolution, path, where)
        if spec.hash in seen:
            raise FidelityError(f"{where}: the same network as row {seen[spec.hash]}; each network once")
        seen[spec.hash] = row_number
        networks.append(Network(row_number, f"{name}@{width:g}x{resolution}", spec, width, resolution, top1))
    if len(networks) < 4:
        raise FidelityError(f"{path}: {len(networks)} network(s); the statistics need at least 4 rows")
    return networks


# --------------------------------------------------------------------------- one setting
def _score_matrices(networks: list[Network], runs: dict, seeds: list[int]) -> dict[str, np.ndarray]:
    """(networks, seeds) arrays: ``val``, ``test``, ``sotl_e`` (minus the last epoch's loss), ``seconds``
    (wall) and ``cpu_seconds`` (the training process's CPU time: the cost, whatever else runs)."""
    shape = (len(networks), len(seeds))
    out = {k: np.full(shape, np.nan) for k in ("val", "test", "sotl_e", "seconds", "cpu_seconds")}
    for i, n in enumerate(networks):
        for j, run in enumerate(runs[n.label]):
            if run is None or run["status"] != "ok":
                continue
            out["val"][i, j] = _float(run.get("val_accuracy"))
            out["test"][i, j] = _float(run.get("test_accuracy"))
            out["sotl_e"][i, j] = -_float(run.get("last_epoch_loss"))
            out["seconds"][i, j] = _float(run.get("seconds"))
            out["cpu_seconds"][i, j] = _float(run.get("cpu_seconds"))
    return out


def _float(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def _costs(networks: list[Network]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from latency import predict_ms
    from search_spaces import count_madds

    latency = np.array([predict_ms(n.spec, "pixel1") for n in networks])
    madds = np.array([count_madds(n.spec) for n in networks], dtype=float)
    return latency, madds, np.array([n.top1 for n in networks])


def _statistics(scores: np.ndarray, networks, *, intervals: bool) -> dict:
    from search_spaces import count_params

    latency, madds, top1 = _costs(networks)
    params = np.array([count_params(n.spec) for n in networks], dtype=float)
    ok = np.isfinite(scores).all(axis=1)
    stats: dict = {"n": int(ok.sum())}
    if ok.sum() >= 4:
        stats.update(fidelity_statistics(scores[ok], top1[ok], latency[ok], madds[ok], intervals=intervals,
                                         params=params[ok]))
    return stats


def write_summary(out: Path, summary: dict, networks, val: np.ndarray) -> dict:
    """``out/summary.json`` and, with at least 4 networks scored, the two plots; returns ``summary``."""
    _atomic_json(out / "summary.json", summary)
    if summary["n"] >= 4:
        _plots(out, [n.label for n in networks], val, networks)
    return summary


def seal_test_scores(out: Path, networks, test: np.ndarray, seeds: list[int]) -> None:
    """``out/test_scores.json``: the test accuracies, read only by ``--choose`` for the chosen setting."""
    sealed = {n.label: [None if not np.isfinite(v) else float(v) for v in test[i]] for i, n in enumerate(networks)}
    _atomic_json(out / "test_scores.json", {"note": "sealed: read only by --choose, for the chosen setting",
                                            "seeds": seeds, "test_accuracy": sealed})


def _network_rows(networks, matrices, seeds) -> list[dict]:
    latency, madds, _ = _costs(networks)

    def cell(value, digits=4):
        return round(float(value), digits) if np.isfinite(value) else ""

    rows = []
    for i, n in enumerate(networks):
        val, sotl, secs = matrices["val"][i], matrices["sotl_e"][i], matrices["seconds"][i]
        rows.append({"spec": n.label.split("@")[0], "width": n.width, "resolution": n.resolution, "top1": n.top1,
                     "pixel1_ms": round(float(latency[i]), 3), "madds": int(madds[i]),
                     **{f"acc_seed{s}": cell(val[j]) for j, s in enumerate(seeds)},
                     "acc_mean": cell(np.nanmean(val)) if np.isfinite(val).any() else "",
                     "sotl_e_mean": cell(np.nanmean(sotl)) if np.isfinite(sotl).any() else "",
                     "seconds_per_child": cell(np.nanmean(secs), 2) if np.isfinite(secs).any() else ""})
    return rows


def run_fidelity(networks: list[Network], *, seeds: int = 3, profile: str = "cpu", data: str = "default",
                 overrides: dict | None = None, workers: int = 1, out: str | Path, verbose: bool = True,
                 patch: int | None = None, score: str = "accuracy", networks_csv: str | Path | None = None) -> dict:
    """Train every network ``seeds`` times with the signal and write the setting's validation
    figures (see the module docstring); returns ``summary.json``'s content."""
    from proxytask.grid import grid_seeds, train_grid
    from proxytask.profiles import signal

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sig = signal(profile, data=data, overrides=overrides, patch=patch)
    device = sig.proxy.torch_device()  # a clear error before any work when CUDA is asked for but absent
    start = time.perf_counter()
    proxy_data = sig.load()
    seed_list = grid_seeds(sig, seeds)
    runs = train_grid({n.label: n.spec for n in networks}, seeds, sig, journal=out / "runs.jsonl", workers=workers,
                      data=proxy_data, log=print if verbose else None)
    matrices = _score_matrices(networks, runs, seed_list)
    _write_csv(out / "networks.csv", _network_rows(networks, matrices, seed_list))
    seal_test_scores(out, networks, matrices["test"], seed_list)
    failed = [f"{label} seed {r['seed']}: {r['reason']}" for label, rs in runs.items() for r in rs
              if r is not None and r["status"] != "ok"]
    by_score = {"accuracy": _statistics(matrices["val"], networks, intervals=True),
                "sotl_e": _statistics(matrices["sotl_e"], networks, intervals=True)}
    secs = matrices["seconds"]
    summary = {**by_score[score], "score": score, "score_split": "val" if score == "accuracy" else "train",
               "scores": by_score, "networks_csv": str(networks_csv) if networks_csv else None,
               "seconds_per_child": float(np.nanmean(secs)) if np.isfinite(secs).any() else None,
               "cpu_seconds_per_child": (float(np.nanmean(matrices["cpu_seconds"]))
                                         if np.isfinite(matrices["cpu_seconds"]).any() else None),
               "device": str(device) if device.type == "cpu" else _gpu_name(device), "workers": workers,
               "seeds": seed_list, "failed": failed, "data_summary": proxy_data.summary(), "signal": sig.describe(),
               "wall_seconds": round(time.perf_counter() - start, 1), "cpu_count": os.cpu_count(),
               "command": "python -m experiments.proxy_fidelity " + shlex.join(sys.argv[1:]) if sys.argv[1:] else None}
    return write_summary(out, summary, networks, matrices["val"])


# --------------------------------------------------------------------------- choose on val, report test
def _candidates(folders: list[Path]) -> list[dict]:
    """Every (setting, score) with its validation figures."""
    found = []
    for folder in folders:
        path = folder / "summary.json"
        try:
            summary = json.loads(path.read_text())
            by_score = summary["scores"]
        except (OSError, ValueError, KeyError, TypeError):
            raise FidelityError(f"--choose: {path} is not the summary.json of a fidelity setting; run the "
                                "setting first") from None
        for score in SCORES:
            figures = by_score.get(score) or {}
            values = [figures.get(k) for k in CHOICE_KEYS]
            ok = all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
            found.append({"folder": str(folder), "score": score, "criterion": float(sum(values)) if ok else None,
                          "validation": {k: figures.get(k) for k in (*CHOICE_KEYS, "n")},
                          "command": summary.get("command"), "seconds_per_child": summary.get("seconds_per_child")})
    return found


def choose(folders: list[str | Path], out: str | Path, networks_csv: str | Path | None = None,
           scores: tuple[str, ...] = SCORES) -> dict:
    """Pick the (setting, score) with the best validation criterion among ``scores`` and report its
    test figures once."""
    folders = [Path(f) for f in folders]
    candidates = _candidates(folders)
    usable = [c for c in candidates if c["criterion"] is not None and c["score"] in scores]
    if not usable:
        raise FidelityError("--choose: no setting has all of " + ", ".join(CHOICE_KEYS) + " on validation")
    best = max(usable, key=lambda c: c["criterion"])
    folder = Path(best["folder"])
    setting = json.loads((folder / "summary.json").read_text())
    networks = read_networks(networks_csv or setting.get("networks_csv") or DEFAULT_NETWORKS)
    if best["score"] == "accuracy":
        sealed = json.loads((folder / "test_scores.json").read_text())["test_accuracy"]
        matrix = np.array([[np.nan if v is None else v for v in sealed.get(n.label, [])] for n in networks],
                          dtype=float)
        split = "test"
    else:
        matrix, split = None, "train"
    report = (_statistics(matrix, networks, intervals=True) if matrix is not None and matrix.ndim == 2
              else dict(setting["scores"]["sotl_e"]))
    summary = {**report, "score": best["score"], "score_split": split, "chosen": best,
               "chosen_on": "validation: " + " + ".join(CHOICE_KEYS), "candidates": candidates,
               "signal": setting.get("signal"), "seeds": setting.get("seeds"),
               "seconds_per_child": setting.get("seconds_per_child"), "device": setting.get("device"),
               "command": "python -m experiments.proxy_fidelity " + shlex.join(sys.argv[1:]) if sys.argv[1:] else None}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_json(out / "summary.json", summary)
    atomic_write_text(out / "choice.md", _choice_markdown(candidates, best, summary))
    return summary


def _fmt(value, digits=2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def _choice_markdown(candidates: list[dict], best: dict, summary: dict) -> str:
    lines = ["| setting | score | val spearman | val latency-matched | val seed spearman | criterion | s / child |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for c in candidates:
        v = c["validation"]
        mark = "**" if c is best else ""
        lines.append(f"| {mark}{Path(c['folder']).name}{mark} | {c['score']} | {_fmt(v.get('spearman'))} | "
                     f"{_fmt(v.get('latency_matched_spearman'))} | {_fmt(v.get('seed_spearman'))} | "
                     f"{_fmt(c['criterion'])} | {_fmt(c['seconds_per_child'], 1)} |")
    ci, lm_ci = summary.get("spearman_ci95"), summary.get("latency_matched_spearman_ci95")
    lines += ["", f"Chosen on validation: `{Path(best['folder']).name}` with score `{best['score']}`. Reported once on "
              f"the {summary['score_split']} split: spearman {_fmt(summary.get('spearman'))} (95 % CI {ci}, "
              f"p = {_fmt(summary.get('spearman_permutation_p'), 4)}), latency-matched "
              f"{_fmt(summary.get('latency_matched_spearman'))} (95 % CI {lm_ci}, p = "
              f"{_fmt(summary.get('latency_matched_permutation_p'), 4)}), seed spearman "
              f"{_fmt(summary.get('seed_spearman'))}, n = {summary.get('n')}."
              + (" SoTL-E reads no held-out images: this is the figure it was chosen on, not an independent one."
                 if summary["score_split"] == "train" else ""), "",
              f"Baselines on the same networks (no training): log parameters, spearman "
              f"{_fmt(summary.get('params_spearman'))}, latency-matched "
              f"{_fmt(summary.get('params_latency_matched_spearman'))}; log MAdds, spearman "
              f"{_fmt(summary.get('madds_spearman'))}, latency-matched "
              f"{_fmt(summary.get('madds_latency_matched_spearman'))}. A signal is worth its CPU only above these.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- output helpers
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
    from jobs import dumps

    atomic_write_text(path, dumps(data, indent=2) + "\n")


def _plots(out: Path, labels, scores, networks) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jobs import atomic_savefig

    latency, _, top1 = _costs(networks)
    ok = np.isfinite(scores).all(axis=1)
    mean = scores.mean(axis=1)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.errorbar(top1[ok], 100 * mean[ok], yerr=100 * scores[ok].std(axis=1), fmt="o", capsize=3)
    for i in np.flatnonzero(ok):
        ax.annotate(labels[i], (top1[i], 100 * mean[i]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel="ImageNet top-1 (%)", ylabel="proxy validation accuracy (%), mean and sd over seeds",
           title="Proxy accuracy (validation) against ImageNet top-1")
    atomic_savefig(fig, out / "accuracy_vs_top1.png")
    r_proxy, r_top1 = quadratic_residuals(mean[ok], latency[ok]), quadratic_residuals(top1[ok], latency[ok])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(r_top1, 100 * r_proxy)
    for label, x, y in zip([labels[i] for i in np.flatnonzero(ok)], r_top1, r_proxy):
        ax.annotate(label, (x, 100 * y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set(xlabel="top-1 residual after a fit on log latency (points)", ylabel="proxy accuracy residual (points)",
           title=f"At equal pixel1 latency (validation): Spearman {spearman(r_proxy, r_top1):.2f}")
    atomic_savefig(fig, out / "residuals.png")


# --------------------------------------------------------------------------- CLI
def parse_args(argv=None) -> argparse.Namespace:
    from jobs.cli import parse_overrides
    from proxytask.profiles import PROFILES

    p = argparse.ArgumentParser(prog="python -m experiments.proxy_fidelity", description=__doc__.splitlines()[0])
    p.add_argument("--networks", default=str(DEFAULT_NETWORKS), help="CSV with columns spec,width,resolution,top1")
    p.add_argument("--seeds", type=int, default=3, help="training seeds per network (default 3)")
    p.add_argument("--data", default="default",
                   help="proxy data: default (embedded photos) | tinyimagenet:PATH[?classes=N,per_class=N] | "
                        "imagenet:PATH | imagefolder:PATH | cifar10:PATH (see proxytask.sources)")
    p.add_argument("--profile", default=None, choices=sorted(PROFILES),
                   help="signal profile (default: gpu with --device cuda, else cpu)")
    p.add_argument("--proxy", action="append", default=[], metavar="KEY=VALUE",
                   help="override a ProxyConfig field, e.g. --proxy epochs=2")
    p.add_argument("--patch", type=int, default=None,
                   help="crop side (source pixels) of the embedded photos (default: the profile's)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="where children train")
    p.add_argument("--workers", type=int, default=1, help="children trained at once (processes)")
    p.add_argument("--score", choices=SCORES, default="accuracy", help="the score summary.json leads with")
    p.add_argument("--choose", nargs="+", metavar="DIR", default=None,
                   help="setting folders: choose one on validation, report its test figures in --out")
    p.add_argument("--choose-score", choices=(*SCORES, "any"), default="any",
                   help="with --choose: the scores a choice may take (default any)")
    p.add_argument("--signal", choices=("scratch", "supernet"), default="scratch",
                   help="scratch: train every network (default); supernet: score each as its nearest subnet")
    p.add_argument("--supernet-epochs", type=float, default=None,
                   help="with --signal supernet: epochs of supernet training per seed (default: the main job's)")
    p.add_argument("--space", default="mobilenetv3", help="with --signal supernet: the supernet's search space")
    p.add_argument("--out", required=True, help="output folder")
    a = p.parse_args(argv)
    if a.supernet_epochs is not None and not (math.isfinite(a.supernet_epochs) and 0 < a.supernet_epochs <= 1000):
        p.error(f"--supernet-epochs: {a.supernet_epochs} must be a number in (0, 1000]")
    if a.signal == "scratch" and (a.supernet_epochs is not None or a.space != "mobilenetv3"):
        p.error("--supernet-epochs / --space: only with --signal supernet; add --signal supernet or drop them")
    if not 1 <= a.seeds <= 20:
        p.error(f"--seeds: {a.seeds} must be from 1 to 20")
    if not 1 <= a.workers <= 64:
        p.error(f"--workers: {a.workers} must be from 1 to 64")
    a.overrides = parse_overrides(a.proxy, p, example="epochs=2")
    if a.device is not None:
        a.overrides.setdefault("device", a.device)
    from proxytask.profiles import resolve_profile

    a.profile = resolve_profile(a.profile, gpus=1 if str(a.device).startswith("cuda") else 0)
    return a


def _check_data(source: str) -> None:
    """A bad data source is refused before any network is trained (the pipeline's one check)."""
    from experiments.pipeline.config import data_problem

    problem = data_problem(source)
    if problem:
        raise FidelityError(f"--data: {problem}")


def main(argv=None) -> int:
    a = parse_args(argv)
    os_signal.signal(os_signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        if a.choose:
            summary = choose(a.choose, a.out, a.networks if a.networks != str(DEFAULT_NETWORKS) else None,
                             SCORES if a.choose_score == "any" else (a.choose_score,))
        else:
            networks = read_networks(a.networks)
            _check_data(a.data)
            if a.signal == "supernet":
                from .supernet_fidelity import run_supernet_fidelity

                summary = run_supernet_fidelity(networks, seeds=a.seeds, profile=a.profile, data=a.data,
                                                overrides=a.overrides, out=a.out, space=a.space,
                                                epochs=a.supernet_epochs, threads=a.workers, patch=a.patch,
                                                networks_csv=Path(a.networks).resolve())
            else:
                summary = run_fidelity(networks, seeds=a.seeds, profile=a.profile, data=a.data, overrides=a.overrides,
                                       workers=a.workers, out=a.out, patch=a.patch, score=a.score,
                                       networks_csv=Path(a.networks).resolve())
    except (FidelityError, ValueError, RuntimeError, OSError) as err:
        print(f"error: {str(err).splitlines()[0][:500] if str(err) else type(err).__name__}", file=sys.stderr)
        return 2
    for key in ("n", "score", "score_split", "spearman", "spearman_ci95", "spearman_permutation_p",
                "latency_matched_spearman", "latency_matched_spearman_ci95", "latency_matched_permutation_p",
                "madds_latency_matched_spearman", "seed_spearman", "seconds_per_child", "cpu_seconds_per_child",
                "device"):
        value = summary.get(key)
        print(f"{key:>32}: {value:.3f}" if isinstance(value, float) else f"{key:>32}: {value}")
    print(f"wrote {a.out}/summary.json" + ("" if a.choose else ", networks.csv, accuracy_vs_top1.png, residuals.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
