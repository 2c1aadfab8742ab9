"""The Ray Tune trainable: train one child on the proxy task and return its accuracy.

Runs in a Ray worker. The proxy data set is loaded once per worker process and cached. The
config comes from :class:`nas.searcher.StrategySearcher` (the spec as a dict, the proxy settings).
"""

from __future__ import annotations

import math
from functools import lru_cache


@lru_cache(maxsize=4)
def _data(source: str, patch: int | None, proxy):
    from proxytask.profiles import Signal

    return Signal(profile="trial", data=source, patch=patch, proxy=proxy).load(seed=0)


def child_trainable(config: dict) -> dict:
    from search_spaces import ArchSpec, count_madds, count_params

    from proxytask.train import ProxyConfig, train_child

    spec = ArchSpec.from_dict(config["spec"])
    proxy = ProxyConfig.from_dict(config["proxy"])
    if config.get("signal_kind") == "supernet":
        out = supernet_result(config, spec)
    else:
        data = _data(config["data"], config.get("patch"), proxy.replace(seed=0))  # the data do not depend on the seed
        out = train_child(spec, data, proxy).to_dict()
    out.pop("history", None)  # per-epoch lists are not scalar metrics; Tune's loggers would warn on every trial
    accuracy = out.get("accuracy")
    if accuracy is None or (isinstance(accuracy, float) and not math.isfinite(accuracy)):
        out["status"] = out.get("status") if out.get("status") != "ok" else "diverged"
    out.update(madds=count_madds(spec), params=count_params(spec))
    return out


# --------------------------------------------------------------------------- --signal supernet
@lru_cache(maxsize=2)
def _scorer(folder: str, threads: int):
    from proxytask.supernet.scoring import SupernetScorer
    from proxytask.supernet.training import load_supernet
    from proxytask.train import ProxyConfig

    net, meta = load_supernet(folder)
    parts = meta["parts"]
    proxy = ProxyConfig.from_dict({**parts["settings"]["proxy"], "threads": threads})
    data = _data(parts["data"]["source"], parts["data"].get("patch"), proxy.replace(seed=0))
    return SupernetScorer(net, net.space, data, proxy, test=False)  # validation only: the reward reads it


def supernet_result(config: dict, spec) -> dict:
    """A child scored with the trained supernet in ``config["supernet"]`` (inherited weights, BN
    recalibrated); a reference network (index -1) is scored as its nearest subnet."""
    threads = int(config["proxy"].get("threads", 1))
    result = _scorer(config["supernet"], threads).score(spec, nearest=config.get("index") == -1)
    return result.to_dict()


def prepare_supernet(space, sig, *, epochs: float | None, threads: int, progress: bool) -> dict:
    """Train the search's supernet, or reuse it from the cache (``runs/supernet/SPACE-KEY``; a
    killed training continues there); the trial-config entries that make children use it."""
    from proxytask.supernet.cache import trained_supernet

    _, out = trained_supernet(space, sig, epochs=epochs, threads=threads, progress=progress)
    return {"signal_kind": "supernet", "supernet": str(out.resolve())}
