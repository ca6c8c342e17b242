"""Data and sources: the SIIM-ISIC 2020 table (load, validate), image files and folders, TFRecord shards,
patient-grouped splits, external sources (HAM10000, ISIC 2019), the SYNTHETIC demo set and ``make data``'s download.

Modules: `confounds`, `csvfiles`, `demo`, `diagnoses`, `fetch`, `imagefiles`, `isic`, `shards`, `sources`, `splits`.
Layers (imports only run leftwards): config/atomic/versions < data < pipeline < evaluation < models < runs < study < reports < cli.
"""

# the principal module's names, loaded on first use (``from melanoma_utils.data import ...`` keeps working without
# importing what the package's lighter modules do not need)
from ..lazy import reexport

__all__ = [
    "AGE_RANGE",
    "IMAGE_EXTENSIONS",
    "MISSING",
    "NORMALISED_COLUMNS",
    "REQUIRED_PREDICT_COLUMNS",
    "REQUIRED_TRAIN_COLUMNS",
    "SEX_CATEGORIES",
    "SITE_ALIASES",
    "SITE_CATEGORIES",
    "DataError",
    "Dataset",
    "DataWarning",
    "LoadReport",
    "attach_image_paths",
    "default_images_dir",
    "drop_duplicates",
    "find_metadata_csv",
    "load_dataset",
    "load_for_prediction",
    "load_metadata",
    "missing_image_names",
    "normalise_metadata",
    "other_formats",
    "read_csv",
    "read_duplicates",
    "sample_per_class",
]

__getattr__, __dir__ = reexport(__name__, ".isic", __all__)
