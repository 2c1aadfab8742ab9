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
``scale_width(V3-Small, w)`` with the w whose predicted latency is closest to NetAdapt's result.
Both are then scored on the whole validation split, two ways:

* fine-tuned with the same budget: the uniform network inherits the same pre-trained weights
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
def matched_width(spec, latency_ms: float, target: str = "pixel1") -> tuple[float, float]:
    """The width multiplier (0.005 grid) whose scaled spec's predicted latency is closest to ``latency_ms``."""
    best = None
    for i in range(100, 201):
        width = i / 200
        ms = predict_ms(scale_width(spec, width), target)
        if best is None or abs(ms - latency_ms) < abs(best[1] - latency_ms):
            best = (width, ms)
    return best


def _scratch(spec_dict: dict, data_source: str, seed: int) -> dict:
    from nas.data import load_data
    from nas.proxy import ProxyConfig, train_child
    from search_spaces import ArchSpec

    result = train_child(ArchSpec.from_dict(spec_dict), load_data(data_source), ProxyConfig(seed=seed))
    return {"accuracy": result.accuracy, "status": result.status, "seconds": result.seconds}


def compare(run_dir: Path, budget_ratio: float, seeds: int, data_source: str = "default") -> dict:
    import ray
    import torch

    from nas.data import load_data
    from nas.proxy import ProxyConfig, torch_threads
    from netadapt.algorithm import run_netadapt
    from netadapt.config import DEFAULT_PROXY, NetAdaptConfig
    from netadapt.finetune import finetune_config, load_model, score, train_and_score, trained_spec
    from netadapt.weights import inherit, load_weights

    base = load_spec(SPECS / "mobilenet_v3_small.yaml")
    config = NetAdaptConfig(spec=str(SPECS / "mobilenet_v3_small.yaml"), budget_ratio=budget_ratio,
                            out=str(run_dir), resume=run_dir.exists(), data=data_source, progress=False)
    start = time.perf_counter()
    result = run_netadapt(config)
    netadapt_s = time.perf_counter() - start
    print(result.message)
    final = load_spec(run_dir / "final.yaml")
    width, uniform_ms = matched_width(base, result.latency_ms)
    uniform = scale_width(base, width)
    print(f"NetAdapt: {result.latency_ms:.3f} ms; uniform width {width:g}: {uniform_ms:.3f} ms "
          f"(V3-Small {result.initial_latency_ms:.3f} ms)")

    # Fine-tuned with the same budget from the same pre-trained seed, scored on the whole split.
    data = load_data(data_source)
    proxy = ProxyConfig.from_dict(DEFAULT_PROXY).replace(seed=config.seed)
    steps = result.iterations * config.finetune_steps + config.long_finetune_steps
    tuned = {}
    with torch_threads(2):
        seed_state = load_weights(run_dir / "seed.pt")
        netadapt_model = load_model(final, load_weights(run_dir / "final.pt"), data, proxy)
        tuned["netadapt"] = score(netadapt_model, data, proxy)[0]
        model = load_model(uniform, inherit(seed_state, trained_spec(base, data, proxy),
                                            trained_spec(uniform, data, proxy)), data, proxy)
        ft = finetune_config(proxy, data, steps, config.finetune_lr, config.seed + 100_003)
        torch.manual_seed(0)
        tuned["uniform"] = train_and_score(model, data, ft)["accuracy_after"]
        tuned["seed"] = score(load_model(base, seed_state, data, proxy), data, proxy)[0]
    print(f"fine-tuned ({steps} steps from the same pre-trained V3-Small), whole validation split: NetAdapt "
          f"{100 * tuned['netadapt']:.2f} %, uniform {100 * tuned['uniform']:.2f} % (seed {100 * tuned['seed']:.2f} %)")

    # From scratch, the proxy's schedule, several seeds (Ray tasks, one thread each).
    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        started = True
    try:
        task = ray.remote(_scratch).options(num_cpus=1)
        refs = {(name, s): task.remote(spec.to_dict(), data_source, s)
                for name, spec in (("netadapt", final), ("uniform", uniform)) for s in range(seeds)}
        runs = {key: ray.get(ref) for key, ref in refs.items()}
    finally:
        if started:
            ray.shutdown()
    scratch = {}
    for name in ("netadapt", "uniform"):
        accs = [runs[(name, s)]["accuracy"] for s in range(seeds) if runs[(name, s)]["status"] == "ok"]
        scratch[name] = {"accuracies": accs, "mean": statistics.fmean(accs) if accs else math.nan,
                         "std": statistics.stdev(accs) if len(accs) > 1 else 0.0}
    print(f"from scratch ({ProxyConfig().total_steps(data)} steps, {seeds} seeds), whole validation split: NetAdapt "
          f"{100 * scratch['netadapt']['mean']:.2f} +- {100 * scratch['netadapt']['std']:.2f} %, uniform "
          f"{100 * scratch['uniform']['mean']:.2f} +- {100 * scratch['uniform']['std']:.2f} %")
    return {"budget_ratio": budget_ratio, "initial_latency_ms": result.initial_latency_ms,
            "netadapt": {"status": result.status, "latency_ms": result.latency_ms, "iterations": result.iterations,
                         "spec_hash": final.hash, "blocks": [[b.expansion_channels, b.out_channels]
                                                             for b in final.blocks],
                         "stem": final.stem.out_channels, "wall_s": round(netadapt_s, 1),
                         "accuracy_run_val_subset": result.accuracy},
            "uniform": {"width": width, "latency_ms": uniform_ms, "spec_hash": uniform.hash},
            "finetuned_same_budget": {"steps": steps, **tuned}, "from_scratch": scratch,
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
