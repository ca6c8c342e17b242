"""One look for every figure: the colours of benign/malignant and of sex, the minimum font sizes, and the numbering
of the study's figures (no plotting here; :mod:`melanoma_utils.reports.plots` draws)."""

from __future__ import annotations

from typing import Mapping

#: The Okabe–Ito palette (colour-blind safe), in the order series take it; with :data:`LINESTYLES` it gives 16
#: distinct series before a colour and line style repeat together.
OKABE_ITO: tuple[str, ...] = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#f0e442", "#000000")
LINESTYLES: tuple[str, ...] = ("-", "--")
#: Benign and malignant in every figure (also the default single-series colour: benign).
BENIGN_COLOUR = "#0072b2"
MALIGNANT_COLOUR = "#d55e00"
TARGET_PALETTE: dict[int, str] = {0: BENIGN_COLOUR, 1: MALIGNANT_COLOUR}
TARGET_LABELS: dict[int, str] = {0: "benign", 1: "malignant"}
#: Sex in every figure (neither of the target colours, so the two never read as each other).
SEX_PALETTE: dict[str, str] = {"female": "#cc79a7", "male": "#009e73", "unknown": "#999999"}
#: The study's endpoints in every figure (Okabe–Ito, colour-blind safe): all images, melanoma vs nevus, and the
#: same two within copy a (the primary endpoint where the data have copies).
ENDPOINT_STYLE: dict[str, tuple[str, str, str]] = {  # subset -> (colour, marker, label)
    "all": ("#0072B2", "o", "all images"),
    "melanoma_vs_nevus": ("#D55E00", "s", "melanoma vs nevus"),
    "within_copy_a": ("#009E73", "D", "within copy a (primary)"),
    "melanoma_vs_nevus_within_copy_a": ("#CC79A7", "^", "melanoma vs nevus, within copy a"),
}
#: Neutral marks (chance lines, counts, references).
NEUTRAL = "#999999"
#: The smallest font a figure uses (titles of panels included): readable in the rendered HTML.
MIN_FONT = 9
#: Resolution of every saved chart; figures that show images (photos, heat maps) use PHOTO_DPI.
DPI = 200
PHOTO_DPI = 120
RC: dict[str, object] = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": MIN_FONT,
    "ytick.labelsize": MIN_FONT, "legend.fontsize": MIN_FONT, "figure.titlesize": 12,
}


def palette_for(column: str, values: list) -> list[str] | None:
    """The fixed colours of ``values`` of ``column`` (``target``: benign/malignant, either as 0/1 or as their labels;
    ``sex``: female/male/unknown); ``None`` for any other column (the plotting library's default cycle)."""
    fixed: Mapping = {}
    if column == "target":
        fixed = {**TARGET_PALETTE, **{TARGET_LABELS[k]: v for k, v in TARGET_PALETTE.items()}}
    elif column == "sex":
        fixed = SEX_PALETTE
    if not fixed or not all(v in fixed for v in values):
        return None
    return [str(fixed[v]) for v in values]


def apply() -> None:
    """Set the study's matplotlib defaults (font sizes; the Okabe–Ito colours, cycling line styles after eight series)
    for the figures that follow."""
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams.update(RC)
    mpl.rcParams["axes.prop_cycle"] = cycler(linestyle=list(LINESTYLES)) * cycler(color=list(OKABE_ITO))


def titled(tag: str, text: str) -> str:
    """A figure title with the data set's tag in front (``"SYNTHETIC demo — Age"``); the text alone without a tag."""
    return f"{tag} — {text}" if tag else text
