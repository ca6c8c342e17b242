"""Prose that cannot go stale: every result-like number written by hand in the documentation has a source.

A number in the README or a checked document is either inside a generated block (``<!-- generated:NAME -->``, written
from the committed CSVs by ``scripts/update_readme.py``), inside a code fence (an example), or backed by an entry of
the claims file (``docs/claims.csv``)::

    doc,text,value,source,row,column
    README.md,within copy a 0.788,0.788,reports/isic2020/table_finetune_selection.csv,candidate=frozen Lite0 224 px (today's default),within_copy_a
    README.md,held-out HAM10000 lesions 0.90,0.90,stated,a target set before the measurement,

``text`` is the phrase as printed (it must occur in ``doc``), ``value`` the number as printed inside it; ``source`` a
committed CSV whose cell (the one row where ``row``'s ``column=value`` conditions, joined by `` & ``, all hold; the
column ``column``) must round to
``value`` at its printed precision, or ``stated`` for a number that is not a result (a target, a setting; ``row``
says which). :func:`check_claims` lists every problem: a claim whose text is gone, whose cell differs, and a
result-like number (:data:`RESULT_NUMBER`) in prose that no claim covers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

#: A result-like number: a proportion or difference printed with 2–4 decimals (0.788, +0.017, −0.09).
RESULT_NUMBER = re.compile(r"(?<![\w.])[+\-−]?0\.\d{2,4}(?!\d)")
GENERATED = re.compile(r"<!-- generated:(?P<name>[a-z0-9_]+) -->\n.*?<!-- /generated:(?P=name) -->", re.S)
FENCE = re.compile(r"```.*?```", re.S)
COLUMNS: tuple[str, ...] = ("doc", "text", "value", "source", "row", "column")


@dataclass(frozen=True)
class Claim:
    """One row of the claims file."""

    doc: str
    text: str
    value: str
    source: str
    row: str
    column: str
    line: int  # the claims file's line, for messages


def read_claims(path: str | Path) -> list[Claim]:
    """The claims file's rows; ``ValueError`` naming the file and its missing columns."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in table]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})")
    return [Claim(*(str(r[c]) for c in COLUMNS), line=i + 2) for i, r in table.iterrows()]


def prose_numbers(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, number)`` of each result-like number outside generated blocks and code fences."""
    hidden = [m.span() for m in GENERATED.finditer(text)] + [m.span() for m in FENCE.finditer(text)]
    return [(m.start(), m.end(), m.group(0)) for m in RESULT_NUMBER.finditer(text)
            if not any(a <= m.start() < b for a, b in hidden)]


def _decimals(value: str) -> int:
    return len(value.split(".")[1]) if "." in value else 0


def cell_value(root: Path, claim: Claim) -> float:
    """The source cell of a claim (``KeyError``/``ValueError`` with the file, row and column when absent)."""
    table = pd.read_csv(root / claim.source)
    hit = table
    for condition in claim.row.split(" & "):  # column=value, several joined by " & "
        key, _, wanted = condition.partition("=")
        if key not in table:
            raise KeyError(f"{claim.source}: no column {key!r}")
        hit = hit[hit[key].astype(str) == wanted]
    if claim.column not in table:
        raise KeyError(f"{claim.source}: no column {claim.column!r}")
    if len(hit) != 1:
        raise ValueError(f"{claim.source}: {len(hit)} rows where {claim.row} (need exactly 1)")
    return float(hit[claim.column].iloc[0])


def check_claim(root: Path, claim: Claim, docs: dict[str, str]) -> list[str]:
    """The problems of one claim: its text not in its document, its value not in its text, its cell not rounding to
    the printed value."""
    where = f"claims line {claim.line} ({claim.doc}: {claim.text!r})"
    if claim.doc not in docs:
        return [f"{where}: no such document"]
    if claim.text not in docs[claim.doc]:
        return [f"{where}: the text is not in the document (reworded? update the claim)"]
    if claim.value not in claim.text:
        return [f"{where}: the value {claim.value} is not in the text"]
    if claim.source == "stated":
        return [] if claim.row else [f"{where}: a stated number needs its reason in the row column"]
    try:
        cell = cell_value(root, claim)
    except (OSError, KeyError, ValueError) as exc:
        return [f"{where}: {exc}"]
    printed = float(claim.value.replace("−", "-"))
    if abs(cell - printed) > 0.5 * 10 ** -_decimals(claim.value) + 1e-9:
        return [f"{where}: the source says {cell:.{_decimals(claim.value) + 2}f}, the prose {claim.value}"]
    return []


def check_claims(root: str | Path, claims_file: str | Path, docs: list[str]) -> list[str]:
    """Every problem of the claims file against the documents ``docs`` (paths relative to ``root``): each claim
    checked (:func:`check_claim`), and each result-like number in their prose covered by a claim's text."""
    root = Path(root)
    texts = {d: (root / d).read_text() for d in docs}
    claims = read_claims(root / claims_file)
    problems = [p for c in claims for p in check_claim(root, c, texts)]
    for doc, text in texts.items():
        spans = [(m.start(), m.start() + len(c.text)) for c in claims if c.doc == doc
                 for m in re.finditer(re.escape(c.text), text)]
        for start, end, number in prose_numbers(text):
            if not any(a <= start and end <= b for a, b in spans):
                line = text.count("\n", 0, start) + 1
                problems.append(f"{doc}:{line}: {number} has no source (generate it, or add a claim)")
    return problems
