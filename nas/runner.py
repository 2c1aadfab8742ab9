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

from jobs import atomic_savefig, atomic_write_text, run_lock
from jobs.jsonio import JSONShapeError, dumps, read_json
from jobs.ray_setup import ray_running
from jobs.stats import finite_or_none
from latency import predict_ms, table_for
from proxytask.profiles import signal_change, signal_digest, signal_key
from search_spaces import ArchSpec, reference, reference_names
from search_spaces.spaces import get_space

from .reward import INVALID_REWARD, W_LARGE, reward
from .strategies import make_strategy

RESUME_KEYS = ("space", "strategy", "target", "target_ms", "w", "alpha", "beta", "seed", "data", "epochs",
               "proxy_resolution", "proxy_overrides", "profile")
# Resume keys added later, with the value a config.json written before them means.
RESUME_DEFAULTS = {"signal_kind": "scratch", "supernet_epochs": None}


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
    # How children are scored: "scratch" (trained from scratch, proxytask.train) or "supernet"
    # (inherited weights of a supernet trained first, or reused from runs/supernet/; proxytask.supernet).
    signal_kind: str = "scratch"
    supernet_epochs: float | None = None  # None: proxytask.supernet's main-job setting

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

    from jobs.cli import number
    from jobs.safe_io import echo

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


def _prepare_run_dir(config: SearchConfig, sig) -> Path:
    out = Path(config.out).resolve()
    saved = out / "config.json"
    if saved.exists() and not config.resume:
        raise SearchError(f"out: {out} already holds a search; pass --resume to continue it or choose another --out")
    if config.resume and saved.exists():
        try:
            previous = read_json(saved, what="search config")
        except JSONShapeError as err:
            raise SearchError(f"{err}; restore it, or start a new search in another --out") from None
        for key in RESUME_KEYS + tuple(RESUME_DEFAULTS):
            if previous.get(key, RESUME_DEFAULTS.get(key)) != getattr(config, key):
                raise SearchError(f"resume: {key} was {previous.get(key)!r} in {saved}, now {getattr(config, key)!r}; "
                                  "resume with the same settings")
        _check_same_signal(previous, sig, saved)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, dumps({**config.to_dict(), "signal": signal_key(sig),
                                    "signal_digest": signal_digest(sig)}, indent=2) + "\n")
    return out


def _check_same_signal(previous: dict, sig, saved: Path) -> None:
    """Refuse a resume whose resolved accuracy signal differs from the one the run started with
    (``signal_digest`` in ``config.json``): the same flags can resolve to another signal."""
    digest = previous.get("signal_digest")
    if digest is not None and digest != signal_digest(sig):
        raise SearchError(f"resume: the accuracy signal changed: {signal_change(previous.get('signal'), signal_key(sig))}"
                          f" (in {saved}); start a new --out, or resume with the flags the run started with")


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
    atomic_write_text(out / "summary.json", dumps(summary, indent=2) + "\n")
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
    atomic_savefig(fig, path)  # rewritten after every child: a kill never leaves a torn PNG


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
            entries = read_json(self.path, what="references file")["references"]
            if not isinstance(entries, dict):
                raise TypeError("'references' is not a mapping")
            return entries
        except (JSONShapeError, KeyError, TypeError) as err:  # a cache: retraining repairs it
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
        accuracy = finite_or_none(result.get("accuracy")) if status == "ok" else None
        entry = self._scored({"name": name, "width": width, "hash": spec.hash, "signal": self.signal,
                              "status": status, "reason": result.get("reason", ""), "accuracy": accuracy,
                              "test_accuracy": finite_or_none(result.get("test_accuracy")) if status == "ok" else None,
                              "seconds": finite_or_none(result.get("seconds")), "finished": time.time()}, spec)
        self.entries[label] = entry
        atomic_write_text(self.path, dumps({"signal": self.trial_config, "signal_digest": self.signal,
                                            "references": self.entries}, indent=2) + "\n")
        return entry

    def train(self, progress: bool = False) -> None:
        """Train the missing networks, at most ``config.concurrency`` at once (Ray must be running).
        A task that crashes (a lost worker, data that fail to load) is recorded as an ``error``."""
        todo = self.missing
        if not todo:
            return
        import ray

        from jobs.ray_pool import at_most
        from jobs.safe_io import shorten

        from .trial import child_trainable

        c = self.config
        task = ray.remote(num_cpus=c.cpus_per_trial, num_gpus=c.gpus_per_trial, max_retries=c.retries)(child_trainable)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), unit="reference", desc="references", smoothing=0)
        started: dict = {}

        def submit(item):
            label, _, _, spec = item
            started[label] = time.monotonic()
            # index -1: a reference is no child of the search
            return task.remote(dict(self.trial_config, spec=spec.to_dict(), hash=spec.hash, index=-1))

        try:
            for (label, name, width, spec), result, err in at_most(c.concurrency, todo, submit):
                if err is not None:  # recorded like a crashed child, never a traceback
                    result = {"status": "error", "reason": shorten(f"{type(err).__name__}: {err}", 300),
                              "seconds": time.monotonic() - started[label]}
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


