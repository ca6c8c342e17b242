"""Trust no input, round 3: nothing runs from a weights file (a payload planted in each pickled part of a legacy
checkpoint), CSV cells a spreadsheet would execute are neutralised and still read back."""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from melanoma_utils.models.torch_legacy import WeightsFileError, read_torch_legacy


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears if anything runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class _FloatStorage:  # pickled by reference, renamed to torch.FloatStorage (the storage type a real checkpoint names)
    pass


_STORAGE = object()  # the one storage the built checkpoint's tensor refers to (by persistent id "0")


def _checkpoint(parts: dict[str, object]) -> bytes:
    """A PyTorch legacy checkpoint of one 2-element float tensor, with ``parts`` replacing any of its pickled parts
    (``magic``, ``protocol``, ``sys_info``, ``state``, ``keys``)."""
    buf = io.BytesIO()
    for name, default in (("magic", 0x1950A86A20F9469CFC6C), ("protocol", 1001), ("sys_info", {"little_endian": True})):
        pickle.dump(parts.get(name, default), buf, protocol=2)
    if "state" in parts:
        pickle.dump(parts["state"], buf, protocol=2)
    else:  # the state dict with a tensor rebuilt from persistent storage "0"
        buf.write(_state_pickle())
    pickle.dump(parts.get("keys", ["0"]), buf, protocol=2)
    buf.write(np.int64(2).tobytes() + np.array([1.5, -2.0], "<f4").tobytes())
    return buf.getvalue()


def _state_pickle() -> bytes:
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", _FloatStorage, "0", "cpu", 2) if obj is _STORAGE else None

        def reducer_override(self, obj):
            if isinstance(obj, _Tensor):
                return (_rebuild, (_STORAGE, 0, (2,), (1,)))
            return NotImplemented

    out = io.BytesIO()
    P(out, protocol=2).dump(OrderedDict(w=_Tensor()))
    raw = out.getvalue()
    # name the classes as a real checkpoint does (torch._utils._rebuild_tensor_v2, torch.FloatStorage)
    raw = raw.replace(f"{__name__}\n_rebuild\n".encode(), b"torch._utils\n_rebuild_tensor_v2\n")
    return raw.replace(f"{__name__}\n_FloatStorage\n".encode(), b"torch\nFloatStorage\n")


class _Tensor:
    pass


def _rebuild(*args):  # stands in for torch._utils._rebuild_tensor_v2 while pickling
    return args


def test_a_clean_built_checkpoint_reads() -> None:
    state = read_torch_legacy_bytes(_checkpoint({}))
    np.testing.assert_array_equal(state["w"], np.array([1.5, -2.0], np.float32))


def read_torch_legacy_bytes(data: bytes, tmp: Path | None = None) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "w.pth"
        path.write_bytes(data)
        return read_torch_legacy(path)


@pytest.mark.parametrize("part", ["magic", "protocol", "sys_info", "state", "keys"])
def test_a_payload_in_any_pickled_part_of_a_weights_file_never_runs(part: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    payload = _Payload(marker)
    value = {"state": OrderedDict(w=payload), "sys_info": {"little_endian": True, "x": payload}}.get(part, payload)
    path = tmp_path / f"payload-in-{part}.pth"
    path.write_bytes(_checkpoint({part: value}))
    with pytest.raises(WeightsFileError, match=f"payload-in-{part}.pth"):
        read_torch_legacy(path)
    assert not marker.exists(), f"code ran from the {part} part of a weights file"


FORMULAS = ["=HYPERLINK(\"http://x\",\"y\")1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tTAB", "\rCR"]


def test_cells_a_spreadsheet_would_execute_are_written_as_text_and_read_back(tmp_path: Path) -> None:
    import pandas as pd

    from melanoma_utils.data.csvfiles import read_csv, write_csv

    frame = pd.DataFrame({"image_name": [*FORMULAS, "ISIC_1", "it's fine", "'=already quoted", "'plain"],
                          "probability": [-0.5, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]})
    path = write_csv(frame, tmp_path / "p.csv")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)  # what a spreadsheet sees
    assert all(v.startswith("'") for v in raw["image_name"][:6]), raw["image_name"].tolist()
    assert raw["image_name"][6:8].tolist() == ["ISIC_1", "it's fine"]
    assert raw["probability"][0] == "-0.5"  # a number stays a number
    back = read_csv(path)  # the package reads the original names
    assert back["image_name"].tolist() == frame["image_name"].tolist()


