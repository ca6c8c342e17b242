"""The study's Table 3 analogue: backbones compared on the same patients, one protocol per block of rows (frozen
pretrained + head; random init end to end; keras.applications ImageNet weights where they can be had)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.splits import holdout_split
from ..evaluation.metrics import bootstrap_ci, melanoma_vs_nevus_auc, pr_auc, roc_auc, threshold_metrics
from ..evaluation.results import Estimate, evaluate
from ..models.presets import OFFLINE_IMAGENET, default_image_size
from ..runs.run import TrainConfig
from ..runs.runfolder import RunLayout
from ..runs.training import load_or_train
from .contrasts import WITHIN, pooled_auc
from .experiments import backbone_label, run_folder_name


def backbone_protocol(cfg: TrainConfig) -> str:
    """How a run's image branch was trained, in words (the ``protocol`` column of the backbone table): rows are like
    for like only within one protocol."""
    if not cfg.uses_images:
        return "metadata only"
    if cfg.uses_cached_embeddings:
        return ("pretrained (" + str(cfg.backbone_weights) + "), frozen; head on cached embeddings"
                + (f", then fine-tuned ({cfg.fit.finetune})" if cfg.fit.finetune != "none" else ""))
    if cfg.backbone and cfg.backbone_weights not in (None, "none"):
        return f"pretrained ({cfg.backbone_weights}), trained end to end"
    return "random init, trained end to end"


#: The columns of :func:`compare_backbones`' table (the study's Table 3 analogue).
TABLE3_COLUMNS: list[str] = [
    "backbone", "weights", "model", "protocol", "accuracy", "sensitivity", "specificity", "f1", "threshold", "roc_auc",
    "roc_auc_ci_low", "roc_auc_ci_high", "pr_auc", "pr_auc_ci_low", "pr_auc_ci_high", "mel_vs_nevus_auc",
    "within_copy_a_auc", "within_copy_a_ci_low", "within_copy_a_ci_high", "image_size", "evaluation", "repeats",
    "calibrator", "params", "epochs_run", "train_images_per_second", "predict_images_per_second", "note"]
#: How the hold-out rows of :func:`compare_backbones` were scored (the ``evaluation`` column).
HOLDOUT_EVALUATION = "one patient-grouped hold-out split"


def protocol_rank(protocol: str) -> int:
    """Sort key of :func:`backbone_protocol`'s words: (a) frozen pretrained, (b) random init end to end, (c) pretrained
    end to end, then metadata only."""
    for rank, words in enumerate(("frozen", "random init", "trained end to end")):
        if words in protocol:
            return rank
    return 3


def _weights_unavailable(backbone: str, weights: str | None) -> str:
    """Why ``backbone`` cannot get ``weights`` here ('' when it can): ImageNet weights of the ``keras.applications``
    backbones need a download, which an offline machine cannot make (tried once, at 32 px)."""
    if backbone == "cnn" or weights in (None, "none") or backbone in OFFLINE_IMAGENET:
        return ""
    from ..models.fusion import WeightsUnavailable, build_backbone

    try:
        build_backbone(backbone, 32, weights)
    except WeightsUnavailable as exc:
        return str(exc).split(". Offline")[0]
    return ""


def compare_backbones(
    df: pd.DataFrame,
    cfg: TrainConfig,
    out_dir: str | os.PathLike[str],
    backbones: list[str],
    models: tuple[str, ...] = ("image", "fusion"),
    test_fraction: float = 0.2,
    n_boot: int = 1000,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The study's Table 3 analogue: each backbone (``"cnn"`` = the study's own branch) × image-only /
    fusion, trained on the same patient-grouped training part (same budget) and scored on the same
    held-out patients. A backbone entry ``"name@weights"`` (e.g. ``"efficientnetlite0@imagenet"``,
    ``"efficientnetlite0@none"``) sets its weights; plain names use ``cfg.backbone_weights``. Returns
    ``(table, predictions)``; runs are saved under ``out_dir`` and reused. ``protocol`` says how each image branch
    was trained (compare rows within one protocol); ``predict_images_per_second`` is measured the same way for
    every row (the held-out images scored from pixels by the whole model). An entry whose weights cannot be had
    here (``keras.applications`` ImageNet weights offline) is a row with ``note`` saying why and no metrics."""
    out_dir = Path(out_dir)
    tr, te = holdout_split(df, test_fraction, seed=cfg.fit.seed)
    train, test = df.iloc[tr].reset_index(drop=True), df.iloc[te].reset_index(drop=True)
    rows, preds = [], []
    from .. import progress

    steps = progress.bar(len(backbones) * len(models), "backbone comparison", unit="run")
    for entry in backbones:
        backbone, _, w = entry.partition("@")
        weights = (None if w == "none" else w) if w else cfg.backbone_weights
        skipped = _weights_unavailable(backbone, weights)
        for model in models:
            overrides = {"kind": model, "backbone": None if backbone == "cnn" else backbone,
                         "backbone_weights": None if backbone == "cnn" else weights}
            vcfg = TrainConfig.from_dict({**asdict(cfg), **overrides})
            if skipped:
                rows.append({"backbone": backbone, "weights": weights, "model": model, "protocol": backbone_protocol(vcfg),
                             "note": f"not run: {skipped}"})
                print(f"[compare] {entry} · {model}: not run ({skipped})", flush=True)
                steps.update(1)
                continue
            run_dir = out_dir / f"{entry.replace('@', '_')}_{model}"
            run = load_or_train(train, vcfg, run_dir, shared_store=out_dir.parent / RunLayout.SHARED_STORE)
            started = time.perf_counter()
            p = run.predict_proba(test)  # calibrated: the scale of the run's validation threshold
            predict_seconds = time.perf_counter() - started
            res = evaluate(test["target"], p, test["patient_id"], {"validation": run.threshold}, n_boot=n_boot, seed=cfg.fit.seed)
            at = res["thresholds"]["validation"]
            rows.append({
                "backbone": backbone, "weights": (weights or "none") if backbone != "cnn" else None, "model": model,
                "protocol": backbone_protocol(vcfg),
                "accuracy": at["accuracy"], "sensitivity": at["sensitivity"], "specificity": at["specificity"],
                "f1": at["f1"], "threshold": at["threshold"],
                **Estimate.from_dict(res["roc_auc"]).columns("roc_auc"), **Estimate.from_dict(res["pr_auc"]).columns("pr_auc"),
                "mel_vs_nevus_auc": melanoma_vs_nevus_auc(test["target"], p, test["diagnosis"]),
                **dict(zip(("within_copy_a_auc", "within_copy_a_ci_low", "within_copy_a_ci_high"),
                           pooled_auc(test.assign(probability=p), WITHIN, n_boot=n_boot, seed=cfg.fit.seed))),
                "image_size": vcfg.image_size,
                "evaluation": f"{HOLDOUT_EVALUATION} ({test_fraction:.0%} of patients)", "repeats": 1,
                "calibrator": run.calibrator.label,
                "params": int(run.model.count_params()), "epochs_run": run.config.get("epochs_run"),
                "train_images_per_second": run.config.get("train_images_per_second"),
                "predict_images_per_second": len(test) / predict_seconds if predict_seconds > 0 else float("nan"),
                "note": "",
            })
            preds.append(pd.DataFrame({"image_name": test["image_name"], "backbone": entry, "model": model,
                                       "target": test["target"], "probability": p}))
            print(f"[compare] {entry} · {model}: ROC AUC {rows[-1]['roc_auc']:.3f}", flush=True)
            steps.set_postfix_str(f"{entry} · {model}", refresh=False)
            steps.update(1)
    steps.close()
    empty = pd.DataFrame(columns=["image_name", "backbone", "model", "target", "probability"])
    table = pd.DataFrame(rows).reindex(columns=TABLE3_COLUMNS)
    return table, pd.concat(preds, ignore_index=True) if preds else empty




