"""``python -m netadapt.run SPEC.yaml --target pixel1 (--budget-ms X | --budget-ratio R)``: NetAdapt.

Shrinks SPEC layer by layer until its predicted latency on the target is within the budget:
each iteration proposes cutting one block's expansion or one residual group's bottleneck by the
step target, fine-tunes every proposal briefly on the proxy task (as Ray tasks), keeps the best,
then fine-tunes the final spec longer. Writes runs/NAME/: history.csv, iter_KK.yaml (+ .pt),
final.yaml, final.pt, trajectory.png, summary.json, journal.jsonl (what --resume reads).
Exit status: 0 done (or nothing to do), 1 budget unreachable or stopped early, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys


from latency import MissingOpsError, TargetError
from nas.search import parse_overrides
from search_spaces import SpecError

from .algorithm import run_netadapt
from .config import NetAdaptConfig, NetAdaptError
from .proposals import KINDS
from .weights import WeightsMismatch


def parse_args(argv=None) -> NetAdaptConfig:
    d = NetAdaptConfig(spec="", budget_ratio=1.0)  # the defaults
    p = argparse.ArgumentParser(prog="python -m netadapt.run",
                                description="NetAdapt: shrink SPEC layer by layer until its predicted latency on "
                                            "the target is within the budget (MobileNetV3, Section 4.2).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("spec", metavar="SPEC", help="spec YAML, reference name or arch string")
    p.add_argument("--target", default=d.target, help="latency target (pixel1, host-ort-1t, ... or a target YAML)")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-ms", type=float, help="latency budget in ms")
    budget.add_argument("--budget-ratio", type=float, help="latency budget as a fraction of SPEC's latency")
    step = p.add_mutually_exclusive_group()
    step.add_argument("--step-ratio", type=float, default=d.step_ratio,
                      help="step target delta as a fraction of SPEC's latency (the paper's 0.01)")
    step.add_argument("--step-ms", type=float, help="step target delta in ms")
    p.add_argument("--schedule", choices=["constant", "decay"], default=d.schedule,
                   help="constant delta, or delta x --step-decay^(k-1) at iteration k")
    p.add_argument("--step-decay", type=float, default=d.step_decay, help="decay factor of --schedule decay")
    p.add_argument("--select", choices=["ratio", "accuracy"], default=d.select,
                   help="ratio: max dAccuracy/|dLatency| (MobileNetV3); accuracy: max accuracy (NetAdapt)")
    p.add_argument("--proposals", default=",".join(d.kinds),
                   help=f"proposal kinds to use, comma-separated ({', '.join(KINDS)})")
    p.add_argument("--finetune-steps", type=int, default=d.finetune_steps,
                   help="short-term fine-tune steps T per proposal (the paper: 10,000)")
    p.add_argument("--long-finetune-steps", type=int, default=d.long_finetune_steps,
                   help="long-term fine-tune steps of the final spec (0: none)")
    p.add_argument("--finetune-lr", type=float, default=d.finetune_lr, help="peak learning rate of fine-tunes")
    p.add_argument("--weights", help="the seed's weights (torch.save(state_dict) for the proxy model); "
                                     "default: pre-train SPEC on the proxy task first")
    p.add_argument("--pretrain-epochs", type=float, help="proxy epochs of the seed's pre-training "
                                                         "(default: the proxy's schedule)")
    p.add_argument("--data", default=d.data, help="proxy data: default | cifar10:PATH | imagefolder:PATH")
    p.add_argument("--val-size", type=int, default=d.val_size,
                   help="validation images that score proposals (class-balanced subset; 0: the whole split)")
    p.add_argument("--proxy-resolution", type=int, help="resize the proxy images to this size")
    p.add_argument("--proxy", action="append", default=[], metavar="KEY=VALUE",
                   help="override a proxy-training setting (nas.proxy.ProxyConfig), e.g. --proxy batch_size=32")
    p.add_argument("--out", default=d.out, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out after a kill")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="proposals fine-tuned at once")
    p.add_argument("--cpus-per-proposal", type=float, default=d.cpus_per_proposal)
    p.add_argument("--gpus-per-proposal", type=float, default=d.gpus_per_proposal,
                   help="GPUs per proposal's fine-tune (a fraction shares one); > 0 also trains the seed and the "
                        "long-term fine-tune on CUDA")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. auto, or a GCS address)")
    p.add_argument("--max-iterations", type=int, help="stop after this many iterations")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (one line per iteration)")
    a = p.parse_args(argv)
    overrides = parse_overrides(a.proxy, p, example="batch_size=32")
    kinds = tuple(k.strip() for k in a.proposals.split(",") if k.strip())
    return NetAdaptConfig(
        spec=a.spec, target=a.target, budget_ms=a.budget_ms, budget_ratio=a.budget_ratio,
        step_ratio=a.step_ratio, step_ms=a.step_ms, schedule=a.schedule, step_decay=a.step_decay, select=a.select,
        kinds=kinds, finetune_steps=a.finetune_steps, long_finetune_steps=a.long_finetune_steps,
        finetune_lr=a.finetune_lr, pretrain_epochs=a.pretrain_epochs, weights=a.weights, data=a.data,
        val_size=a.val_size or None,
        proxy_resolution=a.proxy_resolution, proxy_overrides=overrides, out=a.out, resume=a.resume, seed=a.seed,
        concurrency=a.concurrency, cpus_per_proposal=a.cpus_per_proposal,
        gpus_per_proposal=a.gpus_per_proposal, address=a.address,
        max_iterations=a.max_iterations, progress=not a.no_progress)


def main(argv=None) -> int:
    config = parse_args(argv)
    try:
        result = run_netadapt(config)
    except (NetAdaptError, WeightsMismatch, SpecError, TargetError, MissingOpsError, FileNotFoundError,
            ValueError) as err:
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
