"""Experiments over many runs: the patient-grouped cross-validated ablation and the backbone comparison
(the study's Table 3 analogue). Runs are saved under a folder and reused, so an interrupted study resumes.

Layout: ``<out_dir>/<run_folder_name(variant)>/fold<k>/`` for the ablation, with ``<out_dir>/folds.csv``
(``image_name, patient_id, fold``) recording the fold of every image, which later notebooks read instead of
recomputing the folds.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .. import progress
from ..config import ISIC2020_PREVALENCE  # noqa: F401 (re-exported)
from ..data.csvfiles import restore_cells, write_csv
from ..data.splits import grouped_folds
from ..evaluation.clinical import calibration_summary
from ..evaluation.metrics import melanoma_vs_nevus_auc, pr_auc, roc_auc
from ..evaluation.results import Estimate
from ..runs.run import TrainConfig
from ..runs.runfolder import RunLayout
from ..runs.training import load_or_train
from .contrasts import SUBSETS, describe_contrast, paired_contrasts, pooled_auc, subset_mask  # noqa: F401 (re-exported)
from .locked import check_unlocked, resolve_lock
from .plan import FoldPlan
from .variants import Variant, check_variants

#: The ablation's variants: name -> TrainConfig overrides (the key ``"external": True`` adds the external training
#: rows given to :func:`cross_validate` to every fold's training part).
ABLATION_VARIANTS: dict[str, dict[str, Any]] = {
    Variant.META_CLINICAL: {"kind": "meta", "features": "clinical"},
    Variant.IMAGE: {"kind": "image"},
    Variant.FUSION_CLINICAL: {"kind": "fusion", "features": "clinical"},
    Variant.FUSION_PAPER: {"kind": "fusion", "features": "paper"},
    Variant.FUSION_CONTEXT: {"kind": "fusion", "features": "context"},
    Variant.FUSION_UGLY_DUCKLING: {"kind": "fusion", "features": "ugly_duckling"},
}
#: Variants trained with external data (HAM10000, ISIC 2019) added to every fold's training part.
EXTERNAL_VARIANTS: dict[str, dict[str, Any]] = {
    Variant.IMAGE_EXTERNAL: {"kind": "image", "external": True},
    Variant.FUSION_EXTERNAL: {"kind": "fusion", "features": "clinical", "external": True},
}
#: The ensemble row of the ablation: the mean of the two external-data variants' out-of-fold probabilities.
ENSEMBLE_EXTERNAL = Variant.ENSEMBLE_EXTERNAL
#: The variant the backbone rows (:func:`backbone_variants`) repeat with another pretrained backbone.
BACKBONE_BASE = Variant.FUSION_EXTERNAL


def backbone_label(backbone: str) -> str:
    """A short label for a backbone in variant names: ``efficientnetlite2`` -> ``Lite2``."""
    return backbone.replace("efficientnetlite", "Lite") if backbone.startswith("efficientnetlite") else backbone


def backbone_variants(backbones: list[str], base: str = BACKBONE_BASE) -> dict[str, dict[str, Any]]:
    """Variants that repeat ``base`` (an :data:`EXTERNAL_VARIANTS` entry) with each of ``backbones`` at its native
    size (``image_size=None`` resolves to it), same folds, views, head and budget. Names say backbone and size, e.g.
    ``"fusion, clinical + external data, Lite2 260 px"``."""
    from ..models.presets import default_image_size

    unknown = [b for b in backbones if b not in {"efficientnetlite0", "efficientnetlite1", "efficientnetlite2"}]
    if unknown:
        raise ValueError(f"backbone rows take the offline pretrained backbones (efficientnetlite0/1/2); got {unknown}")
    return {f"{base}, {backbone_label(b)} {default_image_size(b)} px":
            {**EXTERNAL_VARIANTS[base], "backbone": b, "backbone_weights": "imagenet", "image_size": None}
            for b in backbones}


def backbone_ensemble(backbones: list[str], base: str = BACKBONE_BASE, base_backbone: str = "efficientnetlite0"
                      ) -> tuple[str, list[str]]:
    """``(name, members)`` of the backbone ensemble: ``base`` (with ``base_backbone``) and its
    :func:`backbone_variants` rows, averaged by :func:`add_ensemble`."""
    members = [base, *backbone_variants(backbones, base)]
    labels = " + ".join(backbone_label(b) for b in [base_backbone, *backbones])
    return f"ensemble: {labels} ({base})", members


#: The ablation's paired contrasts ``(a, b)``: what a adds over b, on the same patients.
ABLATION_CONTRASTS: tuple[tuple[str, str], ...] = (
    (Variant.FUSION_CLINICAL, Variant.IMAGE),
    (Variant.FUSION_PAPER, Variant.FUSION_CLINICAL),
    (Variant.FUSION_UGLY_DUCKLING, Variant.FUSION_CLINICAL),
    (Variant.FUSION_CONTEXT, Variant.FUSION_CLINICAL),
    (Variant.IMAGE, Variant.SCRATCH),
    (Variant.IMAGE_EXTERNAL, Variant.IMAGE),
    (Variant.FUSION_EXTERNAL, Variant.FUSION_CLINICAL),
    (Variant.FUSION_EXTERNAL, Variant.IMAGE_EXTERNAL),
    (ENSEMBLE_EXTERNAL, Variant.FUSION_EXTERNAL),
)


def cross_validate(
    df: pd.DataFrame,
    cfg: TrainConfig,
    out_dir: str | os.PathLike[str],
    variants: dict[str, dict[str, Any]] | None = None,
    plan: FoldPlan | None = None,
    *,
    external: pd.DataFrame | None = None,
    repeat: int = 0,
    folds_from: str = "patients",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Patient-grouped K-fold CV of each variant with the same budget (``cfg``'s epochs and patience).

    ``repeat`` r > 0 draws another patient-grouped fold assignment (seed ``cfg.fit.seed + r``) and writes its runs under
    ``out_dir/repeat<r>/`` (repeat 0 is the study's folds, in ``out_dir``): :func:`repeated_cross_validate` runs
    several.

    Folds are drawn from ``df`` alone. A variant with ``"external": True`` in its overrides adds all ``external`` rows
    (other data sets, grouped by lesion) to every fold's training part; validation and test rows stay ``df``'s.

    Each fold's training part holds out its own patient-grouped validation split for early stopping.
    Returns ``(per_fold, oof)``: fold metrics (ROC AUC, PR AUC, melanoma-vs-nevus AUC) and out-of-fold
    predictions (``image_name, patient_id, target, diagnosis, fold, variant, probability``, the fold run's
    ``threshold`` and calibration ``prevalence``, ``repeat``). Runs are
    written to ``out_dir/<variant>/fold<k>`` and reused when present (an interrupted ablation resumes).
    ``folds_from="shards"``: fold = shard index (``tfrecord``) modulo ``n_splits``, as the SIIM-ISIC community
    folds TFRecord shards; the default folds are patient-grouped and target-stratified.

    ``plan`` (default :class:`~melanoma_utils.study.plan.FoldPlan`: 5 folds, all run): ``n_splits``, the ``folds``
    that run and ``locked``, the locked test part guarding the selection (``"find"``: the one of the report folder
    ``out_dir`` is in, :func:`~melanoma_utils.study.locked.find_locked`; ``None``: no guard); ``df`` and ``external``
    holding one of its images or patients are refused (``ValueError``) before anything is trained: selection never
    sees it.
    """
    variants = ABLATION_VARIANTS if variants is None else variants
    if not variants:
        raise ValueError(f"cross-validation into {out_dir}: no variants to run")
    plan = plan or FoldPlan()
    n_splits = plan.n_splits
    out_dir = Path(out_dir)
    store = out_dir.parent / RunLayout.SHARED_STORE  # one copy of a frozen backbone for every study of the report
    lock = resolve_lock(out_dir, plan.locked)
    check_unlocked(df, lock, f"cross-validation into {out_dir}")
    if external is not None:
        check_unlocked(external, lock, f"cross-validation into {out_dir} (external rows)")
    if folds_from not in ("patients", "shards"):
        raise ValueError(f"folds_from must be patients or shards; got {folds_from!r}")
    if folds_from == "shards" and not df["tfrecord"].notna().all():
        raise ValueError("folds_from='shards' needs a shard index (tfrecord column) on every row")
    if repeat:
        if folds_from == "shards":
            raise ValueError("repeats need patient folds: shard folds are fixed")
        out_dir = out_dir / f"repeat{repeat}"
    fold_ids = grouped_folds(df, n_splits=n_splits, seed=cfg.fit.seed + repeat, use_tfrecord=folds_from == "shards")
    save_folds(df, fold_ids, out_dir / "folds.csv")
    rows, preds = [], []
    run_folds = plan.fold_list
    steps = progress.bar(len(run_folds) * len(variants), f"cross-validation{f' (repeat {repeat})' if repeat else ''}",
                         unit="run")
    for k in run_folds:
        test = df[fold_ids == k].reset_index(drop=True)
        rest = df[fold_ids != k].reset_index(drop=True)
        for name, overrides in variants.items():
            overrides = dict(overrides)
            wants_external = bool(overrides.pop("external", False))
            if wants_external and external is None:
                raise ValueError(f"variant {name!r} asks for external training data; pass external=")
            ext = external if wants_external else None
            vcfg = TrainConfig.from_dict({**asdict(cfg), **overrides})
            run_dir = out_dir / run_folder_name(name) / f"fold{k}"
            run = load_or_train(rest, vcfg, run_dir, ext, shared_store=store)
            p = run.predict_proba(test, cached_embeddings=True)
            fold_preds, fold_row = _fold_results(test, p, run, {"variant": name, "repeat": repeat, "fold": k})
            preds.append(fold_preds)
            rows.append(fold_row)
            print(f"[cv] repeat {repeat} fold {k} · {name}: ROC AUC {rows[-1]['roc_auc']:.3f}", flush=True)
            steps.set_postfix_str(f"fold {k} · {name}", refresh=False)
            steps.update(1)
    steps.close()
    return pd.DataFrame(rows), pd.concat(preds, ignore_index=True)


