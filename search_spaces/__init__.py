"""Architecture specs, the model builder, cost counting and the paper's reference networks.

Light to import: the torch-dependent parts (``build``, ``build_op``, ``import_state_dict``)
load on first use.
"""

from ._divisible import make_divisible
from .codecs import from_arch_string, timm_arch_def, to_arch_string
from .cost import count_madds, count_params, describe, op_cost
from .opkey import OpKey, OpKeyError
from .references import names as reference_names
from .references import reference
from .spec import (NONLINEARITIES, OPERATORS, ArchSpec, BlockSpec, HeadSpec, SpecError, StemSpec, load_spec,
                   se_width)

from jobs.lazy import lazy_getattr

_LAZY = {
    "build": ("builder", "build"),
    "build_op": ("builder", "build_op"),
    "import_state_dict": ("weights", "import_state_dict"),
}

__all__ = [
    "ArchSpec", "BlockSpec", "HeadSpec", "StemSpec", "SpecError", "OpKey", "OpKeyError", "NONLINEARITIES",
    "OPERATORS", "make_divisible", "se_width", "load_spec", "reference", "reference_names", "describe",
    "count_madds", "count_params", "op_cost", "to_arch_string", "from_arch_string", "timm_arch_def", *_LAZY,
]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())

# ``python -m search_spaces.describe`` is the CLI; ``search_spaces.describe`` stays the function
# (search_spaces.cost.describe) after that module is imported (see search_spaces._cli_names).
from ._cli_names import keep_functions  # noqa: E402

keep_functions(__name__, "describe")