#: Protocol (a)'s backbones: the offline ImageNet EfficientNet-Lite variants, each at its ImageNet size.
FROZEN_BACKBONES: tuple[str, ...] = ("efficientnetlite0", "efficientnetlite1", "efficientnetlite2")
#: The models of a backbone row: its image branch alone, and fused with the clinical metadata.
MODEL_OVERRIDES: dict[str, dict[str, Any]] = {"image": {"kind": "image"},
                                              "fusion": {"kind": "fusion", "features": "clinical"}}
_MODEL_WORDS = {"image": "image only", "fusion": "fusion, clinical"}
#: The protocol (a) row every other backbone is contrasted with.
REFERENCE_BACKBONE = "efficientnetlite0"


def frozen_variant_name(backbone: str, model: str) -> str:
    """The cross-validation variant of one protocol (a) row, e.g. ``"fusion, clinical, Lite1 240 px"``."""
    return f"{_MODEL_WORDS[model]}, {backbone_label(backbone)} {default_image_size(backbone)} px"


def frozen_backbone_variants(backbones: list[str], models: tuple[str, ...] = ("image", "fusion")
                             ) -> dict[str, dict[str, Any]]:
    """Protocol (a) as cross-validation variants: each offline pretrained backbone (frozen, ImageNet weights, head
    on cached embeddings) at its native size (``image_size=None`` resolves to it) × ``models``."""
    unknown = [b for b in backbones if b not in FROZEN_BACKBONES]
    if unknown:
        raise ValueError(f"protocol (a) takes the offline pretrained backbones ({', '.join(FROZEN_BACKBONES)}); "
                         f"got {unknown}")
    return {frozen_variant_name(b, m): {**MODEL_OVERRIDES[m], "backbone": b, "backbone_weights": "imagenet",
                                        "image_size": None}
            for b in backbones for m in models}


