"""PyTorch eager mode on the CPU with a fixed thread count."""

from __future__ import annotations

import torch
from torch import nn

from .base import Backend, Compiled


class _TorchCompiled(Compiled):
    def __init__(self, module: nn.Module, x: torch.Tensor):
        self.module, self.x = module, x

    def run(self) -> None:
        with torch.inference_mode():
            self.module(self.x)


class TorchBackend(Backend):
    name = "torch"

    def runtime_version(self) -> str:
        return f"torch {torch.__version__}"

    def compile(self, module: nn.Module, input_shape: tuple[int, ...]) -> Compiled:
        torch.set_num_threads(self.threads)
        x = torch.randn(input_shape, generator=torch.Generator().manual_seed(0))
        return _TorchCompiled(module.eval(), x)
