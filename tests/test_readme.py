"""The README's result tables are generated from the committed report files and must match them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from melanoma_utils import config
from melanoma_utils.reports.readme import TABLES, render_readme, stale_blocks

REPORTS = config.PROJ_ROOT / "reports" / "isic2020"


def test_readme_tables_match_the_committed_reports() -> None:
    text = (config.PROJ_ROOT / "README.md").read_text()
    for name in TABLES:
        assert f"<!-- generated:{name} -->" in text, f"README lacks the generated block {name}"
    assert stale_blocks(text, REPORTS) == [], "run: python scripts/update_readme.py"


def test_a_changed_report_number_makes_the_readme_stale(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    shutil.copytree(REPORTS, reports, ignore=shutil.ignore_patterns("*.html", "*.ipynb", "figures", "runs"))
    shutil.copytree(REPORTS.parent / "bench", tmp_path / "bench")  # the measured export table reads reports/bench
    text = (config.PROJ_ROOT / "README.md").read_text()
    assert stale_blocks(text, reports) == []
    import pandas as pd

    csv = reports / "ablation_paired.csv"
    table = pd.read_csv(csv)
    table.loc[0, "delta_auc"] += 0.01
    table.to_csv(csv, index=False)
    assert stale_blocks(text, reports) == ["ablation_paired", "ablation_findings"]  # the table and the findings quoting it
    assert stale_blocks(render_readme(text, reports), reports) == []


def test_an_unknown_block_is_an_error() -> None:
    with pytest.raises(ValueError, match="generated:nonsense"):
        render_readme("<!-- generated:nonsense -->\nx\n<!-- /generated:nonsense -->", REPORTS)
