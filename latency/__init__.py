"""Latency lookup tables: backends, profiler, predictor, targets (pixel1 included).

``latency.predict(spec, "pixel1")`` predicts a network's latency as the sum of its ops.
Depends on ``search_spaces`` and ``jobs`` only (never on ``nas`` or ``netadapt``).
"""

from search_spaces._cli_names import keep_functions

from .on_demand import ProfilingTable, table_for
from .predictor import Prediction, predict, predict_ms, resolve_table
from .table import (BadRowsError, LatencyTable, MeasuredTable, MissingOpsError, ProvenanceMismatch, load_table,
                    merge_tables)
from .targets import Target, TargetError, load_target, target_names

# ``python -m latency.predict`` is the CLI; ``latency.predict`` stays the function above, also
# after that module is imported (see search_spaces._cli_names).
keep_functions(__name__, "predict")

__all__ = ["Prediction", "predict", "predict_ms", "resolve_table", "BadRowsError", "LatencyTable", "MeasuredTable",
           "MissingOpsError", "ProvenanceMismatch", "load_table", "merge_tables", "Target", "TargetError",
           "load_target", "target_names", "ProfilingTable", "table_for"]
