from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import write_dataset
from melanoma_utils.data.fetch import layout_rows, resize_into_layout
from melanoma_utils.data.imagefiles import square_resize
from melanoma_utils.data.isic import load_dataset


def test_square_resize_crops_centre() -> None:
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, 20:60] = 255  # the central square is white
    out = square_resize(img, 16)
    assert out.shape == (16, 16, 3) and out.min() == 255


def test_resize_into_layout_records_original_size(tiny_csv: Path, tmp_path: Path) -> None:
    raw = pd.read_csv(tiny_csv).drop(columns=["width", "height", "tfrecord"])
    meta = tmp_path / "ISIC_2020_Training_GroundTruth_v2.csv"
    raw.to_csv(meta, index=False)
    dups = tmp_path / "dups.csv"
    pd.DataFrame({"image_name_1": ["IMG_0000"], "image_name_2": ["IMG_0001"]}).to_csv(dups, index=False)
    csv = resize_into_layout(meta, None, tmp_path / "out", size=16, rows=layout_rows(meta, dups, benign=5),
                             images_dir=tiny_csv.parent / "train")
    ds = load_dataset(csv)
    df = ds.frame
    assert int(df["target"].sum()) == 8 and (df["target"] == 0).sum() == 5  # all malignant + 5 benign
    assert "IMG_0001" not in set(df["image_name"])
    assert (df["width"] == 40).all() and (df["height"] == 32).all()  # original sizes, not 16
    import cv2

    assert cv2.imread(df["image_path"].iloc[0]).shape == (16, 16, 3)


@pytest.mark.shared_data
def test_resize_shared_subset_sample(shared_subset_csv: Path, tmp_path: Path) -> None:
    raw = pd.read_csv(shared_subset_csv).head(30)
    meta = tmp_path / "train.csv"
    raw.to_csv(meta, index=False)
    csv = resize_into_layout(meta, None, tmp_path / "out", size=64, images_dir=shared_subset_csv.parent / "train")
    df = load_dataset(csv).frame
    assert len(df) == 30 and df["width"].notna().sum() == raw["width"].notna().sum()


class Mirror:
    """A local HTTP server over a folder, like the ISIC bucket: range requests (206), an S3-style ETag (the file's MD5),
    and faults on demand: ``cut[name] = n`` sends n bytes of the next transfer of ``name`` and drops the connection;
    ``corrupt.add(name)`` sends the next transfer with one byte changed (same size and ETag). ``requests`` logs
    ``(file, range header)``."""

    def __init__(self, folder: Path) -> None:
        import functools
        import hashlib
        import http.server
        import threading

        self.folder, self.cut, self.corrupt, self.requests = folder, {}, set(), []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                path = mirror.folder / name
                mirror.requests.append((name, self.headers.get("Range")))
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                etag = hashlib.md5(data).hexdigest()
                if name in mirror.corrupt:
                    mirror.corrupt.discard(name)
                    data = data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:]
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", f'"{etag}"')
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if name in mirror.cut:
                    body = body[: mirror.cut.pop(name)]
                    self.close_connection = True
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def fetched(self, name: str) -> int:
        return sum(1 for n, _ in self.requests if n == name)

    def __enter__(self) -> "Mirror":
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()


def _isic2020_mirror(root: Path) -> tuple[Path, list[str]]:
    """The official ISIC 2020 file names with a handful of real-schema rows: the ground truth (no width/height, like the
    official CSV), the duplicate list (one pair) and the JPEG archive (``train/<image_name>.jpg``)."""
    import zipfile

    csv = write_dataset(root / "src", n=8, size=40)
    rows = pd.read_csv(csv).drop(columns=["width", "height", "tfrecord"])
    mirror = root / "mirror"
    mirror.mkdir()
    rows.to_csv(mirror / "ISIC_2020_Training_GroundTruth_v2.csv", index=False)
    pd.DataFrame({"image_name_1": ["IMG_0001"], "image_name_2": ["IMG_0002"]}).to_csv(
        mirror / "ISIC_2020_Training_Duplicates.csv", index=False)
    with zipfile.ZipFile(mirror / "ISIC_2020_Training_JPEG.zip", "w") as zf:
        for name in rows["image_name"]:
            zf.write(root / "src" / "train" / f"{name}.jpg", f"train/{name}.jpg")
    return mirror, list(rows["image_name"])


