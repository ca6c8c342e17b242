"""The diagnosis-aware head: one class list for every data set, labels with named errors, the loss by hand, the saved
model's output = the melanoma column of the softmax, and a run trained on the diagnosis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from melanoma_utils.data.csvfiles import DataError
from melanoma_utils.data.diagnoses import (
    DIAGNOSIS_TO_CLASS,
    MASKED,
    classes_for,
    diagnosis_labels,
    n_outputs,
)
from melanoma_utils.data.sources import HAM_DIAGNOSES, ISIC2019_DIAGNOSES


def test_every_external_diagnosis_has_a_class_and_melanoma_is_class_zero() -> None:
    """Each diagnosis the HAM10000 and ISIC 2019 loaders write maps onto a class; a broken mapping (a loader word
    without a class) fails here."""
    for word in [*HAM_DIAGNOSES.values(), *ISIC2019_DIAGNOSES.values()]:
        assert word.lower() in DIAGNOSIS_TO_CLASS, word
    for objective in ("diagnosis", "diagnosis-masked"):
        assert classes_for(objective)[0] == "melanoma"
    assert n_outputs("binary") == 1 and n_outputs("diagnosis") == n_outputs("diagnosis-masked") + 1
    with pytest.raises(ValueError, match="binary, diagnosis, diagnosis-masked"):
        classes_for("softmax")


def test_labels_follow_the_diagnosis_and_the_target_wins_for_melanoma() -> None:
    frame = pd.DataFrame({"target": [1, 0, 0, 0, 0, 1, 0],
                          "diagnosis": ["melanoma", "nevus", "Seborrheic Keratosis", "unknown", None,
                                        "unknown", "basal cell carcinoma"]})
    classes = classes_for("diagnosis")
    got = [classes[i] for i in diagnosis_labels(frame, "diagnosis")]
    assert got == ["melanoma", "nevus", "benign keratosis", "unknown", "unknown", "melanoma", "basal cell carcinoma"]
    masked = diagnosis_labels(frame, "diagnosis-masked")
    assert masked[3] == masked[4] == MASKED and masked[5] == 0 and "unknown" not in classes_for("diagnosis-masked")
    assert diagnosis_labels(frame, "binary").tolist() == frame["target"].tolist()


def test_labels_name_the_value_and_rows_they_cannot_take() -> None:
    frame = pd.DataFrame({"target": [0, 0, 0], "diagnosis": ["nevus", "mel", "nevus"]})
    with pytest.raises(DataError, match=r"'mel'.*rows 1\b"):
        diagnosis_labels(frame, "diagnosis")
    with pytest.raises(DataError, match=r"rows 0 are benign \(target 0\) but diagnosed melanoma"):
        diagnosis_labels(pd.DataFrame({"target": [0], "diagnosis": ["melanoma"]}), "diagnosis-masked")
    with pytest.raises(DataError, match="needs a 'diagnosis' column"):
        diagnosis_labels(pd.DataFrame({"target": [0]}), "diagnosis")


def test_diagnosis_loss_by_hand() -> None:
    """Known class: −log softmax of that class; a masked row: −log(1 − p_melanoma)."""
    from keras import ops

    from melanoma_utils.models.objectives import DiagnosisLoss

    logits = np.array([[2.0, 0.5, -1.0], [0.3, 1.2, 0.1], [1.0, 0.0, 0.0]], np.float32)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([0, 2, MASKED], np.float32)
    per_row = ops.convert_to_numpy(DiagnosisLoss(reduction=None)(y, logits))
    np.testing.assert_allclose(per_row, [-np.log(p[0, 0]), -np.log(p[1, 2]), -np.log(1 - p[2, 0])], rtol=1e-5)


def test_the_model_outputs_the_melanoma_column_of_its_softmax() -> None:
    """The head trained on logits and the saved model's head share their layers: the saved output is softmax(logits)[:, 0]."""
    from melanoma_utils.models.fusion import build_head_model, copy_head_weights

    k = n_outputs("diagnosis")
    train_head = build_head_model(16, n_meta=5, meta_units=(4,), head_units=(8,), n_classes=k, logits=True)
    predict_head = build_head_model(16, n_meta=5, meta_units=(4,), head_units=(8,), n_classes=k)
    copy_head_weights(train_head, predict_head)
    rng = np.random.default_rng(0)
    x = {"embedding": rng.normal(size=(6, 16)).astype(np.float32), "meta": rng.normal(size=(6, 5)).astype(np.float32)}
    z = np.asarray(train_head(x, training=False), np.float64)
    assert z.shape == (6, k)
    softmax = np.exp(z - z.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    p = np.asarray(predict_head(x, training=False))
    assert p.shape == (6, 1)
    np.testing.assert_allclose(p[:, 0], softmax[:, 0], atol=1e-6)


def test_a_diagnosis_objective_needs_a_head_on_cached_embeddings() -> None:
    from melanoma_utils.runs.run import TrainConfig

    with pytest.raises(ValueError, match="objective 'diagnosis' trains a head on cached embeddings"):
        TrainConfig(objective="diagnosis", backbone="cnn")
    with pytest.raises(ValueError, match="objective must be one of"):
        TrainConfig(objective="multiclass")
    assert TrainConfig(objective="diagnosis-masked").model_spec(12).n_classes == len(classes_for("diagnosis-masked"))


@pytest.fixture()
def _user_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MELANOMA_UTILS_CACHE", str(tmp_path_factory.getbasetemp() / "user-cache"))


@pytest.mark.parametrize("objective", ["diagnosis", "diagnosis-masked"])
def test_a_run_trained_on_the_diagnosis_predicts_the_melanoma_probability(
        objective: str, tiny_csv: Path, tmp_path: Path, _user_cache: None) -> None:
    from melanoma_utils.data.isic import load_dataset
    from melanoma_utils.runs.run import Run, TrainConfig
    from melanoma_utils.runs.training import train_run

    df = load_dataset(tiny_csv).frame
    benign = df.index[df["target"] == 0]
    df.loc[benign[: len(benign) // 2], "diagnosis"] = "nevus"  # some known benign classes beside unknown
    cfg = TrainConfig(kind="fusion", backbone="efficientnetlite0", backbone_weights="imagenet", image_size=32, epochs=3,
                      batch_size=8, embedding_views=1, head_units=(8,), meta_units=(4,), verbose=0, objective=objective)
    run = train_run(df, cfg, tmp_path / "run")
    loaded = Run.load(tmp_path / "run")
    assert loaded.train_config.objective == objective
    assert loaded.model.get_layer("diagnosis_logits").units == n_outputs(objective)
    p = loaded.predict(df)
    assert p.shape == (len(df),) and ((p > 0) & (p < 1)).all()
    np.testing.assert_allclose(p, run.predict(df), atol=1e-5)
    # a new process (nothing imported but the run loader) loads it: the output layer is registered for loading
    import subprocess
    import sys

    code = ("import sys; from melanoma_utils.runs.run import Run; r = Run.load(sys.argv[1]); "
            "print(r.train_config.objective, r.model.output.shape[-1])")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == [objective, "1"]
    card = (tmp_path / "run" / "MODEL_CARD.md").read_text()
    assert "Trained on: the diagnosis" in card and "melanoma column of the softmax" in card
