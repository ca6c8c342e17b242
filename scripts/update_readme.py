"""Rewrite the generated result tables of README.md and docs/*.md from the committed report files (``--check``: only
say which differ).

    python scripts/update_readme.py [--check] [--report-dir reports/isic2020]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from melanoma_utils import config
from melanoma_utils.atomic import write_text
from melanoma_utils.reports.readme import doc_files, render_readme, stale_blocks


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--check", action="store_true", help="exit 1 if a generated block differs from the report files")
    p.add_argument("--report-dir", type=Path, default=config.PROJ_ROOT / "reports" / "isic2020")
    args = p.parse_args()
    any_stale = False
    for doc in doc_files(config.PROJ_ROOT):
        text = doc.read_text()
        stale = stale_blocks(text, args.report_dir)
        any_stale |= bool(stale)
        name = doc.relative_to(config.PROJ_ROOT)
        if args.check:
            print(f"{name}: " + ("tables match the reports" if not stale else f"blocks out of date: {', '.join(stale)}"))
            continue
        if stale:
            write_text(doc, render_readme(text, args.report_dir))
        print(f"{name}: rewrote {len(stale)} block(s){': ' + ', '.join(stale) if stale else ''}")
    return 1 if args.check and any_stale else 0


if __name__ == "__main__":
    sys.exit(main())
