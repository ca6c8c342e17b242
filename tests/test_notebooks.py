"""Execute the notebooks with papermill on the SYNTHETIC demo data (slow; run by `make test` and CI)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from melanoma_utils import config
from melanoma_utils.cli.reproduce import read_params, reproduce
from melanoma_utils.data.demo import make_demo_dataset, make_external_demo


@pytest.fixture(scope="module")
def demo_params(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repro")
    csv = make_demo_dataset(root / "synthetic-demo", n_images=240, image_size=64, seed=0)
    ext = make_external_demo(root / "synthetic-demo-ham10000", n_images=120, image_size=64, seed=1)
    params = read_params(config.PARAMS_DIR / "demo.yaml")
    params.update(metadata_csv=str(csv), images_csv=str(csv), report_dir=str(root / "report"), image_sample=40,
                  external_dirs=[str(ext)])
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
    if notebook == "03_train_evaluate":  # the demo data have two copies: the within-copy endpoints and the audit run
        import pandas as pd

        paired = pd.read_csv(report / "ablation_paired.csv")
        assert {"all", "melanoma_vs_nevus", "within_copy_a"} <= set(paired["subset"]) and paired["p_holm"].notna().all()
        audit = pd.read_csv(report / "shortcut_audit.csv")
        assert {"signal", "predicts", "roc_auc", "ci_low", "ci_high", "n"} <= set(audit.columns)
        assert "source_copy" in set(audit["predicts"]) and audit["signal"].str.contains("ITA").any()
        # the locked test part: drawn once, and no selection saw it (no fold, no out-of-fold prediction)
        locked = set(pd.read_csv(report / "locked_test.csv", dtype=str)["image_name"])
        assert locked and not locked & set(pd.read_csv(report / "folds.csv", dtype=str)["image_name"])
        assert not locked & set(pd.read_csv(report / "runs" / "ablation" / "oof.csv", dtype=str)["image_name"])
        selection = pd.read_csv(report / "table_source_weighting_selection.csv")
        assert set(selection["verdict"]) <= {"base", "wins", "does not win"} and (selection["verdict"] == "base").any()
    if notebook == "06_validate":  # the locked part is read once, at the end, by the chosen default retrained
        import pandas as pd

        final = pd.read_csv(report / "table_locked_test.csv").set_index("endpoint")
        assert final.loc["all locked patients", "n"] > 0 and "within copy a" in final.index


def test_failing_notebook_stops_the_chain(tmp_path: Path, monkeypatch, capsys) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    for name, src in (("a", "raise RuntimeError('boom in cell')"), ("b", "x = 1")):
        params_cell = new_code_cell("report_dir = ''")
        params_cell.metadata["tags"] = ["parameters"]
        nb = new_notebook(cells=[params_cell, new_code_cell(src)])
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
    marker = (out / "RENDERING_INCOMPLETE.txt").read_text()  # the folder says it is a mixture until finished
    assert "incomplete: a failed or was stopped" in marker and "finished: none" in marker
    assert reproduce(params, ["b"]) == 0 and not (out / "RENDERING_INCOMPLETE.txt").exists()


def test_a_rerun_skips_up_to_date_reports_and_reruns_from_the_first_changed_notebook(tmp_path: Path, monkeypatch,
                                                                                      capsys) -> None:
    """A killed `make reproduce` re-run continues where it stopped: notebooks whose notebook, parameters, code and
    data files are unchanged are skipped; from the first one that changed, every later one runs again."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from melanoma_utils.cli import app

    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    data = tmp_path / "d.csv"
    data.write_text("x\n1\n")
    for name in ("01_a", "02_b", "03_c"):
        params_cell = new_code_cell("report_dir = ''\nmetadata_csv = ''\nvalue = 1")
        params_cell.metadata["tags"] = ["parameters"]
        nb = new_notebook(cells=[params_cell, new_code_cell("print(value)")])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, nb_dir / f"{name}.ipynb")
    monkeypatch.setattr(config, "NOTEBOOKS_DIR", nb_dir)
    monkeypatch.setattr(config, "NOTEBOOKS", ("01_a", "02_b", "03_c"))
    params = tmp_path / "p.yaml"
    out = tmp_path / "out"
    params.write_text(yaml.safe_dump({"report_dir": str(out), "metadata_csv": str(data), "value": 1}))
    assert reproduce(params, ["01_a", "02_b", "03_c"]) == 0
    first = {n: (out / f"{n}.ipynb").stat().st_mtime_ns for n in ("01_a", "02_b", "03_c")}
    capsys.readouterr()
    assert reproduce(params, ["01_a", "02_b", "03_c"]) == 0  # nothing changed: nothing runs
    assert capsys.readouterr().out.count("report up to date") == 3
    assert {n: (out / f"{n}.ipynb").stat().st_mtime_ns for n in first} == first
    nb = nbformat.read(nb_dir / "02_b.ipynb", as_version=4)  # an edit to the second notebook
    nb.cells[1].source = "print(value + 1)"
    nbformat.write(nb, nb_dir / "02_b.ipynb")
    assert reproduce(params, ["01_a", "02_b", "03_c"]) == 0
    assert (out / "01_a.ipynb").stat().st_mtime_ns == first["01_a"]
    assert all((out / f"{n}.ipynb").stat().st_mtime_ns != first[n] for n in ("02_b", "03_c"))  # and all after it
    data.write_text("x\n2\n")  # the data file named by a parameter changed: everything runs again
    capsys.readouterr()
    assert reproduce(params, ["01_a", "02_b", "03_c"]) == 0 and "up to date" not in capsys.readouterr().out
    assert reproduce(params, ["03_c"], force=True) == 0 and "up to date" not in capsys.readouterr().out
    # the command line: numbers for names, --from, and an unknown one named with the choices
    parser = app.build_parser()
    assert parser.parse_args(["reproduce", "--only", "02"]).only == ["02_b"]
    assert parser.parse_args(["reproduce", "--from", "02_b"]).start == "02_b"
    with pytest.raises(SystemExit):
        parser.parse_args(["reproduce", "--only", "07"])
    assert "is not one notebook; choose from 01_a, 02_b, 03_c" in capsys.readouterr().err


