"""A run: a trained model with its encoder and recipe (:class:`Run`; the recipe, :class:`TrainConfig`, lives in
:mod:`melanoma_utils.models.train_config`).

A run folder (written by :func:`melanoma_utils.runs.training.train_run`) is self-contained::

    RUN_DIR/model.keras          the whole two-input model (images + metadata in, probability out)
    RUN_DIR/encoder.json         the metadata encoder, fit on the training rows only
    RUN_DIR/config.json          TrainConfig, preprocessing, augmentation, threshold (and its rule), feature
                                 names, class weights, training stages and timings, package versions
    RUN_DIR/history.csv          per-epoch loss/AUC (train and validation)
    RUN_DIR/metrics.json         validation metrics with patient-bootstrap CIs (and the clinical report:
                                 calibration, operating points, net benefit, subgroups)
    RUN_DIR/val_predictions.csv  the validation split's calibrated and raw probabilities
    RUN_DIR/MODEL_CARD.md        intended use, training data and prevalence, metrics, subgroups, shortcuts

``config.json`` also holds the calibrator (``calibration``: Platt or isotonic, fitted on the validation split,
and the prevalence its probabilities are right at); the decision ``threshold`` is on that calibrated scale.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..evaluation.calibration import Calibrator, check_prevalence, prior_shift
from ..models.features import MetadataEncoder
from ..models.train_config import (  # noqa: F401  (re-exported: the recipe lives there)
    AUTO,
    FINETUNE_MODES,
    MAX_IMAGE_SIZE,
    STRATEGIES,
    TrainConfig,
)
from .model_files import ModelFilesError, load_model_files
from .runfolder import RunLayout, record_problems, unrecorded_files

#: Run folders already reported as having no record (the notice is printed once per folder and process).
_UNRECORDED: set[str] = set()


def check_record(run_dir: Path) -> None:
    """Check every file of ``run_dir`` against its ``record.json`` before anything is built from it: a
    :class:`RunDamaged` names each file that is missing, changed, taken from another run or added; a folder from
    before records gets a one-line notice on stderr (once) and loads as before."""
    problems = record_problems(run_dir)
    if problems is None:
        if str(run_dir) not in _UNRECORDED:
            _UNRECORDED.add(str(run_dir))
            print(f"note: {run_dir} has no {RunLayout.RECORD} (written before runs recorded their files): its files "
                  "are not checked", file=sys.stderr)
        return
    if problems:
        raise RunDamaged(f"run folder {run_dir} does not match its {RunLayout.RECORD}: {'; '.join(problems)}. Use the "
                         "run folder as `train` wrote it (or train it again)")
    extra = unrecorded_files(run_dir)
    if extra and str(run_dir) not in _UNRECORDED:
        _UNRECORDED.add(str(run_dir))
        print(f"note: {run_dir} holds file(s) its {RunLayout.RECORD} does not list (added later, not read): "
              f"{', '.join(extra[:5])}", file=sys.stderr)


class RunDamaged(ValueError):
    """A run folder whose files exist but cannot be read (cut, edited or from elsewhere)."""


def _read_json(run_dir: Path, name: str) -> Any:
    try:
        return json.loads((run_dir / name).read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunDamaged(f"run folder {run_dir} is damaged: {name} ({exc}); train the run again") from None


class Run:
    """A trained model with its encoder and configuration (from a run folder or fresh from training)."""

    def __init__(self, model: Any, encoder: MetadataEncoder, config: dict[str, Any], run_dir: Path | None = None):
        self.model = model
        self.encoder = encoder
        self.config = config
        self.run_dir = run_dir
        self.train_config = TrainConfig.from_dict(config["train"])
        self.metrics: dict[str, Any] = {}

    @property
    def calibrator(self) -> Calibrator:
        """The calibrator fitted on the validation split (identity for runs trained before calibration)."""
        return Calibrator.from_dict(self.config["calibration"]) if self.config.get("calibration") else Calibrator()

    @property
    def threshold(self) -> float:
        """The decision threshold chosen on the validation predictions (on the calibrated scale)."""
        return float(self.config["threshold"])

    @property
    def prevalence(self) -> float | None:
        """The malignant share the calibrated probabilities are right at (the validation split's); ``None``
        for a run without a calibrator."""
        return self.calibrator.prevalence

    def threshold_at(self, prevalence: float | None) -> float:
        """The decision threshold on the scale of probabilities moved to ``prevalence`` (same decisions)."""
        if prevalence is None:
            return self.threshold
        return float(prior_shift(np.array([self.threshold]), self._source_prevalence(), prevalence)[0])

    def _source_prevalence(self) -> float:
        if self.prevalence is None:
            raise ValueError(f"{self.run_dir or 'this run'} has no calibrator (trained before calibration was added), "
                             "so its outputs are not probabilities at a known prevalence; retrain it to use --prevalence")
        return self.prevalence

    @property
    def uses_context(self) -> bool:
        """Whether the metadata includes the patient context (:mod:`melanoma_utils.models.context`)."""
        return self.encoder.uses_context

    def with_context(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` with the patient-context columns when the run uses them (computed from its images)."""
        from ..models.context import CONTEXT_COLUMNS, add_context

        if not self.uses_context or all(c in df for c in CONTEXT_COLUMNS):
            return df
        return add_context(df, self.train_config.image_size, self.config["preprocess"])

    def head_model(self) -> Any:
        """The layers after the image backbone as a model ``{"embedding", "meta"} -> raw output`` (trained weights)."""
        from ..models.fusion import build_head_model, copy_head_weights, embedding_dim

        head = build_head_model(embedding_dim(self.model), self.train_config.model_spec(self.encoder.n_features))
        copy_head_weights(self.model, head)
        return head

    @staticmethod
    def read_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
        """A run folder's ``config.json`` (threshold, recipe, …) without loading its model; checks the folder."""
        run_dir = Path(run_dir)
        for name in RunLayout(run_dir).required():
            if not (run_dir / name).is_file():
                raise FileNotFoundError(f"{run_dir}: not a run folder ({name} missing)")
        check_record(run_dir)
        config = _read_json(run_dir, RunLayout.CONFIG)
        if not isinstance(config, dict):
            raise RunDamaged(f"run folder {run_dir} is damaged: config.json (not a JSON object); train the run again")
        missing = [k for k, kind in (("train", dict), ("threshold", (int, float)))
                   if not isinstance(config.get(k), kind)]
        if missing:
            raise RunDamaged(f"run folder {run_dir} is damaged: config.json lacks {', '.join(map(repr, missing))} (not "
                             "written by `train`, or edited); train the run again")
        return config

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str]) -> "Run":
        """Load a run folder written by :func:`train_run` (or an ensemble folder: an
        :class:`EnsembleRun`, built by :func:`~melanoma_utils.runs.ensemble.build_ensemble`). Anything unreadable is a :class:`RunDamaged` naming the file."""
        from ..models import fusion as models  # noqa: F401  (registers the custom layers)

        config = cls.read_config(run_dir)
        run_dir = Path(run_dir)
        if RunLayout(run_dir).is_ensemble:
            return EnsembleRun.load(run_dir)
        try:
            model = load_model_files(run_dir)
        except ModelFilesError as exc:
            raise RunDamaged(str(exc)) from None
        try:
            encoder = MetadataEncoder(**_read_json(run_dir, RunLayout.ENCODER))
        except (TypeError, ValueError, KeyError) as exc:
            if isinstance(exc, RunDamaged):
                raise
            raise RunDamaged(f"run folder {run_dir} is damaged: encoder.json ({exc}); train the run again") from None
        run = cls(model, encoder, config, run_dir)
        if RunLayout(run_dir).metrics.is_file():
            run.metrics = _read_json(run_dir, RunLayout.METRICS)
        return run

    def predict(self, df: pd.DataFrame, batch_size: int = 64, tta: int | None = None,
                cached_embeddings: bool = False) -> np.ndarray:
        """The model's RAW outputs for rows of the normalised table (all images must be readable); see
        :meth:`predict_proba` for calibrated probabilities. Ranking metrics (AUC) are the same for both.

        ``tta`` > 1 averages the outputs over that many dihedral views of each image (1: none,
        4: the rotations, 8: rotations and mirrors) — test-time augmentation; ``None``: the run's own setting
        (the one its validation threshold was chosen with). ``cached_embeddings``: for a frozen pretrained
        backbone (not fine-tuned), feed the head with the cached backbone embeddings
        (:mod:`melanoma_utils.models.embeddings`; computed and cached where absent) instead of running the backbone
        again: the same outputs up to the cache's float16 rounding, and far faster for repeated evaluation.
        """
        tta = self.train_config.tta if tta is None else tta
        from ..pipeline.feeds import image_batches
        from ..pipeline.transforms import MAX_VIEWS, dihedral

        if not 1 <= tta <= MAX_VIEWS:
            raise ValueError(f"tta must be in 1..{MAX_VIEWS}; got {tta}")
        cfg = self.train_config
        df = self.with_context(df)
        meta = self.encoder.transform(df)
        if cached_embeddings and cfg.uses_cached_embeddings and cfg.fit.finetune == "none" and len(df):
            return self._predict_from_embeddings(df, meta, tta, batch_size)
        if not cfg.uses_images:
            return np.asarray(self.model.predict({"meta": meta}, batch_size=batch_size, verbose=0)).reshape(-1)
        out = np.empty(len(df), np.float64)
        start = 0
        for images in image_batches(list(df["image_path"]), cfg.data.image_size, self.config["preprocess"], batch_size):
            stop = start + len(images)
            x: dict[str, np.ndarray] = {}
            if cfg.uses_meta:
                x["meta"] = meta[start:stop]
            n = len(images)
            if n < batch_size:  # pad the last batch: one compiled function for every batch
                images = np.concatenate([images, np.repeat(images[-1:], batch_size - n, axis=0)])
                if "meta" in x:
                    x["meta"] = np.concatenate([x["meta"], np.repeat(x["meta"][-1:], batch_size - n, axis=0)])
            total = np.zeros(n, np.float64)
            for view in range(tta):
                x["image"] = dihedral(images, view).astype(np.float32)
                total += np.asarray(self.model.predict_on_batch(x), np.float64).reshape(-1)[:n]
            out[start:stop] = total / tta
            start = stop
        return out

    def _predict_from_embeddings(self, df: pd.DataFrame, meta: np.ndarray, tta: int, batch_size: int) -> np.ndarray:
        from ..models.embeddings import cached_embeddings
        from ..models.fusion import image_encoder, predict_direct

        cfg = self.train_config
        spec = cfg.embedding_spec(self.config["preprocess"], views=tta)
        if cfg.fit.adapt_blocks:  # the backbone's last blocks were trained: the frozen trunk's activations, then its top
            from ..models.partial import cached_activations, first_adapted_block, top_embeddings

            start = first_adapted_block(str(cfg.backbone), cfg.fit.adapt_blocks)
            act, _ = cached_activations(self.model, start, list(df["image_path"]), spec, batch_size=batch_size)
            emb = top_embeddings(self.model, str(cfg.backbone), start, act)
        else:
            emb, _ = cached_embeddings(image_encoder(self.model), list(df["image_path"]), spec, batch_size=batch_size)
        head = self.head_model()
        total = np.zeros(len(df), np.float64)
        for view in range(tta):
            x = {"embedding": emb[:, view]}
            if cfg.uses_meta:
                x["meta"] = meta
            total += np.asarray(predict_direct(head, x), np.float64).reshape(-1)
        return total / tta

    def predict_proba(self, df: pd.DataFrame, batch_size: int = 64, tta: int | None = None,
                      prevalence: float | None = None, cached_embeddings: bool = False) -> np.ndarray:
        """Calibrated probabilities of melanoma: right at the run's :attr:`prevalence`, or moved to a stated
        deployment ``prevalence`` (e.g. :data:`melanoma_utils.config.ISIC2020_PREVALENCE`) by :func:`~melanoma_utils.evaluation.calibration.prior_shift`."""
        return self.calibrate(self.predict(df, batch_size, tta, cached_embeddings), prevalence)

    def calibrate(self, raw: Any, prevalence: float | None = None) -> np.ndarray:
        """Raw model outputs -> calibrated probabilities (at ``prevalence`` if given)."""
        p = self.calibrator.transform(raw)
        if prevalence is None:
            return p
        return prior_shift(p, self._source_prevalence(), check_prevalence(prevalence))

    @property
    def uses_original_size(self) -> bool:
        """Whether the model takes the original image width/height (the study's ``paper`` features)."""
        return bool({"width", "height"} & set(self.encoder.groups))

    def predict_frame(self, df: pd.DataFrame, batch_size: int = 64, tta: int | None = None,
                      impute_size: bool = False, prevalence: float | None = None) -> pd.DataFrame:
        """``image_name, probability, raw_probability, prevalence, threshold, prediction, error`` for every row;
        unreadable images get an error.

        ``probability`` is calibrated, at the run's prevalence or at ``prevalence``; ``raw_probability`` is the
        model's own output; ``prevalence`` says which prevalence ``probability`` is right at and ``threshold``
        is the decision threshold on that scale (``prediction = probability >= threshold``: the same decisions
        whatever the prevalence).

        A model with the original width/height takes them from the table: the files at hand are usually
        resized copies whose size says nothing about the camera. Rows without them are an error naming them,
        unless ``impute_size``: then the encoder imputes them (its training medians) and the output's
        ``size_imputed`` column marks those rows.
        """
        from ..data.imagefiles import check_image_file, unsafe_image_name
        from ..data.isic import DataError

        df = df.reset_index(drop=True).copy()
        errors = pd.Series("", index=df.index)
        if self.train_config.uses_images:
            errors = pd.Series([check_image_file(p) or "" for p in df["image_path"]], index=df.index)
            errors = errors.where(errors == "", "image " + errors)
        unsafe = df["image_name"].map(lambda n: unsafe_image_name(n) or "")
        errors = errors.where(unsafe == "", "image_name " + unsafe + " (not read: a name must be a plain file name)")
        no_size = pd.Series(False, index=df.index)
        if self.uses_original_size:
            no_size = df["width"].isna() | df["height"].isna()
            if no_size.any() and not impute_size:
                rows = ", ".join(str(i + 2) for i in np.flatnonzero(no_size.to_numpy())[:10])
                raise DataError(
                    f"this model uses the original image width/height (features 'paper'), but {int(no_size.sum())} "
                    f"row(s) have none (CSV line(s) {rows}{', ...' if no_size.sum() > 10 else ''}): add the columns "
                    "width and height with each image's ORIGINAL size (the size of a resized copy is not it), or "
                    "pass --impute-size to impute them (recorded per row in size_imputed)")
        if prevalence is not None:
            prevalence = check_prevalence(prevalence)
        threshold = self.threshold_at(prevalence)
        ok = errors == ""
        raw = np.full(len(df), np.nan)
        if ok.any():
            usable = df[ok]
            if self.uses_context:  # the patient's other readable images in this table are the context
                usable = self.with_context(usable)
            raw[ok.to_numpy()] = self.predict(usable, batch_size, tta=tta)
        prob = np.full(len(df), np.nan)
        prob[ok.to_numpy()] = self.calibrate(raw[ok.to_numpy()], prevalence)
        out = pd.DataFrame({"image_name": df["image_name"], "probability": prob, "raw_probability": raw,
                            "prevalence": prevalence if prevalence is not None else self.prevalence,
                            "threshold": threshold})
        out["prediction"] = np.where(ok, (prob >= threshold).astype(int), -1)
        out["error"] = errors
        if self.uses_original_size:
            out["size_imputed"] = no_size.astype(int)
        return out