def test_make_data_fetches_isic2020_from_a_local_mirror_resumes_verifies_and_resizes_once(tmp_path: Path) -> None:
    """`make data`'s fetch against a local server in the official layout (no internet): a transfer cut half-way
    resumes with a range request, the archive is verified against the server's checksum, images are resized once with
    their original sizes; a second run downloads and rewrites nothing; a file damaged on disk is fetched again."""
    import cv2

    from melanoma_utils import cli
    from melanoma_utils.data.fetch import CHECKSUMS, fetch

    mirror_dir, names = _isic2020_mirror(tmp_path)
    zip_name = "ISIC_2020_Training_JPEG.zip"
    with Mirror(mirror_dir) as mirror:
        mirror.cut[zip_name] = (mirror_dir / zip_name).stat().st_size // 2
        assert cli.main(["fetch", "--out", str(tmp_path / "data"), "--size", "32", "--base-url", mirror.url]) == 0
        zip_requests = [r for n, r in mirror.requests if n == zip_name]
        assert len(zip_requests) == 2 and zip_requests[0] is None and zip_requests[1].startswith("bytes=")  # resumed
        raw = tmp_path / "data" / "isic2020-raw"
        assert (raw / zip_name).read_bytes() == (mirror_dir / zip_name).read_bytes()
        record = json.loads((raw / CHECKSUMS).read_text())
        assert record[zip_name]["checked_against"] == "ETag" and len(record[zip_name]["sha256"]) == 64
        out = tmp_path / "data" / "isic2020-32"
        df = pd.read_csv(out / "train.csv")
        assert sorted(df["image_name"]) == sorted(set(names) - {"IMG_0002"})  # the official duplicate dropped
        assert (df["width"] == 48).all() and (df["height"] == 40).all()  # the ORIGINAL sizes, recorded once
        assert cv2.imread(str(out / "train" / "IMG_0003.jpg")).shape == (32, 32, 3)
        # a second run: nothing downloaded, nothing rewritten
        before, mtime = len(mirror.requests), (out / "train.csv").stat().st_mtime_ns
        assert fetch(tmp_path / "data", size=32, base_url=mirror.url) == out / "train.csv"
        assert len(mirror.requests) == before and (out / "train.csv").stat().st_mtime_ns == mtime
        # damaged on disk after a verified download: detected by its recorded SHA-256 and fetched again
        data = bytearray((raw / zip_name).read_bytes())
        data[100] ^= 0xFF
        (raw / zip_name).write_bytes(bytes(data))
        fetch(tmp_path / "data", size=32, base_url=mirror.url)
        assert mirror.fetched(zip_name) == 3 and (raw / zip_name).read_bytes() == (mirror_dir / zip_name).read_bytes()
    # files placed by hand (no record, no server reachable) are recorded and used, never deleted
    hand = tmp_path / "hand"
    (hand / "isic2020-raw").mkdir(parents=True)
    for f in mirror_dir.iterdir():
        (hand / "isic2020-raw" / f.name).write_bytes(f.read_bytes())
    assert fetch(hand, size=32, base_url="http://127.0.0.1:9/").is_file()  # port 9: nothing listens
    assert json.loads((hand / "isic2020-raw" / CHECKSUMS).read_text())[zip_name]["checked_against"].startswith("placed by hand")


