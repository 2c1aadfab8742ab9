"""The proxy task: train a child network briefly on a small data set and measure its accuracy.

The search scores every child with :func:`train_child`, and NetAdapt fine-tunes with the
lower-level pieces: :func:`train` (a slice of the schedule), :func:`recalibrate_bn` and
:func:`evaluate`. Every function is a pure function of its inputs: given the same spec, data,
config (seed included) and number of threads, a CPU run gives the same numbers.

Batch normalisation: a short run leaves running statistics unconverged (with torchvision's
momentum 0.01 every child would evaluate near chance), so models are built with
``bn_momentum`` (0.1) and, before every evaluation, their statistics are measured again on
training batches (:func:`recalibrate_bn`), which is cheap and makes the score independent of
the momentum.

A loss that becomes NaN or infinite stops training: :func:`train` raises
:class:`TrainingDiverged`, and :func:`train_child` turns that into ``status="diverged"``.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from . import MAX_EPOCHS, MAX_PROXY_RESOLUTION
from .data import ProxyData

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
AUGMENTATIONS = ("none", "flip")
AMP_MODES = ("none", "bf16")
LINEAR_INITS = ("fan_in", "builder")


def failure_reason(spec, err: BaseException, limit: int = 300) -> str:
    """One line naming the network and the cause of its failure: ``network NAME (hash H): Kind:
    first line of the message`` (at most ``limit`` characters). Library errors such as autograd's
    "one of the variables needed for gradient computation has been modified..." name neither."""
    if isinstance(spec, dict):  # a spec as its dict (a job record)
        name, digest = spec.get("name") or "unnamed", ""
    else:
        name, digest = (spec if isinstance(spec, str) else getattr(spec, "name", "")) or "unnamed", \
            getattr(spec, "hash", "")
    label = f"network {name}" + (f" (hash {digest[:12]})" if digest else "")
    message = " ".join(str(err).split())  # one line, whatever the exception printed
    line = f"{label}: {type(err).__name__}: {message}" if message else f"{label}: {type(err).__name__}"
    return line if len(line) <= limit else line[: limit - 3] + "..."


class TrainingDiverged(ArithmeticError):
    """The training loss became NaN or infinite at ``step``."""

    def __init__(self, step: int, loss: float):
        self.step = step
        self.loss = loss
        super().__init__(f"training loss became {loss} at step {step}; lower the learning rate")


@dataclass(frozen=True)
class ProxyConfig:
    """How a child is trained. These are the generic defaults; a run's settings come from a
    profile (:data:`proxytask.profiles.PROFILES`), whose figures -- how well the signal ranks
    networks, and at what cost per child -- are measured by ``python -m
    experiments.benchmarks.proxy_fidelity`` and recorded in ``results/proxy_fidelity/`` (see its
    README). All children of a search should share one ``seed``: the data order is then common.

    ``epochs`` may be fractional; ``max_steps`` caps the number of steps. ``lr`` is the peak
    learning rate; ``schedule`` ``onecycle`` warms up linearly from ``lr / 25`` over
    ``warmup_fraction`` of the steps and anneals with a cosine to ``lr / 1e4`` (with SGD the
    momentum cycles inversely, 0.95 -> 0.85 -> 0.95), ``cosine`` warms up from 0 and anneals to 0,
    ``constant`` keeps ``lr``. ``resolution``: None trains at the data's resolution; a number
    resizes each batch (bilinear, antialiased) and builds the child at that resolution.
    ``bn_recalibration_batches``: training batches over which BN statistics are measured again
    before evaluation (0: keep the running statistics). ``device``: where the child trains,
    ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available); the search sets ``cuda`` when
    trials get GPUs (``--gpus-per-trial``), Ray then choosing the GPU (``CUDA_VISIBLE_DEVICES``).
    On a GPU the whole data set is moved to the device once (:meth:`ProxyData.to`), so several
    children can share one GPU without a host-to-device copy per batch. ``channels_last`` stores
    activations NHWC (faster depthwise convolutions on GPUs); ``amp="bf16"`` runs the forward pass
    under bfloat16 autocast (CUDA only; the loss and the update stay float32). ``linear_init``:
    ``fan_in`` draws fully connected layers from N(0, 1/fan_in) (see :func:`_fan_in_linear_init`:
    what lets a short proxy train MobileNetV3's two-layer head), ``builder`` keeps the builder's
    torchvision init, N(0, 0.01).
    """

    epochs: float = 1.0
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-5
    optimizer: str = "sgd"
    schedule: str = "onecycle"
    warmup_fraction: float = 0.15
    label_smoothing: float = 0.1
    grad_clip_norm: float | None = 5.0
    augment: str = "flip"
    resolution: int | None = None
    threads: int = 1
    seed: int = 0
    max_steps: int | None = None
    bn_momentum: float = 0.1
    bn_eps: float = 1e-3
    bn_recalibration_batches: int = 8
    eval_batch_size: int = 500
    device: str = "cpu"
    channels_last: bool = False
    amp: str = "none"
    linear_init: str = "fan_in"

    def __post_init__(self) -> None:
        def bad(name: str, fix: str) -> ValueError:
            shown = repr(getattr(self, name))
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            return ValueError(f"ProxyConfig.{name}: {shown} {fix}")

        def number(name: str, low: float, high: float, *, low_open: bool = False, high_open: bool = False,
                   optional: bool = False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < low or value > high or (low_open and value == low) or (high_open and value == high):
                interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
                raise bad(name, f"must be {'None or ' if optional else ''}a finite number in {interval}")

        def integer(name: str, low: int, high: int, *, optional: bool = False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise bad(name, f"must be {'None or ' if optional else ''}an integer from {low} to {high}")

        number("epochs", 0, MAX_EPOCHS, low_open=True)
        integer("batch_size", 1, 65_536)
        integer("eval_batch_size", 1, 65_536)
        integer("threads", 1, 1_024)
        integer("seed", 0, 2 ** 32 - 1)
        integer("bn_recalibration_batches", 0, 10_000)
        integer("max_steps", 1, 10_000_000, optional=True)
        integer("resolution", 8, MAX_PROXY_RESOLUTION, optional=True)
        number("lr", 0, 1e15, low_open=True)  # absurd rates are allowed: tests drive a child to diverge
        number("warmup_fraction", 0, 1, high_open=True)
        number("label_smoothing", 0, 1, high_open=True)
        number("weight_decay", 0, 1)
        number("momentum", 0, 1, high_open=True)
        number("bn_momentum", 0, 1, low_open=True)
        number("bn_eps", 0, 1, low_open=True)
        number("grad_clip_norm", 0, 1e6, low_open=True, optional=True)
        if not isinstance(self.device, str) or not (
                self.device in ("cpu", "cuda", "auto")
                or (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise bad("device", "must be cpu, cuda, cuda:N or auto")
        if not isinstance(self.channels_last, bool):
            raise bad("channels_last", "must be true or false")
        for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("augment", AUGMENTATIONS),
                              ("amp", AMP_MODES), ("linear_init", LINEAR_INITS)):
            if getattr(self, name) not in choices:
                raise bad(name, f"is not one of {', '.join(choices)}")

    def torch_device(self) -> torch.device:
        """The ``torch.device`` to train on; a clear error when CUDA is asked for but absent."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"ProxyConfig.device: {self.device!r} but torch sees no CUDA device "
                               f"(torch {torch.__version__}); use device=cpu or give the trial a GPU")
        return torch.device(self.device)

    def replace(self, **changes: Any) -> "ProxyConfig":
        return type(self)(**{**asdict(self), **changes})

    @classmethod
    def from_dict(cls, data: dict) -> "ProxyConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"ProxyConfig.{unknown[0]}: unknown field; expected one of {', '.join(sorted(names))}")
        return cls(**data)

    def total_steps(self, data: ProxyData) -> int:
        """Steps of the whole schedule: ``epochs`` passes over the training split, capped by ``max_steps``."""
        steps = max(1, math.ceil(self.epochs * steps_per_epoch(data, self)))
        return min(steps, self.max_steps) if self.max_steps is not None else steps


