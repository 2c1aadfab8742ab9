"""The reproduction pipeline's settings: one YAML file per network (``experiments/configs/``).

A config has top-level settings (``network``, ``target``, ``target_ms``, ``data``, ``seed``: the
network NetAdapt starts from, ``random_seed``) and one section per stage: ``search`` (:class:`nas.runner.SearchConfig` fields, ``proxy`` for
:class:`proxytask.train.ProxyConfig` overrides; ``signal``, ``scratch`` or ``supernet``, is how
children are scored, SearchConfig's ``signal_kind``, with ``supernet_epochs``), ``netadapt``,
``redesign``, ``final_training`` and ``export``. Unknown keys are errors naming the key; omitted
keys take the defaults below.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
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
        "signal": "scratch", "supernet_epochs": None,  # nas.search --signal / --supernet-epochs
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


def _number(value: Any, where: str, what: str, *, low: float | None = None, allow: tuple = ()) -> None:
    """A finite number (not a bool) above ``low``, or one of ``allow``; else a ConfigError naming ``where``."""
    if value in allow and not isinstance(value, (int, float)) or (value is None and None in allow):
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (low is not None and value <= low):
        raise ConfigError(f"{where}: {value!r} must be {what}")


def _integer(value: Any, where: str, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        raise ConfigError(f"{where}: {value!r} must be an integer " + (f"from {low} to {high}" if high is not None
                                                                        else f">= {low}"))


def _check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or isinstance(seed, (int, float)):
        raise ConfigError(f"seed: {seed!r} is a number; seed names the network NetAdapt starts from (search, "
                          "a reference name such as mnasnet_a1, or a YAML path); the random seed is random_seed")
    if not isinstance(seed, str) or not seed:
        raise ConfigError(f"seed: {seed!r} must be search, a reference name or a YAML path")
    if seed != "search":
        from search_spaces.references import names
        from search_spaces.spec import resolve_spec

        try:
            resolve_spec(seed)
        except (ValueError, OSError) as err:
            raise ConfigError(f"seed: {str(err).splitlines()[0][:200]}; use search, a reference name "
                              f"({', '.join(names())}) or a YAML path") from None


def _check_final_training(final: dict) -> None:
    _integer(final["seeds"], "final_training.seeds", 1, 100)
    _integer(final["workers"], "final_training.workers", 1, 256)
    _integer(final["threads"], "final_training.threads", 1, 256)
    widths = final["widths"]
    if not isinstance(widths, list) or any(isinstance(w, bool) or not isinstance(w, (int, float))
                                           or not 0.1 <= w <= 4 for w in widths):
        raise ConfigError(f"final_training.widths: {widths!r} must be a list of width multipliers from 0.1 to 4 "
                          "(e.g. [0.35, 0.5, 0.75, 1.0, 1.25]); [] trains the paper's network at 1.0 only")
    epochs = final["epochs"]
    if epochs is not None:
        _number(epochs, "final_training.epochs", "null (the proxy's default), or a finite number >= 0 "
                "(0 skips the final training)")
        if epochs < 0:
            raise ConfigError(f"final_training.epochs: {epochs!r} must be null or >= 0 (0 skips the final training)")


def _check_numbers(s: dict) -> None:
    _integer(s["random_seed"], "random_seed", 0)
    share = s["search"]["netadapt_share"]
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 0.9:
        raise ConfigError(f"search.netadapt_share: {share!r} must be a fraction in [0, 0.9): the share of the "
                          "latency the search leaves NetAdapt to cut")
    _number(s["target_ms"], "target_ms", "a positive, finite number of milliseconds", low=0)
    for section, name in (("search", "target_ms"), ("netadapt", "budget_ms")):
        _number(s[section][name], f"{section}.{name}", "'auto' or a positive, finite number of milliseconds",
                low=0, allow=("auto",))
    _number(s["search"]["w"], "search.w", "a finite number (the reward's latency exponent, e.g. -0.07)")
    if s["search"]["epochs"] is not None:
        _number(s["search"]["epochs"], "search.epochs", "null or a positive, finite number of epochs", low=0)
    _check_signal(s["search"])
    _integer(s["netadapt"]["rounds"], "netadapt.rounds", 1)
    _integer(s["search"]["children"], "search.children", 1)
    if not isinstance(s["netadapt"]["on_redesigned"], bool):
        raise ConfigError(f"netadapt.on_redesigned: {s['netadapt']['on_redesigned']!r} must be true or false")


SIGNALS = ("scratch", "supernet")  # nas.search --signal


def _check_signal(search: dict) -> None:
    """``search.signal`` (how children are scored) and ``search.supernet_epochs`` (its supernet's training)."""
    from proxytask import MAX_EPOCHS

    signal, epochs = search["signal"], search["supernet_epochs"]
    if not isinstance(signal, str) or signal not in SIGNALS:
        raise ConfigError(f"search.signal: {signal!r} must be scratch (each child trained from scratch) or supernet "
                          "(children scored with the weights of a supernet trained first)")
    if epochs is None:
        return
    what = f"null (the main job's setting) or a number of epochs in (0, {MAX_EPOCHS}]"
    _number(epochs, "search.supernet_epochs", what, low=0)
    if epochs > MAX_EPOCHS:
        raise ConfigError(f"search.supernet_epochs: {epochs!r} must be {what}")
    if signal != "supernet":
        raise ConfigError(f"search.supernet_epochs: {epochs!r} is set but search.signal is {signal}; set "
                          "search.signal: supernet, or leave supernet_epochs null")


def _check_free_sections(s: dict) -> None:
    """The pass-through sections, checked now rather than when their stage starts: ``search.proxy``
    and ``final_training.proxy`` (ProxyConfig fields), ``netadapt.options`` (NetAdaptConfig fields)."""
    import dataclasses

    from jobs.cli import settings_problem
    from netadapt.config import NetAdaptConfig
    from proxytask.train import ProxyConfig

    for where, values in (("search.proxy", s["search"]["proxy"]), ("final_training.proxy", s["final_training"]["proxy"])):
        problem = settings_problem(ProxyConfig, dict(values))
        if problem:
            raise ConfigError(f"{where}.{problem}")
    fields = {f.name for f in dataclasses.fields(NetAdaptConfig)}
    for key, value in s["netadapt"]["options"].items():
        if key not in fields:
            raise ConfigError(f"netadapt.options.{str(key)[:40]}: unknown setting; expected NetAdaptConfig fields "
                              "(python -m netadapt.run --help)")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"netadapt.options.{key}: {value} is not a finite number")


