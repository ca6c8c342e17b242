"""README and docs/ result tables generated from the committed report files, so prose and reports cannot drift apart.

The README holds blocks between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``; :func:`render_tables`
builds each block from ``reports/<dataset>/`` CSVs, ``scripts/update_readme.py`` rewrites them, and a test fails when
a block differs from what the report files give.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Callable

from .doc_findings import ablation_findings, gpu_estimate, headline_table, validation_findings
from .doc_selection import (
    SELECTION_BLOCKS,
    augmentation_shift_table,
    finetune_decision,
    finetune_followup_decision,
    finetune_histories_note,
    finetune_selection_table,
    objective_verdict,
    paper_table3,
)
from .doc_tables import (
    ablation_table,
    backbones_paired_table,
    backbones_table,
    explanations_inside,
    export_bench,
    importance_table,
    objective_confirm_table,
    objective_selection_table,
    paired_table,
    paper_table,
    scale_table,
    shortcut_audit_table,
    size_rates,
    source_weighting_table,
    train_defaults,
    train_timings_table,
    transform_costs,
    transforms_adapted_table,
    transforms_table,
)
from .doc_validation import (
    calibrator_choice,
    decision_within_copy_a,
    importance_agreement,
    locked_test_table,
    metadata_only_table,
)

BLOCK = re.compile(r"(<!-- generated:(?P<name>[a-z0-9_]+) -->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)", re.S)


#: Block name -> the function that renders it from a report folder.
TABLES: dict[str, Callable[[Path], str]] = {"ablation": ablation_table, "ablation_paired": paired_table,
                                             "transforms_training": transforms_table,
                                             "transforms_adapted": transforms_adapted_table, "backbones": backbones_table,
                                             "transform_costs": transform_costs, "size_rates": size_rates,
                                             "train_defaults": train_defaults, "export_bench": export_bench, "scale": scale_table,
                                             "importance": importance_table, "explanations_inside": explanations_inside,
                                             "ablation_findings": ablation_findings,
                                             "shortcut_audit": shortcut_audit_table, "headline": headline_table,
                                             "source_weighting": source_weighting_table,
                                             "objective_selection": objective_selection_table,
                                             "objective_verdict": objective_verdict,
                                             "objective_confirm": objective_confirm_table,
                                             "objective_confirm_verdict": functools.partial(
                                                 objective_verdict, name="table_objective_confirm.csv"),
                                             "train_timings": train_timings_table, "gpu_estimate": gpu_estimate,
                                             "validation_findings": validation_findings, "paper": paper_table,
                                             "backbones_paired": backbones_paired_table,
                                             "finetune_selection": finetune_selection_table,
                                             "finetune_decision": finetune_decision, "paper_table3": paper_table3,
                                             "locked_test": locked_test_table,
                                             "augmentation_shift": augmentation_shift_table,
                                             "finetune_followup": finetune_followup_decision,
                                             "finetune_histories": finetune_histories_note,
                                             "metadata_only": metadata_only_table,
                                             "decision_within_copy_a": decision_within_copy_a,
                                             "calibrator_choice": calibrator_choice,
                                             "importance_agreement": importance_agreement,
                                             **{block: functools.partial(finetune_selection_table, name=csv)
                                                for block, csv in SELECTION_BLOCKS.items()}}


def render_readme(text: str, report_dir: Path) -> str:
    """``text`` with every generated block replaced by what the report files give (unknown block names: an error)."""
    def sub(m: re.Match) -> str:
        name = m.group("name")
        if name not in TABLES:
            raise ValueError(f"README block 'generated:{name}' has no generator (known: {', '.join(TABLES)})")
        return m.group(1) + TABLES[name](report_dir) + m.group(4)

    return BLOCK.sub(sub, text)


def doc_files(root: Path) -> list[Path]:
    """The documents that hold generated blocks: README.md and docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def stale_blocks(text: str, report_dir: Path) -> list[str]:
    """Names of the generated blocks whose text differs from the report files."""
    return [m.group("name") for m, n in zip(BLOCK.finditer(text), BLOCK.finditer(render_readme(text, report_dir)))
            if m.group("body") != n.group("body")]
