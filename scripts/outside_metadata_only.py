"""The third referee's point 8, measured again from outside: ``train --kind meta`` (the command line, its defaults) on the
shared ISIC subset, then ``predict`` and ``evaluate`` on the ISIC 2020 patients the subset does not hold (the official
metadata: a metadata-only model needs no images), at the run's own prevalence and at ISIC 2020's (``--prevalence
isic2020``). Writes ``table_outside_metadata_only.csv`` into ``--report-dir``: per scale, images, melanomas, patients,
ROC AUC, calibration slope and Brier score with patient-bootstrap 95% CIs, and the Brier score of a constant at the
population's prevalence (what a model must beat).

    python scripts/outside_metadata_only.py        # ~30 s on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from melanoma_utils.data.csvfiles import write_csv

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def cli(*args: str) -> None:
    """``python -m melanoma_utils ARGS``; its output shown, a failure stops the script."""
    subprocess.run([sys.executable, "-m", "melanoma_utils", *args], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images-csv", type=Path, default=SHARED / "isic2020-256" / "train.csv")
    ap.add_argument("--metadata", type=Path, default=SHARED / "isic2020-metadata" / "ISIC_2020_Training_GroundTruth_v2.csv")
    ap.add_argument("--report-dir", type=Path, default=Path("reports/isic2020"))
    args = ap.parse_args()

    subset = pd.read_csv(args.images_csv, dtype={"patient_id": str})
    full = pd.read_csv(args.metadata, dtype={"patient_id": str})
    outside = full[~full["patient_id"].isin(set(subset["patient_id"]))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        outside.to_csv(t / "outside.csv", index=False)
        cli("train", "--kind", "meta", "--metadata", str(args.images_csv), "--out", str(t / "run"))
        config = json.loads((t / "run" / "config.json").read_text())
        for scale, extra in (("the run's validation prevalence", []), ("ISIC 2020's prevalence", ["--prevalence", "isic2020"])):
            preds, report = t / f"preds{len(rows)}.csv", t / f"eval{len(rows)}"
            cli("predict", "--run", str(t / "run"), "--metadata", str(t / "outside.csv"), *extra, "--out", str(preds))
            cli("evaluate", "--predictions", str(preds), "--metadata", str(t / "outside.csv"), "--run", str(t / "run"),
                "--out", str(report))
            m = json.loads((report / "metrics.json").read_text())
            rows.append({"probabilities_at": scale, "n": m["n"], "n_malignant": m["n_malignant"],
                         "n_patients": m["n_patients"],
                         **{f"{k}{s}": m[k][c] for k in ("roc_auc", "calibration_slope", "brier")
                            for s, c in (("", "estimate"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high"))},
                         "brier_constant": m["prevalence"] * (1 - m["prevalence"]),  # of the rows evaluated
                         "features": config["train"]["features"], "calibrator": (config.get("calibration") or {}).get("method") or "none",
                         "n_train": config["n_train"], "n_val": config["n_val"]})
    out = pd.DataFrame(rows)
    write_csv(out, args.report_dir / "table_outside_metadata_only.csv")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 3):
        print(out.to_string(index=False))


if __name__ == "__main__":
    main()
