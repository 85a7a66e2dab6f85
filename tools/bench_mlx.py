"""The MLX backend against mlx-whisper's own ``transcribe()``, side by side on one long file.

Both run the same weights on the same MLX device (the CPU with Linux's ``mlx[cpu]``; the Metal
GPU on a Mac) in the same precision:

- this backend, batched: the file's log-mel is computed once on the device, cut into consecutive
  30 s windows, encoded ``--batch`` windows at a time, and each batch is decoded together with
  ``runtime.decoding.decode`` (greedy; no timestamps, since fixed windows are never re-seeked);
- mlx-whisper: ``mlx_whisper.transcribe(audio, path_or_hf_repo=FOLDER)``, where FOLDER is the same
  weights written in mlx-whisper's layout (``config.json`` + ``weights.safetensors``) to a temporary
  folder, so nothing is downloaded. Its defaults otherwise (sequential windows seeking to the last
  timestamp, temperature fallback, conditioning on previous text).

Models are loaded before the clocks start. Wall time, CPU time (all threads; less sensitive to
other processes on a shared machine), real-time factor (processing time / audio duration) and
WER (``tools.eval_common.wer``, the project's scoring normalisation) are printed for both, with
this backend's stages (mel, encoder, decoder) apart. One run of each; run it on a quiet machine:

    python tools/bench_mlx.py                                   # northanger-abbey ch. 1, tiny.en
    python tools/bench_mlx.py --precision fp16 --batch 12 --json /tmp/bench_mlx.json
    python tools/bench_mlx.py --pipeline --skip-reference    # + Runtime.transcribe (VAD chunks)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.eval_common import decode_audio, eval_dir, load_longform, wer

DEFAULT_AUDIO = "longform/librispeech-19-198_northanger-abbey-ch01.flac"
SAMPLE_RATE = 16000


@dataclass
class Clock:
    """Wall and CPU seconds of one stage (CPU time counts every thread of this process)."""

    wall: float = 0.0
    cpu: float = 0.0

    def __enter__(self) -> Clock:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


@dataclass
class Run:
    engine: str
    total: Clock
    text: str
    stages: dict[str, Clock] = field(default_factory=dict)
    wer: float | None = None
    notes: str = ""


def run_backend(model, audio, precision: str, batch: int, device: str | None) -> Run:
    """This backend: device log-mel, batched encoder, batched greedy decoding."""
    from backends.mlx import MlxBackend
    from runtime.audio.mel import N_FRAMES
    from runtime.backend import LoadOptions
    from runtime.decoding import DecodingOptions, decode
    from runtime.model.tokenizer import load_tokenizer

    session = MlxBackend().load(model, LoadOptions(precision=precision, device=device))
    tokenizer = load_tokenizer(model.tokenizer_path, model.is_multilingual)
    options = DecodingOptions(language="en", without_timestamps=True)
    stages = {name: Clock() for name in ("mel", "encode", "decode")}
    texts = []
    with Clock() as total:
        with stages["mel"]:
            mel = session.log_mel(audio)
        n_frames = mel.shape[-1]
        spans = [(mel, s, min(N_FRAMES, n_frames - s)) for s in range(0, n_frames, N_FRAMES)]
        for i in range(0, len(spans), batch):
            with stages["encode"]:
                features = session.encode(session.mel_windows(spans[i : i + batch]))
            with stages["decode"]:
                texts += [r.text for r in decode(session, features, tokenizer, options)]
    return Run(
        "runtime mlx backend (batched)",
        total,
        " ".join(t for t in texts if t),
        stages,
        notes=f"{session.describe()}; {len(spans)} windows in batches of {batch}",
    )


def mlx_plugins():
    """The runtime's plugins, with the MLX plugin added in process if no entry point lists it."""
    from backends.mlx import plugin
    from runtime.plugins import Plugins

    plugins = Plugins()
    return plugins if "mlx" in plugins.backends() else Plugins(extra=[plugin])


