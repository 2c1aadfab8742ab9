"""NetAdapt benchmarks: the step rule, NetAdapt vs a uniform width multiplier at equal latency, and
the noise of NetAdapt's selection.

    python -m experiments.bench_netadapt [--part cuts|compare|noise|all] [--profile cpu|gpu]
        [--run-dir runs/bench_netadapt] [--budget-ratio 0.8] [--seeds 3] [--step-ratio 0.01]
        [--noise-steps 0,10,30] [--noise-truth-steps 200] [--data default] [--out results/bench_netadapt.json]

Every training runs on the accuracy signal of :func:`proxytask.profiles.signal` (``--profile``;
``cpu``: 48 px crops at 64 px, 1.5 epochs, channels-last), the one the search optimises. Reported
accuracies are on the TEST split (nothing selects on it), the validation split beside them.

``cuts`` (no training): for MobileNetV3-Small and -Large on ``pixel1`` and step targets of 0.5 %,
1 % and 2 % of their latency, every feasible proposal's predicted latency cut must lie in
[step target, step target + the latency of one 8-channel group of the shrunk layer at the chosen
width] (the group's latency is the cut at the chosen width minus the cut one group wider). Then
the same along the trajectory of the NetAdapt run of ``compare`` (each iteration's chosen
proposal), and the final spec must meet the budget.

``compare``: NetAdapt (defaults of ``python -m netadapt.run`` with ``--profile``: delta =
``--step-ratio`` of the latency, T = 30 short fine-tune steps, proposals scored on 512 validation
images, select by ratio) shrinks V3-Small to ``--budget-ratio`` of its predicted pixel1 latency,
starting from V3-Small pre-trained on the signal. The uniform baseline is ``scale_width(V3-Small,
w)`` (keeping V3-Small's residuals, :func:`uniform_spec`); make_divisible makes its latency jump
with w, so no multiplier matches NetAdapt's latency exactly: the two nearest on a 0.005 grid (the
slowest faster than NetAdapt's result, the fastest slower) are trained, and the baseline at
NetAdapt's predicted latency is their accuracy interpolated linearly in predicted latency
(:func:`interpolate_at`, seed by seed). Two ways, ``--seeds`` seeds each:

* trained from scratch with the signal's schedule (``train_child``, seeds 0, 1, ...): the
  architecture alone. This is the ``verdict``: NetAdapt's mean test accuracy minus the
  interpolated uniform mean, the seeds' standard deviations of both, and whether NetAdapt >= uniform;
* fine-tuned with the same budget: each uniform network inherits the same pre-trained weights
  (largest-L2-norm filters, :func:`netadapt.weights.inherit`) and is fine-tuned for as many steps
  as NetAdapt's final network got in total (T per iteration along its path + the long-term
  fine-tune), with NetAdapt's fine-tune learning rate and schedule, one fine-tune seed per
  ``--seeds`` (the first is the seed of NetAdapt's long-term fine-tune); ``verdict_finetuned``
  compares these with NetAdapt's own final network (one run, no spread).

``noise`` (issue #13 item 2): is NetAdapt's choice signal or seed noise, and what T and evaluation
set make it signal? The first iteration's proposals of the run (``make_proposals`` on the
pre-trained V3-Small at delta = ``--step-ratio`` x its latency) each inherit the seed's weights
and are fine-tuned T steps for each T of ``--noise-steps``, twice: with the seed NetAdapt's first
iteration uses (seed A) and with another (seed B). Every trained proposal is scored (BN statistics
measured again) on the 512 validation images NetAdapt's proposals are scored on (its class-balanced
subset, ``val_size``) and on the whole validation split. Per (T, evaluation set), with the selection
metric m = (accuracy - parent accuracy) / |cut ms| (:func:`noise_statistics`): ``noise`` = the
standard deviation over proposals of m_A - m_B, divided by sqrt(2), i.e. the spread of one score
when only the seed changes (also in accuracy points); ``lead`` = best minus runner-up of the
per-proposal mean of m_A and m_B; ``lead_over_noise``; ``winner_agrees`` (seeds A and B choose the
same proposal); ``spread`` = the standard deviation of the mean metric across proposals. T = 0
scores a proposal right after it inherits the weights (BN statistics measured again, no training;
``netadapt.run --finetune-steps 0``). The ground truth (``--noise-truth-steps``, default 200):
every proposal fine-tuned that long (seed A, whole validation split); per row, ``truth_spearman``
is the Spearman between the T score and that long-term metric, and ``winner_truth_rank`` where
the T winner ranks after it (1 = best), i.e. whether a short score predicts what NetAdapt is after.
The recommendation is the cheapest (T, then evaluation set) whose lead exceeds its noise. The seed
is the compare run's ``seed.pt`` (pre-trained the way NetAdapt's seed step does when absent).

The NetAdapt run lives in ``--run-dir`` and resumes if the benchmark is run again; every other
training runs on the project's one training grid (:mod:`proxytask.grid`: two spawned processes,
one thread each), its result journaled as it finishes in ``RUN_DIR/bench_trainings.jsonl``, so a
rerun redoes only the missing ones; from-scratch trainings use the signal's own seeds
(``proxy.seed``, ``proxy.seed + 1``, ...) and are keyed by the resolved signal. The output JSON
(``--out``) keeps the parts it already holds; ``provenance`` records, per part, the command and
the seconds that made it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

from jobs.atomic import atomic_write_text
from jobs.jsonio import finite
from jobs.stats import finite_values, interpolate, mean_sd
from proxytask.grid import Shared, grid_key, grid_seeds, train_one
from latency import predict_ms
from netadapt.selection import noise_statistics
from search_spaces import load_spec
from search_spaces.transforms import scale_width

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "experiments" / "specs"
CACHE_NAME = "bench_trainings.jsonl"
CONCURRENCY = 2  # trainings at once (1 CPU each): the 2-core machine
NOISE_SEED_OFFSET = 50_021  # seed B = seed A + this (seed A: what NetAdapt's first iteration uses)
FINETUNE_SEED_OFFSET = 100_003  # NetAdapt's long-term fine-tune seed = its seed + this


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
    final_ms = f"{result['final_latency_ms']:.3f} ms" if final else "none yet"
    print(f"trajectory of {run_dir}: {len(rows)} iterations, every chosen cut within [target, target + one group]: "
          f"{result['all_within']}; final {final_ms} vs budget {seed['budget_ms']:.3f} ms: "
          f"meets it: {result['final_meets_budget']}")
    return result


# --------------------------------------------------------------------------- pure statistics
def summary(values) -> dict:
    """{"accuracies": the finite values, "mean", "std" (sample; 0.0 for one value), "n"}; mean None if none."""
    ok = finite_values(values)
    mean, std = mean_sd(ok)
    return {"accuracies": ok, "n": len(ok), "mean": mean, "std": std}


def interpolate_at(latency_ms: float, low: tuple[float, float], high: tuple[float, float]) -> float:
    """The accuracy at ``latency_ms`` on the straight line through ``low`` = (latency, accuracy) of
    the faster network and ``high`` = (latency, accuracy) of the slower one. ``latency_ms`` must lie
    between the two latencies (interpolation, never extrapolation); equal latencies give the mean."""
    (lat_lo, acc_lo), (lat_hi, acc_hi) = low, high
    if lat_lo > lat_hi:
        raise ValueError(f"interpolate_at: low latency {lat_lo} is above high latency {lat_hi}")
    tolerance = 1e-9 * max(1.0, abs(lat_hi))
    if not lat_lo - tolerance <= latency_ms <= lat_hi + tolerance:
        raise ValueError(f"interpolate_at: {latency_ms} ms is outside [{lat_lo}, {lat_hi}] ms (no extrapolation)")
    if lat_hi - lat_lo <= tolerance:
        return (acc_lo + acc_hi) / 2
    return interpolate([low, high], latency_ms, tolerance=tolerance)


def equal_latency_verdict(latency_ms: float, netadapt: list, below: tuple[float, list] | None,
                          above: tuple[float, list] | None) -> dict:
    """NetAdapt vs the uniform baseline interpolated at NetAdapt's ``latency_ms``.

    ``netadapt``: its accuracies, one per seed; ``below`` / ``above``: (predicted latency, accuracies
    per seed, same seeds in the same order, None where a run failed) of the nearest uniform
    multiplier faster / slower than NetAdapt's result, or None when there is none. The uniform
    accuracy is interpolated seed by seed (the mean of those is the interpolation of the means);
    ``difference`` = NetAdapt's mean minus the interpolated mean."""
    out = {"latency_ms": latency_ms, "netadapt": summary(netadapt),
           "uniform_below": summary(below[1]) if below else None, "uniform_above": summary(above[1]) if above else None,
           "uniform_interpolated": None, "weight_above": None, "difference": None, "netadapt_ge_uniform": None}
    if below is None or above is None:
        missing = "faster" if below is None else "slower"
        out["statement"] = f"no uniform multiplier {missing} than NetAdapt's result: cannot interpolate"
        return out
    (lat_lo, accs_lo), (lat_hi, accs_hi) = below, above
    pairs = [(a, b) for a, b in zip(accs_lo, accs_hi) if a is not None and b is not None
             and math.isfinite(a) and math.isfinite(b)]
    out["weight_above"] = 0.5 if lat_hi - lat_lo <= 0 else (latency_ms - lat_lo) / (lat_hi - lat_lo)
    uniform = summary([interpolate_at(latency_ms, (lat_lo, a), (lat_hi, b)) for a, b in pairs])
    out["uniform_interpolated"] = uniform
    if out["netadapt"]["mean"] is None or uniform["mean"] is None:
        out["statement"] = "no finished runs to compare"
        return out
    out["difference"] = out["netadapt"]["mean"] - uniform["mean"]
    out["netadapt_ge_uniform"] = bool(out["difference"] >= 0)
    out["statement"] = f"NetAdapt >= uniform: {out['netadapt_ge_uniform']}"
    return out


