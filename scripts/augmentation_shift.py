"""How far the training augmentation moves a frozen model from the images it is judged on: a trained run's ROC AUC and
mean absolute change in probability on validation images, plain and passed through each augmentation setting (this
package's default, the fine-tuning round 3's milder one, and each default component alone). Writes
``table_augmentation_shift.csv`` into ``--report-dir``. The numbers behind round 3 of the fine-tuning study
(:data:`melanoma_utils.study.finetune.MILD_AUGMENTATION`).

    python scripts/augmentation_shift.py --run reports/isic2020/runs/finetune_confirm/<frozen base>/fold0 \\
        --folds reports/isic2020/finetune_confirm_folds.csv --fold 0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from melanoma_utils.data.csvfiles import write_csv
from melanoma_utils.data.isic import load_dataset
from melanoma_utils.evaluation.metrics import roc_auc
from melanoma_utils.pipeline.augment import build_augmenter
from melanoma_utils.pipeline.feeds import load_image_array
from melanoma_utils.runs.run import Run
from melanoma_utils.study.finetune import MILD_AUGMENTATION

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
_OFF = {"crop_fraction": 1.0, "brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0,
        "grayscale_probability": 0.0}
#: name -> AugmentConfig overrides (``{}``: the package default).
SETTINGS: dict[str, dict[str, float]] = {
    "default": {}, "round 3 (milder)": MILD_AUGMENTATION, "flips and rotations only": _OFF,
    "random crop 85% only": {**_OFF, "crop_fraction": 0.85}, "brightness 0.2 only": {**_OFF, "brightness": 0.2},
    "contrast 0.2 only": {**_OFF, "contrast": 0.2}, "saturation 0.2 only": {**_OFF, "saturation": 0.2},
    "hue 0.05 only": {**_OFF, "hue": 0.05}, "greyscale 10% only": {**_OFF, "grayscale_probability": 0.1},
}


def augment_each(aug: object, images: np.ndarray) -> np.ndarray:
    """``images`` through ``aug`` one at a time, as training's tf.data pipeline augments them (a random crop called on a
    whole batch draws one offset for all of it)."""
    return np.stack([np.asarray(aug(img[None], training=True))[0] for img in images])  # type: ignore[operator]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a trained fusion run folder")
    ap.add_argument("--images-csv", type=Path, default=SHARED / "isic2020-256" / "train.csv")
    ap.add_argument("--folds", type=Path, required=True, help="image_name, fold: the run's held-out images")
    ap.add_argument("--fold", default="0")
    ap.add_argument("--n", type=int, default=400, help="validation images sampled")
    ap.add_argument("--draws", type=int, default=3, help="augmentation draws averaged per setting")
    ap.add_argument("--report-dir", type=Path, default=Path("reports/isic2020"))
    args = ap.parse_args()
    run = Run.load(args.run)
    folds = pd.read_csv(args.folds, dtype=str)
    df = load_dataset(args.images_csv).frame
    val = df[df["image_name"].isin(folds.loc[folds["fold"] == str(args.fold), "image_name"])]
    val = val.sample(min(args.n, len(val)), random_state=0)
    size = int(run.train_config.image_size)
    images = load_image_array(list(val["image_path"]), size).astype("float32")
    meta, y = run.encoder.transform(val), val["target"].to_numpy()

    def score(x: np.ndarray) -> np.ndarray:
        return np.asarray(run.model.predict({"image": x, "meta": meta}, verbose=0, batch_size=64)).ravel()

    plain = score(images)
    rows = [{"setting": "none (the images as judged)", "roc_auc": roc_auc(y, plain), "mean_abs_change": 0.0}]
    for name, strengths in SETTINGS.items():
        aug = build_augmenter(size, seed=1, **strengths)
        draws = [score(augment_each(aug, images)) for _ in range(args.draws)]
        rows.append({"setting": name, "roc_auc": float(np.mean([roc_auc(y, p) for p in draws])),
                     "mean_abs_change": float(np.mean([np.abs(p - plain).mean() for p in draws]))})
    table = pd.DataFrame(rows).assign(images=len(val), malignant=int(y.sum()), draws=args.draws,
                                      run="/".join(args.run.resolve().parts[-3:]))
    write_csv(table, args.report_dir / "table_augmentation_shift.csv")
    print(table[["setting", "roc_auc", "mean_abs_change"]].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
