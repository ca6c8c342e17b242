"""Apply the current output cleaner (:func:`melanoma_utils.cli.reproduce.clean_outputs`) to every executed notebook of
a report folder and render its HTML again, without re-running anything: for reports rendered before the cleaner
learned a new kind of noise.

    .venv/bin/python scripts/clean_reports.py reports/isic2020
"""

from __future__ import annotations

import sys
from pathlib import Path

from melanoma_utils.cli.reproduce import clean_notebook_file, render_html


def main(folder: str) -> int:
    notebooks = sorted(Path(folder).glob("*.ipynb"))
    if not notebooks:
        print(f"{folder}: no executed notebooks", file=sys.stderr)
        return 2
    for nb in notebooks:
        changed = clean_notebook_file(nb)
        if changed:
            render_html(nb, nb.with_suffix(".html"))
        print(f"{nb}: {changed} output(s) cleaned")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "reports/isic2020"))
