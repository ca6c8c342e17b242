"""The shared backbone store's sweep: what no run folder references is found (and deleted when asked); what a
published or staged run references, what was written a moment ago, and everything when a reference file is
unreadable, is kept."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from melanoma_utils.cli.app import main
from melanoma_utils.runs.runfolder import RunLayout
from melanoma_utils.runs.store import StoreSweepError, sweep_store

WEEK = 7 * 24 * 3600


def _file(path: Path, size: int, age: float = WEEK, digest: bool = True) -> Path:
    """A store file written ``age`` seconds ago (the command sweeps at the real time)."""
    mtime = time.time() - age
    path.write_bytes(b"x" * size)
    os.utime(path, (mtime, mtime))
    if digest:
        side = path.with_name(path.name + ".sha256")
        side.write_text("0" * 64 + "\n")
        os.utime(side, (mtime, mtime))
    return path


def _run(folder: Path, store: Path, config: str, *backbones: str) -> Path:
    """A run folder referencing ``config`` and ``backbones`` of ``store`` as save_shared writes them (relative paths)."""
    folder.mkdir(parents=True)
    rel = lambda name: os.path.relpath(store / name, folder)  # noqa: E731
    spec = {"format": 2, "config": {"sha256": "c", "file": rel(config)},
            "backbones": {f"backbone{'_2' * i}": {"sha256": "w", "file": rel(b)} for i, b in enumerate(backbones)}}
    (folder / RunLayout.MODEL_SHARED).write_text(json.dumps(spec))
    return folder


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    store = runs / RunLayout.SHARED_STORE
    store.mkdir(parents=True)
    _file(store / "w1.weights.h5", 1000)
    _file(store / "c1.config.json.gz", 10)
    _file(store / "c2.config.json.gz", 20)  # referenced only by a staged (running or killed) training
    _file(store / "w2.weights.h5", 3000)  # its runs were deleted
    _file(store / "w3.weights.h5", 500, age=60)  # written a minute ago: a training may be about to reference it
    _file(store / ".w4.weights.h5.tmp123", 700, digest=False)  # a killed write's leftover
    _file(store / "gone.weights.h5.sha256", 65, digest=False)  # a digest file whose store file is gone
    _run(runs / "ablation" / "fusion" / "fold0", store, "c1.config.json.gz", "w1.weights.h5")
    _run(runs / "ablation" / "fusion" / ".fold1.partial", store, "c2.config.json.gz", "w1.weights.h5")
    return runs


def _names(paths) -> set[str]:
    return {p.name for p in paths}


def test_the_sweep_lists_only_what_no_run_references_and_deletes_only_when_asked(runs: Path) -> None:
    store = runs / RunLayout.SHARED_STORE
    before = _names(store.iterdir())
    sweep = sweep_store(runs, now=time.time())
    assert sweep.run_folders == 2
    assert _names(sweep.unreferenced) == {"w2.weights.h5", "w2.weights.h5.sha256", ".w4.weights.h5.tmp123",
                                          "gone.weights.h5.sha256"}
    assert sweep.unreferenced_bytes == 3000 + 65 + 700 + 65
    assert _names(sweep.referenced) == {"w1.weights.h5", "w1.weights.h5.sha256", "c1.config.json.gz",
                                        "c1.config.json.gz.sha256", "c2.config.json.gz", "c2.config.json.gz.sha256"}
    assert _names(sweep.recent) == {"w3.weights.h5", "w3.weights.h5.sha256"}
    assert sweep.missing == () and not sweep.deleted
    assert _names(store.iterdir()) == before  # a listing deletes nothing

    done = sweep_store(runs, delete=True, now=time.time())
    assert _names(store.iterdir()) == before - _names(sweep.unreferenced)
    assert done.deleted and done.unreferenced_bytes == sweep.unreferenced_bytes
    assert sweep_store(runs, now=time.time()).unreferenced == ()  # nothing left to delete
    # once the age limit has passed, the recent file is unreferenced like any other
    assert _names(sweep_store(runs, now=time.time() + 2 * 3600).unreferenced) == {"w3.weights.h5", "w3.weights.h5.sha256"}


def test_a_deleted_run_frees_what_only_it_referenced(runs: Path) -> None:
    import shutil

    shutil.rmtree(runs / "ablation" / "fusion" / ".fold1.partial")
    assert "c2.config.json.gz" in _names(sweep_store(runs, now=time.time()).unreferenced)
    assert "w1.weights.h5" not in _names(sweep_store(runs, now=time.time()).unreferenced)  # fold0 still references it


def test_run_folders_behind_a_symbolic_link_count_and_a_link_loop_is_walked_once(runs: Path, tmp_path: Path) -> None:
    elsewhere = _run(tmp_path / "elsewhere" / "fold0", runs / RunLayout.SHARED_STORE, "c1.config.json.gz", "w2.weights.h5")
    (runs / "linked").symlink_to(elsewhere.parent, target_is_directory=True)
    (runs / "ablation" / "loop").symlink_to(runs / "ablation", target_is_directory=True)
    sweep = sweep_store(runs, delete=True, now=time.time())
    assert sweep.run_folders == 3  # fold0, the staged fold1 and the linked run, each once
    assert (runs / RunLayout.SHARED_STORE / "w2.weights.h5").is_file()  # the linked run still loads


def test_a_file_that_cannot_be_deleted_is_named_with_what_was_deleted_before_it(runs: Path, monkeypatch) -> None:
    real = Path.unlink

    def unlink(self, missing_ok=False):
        if self.name == "w2.weights.h5.sha256":
            raise PermissionError(13, "Permission denied")
        return real(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(StoreSweepError, match=r"w2.weights.h5.sha256 cannot be deleted \(Permission denied\); 3 of 4"):
        sweep_store(runs, delete=True, now=time.time())


def test_a_reference_to_a_missing_file_is_reported(runs: Path) -> None:
    _run(runs / "transforms" / "luv" / "fold0", runs / RunLayout.SHARED_STORE, "c1.config.json.gz", "w9.weights.h5")
    sweep = sweep_store(runs, now=time.time())
    assert [(d.name, p.name) for d, p in sweep.missing] == [("fold0", "w9.weights.h5")]
    assert sweep.missing[0][0].parent.name == "luv"


def test_a_package_reference_needs_no_store_file_and_keeps_only_its_configuration(runs: Path) -> None:
    folder = _run(runs / "backbones" / "lite0" / "fold0", runs / RunLayout.SHARED_STORE, "c2.config.json.gz")
    spec = json.loads((folder / RunLayout.MODEL_SHARED).read_text())
    spec["backbones"] = {"backbone": {"sha256": "w", "package": "efficientnetlite0"}}  # as save_shared writes it
    (folder / RunLayout.MODEL_SHARED).write_text(json.dumps(spec))
    import shutil

    shutil.rmtree(runs / "ablation" / "fusion" / ".fold1.partial")  # c2's other reference
    sweep = sweep_store(runs, now=time.time())
    assert sweep.missing == () and sweep.run_folders == 2
    assert "c2.config.json.gz" in _names(sweep.referenced)


def test_a_reference_file_of_a_newer_format_is_named_not_called_damaged(runs: Path) -> None:
    from melanoma_utils.runs.model_files import ModelFilesError, load_model_files

    folder = _run(runs / "ablation" / "fusion" / "fold9", runs / RunLayout.SHARED_STORE, "c1.config.json.gz")
    spec = json.loads((folder / RunLayout.MODEL_SHARED).read_text())
    (folder / RunLayout.MODEL_SHARED).write_text(json.dumps({**spec, "format": 99}))
    with pytest.raises(ModelFilesError, match="fold9: model_shared.json has format 99, newer than this version"):
        load_model_files(folder)


def test_an_unreadable_reference_file_stops_the_sweep_before_anything_is_deleted(runs: Path) -> None:
    bad = runs / "ablation" / "image" / "fold0"
    bad.mkdir(parents=True)
    (bad / RunLayout.MODEL_SHARED).write_text("{not json")
    before = _names((runs / RunLayout.SHARED_STORE).iterdir())
    with pytest.raises(StoreSweepError, match=str(bad / RunLayout.MODEL_SHARED)):
        sweep_store(runs, delete=True, now=time.time())
    assert _names((runs / RunLayout.SHARED_STORE).iterdir()) == before


def test_the_command_lists_and_deletes_and_refuses_a_folder_without_a_store(runs: Path, tmp_path: Path, capsys) -> None:
    assert main(["prune-store", str(runs), "--min-age-hours", "0"]) == 0
    out = capsys.readouterr().out
    assert "referenced by 2 run folder(s)" in out and "  w2.weights.h5 (0.0 MB)" in out and "--delete deletes them" in out
    assert (runs / RunLayout.SHARED_STORE / "w2.weights.h5").is_file()
    assert main(["prune-store", str(runs), "--delete"]) == 0
    assert "deleted" in capsys.readouterr().out
    assert not (runs / RunLayout.SHARED_STORE / "w2.weights.h5").exists()
    assert (runs / RunLayout.SHARED_STORE / "w1.weights.h5").is_file()
    assert main(["prune-store", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "nothing to delete\n" in out and "2 unreferenced file(s) kept: written within the age limit" in out
    assert main(["prune-store", str(runs), "--min-age-hours", "0", "--delete"]) == 0
    assert "  w3.weights.h5" in capsys.readouterr().out
    assert main(["prune-store", str(runs)]) == 0
    assert "nothing to delete: every file is referenced" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # nan would switch the age guard off
        main(["prune-store", str(runs), "--min-age-hours", "nan"])
    assert "must be a finite number >= 0: nan" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["prune-store", str(tmp_path / "empty")]) == 2
    assert "holds no shared backbone store" in capsys.readouterr().err
