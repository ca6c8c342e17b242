"""Commands that use a trained run: predict and evaluate."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.csvfiles import restore_cells
from ..data.isic import DataError
from .args import (
    _existing_file,
    _existing_path,
    _nonneg_float,
    _positive_int,
    _prevalence,
    _renamed,
    command,
    data_args,
)
from .outputs import check_predictions_out, check_report_out

if TYPE_CHECKING:
    import pandas as pd


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", dest="run", type=_existing_path, help=argparse.SUPPRESS, action=_renamed("--run"))
    p.add_argument("--run", dest="run", type=_existing_path, help="run folder from `train` (required)")
    data_args(p, "CSV in the ISIC 2020 schema, or a TFRecord shard folder (from `shard`)", duplicates=False, required=False)
    p.add_argument("--out", type=Path, help="predictions CSV to write (with --metadata)")
    one = p.add_argument_group("one lesion", "instead of --metadata: score one image and print its risk")
    one.add_argument("--image", type=Path, help="a dermoscopic image (.jpg, .png, .bmp)")
    one.add_argument("--age", type=float, help="approximate age in years (0-120); missing if not given")
    one.add_argument("--sex", help="female or male; missing if not given")
    one.add_argument("--site", help="anatomical site (head/neck, upper extremity, lower extremity, torso, palms/soles, "
                                    "oral/genital); missing if not given")
    one.add_argument("--explain", type=Path, metavar="PNG", help="write the image with its Grad-CAM overlay and colour bar")
    one.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--impute-size", action="store_true",
                   help="models with width/height (features paper): impute rows without them (marked size_imputed)")
    p.add_argument("--tta", type=int, choices=(1, 2, 4, 8), default=None,
                   help="test-time augmentation: average over this many rotations/mirrors of each image "
                        "(default: the run's own, the one its threshold was chosen with)")
    p.add_argument("--prevalence", type=_prevalence,
                   help="express the probabilities at this deployment prevalence (a number, or isic2020: 584/33,126; default: the "
                        "run's validation prevalence); the decisions do not change")
    p.add_argument("--no-skin-tone", dest="skin_tone", action="store_false",
                   help="do not measure each image's skin tone (ITA of the skin around the lesion, ~10 ms per image; "
                        "written as the ita column for evaluate's skin-tone subgroups)")
    p.add_argument("--overwrite", action="store_true")


@command("predict", "write image_name,probability,prediction for every row of a CSV", _predict_args)
def _predict(args: argparse.Namespace) -> int:
    from ..data.isic import load_for_prediction
    from ..runs.run import Run

    if args.run is None:
        raise ValueError("predict needs --run RUN: the run folder written by `train`")
    if (args.image is None) == (args.metadata is None):
        raise ValueError("predict needs --metadata CSV (many images) or --image FILE (one lesion), not both")
    if args.image is not None:
        return _predict_one(args)
    if args.out is None:
        raise ValueError("predict --metadata needs --out: the predictions CSV to write")
    if args.out.is_dir():
        raise FileExistsError(f"{args.out} is a folder; --out names the predictions CSV to write (e.g. {args.out / 'predictions.csv'})")
    check_predictions_out(args.out, [args.metadata])
    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists; pass --overwrite to replace it")
    run = Run.load(args.run)
    ds = load_for_prediction(args.metadata, args.images, needs_images=run.train_config.uses_images)
    for note in ds.report.notes:
        print(f"note: {note}")
    df = ds.frame
    import time

    t0 = time.perf_counter()
    tta = args.tta if args.tta is not None else run.train_config.tta
    preds = run.predict_frame(df, args.batch_size, tta=tta, impute_size=args.impute_size, prevalence=args.prevalence)
    seconds = time.perf_counter() - t0
    if args.skin_tone and run.train_config.uses_images:
        import numpy as np

        from ..pipeline.skin import image_cues

        ok = (preds["error"] == "").to_numpy()
        ita = np.full(len(preds), np.nan)
        ita[ok] = image_cues(list(df.loc[ok, "image_path"]))["ita"].to_numpy()
        preds["ita"] = np.round(ita, 2)
    from ..data.csvfiles import write_csv

    # a file name a spreadsheet would execute is written as text; without --overwrite, a file another command wrote
    # meanwhile is left as it is (this one is refused)
    write_csv(preds, args.out, exclusive=not args.overwrite)
    bad = preds[preds["error"] != ""]
    print(f"predictions: {len(preds) - len(bad):,} of {len(preds):,} rows -> {args.out} "
          f"(threshold {float(preds['threshold'].iloc[0]) if len(preds) else run.threshold:.4f}, "
          f"{int((preds['prediction'] == 1).sum()):,} predicted malignant) "
          f"in {seconds:.1f} s ({len(preds) / max(seconds, 1e-9):.0f} images/s{', TTA ×' + str(tta) if tta > 1 else ''})")
    if run.prevalence is not None:
        print(f"probabilities calibrated ({run.calibrator.label}) at prevalence {preds['prevalence'].iloc[0]:.4g}"
              + (" (moved from the run's " + format(run.prevalence, ".4g") + ")" if args.prevalence is not None else
                 " (the run's validation prevalence; --prevalence P for another)"))
    if "size_imputed" in preds and preds["size_imputed"].any():
        print(f"note: width/height imputed for {int(preds['size_imputed'].sum()):,} row(s) (--impute-size; "
              "marked in the size_imputed column)")
    for _, row in bad.head(20).iterrows():
        hint = ""
        if row["error"] == "image file not found" and str(row["image_name"]).lower().endswith((".jpg", ".jpeg", ".png")):
            hint = " (image_name should not include the file extension: the file looked for is <image_name>.jpg)"
        print(f"  row {row.name + 2}: {row['image_name']}: {row['error']}{hint}", file=sys.stderr)
    return 1 if len(bad) else 0


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--predictions", type=_existing_file, required=True, help="CSV from `predict`")
    p.add_argument("--metadata", type=_existing_path, required=True,
                   help="CSV (or dataset folder) with image_name, patient_id and target; sex, age, site, diagnosis and "
                        "width/height give the subgroups")
    p.add_argument("--threshold", type=_nonneg_float,
                   help="decision threshold (default: the predictions' threshold column, else the run's)")
    p.add_argument("--model", dest="run", type=_existing_path, help=argparse.SUPPRESS, action=_renamed("--run"))
    p.add_argument("--run", dest="run", type=_existing_path, help="run folder: its threshold and calibration prevalence")
    p.add_argument("--prevalence", type=_prevalence,
                   help="also report at this deployment prevalence, a number or isic2020 (probabilities moved there by prior "
                        "shift, rows reweighted): calibration, PPV/NPV/NNB, net benefit")
    p.add_argument("--out", type=Path,
                   help="report folder: metrics.json, operating_points.csv, subgroups.csv, net_benefit.csv, "
                        "reliability.csv and PNG figures (a path ending in .json: that metrics file only); a run folder "
                        "or another non-empty folder is refused")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier evaluate report in --out")
    p.add_argument("--n-boot", type=_positive_int, default=1000)


@command("evaluate", "validate predictions: discrimination, calibration, operating points (NNB), decision curve, "
         "subgroups, with patient-bootstrap CIs", _evaluate_args)
def _evaluate(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..atomic import json_safe, write_json
    from ..data.isic import load_metadata
    from ..evaluation.clinical import MIN_PER_CLASS, validation_report
    from ..evaluation.metrics import threshold_metrics
    from ..reports.validation import join, summary_lines, write_report

    if args.out is not None:
        check_report_out(args.out, args.overwrite)
    try:
        preds = restore_cells(pd.read_csv(args.predictions, dtype={"image_name": str}))
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{args.predictions}: not a predictions CSV from `predict` ({exc})") from None
    meta = load_metadata(args.metadata, require_target=True).frame
    run_config = None
    if args.run is not None:
        from ..runs.run import Run

        run_config = Run.read_config(args.run)
    joined = join(preds, meta, str(args.predictions), threshold=args.threshold, run_config=run_config)
    merged, excluded = joined.table, joined.excluded
    if merged.empty:
        raise DataError(f"{args.predictions}: no prediction matches an image_name of {args.metadata}")
    n_pos, n_neg = int(merged["target"].sum()), int(len(merged) - merged["target"].sum())
    if min(n_pos, n_neg) < MIN_PER_CLASS:
        raise DataError(f"{args.predictions}: {len(merged):,} evaluable prediction(s), {n_pos} malignant and {n_neg} benign: "
                        f"too few for an AUC or a confidence interval (at least {MIN_PER_CLASS} of each class, the same "
                        "rule as for subgroups); evaluate more images")
    if args.prevalence is not None and joined.prevalence is None:
        raise ValueError("--prevalence needs to know the prevalence the probabilities are calibrated at: use predictions "
                         "written by `predict` (prevalence column) or pass --run RUN_DIR of a calibrated run")
    report = validation_report(merged, threshold=joined.threshold, prevalence=args.prevalence,
                               probability_prevalence=joined.prevalence, n_boot=args.n_boot)
    thresholds = {"0.5": 0.5, **({"validation": joined.threshold} if joined.threshold is not None else {})}
    report["thresholds"] = {name: threshold_metrics(merged["target"], merged["probability"], t)
                            for name, t in thresholds.items()}
    report["excluded"] = excluded
    print(f"evaluated {len(merged):,} predictions of {len(meta):,} metadata rows")
    if excluded["not_predicted"]:
        print(f"note: {excluded['not_predicted']:,} of {len(meta):,} row(s) of {args.metadata} have no prediction in "
              f"{args.predictions}: not evaluated (metrics.json 'excluded')")
    if excluded["no_prediction"]:
        print(f"note: {excluded['no_prediction']:,} row(s) without a prediction (unreadable images), excluded")
    if excluded["no_metadata"]:
        print(f"note: {excluded['no_metadata']:,} prediction(s) without a row in {args.metadata}, excluded")
    for line in summary_lines(report):
        print(line)
    if args.out is not None:
        if args.out.suffix.lower() == ".json":
            args.out.parent.mkdir(parents=True, exist_ok=True)
            write_json(args.out, json_safe(report))
            print(f"metrics: {args.out}")
        else:
            if args.out.is_file():
                raise FileExistsError(f"{args.out} is a file; --out names a report folder (or a .json file)")
            paths = write_report(report, args.out)
            print(f"report: {args.out}/ ({', '.join(p.name for p in paths)})")
    return 0


def lesion_row(image: Path, age: float | None, sex: str | None, site: str | None) -> tuple["pd.DataFrame", list[str]]:
    """One lesion as a row of the normalised table (its own pixel size as the original width/height), and the inputs
    that are missing. Bad values are a ``ValueError`` naming the option and the valid values."""
    import pandas as pd

    from ..data.imagefiles import IMAGE_EXTENSIONS, check_image_file
    from ..data.isic import AGE_RANGE, MISSING, NORMALISED_COLUMNS, SEX_CATEGORIES, SITE_ALIASES, SITE_CATEGORIES

    if not image.is_file():
        raise FileNotFoundError(f"--image {image}: file not found")
    if image.suffix.lower() not in IMAGE_EXTENSIONS:
        raise ValueError(f"--image {image}: not a supported image file (supported: {', '.join(IMAGE_EXTENSIONS)})")
    problem = check_image_file(image)
    if problem:
        raise ValueError(f"--image {image}: {problem}")
    if age is not None and not AGE_RANGE[0] <= age <= AGE_RANGE[1]:
        raise ValueError(f"--age {age:g}: out of range ({AGE_RANGE[0]:g}-{AGE_RANGE[1]:g} years)")
    sex_v = sex.strip().lower() if sex else MISSING
    if sex_v not in (*SEX_CATEGORIES, MISSING):
        raise ValueError(f"--sex {sex!r}: unknown; valid: {', '.join(SEX_CATEGORIES)}")
    site_v = SITE_ALIASES.get(site.strip().lower(), site.strip().lower()) if site else MISSING
    if site_v not in (*SITE_CATEGORIES, MISSING):
        raise ValueError(f"--site {site!r}: unknown; valid: {', '.join(SITE_CATEGORIES)}")
    from PIL import Image

    with Image.open(image) as im:
        width, height = im.size
    row = {"image_name": image.stem, "patient_id": f"lesion:{image.stem}", "sex": sex_v, "age": age, "site": site_v,
           "diagnosis": MISSING, "target": float("nan"), "tfrecord": float("nan"), "width": float(width),
           "height": float(height), "source": "single lesion", "image_path": str(image)}
    missing = [name for name, v in (("age", age), ("sex", sex), ("site", site)) if v is None]
    frame = pd.DataFrame([row])
    return frame[[c for c in dict.fromkeys((*NORMALISED_COLUMNS, "image_path")) if c in frame]], missing


def _validation_operating_point(run: object) -> dict | None:
    rep = (getattr(run, "metrics", {}) or {}).get("validation_report") or {}
    for op in rep.get("operating_points", []):
        if op.get("name") == "validation threshold":
            return op
    return None


def _predict_one(args: argparse.Namespace) -> int:
    from ..evaluation.clinical import predictive_values
    from ..runs.run import Run

    if args.explain is not None:
        if args.explain.exists() and args.image.exists() and args.explain.resolve() == args.image.resolve():
            raise FileExistsError(f"--explain {args.explain} is the input image: write the overlay to another file")
        if args.explain.exists() and not args.overwrite:
            raise FileExistsError(f"--explain {args.explain} exists; pass --overwrite to replace it")
    run = Run.load(args.run)
    row, missing = lesion_row(args.image, args.age, args.sex, args.site)
    tta = args.tta if args.tta is not None else run.train_config.tta
    out = run.predict_frame(row, 1, tta=tta, impute_size=True, prevalence=args.prevalence).iloc[0]
    if out["error"]:
        raise ValueError(f"--image {args.image}: {out['error']}")
    op = _validation_operating_point(run)
    result = {
        "image": str(args.image), "probability": float(out["probability"]), "raw_probability": float(out["raw_probability"]),
        "prevalence": float(out["prevalence"]) if out["prevalence"] == out["prevalence"] else None,
        "threshold": float(out["threshold"]), "prediction": int(out["prediction"]),
        "decision": "refer for biopsy (at or above the threshold)" if int(out["prediction"]) == 1 else "below the threshold",
        "missing_inputs": missing, "tta": tta,
    }
    if op:
        sens, spec = op["sensitivity"]["estimate"], op["specificity"]["estimate"]
        result["validation_sensitivity"], result["validation_specificity"] = sens, spec
        if result["prevalence"]:
            ppv, _ = predictive_values(sens, spec, result["prevalence"])
            result["number_needed_to_biopsy"] = 1 / ppv if ppv else None
    if args.explain is not None:
        result["explanation"] = str(_write_explanation(run, row, args.explain, result))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    at = f" at prevalence {result['prevalence']:.4g}" if result["prevalence"] else ""
    print(f"{args.image.name}: melanoma risk {100 * result['probability']:.1f}%{at} "
          f"(calibrated; raw model output {result['raw_probability']:.3f})")
    print(f"decision: {result['decision']} — threshold {100 * result['threshold']:.2f}% on the same scale")
    if op:
        text = (f"that threshold reached sensitivity {100 * result['validation_sensitivity']:.0f}% and specificity "
                f"{100 * result['validation_specificity']:.0f}% on the run's validation patients")
        if result.get("number_needed_to_biopsy"):
            text += f"; at this prevalence about {result['number_needed_to_biopsy']:.0f} biopsies per melanoma found"
        print(text)
    else:
        why = (getattr(run, "metrics", {}) or {}).get("validation", {}).get("error", "no validation report")
        print(f"that threshold's sensitivity and specificity were not estimated on the run's validation patients ({why})")
    if missing:
        print(f"missing inputs (scored as unknown): {', '.join(missing)}")
    if result.get("explanation"):
        print(f"explanation: {result['explanation']}")
    return 0


def _write_explanation(run: object, row: "pd.DataFrame", path: Path, result: dict) -> Path:
    """The lesion with its Grad-CAM overlay and a colour bar, saved as PNG (a metadata-only run: an error)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..reports.explain import grad_cam, model_inputs
    from ..reports.plots import save_figure

    if not run.train_config.uses_images:  # type: ignore[attr-defined]
        raise ValueError("--explain needs a model with an image input; this run uses metadata only")
    x = model_inputs(run, row)
    cam = grad_cam(run, x, np.array([0]))[0]
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.imshow(np.clip(x["image"][0], 0, 255).astype(np.uint8))
    heat = ax.imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    fig.colorbar(heat, ax=ax, fraction=0.046, pad=0.03, label="Grad-CAM (relative)")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"risk {100 * result['probability']:.1f}% · threshold {100 * result['threshold']:.2f}%", fontsize=10)
    fig.tight_layout()
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def _export_args(p: argparse.ArgumentParser) -> None:
    from ..runs.export import FORMATS

    p.add_argument("--run", type=_existing_path, required=True, help="run folder from `train`")
    p.add_argument("--out", type=Path, required=True, help="folder to write (the model and signature.json)")
    p.add_argument("--format", default="saved_model", choices=FORMATS,
                   help="saved_model: TensorFlow SavedModel, `serve` signature (any image size, text fields); tflite / "
                        "tflite_int8: LiteRT flatbuffer (float32 / dynamic-range int8 weights) and onnx: ONNX file, both "
                        "the `serve_lite` graph (image resized by the caller, numeric fields); signature.json says how")
    p.add_argument("--overwrite", action="store_true")


@command("export", "export a run as one model file/folder: uint8 image + raw age/sex/site in, calibrated probability out",
         _export_args)
def _export(args: argparse.Namespace) -> int:
    from ..runs.export import export_run

    out = export_run(args.run, args.out, args.format, overwrite=args.overwrite)
    sig = json.loads((out / "signature.json").read_text())
    written = ", ".join(sorted(p.name for p in out.iterdir() if not p.name.startswith(".")))
    print(f"exported {args.run} -> {out} ({written}; signature.json: inputs, outputs, threshold {sig['threshold']:.4f} "
          f"at prevalence {sig['prevalence']})")
    return 0
