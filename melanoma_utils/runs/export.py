"""A run folder as one self-contained TensorFlow SavedModel: raw inputs in, calibrated probability out.

The exported ``serve`` signature takes what a deployment has — one RGB image as uint8 pixels of any size, and the raw
metadata fields (``age`` in years, ``sex``, ``site`` as text; NaN or empty when missing; ``width``/``height``: the
image's ORIGINAL size, used only by runs with the study's size features) — and returns ``probability`` (calibrated,
right at the run's validation prevalence: ``signature.json`` says which) and ``raw_probability`` (the network's own
output). Inside: the centre crop and antialiased resize of :func:`melanoma_utils.pipeline.feeds.crop_resize_tensor`, the
run's test-time augmentation, the fitted metadata encoding (:class:`~melanoma_utils.models.features.MetadataEncoder` as
TensorFlow ops), the model, and the calibrator (Platt as an affine map on the logit, isotonic as a piecewise-linear
lookup). A caller needs TensorFlow and nothing from this package. Parity with ``predict`` is a test.

``--format tflite`` / ``tflite_int8`` (dynamic-range int8 weights) write a LiteRT flatbuffer of the ``serve_lite``
signature, built from LiteRT built-in ops only: the image comes already centre-cropped and resized to the run's size
(uint8), the metadata as numbers (:data:`LITE_FIELDS`, :func:`lite_fields` builds them), the test-time augmentation,
encoding and calibrator are inside. ``--format onnx`` writes the same ``serve_lite`` graph as ONNX (``model.onnx``,
converted with tf2onnx, the converter Keras 3's own ONNX export uses; runs in ONNX Runtime).

Not exported (an error says so): ensembles, runs with a NumPy-only preprocessing (Ben Graham, HSB, LUV,
Shades-of-Gray, greyscale), patient-context features.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_folder, check_replaceable
from ..data.isic import SEX_CATEGORIES, SITE_ALIASES, SITE_CATEGORIES
from ..evaluation.calibration import EPS
from .runfolder import RunLayout

#: Formats ``export`` writes.
FORMATS: tuple[str, ...] = ("saved_model", "tflite", "tflite_int8", "onnx")
#: The ONNX opset of ``--format onnx`` (ONNX Runtime >= 1.13 runs it).
ONNX_OPSET = 17
#: The LiteRT (TFLite) model's metadata input, in order: numbers only (LiteRT has no string ops).
LITE_FIELDS: tuple[str, ...] = ("age", "sex_code", "site_code", "width", "height")


def _category_code(tf: Any, text: Any, cats: tuple[str, ...], aliases: dict[str, str] | None = None) -> Any:
    """The index of ``text`` (trimmed, lower-cased, aliases mapped) in ``cats`` as float32, -1 when not one of them:
    :func:`lite_fields`'s coding, as TensorFlow string ops."""
    text = tf.strings.lower(tf.strings.strip(text))
    for alias, target in (aliases or {}).items():
        text = tf.where(tf.equal(text, alias), tf.constant(target), text)
    return tf.add_n([float(i + 1) * tf.cast(tf.equal(text, c), tf.float32) for i, c in enumerate(cats)]) - 1.0


def _encode_meta(tf: Any, enc: Any, age: Any, sex: Any, site: Any, width: Any, height: Any) -> Any:
    """:meth:`MetadataEncoder.transform` for one row of raw fields (sex/site as text): coded like :func:`lite_fields`
    and encoded by :func:`_encode_meta_numeric`, so both signatures share one encoding."""
    fields = tf.stack([tf.cast(age, tf.float32), _category_code(tf, sex, SEX_CATEGORIES),
                       _category_code(tf, site, SITE_CATEGORIES, SITE_ALIASES),
                       tf.cast(width, tf.float32), tf.cast(height, tf.float32)])
    return _encode_meta_numeric(tf, enc, tf.reshape(fields, (1, len(LITE_FIELDS))))


