"""``python -m nas.search --target pixel1``: platform-aware NAS (MnasNet-style) on Ray Tune.

With no other argument it searches the ``mobilenetv3`` space with the RL controller for 32
children on the embedded proxy data set, scored with reward = ACC x (LAT / T)^-0.07 where T is
the predicted latency of MobileNetV3-Large on the target, and writes ``runs/search/``.
"""

from __future__ import annotations

import json
import math
import sys

from jobs.cli import (ArgumentParser, check_data_and_out, check_loads, check_settings, checked_overrides, fail, integer,
                      number, parse_overrides)
from jobs.jsonio import dumps
from jobs.lock import RunLocked
from jobs.signals import run_stoppable
from latency import MissingOpsError, TargetError
from proxytask import MAX_EPOCHS, MAX_PROXY_RESOLUTION, PROFILE_NAMES, SOURCE_KINDS
from search_spaces import SpecError

from .runner import SearchConfig, SearchError, plan_words, reference_problem, run_search, search_plan, search_signal
from .reward import W_LARGE



def build_parser() -> ArgumentParser:
    d = SearchConfig()
    p = ArgumentParser(prog="python -m nas.search", description=__doc__.splitlines()[0])
    p.add_argument("--target", default=d.target, help="latency target (pixel1, host-ort-1t, ... or a YAML file)")
    p.add_argument("--target-ms", type=number("a latency in ms", above=0),
                   help="latency target T in ms (default: the space's reference network)")
    exponent = number("an exponent", -10, 0)
    p.add_argument("--w", type=exponent, default=W_LARGE,
                   help="soft-constraint exponent, -10 to 0 (-0.07 Large, -0.15 Small)")
    p.add_argument("--hard", action="store_true", help="MnasNet's hard constraint: alpha = 0, beta = -1")
    p.add_argument("--alpha", type=exponent, help="exponent below the target, -10 to 0 (overrides --w)")
    p.add_argument("--beta", type=exponent, help="exponent above the target, -10 to 0 (overrides --w)")
    p.add_argument("--space", default=d.space, help="search space name or YAML file")
    p.add_argument("--strategy", default=d.strategy, choices=["rl", "random", "evolution"])
    p.add_argument("--children", type=integer(1, "a number of children", 1_000_000), default=d.children,
                   help="children to train")
    p.add_argument("--epochs", type=number("a number of epochs", above=0, maximum=MAX_EPOCHS),
                   help=f"proxy training epochs per child (at most {MAX_EPOCHS})")
    p.add_argument("--data", default=d.data, 
                   help="proxy data: default (embedded photos) | cifar10:PATH (the cifar-10-batches-py folder; its batches are pickles, read by a restricted unpickler: use a folder you trust) | imagefolder:PATH (a folder per class, optionally under train/ val/ test/)")
    p.add_argument("--proxy-resolution", type=integer(8, "a size in pixels", MAX_PROXY_RESOLUTION),
                   help=f"resize the proxy images to this size (8 to {MAX_PROXY_RESOLUTION})")
    p.add_argument("--profile", choices=PROFILE_NAMES, default=None,
                   help="accuracy-signal profile (proxytask.profiles; default: gpu with --gpus-per-trial > 0, else cpu)")
    p.add_argument("--out", default=d.out, help="run folder (default runs/search)")
    p.add_argument("--seed", type=integer(0, "a seed", 2**32 - 1), default=d.seed)
    p.add_argument("--concurrency", type=integer(1, "a number of trials", 1024), default=d.concurrency,
                   help="children trained at once")
    p.add_argument("--cpus-per-trial", type=number("a number of CPUs", above=0, maximum=1024),
                   default=d.cpus_per_trial)
    p.add_argument("--gpus-per-trial", type=number("a number of GPUs", 0, 64), default=d.gpus_per_trial,
                   help="GPUs per child (a fraction below 1 shares one)")
    p.add_argument("--retries", type=integer(0, "a number of retries", 100), default=d.retries,
                   help="retries of a crashed trial")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. auto or ray://host:10001)")
    p.add_argument("--resume", action="store_true", help="continue the search in --out after a kill")
    p.add_argument("--rl-batch-size", type=integer(2, "a number of rewards", 10_000), default=d.rl_batch_size,
                   help="rewards per controller update")
    p.add_argument("--proxy", action="append", default=[], metavar="KEY=VALUE",
                   help="override a proxy-training setting (proxytask.train.ProxyConfig), e.g. --proxy lr=0.05")
    p.add_argument("--references", metavar="NAME[,NAME@W...]",
                   help="reference networks trained with the children's signal and marked on pareto.png, e.g. "
                        "mobilenet_v3_large,mobilenet_v3_large@0.75 (default: the space's reference; none: no "
                        "references)")
    p.add_argument("--signal", choices=["scratch", "supernet"], default=d.signal_kind,
                   help="how children are scored: scratch (each trained from scratch) or supernet (inherited weights "
                        "of a supernet trained first, or reused from runs/supernet/; proxytask.supernet)")
    p.add_argument("--supernet-epochs", type=number("a number of epochs", above=0, maximum=MAX_EPOCHS),
                   help="with --signal supernet: epochs of supernet training (default: proxytask.supernet's main-job "
                        "setting)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--dry-run", action="store_true",
                   help="check every argument, say what would run (the target latency and where it comes from, "
                        "the accuracy signal) and exit without training")
    p.add_argument("--json", action="store_true", help="with --dry-run: print the plan as one JSON line, for tools")
    return p