def search_signal(config: SearchConfig):
    """The accuracy signal the children are scored with (:func:`proxytask.profiles.signal`):
    ``config.profile`` (default ``gpu`` when trials get GPUs, else ``cpu``), then ``--epochs``,
    ``--proxy-resolution`` and ``--proxy`` overrides, the seed and the threads of a trial. A bad
    setting is a SearchError naming it, raised before any work starts."""
    from proxytask.profiles import resolved_signal

    overrides = dict(config.proxy_overrides)
    if config.epochs is not None:
        overrides["epochs"] = config.epochs
    if config.proxy_resolution is not None:
        overrides["resolution"] = config.proxy_resolution
    overrides.update(seed=config.seed, threads=max(1, int(config.cpus_per_trial)))
    try:
        sig = resolved_signal(config.profile, gpus=config.gpus_per_trial, data=config.data, overrides=overrides)
    except ValueError as err:
        raise SearchError(str(err)) from None
    if sig.proxy.device.startswith("cuda") and config.gpus_per_trial <= 0:
        raise SearchError(f"proxy.device: {sig.proxy.device!r} needs GPUs for the trials; pass --gpus-per-trial 1 "
                          "(or a fraction to share a GPU), or leave the device at cpu")
    return sig


def resolved_target_ms(config: SearchConfig, space=None) -> tuple[float, str]:
    """The target latency a search uses and where it comes from (``--target-ms``, or the space's
    reference network predicted on the target; None while a measured table lacks its ops: they
    are profiled when the run starts)."""
    if config.target_ms:
        return config.target_ms, "given (--target-ms)"
    from latency import MissingOpsError
    from latency.predictor import resolve_table

    space = space or get_space(config.space)
    name = space.reference or "mobilenet_v3_large"
    about = f"{name} at width 1.0 as predicted on {config.target} (the {config.space} space's reference)"
    try:  # the table as it is: planning profiles nothing
        return predict_ms(reference(name, 1.0, space.resolution), resolve_table(config.target)), about
    except (MissingOpsError, FileNotFoundError) as err:
        lacks = f"lacks {len(err.missing)} op(s)" if isinstance(err, MissingOpsError) else "is not built"
        return None, f"{about}; not known yet: the table {lacks}; ops are profiled when the run starts"


def search_plan(config: SearchConfig) -> dict:
    """What :func:`run_search` will run, resolved (``--dry-run``): the settings, the target latency
    and its source, the accuracy signal. A bad setting is a SearchError; nothing is written."""
    sig = search_signal(config)
    target_ms, source = resolved_target_ms(config)
    return {"config": config.to_dict(), "target": config.target, "target_ms": target_ms, "target_ms_source": source,
            "signal": sig.describe(), "signal_digest": signal_digest(sig)}


