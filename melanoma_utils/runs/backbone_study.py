"""The study's Table 3 analogue: backbones compared on the same patients, one protocol per block of rows (frozen
pretrained + head; random init end to end; keras.applications ImageNet weights where they can be had)."""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from ..data.splits import holdout_split
from ..evaluation.metrics import evaluate, melanoma_vs_nevus_auc
from ..models.backbones import OFFLINE_IMAGENET
from .contrasts import WITHIN, pooled_auc
from .run import TrainConfig
from .training import load_or_train


def backbone_protocol(cfg: TrainConfig) -> str:
    """How a run's image branch was trained, in words (the ``protocol`` column of the backbone table): rows are like
    for like only within one protocol."""
    if not cfg.uses_images:
        return "metadata only"
    if cfg.uses_cached_embeddings:
        return ("pretrained (" + str(cfg.backbone_weights) + "), frozen; head on cached embeddings"
                + (f", then fine-tuned ({cfg.finetune})" if cfg.finetune != "none" else ""))
    if cfg.backbone and cfg.backbone_weights not in (None, "none"):
        return f"pretrained ({cfg.backbone_weights}), trained end to end"
    return "random init, trained end to end"


#: The columns of :func:`compare_backbones`' table (the study's Table 3 analogue).
TABLE3_COLUMNS: list[str] = [
    "backbone", "weights", "model", "protocol", "accuracy", "sensitivity", "specificity", "f1", "threshold", "roc_auc",
    "roc_auc_ci_low", "roc_auc_ci_high", "pr_auc", "pr_auc_ci_low", "pr_auc_ci_high", "mel_vs_nevus_auc",
    "within_copy_a_auc", "within_copy_a_ci_low", "within_copy_a_ci_high", "params",
    "epochs_run", "train_images_per_second", "predict_images_per_second", "note"]


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
    tr, te = holdout_split(df, test_fraction, seed=cfg.seed)
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
            run = load_or_train(train, vcfg, run_dir)
            started = time.perf_counter()
            p = run.predict_proba(test)  # calibrated: the scale of the run's validation threshold
            predict_seconds = time.perf_counter() - started
            res = evaluate(test["target"], p, test["patient_id"], {"validation": run.threshold}, n_boot=n_boot, seed=cfg.seed)
            at = res["thresholds"]["validation"]
            rows.append({
                "backbone": backbone, "weights": (weights or "none") if backbone != "cnn" else None, "model": model,
                "protocol": backbone_protocol(vcfg),
                "accuracy": at["accuracy"], "sensitivity": at["sensitivity"], "specificity": at["specificity"],
                "f1": at["f1"], "threshold": at["threshold"],
                "roc_auc": res["roc_auc"]["estimate"], "roc_auc_ci_low": res["roc_auc"]["ci_low"],
                "roc_auc_ci_high": res["roc_auc"]["ci_high"],
                "pr_auc": res["pr_auc"]["estimate"], "pr_auc_ci_low": res["pr_auc"]["ci_low"], "pr_auc_ci_high": res["pr_auc"]["ci_high"],
                "mel_vs_nevus_auc": melanoma_vs_nevus_auc(test["target"], p, test["diagnosis"]),
                **dict(zip(("within_copy_a_auc", "within_copy_a_ci_low", "within_copy_a_ci_high"),
                           pooled_auc(test.assign(probability=p), WITHIN, n_boot=n_boot, seed=cfg.seed))),
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


