"""Training the supernet: the sandwich rule with in-place distillation (BigNAS, Yu et al. 2020).

Every step trains the largest subnet on the labels (cross-entropy with label smoothing), then the
smallest and ``random_subnets`` random samples of the space on the largest's soft predictions
(KL divergence, in-place distillation); the gradients of the four add up and one SGD step follows.
The data order, the flips and the learning-rate schedule are the proxy's
(:mod:`proxytask.train`: a step's batch depends only on (seed, step)), the random subnets and
dropout are seeded by (seed, step): a run cut by a kill and resumed from its last checkpoint
continues exactly as the uncut run.

Checkpoints: ``DIR/supernet-STEP.pt`` (a plain dict of tensors: ``model`` state dict and SGD
``momentum`` buffers, loaded with ``torch.load(weights_only=True)``) and ``DIR/supernet.json``
(metadata: version, cache key and what it digests, step, the checkpoint's file name and sha256),
each written atomically, the JSON last; older ``.pt`` files are removed after. A kill loses at
most ``checkpoint_every`` steps.

The cache key digests the space (its YAML content), the data (source, patch, resolution, sizes
and a fingerprint of the loaded images and labels), the proxy settings and these settings: the
search reuses a finished supernet with the same key (``runs/supernet/SPACE-KEY/``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from jobs import atomic_write_text
from jobs.atomic import atomic_write
from search_spaces.spaces import SearchSpace

from ..data import ProxyData
from ..train import ProxyConfig, TrainingDiverged, _fan_in_linear_init, _Optimizer, _train_batches, learning_rate
from .mapping import subnet_from_sample
from .model import Supernet, SupernetError

VERSION = 2  # 2: the sandwich's smallest subnet is of the shared weights (dsconv, not conv)
META = "supernet.json"


@dataclass(frozen=True)
class SupernetConfig:
    """How the supernet trains (the proxy's :class:`ProxyConfig` gives batch, lr, schedule,
    augmentation, seed, threads, device). ``epochs``: passes over the training split (each step
    trains 2 + ``random_subnets`` subnets); ``distill``: in-place distillation from the largest
    (False: every subnet on the labels); ``checkpoint_every``: steps between checkpoints."""

    epochs: float = 6.0
    random_subnets: int = 2
    distill: bool = True
    checkpoint_every: int = 25

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, (int, float)) or not 0 < self.epochs <= 1000 \
                or not math.isfinite(self.epochs):
            raise SupernetError(f"SupernetConfig.epochs: {self.epochs!r} must be a number in (0, 1000]")
        object.__setattr__(self, "epochs", float(self.epochs))  # 8 and 8.0 are one supernet (one cache key)
        for name, low, high in (("random_subnets", 0, 64), ("checkpoint_every", 1, 10_000_000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise SupernetError(f"SupernetConfig.{name}: {value!r} must be an integer from {low} to {high}")
        if not isinstance(self.distill, bool):
            raise SupernetError(f"SupernetConfig.distill: {self.distill!r} must be true or false")

    def replace(self, **changes) -> "SupernetConfig":
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- key
def data_fingerprint(data: ProxyData) -> str:
    """A digest of the loaded data: shapes, labels and the first images of every split."""
    h = hashlib.sha256()
    for split in ("train", "val", "test"):
        x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        if x is None:
            continue
        h.update(repr((split, tuple(x.shape), data.num_classes)).encode())
        h.update(y.cpu().numpy().tobytes())
        h.update(x[:64].cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def key_parts(space: SearchSpace, data: ProxyData, source: str, proxy: ProxyConfig, config: SupernetConfig,
              patch: int | None = None) -> dict:
    """What the cache key digests, by name (a changed part is named in the error)."""
    training = {k: v for k, v in asdict(proxy).items() if k not in ("threads", "device", "eval_batch_size",
                                                                   "bn_recalibration_batches")}
    return {"version": VERSION, "space": space.to_dict(), "data": {"source": source, "patch": patch, "name": data.name,
                                                                   "fingerprint": data_fingerprint(data)},
            "settings": {"proxy": training, "supernet": {k: v for k, v in asdict(config).items()
                                                        if k != "checkpoint_every"}}}


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def cache_dir(root: str | Path, space: SearchSpace, key: str) -> Path:
    return Path(root) / f"{space.name}-{key}"


# --------------------------------------------------------------------------- sandwich
def extreme_sample(space: SearchSpace, largest: bool) -> tuple[int, ...]:
    """The largest (or smallest) sample: widest expansion, kernel, width, depth, SE on (off), skip on.

    Both bounds are of the *shared* weights (the sandwich rule trains them): a regular ``conv``
    keeps weights of its own, so it is neither the largest nor the smallest operator unless it is
    the only one (the smallest is ``dsconv``, expansion 1, where the space has it)."""
    def size(name: str, value) -> float:
        if name == "operator":
            if value == "conv":
                return -math.inf if largest else math.inf
            return 1.0 if value == "dsconv" else float(value[6:])
        if name == "nonlinearity":
            return float(value == "hswish")
        if name == "skip":
            return float(value == "identity") if largest else -float(value == "identity")
        return float(value)

    pick = max if largest else min
    per_stage = [opts.index(pick(opts, key=lambda v, n=name: size(n, v))) for name, opts in space.choices]
    return tuple(per_stage * len(space.stages))


def step_samples(space: SearchSpace, seed: int, step: int, count: int) -> list[tuple[int, ...]]:
    rng = random.Random(seed * 1_000_003 + step)
    return [space.random_sample(rng) for _ in range(count)]


def _optimizer(net: Supernet, proxy: ProxyConfig) -> _Optimizer:
    opt = _Optimizer(net, proxy)
    names = [n for n, p in net.named_parameters() if p.requires_grad]
    opt.decay = [0.0 if ".transforms." in n else d for n, d in zip(names, opt.decay)]
    return opt


def sandwich_step(net: Supernet, space: SearchSpace, x: torch.Tensor, y: torch.Tensor, step: int,
                  proxy: ProxyConfig, config: SupernetConfig, subnets: dict) -> float:
    """Forward and backward the largest, smallest and random subnets of ``step``; returns the
    largest's loss (gradients left in ``.grad``)."""
    torch.manual_seed(proxy.seed * 7_919 + step)  # dropout
    teacher = net(x, subnets["largest"])
    loss = F.cross_entropy(teacher.float(), y, label_smoothing=proxy.label_smoothing)
    value = loss.item()
    if not math.isfinite(value):
        raise TrainingDiverged(step, value)
    loss.backward()
    soft = teacher.detach().float().softmax(1)
    others = [subnets["smallest"]] + [subnet_from_sample(space, s)
                                      for s in step_samples(space, proxy.seed, step, config.random_subnets)]
    for sub in others:
        out = net(x, sub).float()
        if config.distill:
            student = F.kl_div(out.log_softmax(1), soft, reduction="batchmean")
        else:
            student = F.cross_entropy(out, y, label_smoothing=proxy.label_smoothing)
        student.backward()
    return value


