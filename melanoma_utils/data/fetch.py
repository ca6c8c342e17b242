"""``make data``: fetch the official SIIM-ISIC 2020 training data and resize it once.

Steps: download the official metadata, duplicate list and JPEG archive (resumable HTTP range requests,
size-verified, CRC-verified on extraction), then :func:`resize_into_layout` writes
``data/isic2020-<size>/train.csv`` + ``train/<image_name>.jpg`` (the resized-JPEG layout), recording each
image's ORIGINAL width and height. The transfer needs internet; everything after it is tested offline on
the shared subset.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import pandas as pd

from ..atomic import MARKER, atomic_write, check_replaceable, refuse_symlink, replace_folder
from .imagefiles import square_resize
from .isic import DataError, drop_duplicates, load_metadata, read_duplicates

ISIC_2020_BASE = "https://isic-challenge-data.s3.amazonaws.com/2020/"
FILES = {
    "metadata": "ISIC_2020_Training_GroundTruth_v2.csv",
    "duplicates": "ISIC_2020_Training_Duplicates.csv",
    "images": "ISIC_2020_Training_JPEG.zip",  # ~23 GB
}


#: Each raw folder's record of verified downloads: ``{file name: {"sha256", "bytes", "etag"}}``.
CHECKSUMS = "SHA256SUMS.json"
#: Part sizes (MiB) tried when checking an S3 multipart ETag (``md5(md5(part_1) … md5(part_n))-n``).
_S3_PART_MIB = (5, 8, 16, 32, 50, 64, 100, 128, 256, 512, 1024)


def _digests(path: Path, part_bytes: tuple[int, ...] = ()) -> tuple[str, str, dict[int, str]]:
    """One pass over ``path``: its SHA-256, MD5, and for each part size the S3 multipart ETag it would have."""
    import hashlib

    sha, md5 = hashlib.sha256(), hashlib.md5()
    parts: dict[int, list[bytes]] = {p: [] for p in part_bytes}
    current = {p: hashlib.md5() for p in part_bytes}
    filled = dict.fromkeys(part_bytes, 0)
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            sha.update(block)
            md5.update(block)
            for p in part_bytes:
                view = memoryview(block)
                while len(view):
                    take = min(len(view), p - filled[p])
                    current[p].update(view[:take])
                    filled[p] += take
                    view = view[take:]
                    if filled[p] == p:
                        parts[p].append(current[p].digest())
                        current[p], filled[p] = hashlib.md5(), 0
    multipart = {}
    for p in part_bytes:
        chunks = parts[p] + ([current[p].digest()] if filled[p] else [])
        multipart[p] = f"{hashlib.md5(b''.join(chunks)).hexdigest()}-{len(chunks)}"
    return sha.hexdigest(), md5.hexdigest(), multipart


def _check_etag(path: Path, etag: str) -> tuple[bool | None, str]:
    """One pass over ``path``: whether it has the content an S3-style ``etag`` promises (``None`` when the ETag is not
    a checksum), and its SHA-256."""
    import re

    etag = etag.strip().strip('"').lower()
    m = re.fullmatch(r"[0-9a-f]{32}(?:-(\d+))?", etag)
    if not m:
        return None, _digests(path)[0]
    size = path.stat().st_size
    n = int(m.group(1)) if m.group(1) else None
    sizes = tuple(p << 20 for p in _S3_PART_MIB if n is not None and -(-size // (p << 20)) == n)
    sha, md5, multipart = _digests(path, sizes)
    return (md5 == etag if n is None else etag in multipart.values()), sha


def etag_matches(path: Path, etag: str) -> bool | None:
    """Whether ``path`` has the content an S3-style ``etag`` promises: the MD5 of a single-part upload, or the
    multipart form (``md5 of the parts' md5s-N``, part size found among :data:`_S3_PART_MIB`). ``None`` when the
    ETag is not of either form (nothing to check)."""
    return _check_etag(path, etag)[0]


def _record(dest: Path) -> dict[str, dict[str, object]]:
    path = dest.parent / CHECKSUMS
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}


def _save_record(dest: Path, sha256: str | None = None, **entry: object) -> None:
    """Record ``dest``'s SHA-256 (computed unless given) and size in :data:`CHECKSUMS`, with ``entry``."""
    record = _record(dest)
    record[dest.name] = {"sha256": sha256 or _digests(dest)[0], "bytes": dest.stat().st_size, **entry}
    atomic_write(dest.parent / CHECKSUMS, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))


