"""The shape of the code, checked: no import cycles, the layering contracts, modules and
functions of a readable size, and the plugin surface in one module."""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 420
MAX_FUNCTION_LINES = 60


def _sources():
    return sorted(p for d in ("runtime", "backends", "scaleout") for p in (REPO / d).rglob("*.py"))


def test_no_import_cycles():
    """Also through imports inside functions, which hide cycles from a first reading."""
    grimp = pytest.importorskip(
        "grimp", reason="grimp comes with import-linter (pip install import-linter)"
    )
    graph = grimp.build_graph("runtime", "backends", "scaleout")
    cycles = sorted(
        {
            tuple(sorted((a, b)))
            for a in graph.modules
            for b in graph.find_modules_directly_imported_by(a)
            if graph.chain_exists(importer=b, imported=a)
        }
    )
    assert cycles == []


def test_modules_and_functions_stay_readable():
    long_modules, long_functions = [], []
    for path in _sources():
        source = path.read_text(encoding="utf-8")
        if source.count("\n") > MAX_MODULE_LINES:
            long_modules.append(str(path.relative_to(REPO)))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(REPO)}:{node.name} ({length})")
    assert long_modules == [] and long_functions == []


def test_the_sdk_is_the_whole_plugin_surface():
    import runtime.sdk as sdk

    for name in sdk.__all__:
        assert getattr(sdk, name) is not None
    plugin = (REPO / "tests/plugins/example_backend/example_backend/plugin.py").read_text()
    imports = {n.module for n in ast.walk(ast.parse(plugin)) if isinstance(n, ast.ImportFrom)}
    assert {m for m in imports if m and m.startswith("runtime")} <= {
        "runtime.sdk",
        "runtime.model.registry",
    }


def test_plugins_written_for_the_earlier_layout_still_load():
    """runtime.writers and runtime.models moved; their old names remain, with a warning."""
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "try:\n    import runtime.writers\nexcept DeprecationWarning as w:\n    print(w)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert "runtime.writers moved to runtime.output.writers" in out.stdout
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from runtime.models import resolve_model
        from runtime.output.writers import Writer
        from runtime.writers import Writer as OldWriter
    from runtime.model.registry import resolve_model as new_resolve

    assert OldWriter is Writer and resolve_model is new_resolve


def test_leaf_modules_import_nothing_heavy():
    """The log-mel, the audio constants and the decoding loop import no audio decoder, tokenizer
    library or ONNX package (graph export and plugins use them without those)."""
    code = (
        "import sys; import runtime.audio.mel, runtime.audio.constants, runtime.decoding; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'av', 'soxr', 'tokenizers', 'onnx', 'onnxruntime'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]"
