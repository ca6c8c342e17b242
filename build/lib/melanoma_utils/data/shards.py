"""Patient-isolated, stratified TFRecord shards: the layout the SIIM-ISIC Keras community trains from.

``python -m melanoma_utils shard --metadata CSV --images DIR --out DIR [--shards 15] [--size N]`` writes
``train<KK>-<count>.tfrec`` files (each patient in exactly one shard; malignant share and patients' image counts
balanced across shards by a greedy, triple-stratified assignment) and ``manifest.json`` (per shard: file, count,
malignant, patients, SHA-256). Each record holds the JPEG bytes and ``image_name``, ``patient_id``, ``sex``,
``age_approx``, ``anatom_site_general_challenge``, ``diagnosis``, ``target`` and the ORIGINAL ``width``/``height``
(-1 when unknown). Each shard is written under a temporary name and moved into place; re-running skips the
shards already written with the same plan (resume).

A shard folder is accepted wherever a CSV + image folder is (``--metadata SHARD_DIR`` or ``--shards``): its
records are read with ``tf.data`` (parallel, deterministic), the table is rebuilt, and the JPEGs are unpacked
once into ``<SHARD_DIR>/.unpacked/`` so every image path of the package works unchanged; the shard index is the
``tfrecord`` column, so folds can follow the shards (:func:`melanoma_utils.data.splits.grouped_folds`
``use_tfrecord=True``). Training reads the unpacked files too: the frozen-backbone default embeds each image once
into a per-file cache, and prediction, explanations and the resume guard all work on files, so a second, record-
streaming training path would duplicate the feeds for no measured gain (``scripts/shards_vs_jpeg.py`` compares the
read rates).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import atomic_write, file_digest, refuse_symlink, write_json

MANIFEST = "manifest.json"
#: Features of a record: name -> kind (bytes / int / float).
FEATURES: dict[str, str] = {
    "image": "bytes", "image_name": "bytes", "patient_id": "bytes", "sex": "bytes", "age_approx": "float",
    "anatom_site_general_challenge": "bytes", "diagnosis": "bytes", "target": "int", "width": "int", "height": "int",
}


def assign_shards(df: pd.DataFrame, n_shards: int, seed: int = 0) -> np.ndarray:
    """A shard index per row: every patient in one shard; patients with melanoma, and patients' image counts,
    spread evenly (patients taken by number of melanomas, then size, largest first — ties in seeded random
    order — each to the shard with the fewest malignant images, then the fewest images)."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1; got {n_shards}")
    per = df.groupby("patient_id", sort=False)["target"].agg(["sum", "size"])
    n_patients = len(per)
    if n_shards > n_patients:
        raise ValueError(f"{n_shards} shards for {n_patients} patients: each patient must be in exactly one shard")
    rng = np.random.default_rng(seed)
    per = per.assign(tie=rng.random(n_patients)).sort_values(["sum", "size", "tie"], ascending=[False, False, True])
    malignant = np.zeros(n_shards)
    images = np.zeros(n_shards)
    of_patient: dict[Any, int] = {}
    for pid, row in per.iterrows():
        k = int(np.lexsort((images, malignant))[0]) if row["sum"] else int(np.lexsort((malignant, images))[0])
        of_patient[pid] = k
        malignant[k] += row["sum"]
        images[k] += row["size"]
    return df["patient_id"].map(of_patient).to_numpy(int)


def _example(tf: Any, jpeg: bytes, row: pd.Series) -> bytes:
    def b(v: Any) -> Any:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v if isinstance(v, bytes) else str(v).encode()]))

    def i(v: Any) -> Any:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))

    def f(v: Any) -> Any:
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))

    size = {k: (-1 if pd.isna(row.get(k)) else int(row[k])) for k in ("width", "height")}
    feats = {"image": b(jpeg), "image_name": b(row["image_name"]), "patient_id": b(row["patient_id"]),
             "sex": b(row["sex"]), "age_approx": f(-1.0 if pd.isna(row["age"]) else row["age"]),
             "anatom_site_general_challenge": b(row["site"]), "diagnosis": b(row["diagnosis"]), "target": i(row["target"]),
             "width": i(size["width"]), "height": i(size["height"])}
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def _jpeg_bytes(path: str, size: int | None) -> bytes:
    if size is None and str(path).lower().endswith((".jpg", ".jpeg")):
        return Path(path).read_bytes()
    import cv2

    from .imagefiles import square_resize

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{path}: cannot decode image")
    if size:
        img = square_resize(img, size)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise ValueError(f"{path}: could not encode as JPEG")
    return buf.tobytes()


