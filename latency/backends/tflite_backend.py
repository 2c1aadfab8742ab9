"""TFLite (LiteRT) on the host CPU: litert-torch converts, the LiteRT interpreter runs with XNNPACK.

The paper measured TFLite float models on one large core of a Pixel phone. This backend gives
the same runtime and kernels (XNNPACK, the interpreter's default CPU delegate) on the host, and
its :meth:`TFLiteBackend.convert` is what the ``android`` backend pushes to the phone.

Layout. litert-torch keeps the torch module's calling convention by default: an NCHW module
becomes a model with NCHW inputs/outputs, computed NHWC inside, with a TRANSPOSE op at each
4-D boundary. A TensorFlow-built MobileNet has NHWC inputs and no such ops, and inside a whole
network consecutive ops pass NHWC tensors with no transposes between them, so per-op timings
must not include them. With ``channels_last_io=True`` (the default) the module is wrapped with
``litert_torch.to_channel_last_io``: every 4-D input and output of the .tflite model is NHWC
and no boundary TRANSPOSE is emitted (2-D inputs/outputs, e.g. linear ops, are unchanged; the
pool op's flatten keeps one TRANSPOSE of its pooled 1x1xC tensor, which moves no data).
Outputs then equal ``module(x)`` permuted NCHW -> NHWC; :func:`to_model_layout` /
:func:`from_model_layout` convert tensors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .base import Backend, BackendUnavailable, Compiled

INSTALL = 'pip install -e ".[tflite]"'
_SHOW_PROGRESS = "LITERT_TORCH_SHOW_PROGRESS"


@contextlib.contextmanager
def _quiet_loggers(*names: str):
    """Raise the level of noisy third-party loggers for the duration (litert-torch imports torchao,
    whose optional CUDA extensions log load failures on a CPU build of torch)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _import_litert_torch():
    try:
        with _quiet_loggers("torchao", "torch.utils._pytree"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import litert_torch
    except ImportError as err:
        raise BackendUnavailable(f"backend tflite: litert-torch is not installed ({err}); install it with: {INSTALL}") \
            from err
    return litert_torch


def _import_interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as err:
        raise BackendUnavailable(f"backend tflite: ai-edge-litert is not installed ({err}); install it with: {INSTALL}") \
            from err
    return Interpreter, OpResolverType


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def to_model_layout(x: np.ndarray) -> np.ndarray:
    """An NCHW array as the channels-last model takes it (N..C); arrays of rank < 3 unchanged."""
    return np.ascontiguousarray(np.moveaxis(x, 1, -1)) if x.ndim >= 3 else x


def from_model_layout(y: np.ndarray) -> np.ndarray:
    """A channels-last model output back to torch's NCHW; arrays of rank < 3 unchanged."""
    return np.ascontiguousarray(np.moveaxis(y, -1, 1)) if y.ndim >= 3 else y


class _TFLiteCompiled(Compiled):
    """One LiteRT interpreter with its input set once; ``run()`` is one ``invoke()``."""

    def __init__(self, interpreter, model_content: bytes, feed: np.ndarray):
        self.interpreter = interpreter
        self.model_content = model_content  # the interpreter reads from this buffer: keep it alive
        self.feed = feed
        self.input_index = interpreter.get_input_details()[0]["index"]
        self.output_index = interpreter.get_output_details()[0]["index"]
        interpreter.set_tensor(self.input_index, feed)

    def run(self) -> None:
        self.interpreter.invoke()

    def output(self) -> np.ndarray:
        """The output of the last run (model layout)."""
        return self.interpreter.get_tensor(self.output_index)

    def op_names(self) -> list[str]:
        """Builtin op names of the model's nodes (a delegated model also lists its DELEGATE node)."""
        return [d["op_name"] for d in self.interpreter._get_ops_details()]

    def close(self) -> None:
        self.interpreter = None


class TFLiteBackend(Backend):
    """LiteRT interpreter, ``threads`` CPU threads, XNNPACK (the interpreter's default delegate)."""

    name = "tflite"

    def __init__(self, threads: int = 1, channels_last_io: bool = True, xnnpack: bool = True):
        super().__init__(threads)
        self._litert_torch = _import_litert_torch()
        self._Interpreter, self._OpResolverType = _import_interpreter()
        self.channels_last_io = bool(channels_last_io)
        self.xnnpack = bool(xnnpack)

    def runtime_version(self) -> str:
        return f"LiteRT {_version('ai-edge-litert')} ({'XNNPACK' if self.xnnpack else 'builtin kernels'})"

    def converter_version(self) -> str:
        return f"litert-torch {_version('litert-torch')}"

    def model_input_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The .tflite model's input shape for a torch ``input_shape`` (NHWC when channels-last)."""
        shape = tuple(input_shape)
        if self.channels_last_io and len(shape) >= 3:
            return (shape[0], *shape[2:], shape[1])
        return shape

    def convert(self, module: nn.Module, input_shape: tuple[int, ...], path: str | Path) -> Path:
        """Convert ``module`` (put in eval mode) for a fixed ``input_shape`` (NCHW, torch's) to a
        float32 .tflite flatbuffer at ``path``; returns the path. See the module docstring for
        the layout of the model's inputs and outputs."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        module = module.eval()
        x = torch.randn(tuple(input_shape), generator=torch.Generator().manual_seed(0))
        if self.channels_last_io:
            with torch.no_grad():
                out = module(x)
            args = [0] if x.dim() >= 3 else []
            outputs = [0] if isinstance(out, torch.Tensor) and out.dim() >= 3 else []
            if args or outputs:
                module = self._litert_torch.to_channel_last_io(module, args=args, outputs=outputs).eval()
                if args:
                    x = x.permute(0, *range(2, x.dim()), 1).contiguous()
        previous = os.environ.get(_SHOW_PROGRESS)
        os.environ[_SHOW_PROGRESS] = "n"  # litert-torch prints a progress tree per conversion otherwise
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                edge_model = self._litert_torch.convert(module, (x,))
            edge_model.export(str(path))
        finally:
            if previous is None:
                os.environ.pop(_SHOW_PROGRESS, None)
            else:
                os.environ[_SHOW_PROGRESS] = previous
        return path

    def interpreter(self, model_content: bytes):
        """A LiteRT interpreter on ``model_content`` with this backend's threads and delegate."""
        resolver = (self._OpResolverType.AUTO if self.xnnpack
                    else self._OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interpreter = self._Interpreter(model_content=model_content, num_threads=self.threads,
                                        experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
        return interpreter

    def compile(self, module: nn.Module, input_shape: tuple[int, ...]) -> _TFLiteCompiled:
        with tempfile.TemporaryDirectory() as tmp:
            content = self.convert(module, input_shape, Path(tmp) / "op.tflite").read_bytes()
        interpreter = self.interpreter(content)
        details = interpreter.get_input_details()
        if len(details) != 1:
            raise ValueError(f"backend tflite: the converted model has {len(details)} inputs, expected 1")
        shape = tuple(int(d) for d in details[0]["shape"])
        if shape != self.model_input_shape(input_shape):
            raise ValueError(f"backend tflite: the converted model takes {shape}, "
                             f"expected {self.model_input_shape(input_shape)} for input_shape {tuple(input_shape)}")
        feed = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        return _TFLiteCompiled(interpreter, content, feed)

    def provenance(self) -> dict:
        return super().provenance() | {"converter": self.converter_version(),
                                       "io_layout": "NHWC" if self.channels_last_io else "NCHW"}
