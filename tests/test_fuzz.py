"""Property-based tests of the boundaries (Hypothesis): any text as a metadata CSV, any bytes as an image file, any
YAML as a parameter file, any JSON as a run record. Each either loads or fails with the package's one error naming
the file, never another exception. ``make test`` runs a bounded number of examples (profile ``ci``); ``make fuzz``
many more (profile ``fuzz``)."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

COLUMNS = ["image_name", "patient_id", "sex", "age_approx", "anatom_site_general_challenge", "diagnosis",
           "benign_malignant", "target", "width", "height", "tfrecord", "source_copy"]
CELLS = st.one_of(st.text(max_size=12), st.integers(-5, 200).map(str), st.floats(allow_nan=True).map(str),
                  st.sampled_from(["", "nan", "NA", "male", "female", "torso", "melanoma", "0", "1", "ISIC_1", "ISIC_1",
                                   "\"", "a,b", "=1+1", "../x", "😀", "\r", "\x00"]))


@st.composite
def csv_texts(draw) -> str:
    """CSV-like text: a header of real and odd column names, rows of odd cells; or any text at all."""
    if draw(st.booleans()):
        return draw(st.text(max_size=200))
    header = draw(st.lists(st.sampled_from([*COLUMNS, "", "x", "image_name"]), min_size=1, max_size=10))
    rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=len(header) + 2), max_size=8))
    out = io.StringIO()
    out.write(",".join(header) + "\n")
    for row in rows:
        out.write(",".join(c if "," not in c else f'"{c}"' for c in row) + "\n")
    return out.getvalue()


def _file(data: bytes | str, suffix: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix="fuzz-"))
    path = d / f"input{suffix}"
    path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return path


@given(csv_texts())
def test_any_text_as_a_metadata_csv_loads_or_is_one_data_error_naming_the_file(text: str) -> None:
    from melanoma_utils.data.isic import DataError, load_metadata

    path = _file(text, ".csv")
    try:
        ds = load_metadata(path)
    except DataError as exc:
        assert str(path) in str(exc), exc
    else:
        assert {"image_name", "target"} <= set(ds.frame.columns)
        assert ds.frame["target"].isin([0, 1]).all()


def _valid_image(kind: str) -> bytes:
    import cv2

    img = np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    return cv2.imencode(kind, img)[1].tobytes()


@st.composite
def image_bytes(draw) -> bytes:
    """A valid JPEG or PNG with bytes flipped, cut or inserted; or any bytes."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=300))
    data = bytearray(_valid_image(draw(st.sampled_from([".jpg", ".png"]))))
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@given(image_bytes())
def test_any_bytes_as_an_image_file_decode_or_are_that_rows_error(data: bytes) -> None:
    from melanoma_utils.data.imagefiles import check_image_file
    from melanoma_utils.pipeline.feeds import load_image_array

    path = _file(data, ".jpg")
    reason = check_image_file(path)
    if reason is None:  # what the boundary lets through, the decoder reads
        arr = load_image_array([str(path)], 16)
        assert arr.shape == (1, 16, 16, 3) and arr.dtype == np.uint8
    else:
        assert isinstance(reason, str) and reason


@given(st.one_of(st.text(max_size=200),
                 st.dictionaries(st.sampled_from(["seed", "cv_folds", "cell_timeout", "report_dir", "synthetic",
                                                  "preset", "train_overrides", "n_boot", "bogus"]),
                                 st.one_of(st.integers(-3, 10), st.text(max_size=8), st.booleans(), st.none(),
                                           st.dictionaries(st.text(max_size=6), st.integers(0, 3), max_size=2)),
                                 max_size=5).map(lambda d: json.dumps(d))))
def test_any_yaml_as_a_parameter_file_is_read_whole_or_one_error_naming_the_file(text: str) -> None:
    from melanoma_utils.cli.reproduce import check_params, read_params

    path = _file(text, ".yaml")
    try:
        params = read_params(path)
        check_params(params, path, notebooks=["01_eda"])
    except ValueError as exc:
        assert str(path) in str(exc), exc


@given(st.one_of(st.text(max_size=100), st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(
        ["format", "files", "model.keras", "bytes", "sha256", "x"]), inner, max_size=3)), max_leaves=8).map(json.dumps)))
def test_any_run_record_is_read_as_a_list_of_named_problems(text: str) -> None:
    from melanoma_utils.runs.runfolder import record_problems

    path = _file(text, ".json")
    folder = path.parent
    (folder / "model.keras").write_bytes(b"x")
    path.rename(folder / "record.json")
    problems = record_problems(folder)
    assert isinstance(problems, list) and all(isinstance(p, str) and p for p in problems)


def _png_with(change) -> bytes:
    data = bytearray(_valid_image(".png"))
    change(data)
    return bytes(data)


def test_what_the_fuzzer_found_stays_fixed(tmp_path: Path) -> None:
    """Inputs the fuzzer found on 2026-12-07, kept as plain cases so that they stay fixed: a PNG whose IDAT length
    byte is damaged (Pillow decoded it, OpenCV and TensorFlow refuse it), a cut PNG, YAML ``?`` (a mapping whose key
    is None), a run record whose file entries are null."""
    from melanoma_utils.cli.reproduce import read_params
    from melanoma_utils.data.imagefiles import check_image_file
    from melanoma_utils.runs.runfolder import record_problems

    def idat_length(d: bytearray) -> None:
        i = bytes(d).index(b"IDAT") - 4
        d[i] = 1

    for name, data in (("idat.png", _png_with(idat_length)), ("cut.png", _valid_image(".png")[:-20])):
        (tmp_path / name).write_bytes(data)
        assert check_image_file(tmp_path / name) is not None, name
    (tmp_path / "q.yaml").write_text("?")
    with pytest.raises(ValueError, match="q.yaml: parameter names must be non-empty text"):
        read_params(tmp_path / "q.yaml")
    run = tmp_path / "run"
    run.mkdir()
    (run / "record.json").write_text('{"files": {"": null, "model.keras": null}}')
    assert record_problems(run) == ["record.json (entry '' is not a file record: not written by this package)",
                                    "record.json (entry 'model.keras' is not a file record: not written by this package)"]
