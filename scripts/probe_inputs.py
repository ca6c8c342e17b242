"""Bad-input and fault probes through the command line, as a demanding user would try them: each probe states what a
correct answer is (exit status and words of the one-line message, or a file left untouched) and prints PASS or FAIL
with the message a user sees, then the totals (the tests assert the same behaviours in-process).

    make probe        # or: .venv/bin/python scripts/probe_inputs.py
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


def cli(*args: str, words: str = "") -> tuple[int, str]:
    """Exit status and the line a user reads: the first holding ``words`` if any does, else the first error/note/warning
    line (or the last line)."""
    out = subprocess.run([sys.executable, "-m", "melanoma_utils", *args], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MELANOMA_PROGRESS": "0"})
    lines = [ln for ln in (out.stderr + out.stdout).splitlines()
             if ln.strip() and not ln.startswith(("WARNING: All log", "I0000", "W0000", "E0000"))]
    said = next((ln for ln in lines if words and words.lower() in ln.lower()), None) or next(
        (ln for ln in lines if ln.startswith(("error", "note", "warning"))), lines[-1] if lines else "")
    return out.returncode, said


RESULTS: list[tuple[str, bool]] = []


def expect(name: str, ok: bool, said: str) -> None:
    RESULTS.append((name, ok))
    print(f"{'PASS' if ok else 'FAIL'}  {name:58s} {said[:200]}", flush=True)


def probe(name: str, code: int | None, words: str, *args: str) -> None:
    """Run the CLI; PASS when the exit status is ``code`` (None: any non-zero) and the message holds ``words``."""
    got, said = cli(*args, words=words)
    ok = (got != 0 if code is None else got == code) and words.lower() in said.lower()
    expect(name, ok, f"exit {got}: {said}")


def legacy_copy(run: Path, to: Path) -> Path:
    """A copy of ``run`` without its record.json (a run folder from before records): the probes that edit a file by
    hand then reach the reader's own checks, not the record's (round three probes the record)."""
    shutil.copytree(run, to)
    (to / "record.json").unlink(missing_ok=True)
    return to


def round_one(tmp: Path, csv: Path, run: Path) -> None:
    """The first round's probes (shards, traversal, evaluation, sizes, parameters, damaged folders)."""
    from PIL import Image

    shards = tmp / "shards"
    cli("shard", "--metadata", str(csv), "--out", str(shards), "--shards", "3")
    manifest = json.loads((shards / "manifest.json").read_text())
    first = shards / manifest["shards"][0]["file"]
    first.write_bytes(first.read_bytes()[: len(first.read_bytes()) // 2])
    probe("shard cut in half", None, "manifest", "check", "--metadata", str(shards))
    bad = pd.read_csv(csv)
    bad.loc[0, "image_name"] = "../outside/secret"
    bad.to_csv(tmp / "traversal.csv", index=False)
    probe("image_name ../outside/secret (train)", 2, "image_name", "train", "--metadata", str(tmp / "traversal.csv"),
          "--images", str(csv.parent / "train"), "--out", str(tmp / "r2"), "--kind", "meta", "--epochs", "1")
    preds = tmp / "preds.csv"
    cli("predict", "--run", str(run), "--metadata", str(csv), "--out", str(preds))
    pd.read_csv(preds).head(12).to_csv(tmp / "few.csv", index=False)
    probe("evaluate 12 of 60 predictions", 2, "too few", "evaluate", "--predictions", str(tmp / "few.csv"),
          "--metadata", str(csv))
    probe("evaluate --out RUN (a run folder)", 2, "run folder", "evaluate", "--predictions", str(preds), "--metadata",
          str(csv), "--out", str(run))
    big = tmp / "big"
    shutil.copytree(csv.parent / "train", big)
    Image.new("RGB", (12_000, 9_000)).save(big / "IMG_0000.jpg", quality=20)
    probe("a 108 MP image among 60", 1, "image too large", "check", "--metadata", str(csv), "--images", str(big))
    probe("train --image-size 10000", 2, "1024", "train", "--metadata", str(csv), "--out", str(tmp / "r3"),
          "--image-size", "10000")
    (tmp / "p.yaml").write_text("cv_folds: five\n")
    probe("reproduce cv_folds: five", 2, "cv_folds", "reproduce", "--params", str(tmp / "p.yaml"))
    (tmp / "q.yaml").write_text("cv_folds: [1, 2\n")
    probe("reproduce with invalid YAML", 2, "line", "reproduce", "--params", str(tmp / "q.yaml"))
    for name, damage in (("config.json", lambda p: p.write_text('{"train": ')),
                         ("model.keras", lambda p: p.write_bytes(p.read_bytes()[:100])),
                         ("encoder.json", lambda p: p.write_text("[1, 2"))):
        broken = legacy_copy(run, tmp / f"broken-{name}")
        damage(broken / name)
        probe(f"predict with a damaged {name}", 2, "damaged", "predict", "--run", str(broken), "--metadata", str(csv),
              "--out", str(tmp / f"p-{name}.csv"))
    ens = legacy_copy(run, tmp / "ens")
    (ens / "ensemble.json").write_text('{"members": ["../../run"]}')
    probe("ensemble.json naming a member outside", 2, "outside", "predict", "--run", str(ens), "--metadata", str(csv),
          "--out", str(tmp / "p-ens.csv"))
    probe("--strategy multiworker without TF_CONFIG", 2, "TF_CONFIG", "train", "--metadata", str(csv), "--out",
          str(tmp / "r4"), "--kind", "meta", "--strategy", "multiworker")
    tif = tmp / "tif"
    tif.mkdir()
    for p in (csv.parent / "train").glob("*.jpg"):
        Image.open(p).save(tif / f"{p.stem}.tif")
    probe("images as .tif", 0, "corrupt image files: 0", "check", "--metadata", str(csv), "--images", str(tif))


def round_two(tmp: Path, csv: Path, run: Path) -> None:
    """The second round: nothing a user made is replaced, no write through a link, decoders that cannot be bombed or
    fooled by a name, one line for every fault."""
    import cv2
    from PIL import Image

    from conftest import png_claiming

    d_tmp = tmp / "D.tmp"
    d_tmp.mkdir()
    (d_tmp / "keep.txt").write_text("keep")
    cli("demo-data", "--out", str(tmp / "D"), "--n-images", "12", "--image-size", "32")
    expect("demo-data --out D leaves a user's D.tmp alone", (d_tmp / "keep.txt").is_file(), str(sorted(os.listdir(tmp))[:6]))
    expect("demo-data --out D writes nothing beside D", not (tmp / "D-ham10000").exists(), "")
    mine = tmp / "mine"
    mine.mkdir()
    (mine / "train.csv").write_text("my data")
    probe("demo-data --overwrite on a user's folder", 2, "user's folder", "demo-data", "--out", str(mine), "--overwrite")
    expect("... and the user's file is intact", (mine / "train.csv").read_text() == "my data", "")
    probe("export --out RUN --overwrite", 2, "run folder", "export", "--run", str(run), "--out", str(run), "--overwrite")
    probe("predict --out RUN/val_predictions.csv --overwrite", 2, "run folder", "predict", "--run", str(run),
          "--metadata", str(csv), "--out", str(run / "val_predictions.csv"), "--overwrite")
    image = csv.parent / "train" / "IMG_0001.jpg"
    before = image.read_bytes()
    probe("predict --image X --explain X", 2, "input image", "predict", "--run", str(run), "--image", str(image),
          "--explain", str(image))
    expect("... and the image is intact", image.read_bytes() == before, "")
    shards = tmp / "shards2"
    cli("shard", "--metadata", str(csv), "--out", str(shards), "--shards", "2")
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    (shards / ".unpacked").symlink_to(elsewhere, target_is_directory=True)
    probe("a shard folder whose .unpacked is a link", 2, "symbolic link", "check", "--metadata", str(shards))
    expect("... and nothing was written through it", not any(elsewhere.iterdir()), "")
    bombs = tmp / "bombs"
    shutil.copytree(csv.parent / "train", bombs)
    (bombs / "IMG_0000.jpg").unlink()
    (bombs / "IMG_0000.png").write_bytes(png_claiming(20_000, 20_000))
    probe("a PNG header claiming 20,000 x 20,000", 1, "image too large", "check", "--metadata", str(csv), "--images", str(bombs))
    odd = tmp / "odd"
    shutil.copytree(csv.parent / "train", odd)
    rgb = cv2.cvtColor(cv2.imread(str(odd / "IMG_0000.jpg")), cv2.COLOR_BGR2RGB)
    Image.fromarray(rgb).save(odd / "IMG_0000.jpg", format="TIFF")  # TIFF bytes named .jpg
    Image.fromarray(rgb[..., 0] > 128).save(odd / "IMG_0001.bmp", format="BMP")
    (odd / "IMG_0001.jpg").unlink()
    os.rename(odd / "IMG_0002.jpg", odd / "IMG_0002.JPG")
    probe("TIFF named .jpg, 1-bit BMP, upper-case .JPG", 0, "corrupt image files: 0", "check", "--metadata", str(csv), "--images", str(odd))
    probe("train --kind image on those files", 0, "run folder", "train", "--metadata", str(csv), "--images", str(odd), "--out",
          str(tmp / "odd-run"), "--kind", "image", "--backbone", "cnn", "--image-size", "32", "--epochs", "1")
    (tmp / "a-file").write_text("x")
    probe("train --out an existing file", 2, "is a file", "train", "--metadata", str(csv), "--out", str(tmp / "a-file"),
          "--kind", "meta", "--epochs", "1")
    empty_cfg = legacy_copy(run, tmp / "empty-config")
    (empty_cfg / "config.json").write_text("{}")
    probe("a run whose config.json is {}", 2, "lacks 'train'", "predict", "--run", str(empty_cfg), "--metadata",
          str(csv), "--out", str(tmp / "p-empty.csv"))
    selfish = legacy_copy(run, tmp / "selfish")
    (selfish / "ensemble.json").write_text('{"members": ["."]}')
    probe("an ensemble.json that names itself", 2, "names itself", "predict", "--run", str(selfish), "--metadata",
          str(csv), "--out", str(tmp / "p-self.csv"))
    (tmp / "empty.csv").write_text("")
    probe("evaluate an empty predictions file", 2, "empty.csv", "evaluate", "--predictions", str(tmp / "empty.csv"),
          "--metadata", str(csv))
    dup = pd.read_csv(csv)
    dup.insert(3, "target_copy", 1 - dup["target"])
    dup.to_csv(tmp / "dup.csv", index=False)
    (tmp / "dup.csv").write_text((tmp / "dup.csv").read_text().replace("target_copy", "target", 1))
    probe("a CSV with two conflicting target columns", 2, "more than once", "check", "--metadata", str(tmp / "dup.csv"),
          "--images", str(csv.parent / "train"))
    os.environ["MELANOMA_UTILS_CACHE"] = str(tmp / "a-file" / "cache")
    probe("MELANOMA_UTILS_CACHE under a file", 2, "a-file", "train", "--metadata", str(csv), "--out", str(tmp / "r5"),
          "--kind", "image", "--image-size", "32", "--epochs", "1")
    del os.environ["MELANOMA_UTILS_CACHE"]


def round_three(tmp: Path, csv: Path, run: Path) -> None:
    """The third round's probes: code in a weights file, run folders assembled from two runs, an unwritable cache
    without MELANOMA_UTILS_CACHE, a bad runner key, a formula as an image name, start-up lines, two writers."""
    import pickle

    marker = tmp / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    weights = tmp / "payload.pth"
    weights.write_bytes(pickle.dumps(Payload()))
    res = subprocess.run([sys.executable, "-c", "import sys; from melanoma_utils.models.efficientnet_lite import "
                          "imagenet_weights_file as f; f(checkpoint=sys.argv[1])", str(weights)], capture_output=True,
                         text=True, cwd=ROOT)
    said = (res.stderr.strip().splitlines() or [""])[-1]
    expect("a weights file whose first pickle runs code", res.returncode != 0 and not marker.exists()
           and "payload.pth" in said, f"exit {res.returncode}, code ran: {marker.exists()}: {said}")
    paper = tmp / "paper-run"
    cli("train", "--metadata", str(csv), "--out", str(paper), "--kind", "meta", "--features", "paper", "--epochs", "1")
    for name in ("encoder.json", "model.keras"):
        mixed = tmp / f"mixed-{name}"
        shutil.copytree(run, mixed)
        shutil.copy(paper / name, mixed / name)
        probe(f"a run folder with the {name} of another run", 2, name, "predict", "--run", str(mixed), "--metadata",
              str(csv), "--out", str(tmp / f"mixed-{name}.csv"))
    (tmp / "not-a-folder").write_text("x")
    env = {k: os.environ.pop(k) for k in ("MELANOMA_UTILS_CACHE",) if k in os.environ}
    os.environ["XDG_CACHE_HOME"] = str(tmp / "not-a-folder" / "cache")
    probe("XDG_CACHE_HOME unwritable, MELANOMA_UTILS_CACHE unset", 2, "MELANOMA_UTILS_CACHE", "train", "--metadata",
          str(csv), "--out", str(tmp / "r6"), "--kind", "image", "--image-size", "32", "--epochs", "1")
    del os.environ["XDG_CACHE_HOME"]
    os.environ.update(env)
    report = tmp / "report-not-made"
    (tmp / "t.yaml").write_text(f"report_dir: {report}\nsynthetic: true\ncell_timeout: \"abc\"\n")
    probe("reproduce cell_timeout: abc", 2, "cell_timeout", "reproduce", "--params", str(tmp / "t.yaml"))
    expect("... and nothing written before the refusal", not report.exists(), f"{report} exists: {report.exists()}")
    meta = pd.read_csv(csv).head(6)
    meta.loc[0, "image_name"] = "=HYPERLINK(\"evil\",\"x\")1"
    meta.to_csv(tmp / "formula.csv", index=False)
    cli("predict", "--run", str(run), "--metadata", str(tmp / "formula.csv"), "--out", str(tmp / "formula-preds.csv"))
    first = (tmp / "formula-preds.csv").read_text().splitlines()[1] if (tmp / "formula-preds.csv").exists() else ""
    expect("an image named =HYPERLINK(...) in predict's CSV", first.startswith(("\"'=", "'=")), first[:60])
    out = subprocess.run([sys.executable, "-m", "melanoma_utils", "train", "--metadata", str(csv), "--out",
                          str(tmp / "r7"), "--kind", "meta", "--epochs", "2"], capture_output=True, text=True, cwd=ROOT)
    both = out.stdout + out.stderr
    expect("train's output in a log: no C++ start-up lines, one line per epoch",
           out.returncode == 0 and "absl" not in both and "oneDNN" not in both and "\x08" not in both,
           next((ln for ln in both.splitlines() if "Epoch" in ln or "absl" in ln), "")[:80])
    cmd = [sys.executable, "-m", "melanoma_utils", "predict", "--run", str(run), "--metadata", str(csv), "--out",
           str(tmp / "twice.csv")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(2)]
    codes = sorted(p.wait() for p in procs)
    expect("two predicts into one new file at once", codes == [0, 2], f"exit codes {codes}")


def main() -> int:
    from conftest import write_dataset

    tmp = Path(tempfile.mkdtemp(prefix="probes-"))
    csv = write_dataset(tmp / "d", n=60, size=32)
    run = tmp / "run"
    code, _ = cli("train", "--metadata", str(csv), "--out", str(run), "--kind", "meta", "--epochs", "2")
    assert code == 0, "the probe run did not train"
    try:
        round_one(tmp, csv, run)
        round_two(tmp, csv, run)
        round_three(tmp, csv, run)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    failed = [name for name, ok in RESULTS if not ok]
    print(f"\n{len(RESULTS) - len(failed)} of {len(RESULTS)} probes pass" + (f"; failing: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
