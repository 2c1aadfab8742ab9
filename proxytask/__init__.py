"""The accuracy signal: proxy data sets (train / validation / test splits) and the short training
that scores a child network.

``nas/`` (the search reward) and ``netadapt/`` (proposal selection) both read accuracies from
here; this package depends on ``search_spaces`` and ``latency`` only, never on ``nas`` or
``netadapt``. Heavy imports (torch) are deferred until an attribute is used.
"""

from jobs.lazy import lazy_getattr

# Data sources (proxytask.load_data): kind -> whether it takes a folder after a colon. The folder
# kinds (tinyimagenet, imagenet, imagefolder) also take ?classes=N,per_class=N,... subset options
# after the folder (proxytask.sources).
SOURCE_KINDS = {"default": False, "cifar10": True, "tinyimagenet": True, "imagenet": True, "imagefolder": True}
PROFILE_NAMES = ("cpu", "gpu", "tinyimagenet")  # proxytask.profiles.PROFILES, named here so CLIs need not import torch
# Bounds of a proxy training every command line checks (ProxyConfig enforces them too): epochs of
# one training, and the side a child trains at (larger would not fit a batch in memory).
MAX_EPOCHS = 1000
MAX_PROXY_RESOLUTION = 512

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