def test_missing_params_file_lists_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="parameter file not found .*demo"):
        read_params(tmp_path / "nope.yaml")


@pytest.mark.parametrize("notebook", config.NOTEBOOKS)
def test_notebook_pair_in_sync(notebook: str) -> None:
    """Each notebook is a jupytext pair: notebooks/NAME.py (py:percent) and notebooks/NAME.ipynb hold the same cells."""
    import jupytext

    ipynb = jupytext.read(config.NOTEBOOKS_DIR / f"{notebook}.ipynb")
    py = jupytext.read(config.NOTEBOOKS_DIR / f"{notebook}.py")
    assert ipynb.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent", f"{notebook}.ipynb is not paired"

    def cells(nb):
        return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", []))) for c in nb.cells]

    a, b = cells(ipynb), cells(py)
    diff = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)) if len(a) != len(b) else None)
    assert diff is None, (f"notebooks/{notebook}.py and .ipynb differ from cell {diff} on: run `make notebooks` "
                          "(jupytext --sync) after editing one side outside JupyterLab")


@pytest.mark.parametrize("notebook", config.NOTEBOOKS)
def test_notebook_has_one_parameters_cell_of_literals(notebook: str) -> None:
    import ast

    import jupytext

    nb = jupytext.read(config.NOTEBOOKS_DIR / f"{notebook}.py")
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for node in ast.parse(tagged[0].source).body:  # papermill can only override literals
        assert isinstance(node, ast.Assign), ast.dump(node)
        ast.literal_eval(node.value)


def test_unknown_parameter_is_an_error_naming_it(tmp_path: Path) -> None:
    from melanoma_utils.cli.reproduce import check_params

    params = read_params(config.PARAMS_DIR / "demo.yaml")
    for shipped in sorted(config.PARAMS_DIR.glob("*.yaml")):  # every shipped key is declared, with its type
        check_params(read_params(shipped), shipped.name)
    with pytest.raises(ValueError, match="unknown parameter.*imag_size"):
        check_params({**params, "imag_size": 64}, "typo.yaml")
    bad = tmp_path / "typo.yaml"
    bad.write_text(yaml.safe_dump({**params, "epocs": 3}))
    with pytest.raises(ValueError, match="typo.yaml: unknown parameter.*epocs"):
        reproduce(bad, ["01_eda"])
    with pytest.raises(ValueError, match=r"typo.yaml: parameter cv_folds must be int \(like the notebook default 3\); got 'five'"):
        check_params({**params, "cv_folds": "five"}, "typo.yaml")
    with pytest.raises(ValueError, match="parameter audit must be bool"):
        check_params({**params, "audit": 1}, "typo.yaml")
    with pytest.raises(ValueError, match="unknown parameter.*augment"):  # a TrainConfig field goes in train_overrides
        check_params({**params, "augment": False}, "typo.yaml")
    check_params({**params, "compare_learning_rate": 1, "prevalence": 0.05}, "ok.yaml")  # an int where a float is asked
    bad.write_text("seed: 0\nbackbones: [cnn,\n  image_size: 3\n")
    with pytest.raises(ValueError, match=r"typo.yaml: line \d+, column \d+ not valid YAML"):
        read_params(bad)