def write_shards(df: pd.DataFrame, out_dir: str | os.PathLike[str], n_shards: int = 15, size: int | None = None,
                 seed: int = 0, source: str = "", progress: bool = False) -> Path:
    """Write the normalised table's rows (with readable ``image_path``) as TFRecord shards + ``manifest.json``.

    Re-running with the same rows and settings keeps the shards already written (checked by SHA-256) and writes
    the rest; another plan in the same folder is an error naming it. Returns the manifest's path.
    """
    import tensorflow as tf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shard_of = assign_shards(df, n_shards, seed)
    plan = hashlib.sha1(json.dumps({"rows": list(map(str, df["image_name"])), "shards": shard_of.tolist(), "size": size,
                                    "seed": seed}).encode()).hexdigest()[:16]
    manifest_path = out / MANIFEST
    old: dict[str, Any] = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    if old and old.get("plan") != plan:
        raise FileExistsError(f"{out} holds shards of another plan (other rows, shard count, size or seed); "
                              "choose another --out or delete it")
    done = {s["shard"]: s for s in old.get("shards", [])}
    entries: list[dict[str, Any]] = []

    def write_manifest(shards: list[dict[str, Any]]) -> None:
        write_json(manifest_path, {"plan": plan, "n_shards": n_shards, "size": size, "seed": seed, "source": Path(source).name,
                                   "shards": shards})

    for k in range(n_shards):
        part = df[shard_of == k]
        name = f"train{k:02d}-{len(part)}.tfrec"
        prev = done.get(k)
        if prev and (out / name).is_file() and file_digest(out / name, "sha256") == prev["sha256"]:
            entries.append(prev)
            continue

        def write(tmp: Path, part: pd.DataFrame = part) -> None:
            with tf.io.TFRecordWriter(str(tmp)) as w:
                for _, row in part.iterrows():
                    w.write(_example(tf, _jpeg_bytes(row["image_path"], size), row))

        atomic_write(out / name, write)
        entries.append({"shard": k, "file": name, "n": len(part), "n_malignant": int(part["target"].sum()),
                        "n_patients": int(part["patient_id"].nunique()), "sha256": file_digest(out / name, "sha256")})
        write_manifest(entries + [done[j] for j in sorted(done) if j > k])  # finished so far + those still to check
        if progress:
            print(f"shard {k + 1}/{n_shards}: {name} ({entries[-1]['n_malignant']} malignant, "
                  f"{entries[-1]['n_patients']} patients)", flush=True)
    write_manifest(entries)
    return manifest_path


def is_shard_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder written by :func:`write_shards`."""
    return (Path(path) / MANIFEST).is_file()


class ShardError(ValueError):
    """A shard folder that does not match its manifest (edited, cut or damaged), or a record that cannot be used."""


#: Per shard, the size and modification time at which its SHA-256 and record count last matched the manifest.
VERIFIED = ".verified.json"


def read_manifest(shard_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest, with each listed shard checked to exist and to be named inside the folder (errors name it)."""
    from .imagefiles import unsafe_image_name

    shard_dir = Path(shard_dir)
    if not is_shard_folder(shard_dir):
        raise FileNotFoundError(f"{shard_dir}: not a shard folder ({MANIFEST} missing; write one with `shard`)")
    try:
        manifest = json.loads((shard_dir / MANIFEST).read_text())
        shards = manifest["shards"]
        bad = [s["file"] for s in shards if unsafe_image_name(str(s["file"]))]
    except (ValueError, KeyError, TypeError) as exc:
        raise ShardError(f"{shard_dir / MANIFEST}: not a shard manifest ({exc}); re-run `shard`") from None
    if bad:
        raise ShardError(f"{shard_dir / MANIFEST}: shard file names must lie in the folder; got {bad[0]!r}")
    missing = [s["file"] for s in shards if not (shard_dir / s["file"]).is_file()]
    if missing:
        raise FileNotFoundError(f"{shard_dir}: shard file(s) listed in {MANIFEST} are missing: {', '.join(missing)}")
    return manifest


