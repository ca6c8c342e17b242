from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from melanoma_utils.reports import eda, plots  # noqa: E402
from melanoma_utils.reports.reporting import Report, package_versions  # noqa: E402


@pytest.fixture
def table() -> pd.DataFrame:
    """10 hand-made rows: 3 malignant; sex 5 male (2 malignant) / 4 female (1) / 1 unknown."""
    return pd.DataFrame(
        {
            "patient_id": ["a", "a", "b", "c", "c", "c", "d", "e", "f", "f"],
            "sex": ["male"] * 5 + ["female"] * 4 + ["unknown"],
            "age": [25, 35, 45, 55, 65, 75, np.nan, 30, 40, 50],
            "site": ["torso", "torso", "head/neck", "unknown", "torso", "torso", "torso", "head/neck", "torso", "torso"],
            "diagnosis": ["nevus"] * 10,
            "target": [1, 0, 1, 0, 0, 0, 1, 0, 0, 0],
            "width": [6000, 6000, 640, 640, np.nan, 6000, 640, 640, 6000, 6000],
            "height": [4000, 4000, 480, 480, np.nan, 4000, 480, 480, 4000, 4000],
        }
    )


def test_overview_and_missing(table: pd.DataFrame) -> None:
    ov = eda.overview(table)
    assert ov == {"images": 10, "patients": 6, "malignant": 3, "malignant_pct": 30.0, "always_benign_accuracy_pct": 70.0}
    miss = eda.missing_table(table)
    assert miss.loc["sex", "missing"] == 1 and miss.loc["age", "missing"] == 1
    assert miss.loc["anatomical site", "missing"] == 1 and miss.loc["original width/height", "percent"] == 10.0


def test_malignancy_rate_and_wilson(table: pd.DataFrame) -> None:
    rate = eda.malignancy_rate(table, "sex")
    assert rate.loc["male", "images"] == 5 and rate.loc["male", "malignant"] == 2
    assert rate.loc["male", "rate_pct"] == pytest.approx(40.0)
    assert rate.loc["female", "rate_pct"] == pytest.approx(25.0)
    assert (rate["ci_low_pct"] <= rate["rate_pct"]).all() and (rate["ci_high_pct"] >= rate["rate_pct"]).all()
    from melanoma_utils.evaluation.calibration import wilson_interval

    lo, hi = wilson_interval(0.0, 10)  # zero successes: lower bound 0, upper bound > 0
    assert lo == pytest.approx(0.0, abs=1e-12) and 0.2 < hi < 0.35
    lo, hi = wilson_interval(np.array([0.5, 0.2, 0.3]), np.array([10, 0, 10]))  # vectorised; no trials: NaN
    assert lo[0] == pytest.approx(0.2366, abs=1e-3) and hi[0] == pytest.approx(0.7634, abs=1e-3)
    assert np.isnan(lo[1]) and np.isnan(hi[1]) and lo[2] < 0.3 < hi[2]
    lo99, hi99 = wilson_interval(0.5, 10, level=0.99)  # a higher level: a wider interval
    assert lo99 < lo[0] and hi99 > hi[0]
    assert getattr(eda, "wilson_interval", wilson_interval) is wilson_interval  # one Wilson interval in the package


def test_age_band_counts_and_sizes(table: pd.DataFrame) -> None:
    bands = eda.age_band(table["age"])
    assert bands.iloc[0] == "20–29" and bands.iloc[6] == "unknown" and list(bands.cat.categories)[-1] == "unknown"
    per = eda.malignancy_rate(table, bands)
    assert per["images"].sum() == 10
    assert eda.images_per_patient(table).loc["c"] == 3
    sizes = eda.size_table(table)
    assert sizes.loc["6000×4000", "images"] == 5 and sizes.loc["640×480", "malignant"] == 2
    assert eda.count_table(table, "site", normalize=True)["torso"] == pytest.approx(70.0)


def test_colour_histograms_count_sampled_pixels(tmp_path: Path) -> None:
    import cv2

    red = np.zeros((20, 20, 3), np.uint8)
    red[..., 2] = 200  # BGR: pure red 200
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        cv2.imwrite(str(p), red)
        paths.append(str(p))
    hist = eda.colour_histograms(paths, pixels_per_image=50, progress=False, size=512)
    assert hist.shape == (3, 256) and hist[0, 200] == 150 and hist[1, 0] == 150 and hist[2, 0] == 150


