"""Bad-input and fault probes through the command line, as a demanding user would try them; prints each probe's exit
status and the message a user sees (the tests assert the same behaviours; this prints them for a reader).

    .venv/bin/python scripts/probe_inputs.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def cli(*args: str) -> tuple[int, str]:
    out = subprocess.run([sys.executable, "-m", "melanoma_utils", *args], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MELANOMA_PROGRESS": "0"})
    lines = [ln for ln in (out.stderr + out.stdout).splitlines()
             if ln.strip() and not ln.startswith(("WARNING: All log", "I0000", "W0000", "E0000"))]
    said = next((ln for ln in lines if ln.startswith(("error", "note", "warning"))), lines[-1] if lines else "")
    return out.returncode, said


def main() -> None:
    from conftest import write_dataset

    tmp = Path(tempfile.mkdtemp(prefix="probes-"))
    csv = write_dataset(tmp / "d", n=60, size=32)
    run = tmp / "run"
    code, _ = cli("train", "--metadata", str(csv), "--out", str(run), "--kind", "meta", "--epochs", "2")
    assert code == 0, "the probe run did not train"
    probes: list[tuple[str, tuple[str, ...]]] = []

    def probe(name: str, *args: str) -> None:
        code, said = cli(*args)
        probes.append((name, (str(code), said)))
        print(f"{name:58s} exit {code}: {said[:220]}", flush=True)

    # 1. shards checked against their manifest
    shards = tmp / "shards"
    cli("shard", "--metadata", str(csv), "--out", str(shards), "--shards", "3")
    manifest = json.loads((shards / "manifest.json").read_text())
    first = shards / manifest["shards"][0]["file"]
    first.write_bytes(first.read_bytes()[: len(first.read_bytes()) // 2])
    probe("shard cut in half", "check", "--metadata", str(shards))
    # 2. names that leave their folder
    bad = pd.read_csv(csv)
    bad.loc[0, "image_name"] = "../outside/secret"
    bad.to_csv(tmp / "traversal.csv", index=False)
    probe("image_name ../outside/secret (train)", "train", "--metadata", str(tmp / "traversal.csv"), "--images",
          str(csv.parent / "train"), "--out", str(tmp / "r2"), "--kind", "meta", "--epochs", "1")
    # 4. evaluation that says what it left out, and never overwrites a run
    preds = tmp / "preds.csv"
    cli("predict", "--run", str(run), "--metadata", str(csv), "--out", str(preds))
    pd.read_csv(preds).head(12).to_csv(tmp / "few.csv", index=False)
    probe("evaluate 12 of 60 predictions", "evaluate", "--predictions", str(tmp / "few.csv"), "--metadata", str(csv))
    probe("evaluate --out RUN (a run folder)", "evaluate", "--predictions", str(preds), "--metadata", str(csv), "--out",
          str(run))
    # 5. one huge image
    from PIL import Image

    big = tmp / "big"
    shutil.copytree(csv.parent / "train", big)
    Image.new("RGB", (12_000, 9_000)).save(big / "IMG_0000.jpg", quality=20)
    probe("a 108 MP image among 60", "check", "--metadata", str(csv), "--images", str(big))
    probe("train --image-size 10000", "train", "--metadata", str(csv), "--out", str(tmp / "r3"), "--image-size", "10000")
    # 6. reproduce: types and YAML named
    (tmp / "p.yaml").write_text("cv_folds: five\n")
    probe("reproduce cv_folds: five", "reproduce", "--params", str(tmp / "p.yaml"))
    (tmp / "q.yaml").write_text("cv_folds: [1, 2\n")
    probe("reproduce with invalid YAML", "reproduce", "--params", str(tmp / "q.yaml"))
    # 7. damaged run folders
    for name, damage in (("config.json", lambda p: p.write_text('{"train": ')),
                         ("model.keras", lambda p: p.write_bytes(p.read_bytes()[:100])),
                         ("encoder.json", lambda p: p.write_text("[1, 2"))):
        broken = tmp / f"broken-{name}"
        shutil.copytree(run, broken)
        damage(broken / name)
        probe(f"predict with a damaged {name}", "predict", "--run", str(broken), "--metadata", str(csv), "--out",
              str(tmp / f"p-{name}.csv"))
    ens = tmp / "ens"
    shutil.copytree(run, ens)
    (ens / "ensemble.json").write_text('{"members": ["../../run"]}')
    probe("ensemble.json naming a member outside", "predict", "--run", str(ens), "--metadata", str(csv), "--out",
          str(tmp / "p-ens.csv"))
    # 8. the smaller ones
    probe("--strategy multiworker without TF_CONFIG", "train", "--metadata", str(csv), "--out", str(tmp / "r4"),
          "--kind", "meta", "--strategy", "multiworker")
    tif = tmp / "tif"
    tif.mkdir()
    for p in (csv.parent / "train").glob("*.jpg"):
        Image.open(p).save(tif / f"{p.stem}.tif")
    probe("images as .tif", "check", "--metadata", str(csv), "--images", str(tif))
    probe("export --format onnx", "export", "--run", str(run), "--out", str(tmp / "onnx"), "--format", "onnx")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
