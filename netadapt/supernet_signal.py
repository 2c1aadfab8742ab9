"""``--signal supernet``: proposals scored with the weight-sharing supernet instead of a fine-tune.

A proposal's weights are the supernet's channel slices at the proposal's widths (the first ``k``
expansion / output / squeeze channels of each layer's slot, once-for-all style;
:func:`proxytask.supernet.extract_at_widths`), its BN statistics are measured again on training
batches (``bn_recalibration_batches`` of them, the same batches for every score of a run), and its
score is top-1 on the validation split: a deterministic function of the proposal's spec, so the
parent's score is the chosen proposal's. The supernet is the one ``nas.search --signal supernet``
trains or reuses for the same space, data and proxy settings
(:func:`proxytask.supernet.trained_supernet`, cached in ``runs/supernet/SPACE-KEY``).

The seed must be a network the supernet can run: the space's stem (at most its width) and head,
blocks no wider than their slots, kernels, operators, nonlinearities and SE the space has.
Proposals only narrow the seed, so every proposal then fits too; a seed that does not fit is a
one-line :class:`~netadapt.config.NetAdaptError` naming the layer, before anything runs.
Scoring runs in this process (about a second a proposal), one proposal after the other.
"""

from __future__ import annotations

import math
import time
from typing import Iterator

from search_spaces import ArchSpec

from .config import NetAdaptConfig, NetAdaptError

FIX = "use --signal scratch (fine-tunes instead), or a --space whose supernet can run it"


def supernet_space(config: NetAdaptConfig):
    """The search space whose supernet scores proposals (NetAdaptError naming ``space``)."""
    from search_spaces.spaces import get_space

    try:
        return get_space(config.space)
    except (ValueError, OSError) as err:
        message = " ".join(str(err).split())
        raise NetAdaptError(message if message.startswith("space:") else f"space: {message}") from None


def seed_slots(config: NetAdaptConfig, spec: ArchSpec) -> tuple[int, ...]:
    """The supernet slots of ``spec``'s blocks (every proposal keeps them), or a one-line
    NetAdaptError naming the first stem, head or block the supernet of ``config.space`` cannot run."""
    from proxytask.supernet.model import SupernetError
    from proxytask.supernet.widths import subnet_at_widths

    space = supernet_space(config)
    try:
        return subnet_at_widths(space, spec).slots
    except SupernetError as err:
        raise NetAdaptError(f"signal: the supernet of space {space.name!r} cannot run {err}; {FIX}") from None


class SupernetScores:
    """Scores proposals with ``supernet`` (its blocks in ``slots``) on ``data``, ``threads`` threads."""

    def __init__(self, supernet, folder, slots: tuple[int, ...], data, threads: int):
        self.supernet, self.folder, self.slots = supernet, folder, slots
        self.data, self.threads = data, threads

    def score(self, spec: ArchSpec, proxy) -> dict:
        """The result of one proposal, as :func:`netadapt.finetune.evaluate_proposal` gives it
        (``accuracy_before`` = ``accuracy_after``: nothing is trained); never raises."""
        import torch

        from proxytask.train import failure_reason, torch_threads

        from .finetune import score

        start, cpu = time.perf_counter(), time.process_time()
        result = {"status": "ok", "reason": "", "accuracy_before": math.nan, "accuracy_after": math.nan,
                  "val_loss": math.nan, "train_loss": math.nan, "state": None}
        try:
            from proxytask.supernet.widths import extract_at_widths

            with torch_threads(self.threads):
                model = extract_at_widths(self.supernet, spec, self.slots).to(proxy.torch_device())
                if proxy.channels_last:
                    model = model.to(memory_format=torch.channels_last)
                accuracy, val_loss = score(model, self.data, proxy)
            result.update(accuracy_before=accuracy, accuracy_after=accuracy, val_loss=val_loss,
                          state={k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
        except Exception as err:  # noqa: BLE001 -- a proposal that fails is recorded, not fatal
            result.update(status="error", reason=failure_reason(spec.to_dict(), err))
        result.update(seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu)
        return result

    def run(self, jobs: list[dict]) -> Iterator[tuple[dict, dict]]:
        """Yield ``(job, result)`` for each of ``jobs`` (the executor's jobs: ``spec``, ``proxy``)."""
        from proxytask.train import ProxyConfig

        for job in jobs:
            proxy = ProxyConfig.from_dict(job["proxy"]).replace(threads=self.threads)
            yield job, {"index": job["index"], **self.score(ArchSpec.from_dict(job["spec"]), proxy)}


def prepare_scores(config: NetAdaptConfig, spec: ArchSpec, sig, data, log) -> SupernetScores:
    """Train the supernet of ``config.space`` on the signal's data, or reuse it from the cache, as
    ``nas.search --signal supernet`` does; the scorer of ``spec``'s proposals on ``data``."""
    from proxytask.data import ProxyData
    from proxytask.supernet.cache import trained_supernet
    from proxytask.supernet.model import SupernetError

    slots = seed_slots(config, spec)
    space = supernet_space(config)
    threads = max(1, int(config.concurrency * config.cpus_per_proposal))
    in_memory = isinstance(config.data, ProxyData)
    log(f"the supernet of space {space.name!r} on {config.data_name}: trained now, or reused from runs/supernet/")
    try:
        net, folder = trained_supernet(space, sig, epochs=config.supernet_epochs, threads=threads,
                                       progress=config.progress, data=config.data if in_memory else None,
                                       source=config.data_name if in_memory else None)
    except SupernetError as err:
        raise NetAdaptError(f"signal: {' '.join(str(err).split())}") from None
    log(f"proposals scored with the supernet in {folder} (inherited channel slices, BN recalibrated)")
    return SupernetScores(net, folder, slots, data, threads)