def _fold_results(test: pd.DataFrame, p: Any, run: Any, key: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One fold run's out-of-fold predictions (with the run's threshold and calibration prevalence) and its metrics
    row; ``key``: ``variant, repeat, fold``."""
    preds = pd.DataFrame({"image_name": test["image_name"], "patient_id": test["patient_id"], "target": test["target"],
                          "diagnosis": test["diagnosis"], "fold": key["fold"], "variant": key["variant"],
                          "probability": p, "threshold": run.threshold, "prevalence": run.prevalence,
                          "repeat": key["repeat"],
                          **({"source_copy": test["source_copy"]} if "source_copy" in test else {})})
    row = {**key, "n_test": len(test), "roc_auc": roc_auc(test["target"], p), "pr_auc": pr_auc(test["target"], p),
           "auc_melanoma_vs_nevus": melanoma_vs_nevus_auc(test["target"], p, test["diagnosis"]),
           "epochs_run": run.config.get("epochs_run"), "train_seconds": run.config.get("train_seconds")}
    return preds, row


def repeated_cross_validate(df: pd.DataFrame, cfg: TrainConfig, out_dir: str | os.PathLike[str],
                            variants: dict[str, dict[str, Any]], plan: FoldPlan | None = None, *,
                            repeat_variants: Sequence[str] | None = None,
                            external: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`cross_validate` on ``plan.run_repeats`` different patient-grouped fold assignments (repeat 0: the
    study's folds; default plan: 5 folds × 3 assignments), so that comparisons average over how patients fell into
    folds. Repeats after the first run only those of ``variants`` named in ``repeat_variants`` (default: all): the
    contrasts that need the noise reduction, at a fraction of the cost. Returns ``(per_fold, oof)`` of all repeats,
    each with a ``repeat`` column."""
    plan = plan or FoldPlan(repeats=3)
    if repeat_variants is not None:
        check_variants(list(repeat_variants), variants, "repeat_variants")
    parts = [cross_validate(df, cfg, out_dir, variants, plan, external=external)]
    again = {k: v for k, v in variants.items() if repeat_variants is None or k in repeat_variants}
    for r in range(1, plan.run_repeats if again else 1):
        parts.append(cross_validate(df, cfg, out_dir, again, plan, external=external, repeat=r))
    return pd.concat([p[0] for p in parts], ignore_index=True), pd.concat([p[1] for p in parts], ignore_index=True)


