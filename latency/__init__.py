"""Latency lookup tables: backends, profiler, predictor, targets (pixel1 included).

``latency.predict(spec, "pixel1")`` predicts a network's latency as the sum of its ops.
Depends on ``search_spaces`` only (never on ``nas`` or ``netadapt``).
"""

from .predictor import Prediction, predict, predict_ms, resolve_table
from .table import LatencyTable, MeasuredTable, MissingOpsError, ProvenanceMismatch, load_table, merge_tables
from .targets import Target, TargetError, load_target, target_names

__all__ = ["Prediction", "predict", "predict_ms", "resolve_table", "LatencyTable", "MeasuredTable",
           "MissingOpsError", "ProvenanceMismatch", "load_table", "merge_tables", "Target", "TargetError",
           "load_target", "target_names"]
