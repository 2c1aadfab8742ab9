"""ONNX Runtime, CPU execution provider, explicit thread count: the default host backend."""

from __future__ import annotations

import os
import tempfile

import numpy as np
from torch import nn

from .base import Backend, BackendUnavailable, Compiled


class _OrtCompiled(Compiled):
    def __init__(self, session, feed):
        self.session, self.feed = session, feed

    def run(self) -> None:
        self.session.run(None, self.feed)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, threads: int = 1, graph_optimization: str = "all"):
        super().__init__(threads)
        try:
            import onnxruntime as ort
        except ImportError as err:  # pragma: no cover - a dependency
            raise BackendUnavailable("backend onnxruntime: install onnxruntime (pip install onnxruntime)") from err
        self._ort = ort
        levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
        if graph_optimization not in levels:
            raise ValueError(f"graph_optimization: {graph_optimization!r} is not one of {', '.join(levels)}")
        self.graph_optimization = graph_optimization
        self._level = levels[graph_optimization]

    def runtime_version(self) -> str:
        return f"onnxruntime {self._ort.__version__}"

    def session_options(self):
        options = self._ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = self._level
        # Spinning workers would burn the other core between runs; irrelevant at 1 thread.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0" if self.threads > 1 else "1")
        return options

    def compile(self, module: nn.Module, input_shape: tuple[int, ...]) -> Compiled:
        from search_spaces.onnx_io import export_onnx

        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(module, input_shape, os.path.join(tmp, "op.onnx"))
            session = self._ort.InferenceSession(str(path), self.session_options(), providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)}
        return _OrtCompiled(session, feed)

    def provenance(self) -> dict:
        return super().provenance() | {"graph_optimization": self.graph_optimization}
