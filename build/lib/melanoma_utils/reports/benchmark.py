"""Speed measurements (scripts and notebooks call these; tests never time anything)."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd


def time_per_call(fn: Callable[[], Any], repeats: int = 20, warmup: int = 2) -> float:
    """Median seconds per call of ``fn``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def transform_costs(images: Sequence[np.ndarray], names: Sequence[str] | None = None, repeats: int = 3) -> pd.DataFrame:
    """Milliseconds per image of each preprocessing option (median over ``repeats`` passes of ``images``)."""
    from ..pipeline.transforms import PREPROCESSORS, preprocess

    rows = []
    for name in names or [n for n in PREPROCESSORS if n != "none"]:
        sec = time_per_call(lambda name=name: [preprocess(im, name) for im in images], repeats=repeats, warmup=1)
        rows.append({"transform": name, "ms_per_image": 1000 * sec / len(images),
                     "size": f"{images[0].shape[1]}×{images[0].shape[0]}"})
    return pd.DataFrame(rows).set_index("transform")


def dataset_throughput(ds, epochs: int = 2) -> list[float]:
    """Images per second of iterating a batched dataset, per pass (the first is cold, later ones cached)."""
    rates = []
    for _ in range(epochs):
        n, t = 0, time.perf_counter()
        for batch in ds:
            x = batch[0] if isinstance(batch, tuple) else batch
            n += int(next(iter(x.values())).shape[0]) if isinstance(x, dict) else int(x.shape[0])
        rates.append(n / (time.perf_counter() - t))
    return rates