def data_problem(source: Any) -> str | None:
    """Why ``source`` cannot be read (None when it can): not a known source, a missing folder, or
    a folder without its layout. Reads directory entries only: a check before any work starts."""
    from jobs.cli import source_problem
    from proxytask import SOURCE_KINDS, sources

    if not isinstance(source, str):
        return f"{source!r} is not a data source; write default, tinyimagenet:PATH, imagenet:PATH or imagefolder:PATH"
    problem = source_problem(source, SOURCE_KINDS)
    if problem is None and source.split(":", 1)[0] in sources.FOLDER_KINDS:
        problem = sources.source_problem(source)
    return problem[len("data: "):] if problem and problem.startswith("data: ") else problem


@dataclass
class PipelineConfig:
    """Every setting of one run (see ``DEFAULTS`` and the commented configs), checked as a whole
    on construction: a bad value anywhere is a ConfigError before any stage starts."""

    settings: dict = field(default_factory=lambda: copy.deepcopy(DEFAULTS))

    def __post_init__(self) -> None:
        s = self.settings
        if s["network"] not in NETWORKS:
            raise ConfigError(f"network: {s['network']!r} is not one of {', '.join(NETWORKS)}")
        _check_seed(s["seed"])
        _check_numbers(s)
        _check_final_training(s["final_training"])
        _check_free_sections(s)

    def check_data(self) -> None:
        """``data`` names a source that can be read (directory entries only; cheap)."""
        problem = data_problem(self.settings["data"])
        if problem:
            raise ConfigError(f"data: {problem}")

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


def _read_yaml(path: Path) -> dict:
    """The config file's mapping, read within the spec loader's bounds (size, depth, alias
    expansion, integer length, duplicate keys: :mod:`jobs.safe_io`); every failure one ConfigError line."""
    from jobs.safe_io import InputError, load_yaml, read_text, yaml_problem

    try:
        text = read_text(path, what="config")
    except (InputError, OSError, ValueError) as err:
        raise ConfigError(f"config: {str(err).splitlines()[0][:300] if str(err) else path}") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"config: {path} is not a valid config YAML: {yaml_problem(err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} holds a {type(data).__name__}; a config is a mapping of settings")
    return data


def load_config(network: str, path: str | Path | None = None, **overrides: Any) -> PipelineConfig:
    """The config of ``network`` (``large`` / ``small``): ``path`` or ``experiments/configs/NETWORK.yaml``.

    ``overrides`` are dotted keys (``{"search.children": 4, "data": "imagefolder:/x"}``) applied last.
    """
    if network not in NETWORKS:
        raise ConfigError(f"network: {network!r} is not one of {', '.join(NETWORKS)}")
    path = Path(path) if path is not None else CONFIG_DIR / f"{network}.yaml"
    settings = _merge(DEFAULTS, _read_yaml(path), "")
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
        if not isinstance(node, dict) or last not in node:
            raise ConfigError(f"{dotted}: unknown setting")
        node[last] = value
    return PipelineConfig(settings)
