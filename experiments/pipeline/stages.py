"""The paper's pipeline end to end: block-wise search -> NetAdapt -> Section 5 redesign -> MobileNetV3.

:func:`run_pipeline` is what ``python -m experiments.reproduce large|small`` calls. Stages, each
writing under ``OUT`` (default ``runs/reproduce_<network>``):

1. ``search/`` (``seed: search``): :func:`nas.runner.run_search` in the configured space
   (default ``mnasnet``: the pre-redesign form, original last stage, 32-filter ReLU stem) with
   the reward's ``w`` and a search target ``T_s`` (``auto``: see :func:`search_target_ms`), then
   NetAdapt's seed: the best child by reward among those NetAdapt can bring to its budget within
   its steps (:func:`choose_seed`, :func:`netadapt_reach`). With ``seed: mnasnet_a1`` (what the
   paper did for Large: its search found networks like MnasNet-A1) the search is skipped.
2. ``netadapt/``: NetAdapt on the seed, to a budget (``auto``: the final target plus what the
   redesign saves on *this* seed), so that after the redesign the network meets the target.
   Each iteration's choice is checked against the noise of a score (``history.csv``: ``noise``,
   ``lead``).
3. Section 5 (:func:`search_spaces.transforms.redesign`): efficient last stage, 16-filter h-swish
   stem, h-swish from the first 14x14 layer, SE fixed at exp/4 with a hard-sigmoid gate.
4. ``definition/``: the emitted MobileNetV3 (YAML spec, state dict, ONNX with a parity check,
   timm arch string); the equal-footing comparison: ours and the paper's network trained from
   scratch with the same signal, ``final_training.seeds`` seeds, accuracy on the test split, with
   the paper's network at ``final_training.widths`` as a reference curve (``comparison.png``,
   ``summary.json["comparison"]``); ``summary.md``: a layer-by-layer diff against Table 1 or 2,
   per-stage expansion ratios, where NetAdapt cut against where the paper's network differs from
   its seed, and MAdds / params / predicted latency of ours vs the paper's.

The run's state goes to ``OUT/pipeline.json`` after every stage (atomic rename): ``resume=True``
skips finished stages and lets the search and NetAdapt continue their own journals.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

from latency import predict_ms
from jobs.atomic import atomic_write_text
from jobs.jsonio import dumps, finite
from jobs.lock import run_lock
from search_spaces import ArchSpec, count_madds, count_params, load_spec, reference
from search_spaces.transforms import redesign

from .config import PipelineConfig

PRE_REDESIGN_DIR = Path(__file__).resolve().parents[1] / "specs_pre_redesign"
STAGES = ("search", "netadapt", "redesign", "definition")


class PipelineError(RuntimeError):
    """A stage could not go on; the message says which and why."""


def pre_redesign_reference(network: str) -> ArchSpec:
    """The paper's network before Section 5, as we reconstruct it (see the YAML comments)."""
    return load_spec(PRE_REDESIGN_DIR / f"mobilenet_v3_{network}_pre.yaml")


def redesign_saving_ms(spec: ArchSpec, target: str, **options) -> float:
    """Predicted latency the Section 5 redesign removes from ``spec`` (negative if it adds)."""
    return predict_ms(spec, target) - predict_ms(redesign(spec, **options), target)


def costs(spec: ArchSpec, target: str) -> dict:
    return {"madds_m": round(count_madds(spec) / 1e6, 2), "params_m": round(count_params(spec) / 1e6, 4),
            "latency_ms": round(predict_ms(spec, target), 3)}


# --------------------------------------------------------------------------- state
# The settings each stage reads: a resumed run refuses a change to those of a finished stage.
STAGE_SETTINGS = {
    "search": ("network", "target", "target_ms", "data", "seed", "random_seed", "search", "redesign", "netadapt"),
    "netadapt": ("network", "target", "target_ms", "data", "seed", "random_seed", "search", "redesign", "netadapt"),
    "redesign": ("network", "redesign"),
    "definition": ("network", "target", "data", "random_seed", "final_training", "export"),
}


