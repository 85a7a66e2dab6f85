"""OpenAI Whisper checkpoints (``tiny.en.pt``, ...): ``torch.save`` of ``{"dims": {...},
"model_state_dict": {name: tensor}}`` in PyTorch's zip layout, read without torch.

The zip holds ``<archive>/data.pkl`` (the pickled object; each tensor is a
``torch._utils._rebuild_tensor_v2`` call on a persistent id ``("storage", torch.HalfStorage, key,
location, numel)``), ``<archive>/data/<key>`` (raw little-endian storage bytes) and
``<archive>/version``. The unpickler here allows exactly the globals such a checkpoint needs and
refuses every other one, so loading an untrusted file cannot run code.

OpenAI checkpoints carry no tokenizer and no alignment heads. The model's ``tokenizer_path`` is
the tokenizer.json of an installed packaged model of the same family (English-only or
multilingual), which has the same BPE; alignment heads are left unknown.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from runtime.errors import ModelFormatError
from runtime.model.formats._common import check_weights, fallback_tokenizer
from runtime.model.formats._safetensors import bfloat16_to_float32
from runtime.model.weights import ModelDims, WhisperModel

_STORAGES = {
    "FloatStorage": np.float32, "HalfStorage": np.float16, "BFloat16Storage": np.uint16,
    "DoubleStorage": np.float64, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}  # fmt: skip
_DTYPE_STORAGES = {np.dtype(v): k for k, v in _STORAGES.items() if k != "BFloat16Storage"}


@dataclasses.dataclass(frozen=True)
class _StorageType:
    """Stands for ``torch.<name>`` while unpickling (and, when writing, pickles as that global)."""

    name: str

    def __call__(self, *args: Any) -> None:  # pickle requires reduce functions to be callable
        raise TypeError("placeholder")


@dataclasses.dataclass(frozen=True)
class _TorchGlobal:
    module: str
    name: str

    def __call__(self, *args: Any) -> None:
        raise TypeError("placeholder")


@dataclasses.dataclass(frozen=True)
class _StorageRef:
    """A storage written to ``<archive>/data/<key>``, pickled as its persistent id."""

    pid: tuple


def _rebuild_tensor(
    storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_: Any
) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2``: a strided view of ``storage``, copied to own memory."""
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if any(s < 0 for s in (*size, *stride, offset)):
        raise pickle.UnpicklingError("negative tensor size, stride or offset")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True) if n > 0)
    if 0 not in size and last >= storage.size:
        raise pickle.UnpicklingError(
            f"tensor reaches element {last} of a {storage.size}-element storage"
        )
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    view = np.lib.stride_tricks.as_strided(
        storage[offset:],
        shape=size,
        strides=[s * storage.itemsize for s in stride],
        writeable=False,
    )
    return np.array(view)


def _rebuild_parameter(data: np.ndarray, *_: Any) -> np.ndarray:
    return data