# --------------------------------------------------------------------------- checkpoints
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(folder: Path, net: Supernet, opt: _Optimizer, meta: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    name = f"supernet-{meta['step']}.pt"
    state = {"model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
             "momentum": {str(i): s["momentum"].detach().cpu() for i, s in enumerate(opt.state) if "momentum" in s},
             "optimizer_steps": torch.tensor(opt.steps)}
    atomic_write(folder / name, lambda f: torch.save(state, f), binary=True)
    meta = dict(meta, checkpoint=name, sha256=_sha256(folder / name), saved=time.time())
    atomic_write_text(folder / META, json.dumps(meta, indent=1) + "\n")
    for old in folder.glob("supernet-*.pt"):
        if old.name != name:
            old.unlink(missing_ok=True)


def read_meta(folder: Path) -> dict | None:
    path = Path(folder) / META
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
        if not isinstance(meta, dict) or "version" not in meta:
            raise ValueError("no version")
        return meta
    except (ValueError, UnicodeDecodeError) as err:
        raise SupernetError(f"{path}: not a supernet checkpoint's metadata ({type(err).__name__}); delete the folder "
                            "or train into another --out") from None


def check_meta(meta: dict, parts: dict, folder: Path) -> None:
    """One line naming what differs between a checkpoint and this run (version, space, data, settings)."""
    path = Path(folder) / META
    if meta.get("version") != VERSION:
        raise SupernetError(f"{path}: supernet checkpoint version {meta.get('version')!r}, this code reads "
                            f"version {VERSION}; train it again (delete the folder or use another --out)")
    saved = meta.get("parts", {})
    for name in ("space", "data", "settings"):
        if saved.get(name) != parts[name]:
            detail = ""
            if isinstance(saved.get(name), dict):
                changed = sorted(k for k in set(saved[name]) | set(parts[name])
                                 if saved[name].get(k) != parts[name].get(k))
                detail = f" ({', '.join(map(str, changed[:4]))})"
            raise SupernetError(f"{path}: the checkpoint is of another {name}{detail} than this run; train a new "
                                "supernet (another --out) or use the same space, data and settings")


def load_state(folder: Path, meta: dict, device: str | torch.device = "cpu") -> dict:
    path = Path(folder) / str(meta.get("checkpoint", ""))
    if not path.is_file():
        raise SupernetError(f"{path}: the checkpoint {META} names is missing; train again (--resume restarts "
                            "from scratch only after you delete the folder)")
    if _sha256(path) != meta.get("sha256"):
        raise SupernetError(f"{path}: torn or altered checkpoint (its sha256 differs from {META}); delete the "
                            "folder and train again")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 -- a damaged file is one line, never a traceback
        raise SupernetError(f"{path}: not a readable supernet checkpoint ({type(err).__name__}); delete the folder "
                            "and train again") from None


# --------------------------------------------------------------------------- the job
def new_supernet(space: SearchSpace, data: ProxyData, proxy: ProxyConfig) -> Supernet:
    """A freshly initialised supernet for ``data`` (seeded on the CPU, then moved to the device)."""
    torch.manual_seed(proxy.seed)
    net = Supernet(space, data.num_classes, data.in_channels, bn_eps=proxy.bn_eps, bn_momentum=proxy.bn_momentum)
    if proxy.linear_init == "fan_in":
        _fan_in_linear_init(net, proxy.seed)
    return net.to(proxy.torch_device())


def _restore(net: Supernet, opt: _Optimizer, state: dict, path: Path) -> None:
    try:
        net.load_state_dict(state["model"])
        for i, s in enumerate(opt.state):
            if str(i) in state["momentum"]:
                s["momentum"] = state["momentum"][str(i)].to(opt.params[i].device)
        opt.steps = int(state["optimizer_steps"])
    except (KeyError, RuntimeError, TypeError) as err:
        raise SupernetError(f"{path}: the checkpoint does not fit this supernet ({type(err).__name__}: "
                            f"{' '.join(str(err).split())[:120]}); train again in another --out") from None


def train_supernet(space: SearchSpace, data: ProxyData, source: str, proxy: ProxyConfig,
                   config: SupernetConfig = SupernetConfig(), *, out: str | Path, resume: bool = False,
                   max_steps: int | None = None, progress: bool = False,
                   patch: int | None = None) -> tuple[Supernet, dict]:
    """Train (or continue, with ``resume``) the supernet in ``out``; returns it and its metadata.

    A finished checkpoint with the same key is returned as it is (the cache). ``max_steps`` stops
    after that many steps of the schedule (a slice; the schedule's length is unchanged). A
    checkpoint of another space, data, settings or version, a torn one, or an existing one without
    ``resume`` is a one-line :class:`SupernetError`.
    """
    out = Path(out)
    parts = key_parts(space, data, source, proxy, config, patch)
    key = cache_key(parts)
    schedule = proxy.replace(epochs=config.epochs, max_steps=None)
    total = schedule.total_steps(data)
    device = proxy.torch_device()
    net = new_supernet(space, data, proxy)
    opt = _optimizer(net, proxy)
    meta = read_meta(out)
    start = 0
    if meta is not None:
        check_meta(meta, parts, out)
        if not resume and not meta.get("finished"):
            raise SupernetError(f"{out / META}: an unfinished supernet is there; pass --resume to continue it or "
                                "choose another --out")
        _restore(net, opt, load_state(out, meta, device), out / str(meta.get("checkpoint")))
        start = int(meta["step"])
    meta = dict(meta or {}, version=VERSION, key=key, parts=parts, total_steps=total, space=space.name,
                data=source, losses=(meta or {}).get("losses", []))
    meta.setdefault("seconds", 0.0)
    end = total if max_steps is None else min(total, start + max_steps)
    if start >= end:
        net.eval()
        return net, meta
    if start == 0 or "cpu_seconds" in meta:  # CPU time of every step, all threads (older checkpoints lack it)
        meta.setdefault("cpu_seconds", 0.0)
    _train_steps(net, opt, space, data, schedule, config, start, end, total, out, meta, progress)
    net.eval()
    return net, meta


def _train_steps(net, opt, space, data, schedule, config, start, end, total, out, meta, progress) -> None:
    device = next(net.parameters()).device
    if device != data.device:
        data = data.to(device)
    subnets = {"largest": subnet_from_sample(space, extreme_sample(space, True)),
               "smallest": subnet_from_sample(space, extreme_sample(space, False))}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start, unit="step", desc=f"supernet {space.name}", smoothing=0.1)
    net.train()
    clock, cpu_clock, recent = time.perf_counter(), time.process_time(), []
    try:
        with _threads(schedule.threads):
            for step, x, y in _train_batches(data, schedule, start, end - start):
                lr, momentum = learning_rate(step, total, schedule)
                opt.zero_grad()
                loss = sandwich_step(net, space, x, y, step, schedule, config, subnets)
                if schedule.grad_clip_norm is not None:
                    norm = nn.utils.clip_grad_norm_(net.parameters(), schedule.grad_clip_norm)
                    if not math.isfinite(float(norm)):
                        raise TrainingDiverged(step, float(norm))
                opt.step(lr, momentum)
                recent.append(loss)
                done = step + 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}")
                if done % config.checkpoint_every == 0 or done == end:
                    meta["seconds"] += time.perf_counter() - clock
                    if "cpu_seconds" in meta:
                        meta["cpu_seconds"] += time.process_time() - cpu_clock
                    clock, cpu_clock = time.perf_counter(), time.process_time()
                    meta["losses"].append([done, sum(recent) / len(recent)])
                    recent = []
                    meta.update(step=done, finished=done >= total)
                    save_checkpoint(out, net, opt, meta)
    finally:
        if bar is not None:
            bar.close()


