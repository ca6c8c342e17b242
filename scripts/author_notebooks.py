"""Writes notebooks/*.ipynb from the cell lists below (the notebooks' source of truth; diffable).

Run ``.venv/bin/python scripts/author_notebooks.py`` after editing; commit both.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def write(name: str, cells: list[tuple[str, str]]) -> None:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, src) in enumerate(cells):
        src = src.strip("\n")
        if kind == "md":
            nb.cells.append(new_markdown_cell(src))
        else:
            cell = new_code_cell(src)
            if kind == "params":
                cell.metadata["tags"] = ["parameters"]
            nb.cells.append(cell)
        nb.cells[-1].id = f"c{i:02d}"  # stable ids: re-authoring changes only what was edited
    nbformat.write(nb, str(NB_DIR / f"{name}.ipynb"))


from notebook_cells import NOTEBOOKS  # noqa: E402  (scripts/notebook_cells.py)

if __name__ == "__main__":
    for name, cells in NOTEBOOKS.items():
        write(name, cells)
        print(f"wrote notebooks/{name}.ipynb")
