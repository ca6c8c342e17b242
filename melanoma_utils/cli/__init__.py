"""The command line (``python -m melanoma_utils``) and ``reproduce`` (papermill).

Modules: ``app``, ``args``, ``data_commands``, ``predict_commands``, ``reproduce``, ``train_commands``.
Layers (imports only run leftwards): config/atomic/versions < pipeline < data < evaluation < models < runs < reports < cli.
"""

# the principal module's names, loaded on first use (``from melanoma_utils.cli import ...`` keeps working without
# importing what the package's lighter modules do not need)
_PRINCIPAL = ".app"
__all__ = [
    "ORDER",
    "DataError",
    "build_parser",
    "command",
    "main",
    "train_config",
]


def __getattr__(name: str):
    if name in __all__:
        from importlib import import_module

        return getattr(import_module(_PRINCIPAL, __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
