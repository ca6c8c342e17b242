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
