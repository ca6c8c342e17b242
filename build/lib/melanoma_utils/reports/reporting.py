"""Report helpers shared by the notebooks: package versions, a figure writer bound to a report folder."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import config
from ..versions import PACKAGES, package_versions  # noqa: F401  (re-exported for the notebooks)
from .plots import save_figure, shows_images


def seed_everything(seed: int) -> None:
    """Seed Python and NumPy (and Keras, TensorFlow, JAX through Keras when it is imported)."""
    random.seed(seed)
    np.random.seed(seed)
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].utils.set_random_seed(seed)


@dataclass
class Report:
    """Where a notebook run writes: ``<report_dir>/figures/<name>.png`` and tables."""

    report_dir: Path
    tag: str = ""

    @classmethod
    def from_params(cls, report_dir: str, synthetic: bool) -> "Report":
        """Resolve the folder from a parameter; ``tag`` is ``"SYNTHETIC"`` for demo data."""
        return cls(config.resolve(report_dir), "SYNTHETIC" if synthetic else "")

    @property
    def figures(self) -> Path:
        """The figures folder (created)."""
        path = self.report_dir / "figures"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def figure(self, fig, name: str) -> Path:
        """Save a figure as ``figures/<name>.png`` and return its path. Charts stay open for the notebook to display;
        a figure of photos is shown at once as a JPEG and closed, so that a rendered notebook does not carry each
        photo grid as a multi-megabyte PNG a second time (:func:`show_photo`)."""
        path = save_figure(fig, self.figures / f"{name}.png")
        if shows_images(fig):
            show_photo(fig)
        return path

    def table(self, df: pd.DataFrame, name: str) -> Path:
        """Save a table as ``<name>.csv`` (temporary name, then moved; text cells a spreadsheet would execute
        neutralised); a default row number index is not written and any other index gets a header (``item``, or
        ``level_<k>`` in a multi-index) where it has no name: no ``Unnamed: 0`` column read back."""
        from ..data.csvfiles import write_csv

        numbered = isinstance(df.index, pd.RangeIndex) and df.index.name is None
        if not numbered and None in df.index.names:
            one = df.index.nlevels == 1
            df = df.rename_axis(index=[n if n is not None else ("item" if one else f"level_{k}")
                                       for k, n in enumerate(df.index.names)])
        return write_csv(df, self.report_dir / f"{name}.csv", index=not numbered)


def show_photo(fig, quality: int = 85) -> bool:
    """In a notebook kernel: display ``fig`` as a JPEG (at the inline figure resolution) and close it; elsewhere do
    nothing (a script or test keeps the figure). Returns whether it was shown."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return False
    import matplotlib.pyplot as plt
    from IPython.display import Image, display
    from PIL import Image as PILImage

    png, jpeg = io.BytesIO(), io.BytesIO()
    fig.savefig(png, dpi=fig.dpi, bbox_inches="tight")
    PILImage.open(png).convert("RGB").save(jpeg, "JPEG", quality=quality)
    display(Image(data=jpeg.getvalue(), format="jpeg"))
    plt.close(fig)
    return True


def open_study(report_dir: str, synthetic: bool, seed: int, images_csv: str | None = None,
               images_dir: str = "") -> tuple[Report, pd.DataFrame | None]:
    """The opening every notebook shares: seed Python/NumPy/Keras, bind the report folder, and load the image
    data set (``images_csv`` + optional ``images_dir``, paths from parameters) when given.

    Returns ``(report, frame)``; ``frame`` is ``None`` without ``images_csv``.
    """
    from ..data import isic as data

    seed_everything(seed)
    report = Report.from_params(report_dir, synthetic)
    frame = None
    if images_csv:
        frame = data.load_dataset(config.resolve(images_csv), config.resolve(images_dir) if images_dir else None).frame
    return report, frame