def _supernet_epochs(epochs: float | None) -> float:
    """The supernet's training length a search will use (None: the main job's setting)."""
    if epochs is not None:
        return epochs
    from proxytask.supernet.__main__ import MAIN_JOB_EPOCHS

    return MAIN_JOB_EPOCHS


def plan_words(plan: dict) -> str:
    """:func:`search_plan` in words a person reads."""
    from proxytask.profiles import signal_words

    c = plan["config"]
    return "\n".join([
        f"target latency: {'?' if plan['target_ms'] is None else format(plan['target_ms'], '.2f')} ms on "
        f"{plan['target']}, from {plan['target_ms_source']}",
        f"accuracy signal: {signal_words(plan['signal'])}",
        ("children scored by: a weight-sharing supernet of the space (trained first, or reused from its cache; "
         f"{_supernet_epochs(c.get('supernet_epochs')):g} epochs), inherited weights, BN recalibrated"
         if c.get("signal_kind") == "supernet" else "children scored by: training each from scratch"),
        f"search: {c['strategy']} over the {c['space']} space, {c['children']} children, {c['concurrency']} at a time "
        f"({c['cpus_per_trial']:g} CPU, {c['gpus_per_trial']:g} GPU each), w = {c['w']:g}, seed {c['seed']}",
        f"output: {c['out']}{' (resumed)' if c['resume'] else ''}",
        "dry run: nothing was trained or written (--json prints this as JSON)"])


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
                                    # a supernet child takes a second: keep the worker (its loaded supernet and data)
                                    num_samples=-1, reuse_actors=config.signal_kind == "supernet"),
        run_config=tune.RunConfig(name=f"attempt-{time.strftime('%Y%m%d-%H%M%S')}",
                                  storage_path=str(out / "ray"), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=config.retries)),
    )
    tuner.fit()


def run_search(config: SearchConfig) -> dict:
    """The search of ``config``, holding the lock of its folder (:func:`jobs.run_lock`: a second
    run, or a resume, into a folder whose run is alive is :class:`jobs.RunLocked`)."""
    with run_lock(config.out, what="search folder"):
        return _run_search(config)


def _strategy(config: SearchConfig, space):
    """The search strategy of ``config`` over the decisions of ``space``, seeded."""
    counts = [len(opts) for _, _, opts in space.decisions]
    options = {"batch_size": config.rl_batch_size} if config.strategy == "rl" else {}
    return make_strategy(config.strategy, counts, seed=config.seed, **options)


def _trial_config(config: SearchConfig, space, sig) -> dict:
    """What every child's trial gets: the signal's data and proxy settings, whether it has GPUs,
    and with ``signal_kind`` ``supernet`` the trained supernet (trained here first if needed)."""
    trial_config = {"data": sig.data, "patch": sig.patch, "proxy": dataclasses.asdict(sig.proxy),
                    "use_gpu": config.gpus_per_trial > 0}
    if config.signal_kind == "supernet":
        from .trial import prepare_supernet

        trial_config.update(prepare_supernet(space, sig, epochs=config.supernet_epochs, progress=config.progress,
                                             threads=int(config.concurrency * config.cpus_per_trial)))
    return trial_config


def _run_search(config: SearchConfig) -> dict:
    import torch

    from .searcher import StrategySearcher

    start = time.monotonic()
    space = get_space(config.space)
    networks = reference_networks(config, space)  # a bad name fails here, before any work
    target_ms, reference_name = (config.target_ms, None) if config.target_ms else default_target_ms(space, config.target)
    sig = search_signal(config)
    out = _prepare_run_dir(config, sig)
    torch.set_num_threads(1)  # the controller is tiny; leave the cores to the children
    strategy = _strategy(config, space)
    trial_config = _trial_config(config, space, sig)
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
    atomic_write_text(out / "summary.json", dumps(summary, indent=2) + "\n")
    return summary
