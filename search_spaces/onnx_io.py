"""ONNX export of built models and single ops (torch's TorchScript-based exporter: fast and exact)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

OPSET = 17


def export_onnx(module: nn.Module, input_shape: tuple[int, ...], path: str | Path, *, opset: int = OPSET) -> Path:
    """Write ``module`` (put in eval mode) to ``path`` for a fixed ``input_shape``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    dummy = torch.zeros(input_shape)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (dummy,), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"], do_constant_folding=True)
    return path


def onnx_max_abs_diff(module: nn.Module, path: str | Path, x: torch.Tensor, threads: int = 1) -> float:
    """Run ``path`` in ONNX Runtime (CPU) and return the max |difference| to ``module(x)``."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        expected = module.eval()(x).numpy()
    return float(np.abs(got - expected).max())