def run_pipeline(model, audio, precision: str, batch: int, device: str | None) -> Run:
    """The product path on this backend: ``Runtime.transcribe`` (VAD chunks cut at silences,
    batched encoder and decoder, timestamps, temperature fallback)."""
    from runtime.api import Runtime

    runtime = Runtime(
        model,
        backend="mlx",
        precision=precision,
        plugins=mlx_plugins(),
        backend_options={"device": device} if device else None,
    )
    runtime.load()  # before timing
    with Clock() as total:
        result = runtime.transcribe(audio, language="en", batch_size=batch)
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    return Run(
        "runtime Runtime.transcribe (mlx backend, VAD chunks)",
        total,
        result.text,
        notes=f"batch {batch}; batcher stage wall times: {stages}",
    )


def run_mlx_whisper(model, audio, precision: str) -> Run:
    """mlx-whisper's transcribe() on the same weights, written as an MLX folder."""
    import mlx.core as mx
    import mlx_whisper
    from mlx_whisper.transcribe import ModelHolder

    from backends.mlx.model import write_mlx_folder

    if precision not in ("fp32", "fp16"):
        raise SystemExit(f"mlx-whisper's transcribe runs fp32 or fp16 only, not {precision}")
    fp16 = precision == "fp16"
    with tempfile.TemporaryDirectory() as tmp:
        folder = str(write_mlx_folder(model, Path(tmp) / model.name))
        ModelHolder.get_model(folder, mx.float16 if fp16 else mx.float32)  # load before timing
        with Clock() as total:
            result = mlx_whisper.transcribe(
                audio, path_or_hf_repo=folder, language="en", fp16=fp16, verbose=None
            )
    return Run(
        f"mlx-whisper {mlx_whisper.__version__} transcribe()",
        total,
        result["text"].strip(),
        notes="sequential, temperature fallback, conditioned",
    )


def report(runs: list[Run], duration: float) -> str:
    lines = [
        f"audio: {duration:.1f} s",
        "",
        "| engine | wall s | CPU s | RTF (wall / audio) | x real time | WER |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in runs:
        score = "n/a" if r.wer is None else f"{100 * r.wer:.2f} %"
        lines.append(
            f"| {r.engine} | {r.total.wall:.1f} | {r.total.cpu:.1f} | "
            f"{r.total.wall / duration:.3f} | {duration / r.total.wall:.2f} | {score} |"
        )
    for r in runs:
        if r.stages:
            parts = ", ".join(
                f"{k} {c.wall:.1f} s wall / {c.cpu:.1f} s CPU" for k, c in r.stages.items()
            )
            lines.append(f"\n{r.engine} stages: {parts}")
        lines.append(f"{r.engine}: {r.notes}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--audio", type=Path, default=None, help=f"audio file (default: <eval>/{DEFAULT_AUDIO})"
    )
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--precision", default="fp32", help="fp32, fp16, bf16, int8, int4")
    parser.add_argument("--batch", type=int, default=8, help="windows per encoder/decoder batch")
    parser.add_argument("--device", default=None, help="gpu or cpu (default: gpu when present)")
    parser.add_argument("--skip-reference", action="store_true", help="do not run mlx-whisper")
    parser.add_argument(
        "--pipeline",
        action="store_true",
        help="also time Runtime.transcribe (VAD chunks) on this backend",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)

    from runtime.model.registry import resolve_model

    audio_path = args.audio or eval_dir() / DEFAULT_AUDIO
    model = resolve_model(args.model)
    audio = decode_audio(audio_path)
    duration = len(audio) / SAMPLE_RATE
    reference = (
        next(
            (f.reference for f in load_longform() if f.audio.resolve() == audio_path.resolve()),
            None,
        )
        if (eval_dir() / "longform").is_dir()
        else None
    )
    runs = [run_backend(model, audio, args.precision, args.batch, args.device)]
    print(f"{runs[0].engine}: {runs[0].total.wall:.1f} s", flush=True)
    if args.pipeline:
        runs.append(run_pipeline(model, audio, args.precision, args.batch, args.device))
        print(f"{runs[-1].engine}: {runs[-1].total.wall:.1f} s", flush=True)
    if not args.skip_reference:
        runs.append(run_mlx_whisper(model, audio, args.precision))
    for r in runs:
        r.wer = None if reference is None else wer(reference, r.text)
    print(report(runs, duration))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "audio": str(audio_path),
                    "duration_s": duration,
                    "model": args.model,
                    "precision": args.precision,
                    "runs": [asdict(r) for r in runs],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