@pytest.mark.slow
def test_predict_writes_a_formula_image_name_as_text_and_evaluate_joins_it_back(tmp_path: Path) -> None:
    import pandas as pd

    from conftest import write_dataset
    from melanoma_utils import cli

    csv = write_dataset(tmp_path / "d", n=24, size=24)
    assert cli.main(["train", "--metadata", str(csv), "--out", str(tmp_path / "run"), "--model", "meta",
                     "--epochs", "1", "--verbose", "0"]) == 0
    meta = pd.read_csv(csv)
    bad = "=HYPERLINK(\"evil\",\"x\")1"
    (tmp_path / "d" / "train" / "IMG_0000.jpg").rename(tmp_path / "d" / "train" / f"{bad}.jpg")
    meta.loc[0, "image_name"] = bad
    new = tmp_path / "new.csv"
    meta.to_csv(new, index=False)
    out = tmp_path / "preds.csv"
    assert cli.main(["predict", "--run", str(tmp_path / "run"), "--metadata", str(new), "--out", str(out)]) == 0
    first = out.read_text().splitlines()[1]
    assert first.startswith("\"'=HYPERLINK") or first.startswith("'=HYPERLINK"), first  # text, not a formula
    assert cli.main(["evaluate", "--predictions", str(out), "--metadata", str(new), "--out", str(tmp_path / "rep")]) == 0


def test_a_bad_runner_key_is_refused_before_anything_is_written(tmp_path: Path, monkeypatch) -> None:
    from melanoma_utils import config
    from melanoma_utils.cli.reproduce import INCOMPLETE, reproduce

    params = tmp_path / "p.yaml"
    report = tmp_path / "report"
    params.write_text(f"report_dir: {report}\nsynthetic: true\ncell_timeout: \"abc\"\n")
    monkeypatch.setattr(config, "PROJ_ROOT", config.PROJ_ROOT)
    with pytest.raises(ValueError, match=r"p.yaml: cell_timeout must be a whole number of seconds > 0 .*'abc'"):
        reproduce(params, notebooks=["01_eda"])
    assert not (report / INCOMPLETE).exists() and not report.exists()  # nothing written


