"""``python -m experiments.reproduce large|small [--config FILE] [--out runs/NAME]``: the paper's pipeline.

Block-wise search -> NetAdapt -> Section 5 redesign -> the emitted MobileNetV3 definition (YAML,
PyTorch state dict, ONNX, timm arch string), a layer-by-layer diff against Table 1 or 2 and a
summary of ours vs the paper's (``OUT/summary.md``). Settings: ``experiments/configs/NETWORK.yaml``
(their comments give the settings of a real run). ``--data`` and ``--address`` override the
config for a run on ImageNet (``imagefolder:PATH``) and a Ray cluster; ``--resume`` continues a
killed run. See :mod:`experiments.pipeline.stages`.
"""

from __future__ import annotations

import argparse
import sys

from jobs.lock import RunLocked
from jobs.signals import run_stoppable

from .config import NETWORKS, ConfigError, load_config
from .stages import PipelineError


def main(argv: list[str] | None = None) -> int:
    """The command; Ctrl-C (SIGINT) or SIGTERM stop it promptly with one line saying how to resume,
    every stage's journal intact, exit status 130 / 143 (:mod:`jobs.signals`)."""
    return run_stoppable(lambda: _main(argv), "stage, child and proposal")


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("network", choices=sorted(NETWORKS), help="which MobileNetV3 to reproduce")
    parser.add_argument("--config", help="pipeline config YAML (default experiments/configs/NETWORK.yaml)")
    parser.add_argument("--out", help="run folder (default runs/reproduce_NETWORK)")
    parser.add_argument("--data", help="proxy data: default | tinyimagenet:PATH[?classes=N,per_class=N] | "
                        "imagenet:PATH | imagefolder:PATH | cifar10:PATH (overrides the config)")
    parser.add_argument("--address", help="join a Ray cluster (e.g. auto); overrides search.address")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out after a kill")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    overrides = {}
    if args.data:
        overrides["data"] = args.data
    if args.address:
        overrides["search.address"] = args.address
    try:
        config = load_config(args.network, args.config, **overrides)
        config.check_data()  # a bad --data (or config data) is one line before any work starts
        from .stages import run_pipeline

        summary = run_pipeline(config, args.out, resume=args.resume, progress=not args.no_progress)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (PipelineError, ValueError, RunLocked) as err:  # SpecError, NetAdaptError, SearchError: ValueErrors
        print(f"error: {err}", file=sys.stderr)
        return 1
    ours, paper = summary["ours"], summary["paper_spec"]
    print(f"ours:  {ours['madds_m']:.1f}M MAdds, {ours['params_m']:.3f}M params, {ours['latency_ms']:.2f} ms "
          f"on {summary['target']} (target {summary['target_ms']} ms)")
    print(f"paper: {paper['madds_m']:.1f}M MAdds, {paper['params_m']:.3f}M params, {paper['latency_ms']:.2f} ms "
          f"(our spec of the published network)")
    v = summary.get("verdict") or {}
    if v.get("delta") is not None:
        print(f"equal footing (test split, {len(summary['comparison']['ours']['test_accuracy'])} seeds): ours "
              f"{100 * v['ours_mean']:.2f} +- {100 * v['ours_std']:.2f} % at {v['ours_ms']:.2f} ms, paper's "
              f"{100 * v['paper_mean']:.2f} +- {100 * v['paper_std']:.2f} % at {v['paper_ms']:.2f} ms "
              f"({v.get('target') or summary['target']}): "
              f"target {'MET' if v['meets_target'] else 'NOT met'}")
    print(f"{summary['rows_differing']} row(s) differ from the paper's table; wall time per stage (s): "
          f"{summary['wall_s']}")
    print(f"wrote {summary['out']}/summary.md and definition/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
