"""Export a Whisper model's ONNX graphs (encoder, cross K/V, decoder step) with their manifests.

Built from the in-memory weights with the ``onnx`` package (no torch), opset 17. The onnx backend
does the same on first use into its cache; use this tool to prepare graphs for another machine
(an NPU compiles the fp32 encoder with a static batch) or to look at them::

    python tools/export_onnx.py --model tiny.en --out exported/ --precision fp32,int8 --batch 0,1,4
    python tools/export_onnx.py --model base --graphs encoder --precision fp32 --batch 1

``--batch 0`` is a dynamic batch; any other value a static one (encoder only: the decoder graphs
are always dynamic). Without ``--out`` graphs go to the backend's cache folder for the model, so
the backend finds them. A profile can also point a graph at an exported manifest with
``[backend_options.encoder] model = "exported/encoder-fp32-b1.json"``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends.onnx.export import PRECISIONS, cache_root, export_graph, model_folder  # noqa: E402
from backends.onnx.manifest import GRAPHS  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="tiny.en", help="model name or folder (runtime.model.registry)"
    )
    parser.add_argument("--out", type=Path, help="output folder (default: the backend's cache)")
    parser.add_argument("--graphs", default=",".join(GRAPHS), help="comma-separated graphs")
    parser.add_argument("--precision", default="fp32", help=f"comma-separated: {PRECISIONS}")
    parser.add_argument("--batch", default="0", help="encoder batch sizes; 0 = dynamic")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from runtime.model.registry import resolve_model

    args = parse_args(argv)
    model = resolve_model(args.model)
    out = args.out or model_folder(cache_root(), model)
    batches = [int(b) or None for b in args.batch.split(",")]
    for graph in args.graphs.split(","):
        for precision in args.precision.split(","):
            for batch in batches if graph == "encoder" else [None]:
                t0 = time.perf_counter()
                manifest = export_graph(model, graph, precision, batch, out)
                size = (out / manifest.file).stat().st_size / 2**20
                shapes = ", ".join(f"{t.name}{list(t.shape)}" for t in manifest.inputs[:2])
                print(
                    f"{out / manifest.file}  {size:.1f} MiB  {manifest.precision}  "
                    f"inputs {shapes}{' ...' if len(manifest.inputs) > 2 else ''}  "
                    f"({time.perf_counter() - t0:.1f} s)"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