def test_metadata_auc_finds_planted_signal() -> None:
    rng = np.random.default_rng(0)
    n = 600
    y = (rng.random(n) < 0.2).astype(int)
    df = pd.DataFrame({"patient_id": [f"p{i // 3}" for i in range(n)], "target": y,
                       "age": rng.normal(50, 10, n), "sex": "male", "site": "torso",
                       "width": np.where(y == 1, 1024.0, 6000.0), "height": 1000.0})
    auc = eda.metadata_auc(df, {"clinical": ["age", "sex", "site"], "size": ["width"]}, n_splits=3)
    assert auc.loc["size", "auc_mean"] > 0.95 and abs(auc.loc["clinical", "auc_pooled_oof"] - 0.5) < 0.12


def test_plots_return_figures_and_save_atomically(table: pd.DataFrame, tmp_path: Path) -> None:
    report = Report(tmp_path / "r", tag="SYNTHETIC")
    figs = {
        "a": plots.bar_counts(eda.count_table(table, "sex"), "Sex", tag=report.tag),
        "b": plots.grouped_counts(table, "sex", "target", "x", tag=report.tag, log=True),
        "c": plots.age_hist(table, "Age", hue="target", density=True),
        "d": plots.colour_hist(np.ones((3, 256)), "RGB"),
        "e": plots.rate_with_ci(eda.malignancy_rate(table, "site"), "rate", overall_pct=30.0),
        "f": plots.size_scatter(table, "size"),
        "g": plots.image_grid([np.zeros((8, 8, 3), np.uint8)] * 3, ["1", "2", "3"], ncols=2, title="grid"),
    }
    assert figs["a"].axes[0].get_title() == "SYNTHETIC — Sex"
    assert [b.get_height() for b in figs["a"].axes[0].patches] == [5, 4, 1]
    for name, fig in figs.items():
        path = report.figure(fig, name)
        assert path.is_file() and path.stat().st_size > 1000
    assert sorted(p.name for p in report.figures.iterdir()) == [f"{k}.png" for k in "abcdefg"]  # no temp files left
    assert report.table(eda.missing_table(table), "t").read_text().startswith("item,missing,percent")  # no blank header
    multi = pd.DataFrame({"v": [1, 2]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", None]))
    assert report.table(multi, "m").read_text().startswith("k,level_1,v")


def test_package_versions_lists_core_packages() -> None:
    import platform

    v = package_versions()["version"]
    assert v["python"] == platform.python_version()
    assert v["numpy"] == np.__version__ and v["pandas"] == pd.__version__ and v["matplotlib"] == matplotlib.__version__


def test_open_study_seeds_binds_the_report_and_loads_the_data(tiny_csv, tmp_path) -> None:
    import numpy as np

    from melanoma_utils.reports.reporting import open_study

    report, df = open_study(str(tmp_path / "rep"), True, 7, str(tiny_csv))
    first = np.random.random()
    open_study(str(tmp_path / "rep"), True, 7)
    assert np.random.random() == first  # the same seed, the same stream
    assert report.report_dir == tmp_path / "rep" and report.tag == "SYNTHETIC"
    assert len(df) == 24 and df["image_path"].str.endswith(".jpg").all()
    assert open_study(str(tmp_path / "rep"), False, 0)[1] is None


def test_figures_use_one_colour_per_class_and_sex_and_no_bars_on_a_log_axis(table: pd.DataFrame) -> None:
    from matplotlib.colors import to_hex

    from melanoma_utils.reports import style

    fig = plots.grouped_counts(table, "sex", "target", "t", log=True, hue_labels={0: "benign", 1: "malignant"})
    axes = fig.axes
    assert len(axes) == 2 and all(ax.get_yscale() == "linear" for ax in axes)
    assert [ax.get_title() for ax in axes] == ["benign", "malignant"]
    assert to_hex(axes[0].patches[0].get_facecolor()) == style.BENIGN_COLOUR
    assert to_hex(axes[1].patches[0].get_facecolor()) == style.MALIGNANT_COLOUR
    assert [p.get_height() for p in axes[1].patches] == [1, 2, 0]  # malignant: female 1, male 2, unknown 0
    fig = plots.grouped_counts(table[table["sex"] != "unknown"], "site", "sex", "t")
    colours = {to_hex(c.patches[0].get_facecolor()) for c in fig.axes[0].containers}
    assert colours == {style.SEX_PALETTE["female"], style.SEX_PALETTE["male"]}
    assert style.palette_for("site", ["torso"]) is None


def test_rate_plot_axis_fits_the_large_groups_and_writes_the_cut_interval() -> None:
    t = pd.DataFrame({"images": [2, 500, 800], "malignant": [0, 10, 30], "rate_pct": [0.0, 2.0, 3.75],
                      "ci_low_pct": [0.0, 1.1, 2.6], "ci_high_pct": [65.8, 3.6, 5.3]}, index=["0–9", "40–49", "70–79"])
    fig = plots.rate_with_ci(t, "t")
    ax = fig.axes[0]
    assert ax.get_xlim()[1] == pytest.approx(1.1 * 5.3 + 0.2)
    assert [a.get_text() for a in ax.texts] == ["→ 66%"]


def test_confusion_matrix_shows_counts_and_row_shares_readably() -> None:
    fig = plots.confusion({"tn": 90, "fp": 10, "fn": 1, "tp": 3, "threshold": 0.1, "sensitivity": 0.75,
                           "specificity": 0.9}, "t")
    texts = {t.get_text(): t.get_color() for t in fig.axes[0].texts}
    assert texts["90\n90.0%"] == "white" and texts["10\n10.0%"] == "black" and texts["3\n75.0%"] == "white"


def test_importance_bars_take_an_asymmetric_interval() -> None:
    t = pd.DataFrame({"m": [0.02, 0.001], "lo": [0.01, 0.0], "hi": [0.03, 0.004]}, index=["site", "age"])
    fig = plots.importance_bars(t, "t", mean="m", low="lo", high="hi")
    segments = fig.axes[0].collections[-1].get_segments()
    lows = sorted(min(seg[:, 0]) for seg in segments)
    assert lows == pytest.approx([0.0, 0.01])  # never below zero, unlike mean ± sd


def test_explanation_grid_has_colour_bars_and_names_the_share_inside_the_lesion() -> None:
    imgs = np.full((2, 32, 32, 3), 120.0)
    shap_maps = np.random.default_rng(0).normal(size=(2, 32, 32, 3))
    cams = np.random.default_rng(1).uniform(size=(2, 32, 32))
    masks = np.zeros((2, 32, 32), bool)
    masks[:, 8:24, 8:24] = True
    fig = plots.explanation_grid(imgs, shap_maps, cams, ["a", "b"], outlines=plots.LesionOutlines(masks, [0.8, 0.25]))
    assert len(fig.axes) == 6 + 4  # 2 rows × 3 panels + a colour bar beside each SHAP and Grad-CAM panel
    titles = [ax.get_title() for ax in fig.axes]
    assert "Grad-CAM: 80% inside the lesion" in titles and "Grad-CAM: 25% inside the lesion" in titles
    assert fig.axes[0].collections  # the first row's image panel carries the lesion outline
    failed = plots.explanation_grid(imgs, shap_maps, cams, ["a", "b"],
                                    outlines=plots.LesionOutlines(masks, [0.8, 0.25], [True, False]))
    rows = [ax for ax in failed.axes if ax.get_title().startswith(("a", "b"))]
    assert rows[1].get_title() == "b\n(no outline: mask check failed)" and not rows[1].collections
    assert rows[0].collections  # the mask that passed is still drawn


def test_importance_bars_zoom_on_the_inputs_a_dominant_one_would_hide() -> None:
    """The image's bar 25 times any metadata bar: a second panel holds the metadata alone on a scale where its bars are
    a visible share of the axis; comparable bars stay one panel."""
    t = pd.DataFrame({"importance_mean": [0.30, 0.012, 0.009, -0.002], "importance_sd": [0.03, 0.002, 0.003, 0.001]},
                     index=["image", "sex", "age", "height"])
    fig = plots.importance_bars(t, "t")
    assert len(fig.axes) == 2
    zoom = fig.axes[1]
    assert [tick.get_text() for tick in zoom.get_yticklabels()] == ["sex", "age", "height"]
    assert zoom.get_xlim()[1] < 0.05 and 0.012 / zoom.get_xlim()[1] > 0.5  # the largest metadata bar spans the axis
    assert len(plots.importance_bars(t.iloc[1:], "t").axes) == 1


def test_git_commit_names_head_and_uncommitted_code(tmp_path) -> None:
    import subprocess

    from melanoma_utils.versions import git_commit

    assert git_commit(tmp_path) == "not a git checkout"
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "melanoma_utils").mkdir()
    (tmp_path / "melanoma_utils" / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert git_commit(tmp_path) == head
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "new.csv").write_text("a\n")  # a rendering's outputs: not the code
    assert git_commit(tmp_path) == head
    (tmp_path / "melanoma_utils" / "a.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == head + " + uncommitted changes"
    assert package_versions(root=tmp_path)["version"]["git commit"] == head + " + uncommitted changes"


def test_photo_figures_are_saved_small_and_charts_untouched(tmp_path) -> None:
    """A figure of photos is saved as a 256-colour PNG (far smaller than full colour), a chart as drawn; outside a
    notebook kernel the photo figure is not closed (nothing to display it in)."""
    import matplotlib.pyplot as plt
    from PIL import Image

    from melanoma_utils.reports.plots import save_figure, shows_images
    from melanoma_utils.reports.reporting import show_photo

    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(rng.random((200, 200, 3)))
    assert shows_images(fig)
    small = Image.open(save_figure(fig, tmp_path / "photo.png"))
    assert small.mode == "P" and len(small.getcolors(1 << 16) or []) <= 256
    full = tmp_path / "full.png"
    fig.savefig(full, dpi=120, bbox_inches="tight")
    assert (tmp_path / "photo.png").stat().st_size < 0.6 * full.stat().st_size
    assert show_photo(fig) is False and plt.fignum_exists(fig.number)
    chart, cx = plt.subplots()
    cx.plot([0, 1], [0, 1])
    assert not shows_images(chart) and Image.open(save_figure(chart, tmp_path / "chart.png")).mode == "RGBA"
    heat, hx = plt.subplots()  # a photo with a heat map and its colour bar: full colour (256 would band the ramp)
    hx.imshow(rng.random((50, 50, 3)))
    heat.colorbar(hx.imshow(rng.random((50, 50)), cmap="magma", alpha=0.5), ax=hx)
    assert shows_images(heat) and Image.open(save_figure(heat, tmp_path / "heat.png")).mode == "RGBA"
    table, tx = plt.subplots()  # a colour-mapped table (confusion matrix) is a chart: chart resolution, full colour
    tx.imshow(np.eye(2), cmap="Blues")
    assert not shows_images(table) and Image.open(save_figure(table, tmp_path / "table.png")).mode == "RGBA"


def test_roc_pr_axes_start_at_0_and_many_curves_keep_distinct_looks() -> None:
    from melanoma_utils.reports import plots

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    curves = {f"m{k}": (y, y * 0.2 * k + rng.random(200)) for k in range(13)}
    fig = plots.roc_pr(curves, "t")
    a, b = fig.axes[:2]
    assert b.get_ylim()[0] == 0 and b.get_xlim() == (0, 1) and a.get_xlim() == (0, 1)
    looks = {(tuple(line.get_color()) if not isinstance(line.get_color(), str) else line.get_color(), line.get_linestyle())
             for line in a.lines[:13]}
    assert len(looks) == 13  # no two of the 13 curves drawn alike
    assert len({tuple(line.get_color()) for line in a.lines[:10]}) == 10  # and the first ten in ten colours
    same = {"copy-balanced": curves["m1"], "one-class copies left out": (y.copy(), curves["m1"][1].copy()), "m2": curves["m2"]}
    fig = plots.roc_pr(same, "t")  # two models with the same predictions: one curve, both named
    labels = [line.get_label() for line in fig.axes[0].lines if not line.get_label().startswith("chance")]
    assert len(labels) == 2 and labels[0].startswith("copy-balanced = one-class copies left out (identical predictions)")


def test_figures_say_what_they_show_without_covering_data() -> None:
    """The round-3 figure review: whole-number histograms without empty gap bins, a degenerate subgroup interval
    marked, the forest plot's and the rate plot's reference lines named outside the axes, the decision curve's lower
    panel without a copy of the upper one, a failed mask's Grad-CAM share not quoted."""
    import matplotlib.pyplot as plt

    from melanoma_utils.reports import plots

    counts = pd.Series([1] * 50 + [2] * 30 + [3] * 20 + [4] * 10 + [5] * 8 + [40, 80, 115])
    fig = plots.hist_series(counts, "Images per patient", "images", log_x=True, ylabel="patients")
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights[:5] == [50, 30, 20, 10, 8] and fig.axes[0].get_ylabel().startswith("patients per value")
    widths = [p.get_width() for p in fig.axes[0].patches]
    assert sum(h * w for h, w in zip(heights, widths)) == pytest.approx(len(counts))  # every patient drawn once
    table = pd.DataFrame({"factor": ["site"] * 3, "group": ["head", "palm", "unknown"], "n": [200, 4, 14],
                          "n_malignant": [40, 1, 3], "roc_auc": [0.8, np.nan, 1.0], "ci_low": [0.7, np.nan, 1.0],
                          "ci_high": [0.9, np.nan, 1.0]})
    fig = plots.forest_plot(table, overall=0.8, overall_label="all of copy a")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "CI degenerate" in texts and "too few for an AUC" in texts
    assert fig.axes[0].get_legend() is None and "all of copy a: 0.800" in [t.get_text() for t in fig.legends[0].texts]
    rate = pd.DataFrame({"rate_pct": [1.0, 66.0], "ci_low_pct": [0.5, 20.0], "ci_high_pct": [2.0, 94.0],
                         "images": [5000, 3]}, index=["adult", "child"])
    fig = plots.rate_with_ci(rate, "Malignant by age band", overall_pct=1.76)
    assert fig.axes[0].get_legend() is None and "all images, 1.76%" in fig.axes[0].get_xlabel()
    t = np.linspace(0.01, 0.5, 20)
    curve = pd.DataFrame({"threshold": t, "model": 0.1 - 0.1 * t, "model_ci_low": 0.09 - 0.1 * t,
                          "model_ci_high": 0.11 - 0.1 * t, "biopsy_all": 0.18 - 0.82 * t / (1 - t)})
    curve = curve.assign(delta_all=curve["model"] - curve["biopsy_all"], delta_all_ci_low=curve["model_ci_low"] - curve["biopsy_all"],
                         delta_all_ci_high=curve["model_ci_high"] - curve["biopsy_all"])
    fig = plots.decision_curve({"fusion": curve})
    lower = fig.axes[1]
    assert [line.get_label() for line in lower.lines if not line.get_label().startswith("_")] == ["ΔNB vs biopsy all (95% CI)"]
    assert any(text.get_text().startswith("↑ off the panel from") for text in lower.texts)
    from melanoma_utils.evaluation.calibration import reliability_table

    rng = np.random.default_rng(0)
    p_rare = np.concatenate([rng.uniform(0.001, 0.03, 900), rng.uniform(0.05, 0.6, 100)])  # a 2% prevalence's scale
    rare = reliability_table((rng.random(1000) < p_rare).astype(int), p_rare)
    assert plots.reliability_diagram({"at 2%": rare}).axes[0].get_xscale() == "log"  # bins near 0 spread out
    p_even = rng.uniform(0, 1, 1000)
    even = reliability_table((rng.random(1000) < p_even).astype(int), p_even)
    assert plots.reliability_diagram({"even": even}).axes[0].get_xscale() == "linear"
    images, maps = rng.integers(0, 255, (2, 16, 16, 3)), rng.normal(size=(2, 16, 16, 3))
    masks = np.zeros((2, 16, 16), bool)
    masks[:, 4:12, 4:12] = True
    fig = plots.explanation_grid(images, maps, rng.random((2, 16, 16)), ["a", "b"],
                                 outlines=plots.LesionOutlines(masks, [0.9, 0.97], [True, False]))
    titles = [ax.get_title() for ax in fig.axes]
    assert "Grad-CAM: 90% inside the lesion" in titles and "Grad-CAM: share inside the lesion n/a (mask failed)" in titles
    assert not any("97%" in title for title in titles)
    plt.close("all")


def test_colour_figures_share_one_scale_unless_a_class_has_no_pixel() -> None:
    from melanoma_utils.reports.eda import shared_share_top

    a, b = np.zeros((3, 256)), np.zeros((3, 256))
    a[:, 10], a[:, 20] = 1, 3  # share 0.75 at 20
    b[:, 5] = 2  # share 1.0 at 5
    assert shared_share_top([a, b]) == pytest.approx(1.05)
    assert shared_share_top([a, np.zeros((3, 256))]) == pytest.approx(0.7875)  # an empty class leaves the scale alone
    assert shared_share_top([np.zeros((3, 256))]) is None


def test_identical_variant_labels_mark_only_coinciding_predictions() -> None:
    """Two named variants that are one model on this data (a weighting with nothing to reweight) are marked for the
    ablation's dot plots; a variant differing on a single image, or only in another fold assignment, is not."""
    from melanoma_utils.reports import plots

    rng = np.random.default_rng(1)
    p = rng.random(6)
    rows = []
    for variant, probs, repeat in [("base", p, 0), ("balanced", p, 0), ("left out", p, 0),
                                   ("other", np.r_[p[:5], p[5] + 0.01], 0), ("base", p + 0.1, 1), ("balanced", p, 1)]:
        rows += [{"variant": variant, "image_name": f"i{k}", "probability": v, "repeat": repeat} for k, v in enumerate(probs)]
    labels = plots.identical_variant_labels(pd.DataFrame(rows))
    assert labels == {"balanced": "balanced (predictions = base's)", "left out": "left out (predictions = base's)"}
    assert plots.identical_variant_labels(pd.DataFrame(rows[:6] + rows[18:24])) == {}