class _threads:
    def __init__(self, n: int):
        self.n, self.previous = n, None

    def __enter__(self):
        self.previous = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.previous)


def load_supernet(folder: str | Path, space: SearchSpace | None = None, data: ProxyData | None = None,
                  source: str | None = None, proxy: ProxyConfig | None = None,
                  config: SupernetConfig | None = None, device: str = "cpu",
                  patch: int | None = None) -> tuple[Supernet, dict]:
    """A trained supernet from ``folder`` (weights_only load). With ``space``, ``data``, ``source``,
    ``proxy`` and ``config`` the checkpoint must be theirs (one line naming what differs)."""
    from search_spaces.spaces import space_from_dict

    folder = Path(folder)
    meta = read_meta(folder)
    if meta is None:
        raise SupernetError(f"{folder / META}: no supernet checkpoint there; train one with "
                            "python -m proxytask.supernet train")
    if space is not None and data is not None and proxy is not None and config is not None:
        check_meta(meta, key_parts(space, data, source or "", proxy, config, patch), folder)
    elif meta.get("version") != VERSION:
        check_meta(meta, {}, folder)
    try:
        saved_space = space or space_from_dict(meta["parts"]["space"])
    except (KeyError, TypeError, ValueError) as err:
        raise SupernetError(f"{folder / META}: incomplete metadata ({type(err).__name__}); train again") from None
    state = load_state(folder, meta, device)
    model = state.get("model", {}) if isinstance(state, dict) else {}
    weight = model.get("classifier.weight")
    stem = model.get("stem.weight")
    if weight is None or stem is None:
        raise SupernetError(f"{folder / str(meta.get('checkpoint'))}: not a supernet state dict; train again")
    proxy_settings = meta["parts"]["settings"]["proxy"]
    net = Supernet(saved_space, weight.shape[0], stem.shape[1], bn_eps=proxy_settings.get("bn_eps", 1e-3),
                   bn_momentum=proxy_settings.get("bn_momentum", 0.1))
    try:
        net.load_state_dict(model)
    except RuntimeError as err:
        raise SupernetError(f"{folder}: the checkpoint does not fit space {saved_space.name!r} "
                            f"({' '.join(str(err).split())[:120]}); train again") from None
    net.eval()
    return net.to(device), meta
