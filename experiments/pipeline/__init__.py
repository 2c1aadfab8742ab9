"""The reproduction pipeline: block-wise search -> NetAdapt -> Section 5 redesign -> MobileNetV3.

* :mod:`.config`: the pipeline config (``experiments/configs/NETWORK.yaml``), validated on load.
* :mod:`.stages`: the search, NetAdapt and redesign stages and :func:`run_pipeline`.
* :mod:`.definition`: the last stage, the emitted definition and ``summary.md``.
* :mod:`.comparison`: ours against the paper's network on equal footing (the verdict).
* :mod:`.structure`: the block- and stage-wise structure report.
* :mod:`.reproduce`: ``python -m experiments.reproduce`` (the command line).
"""

from .config import NETWORKS, ConfigError, PipelineConfig, load_config
from .stages import (PipelineError, choose_seed, costs, netadapt_budget_ms, netadapt_reach, run_pipeline,
                     search_target_ms)

__all__ = ["NETWORKS", "ConfigError", "PipelineConfig", "load_config", "PipelineError", "choose_seed", "costs",
           "netadapt_budget_ms", "netadapt_reach", "run_pipeline", "search_target_ms"]
