"""The locked test part: drawn once by whole patients/lesions, never redrawn, removed from every selection input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from melanoma_utils.study.locked import (
    LOCKED_FILE,
    LockedTest,
    check_unlocked,
    draw_locked,
    find_locked,
    lock_test_part,
    locked_rows,
    read_locked,
    resolve_lock,
    without_locked,
)


def _table(n_patients: int, prefix: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        for k in range(int(rng.integers(1, 5))):
            rows.append({"image_name": f"{prefix}_{p}_{k}", "patient_id": f"{prefix}P{p}", "target": int(p % 5 == 0 and k == 0)})
    return pd.DataFrame(rows)


def test_the_lock_takes_whole_patients_per_source_and_is_never_redrawn(tmp_path) -> None:
    main, ham = _table(200, "I", 0), _table(120, "H", 1)
    path = tmp_path / "locked_test.csv"
    locked = lock_test_part(path, main, {"ham10000": ham}, share=0.15, seed=0)
    t = locked.table
    assert set(t["source"]) == {"main", "ham10000"}
    m = t[t["source"] == "main"]
    share = m["patient_id"].nunique() / main["patient_id"].nunique()
    assert 0.08 < share < 0.22 and m["target"].astype(int).sum() > 0  # about 15%, with melanoma in it
    for source, frame in (("main", main), ("ham10000", ham)):  # whole patients: every image of a locked patient
        part = t[t["source"] == source]
        assert set(frame.loc[frame["patient_id"].isin(set(part["patient_id"])), "image_name"]) == set(part["image_name"])
    # a second call (another rendering, other data, another seed) reads the file: the lock holds
    again = lock_test_part(path, _table(50, "X", 9), None, share=0.5, seed=3)
    assert again.names == locked.names and read_locked(path).names == locked.names
    assert "main:" in locked.summary() and "lesions" in locked.summary()


def test_selection_inputs_lose_the_locked_part_and_the_guard_refuses_it(tmp_path) -> None:
    main = _table(100, "I", 0)
    locked = lock_test_part(tmp_path / "l.csv", main, None, seed=0)
    kept, n = without_locked(main, locked)
    assert n == len(main) - len(kept) > 0 and not set(kept["image_name"]) & locked.names
    check_unlocked(kept, locked, "cross-validation")  # passes
    with pytest.raises(ValueError, match="cross-validation: .* locked test part"):
        check_unlocked(main, locked, "cross-validation")
    # another image of a locked patient (e.g. added to the data later) is locked with its patient
    extra = pd.DataFrame({"image_name": ["new"], "patient_id": [locked.table["patient_id"].iloc[0]], "target": [0]})
    assert without_locked(pd.concat([kept, extra]), locked)[1] == 1
    assert len(locked_rows(main, locked)) == len(locked.table)
    assert without_locked(main, None) == (main, 0)


def test_a_file_that_is_not_a_lock_is_named(tmp_path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text("image_name,target\na,1\n")
    with pytest.raises(ValueError, match=r"x.csv: not a locked test file \(missing column\(s\) patient_id, source"):
        read_locked(bad)
    assert len(draw_locked(_table(30, "I", 2), {"empty": _table(0, "E", 0)})) > 0


def test_locked_endpoints_score_each_population_with_intervals() -> None:
    from melanoma_utils.study.locked import locked_endpoints

    rng = np.random.default_rng(0)
    n = 400
    main = pd.DataFrame({"patient_id": [f"P{i // 2}" for i in range(n)], "target": (np.arange(n) % 4 == 0).astype(int),
                         "source_copy": np.where(np.arange(n) % 8 < 4, "a", "b"),
                         "diagnosis": np.where(np.arange(n) % 4 == 0, "melanoma", np.where(np.arange(n) % 3, "nevus", "unknown")),
                         "width": np.where(np.arange(n) % 16 < 8, 6000, 1024), "height": 4000})
    main.loc[main["source_copy"] == "b", "target"] = 0
    main["probability"] = np.clip(0.3 * main["target"] + rng.random(n) * 0.7, 0, 1)
    ext = pd.DataFrame({"patient_id": [f"L{i}" for i in range(100)], "target": np.arange(100) % 5 == 0,
                        "source": "ham10000", "probability": rng.random(100)}).astype({"target": int})
    t = locked_endpoints(main, ext, n_boot=100).set_index("endpoint")
    assert list(t.index) == ["all locked patients", "within copy a", "melanoma vs nevus within copy a",
                             "within copy a, one camera at a time", "locked ham10000 lesions"]
    assert (t["ci_low"] <= t["roc_auc"]).all() and (t["roc_auc"] <= t["ci_high"]).all()
    assert t.loc["within copy a", "n"] == 200 and t.loc["all locked patients", "n_malignant"] == 50
    assert t.loc["within copy a", "roc_auc"] > 0.7 and abs(t.loc["locked ham10000 lesions", "roc_auc"] - 0.5) < 0.2
    one_class = locked_endpoints(main[main["target"] == 0])  # no melanoma: counts, no AUC
    assert one_class["roc_auc"].isna().all() and (one_class["n_malignant"] == 0).all()


def test_cross_validation_under_a_locked_report_folder_refuses_locked_rows_before_training(tmp_path) -> None:
    from melanoma_utils.models.train_config import TrainConfig
    from melanoma_utils.study.experiments import cross_validate
    from melanoma_utils.study.plan import FoldPlan

    main = _table(60, "I", 4)
    locked = lock_test_part(tmp_path / LOCKED_FILE, main, None, seed=0)
    runs = tmp_path / "runs" / "ablation"
    assert find_locked(runs) is not None and find_locked(runs).names == locked.names
    assert find_locked(tmp_path.parent / "elsewhere") is None
    kept, _ = without_locked(main, locked)
    # a patient of the lock with a new image name: refused, and the message names that patient
    leak = pd.DataFrame({"image_name": ["new"], "patient_id": [locked.table["patient_id"].iloc[0]], "target": [0]})
    with pytest.raises(ValueError, match=f"cross-validation into .*ablation: 1 row.*{locked.table['patient_id'].iloc[0]}"):
        cross_validate(pd.concat([kept, leak], ignore_index=True), TrainConfig(kind="meta"), runs, {"m": {}}, FoldPlan(2))
    with pytest.raises(ValueError, match="external rows"):
        cross_validate(kept, TrainConfig(kind="meta"), runs, {"m": {"external": True}}, FoldPlan(2),
                       external=main.head(20))
    assert not (runs / "folds.csv").exists()  # refused before anything was written or trained
    # the lock passed explicitly: None is no guard (notebook 03's locked_test = ""), whatever file the folder holds
    assert resolve_lock(runs, None) is None and resolve_lock(runs, "find").names == locked.names
    other = LockedTest(locked.table.head(1))
    assert resolve_lock(runs, other) is other