def test_clean_outputs_removes_machine_paths_and_log_lines() -> None:
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from melanoma_utils.cli.reproduce import clean_outputs

    root = Path("/home/someone/melanoma")
    cell = new_code_cell("x", outputs=[
        new_output("stream", name="stderr", text="WARNING: All log messages before absl::InitializeLog() is called are "
                   "written to STDERR\nI0000 00:00:1795969520.374343   21458 port.cc:153] oneDNN custom operations are on.\n"),
        new_output("stream", name="stdout", text="resuming the interrupted run staged in /home/someone/melanoma/reports/"
                   "isic2020/runs/x\n[cv] repeat 0 fold 1 · fusion: ROC AUC 0.812\nkept line\n"),
        new_output("stream", name="stderr", text="\n"),  # would render as an empty red box
        new_output("execute_result", data={"text/plain": "PosixPath('/tmp/render/reports/isic2020/figures/f.png')"},
                   execution_count=1),
    ])
    nb = new_notebook(cells=[cell], metadata={"papermill": {"input_path": "/tmp/render/notebooks/01_eda.ipynb"}})
    assert clean_outputs(nb, root) == 6  # 3 outputs rewritten, the papermill path, 2 streams left empty and removed
    assert nb.metadata["papermill"]["input_path"] == "notebooks/01_eda.ipynb"
    outs = nb.cells[0]["outputs"]
    assert len(outs) == 2  # the stream of log lines only is gone
    assert outs[0]["text"] == "resuming the interrupted run staged in reports/isic2020/runs/x\nkept line\n"
    assert outs[1]["data"]["text/plain"] == "'reports/isic2020/figures/f.png'"
    assert clean_outputs(nb, root) == 0


def test_clean_outputs_removes_progress_bars_warnings_and_addresses() -> None:
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from melanoma_utils.cli.reproduce import clean_outputs

    cell = new_code_cell("x", outputs=[
        new_output("stream", name="stderr", text="embedding:  35%|###5      | 3072/8655 [06:10<09:28,  9.82img/s]\r"
                   "embedding: 100%|##########| 8655/8655 [18:37<00:00]\nkept\n"),
        new_output("stream", name="stderr", text="WARNING:tensorflow:5 out of the last 5 calls to <function f at "
                   "0x7f3a2c1b0e50> triggered tf.function retracing.\nDownloading data from https://x/y.h5\n"
                   "271/271 [==============================] - 3s 11ms/step\n"),
        new_output("execute_result", data={"text/plain": "<pandas.io.formats.style.Styler at 0x7f2c8d1e9a90>"},
                   execution_count=1),
        new_output("stream", name="stdout", text="not run (URL fetch failure on https://h/w.h5: None -- [Errno -2] "
                   "Name or service not known))\n"),
    ])
    nb = new_notebook(cells=[cell])
    clean_outputs(nb)
    text = str(nb.cells[0]["outputs"])
    for planted in ("%|", "WARNING:", " at 0x", "Downloading data from", "Errno", "[====="):
        assert planted not in text, planted
    assert "kept" in text and "<pandas.io.formats.style.Styler>" in text and "no network access to https://h/w.h5" in text


#: What no committed notebook may show (issue: output hygiene): progress bars, library warnings, memory addresses,
#: path reprs, download notices, socket errors, tracebacks.
NOISE_IN_REPORTS = (r"\d+%\||WARNING:|\bat 0x[0-9a-f]+|PosixPath\(|Downloading data from|Errno|Traceback \(most recent|"
                    r"^\[cv\] ")