def _encode_meta_numeric(tf: Any, enc: Any, fields: Any) -> Any:
    """:meth:`MetadataEncoder.transform` for one row of :data:`LITE_FIELDS` (sex/site as indices into the categories,
    -1 unknown; NaN for missing numbers), with LiteRT built-in ops only."""
    age, sex, site, width, height = (fields[0, i] for i in range(len(LITE_FIELDS)))
    cols = []
    for g in enc.groups:
        if g == "age":
            missing = tf.not_equal(age, age)  # NaN
            value = tf.where(missing, tf.constant(enc.age_median, tf.float32), age)
            cols += [(value - enc.age_mean) / enc.age_std, tf.cast(missing, tf.float32)]
        elif g in ("sex", "site"):
            code = sex if g == "sex" else site
            cats = SEX_CATEGORIES if g == "sex" else SITE_CATEGORIES
            onehot = [tf.cast(tf.equal(code, float(i)), tf.float32) for i in range(len(cats))]
            cols += onehot + [1.0 - tf.add_n(onehot)]
        elif g in ("width", "height"):
            med, mean, std = enc.size_stats[g]
            raw = width if g == "width" else height
            nan = tf.not_equal(raw, raw)
            # NaN replaced first by a select on the NaN test itself: tf2onnx turns other selects into c * a + (1 - c) * b,
            # where NaN * 0 would stay NaN
            raw = tf.where(nan, tf.constant(-1.0, tf.float32), raw)
            ok = raw > 0
            value = tf.math.log(tf.where(ok, raw, tf.constant(float(np.exp(med)), tf.float32)))
            cols += [(value - mean) / std, 1.0 - tf.cast(ok, tf.float32)]
        else:
            raise ValueError(f"metadata group {g!r} (patient context) cannot be computed from one image: not exported")
    return tf.reshape(tf.stack([tf.cast(c, tf.float32) for c in cols]), (1, len(cols)))


def lite_fields(age: float | None, sex: str | None, site: str | None, width: float | None = None,
                height: float | None = None) -> np.ndarray:
    """The LiteRT model's metadata input for one lesion: float32 ``(1, 5)`` of :data:`LITE_FIELDS`."""
    def code(value: str | None, cats: tuple[str, ...], aliases: dict[str, str] | None = None) -> float:
        v = (value or "").strip().lower()
        v = (aliases or {}).get(v, v)
        return float(cats.index(v)) if v in cats else -1.0

    nan = float("nan")
    return np.array([[nan if age is None else age, code(sex, SEX_CATEGORIES), code(site, SITE_CATEGORIES, SITE_ALIASES),
                      nan if width is None else width, nan if height is None else height]], np.float32)


def _calibrate(tf: Any, calibrator: Any, raw: Any) -> Any:
    """The run's calibrator as TensorFlow ops (identity, Platt on the logit, isotonic by linear interpolation)."""
    if calibrator.method == "identity":
        return raw
    if calibrator.method == "platt":
        a, b = calibrator.params["ab"]
        q = tf.clip_by_value(raw, EPS, 1 - EPS)
        return tf.sigmoid(a + b * (tf.math.log(q) - tf.math.log(1.0 - q)))  # (ONNX has no Log1p)
    if calibrator.method == "isotonic":  # np.interp through the knots as a sum of clipped ramps (LiteRT built-ins)
        x = np.asarray(calibrator.params["x"], np.float64)
        y = np.asarray(calibrator.params["y"], np.float64)
        out = tf.zeros_like(raw) + float(y[0])
        for x0, x1, y0, y1 in zip(x[:-1], x[1:], y[:-1], y[1:]):
            if x1 > x0 and y1 != y0:
                out = out + float((y1 - y0) / (x1 - x0)) * (tf.clip_by_value(raw, float(x0), float(x1)) - float(x0))
        return out
    raise ValueError(f"unknown calibration method {calibrator.method!r}")


def _to_onnx(tf: Any, saved_model: Path, spec: list[Any], path: Path) -> None:
    """The SavedModel's ``serve_lite`` signature as an ONNX file (tf2onnx, opset :data:`ONNX_OPSET`)."""
    import tf2onnx

    loaded = tf.saved_model.load(str(saved_model))
    fn = tf.function(lambda image, fields: loaded.serve_lite(image, fields))
    tf2onnx.convert.from_function(fn, input_signature=spec, opset=ONNX_OPSET, output_path=str(path))


def _legacy_export(folder: Path) -> bool:
    """An export folder written before folders carried a marker: a signature.json and nothing of a run."""
    return (folder / "signature.json").is_file() and not RunLayout(folder).config.is_file()


