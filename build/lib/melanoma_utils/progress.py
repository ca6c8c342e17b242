"""Progress of long stages on the terminal: a tqdm bar with an estimate of the time left, written to the process's own
stderr (``sys.__stderr__``). Under ``make reproduce`` a notebook's kernel inherits the terminal's stderr from papermill,
so the bar shows while a cell runs and never lands in the notebook's stored outputs. ``MELANOMA_PROGRESS=0`` hides it."""

from __future__ import annotations

import os
import sys
from typing import Any


def bar(total: int, desc: str, unit: str = "it") -> Any:
    """A tqdm bar over ``total`` steps on the terminal (updated at most every 5 s; disabled by ``MELANOMA_PROGRESS=0``
    or when there is no stderr)."""
    from tqdm import tqdm

    stream = sys.__stderr__
    return tqdm(total=total, desc=desc, unit=unit, file=stream, mininterval=5, ascii=True,
                disable=stream is None or os.environ.get("MELANOMA_PROGRESS") == "0")
