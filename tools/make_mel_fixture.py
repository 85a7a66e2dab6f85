"""Write tests/fixtures/whisper_mel_reference.npz: openai-whisper's own mel filters and log-mel.

Run once, under a Python that has torch and openai-whisper installed (not the runtime's venv):

    /work/refvenv/bin/python tools/make_mel_fixture.py [--jfk ../shared/eval/jfk.flac]

The fixture holds the input signals themselves, so tests/test_mel.py compares runtime.audio.mel
against whisper on exactly the same samples without needing torch, whisper or the audio decoder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "tests" / "fixtures" / "whisper_mel_reference.npz"
SAMPLE_RATE = 16000


def synthetic_signal(seconds: float = 2.0, seed: int = 1234) -> np.ndarray:
    """A chirp (100 Hz -> 7 kHz), a tone, noise and a silent gap: every mel band and the floor."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    chirp = 0.4 * np.sin(2 * np.pi * (100 * t + (7000 - 100) / (2 * seconds) * t**2))
    tone = 0.2 * np.sin(2 * np.pi * 440 * t)
    noise = 0.05 * np.random.default_rng(seed).standard_normal(t.size)
    signal = chirp + tone + noise
    signal[int(0.8 * SAMPLE_RATE) : int(1.1 * SAMPLE_RATE)] = 0.0  # silence: values hit the clamp
    return signal.astype(np.float32)


def jfk_excerpt(path: Path, seconds: float = 4.0) -> np.ndarray:
    """The first seconds of a real recording, decoded with the runtime's own loader."""
    sys.path.insert(0, str(REPO))
    from runtime.audio.decode import load_audio

    return load_audio(path)[: int(seconds * SAMPLE_RATE)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jfk", type=Path, default=REPO.parent / "shared" / "eval" / "jfk.flac")
    args = parser.parse_args()

    import torch
    import whisper
    from whisper.audio import log_mel_spectrogram, mel_filters

    arrays: dict[str, np.ndarray] = {
        "whisper_version": np.array(whisper.__version__),
        "filters_80": mel_filters("cpu", 80).numpy(),
        "filters_128": mel_filters("cpu", 128).numpy(),
    }
    signals = {"synthetic": synthetic_signal()}
    if args.jfk.exists():
        signals["jfk"] = jfk_excerpt(args.jfk)
    else:
        print(f"note: {args.jfk} not found; fixture has the synthetic signal only", file=sys.stderr)
    for name, audio in signals.items():
        arrays[f"audio_{name}"] = audio
        for n_mels in (80, 128):
            mel = log_mel_spectrogram(torch.from_numpy(audio), n_mels=n_mels)
            arrays[f"mel{n_mels}_{name}"] = mel.numpy().astype(np.float32)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUTPUT, **arrays)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size / 1024:.0f} KiB): {', '.join(arrays)}")


if __name__ == "__main__":
    main()
