"""The study's named variants, typed (:class:`Variant`), and the check that turns a misspelt variant in a parameter
into an error naming the known ones (:func:`check_variants`) instead of a silently dropped row.

A :class:`Variant` is a ``str`` (its report label), so tables, CSV files and earlier code that use the labels keep
working; new code names them as ``Variant.FUSION_CLINICAL``. Generated names (a source-weighting candidate, a backbone
row) are built from these by their modules and checked against the variants a study actually defines.
"""

from __future__ import annotations

from enum import Enum
from typing import Iterable


class Variant(str, Enum):
    """A variant of the ablation (its value is the label every table and figure shows)."""

    META_CLINICAL = "metadata only (clinical)"
    IMAGE = "image only"
    FUSION_CLINICAL = "fusion, clinical"
    FUSION_PAPER = "fusion, paper (+ width/height)"
    FUSION_CONTEXT = "fusion, clinical + patient context"
    FUSION_UGLY_DUCKLING = "fusion, clinical + ugly duckling only"
    IMAGE_EXTERNAL = "image only + external data"
    FUSION_EXTERNAL = "fusion, clinical + external data"
    ENSEMBLE_EXTERNAL = "ensemble: image only + fusion, clinical (external data)"
    SCRATCH = "image only, study CNN from scratch"

    __str__ = str.__str__  # the label, on every Python version (3.11 changed Enum's str and format)
    __format__ = str.__format__
    __repr__ = str.__repr__  # tables and lists in a rendered report show the label


def check_variants(names: Iterable[str], known: Iterable[str], parameter: str) -> list[str]:
    """``names`` as a list when every one is in ``known``; otherwise a ``ValueError`` that names ``parameter``, the
    unknown names and the known ones (a typo must not drop a variant silently)."""
    names, known = [str(n) for n in names], [str(k) for k in known]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"{parameter}: unknown variant(s) {', '.join(map(repr, unknown))}; known: "
                         f"{', '.join(map(repr, known))}")
    return names
