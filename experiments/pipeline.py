"""The paper's pipeline end to end: block-wise search -> NetAdapt -> Section 5 redesign -> MobileNetV3.

:func:`run_pipeline` is what ``python -m experiments.reproduce large|small`` calls. Stages, each
writing under ``OUT`` (default ``runs/reproduce_<network>``):

1. ``search/``: :func:`nas.runner.run_search` in the configured space (default ``mnasnet``: the
   pre-redesign form, original last stage, 32-filter ReLU stem) with the reward's ``w`` and a
   search target ``T_s``. ``auto``: the final target plus what the Section 5 redesign saves on
   the paper's own pre-redesign network (``experiments/specs_pre_redesign/``), i.e. the latency
   a pre-redesign network may have so that the redesign brings it to the final target.
2. ``netadapt/``: NetAdapt on the best child, to a budget (``auto``: the final target plus what
   the redesign saves on *this* seed), so that after the redesign the network meets the target.
3. Section 5 (:func:`search_spaces.transforms.redesign`): efficient last stage, 16-filter h-swish
   stem, h-swish from the first 14x14 layer, SE fixed at exp/4 with a hard-sigmoid gate.
4. ``definition/``: the emitted MobileNetV3 (YAML spec, state dict, ONNX with a parity check,
   timm arch string), a proxy training of it and of the paper's network with the same settings,
   and ``summary.md``: a layer-by-layer diff against Table 1 or 2 and MAdds / params /
   predicted latency of ours vs the paper's.

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
from latency.table import atomic_write_text
from search_spaces import ArchSpec, count_madds, count_params, load_spec, reference
from search_spaces.transforms import redesign

from .pipeline_config import PipelineConfig

PRE_REDESIGN_DIR = Path(__file__).parent / "specs_pre_redesign"
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
    "search": ("network", "target", "target_ms", "data", "seed", "search", "redesign"),
    "netadapt": ("network", "target", "target_ms", "data", "seed", "search", "redesign", "netadapt"),
    "redesign": ("network", "redesign"),
    "definition": ("network", "target", "data", "seed", "final_training", "export"),
}


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
            for stage in previous["stages"]:
                changed = [k for k in STAGE_SETTINGS[stage] if previous["config"].get(k) != new[k]]
                if changed:
                    raise PipelineError(f"resume: {', '.join(changed)} changed since the {stage} stage finished; "
                                        "resume with the same settings or choose another out")
        self.data = {"config": new, "stages": previous["stages"] if previous else {}}
        self.save()

    def done(self, stage: str) -> dict | None:
        return self.data["stages"].get(stage)

    def finish(self, stage: str, result: dict) -> dict:
        self.data["stages"][stage] = result
        self.save()
        return result

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=2, default=str) + "\n")


# --------------------------------------------------------------------------- stages
def search_target_ms(config: PipelineConfig) -> tuple[float, str]:
    value, target = config["search"]["target_ms"], config["target"]
    if value != "auto":
        return float(value), "given"
    saving = redesign_saving_ms(pre_redesign_reference(config["network"]), target, **_redesign_options(config))
    return config["target_ms"] + saving, (f"auto: final target {config['target_ms']} ms + {saving:.2f} ms that the "
                                          "redesign saves on the paper's pre-redesign network")


def _redesign_options(config: PipelineConfig) -> dict:
    return {k: v for k, v in config["redesign"].items() if v is not None}


def run_search_stage(config: PipelineConfig, out: Path, resume: bool, progress: bool) -> dict:
    from nas.runner import SearchConfig, run_search

    s = dict(config["search"])
    target_ms, why = search_target_ms(config)
    proxy = s.pop("proxy")
    s.pop("target_ms")
    search = SearchConfig(**s, target=config["target"], target_ms=target_ms, data=config["data"],
                          out=str(out / "search"), seed=config["seed"], resume=resume, progress=progress,
                          proxy_overrides=dict(proxy))
    summary = run_search(search)
    if not summary.get("best_reward"):
        raise PipelineError(f"search: no child finished successfully; see {out / 'search' / 'trials.csv'}")
    seed, note = choose_seed(out / "search", search.space)
    seed.to_yaml(out / "seed.yaml", header=f"NetAdapt's seed: {note}")
    return {"target_ms": target_ms, "target_ms_reason": why, "summary": _jsonable(summary), "seed_note": note,
            "seed": costs(seed, config["target"])}


def choose_seed(search_dir: Path, space_name: str) -> tuple[ArchSpec, str]:
    """The best child the redesign can apply to, and a note.

    The efficient last stage keeps the last block's 1x1 expansion; a child of the ``mnasnet``
    space whose last block is a regular conv or a depthwise-separable conv has none. The best
    child by reward is taken unless it is such a child, then the best child that has one.
    """
    import pandas as pd

    from search_spaces.spaces import get_space

    space = get_space(space_name)
    trials = pd.read_csv(search_dir / "trials.csv")
    ok = trials[trials["status"] == "ok"].sort_values("reward", ascending=False, kind="stable")
    reason = "no child finished"
    for rank, (_, row) in enumerate(ok.iterrows()):
        spec = space.decode(space.from_tokens(row["tokens"].split(" ")), name=f"{space.name}_child{int(row['index'])}")
        try:
            redesign(spec)
        except ValueError as err:
            reason = str(err)
            continue
        note = (f"child {int(row['index'])}, the best by reward ({row['reward']:.4f})" if rank == 0 else
                f"child {int(row['index'])} (reward {row['reward']:.4f}, rank {rank + 1}): better children cannot "
                f"take the Section 5 redesign ({reason})")
        return spec, note
    raise PipelineError(f"search: no finished child can take the Section 5 redesign ({reason}); search more "
                        "children or restrict the space's operators")


def netadapt_step_ms(initial_ms: float, budget_ms: float, iterations: int | None) -> float | None:
    """The step target that reaches ``budget_ms`` in about ``iterations`` iterations (never below the
    paper's 1 % of the initial latency); None: NetAdapt's own default (1 %)."""
    if not iterations or budget_ms >= initial_ms:
        return None
    return max(0.01 * initial_ms, (initial_ms - budget_ms) / iterations)


def run_netadapt_stage(config: PipelineConfig, out: Path, resume: bool, progress: bool) -> dict:
    """NetAdapt in rounds until the *redesigned* network meets the target.

    What the redesign saves depends on the last block, which NetAdapt may shrink too, so a budget
    set from the seed's saving can leave the redesigned result above the target. Each round ``r``
    (``OUT/netadapt/round_r``) starts from the previous round's spec and weights with the budget
    ``target_ms + saving(current spec)``; rounds stop when the redesigned network is within 0.5 %
    of the target, when a round cannot go on (budget unreachable or ``max_iterations``), or after
    ``netadapt.rounds``. Later rounds close smaller gaps and size their steps for half of
    ``netadapt.iterations``. A given ``budget_ms`` is one round with that budget.

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
        budget = target_ms + saving if auto else float(settings["budget_ms"])
        why = f"final target {target_ms} ms + {saving:.2f} ms that the redesign saves on it" if auto else "given"
        options = dict(settings["options"])
        options.setdefault("proxy_overrides", dict(config["search"]["proxy"]))
        iterations = settings["iterations"]
        if r > 0 and iterations:
            iterations = max(1, iterations // 2)
        step_ms = netadapt_step_ms(predict_ms(spec, target), budget, iterations)
        if step_ms is not None and "step_ms" not in options and "step_ratio" not in options:
            options["step_ms"] = step_ms
        try:
            na_config = NetAdaptConfig(spec=spec, target=target, budget_ms=budget, data=config["data"],
                                       proxy_resolution=config["search"]["proxy_resolution"], weights=weights,
                                       out=str(out / "netadapt" / f"round_{r}"), resume=resume, seed=config["seed"],
                                       address=config["search"]["address"], progress=progress, **options)
        except TypeError as err:
            raise PipelineError(f"netadapt.options: {err}; see netadapt.NetAdaptConfig for the settings") from None
        result = run_netadapt(na_config)
        rounds.append({"round": r, "budget_ms": budget, "budget_reason": why, "step_ms": options.get("step_ms"),
                       "status": result.status, "message": result.message, "iterations": result.iterations,
                       "initial_latency_ms": result.initial_latency_ms, "latency_ms": result.latency_ms,
                       "seed_accuracy": _jsonable(result.seed_accuracy), "accuracy": _jsonable(result.accuracy),
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
    from .pipeline_report import run_definition_stage

    out = Path(out or f"runs/reproduce_{config['network']}").resolve()
    out.mkdir(parents=True, exist_ok=True)
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
        log(f"[{name}] ...")
        result = stages[name]()
        result["wall_s"] = round(time.monotonic() - start, 1)
        state.finish(name, result)
        log(f"[{name}] finished in {result['wall_s']:.0f} s")
    summary = state.data["stages"]["definition"]["summary"]
    summary["wall_s"] = {name: state.data["stages"][name]["wall_s"] for name in STAGES}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


__all__ = ["run_pipeline", "PipelineError", "pre_redesign_reference", "redesign_saving_ms", "choose_seed",
           "search_target_ms", "reference"]
