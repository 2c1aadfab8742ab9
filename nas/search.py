"""``python -m nas.search --target pixel1``: platform-aware NAS (MnasNet-style) on Ray Tune.

With no other argument it searches the ``mobilenetv3`` space with the RL controller for 32
children on the embedded proxy data set, scored with reward = ACC x (LAT / T)^-0.07 where T is
the predicted latency of MobileNetV3-Large on the target, and writes ``runs/search/``.
"""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from latency import MissingOpsError, TargetError
from search_spaces import SpecError

from .runner import SearchConfig, SearchError, run_search
from .reward import W_LARGE


def parse_overrides(items: list[str], parser: argparse.ArgumentParser, example: str) -> dict:
    """``--proxy KEY=VALUE`` flags as a dict, each value read as YAML (``0.05`` a float, ``null``
    None); a flag without ``=`` is a usage error that shows ``example``."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--proxy {item!r}: write KEY=VALUE, e.g. --proxy {example}")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def parse_args(argv=None) -> SearchConfig:
    d = SearchConfig()
    p = argparse.ArgumentParser(prog="python -m nas.search", description=__doc__.splitlines()[0])
    p.add_argument("--target", default=d.target, help="latency target (pixel1, host-ort-1t, ... or a YAML file)")
    p.add_argument("--target-ms", type=float, help="latency target T in ms (default: the space's reference network)")
    p.add_argument("--w", type=float, default=W_LARGE, help="soft-constraint exponent (-0.07 Large, -0.15 Small)")
    p.add_argument("--hard", action="store_true", help="MnasNet's hard constraint: alpha = 0, beta = -1")
    p.add_argument("--alpha", type=float, help="exponent below the target (overrides --w)")
    p.add_argument("--beta", type=float, help="exponent above the target (overrides --w)")
    p.add_argument("--space", default=d.space, help="search space name or YAML file")
    p.add_argument("--strategy", default=d.strategy, choices=["rl", "random", "evolution"])
    p.add_argument("--children", type=int, default=d.children, help="children to train")
    p.add_argument("--epochs", type=float, help="proxy training epochs per child")
    p.add_argument("--data", default=d.data, help="default | cifar10:PATH | imagefolder:PATH")
    p.add_argument("--proxy-resolution", type=int, help="resize the proxy images to this size")
    p.add_argument("--out", default=d.out, help="run folder (default runs/search)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="children trained at once")
    p.add_argument("--cpus-per-trial", type=float, default=d.cpus_per_trial)
    p.add_argument("--gpus-per-trial", type=float, default=d.gpus_per_trial)
    p.add_argument("--retries", type=int, default=d.retries, help="retries of a crashed trial")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. auto or ray://host:10001)")
    p.add_argument("--resume", action="store_true", help="continue the search in --out after a kill")
    p.add_argument("--rl-batch-size", type=int, default=d.rl_batch_size, help="rewards per controller update")
    p.add_argument("--proxy", action="append", default=[], metavar="KEY=VALUE",
                   help="override a proxy-training setting (nas.proxy.ProxyConfig), e.g. --proxy lr=0.05")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    overrides = parse_overrides(a.proxy, p, example="lr=0.05")
    alpha, beta = (0.0, -1.0) if a.hard else (a.alpha, a.beta)
    return SearchConfig(target=a.target, target_ms=a.target_ms, w=a.w, alpha=alpha, beta=beta, space=a.space,
                        strategy=a.strategy, children=a.children, epochs=a.epochs, data=a.data,
                        proxy_resolution=a.proxy_resolution, out=a.out, seed=a.seed, concurrency=a.concurrency,
                        cpus_per_trial=a.cpus_per_trial, gpus_per_trial=a.gpus_per_trial, retries=a.retries,
                        address=a.address, resume=a.resume, rl_batch_size=a.rl_batch_size, progress=not a.no_progress,
                        proxy_overrides=overrides)


def main(argv=None) -> int:
    config = parse_args(argv)
    if config.children < 1:
        print("error: children: must be at least 1", file=sys.stderr)
        return 2
    try:
        summary = run_search(config)
    except (SearchError, SpecError, TargetError, MissingOpsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not summary.get("best_reward"):
        print(f"no child finished successfully; see {config.out}/trials.csv", file=sys.stderr)
        return 1
    print(f"children trained: {summary['children_trained']} ({summary['failed']} failed), "
          f"child-hours {summary['child_hours']:.3f}, LUT hits/misses {summary['lut_hits']}/{summary['lut_misses']}")
    print(f"best reward {summary['best_reward']:.4f}: accuracy {100 * summary['best_accuracy']:.2f} %, "
          f"{summary['best_latency_ms']:.2f} ms on {config.target} (target {summary['target_ms']:.2f} ms)")
    print(f"wrote {summary['out']}/best.yaml, trials.csv, pareto.png in {summary['elapsed_s']:.0f} s")
    print(json.dumps({k: summary[k] for k in ('best_reward', 'children_trained')}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