def frozen_backbone_contrasts(backbones: list[str], models: tuple[str, ...] = ("image", "fusion"),
                              reference: str = REFERENCE_BACKBONE) -> list[tuple[str, str]]:
    """The pre-specified paired contrasts of protocol (a): every backbone against ``reference`` with the same model,
    and fusion against image only for every backbone."""
    out = [(frozen_variant_name(b, m), frozen_variant_name(reference, m))
           for m in models for b in backbones if b != reference and reference in backbones]
    if {"image", "fusion"} <= set(models):
        out += [(frozen_variant_name(b, "fusion"), frozen_variant_name(b, "image")) for b in backbones]
    return out


def _calibrators(run_dirs: list[Path]) -> str:
    """The calibration methods of a variant's fold runs, counted: ``"platt ×4, isotonic ×1"`` (``not calibrated``: the
    fit failed, e.g. no malignant validation image)."""
    from ..evaluation.calibration import Calibrator

    methods = []
    for d in run_dirs:
        cfg_file = RunLayout(d).config
        cal = json.loads(cfg_file.read_text()).get("calibration") if cfg_file.exists() else None
        methods.append(Calibrator.from_dict(cal).label if cal else "not calibrated")
    counts = pd.Series(methods).value_counts()
    return ", ".join(f"{m} ×{n}" for m, n in counts.items())


def frozen_backbone_table(oof: pd.DataFrame, out_dir: str | os.PathLike[str], backbones: list[str],
                          models: tuple[str, ...] = ("image", "fusion"), n_boot: int = 1000, seed: int = 0
                          ) -> pd.DataFrame:
    """Table 3 rows of protocol (a) from repeated cross-validation (``oof`` of
    :func:`~melanoma_utils.study.experiments.repeated_cross_validate` with :func:`frozen_backbone_variants`): the
    pooled out-of-fold predictions of the study's folds (repeat 0) with patient-bootstrap CIs; each image scored at
    its own fold's validation threshold (``threshold``: their median); ``repeats`` the fold assignments the paired
    contrasts average over; ``calibrator`` the method each fold's validation split chose."""
    out_dir, rows = Path(out_dir), []
    for b in backbones:
        for m in models:
            name = frozen_variant_name(b, m)
            part = oof[oof["variant"] == name]
            if part.empty:
                continue
            o = part[part["repeat"] == 0]
            y, p, g = o["target"].to_numpy(), o["probability"].to_numpy(), o["patient_id"].to_numpy()
            at = threshold_metrics(y, p - o["threshold"].to_numpy(), 0.0)  # each image at its fold's threshold
            roc = bootstrap_ci(y, p, g, roc_auc, n_boot=n_boot, seed=seed)
            pr = bootstrap_ci(y, p, g, pr_auc, n_boot=n_boot, seed=seed)
            folds = sorted(o["fold"].unique())
            rows.append({
                "backbone": b, "weights": "imagenet", "model": m,
                "protocol": "pretrained (imagenet), frozen; head on cached embeddings",
                "accuracy": at["accuracy"], "sensitivity": at["sensitivity"], "specificity": at["specificity"],
                "f1": at["f1"], "threshold": float(np.median(o["threshold"])),
                "roc_auc": roc[0], "roc_auc_ci_low": roc[1], "roc_auc_ci_high": roc[2],
                "pr_auc": pr[0], "pr_auc_ci_low": pr[1], "pr_auc_ci_high": pr[2],
                "mel_vs_nevus_auc": melanoma_vs_nevus_auc(y, p, o["diagnosis"]),
                **dict(zip(("within_copy_a_auc", "within_copy_a_ci_low", "within_copy_a_ci_high"),
                           pooled_auc(o, WITHIN, n_boot=n_boot, seed=seed))),
                "image_size": default_image_size(b),
                "evaluation": f"{len(folds)}-fold patient-grouped CV, pooled out-of-fold",
                "repeats": int(part["repeat"].nunique()),
                "calibrator": _calibrators([out_dir / run_folder_name(name) / f"fold{k}" for k in folds]),
                "note": "",
            })
    return pd.DataFrame(rows).reindex(columns=TABLE3_COLUMNS)


#: Backbone names as the literature writes them (figures and report text).
DISPLAY_NAMES: dict[str, str] = {
    "cnn": "study CNN", "vgg16": "VGG-16", "resnet50": "ResNet-50", "mobilenetv2": "MobileNetV2",
    "efficientnetb0": "EfficientNet-B0", "densenet121": "DenseNet-121", "efficientnetlite0": "EfficientNet-Lite0",
    "efficientnetlite1": "EfficientNet-Lite1", "efficientnetlite2": "EfficientNet-Lite2"}


def display_name(backbone: str) -> str:
    """A backbone's name as the literature writes it (``vgg16`` → ``VGG-16``); unknown names unchanged."""
    return DISPLAY_NAMES.get(backbone.partition("@")[0], backbone)
