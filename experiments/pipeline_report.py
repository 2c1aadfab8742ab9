"""The pipeline's last stage: emit the MobileNetV3 definition and compare it with the paper's.

Writes ``OUT/definition/``: ``<name>.yaml`` (the spec at 224 x 224, 1000 classes), ``model.pt``
(the state dict of ``search_spaces.build(spec)``: seeded initialisation, batch-norm statistics
measured on N(0, 1) inputs, see :func:`calibrate_bn_on_noise`; ``torch.load(..., weights_only=True)``
reads it), ``model.onnx`` (checked in
ONNX Runtime against PyTorch), ``arch.txt`` (the timm-style arch string and timm's ``arch_def``),
``proxy_trained.pt`` / ``proxy_spec.yaml`` (the network trained on the proxy data, when
``final_training.epochs`` is not 0), ``diff.csv`` (layer by layer against Table 1 or 2), and
``OUT/summary.md`` / ``summary.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from latency.table import atomic_write_text
from search_spaces import ArchSpec, load_spec, reference, timm_arch_def, to_arch_string

from .pipeline import PipelineError, costs
from .pipeline_config import PipelineConfig
from .tables import PAPER_TABLE1, PAPER_TABLE2, PAPER_TABLE3, compare_structure, to_markdown

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


def proxy_train(specs: dict[str, ArchSpec], config: PipelineConfig, folder: Path) -> dict[str, dict]:
    """Train each spec on the proxy data with the same settings; the first one's weights are saved."""
    import torch

    from proxytask.profiles import signal
    from proxytask.train import build_child, evaluate, recalibrate_bn, torch_threads, train

    final = config["final_training"]
    overrides = {**dict(config["search"]["proxy"]), **final["proxy"], "threads": final["threads"],
                 "seed": config["seed"], "device": final["proxy"].get("device", "cpu")}
    if config["search"].get("proxy_resolution") is not None:
        overrides["resolution"] = config["search"]["proxy_resolution"]
    if final["epochs"] is not None:
        overrides["epochs"] = final["epochs"]
    sig = signal(config["search"].get("profile") or "cpu", data=config["data"], overrides=overrides)
    proxy = sig.proxy
    data = sig.load(seed=0)
    results = {}
    for i, (label, spec) in enumerate(specs.items()):
        with torch_threads(proxy.threads):
            model = build_child(spec, data, proxy)
            train_loss = train(model, data, proxy)
            recalibrate_bn(model, data, proxy.bn_recalibration_batches, proxy)
            accuracy, val_loss = evaluate(model, data, proxy, split="val")
            test_accuracy = evaluate(model, data, proxy, split="test")[0]
        # reported: the test split (nothing selected on it); validation kept beside it
        results[label] = {"accuracy": test_accuracy, "test_accuracy": test_accuracy, "val_accuracy": accuracy,
                          "val_loss": val_loss, "train_loss": train_loss, "steps": proxy.total_steps(data)}
        if i == 0:
            spec.replace(resolution=proxy.resolution or data.resolution, num_classes=data.num_classes,
                         in_channels=data.in_channels).to_yaml(folder / "proxy_spec.yaml",
                                                               header=f"{spec.name} as trained on {data.name}")
            torch.save(model.state_dict(), folder / "proxy_trained.pt")
    results["data"] = data.summary()
    return results


def summary_table(stages: dict, ours: ArchSpec, paper: ArchSpec, config: PipelineConfig,
                  accuracy: dict) -> pd.DataFrame:
    target = config["target"]
    published = next(row for row in PAPER_TABLE3 if row[0] == PAPER_LABEL[config.reference])
    rows = [
        ("search: best child (NetAdapt's seed)", stages["search"]["seed"], None),
        ("NetAdapt: before the redesign", stages["netadapt"]["result"], None),
        (f"ours: {ours.name}", costs(ours, target), accuracy.get("ours")),
        (f"paper's network ({paper.name}, our spec)", costs(paper, target), accuracy.get("paper")),
    ]
    records = [{"network": label, "MAdds (M)": c["madds_m"], "params (M)": c["params_m"],
                f"{target} latency (ms, predicted)": c["latency_ms"],
                "proxy test top-1 (%)": None if acc is None else round(100 * acc["accuracy"], 2)} for label, c, acc in rows]
    records.append({"network": f"paper, Table 3 ({published[0]}, quoted)", "MAdds (M)": published[2],
                    "params (M)": published[3], f"{target} latency (ms, predicted)": None,
                    "proxy top-1 (%)": None, "paper P-1 (ms)": published[4], "ImageNet top-1 (%, quoted)": published[1]})
    return pd.DataFrame(records)


