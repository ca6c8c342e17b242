"""Training and run folders: fitting (compiling, devices, resume), the run folder's lifecycle and files, ensembles,
export, and the experiments (cross-validation, ablation, backbone comparison) built on them.

Modules: ``adapt``, ``backbone_study``, ``ceiling``, ``compiling``, ``contrasts``, ``ensemble``, ``experiments``, ``export``, ``finish``, ``paths``, ``resume``, ``run``, ``runfolder``, ``selection``, ``source_weights``, ``training``, ``variants``.
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
