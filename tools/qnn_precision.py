"""The encoder's precision on the Qualcomm HTP: FP16 (the FP32 graph, computed in FP16) or QDQ.

    python tools/qnn_precision.py build                 # the QDQ encoder, calibrated on speech
    python tools/qnn_precision.py features              # features of both against FP32 (CPU EP)
    python tools/check_accelerator.py --profile qualcomm-npu --emulate --sets jfk,test-clean
    python tools/check_accelerator.py --profile qualcomm-npu-qdq --emulate --sets jfk,test-clean \
        --profile-dir <the folder `build` prints>

``build`` quantizes the static FP32 encoder the way the QNN EP documentation describes for the
HTP (``onnxruntime.quantization.execution_providers.qnn``: ``qnn_preprocess_model``, then
``get_qnn_qdq_config`` with uint16 activations and uint8 weights, MinMax calibration) on log-mel
windows of LibriSpeech train-clean utterances (never the test sets), writes it with a manifest
next to the cached FP32 graph, and writes a ``qualcomm-npu-qdq`` profile that points its encoder
at it. Run it with onnxruntime-qnn installed (``pip install ".[qnn]"``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.eval_common import load_librispeech  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def windows(utterances, n_mels: int) -> list[np.ndarray]:
    """One (1, n_mels, 3000) log-mel window per utterance (each under 30 s)."""
    from runtime.audio.decode import load_audio
    from runtime.audio.mel import N_FRAMES, log_mel_spectrogram, pad_or_trim

    return [
        pad_or_trim(log_mel_spectrogram(load_audio(u.audio), n_mels), N_FRAMES)[None].astype(
            np.float32
        )
        for u in utterances
    ]


def fp32_encoder(model):
    from backends.onnx.export import cache_root, ensure_graph, model_folder

    folder = model_folder(cache_root(), model)
    return ensure_graph(model, "encoder", "fp32", 1, folder)


def build(args: argparse.Namespace) -> None:
    from onnxruntime.quantization import QuantType, quantize
    from onnxruntime.quantization.calibrate import CalibrationDataReader
    from onnxruntime.quantization.execution_providers.qnn import (
        get_qnn_qdq_config,
        qnn_preprocess_model,
    )

    from runtime.model.registry import resolve_model

    model = resolve_model(args.model)
    path, manifest = fp32_encoder(model)
    source = path.parent / manifest.file
    calib = windows(
        load_librispeech(folder="librispeech-train-clean")[: args.calibration], model.dims.n_mels
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{manifest.input("mel").name: w} for w in calib])

        def get_next(self):
            return next(self.items, None)

    pre = path.parent / "encoder-fp32-b1-qnnpre.onnx"
    if not qnn_preprocess_model(source, pre):
        pre = source
    config = get_qnn_qdq_config(
        pre, Reader(), activation_type=QuantType.QUInt16, weight_type=QuantType.QUInt8
    )
    out = path.parent / "encoder-qdq-u16u8-b1.onnx"
    quantize(pre, out, config)
    qdq = dataclasses.replace(
        manifest,
        file=out.name,
        precision="qdq-u16u8",
        notes=(
            *manifest.notes,
            f"QDQ for the QNN HTP: uint16 activations, "
            f"uint8 weights, MinMax over {len(calib)} train-clean windows",
        ),
    )
    qdq.write(out.with_suffix(".json"))
    profiles = Path(args.profile_dir)
    profiles.mkdir(parents=True, exist_ok=True)
    text = (REPO / "profiles" / "qualcomm-npu.toml").read_text()
    text = text.replace('name = "qualcomm-npu"', 'name = "qualcomm-npu-qdq"')
    text = text.replace(
        "[backend_options.decoder]",
        f'[backend_options.encoder]\nmodel = "{out.with_suffix(".json")}"\n\n'
        "[backend_options.decoder]",
        1,
    )
    (profiles / "qualcomm-npu-qdq.toml").write_text(text)
    print(
        f"wrote {out} and its manifest; profile qualcomm-npu-qdq in {profiles}: run with "
        f"RUNTIME_PROFILE_DIRS='[\"{profiles}\"]'"
    )


def features(args: argparse.Namespace) -> None:
    """Relative L2 error and cosine of each encoder's features against FP32, on the CPU EP."""
    import onnxruntime as ort

    from runtime.model.registry import resolve_model

    model = resolve_model(args.model)
    path, manifest = fp32_encoder(model)
    test = windows(load_librispeech(["test-clean"])[: args.windows], model.dims.n_mels)
    name = manifest.input("mel").name

    def run(file: Path) -> list[np.ndarray]:
        session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        return [session.run(None, {name: w})[0] for w in test]

    reference = run(path.parent / manifest.file)
    qdq = run(path.parent / "encoder-qdq-u16u8-b1.onnx")
    rel = [float(np.linalg.norm(q - r) / np.linalg.norm(r)) for q, r in zip(qdq, reference)]
    print(
        f"QDQ u16/u8 vs FP32 on {len(test)} test-clean windows (CPU EP): relative L2 "
        f"mean {np.mean(rel):.4f}, max {np.max(rel):.4f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("build", "features"))
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--calibration", type=int, default=32, help="train-clean windows")
    ap.add_argument("--windows", type=int, default=8, help="test-clean windows compared")
    ap.add_argument("--profile-dir", default="/tmp/whisper-qnn-profiles")
    args = ap.parse_args()
    build(args) if args.command == "build" else features(args)


if __name__ == "__main__":
    main()