def check_export_out(run_dir: Path, out_dir: Path, overwrite: bool) -> None:
    """Refuse an export folder that is the run folder, lies inside it or holds it, or that ``export`` did not make."""
    run, out = run_dir.resolve(), out_dir.resolve()
    if out == run or run in out.parents or out in run.parents:
        raise FileExistsError(f"{out_dir} is, holds or lies inside the run folder {run_dir}: export to another folder")
    check_replaceable(out_dir, "export", overwrite, legacy=_legacy_export)


def _exportable_run(run_dir: Path, out_dir: Path, fmt: str, overwrite: bool) -> Any:
    """The run of ``run_dir`` once every reason it cannot be exported to ``out_dir`` as ``fmt`` is ruled out (each a
    ``ValueError`` saying what to do)."""
    from .run import Run

    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if fmt == "onnx":
        try:
            import tf2onnx  # noqa: F401
        except ImportError as e:
            raise ValueError(f"--format onnx needs the tf2onnx package ({e}); pip install -r requirements.txt") from e
    check_export_out(run_dir, out_dir, overwrite)
    if RunLayout(run_dir).is_ensemble:
        raise ValueError(f"{run_dir} is an ensemble: exporting the averaged members is not supported yet (each member has "
                         "its own image size, test-time augmentation and encoder, and the ensemble's calibrator sits on "
                         "their mean: one graph would have to carry them all); export a member")
    run = Run.load(run_dir)
    if run.config["preprocess"]["name"] != "none":
        raise ValueError(f"{run_dir} uses the preprocessing {run.config['preprocess']['name']!r}, computed with NumPy/"
                         "OpenCV outside the graph: it cannot be exported yet (train with --preprocess none)")
    if run.encoder.uses_context:
        raise ValueError(f"{run_dir} uses patient-context features, which need the patient's other images: not exported")
    return run


def _endpoints(tf: Any, run: Any) -> tuple[Any, Any]:
    """``(serve, serve_lite)``: one image and its metadata → calibrated and raw probability, in the graph (crop, resize,
    metadata encoding, test-time views, calibrator); ``serve_lite`` takes a resized image and numeric fields."""
    from ..pipeline.feeds import crop_resize_tensor

    cfg, enc, model, calibrator = run.train_config, run.encoder, run.model, run.calibrator
    size, tta = cfg.data.image_size, int(cfg.data.tta)

    def views_raw(img, feed):
        views = []
        for v in range(tta):  # the dihedral views of transforms.dihedral
            x = tf.image.rot90(img, k=v % 4)
            views.append(tf.reverse(x, axis=[2]) if v >= 4 else x)
        return tf.add_n([tf.reshape(model({**feed, "image": x}, training=False), (-1,)) for x in views]) / tta

    def serve(image, age, sex, site, width, height):
        feed: dict[str, Any] = {}
        if cfg.uses_meta:
            feed["meta"] = _encode_meta(tf, enc, age, sex, site, width, height)
        if cfg.uses_images:
            raw = views_raw(tf.cast(crop_resize_tensor(image, size), tf.float32)[None], feed)
        else:
            raw = tf.reshape(model(feed, training=False), (-1,))
        raw = tf.reshape(tf.cast(raw, tf.float32), ())
        return {"probability": tf.reshape(_calibrate(tf, calibrator, raw[None]), ()), "raw_probability": raw}

    def serve_lite(image, fields):
        feed: dict[str, Any] = {}
        if cfg.uses_meta:
            feed["meta"] = _encode_meta_numeric(tf, enc, fields)
        if cfg.uses_images:
            raw = views_raw(tf.cast(image, tf.float32), feed)
        else:
            raw = tf.reshape(model(feed, training=False), (-1,))
        raw = tf.cast(raw, tf.float32)
        return {"probability": _calibrate(tf, calibrator, raw), "raw_probability": raw}

    return serve, serve_lite


