"""Training pieces of NetAdapt: the seed's pre-training, a proposal's short-term fine-tune, the
final long-term fine-tune. All run on the proxy task of :mod:`proxytask.train`.

:func:`evaluate_proposal` is what a Ray task runs for one proposal: inherit the parent's weights
(:func:`netadapt.weights.inherit`), measure the accuracy (BN statistics measured again first),
fine-tune ``steps`` steps, measure again. It returns plain data and the child's state dict, and
never raises for a child that fails (``status`` says what happened).

Fine-tuning starts from trained weights, so it uses its own learning rate with a cosine decay to
0 and no warm-up (:func:`finetune_config`); every proposal of an iteration sees the same batches.
"""

from __future__ import annotations

import math
import time

import torch

from proxytask.data import ProxyData
from proxytask.train import (ProxyConfig, TrainingDiverged, build_child, evaluate, failure_reason, recalibrate_bn,
                             steps_per_epoch, torch_threads, train)
from search_spaces import ArchSpec

from .weights import check_fits, inherit


def trained_spec(spec: ArchSpec, data: ProxyData, config: ProxyConfig) -> ArchSpec:
    """``spec`` as :func:`proxytask.train.build_child` builds it for ``data`` (resolution, classes, input)."""
    return spec.replace(resolution=config.resolution or data.resolution, num_classes=data.num_classes,
                        in_channels=data.in_channels)


def finetune_config(proxy: ProxyConfig, data: ProxyData, steps: int, lr: float, seed: int) -> ProxyConfig:
    """``proxy`` set for a fine-tune of exactly ``steps`` steps: cosine from ``lr`` to 0, no warm-up."""
    return proxy.replace(epochs=steps / steps_per_epoch(data, proxy), max_steps=steps, lr=lr, schedule="cosine",
                         warmup_fraction=0.0, seed=seed)


def score(model: torch.nn.Module, data: ProxyData, config: ProxyConfig) -> tuple[float, float]:
    """(accuracy, loss) on the validation split after measuring BN statistics again."""
    recalibrate_bn(model, data, config.bn_recalibration_batches, config)
    return evaluate(model, data, config)


def load_model(spec: ArchSpec, state: dict | None, data: ProxyData, config: ProxyConfig) -> torch.nn.Module:
    """The proxy model of ``spec``; ``state`` (checked to fit, first mismatch named) loaded when given."""
    model = build_child(spec, data, config)
    if state is not None:
        check_fits(state, trained_spec(spec, data, config))
        model.load_state_dict(state)
    return model


def train_and_score(model: torch.nn.Module, data: ProxyData, config: ProxyConfig, train_steps: int | None = None
                    ) -> dict:
    """Train ``model`` for ``config``'s schedule, then score it: accuracy before and after, losses.
    ``train_steps=0`` scores without training (T = 0: the accuracy right after inheriting the
    weights, BN statistics measured again; ``accuracy_after`` equals ``accuracy_before``)."""
    accuracy_before, val_loss = score(model, data, config)
    if train_steps == 0:
        return {"accuracy_before": accuracy_before, "accuracy_after": accuracy_before, "val_loss": val_loss,
                "train_loss": math.nan}
    torch.manual_seed(config.seed)
    train_loss = train(model, data, config)
    accuracy, val_loss = score(model, data, config)
    return {"accuracy_before": accuracy_before, "accuracy_after": accuracy, "val_loss": val_loss,
            "train_loss": train_loss}


def test_accuracy(model: torch.nn.Module, data: ProxyData, config: ProxyConfig) -> float | None:
    """Top-1 on the test split (BN statistics as they are), None when the data have none: what a
    result reports, never what selects it."""
    if data.test_y is None:
        return None
    return evaluate(model, data, config, split="test")[0]


def evaluate_proposal(job: dict, parent_state: dict, data: ProxyData) -> dict:
    """One proposal: inherit, score, fine-tune ``job["steps"]`` steps (``job["proxy"]`` is the
    fine-tune's schedule; 0 steps: scored once, untrained), score. Never raises."""
    start, cpu_start = time.perf_counter(), time.process_time()
    result = {"index": job["index"], "status": "ok", "reason": "", "accuracy_before": math.nan,
              "accuracy_after": math.nan, "val_loss": math.nan, "train_loss": math.nan, "state": None}
    try:
        config = ProxyConfig.from_dict(job["proxy"])
        parent, child = ArchSpec.from_dict(job["parent_spec"]), ArchSpec.from_dict(job["spec"])
        with torch_threads(config.threads):
            model = build_child(child, data, config)
            model.load_state_dict(inherit(parent_state, trained_spec(parent, data, config),
                                          trained_spec(child, data, config)))
            result.update(train_and_score(model, data, config, job.get("steps")))
            result["state"] = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    except TrainingDiverged as err:
        result.update(status="diverged", reason=str(err))
    except Exception as err:  # a proposal that fails is recorded, not fatal
        spec = job.get("spec")
        result.update(status="error", reason=failure_reason(spec if isinstance(spec, dict) else "proposal", err))
    result.update(seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu_start)
    return result
