"""The command line (``python -m melanoma_utils``) and ``reproduce`` (papermill).

Modules: ``app``, ``args``, ``data_commands``, ``outputs``, ``predict_commands``, ``reproduce``, ``train_commands``.
Layers (imports only run leftwards): config/atomic/versions < data < pipeline < evaluation < models < runs < study < reports < cli.
"""

# the principal module's names, loaded on first use (``from melanoma_utils.cli import ...`` keeps working without
# importing what the package's lighter modules do not need)
from ..lazy import reexport

__all__ = [
    "ORDER",
    "DataError",
    "build_parser",
    "command",
    "main",
    "train_config",
]

__getattr__, __dir__ = reexport(__name__, ".app", __all__)
