"""What `train` costs on this machine, cold and warm, with its defaults and with ``--external`` (issue 31, item 5).

Runs the command line as a user would, in a fresh process each time, with the user cache pointed at an empty folder
(cold: the ImageNet weights converted and every embedding computed) and then again with it filled (warm):

    1. train (defaults), cold cache            2. the same, warm
    3. train --external, the ISIC part warm, the external part cold   4. the same, warm

A cold ``--external`` run is not timed on its own (it would embed the ISIC part a second time); its time is the
measured sum "1 - 2 + 3" and is labelled as such. Each row also gives the stages recorded in the run's config.json
(embedding, head). Writes ``table_train_timings.csv`` into ``--report-dir``.

    python scripts/train_timings.py            # ~25 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def timed_train(args: list[str], cache: Path, out: Path) -> dict[str, float]:
    """One ``train`` in a fresh process: wall seconds and the run's recorded stage seconds."""
    env = {**os.environ, "MELANOMA_UTILS_CACHE": str(cache), "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "melanoma_utils", "train", *args, "--out", str(out), "--verbose", "0"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    stages = json.loads((out / "config.json").read_text())["stages"]
    emb = stages.get("embeddings", {})
    return {"wall_seconds": wall, "embedding_seconds": float(emb.get("seconds", float("nan"))),
            "embedded_images": float(emb.get("computed", 0)), "cached_images": float(emb.get("cached", 0)),
            "head_seconds": float(stages.get("head", {}).get("seconds", float("nan")))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metadata", type=Path, default=SHARED / "isic2020-256" / "train.csv")
    ap.add_argument("--external", type=Path, default=SHARED / "ham10000-256")
    ap.add_argument("--report-dir", type=Path, default=Path("reports/isic2020"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache, runs = Path(tmp) / "cache", Path(tmp) / "runs"
        plain = ["--metadata", str(args.metadata)]
        ext = [*plain, "--external", str(args.external)]
        for label, a, state in (("defaults", plain, "cold"), ("defaults", plain, "warm"),
                                ("--external", ext, "ISIC part warm, external part cold"), ("--external", ext, "warm")):
            r = timed_train(a, cache, runs / f"{len(rows)}")
            rows.append({"command": f"train {label}", "cache": state, **r})
            print(f"train {label} ({state}): {r['wall_seconds']:.0f} s (embedding {r['embedding_seconds']:.0f} s for "
                  f"{r['embedded_images']:.0f} image(s), head {r['head_seconds']:.0f} s)", flush=True)
    cold_ext = rows[0]["wall_seconds"] - rows[1]["wall_seconds"] + rows[2]["wall_seconds"]
    rows.append({"command": "train --external", "cache": "cold (derived: rows 1 - 2 + 3, not timed on its own)",
                 "wall_seconds": cold_ext})
    table = pd.DataFrame(rows)
    table["cpu_cores"] = os.cpu_count()
    table["machine"] = platform.processor() or platform.machine()
    out = args.report_dir / "table_train_timings.csv"
    tmp_out = out.with_suffix(".csv.tmp")
    table.to_csv(tmp_out, index=False)
    tmp_out.replace(out)
    print(table.round(1).to_string(index=False))
    print(f"written {out}")


if __name__ == "__main__":
    main()
