"""The supernet a job scores with: trained once, then reused from its cache folder.

:func:`trained_supernet` is what ``nas.search --signal supernet`` does before its children are
scored (``nas.trial.prepare_supernet``), as a library function any job can call (NetAdapt's
``--signal supernet``): the supernet of ``space`` on the signal's data, with the signal's proxy
settings and ``epochs`` (default: the main job's setting), in ``runs/supernet/SPACE-KEY`` (KEY a
digest of space, data and settings: the same key is the same supernet, reused as it is; a killed
training continues there).
"""

from __future__ import annotations

from pathlib import Path


def trained_supernet(space, sig, *, epochs: float | None = None, threads: int = 1, progress: bool = False,
                     data=None, source: str | None = None):
    """(supernet, folder): the supernet of ``space`` for signal ``sig`` (a
    :class:`proxytask.profiles.Signal`), trained now or reused from the cache. ``data`` /
    ``source``: data already loaded and the name they are keyed by (default: ``sig.load()`` and
    ``sig.data``). A checkpoint of another space, data or settings in the folder is a one-line
    :class:`~proxytask.supernet.model.SupernetError`."""
    from .__main__ import MAIN_JOB_EPOCHS, default_out
    from .training import SupernetConfig, train_supernet

    proxy = sig.proxy.replace(threads=max(1, int(threads)))
    config = SupernetConfig(epochs=epochs or MAIN_JOB_EPOCHS)
    data = sig.load() if data is None else data
    source = sig.data if source is None else source
    out: Path = default_out(space, data, source, proxy, config, sig.patch)
    net, _ = train_supernet(space, data, source, proxy, config, out=out, resume=True, progress=progress,
                            patch=sig.patch)
    return net, out


__all__ = ["trained_supernet"]
