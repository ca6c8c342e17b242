from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from melanoma_utils.data import load_dataset
from melanoma_utils.fetch import resize_into_layout
from melanoma_utils.images import square_resize


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
    csv = resize_into_layout(meta, None, tmp_path / "out", size=16, duplicates_csv=dups, benign=5,
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


def test_fetch_isic2019_from_a_local_mirror_builds_the_external_layout(tmp_path: Path) -> None:
    """`make data DATA_EXTERNAL=isic2019` against a local HTTP server holding the official file names (no internet):
    download, resize once with the original sizes recorded, a layout `train --external` reads; a second run fetches
    nothing."""
    import functools
    import http.server
    import threading
    import zipfile

    import cv2
    import numpy as np

    from melanoma_utils.fetch import fetch_isic2019
    from melanoma_utils.sources import load_external

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    names = ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002"]
    pd.DataFrame({"image": names, "age_approx": ["40", "55", ""], "anatom_site_general": ["anterior torso", "", "head/neck"],
                  "lesion_id": ["L1", "L1", ""], "sex": ["male", "male", "female"]}).to_csv(
        mirror / "ISIC_2019_Training_Metadata.csv", index=False)
    truth = pd.DataFrame({"image": names, **{c: [0.0] * 3 for c in ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")}})
    truth.loc[0, "MEL"] = truth.loc[1, "NV"] = truth.loc[2, "BCC"] = 1.0
    truth.to_csv(mirror / "ISIC_2019_Training_GroundTruth.csv", index=False)
    with zipfile.ZipFile(mirror / "ISIC_2019_Training_Input.zip", "w") as zf:
        for i, n in enumerate(names):
            ok, buf = cv2.imencode(".jpg", np.full((60 + 10 * i, 80, 3), 100, np.uint8))
            zf.writestr(f"ISIC_2019_Training_Input/{n}.jpg", buf.tobytes())
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(mirror)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        out = fetch_isic2019(tmp_path / "data", size=32, base_url=base)
        assert out == tmp_path / "data" / "isic2019-32" and len(requests) == 3
        df = load_external(out).frame.set_index("image_name")
        assert df["target"].tolist() == [1, 0, 0] and df["diagnosis"].tolist()[2] == "basal cell carcinoma"
        assert df["height"].tolist() == [60.0, 70.0, 80.0] and (df["width"] == 80).all()  # original sizes
        assert cv2.imread(str(out / "images" / "ISIC_0000001.jpg")).shape == (32, 32, 3)
        assert fetch_isic2019(tmp_path / "data", size=32, base_url=base) == out and len(requests) == 3
    finally:
        server.shutdown()