def test_an_unwritable_cache_names_the_variable_that_moves_it(monkeypatch, tmp_path: Path) -> None:
    import errno

    from melanoma_utils.cli.app import os_error_line

    monkeypatch.delenv("MELANOMA_UTILS_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "ro"))
    exc = OSError(errno.EROFS, "Read-only file system", str(tmp_path / "ro" / "melanoma_utils" / "embeddings" / "x.npy"))
    line = os_error_line(exc)
    assert "set MELANOMA_UTILS_CACHE to a folder you can write" in line and "--out" not in line
    other = os_error_line(OSError(errno.EROFS, "Read-only file system", str(tmp_path / "out" / "preds.csv")))
    assert "--out" in other and "MELANOMA_UTILS_CACHE" not in other


@pytest.mark.slow
def test_cli_output_has_no_tensorflow_startup_lines_and_one_line_per_epoch_in_a_log(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from conftest import write_dataset

    csv = write_dataset(tmp_path / "d", n=24, size=24)
    res = subprocess.run([sys.executable, "-m", "melanoma_utils", "train", "--metadata", str(csv), "--out",
                          str(tmp_path / "run"), "--preset", "test", "--kind", "image", "--epochs", "2"],
                         capture_output=True, text=True, env={**os.environ, "MELANOMA_UTILS_CACHE": str(tmp_path / "c")},
                         timeout=600)
    both = res.stdout + res.stderr
    assert res.returncode == 0, both[-2000:]
    for noise in ("absl::InitializeLog", "oneDNN custom operations", "cpu_feature_guard"):
        assert noise not in both
    assert "\x08" not in both and "━" not in both  # no per-batch progress bar with control codes
    epochs = [line for line in res.stdout.splitlines() if " - loss: " in line or "- auc:" in line]
    assert len(epochs) == 2, res.stdout


def test_a_run_folder_is_checked_against_its_record_before_use(tmp_path: Path, capsys) -> None:
    """A piece taken from another run (the issue's encoder.json of a paper run in a clinical run) is named before
    Keras builds anything; an added file is named too; a folder without a record loads with a one-line notice."""
    import shutil

    from conftest import write_dataset
    from melanoma_utils.data.isic import load_dataset
    from melanoma_utils.runs.run import Run, RunDamaged, TrainConfig
    from melanoma_utils.runs.training import train_run

    df = load_dataset(write_dataset(tmp_path / "d", n=24, size=24)).frame
    clinical = train_run(df, TrainConfig(kind="meta", epochs=1, verbose=0), tmp_path / "clinical").run_dir
    paper = train_run(df, TrainConfig(kind="meta", features="paper", epochs=1, verbose=0), tmp_path / "paper").run_dir
    record = (clinical / "record.json").read_text()
    assert '"model.keras"' in record and '"encoder.json"' in record and '"sha256"' in record
    Run.load(clinical)  # as written: loads
    mixed = tmp_path / "mixed"
    shutil.copytree(clinical, mixed)
    shutil.copy(paper / "encoder.json", mixed / "encoder.json")
    with pytest.raises(RunDamaged, match=r"mixed does not match its record.json: encoder.json \("):
        Run.load(mixed)
    added = tmp_path / "added"
    shutil.copytree(clinical, added)
    (added / "notes.txt").write_text("x")
    capsys.readouterr()
    Run.load(added)  # a file nothing reads: a notice, not damage
    assert "holds file(s) its record.json does not list (added later, not read): notes.txt" in capsys.readouterr().err
    escape = tmp_path / "escape"
    shutil.copytree(clinical, escape)
    (escape / "record.json").write_text('{"format": 1, "files": {"../clinical/model.keras": {"bytes": 1, "sha256": "x"}}}')
    with pytest.raises(RunDamaged, match=r"entry '../clinical/model.keras' is not a file record"):
        Run.load(escape)  # a record cannot make the check read outside the folder
    old = tmp_path / "old"
    shutil.copytree(clinical, old)
    (old / "record.json").unlink()
    capsys.readouterr()
    Run.load(old)
    Run.load(old)
    assert capsys.readouterr().err.count("has no record.json") == 1


@pytest.mark.slow
def test_two_predicts_into_one_new_file_end_with_one_result_and_one_refusal(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    import pandas as pd

    from conftest import write_dataset
    from melanoma_utils.data.isic import load_dataset
    from melanoma_utils.runs.run import TrainConfig
    from melanoma_utils.runs.training import train_run

    csv = write_dataset(tmp_path / "d", n=600, size=16)
    train_run(load_dataset(csv).frame.head(48), TrainConfig(kind="meta", epochs=1, verbose=0), tmp_path / "run")
    out = tmp_path / "preds.csv"
    cmd = [sys.executable, "-m", "melanoma_utils", "predict", "--run", str(tmp_path / "run"), "--metadata", str(csv),
           "--out", str(out)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}) for _ in range(2)]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    refused = next(err for rc, err in results if rc == 2)
    assert "preds.csv" in refused and ("another command meanwhile" in refused or "exists" in refused)
    assert len(pd.read_csv(out)) == 600  # one whole result, not a mix
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".preds")]  # no temporary file left


def test_model_card_escapes_values_that_come_from_user_data() -> None:
    from melanoma_utils.evaluation.modelcard import _source_weighting_lines, md

    evil = "a | b ![x](http://e/p.png) <script>alert(1)</script>\nnext"
    assert md("copy a") == "copy a"
    out = md(evil)
    assert "<script>" not in out and "\n" not in out and "](" not in out
    assert out.count("\\|") == 1 and "|" not in out.replace("\\|", "")
    line = _source_weighting_lines({"column": "clinic", "weighting": "sources",
                                    "groups": [{"group": evil, "rows": 3, "benign": 2, "malignant": 1,
                                                "malignant_share": 1 / 3}]})[0]
    assert "<script>" not in line and "\n" not in line


def test_an_exclusive_write_claims_the_name_where_hard_links_are_refused(tmp_path: Path, monkeypatch) -> None:
    import errno
    import os

    from melanoma_utils.atomic import atomic_write

    def no_links(*_):
        raise OSError(errno.EPERM, "Operation not permitted")  # what a FUSE or vfat mount says

    monkeypatch.setattr(os, "link", no_links)
    atomic_write(tmp_path / "a.csv", lambda tmp: tmp.write_text("first"), exclusive=True)
    assert (tmp_path / "a.csv").read_text() == "first"
    with pytest.raises(FileExistsError, match="a.csv was written by another command meanwhile"):
        atomic_write(tmp_path / "a.csv", lambda tmp: tmp.write_text("second"), exclusive=True)
    assert (tmp_path / "a.csv").read_text() == "first" and [p.name for p in tmp_path.iterdir()] == ["a.csv"]