def cheapest_above_noise(rows: list[dict]) -> dict | None:
    """The row with the smallest (steps, eval_images) whose ``lead_over_noise`` exceeds 1, or None."""
    good = [r for r in rows if r.get("lead_over_noise") is not None and r["lead_over_noise"] > 1]
    return min(good, key=lambda r: (r["steps"], r["eval_images"])) if good else None


# --------------------------------------------------------------------------- training set-up
def bench_config(run_dir: Path, budget_ratio: float = 0.8, profile: str = "cpu", data: str = "default",
                 step_ratio: float = 0.01, **changes):
    """The NetAdapt run of ``compare`` (V3-Small on pixel1, the defaults of ``netadapt.run``); on
    the ``gpu`` profile two proposals share the GPU."""
    from netadapt.config import NetAdaptConfig

    gpus = 0.5 if profile == "gpu" else 0.0
    settings = dict(spec=str(SPECS / "mobilenet_v3_small.yaml"), budget_ratio=budget_ratio, step_ratio=step_ratio,
                    out=str(run_dir), resume=Path(run_dir).exists(), data=data, profile=profile,
                    gpus_per_proposal=gpus, progress=False)
    return NetAdaptConfig(**{**settings, **changes})


def _profile(config) -> str:
    from proxytask.profiles import resolve_profile

    return resolve_profile(config.profile, config.gpus_per_proposal)


