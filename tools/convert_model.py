"""Convert a Whisper model between formats.

    python tools/convert_model.py tiny.en --to mlx out/tiny.en-mlx [--npz]
    python tools/convert_model.py path/to/ct2-folder --to hf out/whisper-hf
    python tools/convert_model.py base --to pt out/base.pt

The source is anything ``--model`` accepts (packaged name, folder, .pt file, HF repo id). The
name maps live next to the readers in ``runtime/formats`` (``mlx.mlx_name``, ``hf.hf_name``), so
what this writes is read back by exactly the inverse mapping. Weights keep their dtype unless
``--dtype`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1])
)  # run from a checkout without installing

from runtime.errors import WhisperRuntimeError  # noqa: E402
from runtime.model.formats.hf import write_hf  # noqa: E402
from runtime.model.formats.mlx import write_mlx  # noqa: E402
from runtime.model.formats.openai_pt import write_openai_pt  # noqa: E402
from runtime.model.registry import resolve_model  # noqa: E402
from runtime.model.weights import WhisperModel  # noqa: E402

TARGETS = ("mlx", "hf", "pt")


def convert(
    model: WhisperModel, target: str, out: Path, npz: bool = False, dtype: str | None = None
) -> Path:
    """Write ``model`` to ``out`` in ``target`` format ("mlx", "hf" or "pt"); returns ``out``."""
    if dtype is not None:
        weights = {
            n: a.astype(dtype) if a.dtype.kind == "f" else a for n, a in model.weights.items()
        }
        model = dataclasses.replace(model, weights=weights, _digest=None)
    if target == "mlx":
        return write_mlx(model, out, "npz" if npz else "safetensors")
    if target == "hf":
        return write_hf(model, out)
    if target == "pt":
        out.parent.mkdir(parents=True, exist_ok=True)
        return write_openai_pt(model, out)
    raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="packaged model name, model folder, .pt file or HF repo id")
    parser.add_argument("out", type=Path, help="output folder (mlx, hf) or .pt file (pt)")
    parser.add_argument("--to", choices=TARGETS, required=True, help="output format")
    parser.add_argument(
        "--npz", action="store_true", help="mlx: write weights.npz, not safetensors"
    )
    parser.add_argument(
        "--dtype", choices=("float16", "float32"), help="cast floating-point weights"
    )
    args = parser.parse_args(argv)
    try:
        model = resolve_model(args.model)
        out = convert(model, args.to, args.out, npz=args.npz, dtype=args.dtype)
    except WhisperRuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = sum(a.nbytes for a in model.weights.values()) / 2**20
    print(f"wrote {model.name} ({model.format}, {size:.0f} MiB of weights) as {args.to} to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
