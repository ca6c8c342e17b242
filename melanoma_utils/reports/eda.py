"""Statistics for the exploratory analysis: counts, malignancy rates with confidence intervals, colour
intensity histograms and the metadata-only "acquisition signal" check. Pure functions on the
normalised table (see :mod:`melanoma_utils.data.isic`); plotting lives in :mod:`melanoma_utils.reports.plots`.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..evaluation.calibration import wilson_interval
from ..evaluation.clinical import age_band  # noqa: F401  (re-exported: the one age-band definition lives there)


def overview(df: pd.DataFrame) -> dict[str, float]:
    """Headline counts: images, patients, malignant and the malignant share."""
    n = len(df)
    mal = int((df["target"] == 1).sum())
    return {
        "images": n,
        "patients": int(df["patient_id"].nunique()),
        "malignant": mal,
        "malignant_pct": 100 * mal / n if n else float("nan"),
        "always_benign_accuracy_pct": 100 * (n - mal) / n if n else float("nan"),
    }


def missing_table(df: pd.DataFrame) -> pd.DataFrame:
    """Missing values per metadata column (``unknown`` categories and NaN numbers count as missing)."""
    cols = {
        "sex": df["sex"] == "unknown",
        "age": df["age"].isna(),
        "anatomical site": df["site"] == "unknown",
        "diagnosis": df["diagnosis"] == "unknown",
        "original width/height": df["width"].isna() | df["height"].isna(),
    }
    out = pd.DataFrame({"missing": {k: int(v.sum()) for k, v in cols.items()}})
    out["percent"] = 100 * out["missing"] / max(len(df), 1)
    return out


def malignancy_rate(df: pd.DataFrame, by: str | pd.Series, level: float = 0.95) -> pd.DataFrame:
    """Per group: images, malignant, rate and its Wilson CI (rates in percent)."""
    key = df[by] if isinstance(by, str) else by
    g = df["target"].groupby(key, observed=True)
    out = pd.DataFrame({"images": g.size(), "malignant": g.sum().astype(int)})
    n = out["images"].to_numpy(float)
    rate = np.divide(out["malignant"].to_numpy(float), n, out=np.full(len(n), np.nan), where=n > 0)
    lo, hi = wilson_interval(rate, n, level)
    out["rate_pct"] = 100 * out["malignant"] / out["images"]
    out["ci_low_pct"] = 100 * lo
    out["ci_high_pct"] = 100 * hi
    out.index.name = by if isinstance(by, str) else (by.name or "group")
    return out


def count_table(df: pd.DataFrame, by: str, normalize: bool = False) -> pd.Series:
    """Counts (or percentages with ``normalize``) of a column, largest first."""
    counts = df[by].value_counts()
    return 100 * counts / counts.sum() if normalize else counts


def images_per_patient(df: pd.DataFrame) -> pd.Series:
    """Number of images of each patient."""
    return df.groupby("patient_id").size().rename("images")


def size_table(df: pd.DataFrame, top: int = 12) -> pd.DataFrame:
    """The most common ORIGINAL image sizes (width × height) with their malignancy rate and CI."""
    known = df.dropna(subset=["width", "height"])
    size = known["width"].astype(int).astype(str) + "×" + known["height"].astype(int).astype(str)
    table = malignancy_rate(known.assign(size=size), "size").sort_values("images", ascending=False)
    return table.head(top)


def shared_share_top(hists: Iterable[np.ndarray], headroom: float = 1.05) -> float | None:
    """The top of one share axis for several :func:`colour_histograms` (each channel normalised to sum 1), so that
    figures meant to be compared (benign vs malignant) share it; ``None`` when no histogram holds a pixel (each
    figure then scales itself)."""
    tops = [float((h / h.sum(axis=1, keepdims=True)).max()) for h in hists if np.all(np.asarray(h).sum(axis=1) > 0)]
    return headroom * max(tops) if tops else None


def colour_histograms(
    paths: Sequence[str],
    pixels_per_image: int = 2000,
    seed: int = 0,
    size: int = 128,
    progress: bool = True,
) -> np.ndarray:
    """Histogram (256 bins per R, G, B channel) of pixels sampled from the images: shape ``(3, 256)``.

    Each image is decoded at reduced size (``size`` px) and ``pixels_per_image`` pixels are sampled
    without replacement, so the cost is a decode per image; counting is vectorised (``np.bincount``).
    """
    import cv2

    rng = np.random.default_rng(seed)
    hist = np.zeros((3, 256), np.int64)
    iterator = paths
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(paths, desc="colour histograms", unit="img")
    for path in iterator:
        bgr = cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_2 if size <= 128 else cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        flat = bgr.reshape(-1, 3)
        take = rng.choice(len(flat), size=min(pixels_per_image, len(flat)), replace=False)
        sample = flat[take][:, ::-1]  # BGR -> RGB
        for c in range(3):
            hist[c] += np.bincount(sample[:, c], minlength=256)
    return hist


def metadata_auc(
    df: pd.DataFrame,
    feature_sets: dict[str, Sequence[str]],
    n_splits: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Patient-grouped cross-validated ROC AUC of a gradient-boosting model on each metadata feature set.

    The feature sets name groups of :class:`~melanoma_utils.models.features.MetadataEncoder` (``age``, ``sex``,
    ``site``, ``width``, ``height``). Returns, per set, the mean and sd of the fold AUCs and the pooled
    out-of-fold AUC. This is how the EDA shows that the acquisition features (width/height) carry signal.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    from ..data.splits import grouped_folds
    from ..models.features import MetadataEncoder

    folds = grouped_folds(df, n_splits=n_splits, seed=seed)
    y = df["target"].to_numpy()
    rows = []
    for name, groups in feature_sets.items():
        oof = np.zeros(len(df))
        aucs = []
        for k in range(n_splits):
            tr, te = folds != k, folds == k
            enc = MetadataEncoder(name, custom_groups=list(groups)).fit(df[tr])
            model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                                   random_state=seed)
            model.fit(enc.transform(df[tr]), y[tr])
            oof[te] = model.predict_proba(enc.transform(df[te]))[:, 1]
            aucs.append(roc_auc_score(y[te], oof[te]))
        rows.append({"features": name, "groups": " + ".join(groups), "auc_mean": float(np.mean(aucs)),
                     "auc_sd": float(np.std(aucs, ddof=1)), "auc_pooled_oof": float(roc_auc_score(y, oof))})
    return pd.DataFrame(rows).set_index("features")