def netadapt_training(config):
    """(whole data, data with NetAdapt's validation subset, proxy) exactly as NetAdapt's run of
    ``config`` trains: the signal of its profile with NetAdapt's proxy overrides, one thread a task."""
    from netadapt.config import netadapt_signal

    sig = netadapt_signal(config)
    whole = sig.load(seed=config.seed)
    subset = sig.load(seed=config.seed, val_size=config.val_size) if config.val_size is not None else whole
    proxy = sig.proxy.replace(seed=config.seed, threads=max(1, int(config.cpus_per_proposal)))
    if config.gpus_per_proposal > 0 and "device" not in config.proxy_overrides:
        proxy = proxy.replace(device="cuda")
    return whole, subset, proxy


def scratch_signal(config):
    """The signal of ``config``'s profile as the search trains children (no NetAdapt overrides)."""
    from proxytask.profiles import signal

    overrides = dict(config.proxy_overrides)
    if config.gpus_per_proposal <= 0 and "device" not in overrides:
        overrides["device"] = "cpu"
    return signal(_profile(config), data=config.data, overrides=overrides)


def cache_tag(config) -> str:
    """What the cache keys of ``config``'s trainings share: profile, data and any proxy overrides."""
    tag = f"{_profile(config)}:{config.data_name}"
    if config.proxy_overrides or config.proxy_resolution is not None:
        settings = json.dumps([config.proxy_overrides, config.proxy_resolution], sort_keys=True, default=str)
        tag += ":" + hashlib.sha256(settings.encode()).hexdigest()[:8]
    return tag