def with_new_defaults(saved: dict) -> dict:
    """A config saved in ``pipeline.json``, with the defaults of the settings added since it was
    written (``search.signal``: ``scratch``, ...): a run started before them resumes unchanged."""
    from .config import DEFAULTS

    out = {key: saved.get(key, value) for key, value in DEFAULTS.items()}
    for key, value in DEFAULTS.items():  # the sections: their own settings (proxy, options: as saved)
        if isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = {**value, **out[key]}
    return out


def _changes(before: dict, after: dict, keys: list[str], limit: int = 4) -> str:
    """``search.signal: 'scratch' -> 'supernet'``: the changed settings among ``keys``, a section's by
    their dotted names."""
    items = []
    for key in keys:
        old, new = before.get(key), after.get(key)
        if isinstance(new, dict) and isinstance(old, dict):
            items += [(f"{key}.{k}", old.get(k), new.get(k)) for k in {**old, **new} if old.get(k) != new.get(k)]
        else:
            items.append((key, old, new))
    text = ", ".join(f"{name}: {old!r} -> {new!r}"[:120] for name, old, new in items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


class RunState:
    """``OUT/pipeline.json``: the config and every finished stage's results, rewritten atomically.

    A resumed run may change the settings of stages that have not finished (e.g. the final
    training after a kill in it); changing those of a finished stage is refused.
    """

    def __init__(self, out: Path, config: PipelineConfig, resume: bool):
        self.path = out / "pipeline.json"
        previous = json.loads(self.path.read_text()) if self.path.exists() else None
        if previous is not None and not resume:
            raise PipelineError(f"out: {out} already holds a pipeline run; pass resume (--resume) to continue it "
                                "or choose another out")
        new = config.to_dict()
        if previous is not None:
            before = with_new_defaults(previous["config"])
            for stage in previous["stages"]:
                changed = [k for k in STAGE_SETTINGS[stage] if before.get(k) != new[k]]
                if changed:
                    raise PipelineError(f"resume: {', '.join(changed)} changed since the {stage} stage finished "
                                        f"({_changes(before, new, changed)}); resume with the same "
                                        "settings or choose another out")
        self.data = {"config": new, "stages": previous["stages"] if previous else {}}
        self.save()

    def done(self, stage: str) -> dict | None:
        return self.data["stages"].get(stage)

    def finish(self, stage: str, result: dict) -> dict:
        self.data["stages"][stage] = result
        self.save()
        return result

    def save(self) -> None:
        atomic_write_text(self.path, dumps(self.data, indent=2, default=str) + "\n")


# --------------------------------------------------------------------------- stages
def search_target_ms(config: PipelineConfig) -> tuple[float, str]:
    """The search's latency target ``T_s``: given, or ``auto``: NetAdapt's budget on the paper's
    pre-redesign network (final target + what the redesign saves on it), divided by
    ``1 - search.netadapt_share`` so that the search leaves NetAdapt that share of the latency to
    cut, as the paper's pipeline did (its search found MnasNet-A1-like networks, 70 ms on pixel1,
    which NetAdapt and the redesign brought to V3-Large's 51 ms)."""
    value, target = config["search"]["target_ms"], config["target"]
    if value != "auto":
        return float(value), "given"
    saving = redesign_saving_ms(pre_redesign_reference(config["network"]), target, **_redesign_options(config))
    share = config["search"]["netadapt_share"]
    budget = config["target_ms"] + saving
    return budget / (1 - share), (f"auto: (final target {config['target_ms']} ms + {saving:.2f} ms that the redesign "
                                  f"saves on the paper's pre-redesign network) / (1 - {share:g}), leaving NetAdapt "
                                  f"{100 * share:g} % of the latency to cut")


def _redesign_options(config: PipelineConfig) -> dict:
    return {k: v for k, v in config["redesign"].items() if v is not None}


def netadapt_budget_ms(spec: ArchSpec, config: PipelineConfig) -> tuple[float, str]:
    """NetAdapt's budget for ``spec``: ``auto``: the final target + what the redesign saves on
    ``spec`` (so that the redesigned result lands on the target); or the given number."""
    settings = config["netadapt"]
    if settings["budget_ms"] != "auto":
        return float(settings["budget_ms"]), "given"
    saving = redesign_saving_ms(spec, config["target"], **_redesign_options(config))
    return config["target_ms"] + saving, f"final target {config['target_ms']} ms + {saving:.2f} ms that the redesign saves on it"


def netadapt_reach(spec: ArchSpec, config: PipelineConfig) -> dict:
    """Can NetAdapt, as configured, bring ``spec`` to its budget within its steps?

    NetAdapt cuts at least delta = ``step_ms`` (or ``step_ratio`` x the seed's latency; the paper's
    1 %) per iteration, for at most ``max_iterations`` iterations (unbounded when not set), and
    never below the narrowest network of the topology (every layer at 8 channels). ``reachable``
    is true when the cut needed fits both. Only the first round counts: a round that stops at
    ``max_iterations`` ends NetAdapt, and later rounds only close what the redesign saves less.
    """
    from netadapt.config import NetAdaptConfig
    from netadapt.proposals import narrowest

    target = config["target"]
    latency = predict_ms(spec, target)
    budget, _ = netadapt_budget_ms(spec, config)
    options = config["netadapt"]["options"]
    defaults = NetAdaptConfig(spec=spec, budget_ms=1.0)
    step = options.get("step_ms") or options.get("step_ratio", defaults.step_ratio) * latency
    iterations = options.get("max_iterations", defaults.max_iterations)
    capacity = math.inf if iterations is None else step * iterations
    needed = max(0.0, latency - budget)
    floor = predict_ms(narrowest(spec), target)
    reachable = needed <= capacity + 1e-9 and floor <= budget
    if needed == 0:
        why = "within budget already"
    elif floor > budget:
        why = f"even its narrowest form predicts {floor:.2f} ms > {budget:.2f} ms"
    else:
        why = f"needs a {needed:.2f} ms cut; NetAdapt cuts at least {capacity:.2f} ms ({iterations} x {step:.2f} ms)"
    return {"latency_ms": latency, "budget_ms": budget, "needed_ms": needed,
            "capacity_ms": None if math.isinf(capacity) else capacity, "reachable": bool(reachable), "why": why}


def run_search_stage(config: PipelineConfig, out: Path, resume: bool, progress: bool) -> dict:
    """The search, or the given seed network when ``seed`` is not ``search`` (the paper's Large)."""
    if config["seed"] != "search":
        from search_spaces.spec import resolve_spec

        seed = resolve_spec(config["seed"])
        reach = netadapt_reach(seed, config)
        note = (f"{seed.name}, given (seed: {config['seed']}); the paper's search found networks like MnasNet-A1 "
                "and reused it as Large's seed" if config["network"] == "large" else f"{seed.name}, given")
        if not reach["reachable"]:
            note += f"; NOTE: NetAdapt cannot reach the budget from it as configured ({reach['why']})"
        seed.to_yaml(out / "seed.yaml", header=f"NetAdapt's seed: {note}")
        return {"target_ms": None, "target_ms_reason": "no search: the seed is given", "summary": None,
                "seed_note": note, "seed_reach": reach, "seed": costs(seed, config["target"])}

    from nas.runner import run_search

    search, why = search_config(config, out, resume, progress)
    check_search_signal(search, out / "search")
    summary = run_search(search)
    if not summary.get("best_reward"):
        raise PipelineError(f"search: no child finished successfully; see {out / 'search' / 'trials.csv'}")
    seed, note, reach = choose_seed(out / "search", search.space, lambda spec: netadapt_reach(spec, config))
    seed.to_yaml(out / "seed.yaml", header=f"NetAdapt's seed: {note}")
    return {"target_ms": search.target_ms, "target_ms_reason": why, "signal": search.signal_kind,
            "supernet_epochs": search.supernet_epochs, "summary": finite(summary), "seed_note": note,
            "seed_reach": reach, "seed": costs(seed, config["target"])}


def search_config(config: PipelineConfig, out: Path, resume: bool = False, progress: bool = False):
    """The :class:`nas.runner.SearchConfig` of the search stage, and the reason for its target:
    the ``search`` section (``signal`` is SearchConfig's ``signal_kind``) with the run's target,
    data, random seed and ``OUT/search``."""
    from nas.runner import SearchConfig

    s = dict(config["search"])
    target_ms, why = search_target_ms(config)
    proxy, signal_kind = s.pop("proxy"), s.pop("signal")
    for key in ("target_ms", "netadapt_share"):
        s.pop(key)
    search = SearchConfig(**s, signal_kind=signal_kind, target=config["target"], target_ms=target_ms,
                          data=config["data"], out=str(out / "search"), seed=config["random_seed"], resume=resume,
                          progress=progress, proxy_overrides=dict(proxy))
    return search, why


def check_search_signal(search, folder: Path) -> None:
    """A resumed search started with another ``search.signal`` or ``search.supernet_epochs`` is
    refused in the pipeline's words (``OUT/search/config.json``, written when the search starts)."""
    saved = folder / "config.json"
    if not search.resume or not saved.is_file():
        return
    from jobs.jsonio import JSONShapeError, read_json

    try:
        previous = read_json(saved, what="search config")
    except JSONShapeError:
        return  # the search itself names the damaged file
    for key, name in (("signal_kind", "signal"), ("supernet_epochs", "supernet_epochs")):
        was, now = previous.get(key, "scratch" if key == "signal_kind" else None), getattr(search, key)
        if was != now:
            raise PipelineError(f"resume: search.{name} was {was!r} when the search in {folder} started, now {now!r}; "
                                "resume with the same settings or choose another out")


def choose_seed(search_dir: Path, space_name: str, reach: Callable[[ArchSpec], dict] | None = None
                ) -> tuple[ArchSpec, str, dict | None]:
    """NetAdapt's seed from a finished search: (spec, note, ``reach(spec)``).

    Children are taken by reward, best first, among those that (1) can take the Section 5
    redesign (the efficient last stage keeps the last block's 1x1 expansion: a child whose last
    block is a regular or depthwise-separable conv has none) and (2) NetAdapt can bring to its
    budget within its steps (``reach(spec)["reachable"]``, see :func:`netadapt_reach`): a child at
    1.7x the budget is no seed for NetAdapt, however good its reward. When no child is within
    reach, the one that needs the smallest cut is taken and the note says so.
    """
    import pandas as pd

    from search_spaces.spaces import get_space

    space = get_space(space_name)
    trials = pd.read_csv(search_dir / "trials.csv")
    ok = trials[trials["status"] == "ok"].sort_values("reward", ascending=False, kind="stable")
    candidates, reason = [], "no child finished"
    for rank, (_, row) in enumerate(ok.iterrows()):
        spec = space.decode(space.from_tokens(row["tokens"].split(" ")), name=f"{space.name}_child{int(row['index'])}")
        try:
            redesign(spec)
        except ValueError as err:
            reason = str(err)
            continue
        candidates.append((rank, row, spec, reach(spec) if reach else None))
    if not candidates:
        raise PipelineError(f"search: no finished child can take the Section 5 redesign ({reason}); search more "
                            "children or restrict the space's operators")
    within = [c for c in candidates if c[3] is None or c[3]["reachable"]]
    if within:
        rank, row, spec, r = within[0]
        note = f"child {int(row['index'])}, reward {row['reward']:.4f} (rank {rank + 1})"
        if rank:
            note += (f"; the {rank} better child(ren) cannot take the redesign or are out of NetAdapt's reach "
                     "(budget not reachable within its steps)")
        if r is not None:
            note += f"; {r['latency_ms']:.2f} ms, NetAdapt budget {r['budget_ms']:.2f} ms: {r['why']}"
        return spec, note, r
    rank, row, spec, r = min(candidates, key=lambda c: c[3]["needed_ms"])
    note = (f"child {int(row['index'])}, reward {row['reward']:.4f} (rank {rank + 1}): NO child is within NetAdapt's "
            f"reach; this one needs the smallest cut ({r['why']}); search more children or raise "
            "netadapt.options.max_iterations / step_ratio")
    return spec, note, r


def run_netadapt_stage(config: PipelineConfig, out: Path, resume: bool, progress: bool) -> dict:
    """NetAdapt in rounds until the *redesigned* network meets the target.

    What the redesign saves depends on the last block, which NetAdapt may shrink too, so a budget
    set from the seed's saving can leave the redesigned result above the target. Each round ``r``
    (``OUT/netadapt/round_r``) starts from the previous round's spec and weights with the budget
    ``target_ms + saving(current spec)``; rounds stop when the redesigned network is within 0.5 %
    of the target, when a round cannot go on (budget unreachable or ``max_iterations``), or after
    ``netadapt.rounds``. Steps are NetAdapt's own (``options.step_ratio`` x each round's starting
    latency, the paper's 1 %, or ``options.step_ms``). A given ``budget_ms`` is one round with that
    budget.

    With ``netadapt.on_redesigned`` NetAdapt starts from the redesigned seed instead (search ->
    redesign -> NetAdapt; the redesign stage then changes nothing but the name), so it does not
    spend iterations on the stem and the last block, which the redesign replaces.
    """
    from netadapt import NetAdaptConfig, run_netadapt

    target, settings, target_ms = config["target"], config["netadapt"], config["target_ms"]
    spec, weights, rounds = load_spec(out / "seed.yaml"), None, []
    if settings["on_redesigned"]:  # redesign first: NetAdapt then only shrinks layers the redesign keeps
        spec = redesign(spec, name=spec.name, **_redesign_options(config))
    auto = settings["budget_ms"] == "auto"
    for r in range(settings["rounds"] if auto else 1):
        saving = redesign_saving_ms(spec, target, **_redesign_options(config))
        if auto and predict_ms(spec, target) - saving <= target_ms * 1.005:
            break  # the redesigned network already meets the target
        budget, why = netadapt_budget_ms(spec, config)
        options = dict(settings["options"])
        options.setdefault("proxy_overrides", dict(config["search"]["proxy"]))
        try:
            na_config = NetAdaptConfig(spec=spec, target=target, budget_ms=budget, data=config["data"],
                                       proxy_resolution=config["search"]["proxy_resolution"], weights=weights,
                                       out=str(out / "netadapt" / f"round_{r}"), resume=resume, seed=config["random_seed"],
                                       address=config["search"]["address"], progress=progress, **options)
        except TypeError as err:
            raise PipelineError(f"netadapt.options: {err}; see netadapt.NetAdaptConfig for the settings") from None
        result = run_netadapt(na_config)
        rounds.append({"round": r, "budget_ms": budget, "budget_reason": why,
                       "step_ms": na_config.step_ms or na_config.step_ratio * result.initial_latency_ms,
                       "selection": selection_summary(Path(result.out)),
                       "status": result.status, "message": result.message, "iterations": result.iterations,
                       "initial_latency_ms": result.initial_latency_ms, "latency_ms": result.latency_ms,
                       "seed_accuracy": finite(result.seed_accuracy), "accuracy": finite(result.accuracy),
                       "redesigned_ms": predict_ms(redesign(result.spec, **_redesign_options(config)), target)})
        final = Path(result.out) / "final.pt"
        spec, weights = result.spec.replace(name=spec.name), (str(final) if final.exists() else weights)
        if result.status not in ("done", "within_budget"):
            break
    spec.to_yaml(out / "pre_redesign.yaml", header=f"NetAdapt's result after {len(rounds)} round(s): the network "
                                                   "before the Section 5 redesign")
    last = rounds[-1] if rounds else {}
    return {"rounds": rounds, "budget_ms": last.get("budget_ms"), "status": last.get("status", "not needed"),
            "iterations": sum(x["iterations"] for x in rounds), "result": costs(spec, target)}


def selection_summary(run_dir: Path) -> dict:
    """How often NetAdapt's choice beat the noise of a score (history.csv's ``lead`` and ``noise``)."""
    import pandas as pd

    path = run_dir / "history.csv"
    if not path.exists():
        return {}
    df = pd.read_csv(path)
    chosen = df[(df["chosen"] == True) & (df["iteration"] > 0)]  # noqa: E712 (a pandas mask)
    both = chosen.dropna(subset=["lead", "noise"])
    return {"iterations": len(chosen), "measured": len(both),
            "lead_exceeds_noise": int((both["lead"] > both["noise"]).sum()),
            "margin_exceeds_noise": int((both["margin"] > both["noise"]).sum()),
            "median_lead": float(both["lead"].median()) if len(both) else None,
            "median_noise": float(both["noise"].median()) if len(both) else None,
            "median_noise_accuracy": float(both["noise_accuracy"].median()) if len(both) else None}


def run_redesign_stage(config: PipelineConfig, out: Path) -> dict:
    pre = load_spec(out / "pre_redesign.yaml")
    name = f"{config.reference}_ours"
    ours = redesign(pre, name=name, **_redesign_options(config))
    ours.to_yaml(out / f"{name}.yaml", header=f"MobileNetV3-{config['network'].title()} as reproduced by "
                                              f"experiments.reproduce: search -> NetAdapt -> Section 5 redesign")
    return {"spec": f"{name}.yaml", "ours": costs(ours, config["target"])}


def run_pipeline(config: PipelineConfig, out: str | Path | None = None, *, resume: bool = False,
                 progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run (or continue) every stage; returns the summary (also in ``OUT/summary.json``)."""
    from .definition import run_definition_stage

    out = Path(out or f"runs/reproduce_{config['network']}").resolve()
    with run_lock(out, what="pipeline folder"):  # a second run into a live run's folder is refused
        state = RunState(out, config, resume)
        stages: dict[str, Callable[[], dict]] = {
            "search": lambda: run_search_stage(config, out, resume, progress),
            "netadapt": lambda: run_netadapt_stage(config, out, resume, progress),
            "redesign": lambda: run_redesign_stage(config, out),
            "definition": lambda: run_definition_stage(config, out, state.data["stages"]),
        }
        for name in STAGES:
            if state.done(name):
                log(f"[{name}] done before, skipped")
                continue
            start = time.monotonic()
            log(f"[{name}] ..." + (f" (search.signal: {config['search']['signal']})"
                                   if name == "search" and config["seed"] == "search" else ""))
            result = stages[name]()
            result["wall_s"] = round(time.monotonic() - start, 1)
            state.finish(name, result)
            log(f"[{name}] finished in {result['wall_s']:.0f} s")
        summary = state.data["stages"]["definition"]["summary"]
        summary["wall_s"] = {name: state.data["stages"][name]["wall_s"] for name in STAGES}
        atomic_write_text(out / "summary.json", dumps(summary, indent=2, default=str) + "\n")
        return summary


__all__ = ["run_pipeline", "PipelineError", "pre_redesign_reference", "redesign_saving_ms", "choose_seed",
           "search_target_ms", "netadapt_reach", "netadapt_budget_ms", "reference"]
