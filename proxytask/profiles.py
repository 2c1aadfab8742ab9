"""The accuracy signal's two profiles: what a child is trained on and how, on a CPU and on a GPU.

A *signal* is a data source plus a :class:`~proxytask.train.ProxyConfig`. The search, NetAdapt
and the fidelity benchmark (``python -m experiments.proxy_fidelity``) all get theirs from
:func:`signal`, so the benchmark measures exactly what the search optimises.

* ``cpu`` (the default; what ``python -m nas.search`` runs on 2 cores): see :data:`PROFILES`.
* ``gpu`` (what ``--gpus-per-trial`` selects): a longer schedule at a higher resolution, the
  data resident on the GPU, channels-last and bf16 autocast.

Why resolution is the lever: the networks of this space are designed for 224 px; at 32 px their
last three stages see 1 x 1 maps, where 5 x 5 kernels, squeeze-and-excite and the efficient
last stage cannot matter, so a 32 px signal ranks networks by little more than their size. The other lever is the
initialisation of fully connected layers (``ProxyConfig.linear_init``). The figures behind each
choice, and the targets this signal still misses, are in ``results/proxy_fidelity/`` and the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import PROFILE_NAMES

# ProxyConfig fields and data settings of each profile; ``patch`` is the side (source pixels)
# of the crops of the embedded photos, ``resolution`` the side a child is trained at.
PROFILES: dict[str, dict[str, Any]] = {
    # 48 px crops of the photos (tiles of 64 px, so validation and test tiles interleave with
    # training ones) at 64 px, 1.5 epochs, channels-last (oneDNN's NHWC depthwise kernels train
    # these networks 1.5-2.5x faster on a CPU): 27 s a child on one core for the Table 3 networks
    # (46 s for V3-Large 1.0); the main job's 32 children took 571 s. Chosen with experiments.proxy_fidelity among the settings listed in
    # results/proxy_fidelity/README.md.
    "cpu": {"patch": 48, "proxy": {"resolution": 64, "epochs": 1.5, "channels_last": True}},
    # The same crops at 96 px for three epochs (what a GPU's speed buys), channels-last, bf16.
    # Not yet measured with experiments.proxy_fidelity (no GPU was lent to the session that built it).
    "gpu": {"patch": 48, "proxy": {"resolution": 96, "epochs": 3.0, "device": "cuda", "channels_last": True,
                                   "amp": "bf16"}},
}


@dataclass(frozen=True)
class Signal:
    """One accuracy signal: ``data`` (a :func:`proxytask.data.load_data` source), ``patch`` (crop
    side for the embedded photos; ignored for other sources) and ``proxy`` (how a child trains,
    ``proxy.resolution`` being the side the data are loaded at)."""

    profile: str
    data: str
    patch: int | None
    proxy: Any = field(default=None)  # ProxyConfig

    def load(self, seed: int = 0, **options):
        """The signal's data, loaded once at the training resolution (no per-batch resize);
        ``options`` go to :func:`proxytask.data.load_data` (``val_size``, ...)."""
        from .data import load_data

        default = self.data == "default"
        return load_data(self.data, resolution=self.proxy.resolution, seed=seed,
                         patch=self.patch if default else None, **options)

    def describe(self) -> dict:
        from dataclasses import asdict

        return {"profile": self.profile, "data": self.data, "patch": self.patch, "proxy": asdict(self.proxy)}


def signal(profile: str = "cpu", *, data: str = "default", overrides: dict | None = None,
           patch: int | None = None) -> Signal:
    """The signal of ``profile`` on ``data``, with ``overrides`` (ProxyConfig fields) applied last.

    For user data the profile's resolution still applies unless overridden (e.g.
    ``overrides={"resolution": 224}`` for an ImageNet-like folder). A bad profile or field is a
    one-line ValueError naming it.
    """
    from .train import ProxyConfig

    if profile not in PROFILES:
        raise ValueError(f"profile: {profile!r} is not one of {', '.join(PROFILE_NAMES)}")
    settings = PROFILES[profile]
    try:
        proxy = ProxyConfig.from_dict({**settings["proxy"], **(overrides or {})})
    except TypeError as err:
        raise ValueError(f"proxy: {err}; see proxytask.train.ProxyConfig for the settings") from None
    return Signal(profile=profile, data=data, patch=patch or settings["patch"], proxy=proxy)