def fingerprint(state: dict) -> str:
    """12 hex digits identifying a state dict's tensors (cache keys of trainings that start from it)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def seed_weights(config, base, data, proxy, log: Callable[[str], None] = print) -> dict:
    """The pre-trained seed of the run in ``config.out``: its ``seed.pt``, or pre-trained now as
    NetAdapt's seed step does (the signal's schedule, one thread) and saved there."""
    from proxytask.train import TrainingDiverged, torch_threads, train
    from netadapt.finetune import load_model, score
    from netadapt.weights import load_weights, save_weights

    path = Path(config.out) / "seed.pt"
    if path.exists():
        return load_weights(path)
    log(f"no {path}: pre-training {base.name} on {data.name} ({proxy.total_steps(data)} steps), as NetAdapt's "
        "seed step does")
    with torch_threads(proxy.threads):
        model = load_model(base, None, data, proxy)
        try:
            train(model, data, proxy)
        except TrainingDiverged as err:
            raise SystemExit(f"error: pre-training the seed diverged: {err}") from None
        score(model, data, proxy)  # BN statistics measured again, as NetAdapt saves its seed
    save_weights(model.state_dict(), path)
    return load_weights(path)


# --------------------------------------------------------------------------- grid jobs
def _finetune_task(spec_dict: dict, parent_dict: dict, parent_state: dict, data, config_dict: dict,
                   subset_val=None, test: bool = True, train_steps: int | None = None) -> dict:
    """Inherit the parent's weights (largest L2 norms), fine-tune as ``config_dict`` says (a
    :func:`netadapt.finetune.finetune_config`), measure BN statistics again and score: the whole
    validation split, the test split (``test``) and ``subset_val`` = (images, labels) if given."""
    from proxytask.train import ProxyConfig, TrainingDiverged, evaluate, torch_threads
    from netadapt.finetune import load_model, train_and_score, trained_spec
    from netadapt.weights import inherit
    from search_spaces import ArchSpec

    start, cpu_start = time.perf_counter(), time.process_time()
    out = {"status": "ok", "reason": ""}
    try:
        config = ProxyConfig.from_dict(config_dict)
        spec, parent = ArchSpec.from_dict(spec_dict), ArchSpec.from_dict(parent_dict)
        with torch_threads(config.threads):
            model = load_model(spec, inherit(parent_state, trained_spec(parent, data, config),
                                             trained_spec(spec, data, config)), data, config)
            # BN statistics measured again before each score; train_steps=0: scored untrained (T = 0)
            scores = train_and_score(model, data, config, train_steps)
            out.update(accuracy_before=scores["accuracy_before"], val_accuracy=scores["accuracy_after"],
                       train_loss=scores["train_loss"])
            if test and data.test_y is not None:
                out["test_accuracy"] = evaluate(model, data, config, split="test")[0]
            if subset_val is not None:
                subset = dataclasses.replace(data, val_x=subset_val[0], val_y=subset_val[1])
                out["val_subset_accuracy"] = evaluate(model, subset, config, split="val")[0]
    except TrainingDiverged as err:
        out.update(status="diverged", reason=str(err))
    except Exception as err:  # recorded, not fatal
        out.update(status="error", reason=f"{type(err).__name__}: {err}")
    out.update(seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu_start)
    return out


def run_cached(jobs: dict, shared: dict, journal: Path, log: Callable[[str], None] = print) -> dict:
    """Run the ``jobs`` ({key: (function, args)}) that ``journal`` lacks with the project's one
    training grid (:func:`proxytask.grid.run_journaled`: :data:`CONCURRENCY` spawned processes,
    each result journaled as it ends); returns ``{key: result}`` for every job."""
    from proxytask.grid import journaled_results, run_journaled

    held = journaled_results(journal) if Path(journal).exists() else {}
    todo = [key for key in jobs if key not in held]
    if todo:
        log(f"{len(todo)} training(s) to run ({len(jobs) - len(todo)} journaled in {journal})")
    count = [0]

    def show(key: str, result: dict) -> None:
        count[0] += 1
        shown = result.get("test_accuracy", result.get("val_accuracy"))
        figure = f"{100 * shown:.2f} %" if isinstance(shown, float) else result["status"]
        log(f"  [{count[0]}/{len(todo)}] {key[:100]}: {figure} ({result.get('seconds') or 0:.1f} s)")

    return run_journaled(jobs, journal=journal, shared=shared, workers=CONCURRENCY, on_result=show)


# --------------------------------------------------------------------------- (2) NetAdapt vs uniform
def uniform_spec(spec, width: float):
    """``scale_width(spec, width)`` with the topology of ``spec``: a block that had no residual keeps
    none where rounding makes its input and output widths equal (as NetAdapt's proposals do)."""
    scaled = scale_width(spec, width)
    blocks = tuple(dataclasses.replace(b, skip=False) if scaled.has_residual(i) and not spec.has_residual(i) else b
                   for i, b in enumerate(scaled.blocks))
    return scaled.replace(blocks=blocks)


def neighbour_widths(spec, latency_ms: float, target: str = "pixel1") -> dict:
    """On a 0.005 grid of width multipliers from 0.5 to 1.0: the one whose predicted latency is
    closest to ``latency_ms`` from below, and from above (make_divisible makes the latency jump)."""
    below = above = None
    for i in range(100, 201):
        width = i / 200
        ms = predict_ms(uniform_spec(spec, width), target)
        if ms <= latency_ms and (below is None or ms > below[1]):
            below = (width, ms)
        if ms >= latency_ms and (above is None or ms < above[1]):
            above = (width, ms)
    return {k: v for k, v in (("below", below), ("above", above)) if v is not None}


def _fmt(s: dict | None, spread: bool = True) -> str:
    if not s or s.get("mean") is None:
        return "n/a"
    return f"{100 * s['mean']:.2f}" + (f" +- {100 * s['std']:.2f}" if spread and s["n"] > 1 else "") + " %"


def _print_verdict(title: str, v: dict, uniform: dict) -> None:
    sides = ", ".join(f"{side} x{uniform[side]['width']:g} ({uniform[side]['latency_ms']:.3f} ms) "
                      f"{_fmt(v[f'uniform_{side}'])}" for side in ("below", "above") if side in uniform)
    diff = "n/a" if v["difference"] is None else f"{100 * v['difference']:+.2f} points"
    print(f"{title}: NetAdapt {_fmt(v['netadapt'])} vs uniform interpolated at {v['latency_ms']:.3f} ms "
          f"{_fmt(v['uniform_interpolated'])} [{sides}]; difference {diff}; {v['statement']}")


def _score_run(config, final, base, data, proxy, seed_state, long_seed: int) -> dict:
    """NetAdapt's final network and its seed scored as NetAdapt left them (validation, test)."""
    from proxytask.train import torch_threads
    from netadapt.finetune import load_model, score
    from netadapt.weights import load_weights

    scored = {}
    with torch_threads(proxy.threads):
        for name, spec, state, seed in (("netadapt", final, load_weights(Path(config.out) / "final.pt"), long_seed),
                                        ("seed_v3_small", base, seed_state, config.seed)):
            model = load_model(spec, state, data, proxy)
            val, _ = score(model, data, proxy.replace(seed=seed))
            scored[name] = {"val_accuracy": val, "test_accuracy": score_test(model, data, proxy)}
    return scored


def _compare_jobs(config, networks: dict, base, sig, scratch_data, data, proxy, seed_state, seeds: int, steps: int,
                  long_seed: int) -> tuple[dict, dict]:
    """The trainings of ``compare``: each network from scratch on the signal's own seeds, and each
    uniform network fine-tuned from the seed with NetAdapt's budget. Returns (jobs, keys)."""
    from netadapt.finetune import finetune_config

    tag, parent_fp = cache_tag(config), fingerprint(seed_state)
    jobs, keys = {}, {}
    scratch_seeds = grid_seeds(sig, seeds)  # the signal's own seeds: proxy.seed, proxy.seed + 1, ...
    for name, spec in networks.items():
        for s in range(seeds):
            key = grid_key(sig, scratch_data.name, spec.hash, scratch_seeds[s])
            keys[("scratch", name, s)] = key
            jobs[key] = (train_one, (spec.to_dict(), scratch_seeds[s], Shared("scratch_data"),
                                     sig.proxy.replace(threads=1)))
            if name == "netadapt":
                continue
            ft = finetune_config(proxy, data, steps, config.finetune_lr, long_seed + s)
            key = f"finetuned/{tag}/{parent_fp}/{spec.hash}/T{steps}/lr{config.finetune_lr:g}/s{long_seed + s}"
            keys[("finetuned", name, s)] = key
            jobs[key] = (_finetune_task, (spec.to_dict(), base.to_dict(), Shared("seed_state"), Shared("data"),
                                          dataclasses.asdict(ft)))
    return jobs, keys


def _compare_figures(networks: dict, cache: dict, keys: dict, seeds: int, uniform: dict, latency_ms: float,
                     scored: dict) -> tuple[dict, dict, dict]:
    """(scratch, finetuned, verdicts): accuracy summaries per network and split, and the verdicts
    at equal latency, from scratch and fine-tuned, on the test and validation splits."""
    def accuracies(kind: str, name: str, split: str) -> list:
        runs = [cache.get(keys[(kind, name, s)]) for s in range(seeds)]
        return [r.get(f"{split}_accuracy") if r and r["status"] == "ok" else None for r in runs]

    lat = {side: ms for side, (_, ms, _) in uniform.items()}
    scratch, finetuned, verdicts = {}, {}, {}
    for split in ("test", "val"):
        for name in networks:
            scratch.setdefault(name, {})[split] = summary(accuracies("scratch", name, split))
            if name != "netadapt":
                finetuned.setdefault(name, {})[split] = summary(accuracies("finetuned", name, split))
        for kind, ours in (("scratch", accuracies("scratch", "netadapt", split)),
                           ("finetuned", [scored["netadapt"][f"{split}_accuracy"]])):
            side = {k: (lat[k], accuracies(kind, f"uniform_{k}", split)) if k in lat else None
                    for k in ("below", "above")}
            verdicts[(kind, split)] = equal_latency_verdict(latency_ms, ours, side["below"], side["above"])
    for split in ("test", "val"):
        scratch.setdefault("uniform_interpolated", {})[split] = verdicts[("scratch", split)]["uniform_interpolated"]
        finetuned.setdefault("uniform_interpolated", {})[split] = verdicts[("finetuned", split)]["uniform_interpolated"]
    for name in ("netadapt", "seed_v3_small"):
        finetuned[name] = {split: summary([scored[name][f"{split}_accuracy"]]) for split in ("test", "val")}
    return scratch, finetuned, verdicts


def compare(config, seeds: int = 3, log: Callable[[str], None] = print) -> dict:
    """NetAdapt vs uniform width at equal predicted latency (see the module docstring)."""
    from netadapt.algorithm import run_netadapt
    from netadapt.weights import load_weights

    run_dir, profile = Path(config.out), _profile(config)
    base = load_spec(config.spec) if isinstance(config.spec, str) else config.spec
    start = time.perf_counter()
    result = run_netadapt(config)
    netadapt_s = time.perf_counter() - start
    log(result.message)
    final = load_spec(run_dir / "final.yaml")
    uniform = {side: (width, ms, uniform_spec(base, width))
               for side, (width, ms) in neighbour_widths(base, result.latency_ms, config.target).items()}
    log(f"NetAdapt: {result.latency_ms:.3f} ms ({base.name} {result.initial_latency_ms:.3f} ms); uniform multipliers "
        "nearest in latency: " + ", ".join(f"{side} x{w:g} = {ms:.3f} ms" for side, (w, ms, _) in uniform.items()))
    data, _, proxy = netadapt_training(config)  # the whole validation split
    sig = scratch_signal(config)
    scratch_data = data if sig.proxy.resolution == proxy.resolution else sig.load(seed=config.seed)
    steps = result.iterations * config.finetune_steps + config.long_finetune_steps
    long_seed = config.seed + FINETUNE_SEED_OFFSET
    seed_state = load_weights(run_dir / "seed.pt")
    scored = _score_run(config, final, base, data, proxy, seed_state, long_seed)
    networks = {"netadapt": final, **{f"uniform_{side}": spec for side, (_, _, spec) in uniform.items()}}
    jobs, keys = _compare_jobs(config, networks, base, sig, scratch_data, data, proxy, seed_state, seeds, steps,
                               long_seed)
    cache = run_cached(jobs, {"seed_state": seed_state, "data": data, "scratch_data": scratch_data},
                       run_dir / CACHE_NAME, log=log)
    scratch, finetuned, verdicts = _compare_figures(networks, cache, keys, seeds, uniform, result.latency_ms, scored)
    uniform_out = {side: {"width": w, "latency_ms": ms, "spec_hash": spec.hash,
                          "blocks_expansion_out": [[b.expansion_channels, b.out_channels] for b in spec.blocks]}
                   for side, (w, ms, spec) in uniform.items()}
    verdict = dict(verdicts[("scratch", "test")], basis=f"trained from scratch on the {profile} signal, {seeds} seeds, "
                   "test split", validation=verdicts[("scratch", "val")])
    verdict_ft = dict(verdicts[("finetuned", "test")], basis=f"fine-tuned {steps} steps from the pre-trained seed; "
                      f"NetAdapt one run, uniform {seeds} fine-tune seeds; test split",
                      validation=verdicts[("finetuned", "val")])
    _print_compare(scratch, finetuned, verdicts, verdict, verdict_ft, uniform_out,
                   f"from scratch ({sig.proxy.total_steps(scratch_data)} steps, {seeds} seeds)",
                   f"fine-tuned with the same budget ({steps} steps from the same pre-trained {base.name})")
    return {"budget_ratio": config.budget_ratio, "profile": profile, "initial_latency_ms": result.initial_latency_ms,
            "netadapt": {"status": result.status, "latency_ms": result.latency_ms, "iterations": result.iterations,
                         "spec_hash": final.hash, "stem": final.stem.out_channels,
                         "blocks_expansion_out": [[b.expansion_channels, b.out_channels] for b in final.blocks],
                         "resumed": config.resume, "wall_s_this_invocation": round(netadapt_s, 1),
                         "accuracy_run_val_subset": result.accuracy},
            "uniform": uniform_out, "verdict": verdict, "verdict_finetuned": verdict_ft,
            "from_scratch": {"steps": sig.proxy.total_steps(scratch_data), "seeds": seeds, "accuracy": scratch},
            "finetuned_same_budget": {"steps": steps, "seeds": seeds, "accuracy": finetuned},
            "settings": {"finetune_steps": config.finetune_steps, "long_finetune_steps": config.long_finetune_steps,
                         "step_ratio": config.step_ratio, "select": config.select, "data": config.data_name,
                         "signal": sig.describe(), "val_images": len(data.val_y),
                         "test_images": None if data.test_y is None else len(data.test_y)}}


def _print_compare(scratch, finetuned, verdicts, verdict, verdict_ft, uniform_out, scratch_text, finetune_text) -> None:
    print(f"{scratch_text}, test split (validation): " +
          ", ".join(f"{k} {_fmt(v['test'])} ({_fmt(v['val'])})" for k, v in scratch.items()))
    print(f"{finetune_text}, test split (validation): " +
          ", ".join(f"{k} {_fmt(v['test'])} ({_fmt(v['val'])})" for k, v in finetuned.items()))
    _print_verdict("VERDICT (from scratch, test split)", verdict, uniform_out)
    _print_verdict("  validation split", verdicts[("scratch", "val")], uniform_out)
    _print_verdict("fine-tuned, test split", verdict_ft, uniform_out)


def score_test(model, data, proxy) -> float | None:
    """Top-1 on the test split of a model whose BN statistics were just measured, None without one."""
    from proxytask.train import evaluate

    return None if data.test_y is None else evaluate(model, data, proxy, split="test")[0]


# --------------------------------------------------------------------------- (3) selection noise
def rank_agreement(scores: dict, truth: dict) -> dict:
    """Does a short score rank proposals as their long-term result does? ``scores`` / ``truth``:
    {proposal index: metric}. ``spearman`` over the proposals both have; ``winner_truth_rank``: the
    rank (1 = best) in ``truth`` of the proposal ``scores`` picks (ties to the lower index)."""
    from scipy.stats import spearmanr

    keys = sorted(k for k in scores if k in truth and scores[k] is not None and truth[k] is not None
                  and math.isfinite(scores[k]) and math.isfinite(truth[k]))
    if len(keys) < 3:
        return {"spearman": None, "winner_truth_rank": None}
    rho = spearmanr([scores[k] for k in keys], [truth[k] for k in keys]).statistic
    winner = max(keys, key=lambda k: scores[k])
    order = sorted(keys, key=lambda k: -truth[k])
    return {"spearman": None if not math.isfinite(rho) else float(rho), "winner_truth_rank": order.index(winner) + 1}


def _noise_jobs(config, base, whole, feasible, seeds, steps, truth_steps: int, evals: dict, seed_state: dict,
                proxy) -> tuple[dict, dict, dict]:
    """The fine-tunes of the noise part: each feasible proposal at each T and seed, and (``truth_steps``)
    each fine-tuned long with seed A. Returns (jobs, keys by (T, proposal, seed), truth keys by proposal)."""
    from netadapt.finetune import finetune_config

    tag, parent_fp = cache_tag(config), fingerprint(seed_state)
    jobs, keys, truth_keys = {}, {}, {}
    bn = proxy.bn_recalibration_batches
    for t in steps:
        for p in feasible:
            for s in seeds:
                ft = finetune_config(proxy, whole, max(1, t), config.finetune_lr, s)
                key = (f"noise/{tag}/{parent_fp}/{p.spec.hash}/T{t}/lr{config.finetune_lr:g}/s{s}/v{evals.get('subset')}"
                       f"/bn{bn}")
                keys[(t, p.index, s)] = key
                jobs[key] = (_finetune_task, (p.spec.to_dict(), base.to_dict(), Shared("seed_state"), Shared("data"),
                                              dataclasses.asdict(ft), Shared("subset_val"), False, t))
    if truth_steps:  # the ground truth: every proposal fine-tuned long (seed A), whole validation split
        for p in feasible:
            ft = finetune_config(proxy, whole, truth_steps, config.finetune_lr, seeds[0])
            key = f"truth/{tag}/{parent_fp}/{p.spec.hash}/T{truth_steps}/lr{config.finetune_lr:g}/s{seeds[0]}/bn{bn}"
            truth_keys[p.index] = key
            jobs[key] = (_finetune_task, (p.spec.to_dict(), base.to_dict(), Shared("seed_state"), Shared("data"),
                                          dataclasses.asdict(ft), None, False, truth_steps))
    return jobs, keys, truth_keys


def _noise_row(t: int, ev: str, n: int, feasible, seeds, runs: dict, parent: dict, truth: dict) -> tuple[dict, dict]:
    """One row of the noise table (T, evaluation set) and its per-proposal detail."""
    from netadapt.selection import selection_metric

    field = {"subset": "val_subset_accuracy", "whole": "val_accuracy"}[ev]
    seconds = finite_values(r.get("seconds") for r in runs.values() if r)
    acc = {s: {p.index: runs[(p.index, s)][field] for p in feasible
               if runs[(p.index, s)] and runs[(p.index, s)]["status"] == "ok"} for s in seeds}
    metric = {s: {i: selection_metric(a, parent[ev], next(p.cut_ms for p in feasible if p.index == i), "ratio")
                  for i, a in acc[s].items() if a is not None} for s in seeds}
    stats = noise_statistics(metric[seeds[0]], metric[seeds[1]], acc[seeds[0]], acc[seeds[1]])
    mean_metric = {i: (metric[seeds[0]][i] + metric[seeds[1]][i]) / 2 for i in metric[seeds[0]] if i in metric[seeds[1]]}
    agreement = rank_agreement(mean_metric, truth) if truth else {"spearman": None, "winner_truth_rank": None}
    stats.update(truth_spearman=agreement["spearman"], winner_truth_rank=agreement["winner_truth_rank"])
    row = {"steps": t, "eval": ev, "eval_images": n, "parent_accuracy": parent[ev],
           "seconds_per_finetune": statistics.fmean(seconds) if seconds else None, **stats,
           "noise_points": None if stats["noise_accuracy"] is None else 100 * stats["noise_accuracy"]}
    detail = {"steps": t, "eval": ev, "proposals": [
        {"index": p.index, "name": p.name, "channels": p.channels, "cut_ms": p.cut_ms,
         "accuracy": [acc[s].get(p.index) for s in seeds], "metric": [metric[s].get(p.index) for s in seeds]}
        for p in feasible]}
    return row, detail


def _print_noise(rows: list[dict], best: dict | None, feasible, seeds, base, truth: dict, truth_steps: int) -> str:
    """Print the noise table; returns the recommendation in words."""
    names = {p.index: f"{p.name} {p.channels}" for p in feasible}
    print(f"NetAdapt selection noise: first iteration of {base.name}, {len(feasible)} proposals, seeds {seeds[0]} / "
          f"{seeds[1]}; metric = (accuracy - parent) / |cut ms| in points per ms")
    print(f"{'T':>5} {'eval':>6} {'noise pts':>9} {'noise m':>8} {'lead m':>8} {'lead/noise':>10} {'A=B':>5} "
          f"{'spread m':>8} {'s/tune':>6} {'rho_T':>6} {'rank':>4}  winner (mean)")

    def cell(value, scale=100.0, width=8, digits=3):
        return f"{'n/a':>{width}}" if value is None else f"{scale * value:>{width}.{digits}f}"

    for r in rows:
        print(f"{r['steps']:>5} {r['eval_images']:>6} {cell(r['noise_accuracy'], width=9, digits=2)} "
              f"{cell(r['noise'])} {cell(r['lead'])} {cell(r['lead_over_noise'], 1.0, 10, 2)} "
              f"{str(r['winner_agrees']):>5} {cell(r['spread'])} {cell(r['seconds_per_finetune'], 1.0, 6, 1)} "
              f"{cell(r['truth_spearman'], 1.0, 6, 2)} {r['winner_truth_rank'] or 'n/a':>4}  "
              f"{names.get(r['winner_mean'], 'n/a')}")
    if truth:
        print(f"rho_T: Spearman between the mean score at T and the metric after a {truth_steps}-step fine-tune of "
              f"every proposal (seed A, whole validation split); rank: where the T winner ranks after it (1 = best)")
    if best is not None:
        message = (f"cheapest setting whose lead exceeds its noise: T = {best['steps']}, {best['eval_images']} "
                   f"validation images (lead {best['lead_over_noise']:.2f} x noise)")
    else:
        message = ("no setting tried has a lead above its noise: NetAdapt's choice is within the seed noise; "
                   "try a larger T (--noise-steps) or a larger evaluation set")
    print(message)
    return message


def _parent_accuracy(base, seed_state, whole, subset, proxy, evals: dict) -> dict:
    """The parent's accuracy on each evaluation set, as NetAdapt's seed step scores it."""
    from proxytask.train import evaluate, torch_threads
    from netadapt.finetune import load_model, score

    with torch_threads(proxy.threads):
        model = load_model(base, seed_state, whole, proxy)
        parent = {"whole": score(model, whole, proxy)[0]}
        if "subset" in evals:
            parent["subset"] = evaluate(model, subset, proxy, split="val")[0]
    return parent


def noise(config, steps: tuple[int, ...] = (10, 50), log: Callable[[str], None] = print,
          seed_state: dict | None = None, truth_steps: int = 0) -> dict:
    """Seed noise of NetAdapt's first selection vs the lead of its winner (see the module docstring)."""
    from netadapt.proposals import make_proposals
    from netadapt.selection import selection_metric

    run_dir, profile = Path(config.out), _profile(config)
    base = config.spec if not isinstance(config.spec, str) else load_spec(config.spec)
    whole, subset, proxy = netadapt_training(config)
    if seed_state is None:
        seed_state = seed_weights(config, base, subset, proxy, log)
    latency = predict_ms(base, config.target)
    step_ms = config.step_ms if config.step_ms is not None else config.step_ratio * latency
    proposals = make_proposals(base, step_ms, config.target, config.kinds)
    feasible = [p for p in proposals if p.feasible]
    evals = {"whole": len(whole.val_y)}
    if len(subset.val_y) < len(whole.val_y):
        evals = {"subset": len(subset.val_y), **evals}
    parent = _parent_accuracy(base, seed_state, whole, subset, proxy, evals)
    seed_a = config.seed + 1  # NetAdapt's first iteration
    seeds = (seed_a, seed_a + NOISE_SEED_OFFSET)
    subset_val = (subset.val_x, subset.val_y) if "subset" in evals else None
    jobs, keys, truth_keys = _noise_jobs(config, base, whole, feasible, seeds, steps, truth_steps, evals, seed_state,
                                         proxy)
    log(f"noise: {len(feasible)} feasible proposals (step {step_ms:.4f} ms = {100 * step_ms / latency:.2f} % of "
        f"{latency:.3f} ms) x {len(steps)} T x 2 seeds = {len(jobs)} fine-tunes; parent accuracy "
        + ", ".join(f"{100 * parent[e]:.2f} % on {n} val images" for e, n in evals.items()))
    cache = run_cached(jobs, {"seed_state": seed_state, "data": whole, "subset_val": subset_val},
                       run_dir / CACHE_NAME, log=log)
    truth = {}
    for p in feasible:
        r = cache.get(truth_keys.get(p.index, ""))
        if r and r["status"] == "ok":
            truth[p.index] = selection_metric(r["val_accuracy"], parent["whole"], p.cut_ms, "ratio")
    rows, details = [], []
    for t in steps:
        runs = {(p.index, s): cache.get(keys[(t, p.index, s)]) for p in feasible for s in seeds}
        for ev, n in evals.items():
            row, detail = _noise_row(t, ev, n, feasible, seeds, runs, parent, truth)
            rows.append(row)
            details.append(detail)
    best = cheapest_above_noise(rows)
    message = _print_noise(rows, best, feasible, seeds, base, truth, truth_steps)
    return {"profile": profile, "spec": base.name, "latency_ms": latency, "step_ms": step_ms,
            "step_ratio": config.step_ratio if config.step_ms is None else None, "seeds": list(seeds),
            "finetune_lr": config.finetune_lr, "steps": list(steps), "proposals": len(feasible),
            "skipped_proposals": len(proposals) - len(feasible), "eval_images": evals, "parent_accuracy": parent,
            "metric_units": "accuracy (fraction) per ms of predicted latency cut; noise_points in accuracy points",
            "truth_steps": truth_steps or None, "truth_metric": truth or None,
            "table": rows, "recommendation": None if best is None else {
                "steps": best["steps"], "eval_images": best["eval_images"], "eval": best["eval"],
                "lead_over_noise": best["lead_over_noise"]},
            "message": message, "details": details}


def record_part(results: dict, key: str, make: Callable[[], object], command: str) -> dict:
    """``results`` with part ``key`` made now and its own ``provenance`` (the command and the
    seconds that made it); other parts keep theirs. A file written before per-part provenance
    keeps its one old ``command`` only as ``legacy_command`` (which part it made is unknown)."""
    results = dict(results)
    if "command" in results:
        results["legacy_command"] = {"command": results.pop("command"), "elapsed_s": results.pop("elapsed_s", None),
                                     "note": "one command recorded for several parts before per-part provenance"}
    start = time.perf_counter()
    results[key] = make()
    provenance = dict(results.get("provenance") or {})
    provenance[key] = {"command": command, "elapsed_s": round(time.perf_counter() - start, 1)}
    results["provenance"] = provenance
    return results


# --------------------------------------------------------------------------- the command line
def _steps_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of step counts (e.g. 10,50)")
    if not values or any(not 0 <= v <= 1_000_000 for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"{text!r}: give distinct step counts from 0 (scored untrained) to 1000000 "
                                         "(e.g. 0,10,50)")
    return tuple(sorted(values))


def main(argv=None) -> int:
    from proxytask import PROFILE_NAMES, SOURCE_KINDS
    from jobs.cli import ArgumentParser, check_data_and_out, integer, number

    argv = sys.argv[1:] if argv is None else list(argv)
    p = ArgumentParser(prog="python -m experiments.bench_netadapt",
                       description="NetAdapt benchmarks: the step rule, NetAdapt vs uniform width at equal latency, "
                       "the seed noise of NetAdapt's selection.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--part", choices=["cuts", "compare", "noise", "all"], default="all",
                   help="cuts: the step rule (no training); compare: NetAdapt vs uniform width; noise: the "
                   "selection noise; all: the three")
    p.add_argument("--profile", choices=PROFILE_NAMES, default="cpu", help="accuracy signal (proxytask.profiles)")
    p.add_argument("--run-dir", default="runs/bench_netadapt", help="the NetAdapt run of 'compare' (resumed) and "
                   "the cache of every other training")
    p.add_argument("--budget-ratio", type=number("a fraction", above=0, maximum=0.999999), default=0.8,
                   help="NetAdapt's latency budget as a fraction of V3-Small's predicted pixel1 latency")
    p.add_argument("--seeds", type=integer(1, "a number of seeds", 100), default=3,
                   help="seeds per network (from scratch, and fine-tunes of the uniform networks)")
    p.add_argument("--step-ratio", type=number("a fraction", above=0, maximum=0.999999), default=0.01,
                   help="NetAdapt's step target delta as a fraction of V3-Small's latency (compare and noise)")
    p.add_argument("--noise-steps", type=_steps_list, default="0,10,30",
                   help="short fine-tune steps T to measure the selection noise at, comma-separated (0: scored "
                   "right after inheriting the weights)")
    p.add_argument("--bn-batches", type=integer(1, "a number of batches", 10_000), default=None,
                   help="batches BN statistics are measured on before each score (default: NetAdapt's, "
                   "netadapt.config.DEFAULT_PROXY); e.g. 4 to see what 32 buys")
    p.add_argument("--noise-truth-steps", type=integer(0, "a number of steps", 1_000_000), default=200,
                   help="the ground truth of the noise part: every proposal fine-tuned this many steps; each T's "
                   "score is checked against it (Spearman, the rank of its winner); 0: none")
    p.add_argument("--data", default="default", help="proxy data source (proxytask.load_data)")
    p.add_argument("--out", default="results/bench_netadapt.json", help="results JSON (its other parts are kept)")
    a = p.parse_args(argv)
    check_data_and_out(a.data, str(Path(a.out).parent), SOURCE_KINDS)
    out = Path(a.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    changes = {"proxy_overrides": {"bn_recalibration_batches": a.bn_batches}} if a.bn_batches is not None else {}
    config = bench_config(Path(a.run_dir), a.budget_ratio, a.profile, a.data, a.step_ratio, **changes)
    config.check()
    args = sys.argv[1:] if argv is None else list(argv)
    command = "python -m experiments.bench_netadapt" + (" " + shlex.join(args) if args else "")
    parts = {"cuts": [("static_cuts", static_cuts)],
             "compare": [("compare", lambda: compare(config, a.seeds)),
                         ("trajectory_cuts", lambda: trajectory_cuts(Path(a.run_dir)))],
             "noise": [("noise", lambda: noise(config, a.noise_steps, truth_steps=a.noise_truth_steps))]}
    for part in (("cuts", "compare", "noise") if a.part == "all" else (a.part,)):
        for key, make in parts[part]:
            results = record_part(results, key, make, command)
            atomic_write_text(out, json.dumps(finite(results), indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
