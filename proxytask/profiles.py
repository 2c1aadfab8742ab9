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
    # For Tiny-ImageNet (or ImageNet) on 2 CPU cores, with the subset in the source: chosen on
    # validation (python -m experiments.proxy_fidelity --choose, docs/signal.md) among the equal-CPU
    # settings of results/proxy_fidelity/tinyimagenet/: --data 'tinyimagenet:DIR?classes=20,per_class=100',
    # about 5 CPU-s a child. Its fidelity misses the targets (docs/signal.md).
    "tinyimagenet": {"patch": 48, "proxy": {"resolution": 32, "epochs": 1.0, "channels_last": True}},
}


@dataclass(frozen=True)
class Signal:
    """One accuracy signal: ``data`` (a :func:`proxytask.data.load_data` source, with a folder
    source's subset in it: ``tinyimagenet:PATH?classes=100,per_class=100``), ``patch`` (crop
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
        """The signal as plain data (summaries and resume keys compare it). For a folder source
        (``tinyimagenet:``, ``imagenet:``, ``imagefolder:``) ``subset`` adds the data subset with
        its defaults filled in: ``classes``, ``per_class``, ``val_per_class``, ``test_per_class``
        (None: all) and ``seed`` (:meth:`proxytask.sources.Source.subset`); two subsets never
        describe alike, since ``data`` carries them too."""
        from dataclasses import asdict

        described = {"profile": self.profile, "data": self.data, "patch": self.patch, "proxy": asdict(self.proxy)}
        subset = data_subset(self.data)
        if subset is not None:
            described["subset"] = subset
        return described


def data_subset(source: str) -> dict | None:
    """The subset of a folder source (:meth:`proxytask.sources.Source.subset`), None for others."""
    from .sources import FOLDER_KINDS, parse_source

    if not isinstance(source, str) or source.partition(":")[0] not in FOLDER_KINDS:
        return None
    return parse_source(source).subset()


def canonical_data(source: str) -> str:
    """``source`` with a folder source's subset options in one order (others unchanged), so that
    one subset spelt two ways is one signal. A bad option is a one-line ValueError."""
    from .sources import FOLDER_KINDS, parse_source

    if isinstance(source, str) and source.partition(":")[0] in FOLDER_KINDS and source.partition(":")[2]:
        return parse_source(source).canonical
    return source


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
    return Signal(profile=profile, data=canonical_data(data), patch=patch or settings["patch"], proxy=proxy)


def resolve_profile(profile: str | None, gpus: float) -> str:
    """The profile a run uses: ``profile`` when given, else ``gpu`` when each child (a search trial,
    a NetAdapt proposal) gets GPUs, else ``cpu``. The one place this rule lives."""
    return profile or ("gpu" if gpus > 0 else "cpu")


def resolved_signal(profile: str | None, *, gpus: float, data: str = "default", overrides: dict | None = None,
                    patch: int | None = None) -> Signal:
    """:func:`signal` of :func:`resolve_profile` with the device the run's resources give it: the
    CPU when children get no GPUs, CUDA when they do (Ray picks the GPU through
    ``CUDA_VISIBLE_DEVICES``), unless ``overrides`` name a device. A device of ``cuda`` without
    GPUs is left for the caller to refuse in its own words."""
    overrides = dict(overrides or {})
    if "device" not in overrides:
        overrides["device"] = "cuda" if gpus > 0 else "cpu"
    return signal(resolve_profile(profile, gpus), data=data, overrides=overrides, patch=patch)


# ProxyConfig fields that change how fast a child trains, not what it measures: a resume may change them.
SPEED_ONLY_FIELDS = ("threads",)


def signal_key(sig: Signal) -> dict:
    """What ``sig`` measures: :meth:`Signal.describe` less :data:`SPEED_ONLY_FIELDS` (plain JSON)."""
    import json

    described = json.loads(json.dumps(sig.describe(), sort_keys=True, default=str))
    proxy = described.get("proxy")
    if isinstance(proxy, dict):
        described["proxy"] = {k: v for k, v in proxy.items() if k not in SPEED_ONLY_FIELDS}
    return described


def signal_digest(sig: Signal | dict) -> str:
    """A short digest of what ``sig`` measures (:func:`signal_key`; or of such a dict): equal
    digests mean the same data, subset, resolution, schedule and device. A resume compares it."""
    import hashlib
    import json

    key = sig if isinstance(sig, dict) else signal_key(sig)
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _flat(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        flat = {}
        for key, inner in value.items():
            flat.update(_flat(inner, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def signal_change(old: dict, new: dict, limit: int = 3) -> str:
    """The fields that differ between two :func:`signal_key` dicts, as ``field was A, now B``
    (at most ``limit``, then how many more), for a one-line resume error."""
    before, after = _flat(old if isinstance(old, dict) else {}), _flat(new)
    changed = [k for k in sorted(set(before) | set(after), key=lambda k: (k != "profile", k))
               if before.get(k) != after.get(k)]
    shown = [f"{k} was {before.get(k)!r}, now {after.get(k)!r}" for k in changed[:limit]]
    if len(changed) > limit:
        shown.append(f"and {len(changed) - limit} more")
    return "; ".join(shown) or "its description"


def signal_words(described: dict) -> str:
    """A :meth:`Signal.describe` dict in words a person reads: profile, device, resolution,
    length, data (and its subset)."""
    proxy = described.get("proxy") or {}
    resolution = proxy.get("resolution")
    length = f"{proxy.get('epochs'):g} epochs" if isinstance(proxy.get("epochs"), (int, float)) else "?"
    if proxy.get("max_steps") is not None:
        length += f" (at most {proxy['max_steps']} steps)"
    parts = [f"profile {described.get('profile')}", f"device {proxy.get('device')}",
             f"{resolution} px" if resolution else "the data's resolution", length,
             f"batch {proxy.get('batch_size')}, lr {proxy.get('lr')}, seed {proxy.get('seed')}",
             f"data {described.get('data')}"]
    subset = described.get("subset")
    if subset:
        parts.append("subset " + ", ".join(f"{k} {'all' if v is None else v}" for k, v in subset.items()))
    return "; ".join(parts)
