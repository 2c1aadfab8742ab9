"""The platform-aware search loop: strategy -> Ray Tune trials (proxy training) -> reward.

``run_search(SearchConfig(...))`` is what ``python -m nas.search`` calls. Outputs under
``runs/NAME/``: ``trials.csv`` (one row per child), ``best.yaml`` (the best ArchSpec, at the
target resolution), ``pareto.png`` (accuracy vs predicted latency, the frontier and the target),
``searcher.json`` (the strategy's state: the controller checkpoint), ``journal.jsonl`` (the
append-only record a resume reads), ``references.json`` (the space's reference networks trained
with the children's signal: the markers of ``pareto.png``), ``config.json`` and ``summary.json``;
Ray's own files go to ``runs/NAME/ray/``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from jobs import atomic_write_text
from jobs.ray_setup import ray_running
from latency import predict_ms, table_for
from search_spaces import ArchSpec, reference, reference_names
from search_spaces.spaces import get_space

from .reward import INVALID_REWARD, W_LARGE, reward
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
    # Reference networks trained with the children's signal and marked on pareto.png: names of
    # search_spaces.reference_names(), NAME@WIDTH for another width; None: the space's own
    # reference (if it has one); (): none. Not a resume key: a resume trains only the missing ones.
    references: tuple[str, ...] | None = None

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


MIN_WIDTH, MAX_WIDTH = 0.1, 4.0  # what search_spaces.reference accepts


def reference_problem(item: str) -> str | None:
    """Why ``item`` is not ``NAME`` or ``NAME@WIDTH`` of a reference network (None if it is)."""
    from argparse import ArgumentTypeError

    from search_spaces.cliargs import number
    from search_spaces.safe_io import echo

    name, sep, width = str(item).strip().partition("@")
    if name not in reference_names():
        return (f"{echo(item, 60)} is not a reference network; use one of {', '.join(reference_names())}, "
                "optionally with a width as NAME@0.75")
    if sep:
        try:
            number("a width multiplier", MIN_WIDTH, MAX_WIDTH)(width)
        except ArgumentTypeError as err:  # one line saying what is wrong and the range
            return f"{echo(item, 60)}: width {err}, e.g. {name}@0.75"
    return None


def reference_networks(config: SearchConfig, space) -> list[tuple[str, float]]:
    """The ``(name, width)`` of ``config.references`` (duplicates dropped, order kept): None is the
    space's own reference at width 1.0 (none if the space names none). A bad item is a SearchError
    naming it, raised before any work starts."""
    if config.references is None:
        return [(space.reference, 1.0)] if space.reference in reference_names() else []
    if isinstance(config.references, str):
        raise SearchError(f"references: {config.references!r} is a string; give a tuple of names, "
                          f"e.g. ({config.references!r},)")
    networks = []
    for item in config.references:
        problem = reference_problem(item)
        if problem:
            raise SearchError(f"references: {problem}")
        name, _, width = str(item).strip().partition("@")
        network = (name, float(width) if width else 1.0)
        if network not in networks:
            networks.append(network)
    return networks


def reference_label(name: str, width: float) -> str:
    return name if width == 1.0 else f"{name}@{width:g}"


def _finite(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


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


def beaten(reference: dict, ok: pd.DataFrame) -> bool | None:
    """Whether a finished child dominates ``reference``: a higher validation accuracy at a lower or
    equal predicted latency (None when the reference itself has no accuracy)."""
    if reference.get("accuracy") is None:
        return None
    if ok.empty:
        return False
    return bool(((ok["accuracy"] > reference["accuracy"]) & (ok["latency_ms"] <= reference["latency_ms"])).any())


def write_outputs(out: Path, records: list[dict], space, target_ms: float, config: SearchConfig,
                  references: list[dict] | None = None) -> dict:
    """trials.csv, best.yaml, pareto.png from the journal's records and the trained ``references``
    (:meth:`References.results`); returns the summary."""
    df = pd.DataFrame(records)
    if df.empty:
        return {}
    references = references or []
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
               "target": config.target, "target_ms": target_ms, "w": config.w,
               "references": [{k: r.get(k) for k in ("name", "width", "latency_ms", "accuracy", "test_accuracy",
                                                    "reward", "status")} for r in references],
               "beats_references": {r["label"]: beaten(r, ok) for r in references}}
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
        pareto_plot(ok, out / "pareto.png", target_ms, config, references)
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


def pareto_plot(ok: pd.DataFrame, path: Path, target_ms: float, config: SearchConfig,
                references: list[dict] | None = None) -> None:
    """Children (coloured by index), their Pareto front, the target and the best reward; each
    reference network with an accuracy is a black X labelled with its name (and width), trained
    with the same signal, so a front above and left of an X beats it."""
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
    marked = [r for r in references or [] if r.get("accuracy") is not None]
    if marked:
        ax.scatter([r["latency_ms"] for r in marked], [100 * r["accuracy"] for r in marked], marker="X", s=90,
                   color="black", edgecolors="white", linewidths=0.6, label="reference (same signal)", zorder=4)
        for r in marked:
            ax.annotate(r["label"], (r["latency_ms"], 100 * r["accuracy"]), textcoords="offset points",
                        xytext=(5, 5), fontsize=7)
    fig.colorbar(points, label="child index")
    ax.set(xlabel=f"predicted latency on {config.target} (ms)", ylabel="proxy validation accuracy (%)",
           title=f"{config.strategy} search over {config.space}, w = {config.w}")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


class References:
    """The reference networks of a search (:func:`reference_networks`), trained with exactly the
    children's signal and code path -- :func:`nas.trial.child_trainable` on the same trial config,
    as Ray tasks with a trial's resources -- so that their markers on ``pareto.png`` compare like
    with like. Results go to ``references.json`` (written atomically after each one), keyed by
    name (and width); an entry is reused while its network (spec hash) and signal (a digest of
    the trial config) are the same, so a resume retrains none that finished, a failed one is
    trained again (as a failed child is) and a changed signal retrains them all. Latency and
    reward are recomputed on every read, with the searcher's latency model and reward."""

    def __init__(self, out: Path, networks: list[tuple[str, float]], space, trial_config: dict, latency_fn,
                 target_ms: float, config: SearchConfig):
        self.path = out / "references.json"
        self.trial_config, self.latency_fn, self.target_ms, self.config = trial_config, latency_fn, target_ms, config
        self.signal = hashlib.sha256(json.dumps(trial_config, sort_keys=True).encode()).hexdigest()[:16]
        # At the space's resolution and classes, as children are decoded (the proxy resizes both).
        self.networks = [(reference_label(name, width), name, width,
                          reference(name, width, space.resolution, num_classes=space.num_classes))
                         for name, width in networks]
        self.entries = self._read()

    def _read(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            entries = json.loads(self.path.read_text())["references"]
            if not isinstance(entries, dict):
                raise TypeError("'references' is not a mapping")
            return entries
        except (json.JSONDecodeError, KeyError, TypeError) as err:  # a cache: retraining repairs it
            warnings.warn(f"{self.path}: unreadable ({err}); its reference networks are trained again", stacklevel=3)
            return {}

    def _current(self, label: str, spec: ArchSpec) -> dict | None:
        entry = self.entries.get(label)
        if isinstance(entry, dict) and entry.get("signal") == self.signal and entry.get("hash") == spec.hash:
            return entry
        return None

    @property
    def missing(self) -> list[tuple[str, str, float, ArchSpec]]:
        """The networks without a finished (``ok``) entry for this signal."""
        return [n for n in self.networks if (self._current(n[0], n[3]) or {}).get("status") != "ok"]

    def _scored(self, entry: dict, spec: ArchSpec) -> dict:
        latency_ms, _ = self.latency_fn(spec)
        accuracy = entry.get("accuracy")
        c = self.config
        value = reward(accuracy, latency_ms, self.target_ms, c.w, c.alpha, c.beta) if accuracy is not None \
            else INVALID_REWARD
        return dict(entry, latency_ms=latency_ms, reward=value)

    def results(self) -> list[dict]:
        """The references with an entry for this signal (also failed ones), in the configured order."""
        results = []
        for label, _, _, spec in self.networks:
            entry = self._current(label, spec)
            if entry is not None:
                results.append(dict(self._scored(entry, spec), label=label))
        return results

    def _record(self, label: str, name: str, width: float, spec: ArchSpec, result: dict) -> dict:
        status = result.get("status", "error")
        accuracy = _finite(result.get("accuracy")) if status == "ok" else None
        entry = self._scored({"name": name, "width": width, "hash": spec.hash, "signal": self.signal,
                              "status": status, "reason": result.get("reason", ""), "accuracy": accuracy,
                              "test_accuracy": _finite(result.get("test_accuracy")) if status == "ok" else None,
                              "seconds": _finite(result.get("seconds")), "finished": time.time()}, spec)
        self.entries[label] = entry
        atomic_write_text(self.path, json.dumps({"signal": self.trial_config, "signal_digest": self.signal,
                                                 "references": self.entries}, indent=2) + "\n")
        return entry

    def train(self, progress: bool = False) -> None:
        """Train the missing networks, at most ``config.concurrency`` at once (Ray must be running).
        A task that crashes (a lost worker, data that fail to load) is recorded as an ``error``."""
        todo = self.missing
        if not todo:
            return
        import ray

        from search_spaces.safe_io import shorten

        from .trial import child_trainable

        c = self.config
        task = ray.remote(num_cpus=c.cpus_per_trial, num_gpus=c.gpus_per_trial, max_retries=c.retries)(child_trainable)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), unit="reference", desc="references", smoothing=0)
        pending: dict = {}
        try:
            while todo or pending:
                while todo and len(pending) < max(1, c.concurrency):
                    label, name, width, spec = todo.pop(0)
                    # index -1: no child's index, so child_trainable's failure hook never fires here
                    config = dict(self.trial_config, spec=spec.to_dict(), hash=spec.hash, index=-1)
                    pending[task.remote(config)] = (label, name, width, spec, time.monotonic())
                [ready], _ = ray.wait(list(pending), num_returns=1)
                label, name, width, spec, started = pending.pop(ready)
                try:
                    result = ray.get(ready)
                except Exception as err:  # noqa: BLE001 -- recorded like a crashed child, never a traceback
                    result = {"status": "error", "reason": shorten(f"{type(err).__name__}: {err}", 300),
                              "seconds": time.monotonic() - started}
                entry = self._record(label, name, width, spec, result)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(last=f"{label} {entry['status']}")
                elif entry["accuracy"] is not None:
                    print(f"reference {label}: validation accuracy {entry['accuracy']:.4f}, "
                          f"{entry['latency_ms']:.2f} ms on {c.target}, reward {entry['reward']:.4f} "
                          f"({entry['seconds'] or 0:.0f} s)")
                else:
                    print(f"reference {label}: {entry['status']} ({shorten(entry['reason'], 200)})")
        finally:
            if bar is not None:
                bar.close()
            for ref in pending:
                ray.cancel(ref, force=True)


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


