"""Write-then-rename: a failed write leaves the previous file and no temporary behind."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from melanoma_utils.atomic import atomic_write, temporary_sibling, write_json


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "metrics.json"
    write_json(target, {"auc": np.float32(0.5), "n": np.int64(3), "shape": (2, 3)})
    assert target.read_text().count('"n": 3') == 1 and '"shape": [\n    2,' in target.read_text()

    def half_then_crash(tmp: Path) -> None:
        tmp.write_text('{"auc": 0.9')
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, half_then_crash)
    assert '"auc": 0.5' in target.read_text()
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]


def test_temporary_name_keeps_the_suffix_libraries_look_at(tmp_path: Path) -> None:
    assert temporary_sibling(tmp_path / "w.weights.h5").name.endswith(".tmp.weights.h5")
    assert temporary_sibling(tmp_path / "fig.png").name.endswith(".tmp.png")
    assert temporary_sibling(tmp_path / "fig.png").name.startswith(".fig.")
