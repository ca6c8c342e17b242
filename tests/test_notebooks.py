"""Execute the notebooks with papermill on the SYNTHETIC demo data (slow; run by `make test` and CI)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from melanoma_utils import config
from melanoma_utils.demo import make_demo_dataset
from melanoma_utils.reproduce import read_params, reproduce


@pytest.fixture(scope="module")
def demo_params(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repro")
    csv = make_demo_dataset(root / "synthetic-demo", n_images=240, image_size=64, seed=0)
    params = read_params(config.PARAMS_DIR / "demo.yaml")
    params.update(metadata_csv=str(csv), images_csv=str(csv), report_dir=str(root / "report"), image_sample=40)
    params.update({k: v for k, v in read_params(config.PARAMS_DIR / "test.yaml").items()})
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("notebook", config.NOTEBOOKS)
def test_notebook_runs_on_demo_data(demo_params: Path, notebook: str) -> None:
    assert reproduce(demo_params, [notebook]) == 0
    report = Path(read_params(demo_params)["report_dir"])
    assert (report / f"{notebook}.ipynb").is_file() and (report / f"{notebook}.html").is_file()
    assert not list(report.glob(".*tmp*")) and not (report / f"{notebook}.failed.ipynb").exists()
    assert "SYNTHETIC" in (report / f"{notebook}.html").read_text()


def test_failing_notebook_stops_the_chain(tmp_path: Path, monkeypatch, capsys) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    for name, src in (("a", "raise RuntimeError('boom in cell')"), ("b", "x = 1")):
        nb = new_notebook(cells=[new_code_cell(src)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, nb_dir / f"{name}.ipynb")
    monkeypatch.setattr(config, "NOTEBOOKS_DIR", nb_dir)
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"report_dir": str(tmp_path / "out")}))
    assert reproduce(params, ["a", "b"]) == 1
    err = capsys.readouterr().err
    assert "a FAILED" in err and "boom in cell" in err
    out = tmp_path / "out"
    assert not (out / "a.ipynb").exists() and (out / "a.failed.ipynb").exists() and not (out / "b.ipynb").exists()


def test_missing_params_file_lists_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="parameter file not found .*demo"):
        read_params(tmp_path / "nope.yaml")
