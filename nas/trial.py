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
    data = _data(config["data"], config.get("patch"), proxy.replace(seed=0))  # the data do not depend on the seed
    if config.get("fail_for_test") == config.get("index"):
        raise RuntimeError("injected failure (test hook)")
    result = train_child(spec, data, proxy)
    out = result.to_dict()
    out.pop("history", None)  # per-epoch lists are not scalar metrics; Tune's loggers would warn on every trial
    accuracy = out.get("accuracy")
    if accuracy is None or (isinstance(accuracy, float) and not math.isfinite(accuracy)):
        out["status"] = out.get("status") if out.get("status") != "ok" else "diverged"
    out.update(madds=count_madds(spec), params=count_params(spec))
    return out
