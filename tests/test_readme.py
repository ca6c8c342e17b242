"""The README's and docs/' result tables are generated from the committed report files and must match them; every
relative link resolves; every command docs/cli.md quotes parses."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from melanoma_utils import config
from melanoma_utils.reports.readme import TABLES, doc_files, render_readme, stale_blocks

REPORTS = config.PROJ_ROOT / "reports" / "isic2020"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_generated_block_matches_the_committed_reports() -> None:
    texts = {doc.name: doc.read_text() for doc in doc_files(config.PROJ_ROOT)}
    for name in TABLES:
        assert any(f"<!-- generated:{name} -->" in t for t in texts.values()), f"no document holds the block {name}"
    stale = {doc: stale_blocks(t, REPORTS) for doc, t in texts.items()}
    assert all(v == [] for v in stale.values()), f"run: python scripts/update_readme.py ({stale})"


def test_a_changed_report_number_makes_the_docs_stale(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    shutil.copytree(REPORTS, reports, ignore=shutil.ignore_patterns("*.html", "*.ipynb", "figures", "runs"))
    shutil.copytree(REPORTS.parent / "bench", tmp_path / "bench")  # the measured export table reads reports/bench
    text = (config.PROJ_ROOT / "docs" / "results.md").read_text()
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


def broken_links(doc: Path) -> list[str]:
    """Relative links of a Markdown file whose target does not exist (anchors are not checked)."""
    bad = []
    for m in LINK.finditer(doc.read_text()):
        target = m.group(1)
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        path = target.split("#", 1)[0]
        if not (doc.parent / path).exists():
            bad.append(target)
    return bad


def test_every_relative_link_resolves() -> None:
    bad = {doc.name: broken_links(doc) for doc in doc_files(config.PROJ_ROOT)}
    assert all(v == [] for v in bad.values()), bad


def test_a_planted_broken_link_is_found(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("[ok](x.md) [gone](nowhere/file.md) [web](https://example.org)")
    assert broken_links(doc) == ["nowhere/file.md"]


def test_readme_is_short() -> None:
    text = (config.PROJ_ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250 and len(text.encode()) <= 25_000


def _subparsers() -> dict:
    from melanoma_utils.cli.app import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return dict(action.choices)


def quoted_commands(text: str) -> list[list[str]]:
    """Every ``python -m melanoma_utils ...`` command of a Markdown text, as argument lists (line continuations
    joined, comments dropped)."""
    text = text.replace("\\\n", " ")
    parts = [part.split("`", 1)[0].split(" #", 1)[0]  # an inline code span ends at its backtick
             for line in text.splitlines() for part in line.split("python -m melanoma_utils ")[1:]]
    return [shlex.split(p) for p in parts if p.strip()]


def unknown_options(commands: list[list[str]]) -> list[str]:
    """Sub-commands and ``--options`` that the command line does not have."""
    subs = _subparsers()
    bad = []
    for args in commands:
        if not args or args[0] not in subs:
            bad.append(" ".join(args[:1]) or "(empty)")
            continue
        known = set(subs[args[0]]._option_string_actions)
        bad += [f"{args[0]} {a}" for a in args[1:] if a.startswith("--") and a.split("=", 1)[0] not in known]
    return bad


def test_every_command_docs_cli_quotes_exists_with_its_options() -> None:
    commands = quoted_commands((config.PROJ_ROOT / "docs" / "cli.md").read_text())
    assert {c[0] for c in commands if c} >= set(_subparsers()), "docs/cli.md lacks an example of a command"
    assert unknown_options(commands) == []
    assert unknown_options(quoted_commands("python -m melanoma_utils train --metadata x --epochz 3")) == ["train --epochz"]


def test_the_gpu_estimate_is_the_cold_views_over_the_benchmarked_throughput(tmp_path: Path) -> None:
    import json

    import pandas as pd

    from melanoma_utils.reports.doc_findings import gpu_estimate

    reports, bench = tmp_path / "reports", tmp_path / "bench"
    reports.mkdir()
    bench.mkdir()
    assert gpu_estimate(reports).startswith("No GPU estimate")  # nothing measured: says so, invents nothing
    pd.DataFrame({"command": ["train defaults", "train defaults"], "cache": ["cold", "warm"], "wall_seconds": [130, 9],
                  "embedding_seconds": [120.0, 0.4], "embedded_images": [1000, 0]}).to_csv(
        reports / "table_train_timings.csv", index=False)
    assert "is missing" in gpu_estimate(reports)
    (bench / "h200-jax-bf16-effnet.json").write_text(json.dumps({
        "machine": {"gpu": "NVIDIA H200, 1 MiB"}, "backend": "jax", "precision": "mixed_bfloat16",
        "rows": [{"what": "training step", "model": "efficientnetb0", "size": 256, "images_per_second": 10.0},
                 {"what": "prediction", "model": "efficientnetb0", "size": 256, "images_per_second": 8000.0}]}))
    text = gpu_estimate(reports)
    assert text.startswith("**Estimated, not measured:**")
    # 1,000 images x 8 default views / 8,000 images/s = 1.0 s; the warm row (nothing embedded) is not estimated
    assert "about 1.0 s for `train defaults`, cold (1,000 images x 8 views; 2.0 min on the CPU above)" in text
    assert text.count("about") == 1 and "8,000 images/s" in text
    (bench / "h200-jax-bf16-effnet.json").write_text(json.dumps({"rows": [{"what": "training step"}]}))
    assert "has no prediction row" in gpu_estimate(reports)