def _fit(config: SearchConfig, out: Path, searcher) -> None:
    """Run the children as Ray Tune trials until ``searcher`` says the search is done."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from .trial import child_trainable

    trainable = tune.with_resources(child_trainable, {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial})
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


def run_search(config: SearchConfig) -> dict:
    import torch

    from .searcher import StrategySearcher

    start = time.monotonic()
    space = get_space(config.space)
    networks = reference_networks(config, space)  # a bad name fails here, before any work
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
    latency = _latency_fn(config.target)
    references = References(out, networks, space, trial_config, latency, target_ms, config)
    searcher = StrategySearcher(strategy, space, latency, budget=config.children,
                                target_ms=target_ms, w=config.w, alpha=config.alpha, beta=config.beta,
                                trial_config=trial_config, run_dir=out)
    done = searcher.resume() if config.resume else 0
    best = [max((r["reward"] for r in searcher.records), default=0.0)]

    def on_record(record: dict) -> None:
        best[0] = max(best[0], record["reward"])
        if record.get("trained", True):  # a duplicate changes no figure: the outputs catch up at the next child
            write_outputs(out, searcher.records, space, target_ms, config, references.results())
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
        search_left = searcher.trained < config.children
        if search_left or references.missing:
            with ray_running(address=config.address, cpus=config.concurrency * config.cpus_per_trial):
                if search_left:
                    _fit(config, out, searcher)
                if bar is not None:
                    bar.close()
                    bar = None
                references.train(progress=config.progress)
    finally:
        if bar is not None:
            bar.close()
    summary = write_outputs(out, searcher.records, space, target_ms, config, references.results())
    summary.update(elapsed_s=round(time.monotonic() - start, 1), out=str(out), reference=reference_name,
                   strategy_updates=getattr(strategy, "updates", None), stopped=searcher.stopped)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
