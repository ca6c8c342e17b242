"""The training engine: fitting (the training paths, compiling, devices, resume), the run folder's lifecycle and
files, ensembles and export. The experiments built on it live in :mod:`melanoma_utils.study`.

Modules: ``adapt``, ``compiling``, ``ensemble``, ``export``, ``finish``, ``model_files``, ``paths``, ``resume``, ``run``, ``runfolder``, ``source_weights``, ``store``, ``training``.
Layers (imports only run leftwards): config/atomic/versions < data < pipeline < evaluation < models < runs < study < reports < cli.
"""

# the principal module's names, loaded on first use (``from melanoma_utils.runs import ...`` keeps working without
# importing what the package's lighter modules do not need)
from ..lazy import reexport

__all__ = [
    "AUTO",
    "FINETUNE_MODES",
    "MAX_IMAGE_SIZE",
    "STRATEGIES",
    "Calibrator",
    "MetadataEncoder",
    "Run",
    "RunDamaged",
    "TrainConfig",
    "check_prevalence",
    "prior_shift",
]

__getattr__, __dir__ = reexport(__name__, ".run", __all__)
