"""The pipeline's last stage: emit the MobileNetV3 definition and compare it with the paper's.

Writes ``OUT/definition/``: ``<name>.yaml`` (the spec at 224 x 224, 1000 classes), ``model.pt``
(the state dict of ``search_spaces.build(spec)``: seeded initialisation, batch-norm statistics
measured on N(0, 1) inputs, see :func:`calibrate_bn_on_noise`; ``torch.load(..., weights_only=True)``
reads it), ``model.onnx`` (checked in
ONNX Runtime against PyTorch), ``arch.txt`` (the timm-style arch string and timm's ``arch_def``),
``proxy_trained.pt`` / ``proxy_spec.yaml`` (the network trained on the proxy data, seed 0, when
``final_training.epochs`` is not 0), ``trainings.jsonl`` (the equal-footing trainings, resumable),
``diff.csv`` (layer by layer against Table 1 or 2), ``structure.csv`` / ``stages.csv`` (block and
stage expansions of the seed, NetAdapt's result, ours, the paper's network and its seed), and
``OUT/comparison.png``, ``OUT/summary.md`` / ``summary.json`` (``comparison``: ours and the
paper's network, predicted pixel1 latency and test accuracy per seed; ``reference_curve``;
``verdict``; see :mod:`experiments.pipeline.comparison`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from jobs.atomic import atomic_write_text
from search_spaces import ArchSpec, load_spec, reference, timm_arch_def, to_arch_string

from .stages import PipelineError, costs
from .config import PipelineConfig
from ..tables import PAPER_TABLE1, PAPER_TABLE2, PAPER_TABLE3, compare_structure, to_markdown

PAPER_ROWS = {"Table 1": PAPER_TABLE1, "Table 2": PAPER_TABLE2}
PAPER_LABEL = {"mobilenet_v3_large": "V3-Large 1.0", "mobilenet_v3_small": "V3-Small 1.0"}


def calibrate_bn_on_noise(model, shape: tuple[int, ...], seed: int, batches: int = 2, batch_size: int = 4) -> None:
    """Measure the batch-norm statistics of ``model`` on seeded N(0, 1) inputs, then eval mode.

    A freshly initialised network evaluated with BN's initial statistics (mean 0, variance 1)
    shrinks its activations layer after layer (outputs ~1e-10 for V3-Large), which would make
    the ONNX parity check vacuous; with measured statistics the outputs have unit scale.
    """
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn((batch_size, *shape[1:]), generator=generator))
    model.eval()


def emit(spec: ArchSpec, folder: Path, seed: int, tolerance: float, onnx: bool = True) -> dict:
    """Spec YAML, seeded state dict, ONNX (parity-checked) and arch strings of ``spec`` in ``folder``."""
    import torch

    from search_spaces import build
    from search_spaces.onnx_io import export_onnx, onnx_max_abs_diff

    folder.mkdir(parents=True, exist_ok=True)
    spec.to_yaml(folder / f"{spec.name}.yaml", header="The emitted MobileNetV3 definition (experiments.reproduce)")
    shape = (1, spec.in_channels, spec.resolution, spec.resolution)
    torch.manual_seed(seed)
    model = build(spec)
    calibrate_bn_on_noise(model, shape, seed)
    torch.save(model.state_dict(), folder / "model.pt")
    arch = to_arch_string(spec)
    atomic_write_text(folder / "arch.txt", f"{arch}\n# timm arch_def: {json.dumps(timm_arch_def(spec))}\n")
    result = {"yaml": f"{spec.name}.yaml", "state_dict": "model.pt", "arch_string": arch}
    if onnx:
        export_onnx(model, shape, folder / "model.onnx")
        x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        diff = onnx_max_abs_diff(model, folder / "model.onnx", x)
        with torch.no_grad():
            scale = float(model(x).abs().max())
        if not diff <= tolerance:
            raise PipelineError(f"definition: ONNX Runtime differs from PyTorch by {diff:.3g} (> {tolerance:g}) "
                                f"on {folder / 'model.onnx'}")
        result.update(onnx="model.onnx", onnx_max_abs_diff=diff, output_max_abs=scale)
    return result


def comparison_signal(config: PipelineConfig):
    """The signal of the equal-footing comparison: the search's own (profile, device, data and
    proxy settings, resolved as :func:`nas.runner.search_signal` resolves them from
    ``search.profile`` and ``search.gpus_per_trial``), with ``final_training`` overrides, the
    run's ``random_seed`` and ``final_training.threads`` threads per training."""
    from proxytask.profiles import resolved_signal

    final, search = config["final_training"], config["search"]
    overrides = {**dict(search["proxy"]), **final["proxy"], "threads": final["threads"],
                 "seed": config["random_seed"]}
    if search.get("proxy_resolution") is not None:
        overrides["resolution"] = search["proxy_resolution"]
    if final["epochs"] is not None:
        overrides["epochs"] = final["epochs"]
    return resolved_signal(search.get("profile"), gpus=float(search.get("gpus_per_trial") or 0.0),
                           data=config["data"], overrides=overrides)


