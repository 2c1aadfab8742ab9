"""NetAdapt (Yang et al. 2018) as MobileNetV3 uses it: latency-budgeted layer-wise shrinking of a spec.

``python -m netadapt.run SPEC.yaml --target pixel1 --budget-ratio 0.9``; from Python,
``run_netadapt(NetAdaptConfig(spec=..., budget_ratio=0.9))``. Modules: :mod:`.proposals` (what can
shrink, by how much), :mod:`.weights` (L2-norm weight inheritance), :mod:`.finetune` (the proxy
training of a proposal), :mod:`.selection` (ratio or accuracy), :mod:`.config` (settings, step
schedule), :mod:`.executor` (Ray tasks), :mod:`.supernet_signal` (``--signal supernet``: proposals scored with
the weight-sharing supernet instead), :mod:`.algorithm` (the loop and its journal, a
:class:`jobs.Journal`), :mod:`.report` (history.csv, the plot), :mod:`.run` (the CLI). Light to
import: torch and Ray load on first use.
"""

from jobs.lazy import lazy_getattr

_LAZY = {
    "NetAdaptConfig": ("config", "NetAdaptConfig"),
    "NetAdaptError": ("config", "NetAdaptError"),
    "NetAdaptResult": ("config", "NetAdaptResult"),
    "run_netadapt": ("algorithm", "run_netadapt"),
    "select_proposal": ("selection", "select_proposal"),
    "selection_metric": ("selection", "selection_metric"),
    "Proposal": ("proposals", "Proposal"),
    "ResidualGroup": ("proposals", "ResidualGroup"),
    "make_proposals": ("proposals", "make_proposals"),
    "residual_groups": ("proposals", "residual_groups"),
    "WeightsMismatch": ("weights", "WeightsMismatch"),
    "inherit": ("weights", "inherit"),
}

__all__ = list(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
