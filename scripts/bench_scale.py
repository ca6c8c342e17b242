"""How each stage of the study grows with the number of images: wall time and peak resident memory, measured.

    .venv/bin/python scripts/bench_scale.py --sizes 2500 10000 33126 --out reports/bench/scale.csv

For each size, a SYNTHETIC data set in the ISIC 2020 schema at 256 px (the demo generator; ISIC 2020's 1.76%
melanoma and 16 images per patient) is generated into ``--work``, then every stage the full study runs is started as
its own process (so that its peak resident memory is its own: ``os.wait4``'s ``ru_maxrss``, which includes the
processes it started, e.g. a notebook's kernel):

- ``check``: decode every image (``python -m melanoma_utils check``);
- ``shard``: patient-isolated TFRecord shards;
- ``embed_1view`` / ``embed_8views``: the frozen EfficientNet-Lite0 embeddings from a cold cache (``--views-large``
  views only above ``--eight-views-max`` images, where 8 views would take hours on 2 cores);
- ``train``: ``train`` with the defaults on the cached embeddings (head, validation, calibration, threshold, report);
- ``cv``: 5-fold patient-grouped cross-validation of fusion (clinical) on the cached embeddings;
- ``predict_tta``: ``predict`` over every image with test-time augmentation (``--tta`` views);
- ``evaluate``: ``evaluate --out`` (bootstrap CIs, operating points, subgroups, figures);
- ``nb01_eda`` … ``nb06_validate``: each notebook under ``reproduce --only NN`` (its own process, in order: 04 and
  06 read 03's runs) with the full-data parameters (``--notebook-params``, default ``params/isic2020-256.yaml``; only
  the data paths point at the synthetic set), at sizes up to ``--notebooks-max``; ``--notebooks`` picks which.

Writes ``--out`` (CSV: ``stage, n_images, seconds, peak_rss_mb`` + notes) after every stage, a log-log figure beside
it, and the fitted growth exponent per stage (slope of log seconds on log images) in ``<out>.exponents.csv``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _run(stage: str, cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Run ``cmd`` as one process; return ``(seconds, peak RSS in MB)`` of it and everything it started."""
    t0 = time.perf_counter()
    with log.open("a") as fh:
        fh.write(f"\n=== {stage}: {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"stage {stage} failed with exit code {code}; see {log}")
    return seconds, usage.ru_maxrss / 1024  # kB on Linux


def stage_embed(csv: str, views: int, image_size: int) -> None:
    """Cold-cache embeddings of every image (a child process of the benchmark)."""
    from melanoma_utils.data import load_dataset
    from melanoma_utils.models.embeddings import EmbeddingSpec, cached_embeddings
    from melanoma_utils.models.fusion import build_model, image_encoder
    from melanoma_utils.pipeline.transforms import preprocess_config

    df = load_dataset(csv).frame
    model = build_model(kind="image", backbone="efficientnetlite0", backbone_weights="imagenet", image_size=image_size,
                        n_meta=None)
    spec = EmbeddingSpec("efficientnetlite0", "imagenet", image_size, preprocess_config("none"), views)
    emb, counts = cached_embeddings(image_encoder(model), list(df["image_path"]), spec, progress=True)
    print(json.dumps({"shape": list(emb.shape), **counts}))


def stage_cv(csv: str, out: str, views: int) -> None:
    """5-fold patient-grouped CV of fusion (clinical) on cached embeddings (a child process of the benchmark)."""
    from melanoma_utils.data import load_dataset
    from melanoma_utils.runs import TrainConfig
    from melanoma_utils.study.experiments import cross_validate, summarise_cv
    from melanoma_utils.study.plan import FoldPlan

    df = load_dataset(csv).frame
    cfg = TrainConfig(embedding_views=views, tta=views, verbose=0)
    per_fold, oof = cross_validate(df, cfg, out, {"fusion, clinical": {"kind": "fusion", "features": "clinical"}},
                                   FoldPlan(n_splits=5))
    print(summarise_cv(per_fold, oof, n_boot=200).round(3).to_string())


#: The run folders each notebook trains (removed before its stage, so that it trains them again).
TRAINS = {"nb03_train_evaluate": ("ablation", "transforms"), "nb05_compare_backbones": ("backbones",)}


def notebook_stages(params_file: Path, csv: Path, root: Path, numbers: list[str], m: list[str]) -> list[tuple[str, list[str], str]]:
    """One stage per notebook: ``reproduce --only NN --force`` with ``params_file``'s parameters, the data paths
    replaced by the synthetic set's (no size CSV, no external data: the synthetic set has neither)."""
    import yaml

    from melanoma_utils import config

    params = yaml.safe_load(params_file.read_text())
    params.update({"synthetic": True, "dataset_label": f"SYNTHETIC scale benchmark ({params_file.name})",
                   "report_dir": str(root / "reports"), "metadata_csv": str(csv), "images_csv": str(csv),
                   "size_metadata_csv": "", "images_dir": "", "external_dirs": []})
    out = root / "notebook-params.yaml"
    out.write_text(yaml.safe_dump(params, sort_keys=False))
    names = {name[:2]: name for name in config.NOTEBOOKS}
    return [(f"nb{names[k]}", m + ["reproduce", "--params", str(out), "--only", k, "--force"], params_file.name)
            for k in numbers]


def fit_exponents(table: pd.DataFrame) -> pd.DataFrame:
    """Per stage with at least two sizes run with the same settings as the largest: the slope of log(seconds) and
    log(peak RSS) on log(n_images)."""
    rows = []
    for stage, part in table.groupby("stage", sort=False):
        part = part.sort_values("n_images")
        part = part[part["note"].fillna("") == ("" if pd.isna(part["note"].iloc[-1]) else part["note"].iloc[-1])]
        if part["n_images"].nunique() < 2:  # (sizes run with other settings, e.g. 8 views, are left out of the fit)
            continue
        x = np.log(part["n_images"].to_numpy(float))
        rows.append({"stage": stage, "sizes": int(part["n_images"].nunique()),
                     "time_exponent": float(np.polyfit(x, np.log(part["seconds"].to_numpy(float)), 1)[0]),
                     "memory_exponent": float(np.polyfit(x, np.log(part["peak_rss_mb"].to_numpy(float)), 1)[0]),
                     "seconds_at_largest": float(part["seconds"].iloc[-1]),
                     "peak_rss_mb_at_largest": float(part["peak_rss_mb"].iloc[-1])})
    return pd.DataFrame(rows)


def figure(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for stage, part in table.groupby("stage", sort=False):
        part = part.sort_values("n_images")
        for ax, col in zip(axes, ("seconds", "peak_rss_mb")):
            ax.plot(part["n_images"], part[col], "o-", label=stage)
    for ax, label in zip(axes, ("wall time (s)", "peak resident memory (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("images (SYNTHETIC, 256 px)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].axhline(4096, color="grey", ls="--", lw=1)
    axes[1].text(table["n_images"].min(), 4300, "4 GB target", fontsize=9, color="grey")
    axes[0].legend(fontsize=8, ncol=2)
    fig.suptitle(f"Cost of each stage vs data-set size ({os.cpu_count()} CPU cores, {platform.machine()})")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2500, 10000, 33126])
    ap.add_argument("--work", type=Path, default=Path("/tmp/melanoma-scale"))
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "scale.csv")
    ap.add_argument("--image-size", type=int, default=224, help="the backbone's input size (default Lite0: 224)")
    ap.add_argument("--views-large", type=int, default=1, help="embedding views above --eight-views-max images")
    ap.add_argument("--eight-views-max", type=int, default=2500)
    ap.add_argument("--tta", type=int, default=2, help="predict's test-time augmentation views")
    ap.add_argument("--notebooks-max", type=int, default=0, help="run the notebooks at sizes up to this (0: never)")
    ap.add_argument("--notebook-params", type=Path, default=ROOT / "params" / "isic2020-256.yaml",
                    help="the notebooks' parameters (the data paths are replaced by the synthetic set's)")
    ap.add_argument("--notebooks", nargs="+", default=["01", "02", "03", "04", "05", "06"], help="which notebooks")
    ap.add_argument("--stages", nargs="+", help="only these stages")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # a stage run in its own process
        {"embed": lambda a: stage_embed(a[0], int(a[1]), int(a[2])),
         "cv": lambda a: stage_cv(a[0], a[1], int(a[2]))}[args.child[0]](args.child[1:])
        return

    from melanoma_utils.data.demo import make_demo_dataset
    from melanoma_utils.models.efficientnet_lite import cache_dir

    py = sys.executable
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log = args.out.with_suffix(".log")
    rows = pd.read_csv(args.out).to_dict("records") if args.out.is_file() else []
    for n in args.sizes:
        root = args.work / f"n{n}"
        t0 = time.perf_counter()
        csv = make_demo_dataset(root / "data", n_images=n, image_size=256, seed=0, malignant_fraction=0.0176,
                                images_per_patient=16)
        print(f"[scale] {n:,} images generated in {time.perf_counter() - t0:.0f} s", flush=True)
        cache = root / "cache"
        cache.mkdir(parents=True, exist_ok=True)
        for w in cache_dir().glob("*.weights.h5"):  # the converted ImageNet weights, not the embeddings
            shutil.copy2(w, cache / w.name)
        env = {**os.environ, "MELANOMA_UTILS_CACHE": str(cache), "TF_CPP_MIN_LOG_LEVEL": "3"}
        views = 8 if n <= args.eight_views_max else args.views_large
        m = [py, "-m", "melanoma_utils"]
        stages = [
            ("check", m + ["check", "--metadata", str(csv)], ""),
            ("shard", m + ["shard", "--metadata", str(csv), "--out", str(root / "shards"), "--shards", "15"], ""),
            ("embed_1view", [py, __file__, "--child", "embed", str(csv), "1", str(args.image_size)], ""),
            *([("embed_8views", [py, __file__, "--child", "embed", str(csv), "8", str(args.image_size)], "")]
              if views == 8 else []),
            ("train", m + ["train", "--metadata", str(csv), "--out", str(root / "run"), "--embedding-views", str(views),
                           "--tta", str(views), "--verbose", "0"], f"{views} cached view(s)"),
            ("cv", [py, __file__, "--child", "cv", str(csv), str(root / "cv"), str(views)], f"5 folds, {views} view(s)"),
            ("predict_tta", m + ["predict", "--run", str(root / "run"), "--metadata", str(csv), "--out",
                                 str(root / "predictions.csv"), "--tta", str(args.tta)], f"TTA {args.tta}"),
            ("evaluate", m + ["evaluate", "--predictions", str(root / "predictions.csv"), "--metadata", str(csv),
                              "--run", str(root / "run"), "--out", str(root / "report"), "--overwrite"], ""),
        ]
        if n <= args.notebooks_max:
            stages += notebook_stages(args.notebook_params, csv, root, args.notebooks, m)
        for stage, cmd, note in stages:
            if args.stages and stage not in args.stages:
                continue
            if stage.startswith("embed") or stage == "nb03_train_evaluate":
                shutil.rmtree(cache / "embeddings", ignore_errors=True)  # cold: every image computed
            for folder in TRAINS.get(stage, ()):  # a notebook's runs from an earlier pass would be reused, not trained
                shutil.rmtree(root / "reports" / "runs" / folder, ignore_errors=True)
            seconds, rss = _run(stage, cmd, env, log)
            print(f"[scale] n={n:,} {stage}: {seconds:.1f} s, peak {rss:.0f} MB", flush=True)
            rows = [r for r in rows if not (r["stage"] == stage and r["n_images"] == n)]
            rows.append({"stage": stage, "n_images": n, "seconds": round(seconds, 2), "peak_rss_mb": round(rss, 1),
                         "note": note, "cores": os.cpu_count(), "machine": platform.platform()})
            table = pd.DataFrame(rows)
            table.to_csv(args.out, index=False)
    table = pd.DataFrame(rows)
    fit_exponents(table).round(3).to_csv(args.out.with_name(args.out.stem + ".exponents.csv"), index=False)
    figure(table, args.out.with_suffix(".png"))
    print(fit_exponents(table).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
