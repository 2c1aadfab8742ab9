"""NetAdapt benchmarks: the step rule, and NetAdapt vs a uniform width multiplier at equal latency.

    python -m experiments.bench_netadapt [--part cuts|compare|all] [--run-dir runs/bench_netadapt]
        [--budget-ratio 0.8] [--seeds 3] [--out results/bench_netadapt.json]

``cuts`` (no training): for MobileNetV3-Small and -Large on ``pixel1`` and step targets of 0.5 %,
1 % and 2 % of their latency, every feasible proposal's predicted latency cut must lie in
[step target, step target + the latency of one 8-channel group of the shrunk layer at the chosen
width] (the group's latency is the cut at the chosen width minus the cut one group wider). Then
the same along the trajectory of the NetAdapt run of ``compare`` (each iteration's chosen
proposal), and the final spec must meet the budget.

``compare``: NetAdapt (defaults of ``python -m netadapt.run``: delta = 1 % of the latency, T = 10
short fine-tune steps, select by ratio) shrinks V3-Small to ``--budget-ratio`` of its predicted
pixel1 latency, starting from V3-Small pre-trained on the proxy task. The uniform baseline is
``scale_width(V3-Small, w)`` (keeping V3-Small's residuals, :func:`uniform_spec`); make_divisible
makes its latency jump with w, so no multiplier matches NetAdapt's latency exactly, and the two
nearest (the fastest slower than NetAdapt's result, the slowest faster) are both reported.
All are scored on the whole validation split, two ways:

* fine-tuned with the same budget: each uniform network inherits the same pre-trained weights
  (largest-L2-norm filters, :func:`netadapt.weights.inherit`) and is fine-tuned for as many steps
  as NetAdapt's final network got in total (T per iteration along its path + the long-term
  fine-tune), with the same learning rate schedule;
* trained from scratch with the proxy's schedule, ``--seeds`` seeds each (architecture alone).

The NetAdapt run lives in ``--run-dir`` and resumes if the benchmark is run again.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

from latency import predict_ms
from latency.table import atomic_write_text
from search_spaces import load_spec
from search_spaces.transforms import scale_width

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "experiments" / "specs"


# --------------------------------------------------------------------------- (1) the step rule
def _check(proposal) -> dict:
    cut, target = proposal.cut_ms, proposal.step_target_ms
    group_ms = cut - (proposal.next_width_cut_ms or 0.0)  # one 8-channel group of the shrunk layer
    return {"name": proposal.name, "channels": proposal.channels, "cut_ms": cut, "step_target_ms": target,
            "group_ms": group_ms, "overshoot_ms": cut - target,
            "ok": bool(target - 1e-12 <= cut <= target + group_ms + 1e-12)}


def static_cuts(target: str = "pixel1") -> dict:
    from netadapt.proposals import make_proposals

    out = {}
    for name in ("mobilenet_v3_small", "mobilenet_v3_large"):
        spec = load_spec(SPECS / f"{name}.yaml")
        latency = predict_ms(spec, target)
        for ratio in (0.005, 0.01, 0.02):
            checks = [_check(p) for p in make_proposals(spec, ratio * latency, target) if p.feasible]
            worst = max(checks, key=lambda c: c["overshoot_ms"] / c["group_ms"])
            out[f"{name}@{ratio:g}"] = {
                "latency_ms": latency, "step_target_ms": ratio * latency, "feasible": len(checks),
                "all_within": all(c["ok"] for c in checks),
                "max_overshoot_over_group": worst["overshoot_ms"] / worst["group_ms"], "worst": worst}
            print(f"{name:20s} step {100 * ratio:4.1f} %: {len(checks):2d} feasible proposals, all cuts within "
                  f"[target, target + one group]: {out[f'{name}@{ratio:g}']['all_within']}; largest overshoot "
                  f"{worst['overshoot_ms']:.4f} ms = {worst['overshoot_ms'] / worst['group_ms']:.2f} of its group "
                  f"({worst['name']} {worst['channels']})")
    return out


def trajectory_cuts(run_dir: Path) -> dict:
    records = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    listed = {r["iteration"]: r for r in records if r["type"] == "iteration"}
    rows = []
    for chosen in (r for r in records if r["type"] == "chosen"):
        p = next(q for q in listed[chosen["iteration"]]["proposals"] if q["index"] == chosen["index"])
        group_ms = p["cut_ms"] - (p["next_width_cut_ms"] or 0.0)
        rows.append({"iteration": chosen["iteration"], "name": p["name"], "channels": chosen["channels"],
                     "cut_ms": p["cut_ms"], "step_target_ms": p["step_target_ms"], "group_ms": group_ms,
                     "ok": bool(p["step_target_ms"] - 1e-12 <= p["cut_ms"] <= p["step_target_ms"] + group_ms + 1e-12)})
    seed = next(r for r in records if r["type"] == "seed")
    final = next((r for r in records if r["type"] == "final"), None)
    result = {"iterations": len(rows), "all_within": all(r["ok"] for r in rows), "rows": rows,
              "budget_ms": seed["budget_ms"], "final_latency_ms": final["latency_ms"] if final else None,
              "final_meets_budget": bool(final and final["latency_ms"] <= seed["budget_ms"] + 1e-9)}
    print(f"trajectory of {run_dir}: {len(rows)} iterations, every chosen cut within [target, target + one group]: "
          f"{result['all_within']}; final {result['final_latency_ms']:.3f} ms vs budget {seed['budget_ms']:.3f} ms: "
          f"meets it: {result['final_meets_budget']}")
    return result


# --------------------------------------------------------------------------- (2) NetAdapt vs uniform
def uniform_spec(spec, width: float):
    """``scale_width(spec, width)`` with the topology of ``spec``: a block that had no residual keeps
    none where rounding makes its input and output widths equal (as NetAdapt's proposals do)."""
    import dataclasses

    scaled = scale_width(spec, width)
    blocks = tuple(dataclasses.replace(b, skip=False) if scaled.has_residual(i) and not spec.has_residual(i) else b
                   for i, b in enumerate(scaled.blocks))
    return scaled.replace(blocks=blocks)


def neighbour_widths(spec, latency_ms: float, target: str = "pixel1") -> dict:
    """On a 0.005 grid of width multipliers: the one whose predicted latency is closest to ``latency_ms``
    from below, and from above (make_divisible makes the latency of a multiplier jump)."""
    below = above = None
    for i in range(100, 201):
        width = i / 200
        ms = predict_ms(uniform_spec(spec, width), target)
        if ms <= latency_ms and (below is None or ms > below[1]):
            below = (width, ms)
        if ms >= latency_ms and (above is None or ms < above[1]):
            above = (width, ms)
    return {k: v for k, v in (("below", below), ("above", above)) if v is not None}


def _finetuned(spec_dict: dict, seed_spec_dict: dict, seed_state: dict, data_source: str, steps: int, lr: float,
               seed: int) -> dict:
    """Inherit the pre-trained seed's weights (largest L2 norms), fine-tune ``steps`` steps, score."""
    import torch

    from proxytask.data import load_data
    from proxytask.train import ProxyConfig, torch_threads
    from netadapt.config import DEFAULT_PROXY
    from netadapt.finetune import finetune_config, load_model, train_and_score, trained_spec
    from netadapt.weights import inherit
    from search_spaces import ArchSpec

    data = load_data(data_source)
    spec, base = ArchSpec.from_dict(spec_dict), ArchSpec.from_dict(seed_spec_dict)
    proxy = ProxyConfig.from_dict(DEFAULT_PROXY).replace(seed=seed)
    start = time.perf_counter()
    with torch_threads(1):
        model = load_model(spec, inherit(seed_state, trained_spec(base, data, proxy), trained_spec(spec, data, proxy)),
                           data, proxy)
        torch.manual_seed(0)
        scores = train_and_score(model, data, finetune_config(proxy, data, steps, lr, seed + 100_003))
    return {"accuracy": scores["accuracy_after"], "seconds": time.perf_counter() - start}


def _scratch(spec_dict: dict, data_source: str, seed: int) -> dict:
    from proxytask.data import load_data
    from proxytask.train import ProxyConfig, train_child
    from search_spaces import ArchSpec

    result = train_child(ArchSpec.from_dict(spec_dict), load_data(data_source), ProxyConfig(seed=seed))
    return {"accuracy": result.accuracy, "status": result.status, "seconds": result.seconds}


def compare(run_dir: Path, budget_ratio: float, seeds: int, data_source: str = "default") -> dict:
    import ray

    from proxytask.data import load_data
    from proxytask.train import ProxyConfig, torch_threads
    from netadapt.algorithm import run_netadapt
    from netadapt.config import DEFAULT_PROXY, NetAdaptConfig
    from netadapt.finetune import load_model, score
    from netadapt.weights import load_weights

    base = load_spec(SPECS / "mobilenet_v3_small.yaml")
    config = NetAdaptConfig(spec=str(SPECS / "mobilenet_v3_small.yaml"), budget_ratio=budget_ratio,
                            out=str(run_dir), resume=run_dir.exists(), data=data_source, progress=False)
    start = time.perf_counter()
    result = run_netadapt(config)
    netadapt_s = time.perf_counter() - start
    print(result.message)
    final = load_spec(run_dir / "final.yaml")
    uniform = {side: (width, ms, uniform_spec(base, width))
               for side, (width, ms) in neighbour_widths(base, result.latency_ms).items()}
    print(f"NetAdapt: {result.latency_ms:.3f} ms (V3-Small {result.initial_latency_ms:.3f} ms); uniform multipliers "
          "nearest in latency: " + ", ".join(f"{side} x{w:g} = {ms:.3f} ms" for side, (w, ms, _) in uniform.items()))

    data = load_data(data_source)  # the whole validation split
    proxy = ProxyConfig.from_dict(DEFAULT_PROXY).replace(seed=config.seed)
    steps = result.iterations * config.finetune_steps + config.long_finetune_steps
    seed_state = load_weights(run_dir / "seed.pt")
    with torch_threads(1):
        netadapt_tuned = score(load_model(final, load_weights(run_dir / "final.pt"), data, proxy), data, proxy)[0]
        seed_accuracy = score(load_model(base, seed_state, data, proxy), data, proxy)[0]

    # Every training is a Ray task; each result is saved as it finishes, so a rerun redoes only the missing ones.
    networks = {"netadapt": final, **{f"uniform_{side}": spec for side, (_, _, spec) in uniform.items()}}
    jobs = {f"finetuned/{name}/{spec.hash}/{steps}": (_finetuned, (spec.to_dict(), base.to_dict(), None, data_source,
                                                                    steps, config.finetune_lr, config.seed))
            for name, spec in networks.items() if name != "netadapt"}
    jobs.update({f"scratch/{name}/{spec.hash}/{s}": (_scratch, (spec.to_dict(), data_source, s))
                 for name, spec in networks.items() for s in range(seeds)})
    cache_path = run_dir / "bench_trainings.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    todo = {key: job for key, job in jobs.items() if key not in cache}
    started = False
    if todo and not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        started = True
    try:
        state_ref = ray.put(seed_state) if todo else None
        running = {}
        for key, (fn, args) in todo.items():
            args = tuple(state_ref if a is None else a for a in args)
            running[ray.remote(fn).options(num_cpus=1).remote(*args)] = key
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                key = running.pop(ref)
                cache[key] = ray.get(ref)
                atomic_write_text(cache_path, json.dumps(cache, indent=1) + "\n")
                print(f"  {key}: {100 * cache[key]['accuracy']:.2f} %", flush=True)
    finally:
        if started:
            ray.shutdown()
    tuned = {name: cache[f"finetuned/{name}/{spec.hash}/{steps}"]["accuracy"] for name, spec in networks.items()
             if name != "netadapt"}
    runs = {(name, s): cache[f"scratch/{name}/{spec.hash}/{s}"] for name, spec in networks.items() for s in range(seeds)}
    tuned = {"netadapt": netadapt_tuned, **tuned, "seed_v3_small": seed_accuracy}
    print(f"fine-tuned with the same budget ({steps} steps from the same pre-trained V3-Small), whole validation "
          "split: " + ", ".join(f"{k} {100 * v:.2f} %" for k, v in tuned.items()))
    scratch = {}
    for name in networks:
        accs = [runs[(name, s)]["accuracy"] for s in range(seeds) if runs[(name, s)]["status"] == "ok"]
        scratch[name] = {"accuracies": accs, "mean": statistics.fmean(accs) if accs else math.nan,
                         "std": statistics.stdev(accs) if len(accs) > 1 else 0.0}
    print(f"from scratch ({ProxyConfig().total_steps(data)} steps, {seeds} seeds), whole validation split: " +
          ", ".join(f"{k} {100 * v['mean']:.2f} +- {100 * v['std']:.2f} %" for k, v in scratch.items()))
    return {"budget_ratio": budget_ratio, "initial_latency_ms": result.initial_latency_ms,
            "netadapt": {"status": result.status, "latency_ms": result.latency_ms, "iterations": result.iterations,
                         "spec_hash": final.hash, "stem": final.stem.out_channels,
                         "blocks_expansion_out": [[b.expansion_channels, b.out_channels] for b in final.blocks],
                         "resumed": config.resume, "wall_s_this_invocation": round(netadapt_s, 1),
                         "accuracy_run_val_subset": result.accuracy},
            "uniform": {side: {"width": w, "latency_ms": ms, "spec_hash": spec.hash,
                               "blocks_expansion_out": [[b.expansion_channels, b.out_channels] for b in spec.blocks]}
                        for side, (w, ms, spec) in uniform.items()},
            "finetuned_same_budget": {"steps": steps, "accuracy": tuned}, "from_scratch": scratch,
            "settings": {"finetune_steps": config.finetune_steps, "long_finetune_steps": config.long_finetune_steps,
                         "step_ratio": config.step_ratio, "select": config.select, "data": data_source,
                         "val_images": len(data.val_y)}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.bench_netadapt", description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["cuts", "compare", "all"], default="all")
    p.add_argument("--run-dir", default="runs/bench_netadapt", help="the NetAdapt run of 'compare' (resumed)")
    p.add_argument("--budget-ratio", type=float, default=0.8)
    p.add_argument("--seeds", type=int, default=3, help="from-scratch trainings per network")
    p.add_argument("--data", default="default")
    p.add_argument("--out", default="results/bench_netadapt.json")
    a = p.parse_args(argv)
    out = Path(a.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    start = time.perf_counter()
    if a.part in ("cuts", "all"):
        results["static_cuts"] = static_cuts()
    if a.part in ("compare", "all"):
        results["compare"] = compare(Path(a.run_dir), a.budget_ratio, a.seeds, a.data)
        results["trajectory_cuts"] = trajectory_cuts(Path(a.run_dir))
    results["elapsed_s"] = round(time.perf_counter() - start, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
