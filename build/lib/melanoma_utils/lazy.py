"""Lazy re-exports for a subpackage's ``__init__`` (PEP 562): ``from melanoma_utils.<package> import name`` loads the
package's principal module on first use, so importing the package's lighter modules never imports it."""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Any, Callable, Sequence


def reexport(package: str, module: str, names: Sequence[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` that serve ``names`` from its submodule ``module`` (e.g. ``".isic"``)."""
    exported = frozenset(names)

    def __getattr__(name: str) -> Any:
        if name in exported:
            return getattr(import_module(module, package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | exported)

    return __getattr__, __dir__


#: Lines TensorFlow's C++ runtime writes to the process's stderr on import whatever ``TF_CPP_MIN_LOG_LEVEL`` says
#: (absl's notice, oneDNN's and the CPU-feature guard's); :func:`import_quietly` drops them and keeps anything else.
STARTUP_NOISE: tuple[str, ...] = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on",
                                  "This TensorFlow binary is optimized to use available CPU instructions",
                                  "To enable the following instructions:", "Unable to register cuDNN factory",
                                  "Unable to register cuBLAS factory", "Unable to register cuFFT factory",
                                  "computation placer already registered", "TF-TRT Warning")


def import_quietly(name: str = "keras") -> Any:
    """Import ``name`` (Keras, and TensorFlow behind it) with the C++ start-up lines of :data:`STARTUP_NOISE` filtered
    out of stderr: file descriptor 2 points at a temporary file during the import, and every other line written there
    is passed on to stderr afterwards. Already imported: returned as is. Used once at the command line's start-up."""
    import os
    import tempfile

    if name in sys.modules:
        return sys.modules[name]
    sys.stderr.flush()
    try:
        tmp = tempfile.TemporaryFile(mode="w+b")
    except OSError:  # no temporary folder: import as is, start-up lines and all
        return import_module(name)
    saved = os.dup(2)
    try:
        os.dup2(tmp.fileno(), 2)
        try:
            return import_module(name)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not any(n in line for n in STARTUP_NOISE)]
            if kept:  # everything else the import wrote (an error's explanation included) reaches stderr
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
    finally:
        os.close(saved)
        tmp.close()
