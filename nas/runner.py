"""The platform-aware search loop: strategy -> Ray Tune trials (proxy training) -> reward.

``run_search(SearchConfig(...))`` is what ``python -m nas.search`` calls. Outputs under
``runs/NAME/``: ``trials.csv`` (one row per child), ``best.yaml`` (the best ArchSpec, at the
target resolution), ``pareto.png`` (accuracy vs predicted latency, the frontier and the target),
``searcher.json`` (the strategy's state: the controller checkpoint), ``journal.jsonl`` (the
append-only record a resume reads), ``config.json`` and ``summary.json``; Ray's own files go
to ``runs/NAME/ray/``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from jobs import atomic_write_text
from jobs.ray_setup import ray_running
from latency import predict_ms, table_for
from search_spaces import ArchSpec, reference
from search_spaces.spaces import get_space

from .reward import W_LARGE
from .strategies import make_strategy

RESUME_KEYS = ("space", "strategy", "target", "target_ms", "w", "alpha", "beta", "seed", "data", "epochs",
               "proxy_resolution", "proxy_overrides", "profile")


@dataclass
class SearchConfig:
    target: str = "pixel1"
    target_ms: float | None = None  # default: the space's reference network on the target
    w: float = W_LARGE
    alpha: float | None = None
    beta: float | None = None
    space: str = "mobilenetv3"
    strategy: str = "rl"
    children: int = 32
    epochs: float | None = None  # None: the proxy's default
    data: str = "default"
    proxy_resolution: int | None = None
    profile: str | None = None  # accuracy-signal profile: None = gpu with --gpus-per-trial, else cpu
    out: str = "runs/search"
    seed: int = 0
    concurrency: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    retries: int = 1
    address: str | None = None
    resume: bool = False
    rl_batch_size: int = 8
    progress: bool = True
    proxy_overrides: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class SearchError(ValueError):
    pass


def default_target_ms(space, target: str) -> tuple[float, str]:
    name = space.reference or "mobilenet_v3_large"
    spec = reference(name, 1.0, space.resolution)
    return predict_ms(spec, table_for(target)), name


def _latency_fn(target_name: str):
    """spec -> (predicted ms, LUT hits/misses); a measured target profiles missing ops on demand."""
    table = table_for(target_name)

    def latency(spec: ArchSpec):
        keys = spec.op_keys()
        misses = len(table.missing(keys))
        return predict_ms(spec, table), {"hits": len(keys) - misses, "misses": misses}

    return latency


def _prepare_run_dir(config: SearchConfig) -> Path:
    out = Path(config.out).resolve()
    saved = out / "config.json"
    if saved.exists() and not config.resume:
        raise SearchError(f"out: {out} already holds a search; pass --resume to continue it or choose another --out")
    if config.resume and saved.exists():
        previous = json.loads(saved.read_text())
        for key in RESUME_KEYS:
            if previous.get(key) != getattr(config, key):
                raise SearchError(f"resume: {key} was {previous.get(key)!r} in {saved}, now {getattr(config, key)!r}; "
                                  "resume with the same settings")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, json.dumps(config.to_dict(), indent=2) + "\n")
    return out


def write_outputs(out: Path, records: list[dict], space, target_ms: float, config: SearchConfig) -> dict:
    """trials.csv, best.yaml, pareto.png from the journal's records; returns the summary."""
    df = pd.DataFrame(records)
    if df.empty:
        return {}
    df = df.assign(tokens=df["tokens"].map(" ".join))
    columns = ["index", "trial_id", "name", "hash", "tokens", "accuracy", "test_accuracy", "latency_ms", "reward",
               "status", "reason",
               "wall_s", "trained", "lut_hits", "lut_misses"]
    atomic_write_text(out / "trials.csv", df.reindex(columns=columns).to_csv(index=False))
    ok = df[df["status"] == "ok"]
    summary = {"children_trained": int(df["trained"].sum()), "children_total": len(df),
               "failed": int((df["status"] != "ok").sum()),
               "child_hours": float(df.loc[df["trained"], "wall_s"].fillna(0).sum() / 3600),
               "lut_hits": int(df["lut_hits"].fillna(0).sum()), "lut_misses": int(df["lut_misses"].fillna(0).sum()),
               "target": config.target, "target_ms": target_ms, "w": config.w}
    if not ok.empty:
        best = ok.loc[ok["reward"].idxmax()]
        spec = space.decode(tuple(best["sample"]), name=f"{config.space}_{config.strategy}_best")
        test = best.get("test_accuracy")
        test = None if test is None or pd.isna(test) else float(test)
        spec.to_yaml(out / "best.yaml", header=f"Best child of {out.name}: validation accuracy {best['accuracy']:.4f} "
                                               f"(proxy; selected on it), test accuracy "
                                               f"{'n/a' if test is None else f'{test:.4f}'}, "
                                               f"predicted {best['latency_ms']:.2f} ms on {config.target}, "
                                               f"reward {best['reward']:.4f}")
        summary.update(best_reward=float(best["reward"]), best_accuracy=float(best["accuracy"]),
                       best_test_accuracy=test,
                       best_latency_ms=float(best["latency_ms"]), best_hash=best["hash"], best_index=int(best["index"]))
        pareto_plot(ok, out / "pareto.png", target_ms, config)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def pareto_front(df: pd.DataFrame) -> pd.DataFrame:
    """Children no other child beats on both accuracy (higher) and latency (lower)."""
    ordered = df.sort_values(["latency_ms", "accuracy"], ascending=[True, False])
    front, best = [], -math.inf
    for _, row in ordered.iterrows():
        if row["accuracy"] > best:
            front.append(row)
            best = row["accuracy"]
    return pd.DataFrame(front)