@dataclass
class ChildResult:
    """The score of one child. ``accuracy`` is top-1 on the validation split, in [0, 1] (what a
    search rewards and NetAdapt selects on); ``test_accuracy`` is top-1 on the test split (what is
    reported; NaN when the data have no test split). Both NaN unless ``status`` is ``"ok"``."""

    name: str
    spec_hash: str
    accuracy: float
    val_loss: float
    train_loss: float
    steps: int
    seconds: float
    status: str  # "ok" | "diverged" | "error"
    test_accuracy: float = float("nan")
    cpu_seconds: float = float("nan")  # CPU time of this process: the wall time an unloaded core would take
    reason: str = ""
    history: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- pieces
def steps_per_epoch(data: ProxyData, config: ProxyConfig) -> int:
    return max(1, len(data.train_y) // config.batch_size)  # the last partial batch is dropped


def learning_rate(step: int, total_steps: int, config: ProxyConfig) -> tuple[float, float]:
    """(learning rate, SGD momentum) at ``step`` of a ``total_steps`` schedule."""
    if config.schedule == "constant":
        return config.lr, config.momentum
    warmup = int(round(config.warmup_fraction * total_steps))
    if config.schedule == "onecycle":
        start, end = config.lr / 25, config.lr / 1e4
        low, high = max(0.0, config.momentum - 0.05), min(0.99, config.momentum + 0.05)
    else:
        start, end, low, high = 0.0, 0.0, config.momentum, config.momentum
    if step < warmup:
        t = (step + 1) / warmup
        return start + (config.lr - start) * t, high + (low - high) * t
    t = (step - warmup) / max(1, total_steps - warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return end + (config.lr - end) * cosine, low + (high - low) * (1 - cosine)


def _batch_order(n: int, batch_size: int, seed: int, epoch: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)[: (n // batch_size) * batch_size].view(-1, batch_size) \
        if n >= batch_size else torch.randperm(n, generator=gen).view(1, -1)


def _inputs(data: ProxyData, images: torch.Tensor, config: ProxyConfig) -> torch.Tensor:
    x = data.normalise(images)
    if config.resolution is not None and config.resolution != data.resolution:
        x = F.interpolate(x, size=(config.resolution, config.resolution), mode="bilinear",
                          align_corners=False, antialias=True)
    return x.contiguous(memory_format=torch.channels_last) if config.channels_last else x


def _autocast(config: ProxyConfig, device: torch.device):
    """bfloat16 autocast on CUDA when ``config.amp == "bf16"``; otherwise nothing."""
    if config.amp == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _train_batches(data: ProxyData, config: ProxyConfig, start_step: int, steps: int
                   ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(global step, inputs, labels) for steps ``start_step .. start_step + steps - 1``.

    The batch of a step depends only on (seed, step): epoch ``e`` is a permutation seeded by
    ``(seed, e)``, so a schedule cut into slices sees the same batches as one run.
    """
    per_epoch = steps_per_epoch(data, config)
    order, order_epoch = None, -1
    for step in range(start_step, start_step + steps):
        epoch, index = divmod(step, per_epoch)
        if epoch != order_epoch:
            order, order_epoch = _batch_order(len(data.train_y), config.batch_size, config.seed, epoch), epoch
        rows = order[index].to(data.device)
        x = _inputs(data, data.train_x[rows], config)
        if config.augment == "flip":
            gen = torch.Generator().manual_seed(config.seed * 7_919 + step)
            flip = (torch.rand(len(rows), generator=gen) < 0.5).to(data.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        yield step, x, data.train_y[rows]


def _device_of(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


class _Optimizer:
    """Nesterov SGD with L2 weight decay (``torch.optim.SGD(nesterov=True)``'s update) or AdamW.

    Written out because constructing a ``torch.optim`` optimizer imports ``torch._dynamo``, which
    costs seconds of CPU in every fresh trial process (more than a proxy step budget can spare).
    Biases and BatchNorm parameters get no weight decay.
    """

    def __init__(self, model: nn.Module, config: ProxyConfig):
        self.config = config
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.decay = [config.weight_decay if p.dim() > 1 else 0.0 for p in self.params]
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in self.params]
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: float, momentum: float) -> None:
        self.steps += 1
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        for p, decay, state in zip(self.params, self.decay, self.state):
            if p.grad is None:
                continue
            grad = p.grad
            if self.config.optimizer == "sgd":
                if decay:
                    grad = grad.add(p, alpha=decay)
                buf = state.get("momentum")
                if buf is None:
                    buf = state["momentum"] = grad.clone()
                else:
                    buf.mul_(momentum).add_(grad)
                p.add_(grad.add(buf, alpha=momentum), alpha=-lr)
            else:
                if "m" not in state:
                    state["m"], state["v"] = torch.zeros_like(p), torch.zeros_like(p)
                m, v = state["m"], state["v"]
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                if decay:
                    p.mul_(1 - lr * decay)
                denom = (v / (1 - beta2 ** self.steps)).sqrt_().add_(eps)
                p.addcdiv_(m, denom, value=-lr / (1 - beta1 ** self.steps))


def train(model: nn.Module, data: ProxyData, config: ProxyConfig, steps: int | None = None,
          start_step: int = 0, report: Callable[[dict], None] | None = None) -> float:
    """Train ``model`` in place for ``steps`` steps (default: the rest of the schedule) starting
    at ``start_step`` of the schedule; returns the mean training loss over those steps.

    The learning rate follows the schedule of ``config.total_steps(data)`` steps, so NetAdapt can
    fine-tune in slices (``start_step`` = steps already done). A fresh optimizer is made per call
    (momentum restarts). ``report`` is called with a dict at each epoch boundary. Raises
    :class:`TrainingDiverged` when the loss becomes NaN or infinite. Does not set threads or
    seeds beyond the data order: :func:`train_child` does.
    """
    total = config.total_steps(data)
    steps = total - start_step if steps is None else steps
    if steps <= 0:
        return float("nan")
    per_epoch = steps_per_epoch(data, config)
    optimizer = _Optimizer(model, config)
    model.train()
    losses: list[float] = []
    epoch_losses: list[float] = []
    start = time.perf_counter()
    device = _device_of(model)
    for step, x, y in _train_batches(data, config, start_step, steps):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        lr, momentum = learning_rate(step, total, config)
        with _autocast(config, device):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingDiverged(step, value)
        optimizer.zero_grad()
        loss.backward()
        if config.grad_clip_norm is not None:
            norm = nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            if not math.isfinite(float(norm)):
                raise TrainingDiverged(step, float(norm))
        optimizer.step(lr, momentum)
        losses.append(value)
        epoch_losses.append(value)
        if report is not None and ((step + 1) % per_epoch == 0 or step == start_step + steps - 1):
            report({"epoch": (step + 1) / per_epoch, "step": step + 1, "lr": lr,
                    "train_loss": sum(epoch_losses) / len(epoch_losses),
                    "seconds": time.perf_counter() - start})
            epoch_losses = []
    return sum(losses) / len(losses)


@torch.no_grad()
@torch.no_grad()  # statistics only: no graph (a third of the cost of a BN pass)
def recalibrate_bn(model: nn.Module, data: ProxyData, batches: int, config: ProxyConfig | None = None) -> None:
    """Measure BatchNorm statistics again: reset them and average over ``batches`` training
    batches (cumulative average, not a moving one). The batches are the first of a permutation
    seeded by ``config.seed`` (no augmentation). Leaves the model in eval mode."""
    config = config or ProxyConfig()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if batches <= 0 or not norms:
        model.eval()
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    order = _batch_order(len(data.train_y), config.batch_size, config.seed + 104_729, 0)
    device = _device_of(model)
    for rows in order[:batches]:
        model(_inputs(data, data.train_x[rows.to(data.device)], config).to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


@torch.no_grad()
def evaluate(model: nn.Module, data: ProxyData, config: ProxyConfig | None = None,
             split: str = "val") -> tuple[float, float]:
    """(top-1 accuracy in [0, 1], mean cross-entropy) on ``split`` (``val``: what selection reads;
    ``test``: what is reported), in eval mode, in float32."""
    config = config or ProxyConfig()
    images, labels = data.split(split)
    model.eval()
    device = _device_of(model)
    correct, loss_sum, n = 0, 0.0, len(labels)
    for begin in range(0, n, config.eval_batch_size):
        x = _inputs(data, images[begin:begin + config.eval_batch_size], config).to(device)
        y = labels[begin:begin + config.eval_batch_size].to(device)
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += int((logits.argmax(1) == y).sum())
    return correct / n, loss_sum / n


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run with ``threads`` intra-op threads, restoring the previous count after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def build_child(spec, data: ProxyData, config: ProxyConfig) -> nn.Module:
    """The child of ``spec`` for ``data`` (its resolution, classes and input channels), seeded
    init (on the CPU, so a seed gives the same weights on every device), on ``config.device``."""
    import search_spaces

    resolution = config.resolution or data.resolution
    spec = spec.replace(resolution=resolution, num_classes=data.num_classes, in_channels=data.in_channels)
    torch.manual_seed(config.seed)
    model = search_spaces.build(spec, bn_eps=config.bn_eps, bn_momentum=config.bn_momentum)
    if config.linear_init == "fan_in":
        _fan_in_linear_init(model, config.seed)
    device = config.torch_device()
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model if device.type == "cpu" else model.to(device)


@torch.no_grad()
def _fan_in_linear_init(model: nn.Module, seed: int) -> None:
    """Fully connected layers drawn from N(0, 1 / fan_in), biases zero (LeCun's variance-preserving
    init), from a generator seeded by ``seed``.

    The builder follows torchvision: N(0, 0.01). Over ImageNet's hundreds of epochs that does not
    matter; in a proxy of a few dozen steps it does, and unequally: MobileNetV3's efficient last
    stage has two fully connected layers (960 -> 1280 -> classes), so its classifier learns
    through two layers that each scale the signal by about 0.01 x sqrt(fan_in) and starts almost
    untrained, while MobileNetV2's single classifier does not. With torchvision's init the 1-epoch
    64 px proxy put V3-Small 0.75 (65.4 % on ImageNet) 20 points under V2 0.35 (60.8 %); with
    this one they swap to the ImageNet order (results/proxy_fidelity/).
    """
    generator = torch.Generator().manual_seed(seed * 7_907 + 3)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / math.sqrt(module.in_features))
            if module.bias is not None:
                module.bias.zero_()


# --------------------------------------------------------------------------- the score
def train_child(spec, data: ProxyData, config: ProxyConfig = ProxyConfig(),
                report: Callable[[dict], None] | None = None,
                on_model: Callable[[nn.Module], None] | None = None) -> ChildResult:
    """Build ``spec`` for ``data``, train it with ``config``, recalibrate BN, evaluate.

    Never raises for a child that fails: a NaN/inf loss gives ``status="diverged"``, any other
    exception ``status="error"``; ``reason`` says what happened. ``report`` (e.g. Ray Tune's) is
    called once per epoch with ``epoch``, ``step``, ``lr``, ``train_loss`` and ``seconds``; the
    last call also has ``accuracy``, ``val_loss`` and ``done=True``. ``on_model`` is given the
    trained model of a child that finished (e.g. to keep its weights).
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    history: list[dict] = []
    result = dict(name=getattr(spec, "name", ""), spec_hash=getattr(spec, "hash", ""), accuracy=float("nan"),
                  val_loss=float("nan"), train_loss=float("nan"), steps=0)
    total = config.total_steps(data)
    pending: list[dict] = []

    def on_epoch(entry: dict) -> None:
        history.append(entry)
        if report is None:
            return
        if entry["step"] >= total:
            pending.append(entry)  # the last epoch is reported with the accuracy
        else:
            report(dict(entry))

    try:
        with torch_threads(config.threads):
            model = build_child(spec, data, config)
            device = _device_of(model)
            if device != data.device:
                data = data.to(device)  # once per child: no host-to-device copy per batch
            result["train_loss"] = train(model, data, config, report=on_epoch)
            result["steps"] = total
            recalibrate_bn(model, data, config.bn_recalibration_batches, config)
            accuracy, val_loss = evaluate(model, data, config, split="val")
            test_accuracy = evaluate(model, data, config, split="test")[0] if data.test_y is not None \
                else float("nan")
            if on_model is not None:
                on_model(model)
    except TrainingDiverged as err:
        result["steps"] = err.step
        return ChildResult(**result, seconds=time.perf_counter() - start, status="diverged",
                           cpu_seconds=time.process_time() - cpu_start, reason=str(err),
                           history=history)
    except Exception as err:  # a child that cannot be built or run is scored, not fatal
        return ChildResult(**result, seconds=time.perf_counter() - start, status="error",
                           cpu_seconds=time.process_time() - cpu_start,
                           reason=failure_reason(spec, err), history=history)
    result.update(accuracy=accuracy, val_loss=val_loss, test_accuracy=test_accuracy)
    seconds = time.perf_counter() - start
    if report is not None:
        last = pending[-1] if pending else {"epoch": total / steps_per_epoch(data, config), "step": total}
        report({**last, "accuracy": accuracy, "val_loss": val_loss, "seconds": seconds, "done": True})
    return ChildResult(**result, seconds=seconds, status="ok", cpu_seconds=time.process_time() - cpu_start,
                       history=history)