def _signature(run: Any, run_dir: Path, fmt: str) -> dict[str, Any]:
    """``signature.json``: the inputs, outputs, threshold, prevalence and calibrator of an export in ``fmt``."""
    cfg, calibrator, size, tta = run.train_config, run.calibrator, int(run.train_config.image_size), int(run.train_config.tta)
    signature = {
        "format": "TensorFlow SavedModel; load with tf.saved_model.load(DIR/saved_model) and call .serve(...)",
        "inputs": {
            "image": "uint8 (H, W, 3) RGB pixels of one image, any size (centre-cropped to a square and resized inside "
                     f"to {size} px)",
            "age": "float32 approximate age in years; NaN when unknown",
            "sex": f"string, one of {', '.join(SEX_CATEGORIES)}; anything else (or empty) is unknown",
            "site": f"string, one of {', '.join(SITE_CATEGORIES)}; anything else (or empty) is unknown",
            "width": "float32 ORIGINAL image width in px (only runs with the study's size features use it); NaN if unknown",
            "height": "float32 ORIGINAL image height in px; NaN if unknown",
        },
        "outputs": {"probability": f"calibrated melanoma probability ({calibrator.label}), right at prevalence "
                                   f"{run.prevalence}", "raw_probability": "the network's own output"},
        "threshold": run.threshold, "threshold_rule": run.config.get("threshold_rule"),
        "prevalence": run.prevalence, "calibration": calibrator.to_dict(), "test_time_augmentation_views": tta,
        "image_size": size, "kind": cfg.kind, "features": cfg.data.features, "backbone": cfg.backbone or "cnn",
        "run": str(Path(run_dir).name),
        "other prevalence": "p' = p·(π'/π) / (p·(π'/π) + (1 − p)·(1 − π')/(1 − π)), π the prevalence above (prior shift)",
    }
    if fmt != "saved_model":
        signature["format"] = ("LiteRT/TFLite flatbuffer (model.tflite" + (", int8 dynamic-range weights" if fmt == "tflite_int8"
                               else "") + "); signature serve_lite" if fmt.startswith("tflite") else
                               f"ONNX (model.onnx, opset {ONNX_OPSET}; the serve_lite graph): run with onnxruntime."
                               "InferenceSession(DIR/model.onnx).run(None, {'image': ..., 'fields': ...})")
        signature["inputs"] = {
            "image": f"uint8 (1, {size}, {size}, 3) RGB: the image centre-cropped to a square and resized to {size} px "
                     "with area interpolation (antialiased) by the caller",
            "fields": f"float32 (1, {len(LITE_FIELDS)}): {', '.join(LITE_FIELDS)}; age in years, sex_code the index in "
                      f"{list(SEX_CATEGORIES)}, site_code the index in {list(SITE_CATEGORIES)} (-1: unknown), width/height "
                      "the ORIGINAL size; NaN for a missing number",
        }
    return signature


def export_run(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], fmt: str = "saved_model",
               overwrite: bool = False) -> Path:
    """Write ``run_dir``'s model with its preprocessing, metadata encoding and calibrator as a SavedModel in
    ``out_dir`` (written to a temporary folder, then moved into place), with ``signature.json``. Returns ``out_dir``."""
    import keras
    import tensorflow as tf

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    run = _exportable_run(run_dir, out_dir, fmt, overwrite)
    size = int(run.train_config.image_size)
    serve, serve_lite = _endpoints(tf, run)
    spec = [tf.TensorSpec((None, None, 3), tf.uint8, name="image"), tf.TensorSpec((), tf.float32, name="age"),
            tf.TensorSpec((), tf.string, name="sex"), tf.TensorSpec((), tf.string, name="site"),
            tf.TensorSpec((), tf.float32, name="width"), tf.TensorSpec((), tf.float32, name="height")]
    archive = keras.export.ExportArchive()
    archive.track(run.model)
    archive.add_endpoint(name="serve", fn=serve, input_signature=spec)
    lite_spec = [tf.TensorSpec((1, size, size, 3), tf.uint8, name="image"),
                 tf.TensorSpec((1, len(LITE_FIELDS)), tf.float32, name="fields")]
    archive.add_endpoint(name="serve_lite", fn=serve_lite, input_signature=lite_spec)
    with atomic_folder(out_dir, "export", overwrite, legacy=_legacy_export) as tmp:
        archive.write_out(str(tmp / "saved_model"), verbose=False)
        if fmt.startswith("tflite"):
            converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp / "saved_model"), signature_keys=["serve_lite"])
            if fmt == "tflite_int8":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic-range int8 weights
            (tmp / "model.tflite").write_bytes(converter.convert())
            shutil.rmtree(tmp / "saved_model")
        if fmt == "onnx":
            _to_onnx(tf, tmp / "saved_model", lite_spec, tmp / "model.onnx")
            shutil.rmtree(tmp / "saved_model")
        (tmp / "signature.json").write_text(json.dumps(_signature(run, run_dir, fmt), indent=2))
    return out_dir
