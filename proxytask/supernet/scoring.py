"""Scoring a child with inherited weights: extract the subnet, recalibrate BN, evaluate.

:class:`SupernetScorer` returns the same :class:`proxytask.train.ChildResult` as scratch training
(``accuracy`` on the validation split, ``test_accuracy`` on the test split for reporting), so the
search and the benchmarks read both signals alike. ``val_size`` scores on a fixed class-balanced
subset of the validation split (the same images for every child), which bounds the cost.

Cost on one CPU core (results/supernet/score_t1.json): after BN recalibration each conv-BN pair
is folded into one conv (:func:`fold_batchnorm`; the same function up to float rounding), and
evaluation runs in batches of :data:`EVAL_BATCH` (cache-sized: 500-image batches of 64 px
channels-last activations were 1.6x slower per image here). A search scores validation only
(``test=False``).
"""

from __future__ import annotations

import time

import torch

from search_spaces import ArchSpec
from search_spaces.spaces import SearchSpace

from ..data import ProxyData, _subsample
from ..train import ChildResult, ProxyConfig, evaluate, failure_reason, recalibrate_bn, torch_threads
from .mapping import nearest_sample, subnet_from_sample, subnet_of
from .model import Supernet, SupernetError

EVAL_BATCH = 100


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d in an ``nn.Sequential`` into the
    conv (eval-mode statistics), in place; returns ``model``. For inference only."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in model.modules():
        if not isinstance(module, torch.nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = module._modules[first], module._modules[second]
            if isinstance(conv, torch.nn.Conv2d) and type(norm) is torch.nn.BatchNorm2d and norm.track_running_stats:
                module._modules[first] = fuse_conv_bn_eval(conv.eval(), norm.eval())
                module._modules[second] = torch.nn.Identity()
    return model


def scoring_data(data: ProxyData, val_size: int | None, seed: int = 0) -> ProxyData:
    """``data`` with its validation (and test) split cut to ``val_size`` class-balanced images."""
    if val_size is None or val_size >= len(data.val_y):
        return data
    vx, vy = _subsample(data.val_x, data.val_y, val_size, seed + 1)
    sx, sy = _subsample(data.test_x, data.test_y, val_size, seed + 2) if data.test_x is not None else (None, None)
    from dataclasses import replace

    return replace(data, val_x=vx, val_y=torch.as_tensor(vy), test_x=sx,
                   test_y=None if sy is None else torch.as_tensor(sy))


class SupernetScorer:
    """Scores children of ``space`` with ``supernet`` on ``data``: BN statistics measured again on
    ``bn_batches`` training batches (``proxy.batch_size`` images each), then top-1 on the
    validation split (and the test split when ``test``)."""

    def __init__(self, supernet: Supernet, space: SearchSpace, data: ProxyData, proxy: ProxyConfig, *,
                 bn_batches: int = 4, val_size: int | None = 500, test: bool = True):
        self.supernet, self.space, self.proxy = supernet, space, proxy
        self.data = scoring_data(data, val_size, proxy.seed)
        self.bn_batches, self.test = bn_batches, test
        device = next(supernet.parameters()).device
        if self.data.device != device:
            self.data = self.data.to(device)

    def subnet(self, spec: ArchSpec, nearest: bool = False):
        if nearest:
            return subnet_from_sample(self.space, nearest_sample(self.space, spec))
        return subnet_of(self.space, spec)

    def model(self, spec: ArchSpec, nearest: bool = False) -> torch.nn.Module:
        model = self.supernet.extract(self.subnet(spec, nearest))
        return model.to(memory_format=torch.channels_last) if self.proxy.channels_last else model

    def score(self, spec: ArchSpec, nearest: bool = False, raise_errors: bool = False) -> ChildResult:
        """The child's :class:`ChildResult` (``status="error"`` with a one-line reason for a child
        outside the space, unless ``raise_errors``)."""
        start, cpu = time.perf_counter(), time.process_time()
        base = dict(name=spec.name, spec_hash=spec.hash, val_loss=float("nan"), train_loss=float("nan"), steps=0)
        try:
            with torch_threads(self.proxy.threads):
                model = self.model(spec, nearest)
                recalibrate_bn(model, self.data, self.bn_batches, self.proxy)
                model = fold_batchnorm(model)
                proxy = self.proxy.replace(eval_batch_size=min(self.proxy.eval_batch_size, EVAL_BATCH))
                accuracy, val_loss = evaluate(model, self.data, proxy, "val")
                test = evaluate(model, self.data, proxy, "test")[0] \
                    if self.test and self.data.test_y is not None else float("nan")
        except Exception as err:  # noqa: BLE001 -- a child that cannot be scored is a result, not a crash
            if raise_errors:
                raise
            reason = str(err) if isinstance(err, SupernetError) else failure_reason(spec, err)
            return ChildResult(**base, accuracy=float("nan"), seconds=time.perf_counter() - start, status="error",
                               cpu_seconds=time.process_time() - cpu, reason=reason)
        base["val_loss"] = val_loss
        return ChildResult(**base, accuracy=accuracy, test_accuracy=test, seconds=time.perf_counter() - start,
                           status="ok", cpu_seconds=time.process_time() - cpu)


__all__ = ["EVAL_BATCH", "SupernetScorer", "fold_batchnorm", "scoring_data"]
