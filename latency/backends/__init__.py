"""Latency backends, found by name and imported lazily (nn-Meter style)."""

from __future__ import annotations

import importlib

from .base import STATISTICS, Backend, BackendUnavailable, Compiled, Protocol

_REGISTRY = {
    "onnxruntime": ("latency.backends.onnxruntime_backend", "OnnxRuntimeBackend"),
    "torch": ("latency.backends.torch_backend", "TorchBackend"),
    "tflite": ("latency.backends.tflite_backend", "TFLiteBackend"),
    "android": ("latency.backends.android_backend", "AndroidBackend"),
}

__all__ = ["Backend", "BackendUnavailable", "Compiled", "Protocol", "STATISTICS", "get_backend", "backend_names"]


def backend_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get_backend(name: str, threads: int = 1, **options) -> Backend:
    """The backend registered as ``name`` (onnxruntime, torch, tflite, android)."""
    if name not in _REGISTRY:
        raise ValueError(f"backend: {name!r} is not one of {', '.join(_REGISTRY)}")
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)(threads=threads, **options)