def test_committed_notebooks_hold_no_progress_bars_warnings_or_tracebacks() -> None:
    import json
    import re

    bad = re.compile(NOISE_IN_REPORTS, re.M)
    hits = []
    for path in sorted((config.PROJ_ROOT / "reports" / "isic2020").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        for k, cell in enumerate(nb["cells"]):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    hits.append(f"{path.name} cell {k}: an error output")
                if out.get("output_type") == "stream" and not "".join(out.get("text", "")).strip():
                    hits.append(f"{path.name} cell {k}: an empty {out.get('name')} output (an empty box in HTML)")
                text = "".join(out.get("text", "")) + "".join("".join(v) if isinstance(v, list) else str(v)
                                                             for key, v in (out.get("data") or {}).items()
                                                             if key.startswith("text/"))
                hits += [f"{path.name} cell {k}: {m.group(0)!r}" for m in bad.finditer(text)]
    assert hits == [], hits[:10]


def test_committed_reports_hold_no_machine_paths_or_log_lines() -> None:
    import re

    bad = re.compile(r"/work/|/root/|/home/|/tmp/|absl::InitializeLog|oneDNN custom operations")
    reports = sorted((config.PROJ_ROOT / "reports" / "isic2020").glob("*.ipynb")) + sorted(
        (config.PROJ_ROOT / "reports" / "isic2020").glob("*.html"))
    assert reports
    hits = [f"{p.name}: {m.group(0)}" for p in reports for m in [bad.search(p.read_text())] if m]
    assert hits == []


#: The most a full re-render of the real-data reports may add to the repository (issue: repository weight).
MAX_RENDER_MB = 15.0


def test_a_full_re_render_adds_at_most_15_mb_to_the_repository() -> None:
    """A re-render rewrites at most every committed report file; git stores each new version zlib-compressed, so the
    compressed size of today's files bounds what the next rendering adds (measured, not assumed: PNGs and the base64
    images inside the notebooks barely compress)."""
    import subprocess
    import zlib

    listed = subprocess.run(["git", "-C", str(config.PROJ_ROOT), "ls-files", "reports/isic2020"], capture_output=True,
                            text=True, check=True).stdout.split()
    assert listed, "no committed real-data reports"
    assert not [p for p in listed if p.endswith(".html")], "HTML is built on demand (make html), never committed"
    total = sum(len(zlib.compress((config.PROJ_ROOT / p).read_bytes(), 6)) for p in listed if (config.PROJ_ROOT / p).is_file())
    assert total / 1e6 <= MAX_RENDER_MB, f"{total / 1e6:.1f} MB compressed; a re-render would add that much"


def test_committed_csvs_have_no_blank_or_unnamed_index_columns() -> None:
    bad = []
    for path in sorted((config.PROJ_ROOT / "reports" / "isic2020").glob("*.csv")):
        header = path.read_text().split("\n", 1)[0]
        if header.startswith(",") or "Unnamed:" in header:
            bad.append(path.name)
    assert bad == []


def test_every_rendered_notebook_names_the_commit_of_its_code() -> None:
    import json
    import re

    missing = []
    for path in sorted((config.PROJ_ROOT / "reports" / "isic2020").glob("*.ipynb")):
        text = json.dumps(json.loads(path.read_text())["cells"][-1].get("outputs", []))
        found = re.search(r"git commit\s+([0-9a-f]{40})(\s\+ uncommitted changes)?", text)
        if not found or found.group(2):
            missing.append(path.name)
    assert missing == [], "rendered without a clean commit recorded: " + ", ".join(missing)


def test_no_two_notebooks_write_the_same_table_or_figure() -> None:
    """Each report file has one author: a name two notebooks wrote would hold whichever ran last (notebook 01's
    all-images copy table was once overwritten by notebook 03's, on the patients outside the locked part)."""
    import re
    from collections import defaultdict

    pattern = re.compile(r'report\.(?:table|figure)\((?:[^()]|\([^()]*\))*?,\s*"([A-Za-z0-9_]+)"')
    writers = defaultdict(set)
    for path in sorted((Path(__file__).parent.parent / "notebooks").glob("0*.py")):
        for name in pattern.findall(path.read_text()):
            writers[name].add(path.stem)
    assert len(writers) > 20  # the pattern finds the notebooks' outputs
    shared = {name: sorted(nbs) for name, nbs in writers.items() if len(nbs) > 1}
    assert not shared, shared
