"""The weight-sharing accuracy signal: a supernet of a search space trained once (sandwich rule,
in-place distillation), children scored in about a second with inherited weights.

``python -m proxytask.supernet train|score|info`` (see :mod:`proxytask.supernet.__main__`);
docs/supernet.md describes the design and the measured figures. Depends on ``search_spaces``,
``latency``, ``jobs`` and the rest of ``proxytask`` only.
"""

from jobs.lazy import lazy_getattr

_EXPORTS = {
    "Supernet": ("model", "Supernet"),
    "Subnet": ("model", "Subnet"),
    "SupernetError": ("model", "SupernetError"),
    "sample_of": ("mapping", "sample_of"),
    "subnet_of": ("mapping", "subnet_of"),
    "subnet_from_sample": ("mapping", "subnet_from_sample"),
    "nearest_sample": ("mapping", "nearest_sample"),
    "nearest_report": ("mapping", "nearest_report"),
    "SupernetConfig": ("training", "SupernetConfig"),
    "train_supernet": ("training", "train_supernet"),
    "load_supernet": ("training", "load_supernet"),
    "cache_key": ("training", "cache_key"),
    "SupernetScorer": ("scoring", "SupernetScorer"),
    "subnet_at_widths": ("widths", "subnet_at_widths"),
    "extract_at_widths": ("widths", "extract_at_widths"),
    "trained_supernet": ("cache", "trained_supernet"),
}

__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
__all__ = sorted(_EXPORTS)