def pareto_plot(ok: pd.DataFrame, path: Path, target_ms: float, config: SearchConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    points = ax.scatter(ok["latency_ms"], 100 * ok["accuracy"], c=ok["index"], cmap="viridis", s=18, alpha=0.8)
    front = pareto_front(ok)
    ax.step(front["latency_ms"], 100 * front["accuracy"], where="post", color="crimson", lw=1.5, label="Pareto front")
    ax.axvline(target_ms, color="k", ls="--", lw=1, label=f"target {target_ms:.1f} ms")
    best = ok.loc[ok["reward"].idxmax()]
    ax.scatter([best["latency_ms"]], [100 * best["accuracy"]], marker="*", s=180, color="gold", edgecolors="k",
               label="best reward", zorder=3)
    fig.colorbar(points, label="child index")
    ax.set(xlabel=f"predicted latency on {config.target} (ms)", ylabel="proxy validation accuracy (%)",
           title=f"{config.strategy} search over {config.space}, w = {config.w}")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def search_signal(config: SearchConfig):
    """The accuracy signal the children are scored with (:func:`proxytask.profiles.signal`):
    ``config.profile`` (default ``gpu`` when trials get GPUs, else ``cpu``), then ``--epochs``,
    ``--proxy-resolution`` and ``--proxy`` overrides, the seed and the threads of a trial. A bad
    setting is a SearchError naming it, raised before any work starts."""
    from proxytask.profiles import signal

    profile = config.profile or ("gpu" if config.gpus_per_trial > 0 else "cpu")
    overrides = dict(config.proxy_overrides)
    if config.epochs is not None:
        overrides["epochs"] = config.epochs
    if config.proxy_resolution is not None:
        overrides["resolution"] = config.proxy_resolution
    overrides.update(seed=config.seed, threads=max(1, int(config.cpus_per_trial)))
    if config.gpus_per_trial <= 0 and "device" not in config.proxy_overrides:
        overrides["device"] = "cpu"  # the gpu profile's settings on a CPU-only run
    try:
        sig = signal(profile, data=config.data, overrides=overrides)
    except ValueError as err:
        raise SearchError(str(err)) from None
    if sig.proxy.device.startswith("cuda") and config.gpus_per_trial <= 0:
        raise SearchError(f"proxy.device: {sig.proxy.device!r} needs GPUs for the trials; pass --gpus-per-trial 1 "
                          "(or a fraction to share a GPU), or leave the device at cpu")
    if config.gpus_per_trial > 0 and "device" not in config.proxy_overrides and not sig.proxy.device.startswith("cuda"):
        sig = dataclasses.replace(sig, proxy=sig.proxy.replace(device="cuda"))  # Ray sets CUDA_VISIBLE_DEVICES
    return sig


def run_search(config: SearchConfig) -> dict:
    import torch
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from .searcher import StrategySearcher
    from .trial import child_trainable

    start = time.monotonic()
    space = get_space(config.space)
    target_ms, reference_name = (config.target_ms, None) if config.target_ms else default_target_ms(space, config.target)
    out = _prepare_run_dir(config)
    torch.set_num_threads(1)  # the controller is tiny; leave the cores to the children
    counts = [len(opts) for _, _, opts in space.decisions]
    options = {"batch_size": config.rl_batch_size} if config.strategy == "rl" else {}
    strategy = make_strategy(config.strategy, counts, seed=config.seed, **options)
    sig = search_signal(config)
    trial_config = {"data": sig.data, "patch": sig.patch, "proxy": dataclasses.asdict(sig.proxy),
                    "use_gpu": config.gpus_per_trial > 0}

    bar = None
    searcher = StrategySearcher(strategy, space, _latency_fn(config.target), budget=config.children,
                                target_ms=target_ms, w=config.w, alpha=config.alpha, beta=config.beta,
                                trial_config=trial_config, run_dir=out)
    done = searcher.resume() if config.resume else 0
    best = [max((r["reward"] for r in searcher.records), default=0.0)]

    def on_record(record: dict) -> None:
        best[0] = max(best[0], record["reward"])
        if record.get("trained", True):  # a duplicate changes no figure: the outputs catch up at the next child
            write_outputs(out, searcher.records, space, target_ms, config)
        if bar is not None:
            bar.update(1 if record.get("trained", True) else 0)
            bar.set_postfix(best_reward=f"{best[0]:.4f}", last=record["status"])

    searcher.on_record = on_record
    if config.progress:
        from tqdm import tqdm

        bar = tqdm(total=config.children, initial=searcher.trained, unit="child", desc="search", smoothing=0)
    if done:
        print(f"resuming {out}: {searcher.trained} children done, {len(searcher.requeue)} to rerun, "
              f"controller after {strategy.told} rewards")
    try:
        if searcher.trained < config.children:
            with ray_running(address=config.address, cpus=config.concurrency * config.cpus_per_trial):
                trainable = tune.with_resources(child_trainable, {"cpu": config.cpus_per_trial,
                                                                  "gpu": config.gpus_per_trial})
                tuner = tune.Tuner(
                    trainable,
                    tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=config.concurrency,
                                                                              batch=False),
                                                num_samples=-1, reuse_actors=False),
                    run_config=tune.RunConfig(name=f"attempt-{time.strftime('%Y%m%d-%H%M%S')}",
                                              storage_path=str(out / "ray"), verbose=0,
                                              failure_config=tune.FailureConfig(max_failures=config.retries)),
                )
                tuner.fit()
    finally:
        if bar is not None:
            bar.close()
    summary = write_outputs(out, searcher.records, space, target_ms, config)
    summary.update(elapsed_s=round(time.monotonic() - start, 1), out=str(out), reference=reference_name,
                   strategy_updates=getattr(strategy, "updates", None), stopped=searcher.stopped)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