def _accuracy_text(values: list[float] | None) -> str | None:
    if not values:
        return None
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return f"{100 * mean:.2f} +- {100 * sd:.2f} ({len(values)})"


def summary_table(stages: dict, ours: ArchSpec, paper: ArchSpec, config: PipelineConfig,
                  comparison: dict) -> pd.DataFrame:
    target = config["target"]
    published = next(row for row in PAPER_TABLE3 if row[0] == PAPER_LABEL[config.reference])
    seed_label = ("search: NetAdapt's seed (best child within reach)" if config["seed"] == "search"
                  else f"NetAdapt's seed (given: {config['seed']})")
    rows = [
        (seed_label, stages["search"]["seed"], None),
        ("NetAdapt: before the redesign", stages["netadapt"]["result"], None),
        (f"ours: {ours.name}", costs(ours, target), comparison.get("ours")),
        (f"paper's network ({paper.name}, our spec)", costs(paper, target), comparison.get("reference")),
    ]
    records = [{"network": label, "MAdds (M)": c["madds_m"], "params (M)": c["params_m"],
                f"{target} latency (ms, predicted)": c["latency_ms"],
                "proxy test top-1, % (mean +- sd (seeds))": _accuracy_text(acc and acc["test_accuracy"])}
               for label, c, acc in rows]
    records.append({"network": f"paper, Table 3 ({published[0]}, quoted)", "MAdds (M)": published[2],
                    "params (M)": published[3], f"{target} latency (ms, predicted)": None,
                    "paper P-1 (ms)": published[4], "ImageNet top-1 (%, quoted)": published[1]})
    return pd.DataFrame(records)


def _rounds_text(netadapt: dict) -> str:
    rounds = netadapt["rounds"]
    if not rounds:
        return "not needed (the redesigned seed already meets the target)."
    parts = [f"round {x['round']}: budget {x['budget_ms']:.2f} ms ({x['budget_reason']}), {x['iterations']} "
             f"iteration(s), {x['initial_latency_ms']:.2f} -> {x['latency_ms']:.2f} ms ({x['status']}), redesigned "
             f"{x['redesigned_ms']:.2f} ms" for x in rounds]
    return "; ".join(parts) + "."


def _verdict_text(v: dict, network: str) -> str:
    if v.get("delta") is None:
        return "No comparison: a training failed or was skipped (final_training)."
    ours = f"{100 * v['ours_mean']:.2f} +- {100 * v['ours_std']:.2f} %"
    paper = f"{100 * v['paper_mean']:.2f} +- {100 * v['paper_std']:.2f} %"
    lines = [f"Ours: {ours} at {v['ours_ms']:.2f} ms; the paper's V3-{network.title()}: {paper} at {v['paper_ms']:.2f} ms "
             f"(predicted on {v.get('target') or 'pixel1'}; test split, mean +- sd over seeds). Difference "
             f"{100 * v['delta']:+.2f} points"
             + (f" ({v['delta_over_spread']:+.1f} x the larger seed sd)" if v["delta_over_spread"] is not None else "")
             + "."]
    if v["meets_target"]:
        lines.append("**Target met**: ours is not slower and at least as accurate as the paper's network.")
    else:
        why = "slower" if not v["not_slower"] else "less accurate"
        lines.append(f"**Target NOT met**: ours is {why} than the paper's network on this signal.")
    if v["curve_at_ours_ms"] is not None:
        lines.append(f"The paper's width curve at ours' latency: {100 * v['curve_at_ours_ms']:.2f} %; ours is "
                     f"{100 * v['above_curve']:+.2f} points {'above' if v['above_curve'] >= 0 else 'below'} it.")
    return " ".join(lines)