#: The file that makes a run folder an ensemble (:class:`EnsembleRun`).
ENSEMBLE_FILE = RunLayout.ENSEMBLE


def is_ensemble(run_dir: str | os.PathLike[str]) -> bool:
    """Whether ``run_dir`` is an ensemble folder (:data:`ENSEMBLE_FILE` beside ``config.json``)."""
    return (Path(run_dir) / ENSEMBLE_FILE).is_file()


class EnsembleRun(Run):
    """The mean raw output of its member runs, calibrated and thresholded as one model."""

    def __init__(self, members: list[Run], config: dict[str, Any], run_dir: Path | None = None):
        imaging = [m for m in members if m.train_config.uses_images]
        first = imaging[0] if imaging else members[0]
        super().__init__(first.model, first.encoder, {**config, "train": first.config["train"]}, run_dir)
        self.members = members
        self.config = config

    @property
    def uses_context(self) -> bool:
        return any(m.uses_context for m in self.members)

    @property
    def uses_original_size(self) -> bool:
        return any(m.uses_original_size for m in self.members)

    def with_context(self, df: pd.DataFrame) -> pd.DataFrame:
        return df  # each member adds its own

    def predict(self, df: pd.DataFrame, batch_size: int = 64, tta: int | None = None,
                cached_embeddings: bool = False) -> np.ndarray:
        """The mean of the members' RAW outputs (each with its own test-time augmentation unless ``tta`` is given)."""
        return np.mean([m.predict(df, batch_size, tta, cached_embeddings) for m in self.members], axis=0)

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str]) -> "EnsembleRun":
        """Load an ensemble folder written by :func:`build_ensemble`."""
        run_dir = Path(run_dir)
        spec = _read_json(run_dir, ENSEMBLE_FILE)
        rels = spec.get("members") if isinstance(spec, dict) else None
        if not isinstance(rels, list) or not rels or not all(isinstance(r, str) for r in rels):
            raise RunDamaged(f"run folder {run_dir} is damaged: {ENSEMBLE_FILE} (no list of member folders under "
                             "'members'); build the ensemble again")
        outside = [r for r in rels if not (run_dir / r).resolve().is_relative_to(run_dir.resolve())]
        if outside:
            raise RunDamaged(f"run folder {run_dir} is damaged: {ENSEMBLE_FILE} names members outside the folder "
                             f"({', '.join(outside)}); build the ensemble again")
        nested = [r for r in rels if (run_dir / r).resolve() == run_dir.resolve() or (run_dir / r / ENSEMBLE_FILE).is_file()]
        if nested:
            raise RunDamaged(f"run folder {run_dir} is damaged: {ENSEMBLE_FILE} names itself or another ensemble as a "
                             f"member ({', '.join(nested)}); members are trained run folders; build the ensemble again")
        members = [Run.load(run_dir / rel) for rel in rels]
        run = cls(members, _read_json(run_dir, RunLayout.CONFIG), run_dir)
        if RunLayout(run_dir).metrics.is_file():
            run.metrics = _read_json(run_dir, RunLayout.METRICS)
        return run
