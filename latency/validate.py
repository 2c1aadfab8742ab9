"""``python -m latency.validate``: prove the sum-of-ops prediction against end-to-end measurement.

    python -m latency.validate --table tables/host-ort-1t.csv --backend onnxruntime --threads 1 --n 50 \\
        --out runs/validate-ort-1t

Samples ``--n`` random architectures from ``--space`` plus the reference networks, fills any
op missing from the table (same backend and protocol; provenance must match), measures every
network end to end with the same protocol (rounds interleaved across networks), and reports
MAPE, max error, Kendall tau and Spearman rho of two predictors:

* ``raw``: the sum of the ops' table latencies plus the per-call overhead;
* ``corrected``: ``scale * raw + offset``, a per-network correction for what a sum of isolated
  ops cannot see (cold caches between layers, graph fusion), fitted by least squares. Its
  figures are out-of-fold (5-fold cross-validation), so the correction is never scored on the
  networks it was fitted on. The correction fitted on all networks is stored in the table's
  provenance (``network_correction``) and used by ``latency.predict`` from then on.

Writes ``DIR/models.csv`` (one row per network), ``DIR/summary.json`` and ``DIR/scatter.png``.
Every argument is checked before anything is measured (numbers in range, ``--table`` and
``--out`` writable, ``--space`` known): a bad one is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from jobs import atomic_write_text
from jobs.cli import ArgumentParser, check_output_dir, check_output_file, fail, integer
from search_spaces import ArchSpec, SpecError, reference

from .backends import STATISTICS, BackendUnavailable, Protocol, backend_names, get_backend
from .predictor import predict
from .profiler import elapsed, ops_for_specs, profile_ops
from .table import ProvenanceMismatch, load_table

REFERENCE_NETS = (("mobilenet_v3_large", 1.0), ("mobilenet_v3_large", 0.75), ("mobilenet_v3_small", 1.0),
                  ("mobilenet_v3_small", 0.75), ("mobilenet_v2", 1.0), ("mobilenet_v2", 0.35), ("mnasnet_a1", 1.0),
                  ("mnasnet_small", 1.0))


def metrics(predicted: np.ndarray, measured: np.ndarray) -> dict:
    err = 100 * (predicted - measured) / measured
    return {"n": int(len(measured)), "mape": float(np.abs(err).mean()), "max_abs_pct_error": float(np.abs(err).max()),
            "mean_pct_error": float(err.mean()), "kendall_tau": float(stats.kendalltau(predicted, measured)[0]),
            "spearman": float(stats.spearmanr(predicted, measured)[0])}


def fit_correction(raw: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """Least-squares ``measured ~ scale * raw + offset`` in relative terms (weights 1 / measured)."""
    w = 1.0 / measured
    a = np.stack([raw * w, w], axis=1)
    (scale, offset), *_ = np.linalg.lstsq(a, measured * w, rcond=None)
    return float(scale), float(offset)


def cross_validated(raw: np.ndarray, measured: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    order = np.random.default_rng(seed).permutation(len(raw))
    out = np.empty_like(raw)
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        scale, offset = fit_correction(raw[train], measured[train])
        out[test] = scale * raw[test] + offset
    return out


def measure_networks(specs: list[ArchSpec], backend, protocol: Protocol, seed: int = 0, progress: bool = True):
    """End-to-end ms of each spec (``protocol.statistic``: the fastest run or the median of the
    rounds' medians) and its noise (IQR / median); rounds interleaved across networks."""
    from search_spaces import build

    rng = random.Random(seed)
    runners = []
    iterator = specs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(specs, desc="compiling networks", unit="net")
    for spec in iterator:
        runners.append(backend.compile(build(spec), (1, spec.in_channels, spec.resolution, spec.resolution)))
    try:
        for runner in runners:
            for _ in range(protocol.warmup):
                runner.run()
        samples = [[] for _ in specs]
        rounds = range(protocol.rounds)
        if progress:
            from tqdm import tqdm

            rounds = tqdm(rounds, desc="timing rounds", unit="round")
        for _ in rounds:
            order = list(range(len(specs)))
            rng.shuffle(order)
            for i in order:
                samples[i].append(backend.time_runs(runners[i], protocol.repeats))
    finally:
        for runner in runners:
            runner.close()
    if protocol.statistic == "min":
        values = np.array([np.min(np.concatenate(s)) for s in samples])
    else:
        values = np.array([np.median([np.median(r) for r in s]) for s in samples])
    noise = np.array([float(np.subtract(*np.percentile(np.concatenate(s), [75, 25])) / np.median(np.concatenate(s)))
                      for s in samples])
    return values, noise


def sample_specs(space_name: str, n: int, seed: int, resolution: int | None) -> list[ArchSpec]:
    from search_spaces.spaces import get_space

    space = get_space(space_name)
    rng = random.Random(seed)
    specs, seen = [], set()
    while len(specs) < n:
        _, spec = space.sample_spec(rng)
        if resolution:
            spec = spec.replace(resolution=resolution)
        if spec.hash not in seen:
            seen.add(spec.hash)
            specs.append(spec)
    refs = [reference(name, width, resolution or 224) for name, width in REFERENCE_NETS]
    return specs + [r for r in refs if r.hash not in seen]


def scatter_plot(df: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    lim = [0, max(df["measured_ms"].max(), df["raw_ms"].max(), df["corrected_ms"].max()) * 1.05]
    ax.plot(lim, lim, color="grey", lw=1, label="y = x")
    ax.scatter(df["measured_ms"], df["raw_ms"], s=14, alpha=0.6, label="sum of ops (raw)")
    ax.scatter(df["measured_ms"], df["corrected_ms"], s=14, alpha=0.8, label="corrected (out-of-fold)")
    refs = df[df["reference"]]
    ax.scatter(refs["measured_ms"], refs["corrected_ms"], s=40, facecolors="none", edgecolors="k",
               label="reference networks")
    ax.set(xlim=lim, ylim=lim, xlabel="measured end to end (ms)", ylabel="predicted (ms)", title=title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def validate(table_path: Path, backend, n: int, out: Path, *, space: str = "mobilenetv3", seed: int = 0,
             protocol: Protocol = Protocol(), resolution: int | None = None, progress: bool = True) -> dict:
    start = time.monotonic()
    specs = sample_specs(space, n, seed, resolution)
    # Every op the networks need, measured with this backend and protocol (adds only missing ops).
    profile_ops(ops_for_specs(specs), backend, table_path, protocol, progress=progress, log=print if progress else None)
    table = load_table(table_path)
    table.provenance.pop("network_correction", None)
    raw = np.array([predict(s, table).latency_ms for s in specs])
    measured, noise = measure_networks(specs, backend, protocol, seed, progress)
    corrected = cross_validated(raw, measured, seed=seed)
    scale, offset = fit_correction(raw, measured)
    df = pd.DataFrame({"name": [s.name for s in specs], "hash": [s.hash for s in specs],
                       "reference": [not s.name.startswith(space) for s in specs],
                       "measured_ms": measured, "raw_ms": raw, "corrected_ms": corrected,
                       "raw_pct_error": 100 * (raw - measured) / measured,
                       "corrected_pct_error": 100 * (corrected - measured) / measured, "noise_iqr_over_median": noise})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "models.csv", df.to_csv(index=False))
    table_noise = (table.rows["iqr_ms"] / (table.rows["median_ms"] + table.rows["overhead_ms"])).median()
    summary = {**metrics(corrected, measured), "predictor": "corrected (out-of-fold)",
               "raw": metrics(raw, measured), "corrected": metrics(corrected, measured),
               "correction": {"scale": scale, "offset_ms": offset},
               "noise": {"network_iqr_over_median": float(np.median(noise)),
                         "op_iqr_over_median": float(table_noise)},
               "table": str(table_path), "provenance": table.provenance, "space": space, "seed": seed,
               "protocol": protocol.to_dict(), "seconds": round(time.monotonic() - start, 1)}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    scatter_plot(df, out / "scatter.png", f"{table.provenance.get('backend')} {table.provenance.get('threads')}t, "
                                          f"n={len(df)}: MAPE {summary['mape']:.1f} %, tau {summary['kendall_tau']:.2f}")
    # Store the correction with the table so predictions use it from now on.
    table.provenance["network_correction"] = {"scale": scale, "offset_ms": offset, "fitted_on": len(specs),
                                              "validated": summary["corrected"]}
    table.save(table_path)
    if progress:
        print(f"validated in {elapsed(start)}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m latency.validate", description=__doc__.splitlines()[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--table", type=Path, required=True, help="table CSV (created or extended as needed)")
    parser.add_argument("--backend", choices=backend_names(), required=True)
    parser.add_argument("--threads", type=integer(1, "a number of threads"), default=1)
    parser.add_argument("--n", type=integer(1, "a number of random architectures"), default=50,
                        help="random architectures (the reference networks are added)")
    parser.add_argument("--space", default="mobilenetv3")
    parser.add_argument("--resolution", type=integer(1, "an input resolution in pixels"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=integer(0, "a random seed"), default=0)
    parser.add_argument("--warmup", type=integer(0, "a number of untimed runs"), default=Protocol.warmup)
    parser.add_argument("--repeats", type=integer(1, "a number of runs per round"), default=Protocol.repeats)
    parser.add_argument("--rounds", type=integer(1, "a number of rounds"), default=Protocol.rounds)
    parser.add_argument("--statistic", choices=STATISTICS, default=Protocol.statistic,
                        help="what a row reports: the fastest run (default; robust to a shared machine's noise) or "
                             "the median of the rounds' medians")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    check_output_file("--table", args.table)
    check_output_dir("--out", args.out)
    try:
        from search_spaces.spaces import get_space

        get_space(args.space)
    except ValueError as err:
        fail("--space", str(err))
    try:
        backend = get_backend(args.backend, args.threads)
        summary = validate(args.table, backend, args.n, args.out, space=args.space, seed=args.seed,
                           protocol=Protocol(args.warmup, args.repeats, args.rounds, args.statistic), resolution=args.resolution,
                           progress=not args.no_progress)
    except (SpecError, ValueError, BackendUnavailable, ProvenanceMismatch, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for label in ("raw", "corrected"):
        m = summary[label]
        print(f"{label:9s}: n={m['n']} MAPE {m['mape']:.2f} %  max {m['max_abs_pct_error']:.1f} %  "
              f"tau {m['kendall_tau']:.3f}  rho {m['spearman']:.3f}  bias {m['mean_pct_error']:+.1f} %")
    c = summary["correction"]
    print(f"correction: measured = {c['scale']:.3f} x sum + {c['offset_ms']:.3f} ms; "
          f"noise IQR/median: networks {100 * summary['noise']['network_iqr_over_median']:.1f} %, "
          f"ops {100 * summary['noise']['op_iqr_over_median']:.1f} %")
    print(f"wrote {args.out}/summary.json, models.csv, scatter.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