def references_from_arg(text: str | None) -> tuple[str, ...] | None:
    """``--references``: None (not given: the space's reference), ``none`` (no references) or a
    comma-separated list of NAME or NAME@WIDTH, each checked (one-line error naming the flag)."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return ()
    items = tuple(item.strip() for item in text.split(","))
    for item in items:
        problem = reference_problem(item) if item else "an empty name; separate names by single commas"
        if problem:
            fail("--references", f"{problem} (none: no references)")
    return items


def config_from_args(a, parser: ArgumentParser) -> SearchConfig:
    """The SearchConfig of parsed flags ``a``, every flag checked (one-line error, exit 2) before
    anything starts: numbers in range, the target, space and data source found, the run folder
    writable, the proxy settings accepted by ProxyConfig, the reference networks known."""
    from latency import load_target
    from proxytask.train import ProxyConfig
    from search_spaces.spaces import get_space

    if a.hard and (a.alpha is not None or a.beta is not None):
        fail("--hard", "sets alpha = 0 and beta = -1; give either --hard or --alpha/--beta")
    if a.gpus_per_trial > 1 and a.gpus_per_trial != math.floor(a.gpus_per_trial):
        fail("--gpus-per-trial", f"{a.gpus_per_trial:g}: more than one GPU must be a whole number "
                                 "(a fraction below 1 shares one)")
    owned = {"seed": "--seed", "threads": "--cpus-per-trial", **({"epochs": "--epochs"} if a.epochs else {})}
    overrides = checked_overrides(a.proxy, lambda items: parse_overrides(items, parser, example="lr=0.05"),
                                  example="lr=0.05", owned=owned)
    flags = {"epochs": a.epochs} if a.epochs is not None else {}
    check_settings(ProxyConfig, {**overrides, **flags, "seed": a.seed}, maxima={"epochs": MAX_EPOCHS})
    check_loads((("--target", lambda: load_target(a.target)), ("--space", lambda: get_space(a.space))))
    check_data_and_out(a.data, a.out, SOURCE_KINDS)
    from proxytask.sources import data_problem  # lists a folder source's layout; decodes nothing

    if (problem := data_problem(a.data)) is not None:
        fail("--data", problem)
    references = references_from_arg(a.references)
    alpha, beta = (0.0, -1.0) if a.hard else (a.alpha, a.beta)
    config = SearchConfig(target=a.target, target_ms=a.target_ms, w=a.w, alpha=alpha, beta=beta, space=a.space,
                        strategy=a.strategy, children=a.children, epochs=a.epochs, data=a.data,
                        proxy_resolution=a.proxy_resolution, profile=a.profile, out=a.out, seed=a.seed, concurrency=a.concurrency,
                        cpus_per_trial=a.cpus_per_trial, gpus_per_trial=a.gpus_per_trial, retries=a.retries,
                        address=a.address, resume=a.resume, rl_batch_size=a.rl_batch_size, progress=not a.no_progress,
                        proxy_overrides=overrides, references=references, signal_kind=a.signal,
                        supernet_epochs=a.supernet_epochs)
    try:
        search_signal(config)  # the resolved signal: a cuda device without GPUs, a setting the profile refuses
    except SearchError as err:
        fail("--proxy", str(err))
    return config


def parse_args(argv=None) -> SearchConfig:
    """The checked SearchConfig of ``argv`` (exits with status 2 and one line on a bad flag)."""
    parser = build_parser()
    return config_from_args(parser.parse_args(argv), parser)


def main(argv=None) -> int:
    """The command; Ctrl-C (SIGINT) or SIGTERM stop it promptly with one line saying how to resume,
    the journal intact, exit status 130 / 143 (:mod:`jobs.signals`)."""
    return run_stoppable(lambda: _main(argv), "child")


def _main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = config_from_args(args, parser)
    if args.dry_run:
        try:
            plan = search_plan(config)
        except (SearchError, TargetError, MissingOpsError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(dumps(plan) if args.json else plan_words(plan))
        return 0
    try:
        summary = run_search(config)
    except (SearchError, SpecError, TargetError, MissingOpsError, FileNotFoundError, ValueError, RunLocked) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if summary.get("stopped"):
        print(summary["stopped"], file=sys.stderr)
    if not summary.get("best_reward"):
        print(f"no child finished successfully; see {config.out}/trials.csv", file=sys.stderr)
        return 1
    print(f"children trained: {summary['children_trained']} ({summary['failed']} failed), "
          f"child-hours {summary['child_hours']:.3f}, LUT hits/misses {summary['lut_hits']}/{summary['lut_misses']}")
    print(f"best reward {summary['best_reward']:.4f}: accuracy {100 * summary['best_accuracy']:.2f} %, "
          f"{summary['best_latency_ms']:.2f} ms on {config.target} (target {summary['target_ms']:.2f} ms)")
    if summary.get("beats_references"):
        verdicts = {True: "beaten", False: "not beaten", None: "failed"}
        print("references (same signal): " + ", ".join(f"{label} {verdicts[beaten]}" for label, beaten
                                                      in summary["beats_references"].items()))
    print(f"wrote {summary['out']}/best.yaml, trials.csv, pareto.png in {summary['elapsed_s']:.0f} s")
    print(json.dumps({k: summary[k] for k in ('best_reward', 'children_trained')}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
