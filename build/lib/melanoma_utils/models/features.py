"""Metadata encoding, fit on the training split only and saved with a model.

Feature sets:

* ``clinical``: age (imputed with the training median, a missing flag, standardised), sex one-hot
  (female, male, unknown), anatomical site one-hot (six official sites + unknown);
* ``paper``: clinical + the ORIGINAL image width and height (log-scaled, standardised, with missing
  flags), as in the study. Width and height describe how an image was acquired (camera, clinic),
  not the lesion; the EDA and the ablation show how much they leak;
* ``context``: clinical + the patient context of :mod:`melanoma_utils.models.context`: ``n_images`` (the number
  of the patient's images, log-scaled) and ``ugly_duckling`` (the distance from the patient's other
  lesions, imputed with the training median and flagged when the patient has one image). The table must
  carry those columns (:func:`melanoma_utils.models.context.add_context`). The image count depends on how a data
  set was sampled (an enriched subset keeps few images of melanoma patients): a shortcut risk, so
* ``ugly_duckling``: clinical + the lesion distance alone, without the count.

Categories are the fixed official vocabularies of :mod:`melanoma_utils.data.isic`, so a category never
seen in training (or an unknown spelling) is encoded as ``unknown`` and never crashes prediction.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.isic import MISSING, SEX_CATEGORIES, SITE_CATEGORIES

GROUPS: tuple[str, ...] = ("age", "sex", "site", "width", "height", "n_images", "ugly_duckling")
#: Groups computed from the patient's images (:mod:`melanoma_utils.models.context`).
CONTEXT_GROUPS: tuple[str, ...] = ("n_images", "ugly_duckling")
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "clinical": ("age", "sex", "site"),
    "paper": ("age", "sex", "site", "width", "height"),
    "acquisition": ("width", "height"),
    "context": ("age", "sex", "site", "n_images", "ugly_duckling"),
    "ugly_duckling": ("age", "sex", "site", "ugly_duckling"),
}


def check_feature_set(name: str) -> tuple[str, ...]:
    """The groups of a named feature set, or a clear error listing the valid names."""
    if name not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {name!r}; choose one of {', '.join(FEATURE_SETS)}")
    return FEATURE_SETS[name]


@dataclass
class MetadataEncoder:
    """Turns the normalised table into a float32 matrix; ``fit`` on training rows only."""

    feature_set: str = "clinical"
    custom_groups: list[str] | None = None  # overrides the named set's groups (e.g. ["width"])
    age_median: float = 50.0
    age_mean: float = 0.0
    age_std: float = 1.0
    size_stats: dict[str, list[float]] = field(default_factory=dict)  # col -> [median_log, mean, std]
    context_stats: dict[str, list[float]] = field(default_factory=dict)  # col -> [median, mean, std]
    fitted: bool = False

    def __post_init__(self) -> None:
        if self.custom_groups is None:
            check_feature_set(self.feature_set)
        else:
            bad = [g for g in self.custom_groups if g not in GROUPS]
            if bad or not self.custom_groups:
                raise ValueError(f"unknown metadata group(s) {bad}; choose from {', '.join(GROUPS)}")

    @property
    def groups(self) -> tuple[str, ...]:
        """The metadata groups (age, sex, site, width, height) this encoder uses."""
        return tuple(self.custom_groups) if self.custom_groups is not None else FEATURE_SETS[self.feature_set]

    def fit(self, df: pd.DataFrame) -> "MetadataEncoder":
        """Learn imputation and scaling from ``df`` (the training split)."""
        age = df["age"].astype(float)
        self.age_median = float(age.median()) if age.notna().any() else 50.0
        filled = age.fillna(self.age_median)
        self.age_mean = float(filled.mean())
        self.age_std = float(filled.std(ddof=0)) or 1.0
        for col in ("width", "height"):
            if col in self.groups:
                logs = np.log(df[col].astype(float).where(df[col] > 0))
                med = float(logs.median()) if logs.notna().any() else 0.0
                filled_log = logs.fillna(med)
                self.size_stats[col] = [med, float(filled_log.mean()), float(filled_log.std(ddof=0)) or 1.0]
        if self.uses_context:
            for col, values in self._context_values(df).items():
                med = float(values.median()) if values.notna().any() else 0.0
                filled = values.fillna(med)
                self.context_stats[col] = [med, float(filled.mean()), float(filled.std(ddof=0)) or 1.0]
        self.fitted = True
        return self

    @property
    def uses_context(self) -> bool:
        """Whether a group comes from the patient's images (:data:`CONTEXT_GROUPS`)."""
        return bool(set(CONTEXT_GROUPS) & set(self.groups))

    def _context_values(self, df: pd.DataFrame) -> dict[str, pd.Series]:
        from .context import CONTEXT_COLUMNS

        missing = [c for c in CONTEXT_COLUMNS if c not in df]
        if missing:
            raise ValueError(f"feature set {self.feature_set!r} needs the column(s) {', '.join(missing)}: "
                             "add them with melanoma_utils.models.context.add_context (from the images)")
        out = {}
        if "n_images" in self.groups:
            out["log_patient_n_images"] = np.log(df["patient_n_images"].astype(float).clip(lower=1))
        if "ugly_duckling" in self.groups:
            out["ugly_duckling"] = df["ugly_duckling"].astype(float)
        return out

    @property
    def feature_names(self) -> list[str]:
        """Column names of :meth:`transform`'s output, in order."""
        names: list[str] = []
        for g in self.groups:
            if g == "age":
                names += ["age", "age_missing"]
            elif g == "sex":
                names += [f"sex={c}" for c in (*SEX_CATEGORIES, MISSING)]
            elif g == "site":
                names += [f"site={c}" for c in (*SITE_CATEGORIES, MISSING)]
            elif g == "n_images":
                names += ["log_patient_n_images"]
            elif g == "ugly_duckling":
                names += ["ugly_duckling", "ugly_duckling_missing"]
            else:
                names += [f"log_{g}", f"{g}_missing"]
        return names

    def feature_groups(self) -> dict[str, list[int]]:
        """Column indices of each metadata group (one-hot columns together), for grouped importance."""
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(self.feature_names):
            key = name.split("=")[0].replace("_missing", "").replace("log_", "")
            groups.setdefault(key, []).append(i)
        return groups

    @property
    def n_features(self) -> int:
        """Width of the encoded matrix."""
        return len(self.feature_names)

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Encode rows (missing values and unseen categories allowed) as float32 ``(n, n_features)``."""
        if not self.fitted:
            raise RuntimeError("MetadataEncoder.transform called before fit")
        cols: list[np.ndarray] = []
        n = len(df)
        for g in self.groups:
            if g == "age":
                age = df["age"].astype(float) if "age" in df else pd.Series(np.nan, index=df.index)
                cols.append(((age.fillna(self.age_median) - self.age_mean) / self.age_std).to_numpy())
                cols.append(age.isna().to_numpy(dtype=float))
            elif g in CONTEXT_GROUPS:
                col = "log_patient_n_images" if g == "n_images" else "ugly_duckling"
                raw = self._context_values(df)[col]
                med, mean, std = self.context_stats[col]
                cols.append(((raw.fillna(med) - mean) / std).to_numpy())
                if g == "ugly_duckling":
                    cols.append(raw.isna().to_numpy(dtype=float))
            elif g in ("sex", "site"):
                cats = (*(SEX_CATEGORIES if g == "sex" else SITE_CATEGORIES), MISSING)
                values = df[g].astype(str).to_numpy() if g in df else np.full(n, MISSING)
                values = np.where(np.isin(values, cats), values, MISSING)
                cols.extend((values == c).astype(float) for c in cats)
            else:
                med, mean, std = self.size_stats[g]
                raw = df[g].astype(float) if g in df else pd.Series(np.nan, index=df.index)
                logs = np.log(raw.where(raw > 0))
                cols.append(((logs.fillna(med) - mean) / std).to_numpy())
                cols.append(logs.isna().to_numpy(dtype=float))
        return np.stack(cols, axis=1).astype(np.float32) if cols else np.zeros((n, 0), np.float32)

    def to_dict(self) -> dict:
        """JSON-serialisable state."""
        return asdict(self)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the encoder as JSON (temporary file, then moved into place)."""
        from ..atomic import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "MetadataEncoder":
        """Read an encoder written by :meth:`save`."""
        return cls(**json.loads(Path(path).read_text()))
