"""The reproduction pipeline's settings: one YAML file per network (``experiments/configs/``).

A config has top-level settings (``network``, ``target``, ``target_ms``, ``data``, ``seed``: the
network NetAdapt starts from, ``random_seed``) and one section per stage: ``search`` (:class:`nas.runner.SearchConfig` fields, ``proxy`` for
:class:`proxytask.train.ProxyConfig` overrides), ``netadapt``, ``redesign``, ``final_training`` and
``export``. Unknown keys are errors naming the key; omitted keys take the defaults below.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).parent / "configs"
NETWORKS = {"large": ("mobilenet_v3_large", "Table 1"), "small": ("mobilenet_v3_small", "Table 2")}

DEFAULTS: dict[str, Any] = {
    "network": "large",
    "target": "pixel1",
    "target_ms": 51.0,
    "data": "default",
    "seed": "search",  # NetAdapt's seed: "search" (the best child within NetAdapt's reach), a reference
                       # name (mnasnet_a1: what the paper did for Large), a YAML path or an arch string
    "random_seed": 0,
    "search": {
        "space": "mnasnet", "strategy": "rl", "w": -0.07, "alpha": None, "beta": None, "target_ms": "auto",
        "netadapt_share": 0.1,
        "children": 12, "epochs": None, "proxy_resolution": None, "profile": None, "concurrency": 2, "cpus_per_trial": 1.0,
        "gpus_per_trial": 0.0, "retries": 1, "address": None, "rl_batch_size": 4, "proxy": {},
    },
    "netadapt": {"budget_ms": "auto", "rounds": 3, "on_redesigned": False, "options": {}},
    "redesign": {"from_resolution": 14, "from_index": None},
    "final_training": {"epochs": None, "threads": 1, "proxy": {}, "seeds": 3, "widths": [0.35, 0.5, 0.75, 1.0, 1.25],
                       "workers": 2},
    "export": {"onnx": True, "onnx_tolerance": 1.0e-4},
}


class ConfigError(ValueError):
    """A bad pipeline setting; the message starts with the key path."""


def _merge(base: dict, override: Any, path: str) -> dict:
    if not isinstance(override, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(override).__name__}")
    out = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in base:
            raise ConfigError(f"{where}: unknown setting; expected one of {', '.join(base)}")
        free_form = key in ("proxy", "options", "widths")  # passed through to ProxyConfig / NetAdapt, checked there
        if isinstance(base[key], dict) and not free_form:
            out[key] = _merge(base[key], value, where)
        elif free_form and key != "widths" and not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of settings, got {type(value).__name__}")
        else:
            out[key] = value
    return out


@dataclass
class PipelineConfig:
    """Every setting of one run (see ``DEFAULTS`` and the commented configs)."""

    settings: dict = field(default_factory=lambda: copy.deepcopy(DEFAULTS))

    def __post_init__(self) -> None:
        s = self.settings
        if isinstance(s["seed"], bool) or isinstance(s["seed"], (int, float)):
            raise ConfigError(f"seed: {s['seed']!r} is a number; seed names the network NetAdapt starts from (search, "
                              "a reference name such as mnasnet_a1, or a YAML path); the random seed is random_seed")
        if not isinstance(s["seed"], str) or not s["seed"]:
            raise ConfigError(f"seed: {s['seed']!r} must be search, a reference name or a YAML path")
        if s["seed"] != "search":
            from search_spaces.spec import resolve_spec

            try:
                resolve_spec(s["seed"])
            except (ValueError, OSError) as err:
                raise ConfigError(f"seed: {str(err).splitlines()[0]}; use search, a reference name "
                                  "(python -m search_spaces.describe --list) or a YAML path") from None
        rs = s["random_seed"]
        if isinstance(rs, bool) or not isinstance(rs, int) or rs < 0:
            raise ConfigError(f"random_seed: {rs!r} must be an integer >= 0")
        share = s["search"]["netadapt_share"]
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 0.9:
            raise ConfigError(f"search.netadapt_share: {share!r} must be a fraction in [0, 0.9): the share of the "
                              "latency the search leaves NetAdapt to cut")
        final = s["final_training"]
        seeds = final["seeds"]
        if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= 100:
            raise ConfigError(f"final_training.seeds: {seeds!r} must be an integer from 1 to 100")
        workers = final["workers"]
        if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 256:
            raise ConfigError(f"final_training.workers: {workers!r} must be an integer from 1 to 256")
        widths = final["widths"]
        if not isinstance(widths, list) or any(isinstance(w, bool) or not isinstance(w, (int, float))
                                               or not 0.1 <= w <= 4 for w in widths):
            raise ConfigError(f"final_training.widths: {widths!r} must be a list of width multipliers from 0.1 to 4 "
                              "(e.g. [0.35, 0.5, 0.75, 1.0, 1.25]); [] trains the paper's network at 1.0 only")
        if s["network"] not in NETWORKS:
            raise ConfigError(f"network: {s['network']!r} is not one of {', '.join(NETWORKS)}")
        if not isinstance(s["target_ms"], (int, float)) or isinstance(s["target_ms"], bool) or s["target_ms"] <= 0:
            raise ConfigError(f"target_ms: {s['target_ms']!r} must be a positive number of milliseconds")
        for key in ("search.target_ms", "netadapt.budget_ms"):
            section, name = key.split(".")
            value = s[section][name]
            if value != "auto" and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ConfigError(f"{key}: {value!r} must be 'auto' or a positive number of milliseconds")
        if not isinstance(s["netadapt"]["on_redesigned"], bool):
            raise ConfigError(f"netadapt.on_redesigned: {s['netadapt']['on_redesigned']!r} must be true or false")
        rounds = s["netadapt"]["rounds"]
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ConfigError(f"netadapt.rounds: {rounds!r} must be an integer >= 1")
        children = s["search"]["children"]
        if isinstance(children, bool) or not isinstance(children, int) or children < 1:
            raise ConfigError(f"search.children: {children!r} must be an integer >= 1")
        epochs = s["final_training"]["epochs"]
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or epochs < 0):
            raise ConfigError(f"final_training.epochs: {epochs!r} must be null (the proxy's default), or >= 0 "
                              "(0 skips the final training)")

    @property
    def reference(self) -> str:
        return NETWORKS[self.settings["network"]][0]

    @property
    def table(self) -> str:
        return NETWORKS[self.settings["network"]][1]

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]

    def to_dict(self) -> dict:
        return copy.deepcopy(self.settings)


def load_config(network: str, path: str | Path | None = None, **overrides: Any) -> PipelineConfig:
    """The config of ``network`` (``large`` / ``small``): ``path`` or ``experiments/configs/NETWORK.yaml``.

    ``overrides`` are dotted keys (``{"search.children": 4, "data": "imagefolder:/x"}``) applied last.
    """
    if network not in NETWORKS:
        raise ConfigError(f"network: {network!r} is not one of {', '.join(NETWORKS)}")
    path = Path(path) if path is not None else CONFIG_DIR / f"{network}.yaml"
    if not path.is_file():
        raise ConfigError(f"config: {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config: {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    settings = _merge(DEFAULTS, data, "")
    seed = settings["seed"]
    if isinstance(seed, str) and seed.endswith((".yaml", ".yml")) and not Path(seed).is_absolute():
        settings["seed"] = str((path.parent / seed).resolve())  # relative to the config file
    space = str(settings["search"]["space"])
    if space.endswith((".yaml", ".yml")) and not Path(space).is_absolute():
        settings["search"]["space"] = str((path.parent / space).resolve())  # relative to the config file
    if settings["network"] != network:
        raise ConfigError(f"network: {path} is for {settings['network']!r}, not {network!r}")
    for dotted, value in overrides.items():
        *parents, last = dotted.split(".")
        node = settings
        for part in parents:
            node = node[part]
        if last not in node:
            raise ConfigError(f"{dotted}: unknown setting")
        node[last] = value
    return PipelineConfig(settings)