def _rounds_text(netadapt: dict) -> str:
    rounds = netadapt["rounds"]
    if not rounds:
        return "not needed (the redesigned seed already meets the target)."
    parts = [f"round {x['round']}: budget {x['budget_ms']:.2f} ms ({x['budget_reason']}), {x['iterations']} "
             f"iteration(s), {x['initial_latency_ms']:.2f} -> {x['latency_ms']:.2f} ms ({x['status']}), redesigned "
             f"{x['redesigned_ms']:.2f} ms" for x in rounds]
    return "; ".join(parts) + "."


def run_definition_stage(config: PipelineConfig, out: Path, stages: dict) -> dict:
    folder = out / "definition"
    ours = load_spec(out / stages["redesign"]["spec"])
    paper = reference(config.reference)
    emitted = emit(ours, folder, config["seed"], config["export"]["onnx_tolerance"], config["export"]["onnx"])
    accuracy = {}
    if config["final_training"]["epochs"] != 0:
        accuracy = proxy_train({"ours": ours, "paper": paper}, config, folder)
    diff = compare_structure(ours, PAPER_ROWS[config.table], config.table)
    diff.to_csv(folder / "diff.csv", index=False)
    table = summary_table(stages, ours, paper, config, accuracy)
    differing = int((diff["differs"] != "").sum())
    target_ms = config["target_ms"]
    ours_ms = costs(ours, config["target"])["latency_ms"]
    md = [f"# Reproducing MobileNetV3-{config['network'].title()}: search -> NetAdapt -> Section 5 redesign", "",
          f"Final latency target: {target_ms} ms on `{config['target']}`; ours: {ours_ms:.2f} ms (predicted). "
          f"Search target {stages['search']['target_ms']:.2f} ms ({stages['search']['target_ms_reason']}); "
          f"NetAdapt's seed: {stages['search']['seed_note']}. NetAdapt: {_rounds_text(stages['netadapt'])}", "",
          "## Summary", "", to_markdown(table), "",
          "MAdds and parameters are counted from the specs; latencies are predicted. Proxy top-1 trains ours and the "
          "paper's network with the same short schedule on the proxy data "
          f"({accuracy.get('data', 'not run')}); it is not ImageNet accuracy.", "",
          f"## Layer by layer against {config.table} ({differing} row(s) differ)", "",
          to_markdown(diff[["layer", "input", "operator", "exp size", "#out", "SE", "NL", "s", "differs"]]), "",
          "## The emitted definition", "", f"- spec: `definition/{emitted['yaml']}`",
          "- PyTorch state dict: `definition/model.pt` (untrained: seeded initialisation, BN statistics measured on "
          "noise; `torch.load(path, weights_only=True)`); the proxy-trained network: `definition/proxy_trained.pt` "
          "with `definition/proxy_spec.yaml`",
          f"- ONNX: `definition/model.onnx` (max |ORT - PyTorch| = {emitted.get('onnx_max_abs_diff', float('nan')):.2e} "
          f"on outputs up to {emitted.get('output_max_abs', float('nan')):.2f})"
          if emitted.get("onnx") else "- ONNX: not exported (export.onnx: false)",
          f"- timm arch string: `{emitted['arch_string']}`", ""]
    atomic_write_text(out / "summary.md", "\n".join(md))
    summary = {"network": config["network"], "target": config["target"], "target_ms": target_ms,
               "ours_ms": ours_ms, "ours": costs(ours, config["target"]), "paper_spec": costs(paper, config["target"]),
               "rows_differing": differing, "emitted": emitted,
               "proxy_accuracy": {k: v for k, v in accuracy.items() if k != "data"},
               "search_target_ms": stages["search"]["target_ms"], "netadapt_budget_ms": stages["netadapt"]["budget_ms"],
               "seed_note": stages["search"]["seed_note"], "out": str(out)}
    return {"summary": summary}
