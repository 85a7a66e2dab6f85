"""Resolve ``--model`` values to a ``WhisperModel``.

A value is, in this order: the short name of a model shipped by an installed package
(``tiny.en``, ``base``); an existing folder or ``.pt`` file (any format ``runtime.model.formats``
reads; write ``./base`` for a folder that shares a short name); or a Hugging Face repo id
(``owner/name``), downloaded when huggingface_hub is installed.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from pathlib import Path

from runtime.errors import ModelNotFoundError
from runtime.model import digests
from runtime.model.formats import ModelReader, read_model
from runtime.model.formats.ct2 import model_files_in, read_ct2
from runtime.model.packaged import (  # noqa: F401 - re-exported: the registry's public names
    DEFAULT_MODEL,
    PACKAGED_MODELS,
    PackagedModel,
    bundled_tokenizer,
)
from runtime.model.weights import WhisperModel

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# What a Hugging Face download fetches: every format's weights and configs, no duplicates in
# other frameworks (pytorch_model.bin, tf_model.h5, flax_model.msgpack).
_HF_PATTERNS = ["*.json", "*.safetensors", "model.bin*", "vocabulary.*", "weights.npz"]


def _packaged(name: str) -> PackagedModel | None:
    return next((m for m in PACKAGED_MODELS if m.name == name), None)


def available_models() -> dict[str, str]:
    """Short names of the packaged models installed here, each with the folder it is read from."""
    found = {}
    for model in PACKAGED_MODELS:
        folders = model.folders()
        if folders is not None:
            extra = f" (+ parts in {', '.join(map(str, folders[1:]))})" if len(folders) > 1 else ""
            found[model.name] = f"{folders[0]}{extra}"
    return found


# Models read in this process, while anything holds them: sessions keep a copy without the
# weights (``WhisperModel.without_weights``) once their graphs are built, so a loaded runtime
# does not keep the arrays resident (70 MB for tiny, 1.5 GB for large-v3) through this cache.
_models: weakref.WeakValueDictionary[tuple, WhisperModel] = weakref.WeakValueDictionary()


def _load(kind: str, where: str, readers: tuple[ModelReader, ...] | None) -> WhisperModel:
    """One read per packaged name or resolved path while it is in use; callers must not
    mutate it."""
    key = (kind, where, readers)
    model = _models.get(key)
    if model is None:
        model, files = _read(kind, where, readers)
        stat = digests.stat_key(files)
        model._digest = digests.remembered(stat)
        if model._digest is None:
            digests.remember(stat, model.digest())
        _models[key] = model
    return model


def _read(
    kind: str, where: str, readers: tuple[ModelReader, ...] | None
) -> tuple[WhisperModel, list[Path]]:
    """The model and the files it was read from."""
    if kind == "path":
        path = Path(where)
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        return read_model(path, readers), files
    model = _packaged(where)
    folders = model.folders() if model else None
    if model is None or folders is None:
        raise ModelNotFoundError(f"packaged model {where!r} is not installed")
    files = [f for folder in folders for f in model_files_in(folder)]
    every = [p for folder in folders for p in Path(folder).iterdir() if p.is_file()]
    return read_ct2(folders[0], files, name=model.name), every


def clear_model_cache() -> None:
    _models.clear()


def resolve_model(
    name_or_path: str | Path, readers: Sequence[ModelReader] | None = None
) -> WhisperModel:
    """The model a ``--model`` value names (see the module docstring for the lookup order).

    ``readers`` (default: the built-in ones) read folders and files, e.g. with plugins' readers
    added. Raises ModelNotFoundError for unknown names, listing the available ones, and
    ModelFormatError for files that are recognized but malformed.
    """
    chosen = tuple(readers) if readers is not None else None
    text = str(name_or_path)
    packaged = _packaged(text) if not isinstance(name_or_path, Path) else None
    if packaged is not None:
        if packaged.folders() is None:
            raise ModelNotFoundError(
                f"model {text!r} is not installed; install it with: {packaged.install}"
            )
        return _load("packaged", text, None)
    path = Path(text).expanduser()
    if path.exists():
        return _load("path", str(path.resolve()), chosen)
    if _REPO_ID.match(text) and not isinstance(name_or_path, Path):
        return _load("path", str(_download(text)), chosen)
    names = ", ".join(available_models()) or "none installed"
    raise ModelNotFoundError(
        f"unknown model {text!r}: it is neither a packaged model (available: {names}) nor an "
        "existing folder or file. Pass a model folder (CTranslate2, MLX or Hugging Face) or an "
        "OpenAI .pt file, or a Hugging Face repo id like openai/whisper-tiny."
    )


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise ModelNotFoundError(
            f"{repo_id!r} is not a local path; to download it from Hugging Face, install "
            "huggingface_hub (pip install huggingface_hub), or pass a local model folder"
        ) from exc
    try:
        return Path(snapshot_download(repo_id=repo_id, allow_patterns=_HF_PATTERNS)).resolve()
    except Exception as exc:  # network, auth and missing-repo errors all mean: not found
        raise ModelNotFoundError(
            f"{repo_id!r} is not a local folder, and downloading it from Hugging Face failed: {exc}"
        ) from exc
