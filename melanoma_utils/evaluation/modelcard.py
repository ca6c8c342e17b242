"""``MODEL_CARD.md``: what a run is for and not for, what it was trained on, how well it did (with CIs), by
subgroup, how calibrated, which shortcuts it may use, and with which package versions (Mitchell et al. 2019).

The card is rendered from the run's ``config.json`` and the validation report of
:func:`melanoma_utils.evaluation.clinical.validation_report`; nothing in it is typed by hand.
"""

from __future__ import annotations

from importlib.resources import files
from string import Template
from typing import Any

import numpy as np

from ..config import ISIC2020_PREVALENCE
from .results import RANKING_METRICS, Estimate

#: The card's fixed text with a ``$name`` slot per generated section (``string.Template``: a value is never re-read
#: as a template, so user data in it stays text).
_TEMPLATE = Template(files(__package__).joinpath("templates", "model_card.md").read_text(encoding="utf-8"))

#: Characters that Markdown (and the HTML a renderer lets through, and ``$`` math where a host renders it) would read as markup in a value from user data.
_MARKDOWN_SPECIAL = "\\`*_{}[]<>()#+-.!|~$"


def md(value: Any) -> str:
    """A value that comes from user data (a group name from a CSV column, a site, a data set name) as Markdown text:
    markup characters backslash-escaped, line breaks as spaces, so that it cannot end a table row, open a link or
    inject HTML into the card."""
    text = " ".join(str(value).splitlines())
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in text)


def _ci(d: dict[str, float] | None, digits: int = 3) -> str:
    """A report's ``{"estimate", "ci_low", "ci_high"}`` as text (:meth:`Estimate.format`)."""
    return Estimate.from_dict(d).format(digits)


def _ranking_line(report: dict[str, Any]) -> str:
    """Every ranking metric of the registry the report holds, with its interval (PR AUC with its chance level)."""
    parts = [f"{m.label} {_ci(report[m.name])}" + (f" (chance {report[m.name]['chance']:.3f})"
                                                   if "chance" in report[m.name] else "")
             for m in RANKING_METRICS if m.name in report]
    return "- " + "; ".join(parts)


