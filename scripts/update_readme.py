"""Rewrite the README's generated result tables from the committed report files (``--check``: only say which differ).

    python scripts/update_readme.py [--check] [--report-dir reports/isic2020]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from melanoma_utils import config
from melanoma_utils.atomic import write_text
from melanoma_utils.reports.readme import render_readme, stale_blocks


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--check", action="store_true", help="exit 1 if a generated block differs from the report files")
    p.add_argument("--report-dir", type=Path, default=config.PROJ_ROOT / "reports" / "isic2020")
    args = p.parse_args()
    readme = config.PROJ_ROOT / "README.md"
    text = readme.read_text()
    stale = stale_blocks(text, args.report_dir)
    if args.check:
        print("README tables match the reports" if not stale else f"README blocks out of date: {', '.join(stale)}")
        return 1 if stale else 0
    write_text(readme, render_readme(text, args.report_dir))
    print(f"rewrote {len(stale)} block(s): {', '.join(stale) or 'none changed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