def _verified(dest: Path) -> bool:
    """Whether ``dest`` still has the bytes recorded when it was downloaded and verified. A file with no record (placed
    by hand) is recorded as it is and used."""
    entry = _record(dest).get(dest.name)
    if not entry:
        _save_record(dest, etag=None, checked_against="placed by hand (no server checksum compared)")
        return True
    return dest.stat().st_size == entry["bytes"] and _digests(dest)[0] == entry["sha256"]


def download(url: str, dest: Path, chunk: int = 1 << 20, attempts: int = 3) -> Path:
    """Download ``url`` to ``dest`` and verify it; return ``dest``.

    A transfer cut off half-way resumes from ``dest.part`` (HTTP range request), up to ``attempts`` tries in one call
    (a later call resumes too). The file must have the server's size and, where the server publishes one, the
    content its ETag promises (S3's MD5, single- or multipart: :func:`etag_matches`); a mismatch discards it. A
    verified file's SHA-256 is recorded in ``CHECKSUMS`` beside it: an existing ``dest`` is reused only while it still
    has those bytes (a file damaged on disk is fetched again)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    refuse_symlink(dest.parent, dest, dest.with_name(dest.name + ".part"))
    if dest.is_file():
        if _verified(dest):
            return dest
        print(f"{dest}: not the bytes recorded when it was downloaded ({CHECKSUMS}); fetching it again", flush=True)
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, attempts + 1):
        total, etag = _transfer(url, part, chunk)
        if part.stat().st_size == total or not total:
            break
        if attempt == attempts:
            raise DataError(f"{part}: incomplete download ({part.stat().st_size} of {total} bytes after {attempts} "
                            "tries); run again to resume")
        print(f"{dest.name}: transfer cut at {part.stat().st_size:,} of {total:,} bytes; resuming", flush=True)
    ok, sha = _check_etag(part, etag)  # one pass: the ETag check and the SHA-256 to record
    if ok is False:
        part.unlink()
        raise DataError(f"{url}: the downloaded file does not match the server's checksum (ETag {etag}); it was "
                        "deleted, run again to download it afresh")
    os.replace(part, dest)
    _save_record(dest, sha, etag=etag or None, checked_against="ETag" if ok else "size only (the server published no checksum)")
    return dest


def _transfer(url: str, part: Path, chunk: int) -> tuple[int, str]:
    """Append the rest of ``url`` to ``part`` (a range request when ``part`` has bytes); returns the full size the
    server states and its ETag. A connection that breaks off mid-transfer returns with what arrived."""
    import http.client

    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=60)
    except OSError as exc:
        raise DataError(f"cannot download {url} ({exc}); check the internet connection, or place the file "
                        f"at {part.with_suffix('')} by hand") from None
    with resp:
        resumed = resp.status == 206
        total = int(resp.headers.get("Content-Length", 0)) + (have if resumed else 0)
        etag = resp.headers.get("ETag", "") or ""
        from tqdm.auto import tqdm

        with part.open("ab" if resumed else "wb") as fh, tqdm(total=total, initial=have if resumed else 0, unit="B",
                                                              unit_scale=True, desc=part.stem) as bar:
            try:
                while block := resp.read(chunk):
                    fh.write(block)
                    bar.update(len(block))
            except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
                if isinstance(exc, http.client.IncompleteRead) and exc.partial:
                    fh.write(exc.partial)
    return total, etag


def _resize_one(args: tuple[bytes, Path, int]) -> tuple[int, int] | None:
    data, out, size = args
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return None
    h, w = img.shape[:2]
    atomic_write(out, lambda tmp: cv2.imwrite(str(tmp), square_resize(img, size), [cv2.IMWRITE_JPEG_QUALITY, 90]))
    return w, h


def layout_rows(metadata_csv: Path, duplicates_csv: Path | None = None, benign: int | None = None,
                seed: int = 0) -> pd.DataFrame:
    """The rows of ``metadata_csv`` (as text, the file's own columns) a layout keeps: the official duplicates of
    ``duplicates_csv`` dropped, and with ``benign`` all malignant rows plus that many benign rows sampled with
    ``seed``."""
    ds = load_metadata(metadata_csv)
    raw = pd.read_csv(metadata_csv, dtype=str)
    if duplicates_csv is not None:
        kept, _ = drop_duplicates(ds.frame, read_duplicates(duplicates_csv))
        raw = raw[raw["image_name"].isin(set(kept["image_name"]))]
    if benign is not None:
        is_mal = raw["target"].astype(int) == 1
        ben = raw[~is_mal].sample(n=min(benign, int((~is_mal).sum())), random_state=seed)
        raw = pd.concat([raw[is_mal], ben]).sort_index()
    return raw


def resize_into_layout(metadata_csv: Path, sources: Iterable[tuple[str, bytes]] | None, out_dir: Path, size: int = 256,
                       *, rows: pd.DataFrame | None = None, images_dir: Path | None = None,
                       workers: int | None = None) -> Path:
    """Write the resized-JPEG layout for ``metadata_csv`` into ``out_dir``; return its ``train.csv``.

    ``rows``: the metadata rows to keep (:func:`layout_rows`: duplicates dropped, benign rows sampled; default every
    row). Images come from ``sources`` (``(image_name, jpeg_bytes)`` pairs, e.g. read from the zip) or from
    ``images_dir``. Re-running rewrites every image (safe: each is written under a temporary name and moved into
    place).
    """
    raw = rows if rows is not None else layout_rows(metadata_csv)
    wanted = set(raw["image_name"])
    refuse_symlink(out_dir, out_dir / "train")
    (out_dir / "train").mkdir(parents=True, exist_ok=True)
    sizes: dict[str, tuple[int, int]] = {}
    if sources is None:
        if images_dir is None:
            raise ValueError("give sources or images_dir")
        sources = ((n, (images_dir / f"{n}.jpg").read_bytes()) for n in raw["image_name"])
    jobs = (
        (name, (data, out_dir / "train" / f"{name}.jpg", size))
        for name, data in sources
        if name in wanted
    )
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 4) as pool:

        def flush(batch: list[tuple[str, tuple[bytes, Path, int]]]) -> None:
            for (name, _), res in zip(batch, pool.map(_resize_one, [j for _, j in batch])):
                if res is not None:
                    sizes[name] = res

        batch: list[tuple[str, tuple[bytes, Path, int]]] = []
        for job in jobs:  # in batches of 64, so that the archive is never held in memory at once
            batch.append(job)
            if len(batch) >= 64:
                flush(batch)
                batch = []
        flush(batch)
    raw = raw[raw["image_name"].isin(set(sizes))].copy()
    if "width" not in raw or raw["width"].isna().all():
        raw["width"] = [sizes[n][0] for n in raw["image_name"]]
        raw["height"] = [sizes[n][1] for n in raw["image_name"]]
    return atomic_write(out_dir / "train.csv", lambda tmp: raw.to_csv(tmp, index=False))


def zip_sources(zip_path: Path) -> Iterable[tuple[str, bytes]]:
    """``(image_name, bytes)`` for each JPEG in the official archive; a CRC error names the member."""
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            if info.filename.lower().endswith(".jpg"):
                try:
                    yield Path(info.filename).stem, zf.read(info)
                except zipfile.BadZipFile as exc:
                    raise DataError(f"{zip_path}: {info.filename} is corrupt ({exc}); delete the zip and "
                                    "run `make data` again") from None


def fetch(out_root: Path, size: int = 256, benign: int | None = None, seed: int = 0,
          base_url: str = ISIC_2020_BASE) -> Path:
    """Download the official files into ``out_root/isic2020-raw`` (verified: :func:`download`) and build
    ``out_root/isic2020-<size>``; return its ``train.csv``. A second run with the same files and settings downloads
    and resizes nothing (``.complete.json`` in the folder records what it was built from); ``base_url``: a mirror
    with the official file names."""
    raw_dir = out_root / "isic2020-raw"
    meta = download(base_url + FILES["metadata"], raw_dir / FILES["metadata"])
    dups = download(base_url + FILES["duplicates"], raw_dir / FILES["duplicates"])
    archive = download(base_url + FILES["images"], raw_dir / FILES["images"])
    out_dir = out_root / f"isic2020-{size}"
    record = _record(archive)
    built_from = {"files": {p.name: record[p.name]["sha256"] for p in (meta, dups, archive)}, "size": size,
                  "benign": benign, "seed": seed}
    stamp = out_dir / ".complete.json"
    try:
        if (out_dir / "train.csv").is_file() and json.loads(stamp.read_text()) == built_from:
            return out_dir / "train.csv"
    except (OSError, ValueError):
        pass
    stamp.unlink(missing_ok=True)
    csv = resize_into_layout(meta, zip_sources(archive), out_dir, size, rows=layout_rows(meta, dups, benign, seed))
    shutil.copy2(dups, out_dir / FILES["duplicates"])
    atomic_write(stamp, lambda tmp: Path(tmp).write_text(json.dumps(built_from, indent=2)))
    return csv


ISIC_2019_BASE = "https://isic-challenge-data.s3.amazonaws.com/2019/"
FILES_2019 = {
    "metadata": "ISIC_2019_Training_Metadata.csv",
    "ground_truth": "ISIC_2019_Training_GroundTruth.csv",
    "images": "ISIC_2019_Training_Input.zip",  # ~9 GB, 25,331 JPEGs
}


def resize_zip_images(archive: Path, out_images: Path, size: int, wanted: set[str] | None = None,
                      workers: int | None = None) -> dict[str, tuple[int, int]]:
    """Resize every JPEG of ``archive`` (or those named in ``wanted``) once into ``out_images/<name>.jpg``; return
    each image's ORIGINAL ``(width, height)``. Images already there are kept (a re-run resumes) and re-measured
    from the archive only when needed."""
    out_images.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, tuple[int, int]] = {}
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 4) as pool:
        batch: list[tuple[str, tuple[bytes, Path, int]]] = []

        def flush() -> None:
            for (name, _), res in zip(batch, pool.map(_resize_one, [j for _, j in batch])):
                if res is not None:
                    sizes[name] = res
            batch.clear()

        for name, data in zip_sources(archive):
            if wanted is not None and name not in wanted:
                continue
            batch.append((name, (data, out_images / f"{name}.jpg", size)))
            if len(batch) >= 64:
                flush()
        flush()
    return sizes


def fetch_isic2019(out_root: Path, size: int = 256, base_url: str = ISIC_2019_BASE) -> Path:
    """``make data DATA_EXTERNAL=isic2019``: download ISIC 2019's official training input, metadata and ground truth
    into ``out_root/isic2019-raw`` (resumable, size-verified, CRC-checked on extraction) and build
    ``out_root/isic2019-<size>/`` in the layout ``train --external`` reads: both CSVs (the metadata gains the
    images' ORIGINAL ``width``/``height``) and ``images/<image>.jpg`` resized once. A second run downloads nothing;
    a run that finds the folder complete returns it at once."""
    from .sources import ISIC2019_GROUND_TRUTH, ISIC2019_METADATA, load_external

    out_dir = out_root / f"isic2019-{size}"
    if (out_dir / ISIC2019_METADATA).is_file() and (out_dir / ISIC2019_GROUND_TRUTH).is_file():
        return out_dir
    check_replaceable(out_dir, "fetch-isic2019", overwrite=True)  # never replace a folder fetch did not make
    raw_dir = out_root / "isic2019-raw"
    meta = download(base_url + FILES_2019["metadata"], raw_dir / FILES_2019["metadata"])
    truth = download(base_url + FILES_2019["ground_truth"], raw_dir / FILES_2019["ground_truth"])
    archive = download(base_url + FILES_2019["images"], raw_dir / FILES_2019["images"])
    work = out_root / f".isic2019-{size}.partial"
    raw = pd.read_csv(meta, dtype=str)
    sizes = resize_zip_images(archive, work / "images", size, set(raw["image"].astype(str)))
    missing = sorted(set(raw["image"]) - set(sizes))
    if missing:
        raise DataError(f"{archive}: {len(missing)} image(s) of {meta.name} are not in the archive or not readable, "
                        f"e.g. {', '.join(missing[:5])}; delete the archive and run `make data` again")
    raw["width"] = [sizes[n][0] for n in raw["image"]]
    raw["height"] = [sizes[n][1] for n in raw["image"]]
    atomic_write(work / ISIC2019_METADATA, lambda tmp: raw.to_csv(tmp, index=False))
    shutil.copy2(truth, work / ISIC2019_GROUND_TRUTH)
    load_external(work)  # validated before it is put in place
    (work / MARKER).write_text(json.dumps({"kind": "fetch-isic2019"}))
    check_replaceable(out_dir, "fetch-isic2019", overwrite=True)
    replace_folder(work, out_dir)
    return out_dir