def study_folds(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the study's own fold assignment (repeat 0) of a per-fold or out-of-fold table: what the ablation
    table, the paper table and the ensemble describe (repeats serve the paired contrasts)."""
    return frame[frame["repeat"] == 0] if "repeat" in frame else frame


def summarise_cv(per_fold: pd.DataFrame, oof: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean ± sd over folds, and the pooled out-of-fold ROC AUC with a patient-bootstrap 95% CI on every endpoint the
    data allow (:data:`~melanoma_utils.study.contrasts.SUBSETS`: all images ``pooled_oof_roc_auc``, melanoma vs nevus
    ``pooled_mel_vs_nevus_auc``, within copy a ``pooled_within_copy_a_auc`` and ``pooled_mvn_within_copy_a_auc``) and
    the held-out calibration (:func:`held_out_calibration`), per variant (on the study's folds, :func:`study_folds`)."""
    per_fold, oof = study_folds(per_fold), study_folds(oof)
    names = {"all": "pooled_oof_roc_auc", "melanoma_vs_nevus": "pooled_mel_vs_nevus_auc",
             SUBSETS[2]: "pooled_within_copy_a_auc", SUBSETS[3]: "pooled_mvn_within_copy_a_auc"}
    out = []
    for name, part in per_fold.groupby("variant", sort=False):
        o = oof[oof["variant"] == name]
        row: dict[str, Any] = {
            "variant": name,
            "roc_auc_mean": part["roc_auc"].mean(), "roc_auc_sd": part["roc_auc"].std(ddof=1),
            "pr_auc_mean": part["pr_auc"].mean(), "pr_auc_sd": part["pr_auc"].std(ddof=1),
            "mel_vs_nevus_auc_mean": part["auc_melanoma_vs_nevus"].mean(),
            "pooled_oof_pr_auc": pr_auc(o["target"], o["probability"]),
        }
        for subset, col in names.items():
            est, lo, hi = pooled_auc(o, subset, n_boot=n_boot, seed=seed)
            low, high = (("pooled_ci_low", "pooled_ci_high") if subset == "all"
                         else (col.replace("_auc", "_ci_low"), col.replace("_auc", "_ci_high")))
            row.update({col: est, low: lo, high: hi})
        row.update(held_out_calibration(o, n_boot=n_boot, seed=seed))
        row["folds"] = len(part)
        out.append(row)
    return pd.DataFrame(out).set_index("variant")


def held_out_calibration(oof: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """How well the probabilities of held-out folds are calibrated (each fold's run calibrated on its own validation
    split, scored on patients it never saw): ``calibration_slope`` (1 ideal; > 1 too timid, < 1 too extreme),
    ``calibration_intercept`` (0 ideal) and ``brier``, each with a patient-bootstrap 95% CI (``*_ci_low``,
    ``*_ci_high``) over the pooled out-of-fold rows ``oof`` (``target, probability, patient_id``)."""
    y, p = oof["target"].to_numpy(int), oof["probability"].to_numpy(float)
    cal = calibration_summary(y, p, oof["patient_id"].to_numpy(), n_boot=n_boot, seed=seed)
    out: dict[str, float] = {}
    for key in ("calibration_slope", "calibration_intercept", "brier"):
        out.update(Estimate.from_dict(cal[key]).columns(key))
    return out


def run_folder_name(variant: str) -> str:
    """The folder name of a variant's runs: lower case, non-alphanumerics as ``_`` (e.g. ``"fusion, clinical"``
    → ``fusion_clinical``)."""
    return "".join(c if c.isalnum() else "_" for c in variant.lower()).strip("_").replace("__", "_")


def save_folds(df: pd.DataFrame, fold_ids: np.ndarray, path: Path) -> None:
    """Write ``image_name, patient_id, fold`` (refusing to replace a different fold assignment silently; names a
    spreadsheet would execute neutralised, :func:`~melanoma_utils.data.csvfiles.write_csv`)."""
    folds = pd.DataFrame({"image_name": df["image_name"].to_numpy(), "patient_id": df["patient_id"].to_numpy(),
                          "fold": np.asarray(fold_ids, int)})
    if path.is_file():
        old = restore_cells(pd.read_csv(path, dtype={"image_name": str, "patient_id": str}))
        same = (list(old.columns) == list(folds.columns) and len(old) == len(folds)
                and (old["image_name"].to_numpy() == folds["image_name"].astype(str).to_numpy()).all()
                and (old["fold"].to_numpy() == folds["fold"].to_numpy()).all())
        if not same:
            raise ValueError(f"{path} holds another fold assignment (other data, seed or number of folds): runs in "
                             f"{path.parent} belong to it; choose another folder or delete it")
        return
    write_csv(folds, path)


def load_folds(path: str | os.PathLike[str], df: pd.DataFrame) -> np.ndarray:
    """The fold of each row of ``df`` from a ``folds.csv`` written by :func:`cross_validate`; an error names
    images the file does not cover."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no folds file (run the cross-validation of notebook 03 first)")
    folds = restore_cells(pd.read_csv(path, dtype={"image_name": str})).set_index("image_name")["fold"]
    missing = sorted(set(df["image_name"]) - set(folds.index))
    if missing:
        raise ValueError(f"{path}: {len(missing)} image(s) of the data set have no fold, e.g. {missing[:3]}")
    return folds.loc[df["image_name"]].to_numpy()


def preprocessing_variants(names: list[str], overrides: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Cross-validation variants that differ only in the image preprocessing (the paper's Fig 12 transforms as
    training inputs): ``"preprocess: <name>"`` -> ``{"preprocess": name, **overrides}``."""
    return {f"preprocess: {n}": {"preprocess": n, **(overrides or {})} for n in names}


def preprocessing_table(per_fold: pd.DataFrame, oof: pd.DataFrame, names: list[str], baseline: str = "none",
                        n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per preprocessing of :func:`preprocessing_variants`: pooled out-of-fold ROC AUC, melanoma-vs-nevus AUC,
    and the paired difference against ``baseline`` on every endpoint the data allow (all images: ``delta_auc, ci_low,
    ci_high, p_value, p_holm``; melanoma vs nevus: ``mvn_…``; within copy a: ``within_copy_a_…``; melanoma vs nevus
    within copy a: ``mvn_within_copy_a_…``). ``p_holm``: Holm-adjusted within each endpoint's family."""
    base = f"preprocess: {baseline}"
    paired = paired_contrasts(per_fold, oof, [(f"preprocess: {n}", base) for n in names if n != baseline],
                              n_boot=n_boot, seed=seed)
    prefixes = {"all": "", "melanoma_vs_nevus": "mvn_", SUBSETS[2]: "within_copy_a_", SUBSETS[3]: "mvn_within_copy_a_"}
    present = set(paired["subset"])
    rows = []
    for n in names:
        o = oof[oof["variant"] == f"preprocess: {n}"]
        if o.empty:
            continue
        row: dict[str, Any] = {"preprocess": n, "roc_auc": roc_auc(o["target"], o["probability"]),
                               "melanoma_vs_nevus_auc": melanoma_vs_nevus_auc(o["target"], o["probability"], o["diagnosis"])}
        if SUBSETS[2] in present:
            inside = o[subset_mask(o, SUBSETS[2])]
            row["within_copy_a_auc"] = roc_auc(inside["target"], inside["probability"])
        for subset, prefix in prefixes.items():
            if subset not in present:
                continue
            hit = paired[(paired["contrast"] == f"preprocess: {n} − {base}") & (paired["subset"] == subset)]
            for col in ("delta_auc", "ci_low", "ci_high", "p_value", "p_holm"):
                zero = 0.0 if n == baseline and col in ("delta_auc", "ci_low", "ci_high") else float("nan")
                row[prefix + col] = float(hit[col].iloc[0]) if len(hit) else zero
        rows.append(row)
    return pd.DataFrame(rows)


def add_ensemble(per_fold: pd.DataFrame, oof: pd.DataFrame, members: list[str], name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(per_fold, oof)`` with an ensemble variant ``name``: per image, the mean of the members' out-of-fold
    probabilities (calibrated: each member's calibrator is monotone, so the mean keeps each member's ranking and puts
    them on one scale); each fold's threshold is the members' mean threshold. Members that did not run: unchanged.
    On the study's folds only (:func:`study_folds`)."""
    first = study_folds(oof)
    parts = [first[first["variant"] == m].set_index("image_name") for m in members]
    if len(members) < 2 or any(p.empty for p in parts):
        return per_fold, oof
    ens = parts[0].copy()
    ens["probability"] = np.mean([p.loc[ens.index, "probability"].to_numpy() for p in parts], axis=0)
    ens["threshold"] = np.mean([p.loc[ens.index, "threshold"].to_numpy() for p in parts], axis=0)
    if "prevalence" in ens:  # the calibration prevalence of the members (their validation splits)
        ens["prevalence"] = np.mean([p.loc[ens.index, "prevalence"].to_numpy(float) for p in parts], axis=0)
    ens["variant"] = name
    ens = ens.reset_index()
    rows = []
    for k, part in ens.groupby("fold", sort=True):
        rows.append({"variant": name, **({"repeat": 0} if "repeat" in per_fold else {}), "fold": k, "n_test": len(part),
                     "roc_auc": roc_auc(part["target"], part["probability"]),
                     "pr_auc": pr_auc(part["target"], part["probability"]),
                     "auc_melanoma_vs_nevus": melanoma_vs_nevus_auc(part["target"], part["probability"], part["diagnosis"]),
                     "epochs_run": None, "train_seconds": None})
    return pd.concat([per_fold, pd.DataFrame(rows)], ignore_index=True), pd.concat([oof, ens[oof.columns]], ignore_index=True)

