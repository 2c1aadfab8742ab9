"""Children trained on a GPU score like children trained on the CPU, and how much faster.

    python -m experiments.bench_gpu_proxy [--children 8] [--space mobilenetv3] [--data default]
        [--cpu-threads 1] [--out results/bench_gpu_proxy.json]

Trains the same random children of the search space (``random.Random(i)``, as
``experiments.proxy_discrimination`` draws them) with the default proxy schedule twice: on the
CPU (``--cpu-threads`` torch threads) and on CUDA (``ProxyConfig.device="cuda"``, what
``--gpus-per-trial`` sets in a search), same seed, same batches. Prints and writes seconds per
child on each device, the accuracies, their largest difference and the Spearman correlation
between the two devices' accuracies. The first CUDA child pays CUDA's start-up; it is reported
apart (``cuda_first_child_s``) and left out of the mean. Needs a CUDA device.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from proxytask.data import load_data
from proxytask.train import ProxyConfig, train_child

from .proxy_discrimination import children


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.bench_gpu_proxy", description=__doc__.split("\n\n")[0])
    p.add_argument("--children", type=int, default=8)
    p.add_argument("--space", default="mobilenetv3")
    p.add_argument("--data", default="default")
    p.add_argument("--cpu-threads", type=int, default=1)
    p.add_argument("--out", default="results/bench_gpu_proxy.json")
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu_proxy: torch sees no CUDA device; run it on a machine with a GPU", file=sys.stderr)
        return 2
    data = load_data(a.data)
    specs = [spec for _, spec in children(a.space, a.children)]
    config = ProxyConfig()
    rows = []
    for i, spec in enumerate(specs):
        cpu = train_child(spec, data, config.replace(threads=a.cpu_threads))
        torch.cuda.synchronize()
        gpu = train_child(spec, data, config.replace(device="cuda"))
        torch.cuda.synchronize()
        rows.append({"child": i, "name": spec.name, "cpu_accuracy": cpu.accuracy, "cuda_accuracy": gpu.accuracy,
                     "cpu_s": cpu.seconds, "cuda_s": gpu.seconds, "cpu_status": cpu.status,
                     "cuda_status": gpu.status, "reason": cpu.reason or gpu.reason})
        print(f"child {i}: cpu {100 * cpu.accuracy:.1f} % in {cpu.seconds:.1f} s, "
              f"cuda {100 * gpu.accuracy:.1f} % in {gpu.seconds:.1f} s", flush=True)
    cpu_acc = np.array([r["cpu_accuracy"] for r in rows])
    gpu_acc = np.array([r["cuda_accuracy"] for r in rows])
    summary = {
        "command": "python -m experiments.bench_gpu_proxy " + " ".join(argv if argv is not None else sys.argv[1:]),
        "children": len(rows), "space": a.space, "data": data.name, "proxy": asdict(config),
        "cpu_threads": a.cpu_threads, "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_s_per_child": float(np.mean([r["cpu_s"] for r in rows])),
        "cuda_s_per_child": float(np.mean([r["cuda_s"] for r in rows[1:]] or [rows[0]["cuda_s"]])),
        "cuda_first_child_s": rows[0]["cuda_s"],
        "max_abs_accuracy_diff_points": float(100 * np.nanmax(np.abs(cpu_acc - gpu_acc))),
        "spearman_cpu_vs_cuda": float(stats.spearmanr(cpu_acc, gpu_acc).statistic),
        "rows": rows,
    }
    summary["speedup"] = summary["cpu_s_per_child"] / summary["cuda_s_per_child"]
    print(f"{summary['gpu']}: {summary['cuda_s_per_child']:.1f} s per child on CUDA vs "
          f"{summary['cpu_s_per_child']:.1f} s on {a.cpu_threads} CPU thread(s) ({summary['speedup']:.1f}x); "
          f"accuracy CPU vs CUDA: max |diff| {summary['max_abs_accuracy_diff_points']:.1f} points, "
          f"Spearman {summary['spearman_cpu_vs_cuda']:.2f}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