def verify_shards(shard_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Check every shard against ``manifest.json``: its SHA-256 and its number of records (a shard cut at a record
    boundary is still a valid TFRecord file, so the count matters). A shard that matched before at the same size and
    modification time is not read again (:data:`VERIFIED`). Returns the manifest; a mismatch or a truncated record
    is a :class:`ShardError` naming the shard, what differs and the fix."""
    import tensorflow as tf

    shard_dir = Path(shard_dir)
    manifest = read_manifest(shard_dir)
    seen_path = shard_dir / VERIFIED
    try:
        seen = json.loads(seen_path.read_text()) if seen_path.is_file() else {}
    except ValueError:
        seen = {}
    changed = False
    for s in manifest["shards"]:
        f = shard_dir / s["file"]
        stamp = [f.stat().st_size, f.stat().st_mtime_ns, s.get("sha256"), s.get("n")]
        if seen.get(s["file"]) == stamp:
            continue
        fix = f"the shard folder was changed or damaged; re-run `shard` to rewrite {shard_dir}"
        digest = file_digest(f, "sha256")
        if digest != s.get("sha256"):
            raise ShardError(f"{f}: SHA-256 {digest[:12]}… differs from {MANIFEST}'s {str(s.get('sha256'))[:12]}…: {fix}")
        try:
            count = sum(1 for _ in tf.data.TFRecordDataset(str(f)))
        except tf.errors.DataLossError as exc:
            raise ShardError(f"{f}: truncated or corrupt record ({exc.message.splitlines()[0]}): {fix}") from None
        if count != s.get("n"):
            raise ShardError(f"{f}: holds {count} records, {MANIFEST} lists {s.get('n')}: {fix}")
        seen[s["file"]] = stamp
        changed = True
    if changed:
        write_json(seen_path, seen)
    return manifest


def _parse(tf: Any, with_image: bool) -> Any:
    spec = {k: tf.io.FixedLenFeature([], {"bytes": tf.string, "int": tf.int64, "float": tf.float32}[kind])
            for k, kind in FEATURES.items() if with_image or k != "image"}
    return lambda record: tf.io.parse_single_example(record, spec)


def records(shard_dir: str | os.PathLike[str], with_image: bool = True) -> Any:
    """A ``tf.data.Dataset`` of parsed records (dicts), shards read in parallel (``interleave``), in a
    deterministic order: shard by shard, record by record, whatever the parallelism."""
    import tensorflow as tf

    shard_dir = Path(shard_dir)
    manifest = verify_shards(shard_dir)
    files = [str(shard_dir / s["file"]) for s in sorted(manifest["shards"], key=lambda s: s["shard"])]
    shard_ids = [s["shard"] for s in sorted(manifest["shards"], key=lambda s: s["shard"])]
    ds = tf.data.Dataset.from_tensor_slices((files, shard_ids))
    ds = ds.interleave(lambda f, k: tf.data.TFRecordDataset(f).map(lambda r: (r, k)), cycle_length=4,
                       block_length=1 << 30, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    parse = _parse(tf, with_image)
    return ds.map(lambda r, k: {**parse(r), "shard": k}, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def read_shard_table(shard_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The raw ISIC-schema table of a shard folder (``tfrecord`` = shard index), in record order."""
    rows = [{k: (v.decode() if isinstance(v, bytes) else v.item()) for k, v in rec.items()}
            for rec in _checked(shard_dir, records(shard_dir, with_image=False))]
    t = pd.DataFrame(rows)
    if t.empty:
        raise ValueError(f"{shard_dir}: the shards hold no records")
    t = t.rename(columns={"shard": "tfrecord"})
    t["age_approx"] = t["age_approx"].where(t["age_approx"] >= 0)
    for col in ("width", "height"):
        t[col] = t[col].where(t[col] > 0)
    t["benign_malignant"] = np.where(t["target"] == 1, "malignant", "benign")
    return t


def _checked(shard_dir: Path, ds: Any) -> Any:
    """Iterate a records dataset as NumPy, refusing a record whose ``image_name`` could leave a folder and turning a
    damaged record into a :class:`ShardError` naming the folder."""
    import tensorflow as tf

    from .imagefiles import unsafe_image_name

    it = ds.as_numpy_iterator()
    k = 0
    while True:
        try:
            rec = next(it)
        except StopIteration:
            return
        except tf.errors.DataLossError as exc:
            raise ShardError(f"{shard_dir}: a damaged record after {k} good ones ({exc.message.splitlines()[0]}); "
                             "re-run `shard` to rewrite the folder") from None
        name = rec["image_name"].decode(errors="replace")
        reason = unsafe_image_name(name)
        if reason:
            raise ShardError(f"{shard_dir}: shard {rec['shard']} record {k} has image_name {name!r}, which {reason}: "
                             "a name must be a plain file name; re-run `shard` from a clean table")
        k += 1
        yield rec


def unpack_images(shard_dir: str | os.PathLike[str]) -> Path:
    """Write each record's JPEG to ``<shard_dir>/.unpacked/<image_name>.jpg`` (once; complete files kept) and
    return that folder."""
    shard_dir = Path(shard_dir)
    folder = shard_dir / ".unpacked"
    refuse_symlink(folder)
    folder.mkdir(exist_ok=True)
    stamp = folder / ".complete"
    refuse_symlink(stamp)
    plan = read_manifest(shard_dir)["plan"]
    if stamp.is_file() and stamp.read_text() == plan:
        return folder
    for rec in _checked(shard_dir, records(shard_dir)):
        path = folder / f"{rec['image_name'].decode()}.jpg"
        refuse_symlink(path)
        if not path.is_file():
            atomic_write(path, lambda tmp, data=rec["image"]: tmp.write_bytes(data))
    atomic_write(stamp, lambda tmp: tmp.write_text(plan))  # replaces the name, never writes through it
    return folder
