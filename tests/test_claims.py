"""Prose that cannot go stale: every hand-written result number in the checked documents has a source that agrees."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from melanoma_utils import config
from melanoma_utils.reports.claims import check_claims, prose_numbers

#: The documents whose prose is held to the claims file (the rest is generated, or has no result numbers).
CHECKED_DOCS = ["README.md", "docs/results.md"]


def test_the_committed_documents_have_a_source_for_every_number() -> None:
    problems = check_claims(config.PROJ_ROOT, "docs/claims.csv", CHECKED_DOCS)
    assert problems == [], "\n".join(problems[:20])


def _setup(tmp_path: Path, prose: str) -> Path:
    (tmp_path / "r").mkdir()
    pd.DataFrame({"candidate": ["base", "new"], "auc": [0.78849, 0.8052]}).to_csv(tmp_path / "r" / "t.csv", index=False)
    (tmp_path / "doc.md").write_text(prose)
    (tmp_path / "claims.csv").write_text("doc,text,value,source,row,column\n"
                                         "doc.md,the base reaches 0.788,0.788,r/t.csv,candidate=base,auc\n"
                                         "doc.md,a target of 0.86,0.86,stated,set before the measurement,\n")
    return tmp_path


def test_a_planted_wrong_number_an_unsourced_number_and_a_reworded_claim_fail(tmp_path: Path) -> None:
    good = ("Today the base reaches 0.788, short of a target of 0.86.\n\n<!-- generated:t -->\n| x | 0.123 |\n"
            "<!-- /generated:t -->\n\n```\nexample 0.999\n```\n")
    root = _setup(tmp_path, good)
    assert check_claims(root, "claims.csv", ["doc.md"]) == []  # generated and fenced numbers need no claim
    (root / "doc.md").write_text(good.replace("0.788", "0.798"))  # the prose edited, the source not
    (root / "claims.csv").write_text((root / "claims.csv").read_text().replace("reaches 0.788,0.788", "reaches 0.798,0.798"))
    wrong = check_claims(root, "claims.csv", ["doc.md"])
    assert len(wrong) == 1 and "the source says 0.78849, the prose 0.798" in wrong[0]
    (root / "claims.csv").write_text((root / "claims.csv").read_text().replace("reaches 0.798,0.798", "reaches 0.788,0.788"))
    (root / "doc.md").write_text(good + "\nAnd the new one gets +0.017 more.\n")
    assert check_claims(root, "claims.csv", ["doc.md"]) == ["doc.md:11: +0.017 has no source (generate it, or add a claim)"]
    (root / "doc.md").write_text(good.replace("the base reaches", "the base model reaches"))
    gone = check_claims(root, "claims.csv", ["doc.md"])
    assert any("the text is not in the document" in p for p in gone) and any("0.788 has no source" in p for p in gone)


def test_prose_numbers_skip_generated_blocks_and_fences_but_not_signs() -> None:
    text = "a −0.09 and +0.0096 b 10.5 c 0.5\n<!-- generated:x -->\n0.77\n<!-- /generated:x -->\n```\n0.66\n```\n"
    assert [n for _, _, n in prose_numbers(text)] == ["−0.09", "+0.0096"]


def test_a_claim_row_may_need_several_columns_to_be_one_row(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("signal,subset,auc\nsize,all,0.55\nsize,copy a,0.69\n")
    (tmp_path / "d.md").write_text("size within copy a (0.69) and over both (0.55).\n")
    (tmp_path / "c.csv").write_text("doc,text,value,source,row,column\n"
                                    "d.md,copy a (0.69),0.69,a.csv,signal=size & subset=copy a,auc\n"
                                    "d.md,both (0.55),0.55,a.csv,signal=size,auc\n")
    problems = check_claims(tmp_path, "c.csv", ["d.md"])
    assert len(problems) == 1 and "2 rows where signal=size (need exactly 1)" in problems[0]