class _SafeUnpickler(pickle.Unpickler):
    """Resolves the handful of globals a tensor checkpoint needs; refuses everything else."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self._archive, self._prefix = archive, prefix
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _STORAGES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a weights file")

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
        if key not in self._storages:
            dtype = np.dtype(_STORAGES[storage_type.name])
            raw = self._archive.read(f"{self._prefix}/data/{key}")
            if len(raw) < int(numel) * dtype.itemsize:
                raise pickle.UnpicklingError(
                    f"storage {key} holds {len(raw)} bytes, fewer than {numel} elements"
                )
            arr = np.frombuffer(raw, dtype=dtype, count=int(numel))
            self._storages[key] = (
                bfloat16_to_float32(arr) if storage_type.name == "BFloat16Storage" else arr
            )
        return self._storages[key]


def load_torch_zip(path: Path) -> Any:
    """The object a zip-format ``torch.save`` wrote to ``path``, tensors as numpy arrays."""
    if not zipfile.is_zipfile(path):
        raise ModelFormatError(
            f"{path} is not a zip-format PyTorch file (torch >= 1.6 writes those; re-save it with "
            "torch.save, or convert it to safetensors)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [
                n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1
            ]
            if len(pickles) != 1:
                raise ModelFormatError(
                    f"{path}: expected one <archive>/data.pkl in the zip, found {pickles}"
                )
            prefix = pickles[0].split("/")[0]
            return _SafeUnpickler(archive.read(pickles[0]), archive, prefix).load()
    except (pickle.UnpicklingError, zipfile.BadZipFile, KeyError, EOFError, ValueError) as exc:
        raise ModelFormatError(f"{path}: cannot read PyTorch checkpoint: {exc}") from exc


def read_openai_pt(path: Path) -> WhisperModel:
    checkpoint = load_torch_zip(path)
    if not (
        isinstance(checkpoint, dict) and "dims" in checkpoint and "model_state_dict" in checkpoint
    ):
        raise ModelFormatError(
            f"{path} is not an OpenAI Whisper checkpoint (no 'dims' and 'model_state_dict')"
        )
    try:
        dims = ModelDims(**{k: int(v) for k, v in checkpoint["dims"].items()})
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{path}: bad 'dims': {exc}") from exc
    weights = {
        n: a for n, a in checkpoint["model_state_dict"].items() if not n.endswith("attn.key.bias")
    }
    check_weights(weights, dims, path)
    return WhisperModel(
        name=path.stem,
        dims=dims,
        weights=weights,
        source=path,
        format="openai",
        tokenizer_path=fallback_tokenizer(dims.is_multilingual),
    )


class _TorchPickler(pickle._Pickler):  # the pure-Python pickler: its dispatch table is extensible
    """Pickles numpy arrays the way torch.save pickles tensors (protocol 2)."""

    # typeshed types this table's functions as taking an Unpickler: they take the pickler
    dispatch: ClassVar[dict[type, Callable[..., None]]] = pickle._Pickler.dispatch.copy()

    def __init__(self, file: io.BytesIO, storages: list[np.ndarray]):
        super().__init__(file, protocol=2)
        self._storages = storages

    if TYPE_CHECKING:  # undocumented methods of pickle._Pickler, absent from typeshed's stub

        def write(self, data: bytes) -> None: ...
        def memoize(self, obj: Any) -> None: ...
        def save_reduce(self, func: Any, args: tuple[Any, ...], obj: Any = None) -> None: ...

    def _save_global(self, obj: Any) -> None:
        module, name = (
            ("torch", obj.name) if isinstance(obj, _StorageType) else (obj.module, obj.name)
        )
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)

    dispatch[_StorageType] = _save_global
    dispatch[_TorchGlobal] = _save_global

    def _save_array(self, arr: np.ndarray) -> None:
        key = str(len(self._storages))
        self._storages.append(np.ascontiguousarray(arr))
        storage = _StorageRef(
            ("storage", _StorageType(_DTYPE_STORAGES[arr.dtype]), key, "cpu", arr.size)
        )
        strides = tuple(int(np.prod(arr.shape[i + 1 :])) for i in range(arr.ndim))
        args: tuple[Any, ...] = (
            storage,
            0,
            tuple(arr.shape),
            strides,
            False,
            collections.OrderedDict(),
        )
        self.save_reduce(_TorchGlobal("torch._utils", "_rebuild_tensor_v2"), args, obj=arr)

    dispatch[np.ndarray] = _save_array

    def persistent_id(self, obj: Any) -> Any:
        return obj.pid if isinstance(obj, _StorageRef) else None


def write_openai_pt(model: WhisperModel, path: Path) -> Path:
    """Write ``model`` as an OpenAI-style checkpoint that ``torch.load`` and openai-whisper read."""
    state = collections.OrderedDict(sorted(model.weights.items()))
    checkpoint = {"dims": dataclasses.asdict(model.dims), "model_state_dict": state}
    buffer = io.BytesIO()
    storages: list[np.ndarray] = []
    _TorchPickler(buffer, storages).dump(checkpoint)
    archive = path.stem
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{archive}/data.pkl", buffer.getvalue())
        zf.writestr(f"{archive}/byteorder", "little")
        for key, arr in enumerate(storages):
            zf.writestr(f"{archive}/data/{key}", arr.tobytes())
        zf.writestr(f"{archive}/version", "3\n")
    return path


class OpenAIReader:
    name = "openai"
    expected_files = "an OpenAI checkpoint file such as tiny.en.pt"

    def can_read(self, path: Path) -> bool:
        return path.is_file() and path.suffix == ".pt" and zipfile.is_zipfile(path)

    def read(self, path: Path) -> WhisperModel:
        return read_openai_pt(path)