def train_equal_footing(config: PipelineConfig, ours: ArchSpec, out: Path) -> tuple[dict, str]:
    """The equal-footing trainings (:func:`.comparison.equal_footing`) on :func:`comparison_signal`,
    ``proxy_spec.yaml`` beside ``proxy_trained.pt`` whenever that file exists (a resumed run's
    included), and ``comparison.png``. Returns (result, the signal in words)."""
    from .comparison import comparison_plot, equal_footing

    final, folder = config["final_training"], out / "definition"
    if final["epochs"] == 0:
        return {"comparison": {}, "reference_curve": [], "verdict": {}, "failed": [], "trained": None}, "not trained"
    sig = comparison_signal(config)
    data = sig.load()
    signal_text = f"{sig.profile} signal on {sig.proxy.device}, {data.summary()}"
    result = equal_footing(ours, config.reference, final["widths"], sig, seeds=final["seeds"],
                           workers=final["workers"], folder=folder, target=config["target"])
    if result["trained"] is not None:
        ours.replace(resolution=sig.proxy.resolution or ours.resolution).to_yaml(
            folder / "proxy_spec.yaml", header=f"{ours.name} as trained on {data.summary()} (seed {sig.proxy.seed})")
    comparison_plot(result, out / "comparison.png", network=config["network"], signal_text=signal_text)
    return result, signal_text


def _structure_parts(config: PipelineConfig, out: Path, ours: ArchSpec, paper: ArchSpec) -> dict:
    """``diff.csv``, ``structure.csv`` and ``stages.csv`` in ``OUT/definition``, and what the summary shows of them."""
    from .structure import cut_agreement, paper_seed_of, structure_report

    folder = out / "definition"
    diff = compare_structure(ours, PAPER_ROWS[config.table], config.table)
    diff.to_csv(folder / "diff.csv", index=False)
    seed_spec, pre = load_spec(out / "seed.yaml"), load_spec(out / "pre_redesign.yaml")
    paper_seed = paper_seed_of(config.reference)
    blocks, stage_table = structure_report(seed_spec, pre, ours, paper, paper_seed)
    blocks.to_csv(folder / "structure.csv", index=False)
    stage_table.to_csv(folder / "stages.csv", index=False)
    return {"diff": diff, "blocks": blocks, "stages": stage_table, "agreement": cut_agreement(blocks),
            "paper_seed": paper_seed, "differing": int((diff["differs"] != "").sum())}


def _headline(config: PipelineConfig, stages: dict, ours: ArchSpec) -> str:
    """The summary's first paragraph: target, ours' latency, the search and NetAdapt in words."""
    ours_ms = costs(ours, config["target"])["latency_ms"]
    search_text = (f"Search target {stages['search']['target_ms']:.2f} ms ({stages['search']['target_ms_reason']}), "
                   f"children scored by {_signal_words(stages['search'])}"
                   if stages["search"]["target_ms"] is not None else "No search (the seed is given)")
    selection = [x.get("selection") or {} for x in stages["netadapt"]["rounds"]]
    measured = sum(x.get("measured", 0) for x in selection)
    exceeded = sum(x.get("lead_exceeds_noise", 0) for x in selection)
    return (f"Final latency target: {config['target_ms']} ms on `{config['target']}`; ours: {ours_ms:.2f} ms "
            f"(predicted). {search_text}; NetAdapt's seed: {stages['search']['seed_note']}. NetAdapt: "
            f"{_rounds_text(stages['netadapt'])}"
            + (f" The chosen proposal's lead exceeded the noise of a score in {exceeded} of {measured} measured "
               "iteration(s) (netadapt/round_*/history.csv: lead, noise)." if measured else ""))


def _signal_words(search: dict) -> str:
    """How the search scored its children (``search.signal``; a stage record without it: scratch)."""
    if search.get("signal", "scratch") != "supernet":
        return "training each from scratch (search.signal: scratch)"
    epochs = search.get("supernet_epochs")
    return ("the weights of a supernet trained first (search.signal: supernet, "
            + ("the main job's epochs" if epochs is None else f"{epochs:g} epochs") + ")")


def _definition_lines(emitted: dict, trained: bool) -> list[str]:
    """The summary's list of emitted files; the proxy-trained weights only when they were written."""
    trained_text = ("; the proxy-trained network (first seed): `definition/proxy_trained.pt` with "
                    "`definition/proxy_spec.yaml`" if trained else "; no proxy-trained network (not trained, or its "
                    "training failed)")
    return ["## The emitted definition", "", f"- spec: `definition/{emitted['yaml']}`",
            "- PyTorch state dict: `definition/model.pt` (untrained: seeded initialisation, BN statistics measured on "
            "noise; `torch.load(path, weights_only=True)`)" + trained_text,
            f"- ONNX: `definition/model.onnx` (max |ORT - PyTorch| = {emitted.get('onnx_max_abs_diff', float('nan')):.2e} "
            f"on outputs up to {emitted.get('output_max_abs', float('nan')):.2f})"
            if emitted.get("onnx") else "- ONNX: not exported (export.onnx: false)",
            f"- timm arch string: `{emitted['arch_string']}`", ""]


