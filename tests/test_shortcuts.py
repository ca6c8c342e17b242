"""Shortcuts: skin tone (ITA) with the lesion masked out, groupings and their label spread, copy-balanced training
weights, and the audit's signal AUCs."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from melanoma_utils.data.confounds import (
    attach_groups,
    group_labels,
    label_by_group,
    source_balanced_weights,
    with_source_copies,
)
from melanoma_utils.data.isic import DataError
from melanoma_utils.evaluation.clinical import subgroup_table
from melanoma_utils.evaluation.metrics import MetricError, roc_auc
from melanoma_utils.evaluation.shortcuts import audit_signals, grouped_oof_scores, images_per_patient, signal_auc
from melanoma_utils.pipeline.skin import corner_darkness, image_ita, ita_band, ita_degrees
from melanoma_utils.runs.run import TrainConfig
from melanoma_utils.runs.source_weights import apply_source_weighting, class_weights, row_weights


def _lab_patch(skin_lab: tuple[float, float, float], lesion_lab: tuple[float, float, float], size: int = 128,
               lesion_radius: float = 0.42) -> np.ndarray:
    """uint8 RGB: uniform skin of the given CIELAB colour with a lesion disc of another colour in the centre."""
    lab = np.empty((size, size, 3), np.float32)
    lab[:] = skin_lab
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (lesion_radius * size) ** 2
    lab[disc] = lesion_lab
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("skin, expected", [((70.0, 10.0, 15.0), 53.13), ((45.0, 12.0, 20.0), -14.04),
                                           ((80.0, 5.0, 10.0), 71.57)])
def test_ita_of_the_skin_around_a_lesion(skin: tuple[float, float, float], expected: float) -> None:
    # the lesion covers more than half of the area inside the border: a median over all pixels would be the lesion's
    img = _lab_patch(skin, (25.0, 20.0, 30.0))
    assert image_ita(img) == pytest.approx(expected, abs=1.5)


def test_ita_formula_and_bands() -> None:
    assert ita_degrees(60.0, 10.0) == pytest.approx(np.degrees(np.arctan(1.0)))
    assert ita_degrees(88.0, -3.0) == pytest.approx(90.0)  # a blue cast on light skin: the light limit, not -90
    assert ita_degrees(40.0, 0.0) == pytest.approx(-90.0)
    bands = ita_band([60.0, 50.0, 30.0, 20.0, 0.0, -40.0, np.nan])
    assert [str(b) if b == b else "nan" for b in bands] == [
        "very light (>55°)", "light (41–55°)", "intermediate (28–41°)", "tan (10–28°)", "brown (−30–10°)",
        "dark (<−30°)", "nan"]
    assert list(bands.cat.categories)[0].startswith("very light")


def test_corner_darkness_sees_a_vignette() -> None:
    plain = _lab_patch((70.0, 10.0, 15.0), (30.0, 20.0, 30.0), lesion_radius=0.1)
    dark = plain.copy()
    yy, xx = np.mgrid[:128, :128]
    dark[(yy - 64) ** 2 + (xx - 64) ** 2 > 62 ** 2] = 0
    assert corner_darkness(plain) == pytest.approx(0.0, abs=5.0) or corner_darkness(plain) < 10
    assert corner_darkness(dark) > corner_darkness(plain) + 40


def test_copy_balanced_weights_make_every_group_carry_the_same_malignant_share() -> None:
    y = np.array([1] * 10 + [0] * 30 + [1] * 5 + [0] * 5 + [0] * 20)
    g = np.array(["a"] * 40 + ["b"] * 10 + ["c"] * 20)
    w = source_balanced_weights(y, g, "balanced")
    rates = {k: w[(g == k) & (y == 1)].sum() / w[g == k].sum() for k in ("a", "b")}
    assert rates["a"] == pytest.approx(rates["b"])
    assert rates["a"] == pytest.approx(15 / 50)  # the pooled share of the groups that hold both classes
    assert w[g == "a"].sum() == pytest.approx(40) and w[g == "b"].sum() == pytest.approx(10)  # totals kept
    assert (w[g == "c"] == 0).all()  # one class: no weight can balance it
    dropped = source_balanced_weights(y, g, "drop_single_class")
    assert (dropped[g == "c"] == 0).all() and (dropped[g != "c"] == 1).all()
    assert (source_balanced_weights(y, g, "none") == 1).all()
    with pytest.raises(ValueError, match="balanced"):
        source_balanced_weights(y, g, "copy")


def test_class_weights_on_weighted_counts() -> None:
    y = np.array([1, 1, 0, 0, 0, 0])
    w = np.array([1.0, 1.0, 0.5, 0.5, 0.5, 0.5])  # weighted: 2 malignant, 2 benign
    assert class_weights(y, w) == pytest.approx({0: 1.0, 1: 1.0})
    assert class_weights(y) == pytest.approx({0: 0.75, 1: 1.5})


def _frame(copies: list[str], targets: list[int]) -> pd.DataFrame:
    n = len(targets)
    return pd.DataFrame({"image_name": [f"i{k}" for k in range(n)], "patient_id": [f"p{k // 2}" for k in range(n)],
                         "target": targets, "source_copy": copies, "source": "isic2020"})


def test_apply_source_weighting_leaves_one_class_groups_out_of_training_only() -> None:
    train = _frame(["a"] * 8 + ["b"] * 6, [1, 1, 1, 0, 0, 0, 0, 0] + [0] * 6)
    val = _frame(["a"] * 4 + ["b"] * 4, [1, 1, 0, 0, 0, 0, 0, 0])
    cfg = TrainConfig(kind="meta", source_weighting="balanced")
    tr, va, facts = apply_source_weighting(train, val, cfg)
    assert facts["column"] == "source_copy" and facts["rows_left_out"] == 6
    assert set(tr["source_copy"]) == {"a"} and len(va) == len(val)
    assert (va.loc[va["source_copy"] == "b", "sample_weight"] == 0).all()
    w = row_weights(tr, class_weights(tr["target"].to_numpy(), tr["sample_weight"].to_numpy()))
    assert w[tr["target"] == 1].sum() == pytest.approx(w[tr["target"] == 0].sum())
    untouched, _, facts = apply_source_weighting(train, val, TrainConfig(kind="meta", source_weighting="none"))
    assert len(untouched) == len(train) and "sample_weight" not in untouched and facts["weighting"] == "none"
    assert facts["groups"][0]["warning"] == ""  # 6 rows: below the size that gets a warning
    # the default, auto: copy-balanced for the data set's own rows, none once external rows join the training part
    own, _, facts = apply_source_weighting(train, val, TrainConfig(kind="meta"))
    assert facts["asked"] == "auto" and facts["weighting"] == "balanced" and len(own) == 8
    with_external, _, facts = apply_source_weighting(train, val, TrainConfig(kind="meta"), external=True)
    assert facts["weighting"] == "none" and len(with_external) == len(train)


def test_group_labels_camera_source_and_external_rows() -> None:
    df = pd.DataFrame({"width": [640] * 25 + [100, np.nan], "height": [480] * 25 + [50, np.nan],
                       "source_copy": ["a"] * 26 + [None], "source": ["isic2020"] * 26 + ["ham10000"]})
    cam = group_labels(df, "camera")
    assert cam.iloc[0] == "640x480" and cam.iloc[25].startswith("other") and cam.iloc[26] == "(missing)"
    copies = group_labels(df, "source_copy")
    assert copies.iloc[0] == "a" and copies.iloc[26] == "ham10000"  # an external row takes its data set's name
    with pytest.raises(DataError, match="no grouping column 'clinic'"):
        group_labels(df, "clinic")


def test_label_by_group_warns_on_a_one_class_group() -> None:
    t = label_by_group([0] * 30 + [1, 0] * 15, ["b"] * 30 + ["a"] * 30)
    b = t.set_index("group").loc["b"]
    assert b["malignant"] == 0 and "all benign" in b["warning"]
    assert t.set_index("group").loc["a", "warning"] == ""


def test_attach_groups_validates_the_file(tmp_path) -> None:
    df = pd.DataFrame({"image_name": ["x", "y", "z"]})
    good = tmp_path / "copies.csv"
    good.write_text("image_name,source_copy\nx,a\ny,b\n")
    out = attach_groups(df, good)
    assert out["source_copy"].tolist()[:2] == ["a", "b"] and pd.isna(out["source_copy"].iloc[2])
    meta = tmp_path / "train.csv"
    meta.write_text("image_name\nx\n")
    attached, note = with_source_copies(df, meta)
    assert note is not None and str(good) in note and attached["source_copy"].iloc[0] == "a"
    bad = tmp_path / "dup.csv"
    bad.write_text("image_name,source_copy\nx,a\nx,b\n")
    with pytest.raises(DataError, match=r"dup.csv: image name\(s\) listed twice.*line"):
        attach_groups(df, bad)
    with pytest.raises(DataError, match="missing column"):
        attach_groups(df, good, column="clinic")


def test_signal_auc_orients_and_refuses_too_few() -> None:
    y = np.array([0] * 10 + [1] * 10)
    g = np.arange(20)
    up = signal_auc("s", "target", "all", y, np.arange(20), g, n_boot=50)
    down = signal_auc("s", "target", "all", y, -np.arange(20.0), g, n_boot=50)
    assert up["roc_auc"] == pytest.approx(1.0) and up["direction"] == "higher"
    assert down["roc_auc"] == pytest.approx(1.0) and down["direction"] == "lower"
    few = signal_auc("s", "target", "all", y[6:], np.arange(14), g[6:], n_boot=50)
    assert np.isnan(few["roc_auc"]) and few["note"].startswith("too few")
    missing = signal_auc("s", "target", "all", y, np.r_[np.full(10, np.nan), np.arange(10)], g, n_boot=50)
    assert np.isnan(missing["roc_auc"]) and missing["n"] == 10


def test_audit_signals_within_copy_and_copy_among_benign() -> None:
    rng = np.random.default_rng(0)
    n = 200
    copy = np.where(np.arange(n) < 100, "a", "b")
    y = np.where(copy == "a", rng.integers(0, 2, n), 0)  # every malignant image in copy a
    table = pd.DataFrame({"target": y, "patient_id": np.arange(n) // 2, "source_copy": copy,
                          "copy_cue": (copy == "a").astype(float) + rng.normal(0, 0.01, n)})
    audit = audit_signals(table, ["copy_cue"], copy_column="source_copy", n_boot=50).set_index(["predicts", "subset"])
    assert audit.loc[("target", "all"), "roc_auc"] > 0.7  # the copy cue looks predictive overall...
    assert audit.loc[("target", "within_copy_a"), "roc_auc"] < 0.7  # ...and is noise within one copy
    assert audit.loc[("source_copy", "benign"), "roc_auc"] == pytest.approx(1.0)


def test_grouped_oof_scores_keep_patients_out_of_their_own_fold() -> None:
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(60), 3)
    y = (groups % 2).astype(int)
    x = rng.normal(size=(180, 4)) + y[:, None] * 2.0
    s = grouped_oof_scores(x, y, groups, n_splits=3)
    assert np.isfinite(s).all() and signal_auc("e", "target", "all", y, s, groups, n_boot=20)["roc_auc"] > 0.9
    assert images_per_patient(["p", "p", "q"]).tolist() == [2.0, 2.0, 1.0]


def test_subgroup_table_reports_skin_tone_bands_with_sensitivity_and_specificity() -> None:
    rng = np.random.default_rng(2)
    n = 120
    y = np.array([0, 1] * (n // 2))
    table = pd.DataFrame({"target": y, "patient_id": np.arange(n), "probability": np.clip(y * 0.6 + rng.random(n) * 0.5, 0, 1),
                          "ita": np.r_[np.full(100, 60.0), np.full(16, 45.0), np.full(4, -40.0)]})
    sub = subgroup_table(table, n_boot=50, threshold=0.5)
    tone = sub[sub["factor"] == "skin tone (ITA)"].set_index("group")
    assert {"very light (>55°)", "light (41–55°)", "dark (<−30°)"} <= set(tone.index)
    assert tone.loc["dark (<−30°)", "note"].startswith("too few") and np.isnan(tone.loc["dark (<−30°)", "roc_auc"])
    light = table[table["ita"] == 45.0]
    expected = float((light.loc[light["target"] == 1, "probability"] >= 0.5).mean())
    assert tone.loc["light (41–55°)", "sensitivity"] == pytest.approx(expected)
    assert tone.loc["very light (>55°)", "n"] == 100


def test_cli_trains_with_copies_beside_the_csv_and_reports_skin_tone(tmp_path, capsys) -> None:
    import json

    from conftest import write_dataset
    from melanoma_utils import cli

    csv = write_dataset(tmp_path / "data", n=60, size=32, pos_every=3)
    names = pd.read_csv(csv)["image_name"]
    targets = pd.read_csv(csv)["target"]
    # copy b: 20 benign images only (every malignant image in copy a), like the shared ISIC subset
    copy_b = names[targets == 0].iloc[:20]
    pd.DataFrame({"image_name": names, "source_copy": np.where(names.isin(copy_b), "b", "a")}).to_csv(
        csv.parent / "copies.csv", index=False)
    assert cli.main(["check", "--metadata", str(csv), "--no-decode"]) == 0
    out = capsys.readouterr().out
    assert "label by source_copy" in out and "warning: source_copy = b: all benign" in out
    run_dir = tmp_path / "run"
    assert cli.main(["train", "--metadata", str(csv), "--out", str(run_dir), "--kind", "meta", "--epochs", "1",
                     "--batch-size", "8", "--verbose", "0", "--source-weighting", "balanced"]) == 0
    out = capsys.readouterr().out
    assert "copies.csv: source copy of 60 of 60 image(s)" in out and "source weighting balanced" in out
    sw = json.loads((run_dir / "config.json").read_text())["source_weighting"]
    val = pd.read_csv(run_dir / "val_predictions.csv")["image_name"]
    assert sw["column"] == "source_copy" and sw["rows_left_out"] == int((~copy_b.isin(val)).sum())
    assert "Source weighting: balanced over `source_copy`" in (run_dir / "MODEL_CARD.md").read_text()
    image_run = tmp_path / "image_run"
    assert cli.main(["train", "--metadata", str(csv), "--out", str(image_run), "--kind", "image", "--backbone", "cnn",
                     "--image-size", "24", "--epochs", "1", "--batch-size", "8", "--verbose", "0"]) == 0
    preds = tmp_path / "p.csv"
    assert cli.main(["predict", "--run", str(image_run), "--metadata", str(csv), "--out", str(preds)]) == 0
    assert pd.read_csv(preds)["ita"].notna().mean() > 0.8  # noise images: a few have too little "skin" to measure
    report = tmp_path / "report"
    assert cli.main(["evaluate", "--predictions", str(preds), "--metadata", str(csv), "--out", str(report),
                     "--n-boot", "20"]) == 0
    subs = pd.read_csv(report / "subgroups.csv")
    assert "skin tone (ITA)" in set(subs["factor"]) and {"sensitivity", "specificity"} <= set(subs.columns)


def test_stratified_auc_counts_pairs_within_a_stratum_only() -> None:
    """A score that is only the camera (stratum) gets a plain AUC well above 1/2 and a stratified AUC of 1/2; inside each
    stratum the ranking is what counts, weighted by its pairs."""
    from melanoma_utils.evaluation.shortcuts import stratified_auc, stratified_auc_ci

    y = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    cam = np.array(["A", "A", "A", "A", "B", "B", "B", "B"])
    cue = np.where(cam == "A", 0.9, 0.1)  # camera A holds every melanoma: the cue ranks them above all of B
    assert roc_auc(y, cue) == pytest.approx(10 / 12) and stratified_auc(y, cue, cam) == 0.5  # ties in A: 1/2
    # a lesion score: right in stratum A; stratum B (all benign) adds no pairs
    lesion = np.array([0.8, 0.3, 0.5, 0.1, 0.9, 0.9, 0.9, 0.9])
    assert stratified_auc(y, lesion, cam) == pytest.approx(3 / 4)  # pairs in A: (0.8>0.5, 0.8>0.1, 0.3<0.5, 0.3>0.1)
    y2, cam2 = np.concatenate([y, [1, 0]]), np.concatenate([cam, ["B", "B"]])
    p2 = np.concatenate([lesion, [0.95, 0.2]])  # B: 1 melanoma above 5 benign
    assert stratified_auc(y2, p2, cam2) == pytest.approx((3 / 4 * 4 + 1.0 * 5) / 9)
    with pytest.raises(MetricError, match="both"):
        stratified_auc([1, 0], [0.5, 0.4], ["A", "B"])
    rng = np.random.default_rng(0)
    yy = rng.integers(0, 2, 400)
    pp = yy * 0.3 + rng.random(400)
    ci = stratified_auc_ci(yy, pp, rng.integers(0, 3, 400), np.arange(400) // 2, n_boot=100)
    assert ci["ci_low"] <= ci["estimate"] <= ci["ci_high"] and ci["pairs"] < ci["all_pairs"]


def test_each_ita_band_is_named_at_the_middle_of_its_range() -> None:
    from melanoma_utils.data.confounds import ita_band, ita_band_middles

    middles = ita_band_middles()
    assert list(middles) == ["very light", "light", "intermediate", "tan", "brown", "dark"]
    assert middles["very light"] == 72.5 and middles["light"] == 48.0 and middles["dark"] == -45.0
    bands = ita_band(list(middles.values()))  # each middle falls in its own band
    assert [str(b).split(" (")[0] for b in bands] == list(middles)