def test_a_download_that_does_not_match_the_servers_checksum_is_discarded(tmp_path: Path) -> None:
    from melanoma_utils.data.fetch import download
    from melanoma_utils.data.isic import DataError

    mirror_dir, _ = _isic2020_mirror(tmp_path)
    zip_name = "ISIC_2020_Training_JPEG.zip"
    dest = tmp_path / "raw" / zip_name
    with Mirror(mirror_dir) as mirror:
        mirror.corrupt.add(zip_name)
        with pytest.raises(DataError, match="does not match the server's checksum"):
            download(mirror.url + zip_name, dest)
        assert not dest.exists() and not dest.with_name(zip_name + ".part").exists()
        assert download(mirror.url + zip_name, dest) == dest  # the next run starts afresh and succeeds
        assert dest.read_bytes() == (mirror_dir / zip_name).read_bytes()


def test_s3_multipart_etags_are_checked() -> None:
    """S3 publishes md5(md5(part_1) … md5(part_n))-n for multipart uploads (the 23 GB archive is one): the part size is
    found from the file size and n."""
    import hashlib
    import tempfile

    from melanoma_utils.data.fetch import etag_matches

    data = np.random.default_rng(0).integers(0, 256, 11 * 2**20 + 5, dtype=np.uint8).tobytes()
    parts = [data[i:i + 8 * 2**20] for i in range(0, len(data), 8 * 2**20)]
    etag = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f"-{len(parts)}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f"
        path.write_bytes(data)
        assert etag_matches(path, f'"{etag}"') is True
        assert etag_matches(path, hashlib.md5(data).hexdigest()) is True  # single-part form
        path.write_bytes(data[:-1] + b"x")
        assert etag_matches(path, etag) is False and etag_matches(path, hashlib.md5(data).hexdigest()) is False
        assert etag_matches(path, "W/abc") is None  # not a checksum: nothing to check


def test_fetch_isic2019_from_a_local_mirror_builds_the_external_layout(tmp_path: Path) -> None:
    """`make data DATA_EXTERNAL=isic2019` against a local HTTP server holding the official file names (no internet):
    download, resize once with the original sizes recorded, a layout `train --external` reads; a second run fetches
    nothing."""
    import zipfile

    import cv2

    from melanoma_utils.data.fetch import fetch_isic2019
    from melanoma_utils.data.sources import load_external

    mirror_dir = tmp_path / "mirror"
    mirror_dir.mkdir()
    names = ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002"]
    pd.DataFrame({"image": names, "age_approx": ["40", "55", ""], "anatom_site_general": ["anterior torso", "", "head/neck"],
                  "lesion_id": ["L1", "L1", ""], "sex": ["male", "male", "female"]}).to_csv(
        mirror_dir / "ISIC_2019_Training_Metadata.csv", index=False)
    truth = pd.DataFrame({"image": names, **{c: [0.0] * 3 for c in ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")}})
    truth.loc[0, "MEL"] = truth.loc[1, "NV"] = truth.loc[2, "BCC"] = 1.0
    truth.to_csv(mirror_dir / "ISIC_2019_Training_GroundTruth.csv", index=False)
    with zipfile.ZipFile(mirror_dir / "ISIC_2019_Training_Input.zip", "w") as zf:
        for i, n in enumerate(names):
            ok, buf = cv2.imencode(".jpg", np.full((60 + 10 * i, 80, 3), 100, np.uint8))
            zf.writestr(f"ISIC_2019_Training_Input/{n}.jpg", buf.tobytes())
    with Mirror(mirror_dir) as mirror:
        mirror.cut["ISIC_2019_Training_Input.zip"] = 100
        out = fetch_isic2019(tmp_path / "data", size=32, base_url=mirror.url)
        assert out == tmp_path / "data" / "isic2019-32" and len(mirror.requests) == 4  # the cut archive resumed once
        df = load_external(out).frame.set_index("image_name")
        assert df["target"].tolist() == [1, 0, 0] and df["diagnosis"].tolist()[2] == "basal cell carcinoma"
        assert df["height"].tolist() == [60.0, 70.0, 80.0] and (df["width"] == 80).all()  # original sizes
        assert cv2.imread(str(out / "images" / "ISIC_0000001.jpg")).shape == (32, 32, 3)
        assert fetch_isic2019(tmp_path / "data", size=32, base_url=mirror.url) == out and len(mirror.requests) == 4
