"""The accuracy signal: proxy data sets (train / validation / test splits) and the short training
that scores a child network.

``nas/`` (the search reward) and ``netadapt/`` (proposal selection) both read accuracies from
here; this package depends on ``search_spaces`` and ``latency`` only, never on ``nas`` or
``netadapt``. Heavy imports (torch) are deferred until an attribute is used.
"""

from search_spaces._lazy import lazy_getattr

# Data sources (proxytask.load_data): kind -> whether it takes a folder after a colon.
SOURCE_KINDS = {"default": False, "cifar10": True, "imagefolder": True}
PROFILE_NAMES = ("cpu", "gpu")  # proxytask.profiles.PROFILES, named here so CLIs need not import torch

_EXPORTS = {
    "ProxyData": ("data", "ProxyData"),
    "load_data": ("data", "load_data"),
    "from_arrays": ("data", "from_arrays"),
    "ProxyConfig": ("train", "ProxyConfig"),
    "ChildResult": ("train", "ChildResult"),
    "TrainingDiverged": ("train", "TrainingDiverged"),
    "train_child": ("train", "train_child"),
    "train": ("train", "train"),
    "evaluate": ("train", "evaluate"),
    "recalibrate_bn": ("train", "recalibrate_bn"),
    "build_child": ("train", "build_child"),
    "torch_threads": ("train", "torch_threads"),
}

__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
__all__ = sorted(_EXPORTS)
