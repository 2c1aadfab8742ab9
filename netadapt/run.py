"""``python -m netadapt.run SPEC.yaml --target pixel1 (--budget-ms X | --budget-ratio R)``: NetAdapt.

Shrinks SPEC layer by layer until its predicted latency on the target is within the budget:
each iteration proposes cutting one block's expansion or one residual group's bottleneck by the
step target, fine-tunes every proposal briefly on the proxy task (as Ray tasks), keeps the best,
then fine-tunes the final spec longer. ``--signal supernet`` scores proposals with the
weight-sharing supernet of ``--space`` instead (inherited channel slices, BN recalibrated; no
fine-tune, no Ray). Writes runs/NAME/: history.csv, iter_KK.yaml (+ .pt),
final.yaml, final.pt, trajectory.png, summary.json, journal.jsonl (what --resume reads).
Exit status: 0 done (or nothing to do), 1 budget unreachable or stopped early, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from jobs.cli import (ArgumentParser, check_data_and_out, check_loads, check_settings, checked_overrides, fail, integer,
                      number, parse_overrides)
from jobs.jsonio import dumps
from jobs.lock import RunLocked
from jobs.signals import run_stoppable
from latency import MissingOpsError, TargetError
from proxytask import MAX_EPOCHS, PROFILE_NAMES, SOURCE_KINDS
from search_spaces import SpecError

from .algorithm import netadapt_plan, plan_words, run_netadapt
from .config import (DEFAULT_PROXY, MAX_PRETRAIN_EPOCHS, MAX_PROXY_RESOLUTION, SIGNALS, NetAdaptConfig,
                     NetAdaptError, netadapt_signal)
from .proposals import KINDS
from .weights import WeightsMismatch



def _budget_flags(p: ArgumentParser, d: NetAdaptConfig) -> None:
    """The latency budget and the step schedule."""
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-ms", type=number("a latency in ms", above=0), help="latency budget in ms")
    budget.add_argument("--budget-ratio", type=number("a fraction", above=0, maximum=1),
                        help="latency budget as a fraction of SPEC's latency, in (0, 1]")
    step = p.add_mutually_exclusive_group()
    step.add_argument("--step-ratio", type=number("a fraction", above=0, maximum=0.999999), default=d.step_ratio,
                      help="step target delta as a fraction of SPEC's latency (the paper's 0.01)")
    step.add_argument("--step-ms", type=number("a latency in ms", above=0), help="step target delta in ms")
    p.add_argument("--schedule", choices=["constant", "decay"], default=d.schedule,
                   help="constant delta, or delta x --step-decay^(k-1) at iteration k")
    p.add_argument("--step-decay", type=number("a factor", above=0, maximum=1), default=d.step_decay,
                   help="decay factor of --schedule decay, in (0, 1]")


def _finetune_flags(p: ArgumentParser, d: NetAdaptConfig) -> None:
    """How proposals are made, fine-tuned, chosen and checked against the noise."""
    p.add_argument("--select", choices=["ratio", "accuracy"], default=d.select,
                   help="ratio: max dAccuracy/|dLatency| (MobileNetV3); accuracy: max accuracy (NetAdapt)")
    p.add_argument("--proposals", default=",".join(d.kinds),
                   help=f"proposal kinds to use, comma-separated ({', '.join(KINDS)})")
    p.add_argument("--finetune-steps", type=integer(0, "a number of steps", 10_000_000), default=d.finetune_steps,
                   help="short-term fine-tune steps T per proposal (the paper: 10,000)")
    p.add_argument("--long-finetune-steps", type=integer(0, "a number of steps", 10_000_000),
                   default=d.long_finetune_steps, help="long-term fine-tune steps of the final spec (0: none)")
    p.add_argument("--finetune-lr", type=number("a learning rate", above=0, maximum=10), default=d.finetune_lr,
                   help="peak learning rate of fine-tunes")
    p.add_argument("--weights", help="the seed's weights (torch.save(state_dict) for the proxy model); "
                                     "default: pre-train SPEC on the proxy task first")
    p.add_argument("--pretrain-epochs", type=number("a number of epochs", above=0, maximum=MAX_PRETRAIN_EPOCHS),
                   help="proxy epochs of the seed's pre-training (default: the proxy's schedule)")
    p.add_argument("--chosen-finetune-steps", type=integer(0, "a number of steps", 10_000_000),
                   default=d.chosen_finetune_steps,
                   help="fine-tune the chosen proposal alone this many steps more before the next iteration "
                        "(with --finetune-steps 0: proposals are scored right after inheriting, and only the "
                        "chosen one is fine-tuned)")
    p.add_argument("--noise-seeds", type=integer(0, "a number of seeds", 16), default=d.noise_seeds,
                   help="fine-tune each iteration's chosen proposal this many more times with other seeds, to "
                        "measure the noise of a score against the chosen proposal's lead (history.csv: noise, "
                        "lead); 0: no measurement")


def _signal_flags(p: ArgumentParser, d: NetAdaptConfig) -> None:
    """The accuracy signal: data, resolution, profile, proxy settings."""
    p.add_argument("--data", default=d.data, 
                   help="proxy data: default (embedded photos) | cifar10:PATH (the cifar-10-batches-py folder; its batches are pickles, read by a restricted unpickler: use a folder you trust) | imagefolder:PATH (a folder per class, optionally under train/ val/ test/)")
    p.add_argument("--val-size", type=integer(0, "a number of images", 10_000_000), default=d.val_size,
                   help="validation images that score proposals (class-balanced subset; 0: the whole split)")
    p.add_argument("--proxy-resolution", type=integer(8, "a size in pixels", MAX_PROXY_RESOLUTION),
                   help="resize the proxy images to this size")
    p.add_argument("--profile", choices=PROFILE_NAMES, default=None,
                   help="accuracy-signal profile (proxytask.profiles; default: gpu with --gpus-per-proposal > 0, else cpu)")
    p.add_argument("--proxy", action="append", default=[], metavar="KEY=VALUE",
                   help="override a proxy-training setting (proxytask.train.ProxyConfig), e.g. --proxy batch_size=32")
    p.add_argument("--signal", choices=list(SIGNALS), default=d.signal_kind,
                   help="what scores a proposal: scratch (its inherited weights fine-tuned --finetune-steps steps) "
                        "or supernet (the supernet's channel slices at its widths, BN recalibrated; the supernet "
                        "of --space is trained first, or reused from runs/supernet/ as nas.search does)")
    p.add_argument("--supernet-epochs", type=number("a number of epochs", above=0, maximum=MAX_EPOCHS),
                   help="with --signal supernet: epochs of supernet training (default: proxytask.supernet's "
                        "main-job setting)")
    p.add_argument("--space", default=d.space,
                   help="with --signal supernet: the search space (name or YAML file) whose supernet scores proposals")


def _run_flags(p: ArgumentParser, d: NetAdaptConfig) -> None:
    """Where and how the run goes: folder, resume, seed, resources, output."""
    p.add_argument("--out", default=d.out, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out after a kill")
    p.add_argument("--seed", type=integer(0, "a seed", 2**32 - 1), default=d.seed)
    p.add_argument("--concurrency", type=integer(1, "a number of proposals", 1024), default=d.concurrency,
                   help="proposals fine-tuned at once")
    p.add_argument("--cpus-per-proposal", type=number("a number of CPUs", above=0, maximum=1024),
                   default=d.cpus_per_proposal)
    p.add_argument("--gpus-per-proposal", type=number("a number of GPUs", 0, 64), default=d.gpus_per_proposal,
                   help="GPUs per proposal's fine-tune (a fraction shares one); > 0 also trains the seed and the "
                        "long-term fine-tune on CUDA")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. auto, or a GCS address)")
    p.add_argument("--max-iterations", type=integer(1, "a number of iterations", 100_000),
                   help="stop after this many iterations")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (one line per iteration)")
    p.add_argument("--dry-run", action="store_true",
                   help="check every argument, say what would run (the latency budget and where it comes from, "
                        "the accuracy signal) and exit without training")
    p.add_argument("--json", action="store_true", help="with --dry-run: print the plan as one JSON line, for tools")


def build_parser() -> ArgumentParser:
    d = NetAdaptConfig(spec="", budget_ratio=1.0)  # the defaults
    p = ArgumentParser(prog="python -m netadapt.run",
                       description="NetAdapt: shrink SPEC layer by layer until its predicted latency on "
                                   "the target is within the budget (MobileNetV3, Section 4.2).",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("spec", metavar="SPEC", help="spec YAML, reference name or arch string")
    p.add_argument("--target", default=d.target, help="latency target (pixel1, host-ort-1t, ... or a target YAML)")
    for add in (_budget_flags, _finetune_flags, _signal_flags, _run_flags):
        add(p, d)
    return p


def config_from_args(a, parser: ArgumentParser) -> NetAdaptConfig:
    """The NetAdaptConfig of parsed flags ``a``, every flag checked (one-line error, exit 2) before
    anything starts: numbers in range, SPEC, target and data source found, the weights readable,
    the run folder writable, the proxy settings accepted by ProxyConfig."""
    from latency import load_target
    from proxytask.train import ProxyConfig
    from jobs.safe_io import load_state_dict
    from search_spaces.spec import resolve_spec

    if a.gpus_per_proposal > 1 and a.gpus_per_proposal != math.floor(a.gpus_per_proposal):
        fail("--gpus-per-proposal", f"{a.gpus_per_proposal:g}: more than one GPU must be a whole number "
                                    "(a fraction below 1 shares one)")
    owned = {"seed": "--seed", "threads": "--cpus-per-proposal", **({"epochs": "--pretrain-epochs"} if a.pretrain_epochs
             else {}), **({"resolution": "--proxy-resolution"} if a.proxy_resolution else {})}
    overrides = checked_overrides(a.proxy, lambda items: parse_overrides(items, parser, example="batch_size=32"),
                                  example="batch_size=32", owned=owned)
    flags = {k: v for k, v in (("epochs", a.pretrain_epochs), ("resolution", a.proxy_resolution)) if v is not None}
    check_settings(ProxyConfig, {**DEFAULT_PROXY, **overrides, **flags, "seed": a.seed},
                   maxima={"epochs": MAX_PRETRAIN_EPOCHS, "resolution": MAX_PROXY_RESOLUTION})
    kinds = tuple(k.strip() for k in a.proposals.split(",") if k.strip())
    config = NetAdaptConfig(
        spec=a.spec, target=a.target, budget_ms=a.budget_ms, budget_ratio=a.budget_ratio,
        step_ratio=a.step_ratio, step_ms=a.step_ms, schedule=a.schedule, step_decay=a.step_decay, select=a.select,
        kinds=kinds, finetune_steps=a.finetune_steps, long_finetune_steps=a.long_finetune_steps,
        finetune_lr=a.finetune_lr, pretrain_epochs=a.pretrain_epochs, weights=a.weights, data=a.data,
        val_size=a.val_size or None,
        proxy_resolution=a.proxy_resolution, profile=a.profile, proxy_overrides=overrides, out=a.out, resume=a.resume, seed=a.seed,
        concurrency=a.concurrency, cpus_per_proposal=a.cpus_per_proposal,
        gpus_per_proposal=a.gpus_per_proposal, address=a.address,
        max_iterations=a.max_iterations, noise_seeds=a.noise_seeds, chosen_finetune_steps=a.chosen_finetune_steps, progress=not a.no_progress,
        signal_kind=a.signal, supernet_epochs=a.supernet_epochs, space=a.space)
    try:
        config.check()
    except NetAdaptError as err:
        flag = "--proposals" if str(err).startswith("kinds") else "--" + str(err).split(":")[0].replace("_", "-")
        fail(flag, str(err))
    try:
        device = netadapt_signal(config).proxy.device  # the resolved signal (proxytask.profiles.resolved_signal)
    except ValueError as err:
        fail("--proxy", str(err))
    if device.startswith("cuda") and a.gpus_per_proposal <= 0:
        fail("--proxy", f"device={device} needs GPUs for the proposals; add --gpus-per-proposal 1 (or a fraction)")
    checks = (("SPEC", lambda: resolve_spec(a.spec)), ("--target", lambda: load_target(a.target)),
              ("--weights", lambda: a.weights is not None and load_state_dict(a.weights, what="file")))
    check_loads(checks)
    if a.signal == "supernet":
        _check_supernet(config, a.spec)
    check_data_and_out(a.data, a.out, SOURCE_KINDS)
    from proxytask.sources import data_problem  # lists a folder source's layout; decodes nothing

    if (problem := data_problem(a.data)) is not None:
        fail("--data", problem)
    return config


def _check_supernet(config: NetAdaptConfig, spec: str) -> None:
    """Exit with one line unless the supernet of --space can run SPEC (every proposal then fits)."""
    from search_spaces.spec import resolve_spec

    from .supernet_signal import seed_slots

    try:
        seed_slots(config, resolve_spec(spec))
    except NetAdaptError as err:
        flag = "--space" if str(err).startswith("space:") else "--signal"
        fail(flag, str(err).split(": ", 1)[1])


def parse_args(argv=None) -> NetAdaptConfig:
    """The checked NetAdaptConfig of ``argv`` (exits with status 2 and one line on a bad flag)."""
    parser = build_parser()
    return config_from_args(parser.parse_args(argv), parser)


def main(argv=None) -> int:
    """The command; Ctrl-C (SIGINT) or SIGTERM stop it promptly with one line saying how to resume,
    the journal intact, exit status 130 / 143 (:mod:`jobs.signals`)."""
    return run_stoppable(lambda: _main(argv), "proposal")


def _main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = config_from_args(args, parser)
    if args.dry_run:
        try:
            plan = netadapt_plan(config)
        except (NetAdaptError, SpecError, TargetError, MissingOpsError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(dumps(plan) if args.json else plan_words(plan))
        return 0
    try:
        result = run_netadapt(config)
    except (NetAdaptError, WeightsMismatch, SpecError, TargetError, MissingOpsError, FileNotFoundError,
            ValueError, RunLocked) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.message)
    if result.status == "within_budget":
        print(f"wrote {result.out}/final.yaml (unchanged)")
        return 0
    print(f"wrote {result.out}/final.yaml, final.pt, history.csv, trajectory.png in {result.elapsed_s:.0f} s")
    print(json.dumps({"status": result.status, "initial_latency_ms": round(result.initial_latency_ms, 4),
                      "latency_ms": round(result.latency_ms, 4), "budget_ms": round(result.budget_ms, 4),
                      "iterations": result.iterations, "seed_accuracy": result.seed_accuracy,
                      "accuracy": result.accuracy}))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