def _num(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and np.isfinite(x) else "n/a"


def _sources_lines(config: dict[str, Any]) -> list[str]:
    """Rows per data set of the training and validation parts (runs with external training data)."""
    tr, va = config.get("training_sources") or {}, config.get("validation_sources") or {}
    if set(tr) <= {"isic2020"}:
        return []
    parts = ", ".join(f"{md(name)}: {c['rows']:,} images ({c['melanoma']:,} melanoma, {c['nevus']:,} nevi)" for name, c in tr.items())
    return [f"- Training sources: {parts}. External rows join the training part only; validation, calibration and the "
            f"threshold use {', '.join(va) or 'the main data'} only."]


def _source_weighting_lines(sw: dict) -> list[str]:
    """The grouping training removed the label information of (``config.json``'s ``source_weighting``), if any."""
    if not sw.get("column"):
        return ["- Source weighting: none (no copy/source column in the data)."]
    shares = _weight_shares(sw)
    groups = ", ".join(f"{md(g['group'])} {g['rows']:,} rows ({g['malignant_share']:.0%} malignant"
                       + (f"; {shares[g['group']]:.0%} of the training weight" if g["group"] in shares else "") + ")"
                       for g in sw.get("groups", []))
    left = f"; {sw['rows_left_out']:,} training rows of one-class groups left out" if sw.get("rows_left_out") else ""
    column = str(sw["column"]).replace("`", "")  # a code span: nothing inside it is markup
    return [f"- Source weighting: {sw.get('weighting')} over `{column}` ({groups}){left}."]


def _weight_shares(sw: dict) -> dict[str, float]:
    """Each group's share of the total training weight before class weighting, from ``config.json``'s per-group row
    weights and counts (empty when the run recorded no weights: weighting none)."""
    weights = sw.get("weights") or {}
    totals = {}
    for g in sw.get("groups", []):
        w = weights.get(g["group"])
        if w is None:
            continue
        totals[g["group"]] = g["benign"] * (w.get("benign") or 0.0) + g["malignant"] * (w.get("malignant") or 0.0)
    total = sum(totals.values())
    return {k: v / total for k, v in totals.items()} if total > 0 else {}


#: How the model card says what a run was trained on (``TrainConfig.objective``).
_OBJECTIVE_WORDS: dict[str, str] = {
    "binary": "melanoma vs everything else (binary, class-weighted cross-entropy: the study's objective)",
    "diagnosis": "the diagnosis (softmax over the diagnosis classes, 'unknown' one of them); the output is the melanoma "
                 "column of the softmax",
    "diagnosis-masked": "the diagnosis (softmax over the known diagnosis classes; images of unknown diagnosis only push "
                        "the melanoma probability down); the output is the melanoma column of the softmax",
}


def _calibrator_choice(selection: dict[str, Any]) -> list[str]:
    """One line: each candidate calibrator's cross-validated Brier score and held-out calibration slope with its CI
    (empty for runs calibrated before slopes were recorded)."""
    methods = [m for m in ("none", "platt", "isotonic") if f"slope_{m}" in selection]
    if not methods:
        return []
    parts = [f"{m}: Brier {selection[m]:.4f}, slope {selection[f'slope_{m}']:.2f} "
             f"({selection[f'slope_{m}_ci_low']:.2f}–{selection[f'slope_{m}_ci_high']:.2f})" for m in methods]
    refused = [m for m in methods if f"slope_refused_{m}" in selection]
    return [f"- Calibrator chosen by cross-validated Brier score on the validation split, among maps whose held-out "
            f"calibration slope is no farther from 1 than the model's own: {'; '.join(parts)}"
            + (f" ({', '.join(refused)} refused: its slope moved away from 1)" if refused else "") + "."]


def _image_branch_extras(train: dict[str, Any]) -> str:
    """What a run's image branch adds to a frozen backbone: a second resolution, blocks adapted on activations."""
    out = ""
    if train.get("extra_image_size"):
        out += (f" and a second copy of the backbone at {train['extra_image_size']} px (embeddings merged by "
                f"{train.get('resolution_merge', 'mean')})")
    if int(train.get("adapt_blocks") or 0):
        out += f"; its last {train['adapt_blocks']} block(s) and head convolution trained on cached activations"
    if train.get("finetune", "none") != "none" and train.get("frozen_features", True):
        what = "every convolution" if train["finetune"] == "all" else "its last two stages and head convolution"
        out += (f"; after the head's warm-up on cached embeddings, {what} fine-tuned with the head on augmented images "
                f"for up to {train.get('finetune_epochs')} epochs (learning rate {train.get('finetune_learning_rate')}, "
                f"{train.get('finetune_schedule', 'constant')}; label smoothing {train.get('label_smoothing', 0.0)}; "
                "BatchNorm statistics frozen)")
    return out


def _model_lines(config: dict[str, Any]) -> list[str]:
    """The card's *Model* section: inputs, image branch, output and its calibration, objective, ensemble members."""
    train = config["train"]
    kind = train.get("kind", train.get("model", "fusion"))
    backbone = train.get("backbone") or "the study's CNN (from scratch)"
    weights = train.get("backbone_weights", train.get("weights"))
    cal = dict(config.get("calibration") or {})
    if cal.get("method") == "identity":  # chosen by cross-validated Brier score: the model's own output was best
        cal["method"] = "none: the model's own output scored best by cross-validated Brier score"
    inputs = "dermoscopic image + metadata" if kind == "fusion" else "image only" if kind == "image" else "metadata only"
    return [f"- Inputs: {inputs} (metadata feature set `{train.get('features', 'clinical')}`); image branch: {backbone}"
            f"{f' with {weights} weights' if weights and train.get('backbone') else ''}, {train.get('image_size')} px"
            f"{_image_branch_extras(train)}.",
            f"- Output: probability of melanoma, calibrated on the validation split ({cal.get('method', 'not calibrated')}"
            f"{', right at a malignant share of ' + format(cal['prevalence'], '.3f') if cal.get('prevalence') else ''}); "
            f"decision threshold {config.get('threshold', float('nan')):.4f} ({config.get('threshold_rule', '')}).",
            *_calibrator_choice(cal.get("selection") or {}),
            f"- Trained on: {_OBJECTIVE_WORDS.get(train.get('objective', 'binary'), train.get('objective'))}.",
            *[f"- Ensemble member {k}: {m.get('kind')} · {m.get('backbone') or 'CNN'} · {m.get('image_size')} px · features "
              f"`{m.get('features')}` · TTA {m.get('tta')} (validation ROC AUC of its raw output "
              f"{_num(m.get('validation_auc_raw'))}); the ensemble averages the members' raw outputs."
              for k, m in enumerate((config.get("ensemble") or {}).get("members", []))],
            "- For another prevalence, pass `--prevalence P` to `predict`/`evaluate` (prior-shift correction; ISIC 2020: "
            f"`--prevalence isic2020`, {ISIC2020_PREVALENCE:.4f})."]


def _training_lines(config: dict[str, Any]) -> list[str]:
    """The card's *Training data* section: sizes, class and source weighting, the sources with their rows."""
    train = config["train"]
    n_train, n_val = config.get("n_train"), config.get("n_val")
    return [f"- {n_train:,} training images ({config.get('n_train_positive', 0):,} malignant, prevalence "
            f"{_num(config.get('training_prevalence'))}), {n_val:,} validation images (patient-grouped: no patient on "
            "both sides)." if n_train is not None and n_val is not None else "- (not recorded)",
            f"- Class weighting: {'1/n per class' if train.get('class_weighting', True) else 'none'}; seed {train.get('seed')}.",
            *_source_weighting_lines(config.get("source_weighting") or {}),
            *_sources_lines(config)]


def _validation_lines(config: dict[str, Any], report: dict[str, Any] | None) -> list[str]:
    """The card's *Validation metrics* section: ranking and calibration with CIs, the operating points, subgroups."""
    if not report:
        return [f"- No validation report: {config.get('validation_note') or 'the validation split lacked a class'}."]
    mvn = report.get("roc_auc_melanoma_vs_nevus")
    lines = [f"- {report['n']:,} images, {report['n_malignant']:,} malignant, {report['n_patients']:,} patients "
             f"(prevalence {report['prevalence']:.3f}).",
             _ranking_line(report) + (f"; melanoma vs nevus ROC AUC {mvn:.3f}" if mvn is not None else "") + ".",
             f"- Calibration: Brier {_ci(report['brier'])}, ECE {_ci(report['ece'])}, slope {_ci(report['calibration_slope'], 2)}, "
             f"intercept {_ci(report['calibration_intercept'], 2)}"
             + (f"; raw model output: Brier {report['brier_raw']:.3f}, ECE {report['ece_raw']:.3f}" if "brier_raw" in report else "")
             + ".", "", "| operating point | threshold | sensitivity | specificity | PPV | NNB |", "|---|---|---|---|---|---|"]
    lines += [f"| {op['name']} | {op['threshold']:.4f} | {_ci(op['sensitivity'], 2)} | {_ci(op['specificity'], 2)} | "
              f"{_ci(op['ppv'], 2)} | {_ci(op['nnb'], 1)} |" for op in report["operating_points"]]
    lines += ["", "NNB: number needed to biopsy (benign + malignant biopsies per melanoma found) at the validation "
              f"prevalence; at ISIC 2020's {100 * ISIC2020_PREVALENCE:.2f}% it is far higher.", "",
              "### Subgroups (ROC AUC, 95% CI)", "", "| factor | group | images | malignant | ROC AUC |", "|---|---|---|---|---|"]
    for row in report["subgroups"]:
        auc = row["note"] if not np.isfinite(row["roc_auc"]) else _ci({"estimate": row["roc_auc"], "ci_low": row["ci_low"], "ci_high": row["ci_high"]})
        lines.append(f"| {md(row['factor'])} | {md(row['group'])} | {row['n']} | {row['n_malignant']} | {auc} |")
    return lines


def model_card(config: dict[str, Any], report: dict[str, Any] | None, title: str = "Melanoma classifier") -> str:
    """The model card of a run as Markdown, from its ``config`` and validation ``report`` (may be ``None``): the
    template ``templates/model_card.md`` (the fixed text: intended use, known shortcuts) filled with one block of
    lines per section, each built by its own function."""
    sections = {"title": title, "model": _model_lines(config), "training_data": _training_lines(config),
                "validation": _validation_lines(config, report),
                "versions": [f"- {k} {v}" for k, v in sorted((config.get("versions") or {}).items())]}
    return _TEMPLATE.substitute({k: v if isinstance(v, str) else "\n".join(v) for k, v in sections.items()})
