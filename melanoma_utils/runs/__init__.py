"""Training and run folders: fitting (devices, resume), the run folder's lifecycle and files, ensembles,
export, and the experiments (cross-validation, ablation, backbone comparison) built on them.

Modules: ``backbone_study``, ``distribution``, ``ensemble``, ``experiments``, ``export``, ``resume``, ``run``, ``run_writer``, ``runfolder``, ``training``.
Layers (imports only run leftwards): config/atomic/versions < pipeline < data < evaluation < models < runs < reports < cli.
"""

# the principal module's names, loaded on first use (``from melanoma_utils.runs import ...`` keeps working without
# importing what the package's lighter modules do not need)
_PRINCIPAL = ".run"
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


def __getattr__(name: str):
    if name in __all__:
        from importlib import import_module

        return getattr(import_module(_PRINCIPAL, __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