def _structure_lines(config: PipelineConfig, parts: dict) -> list[str]:
    blocks, stage_table, agreement = parts["blocks"], parts["stages"], parts["agreement"]
    return [f"## Layer by layer against {config.table} ({parts['differing']} row(s) differ)", "",
            to_markdown(parts["diff"][["layer", "input", "operator", "exp size", "#out", "SE", "NL", "s", "differs"]]),
            "", "## Expansion ratios per stage", "",
            "Mean expansion / input channels of each stage (`definition/stages.csv`): NetAdapt's seed, NetAdapt's "
            "result, ours (after the redesign), the paper's network"
            + (f" and its seed ({PAPER_SEEDS_TEXT.get(config.reference, '')})" if parts["paper_seed"] is not None
               else "") + ".", "",
            to_markdown(stage_table[[c for c in stage_table.columns if c == "stage" or c.endswith("exp ratio")]]), "",
            "## Where NetAdapt cut, against where the paper's network differs from its seed", "",
            to_markdown(blocks[["block", "seed exp", "netadapt exp", "NetAdapt cut (exp)", "seed out", "netadapt out",
                                "NetAdapt cut (out)", "paper_seed exp", "paper exp", "paper change (exp)"]]), "",
            (f"Expansions cut by NetAdapt: blocks {agreement['netadapt_cut']}; smaller in the paper's network than in "
             f"its seed: blocks {agreement['paper_cut']}; both: {agreement['both']}." if agreement else
             "The paper does not publish the seed of this network, so only NetAdapt's cuts are shown."), ""]


def summary_markdown(config: PipelineConfig, stages: dict, ours: ArchSpec, paper: ArchSpec, result: dict,
                     signal_text: str, parts: dict, emitted: dict) -> str:
    """``summary.md``: headline, the equal-footing verdict, the cost table, the structure, the files."""
    table = summary_table(stages, ours, paper, config, result["comparison"])
    v = result["verdict"]
    md = [f"# Reproducing MobileNetV3-{config['network'].title()}: search -> NetAdapt -> Section 5 redesign", "",
          _headline(config, stages, ours), "",
          "## Equal footing", "", _verdict_text(v, config["network"]) if v else
          "Not trained (final_training.epochs: 0).", "", "![comparison](comparison.png)" if v else "", "",
          "## Summary", "", to_markdown(table), "",
          "MAdds and parameters are counted from the specs; latencies are predicted. Proxy top-1 trains every network "
          f"from scratch with the same signal ({signal_text}), {config['final_training']['seeds']} seed(s), and reads "
          "the test split; it is not ImageNet accuracy.", ""]
    md += _structure_lines(config, parts)
    md += _definition_lines(emitted, result.get("trained") is not None)
    return "\n".join(md)


def run_definition_stage(config: PipelineConfig, out: Path, stages: dict) -> dict:
    """Emit the definition, train the equal-footing comparison, write the structure report and
    ``summary.md``; returns ``{"summary": ...}`` for ``summary.json``."""
    folder = out / "definition"
    ours = load_spec(out / stages["redesign"]["spec"])
    paper = reference(config.reference)
    emitted = emit(ours, folder, config["random_seed"], config["export"]["onnx_tolerance"], config["export"]["onnx"])
    result, signal_text = train_equal_footing(config, ours, out)
    parts = _structure_parts(config, out, ours, paper)
    atomic_write_text(out / "summary.md", summary_markdown(config, stages, ours, paper, result, signal_text, parts,
                                                           emitted))
    selection = [x.get("selection") or {} for x in stages["netadapt"]["rounds"]]
    summary = {"network": config["network"], "target": config["target"], "target_ms": config["target_ms"],
               "ours_ms": costs(ours, config["target"])["latency_ms"], "ours": costs(ours, config["target"]),
               "paper_spec": costs(paper, config["target"]), "rows_differing": parts["differing"], "emitted": emitted,
               "comparison": {k: {"target": v["target"], "latency_ms": v["latency_ms"],
                                  "test_accuracy": v["test_accuracy"]} for k, v in result["comparison"].items()},
               "comparison_validation": {k: v["val_accuracy"] for k, v in result["comparison"].items()},
               "comparison_signal": signal_text, "proxy_trained": result.get("trained") is not None,
               "reference_curve": result["reference_curve"], "verdict": result["verdict"],
               "failed_trainings": result["failed"], "netadapt_selection": selection,
               "cut_agreement": parts["agreement"], "search_target_ms": stages["search"]["target_ms"],
               "netadapt_budget_ms": stages["netadapt"]["budget_ms"], "seed": config["seed"],
               "seed_note": stages["search"]["seed_note"], "out": str(out)}
    return {"summary": summary}


PAPER_SEEDS_TEXT = {"mobilenet_v3_large": "MnasNet-A1, which the paper's Large started from"}
