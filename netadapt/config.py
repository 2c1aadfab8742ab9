"""NetAdapt's settings (:class:`NetAdaptConfig`), its outcome (:class:`NetAdaptResult`) and the
step schedule: delta_k = ``step_ms`` (or ``step_ratio`` x the seed's latency), times
``step_decay`` ** (k - 1) with the ``decay`` schedule."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from proxytask import MAX_EPOCHS, MAX_PROXY_RESOLUTION
from search_spaces import ArchSpec

from .proposals import KINDS
from .selection import SELECTIONS

SCHEDULES = ("constant", "decay")
SIGNALS = ("scratch", "supernet")  # what scores a proposal: a short fine-tune, or the supernet
STATUSES = ("done", "within_budget", "unreachable", "stopped")
# The proxy settings NetAdapt uses unless told otherwise (``proxy_overrides`` replace them): the
# signal's own, with BN statistics measured on 32 batches (2,048 images) before every score instead
# of 8: fewer batches make the seed-to-seed noise of a proposal's score larger
# (experiments.bench_netadapt --part noise --bn-batches N measures it).
DEFAULT_PROXY: dict = {"bn_recalibration_batches": 32}
MAX_PRETRAIN_EPOCHS = MAX_EPOCHS  # the seed's pre-training is one proxy training
_NUMBERS = ("budget_ms", "budget_ratio", "step_ratio", "step_ms", "step_decay", "finetune_lr", "pretrain_epochs",
            "cpus_per_proposal", "gpus_per_proposal")
_INTEGERS = ("finetune_steps", "chosen_finetune_steps", "long_finetune_steps", "concurrency", "seed", "retries", "max_iterations",
             "proxy_resolution", "noise_seeds")
MAX_NOISE_SEEDS = 16


class NetAdaptError(ValueError):
    """A bad setting or a run that cannot go on; the message says what to change."""


@dataclass
class NetAdaptConfig:
    """What ``python -m netadapt.run`` takes (its flags, one field each; see ``--help``).

    ``spec``: an ArchSpec, or a YAML path / reference name / arch string. Exactly one of
    ``budget_ms`` and ``budget_ratio`` (of the spec's predicted latency on ``target``). ``data``: a
    :func:`proxytask.data.load_data` source, or a ProxyData used as given (``val_size`` then does not
    apply). ``proxy_overrides``: :class:`proxytask.train.ProxyConfig` fields for the pre-training and the
    fine-tunes (batch size, BN recalibration, ...). ``weights``: the seed's state dict for the proxy
    model; without it the seed is pre-trained on the proxy task (``pretrain_epochs``).
    """

    spec: str | ArchSpec
    target: str = "pixel1"
    budget_ms: float | None = None
    budget_ratio: float | None = None
    step_ratio: float = 0.01
    step_ms: float | None = None
    schedule: str = "constant"
    step_decay: float = 0.96
    select: str = "ratio"
    kinds: tuple[str, ...] = KINDS
    # T: each proposal's short-term fine-tune (0: scored right after inheriting). 30, not 10: on the cpu
    # signal T = 30 ranks V3-Small's proposals most like a 200-step fine-tune (Spearman 0.78 vs 0.65 at
    # T = 10, whose seed noise is also twice as large; experiments.bench_netadapt --part noise)
    finetune_steps: int = 30
    chosen_finetune_steps: int = 0  # the chosen proposal alone is fine-tuned this many steps more
    long_finetune_steps: int = 200
    finetune_lr: float = 0.01
    pretrain_epochs: float | None = None  # None: the proxy's default schedule
    weights: str | None = None
    data: object = "default"  # a proxytask.data source string, or a ProxyData (used as given)
    val_size: int | None = 512  # images of the validation split that score proposals (None: all)
    proxy_resolution: int | None = None
    profile: str | None = None  # accuracy-signal profile: None = gpu with gpus_per_proposal > 0, else cpu
    proxy_overrides: dict = field(default_factory=dict)
    out: str = "runs/netadapt"
    resume: bool = False
    seed: int = 0
    concurrency: int = 2
    cpus_per_proposal: float = 1.0
    gpus_per_proposal: float = 0.0
    address: str | None = None
    max_iterations: int | None = None
    noise_seeds: int = 1  # extra fine-tunes of each iteration's chosen proposal with other seeds (0: none)
    retries: int = 1
    progress: bool = True
    # What scores a proposal: "scratch" (its inherited weights fine-tuned finetune_steps steps) or
    # "supernet" (the supernet's channel slices at its widths, BN recalibrated: netadapt.supernet_signal)
    signal_kind: str = "scratch"
    supernet_epochs: float | None = None  # None: proxytask.supernet's main-job setting
    space: str = "mobilenetv3"  # the search space whose supernet scores proposals (signal_kind supernet)

    def check(self) -> None:
        from jobs.safe_io import echo

        def bad(name: str, fix: str) -> NetAdaptError:
            return NetAdaptError(f"{name}: {echo(getattr(self, name))} {fix}")

        for name in _NUMBERS:  # finite numbers (or None where the field allows it); ranges below
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise bad(name, "must be a finite number")
        for name in _INTEGERS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise bad(name, "must be an integer")

        if (self.budget_ms is None) == (self.budget_ratio is None):
            raise NetAdaptError("budget: give exactly one of budget_ms (--budget-ms) and budget_ratio (--budget-ratio)")
        if self.budget_ms is not None and not self.budget_ms > 0:
            raise bad("budget_ms", "must be a positive latency in ms")
        if self.budget_ratio is not None and not self.budget_ratio > 0:
            raise bad("budget_ratio", "must be a positive fraction of the spec's latency (e.g. 0.9)")
        if self.step_ms is not None and not self.step_ms > 0:
            raise bad("step_ms", "must be a positive latency in ms")
        if self.step_ms is None and not 0 < self.step_ratio < 1:
            raise bad("step_ratio", "must be in (0, 1) (the paper's 0.01)")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"is not one of {', '.join(SCHEDULES)}")
        if not 0 < self.step_decay <= 1:
            raise bad("step_decay", "must be in (0, 1]")
        if self.select not in SELECTIONS:
            raise bad("select", f"is not one of {', '.join(SELECTIONS)}")
        if not self.kinds or any(k not in KINDS for k in self.kinds):
            raise bad("kinds", f"must be a non-empty subset of {', '.join(KINDS)}")
        for name in ("finetune_steps", "chosen_finetune_steps", "long_finetune_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise bad(name, "must be an integer >= 0")
        if not self.finetune_lr > 0:
            raise bad("finetune_lr", "must be positive")
        if self.pretrain_epochs is not None and not 0 < self.pretrain_epochs <= MAX_PRETRAIN_EPOCHS:
            raise bad("pretrain_epochs", f"must be positive, at most {MAX_PRETRAIN_EPOCHS}")
        if self.proxy_resolution is not None and not 8 <= self.proxy_resolution <= MAX_PROXY_RESOLUTION:
            raise bad("proxy_resolution", f"must be None (the data's) or from 8 to {MAX_PROXY_RESOLUTION}")
        if self.seed < 0 or self.retries < 0:
            raise bad("seed" if self.seed < 0 else "retries", "must be >= 0")
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise bad("concurrency", "must be an integer >= 1")
        if not self.cpus_per_proposal > 0:
            raise bad("cpus_per_proposal", "must be positive")
        if not (isinstance(self.gpus_per_proposal, (int, float)) and self.gpus_per_proposal >= 0):
            raise bad("gpus_per_proposal", "must be >= 0 (a fraction shares a GPU between proposals)")
        if self.val_size is not None and (isinstance(self.val_size, bool) or not isinstance(self.val_size, int)
                                          or self.val_size < 1):
            raise bad("val_size", "must be None (the whole validation split) or an integer >= 1")
        if self.max_iterations is not None and self.max_iterations < 1:
            raise bad("max_iterations", "must be None or >= 1")
        if not 0 <= self.noise_seeds <= MAX_NOISE_SEEDS:
            raise bad("noise_seeds", f"must be from 0 (no noise measurement) to {MAX_NOISE_SEEDS}")
        self._check_signal(bad)

    def _check_signal(self, bad) -> None:
        if self.signal_kind not in SIGNALS:
            raise bad("signal_kind", f"is not one of {', '.join(SIGNALS)}")
        epochs = self.supernet_epochs
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, (int, float))
                                   or not 0 < epochs <= MAX_EPOCHS):
            raise bad("supernet_epochs", f"must be None (the main job's setting) or a number in (0, {MAX_EPOCHS}]")
        if not isinstance(self.space, str) or not self.space:
            raise bad("space", "must be a search space name or YAML file")
        if self.signal_kind != "supernet":
            return
        if self.weights is not None:
            raise bad("weights", "is not used with signal_kind supernet (--signal supernet): the seed's weights "
                                 "are the supernet's; drop --weights, or use --signal scratch")
        if self.chosen_finetune_steps:
            raise bad("chosen_finetune_steps", "must be 0 with signal_kind supernet (--signal supernet): every "
                                               "score, the parent's included, comes from the supernet's weights")

    @property
    def data_name(self) -> str:
        return self.data if isinstance(self.data, str) else f"<in memory: {getattr(self.data, 'name', '?')}>"

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("spec", "data")}
        out.update(kinds=list(self.kinds), data=self.data_name)
        return out


@dataclass
class NetAdaptResult:
    status: str  # one of STATUSES
    message: str
    spec: ArchSpec  # the final spec (the input spec when within_budget)
    initial_latency_ms: float
    latency_ms: float
    budget_ms: float
    iterations: int
    seed_accuracy: float | None
    accuracy: float | None  # after the long-term fine-tune (done), else the last short fine-tune
    out: Path
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in ("done", "within_budget")

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.update(spec=self.spec.name, spec_hash=self.spec.hash, out=str(self.out))
        return out


def step_ms_at(iteration: int, initial_ms: float, config: NetAdaptConfig) -> float:
    """delta_k of the schedule (iteration k = 1, 2, ...)."""
    first = config.step_ms if config.step_ms is not None else config.step_ratio * initial_ms
    return first * (config.step_decay ** (iteration - 1) if config.schedule == "decay" else 1.0)


def expected_iterations(initial_ms: float, budget_ms: float, config: NetAdaptConfig) -> int:
    latency, k = initial_ms, 0
    while latency > budget_ms + 1e-9 and k < 10_000:
        k += 1
        latency -= step_ms_at(k, initial_ms, config)
    return k


def within_budget(latency_ms: float, budget_ms: float) -> bool:
    return latency_ms <= budget_ms + 1e-9


def netadapt_signal(config: NetAdaptConfig):
    """The accuracy signal NetAdapt trains and scores with (:func:`proxytask.profiles.signal`):
    ``config.profile`` (default ``gpu`` when proposals get GPUs, else ``cpu``) with
    :data:`DEFAULT_PROXY`, then ``proxy_overrides``, ``proxy_resolution`` and ``pretrain_epochs``;
    the device follows the proposals' GPUs unless an override names one
    (:func:`proxytask.profiles.resolved_signal`). A bad setting is a
    ValueError naming it."""
    from proxytask.profiles import resolved_signal

    overrides = {**DEFAULT_PROXY, **config.proxy_overrides}
    if config.proxy_resolution is not None:
        overrides["resolution"] = config.proxy_resolution
    if config.pretrain_epochs is not None:
        overrides["epochs"] = config.pretrain_epochs
    overrides.update(seed=config.seed, threads=max(1, int(config.cpus_per_proposal)))
    return resolved_signal(config.profile, gpus=config.gpus_per_proposal,
                           data=config.data if isinstance(config.data, str) else "default", overrides=overrides)
