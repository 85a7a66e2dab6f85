"""runtime.audio.mel against openai-whisper's own output (tests/fixtures/whisper_mel_reference.npz).

The fixture was written by tools/make_mel_fixture.py under a venv with torch and openai-whisper; it
holds whisper's mel filters, two input signals and whisper.log_mel_spectrogram of each.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from runtime.audio import mel
from runtime.audio.mel import (
    FRAMES_PER_SECOND,
    HOP_LENGTH,
    N_FRAMES,
    N_SAMPLES,
    N_SAMPLES_PER_TOKEN,
    TOKENS_PER_SECOND,
    log_mel_spectrogram,
    mel_filters,
    pad_or_trim,
)

FIXTURE = Path(__file__).parent / "fixtures" / "whisper_mel_reference.npz"
LONGFORM = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "eval"
    / "longform"
    / "librispeech-118-47824_abandoned-room-ch13.flac"
)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return dict(data)


def test_constants_match_whisper() -> None:
    assert (N_SAMPLES, N_FRAMES, HOP_LENGTH) == (480000, 3000, 160)
    assert (FRAMES_PER_SECOND, N_SAMPLES_PER_TOKEN, TOKENS_PER_SECOND) == (100, 320, 50)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_filters_match_whisper(reference: dict[str, np.ndarray], n_mels: int) -> None:
    ours = mel_filters(n_mels)
    assert ours.dtype == np.float32 and ours.shape == (n_mels, 201)
    np.testing.assert_allclose(ours, reference[f"filters_{n_mels}"], rtol=0, atol=1e-6)
    assert mel_filters(n_mels) is ours  # cached


@pytest.mark.parametrize("signal", ["synthetic", "jfk"])
@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_matches_whisper(
    reference: dict[str, np.ndarray], signal: str, n_mels: int
) -> None:
    if f"audio_{signal}" not in reference:
        pytest.skip(f"the fixture was made without the {signal} signal")
    expected = reference[f"mel{n_mels}_{signal}"]
    ours = log_mel_spectrogram(reference[f"audio_{signal}"], n_mels=n_mels)
    assert ours.dtype == np.float32 and ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-4)


def test_frame_count_and_padding() -> None:
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    assert log_mel_spectrogram(audio).shape == (80, 100)
    assert log_mel_spectrogram(audio[:16159]).shape == (80, 100)
    padded = log_mel_spectrogram(audio, padding=N_SAMPLES)
    assert padded.shape == (80, 100 + N_FRAMES)
    np.testing.assert_array_equal(padded, log_mel_spectrogram(np.pad(audio, (0, N_SAMPLES))))


@pytest.mark.parametrize("length", [161, 199, 200, 201, 5000])
@pytest.mark.parametrize("padding", [0, 1, 300])
def test_reflect_padding_built_per_block_equals_np_pad(length: int, padding: int) -> None:
    """The STFT input is never copied whole; each block's piece must equal np.pad's."""
    audio = np.random.default_rng(length).standard_normal(length).astype(np.float32)
    full = np.pad(np.concatenate([audio, np.zeros(padding, np.float32)]), 200, mode="reflect")
    for start, stop in [(0, len(full)), (0, 10), (3, len(full) - 5), (len(full) - 37, len(full))]:
        np.testing.assert_array_equal(
            mel._padded_segment(audio, padding, start, stop), full[start:stop]
        )


def test_batch_equals_rows_with_a_clamp_per_row(reference: dict[str, np.ndarray]) -> None:
    loud = reference["audio_synthetic"][:32000]
    quiet = 1e-3 * np.random.default_rng(1).standard_normal(32000).astype(np.float32)
    batch = log_mel_spectrogram(np.stack([loud, quiet]))
    assert batch.shape == (2, 80, 200)
    np.testing.assert_array_equal(batch[0], log_mel_spectrogram(loud))
    np.testing.assert_array_equal(batch[1], log_mel_spectrogram(quiet))


def test_blocks_do_not_change_the_result(
    reference: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The global max-8 floor must span all blocks, as whisper's spans the whole input."""
    audio = reference["audio_synthetic"]
    whole = log_mel_spectrogram(audio)
    monkeypatch.setattr(mel, "_BLOCK_FRAMES", 7)
    np.testing.assert_allclose(
        log_mel_spectrogram(audio), whole, rtol=0, atol=1e-6
    )  # GEMM rounding only


def test_silence_and_tiny_inputs() -> None:
    silence = log_mel_spectrogram(np.zeros(1600, np.float32))
    np.testing.assert_allclose(silence, -1.5, atol=1e-6)  # log10(1e-10) = -10 -> (-10 + 4) / 4
    assert log_mel_spectrogram(np.zeros(100, np.float32)).shape == (80, 0)
    assert log_mel_spectrogram(np.zeros((3, 0), np.float32)).shape == (3, 80, 0)


def test_bad_shapes_and_padding() -> None:
    with pytest.raises(ValueError, match="1-D"):
        log_mel_spectrogram(np.zeros((1, 2, 3), np.float32))
    with pytest.raises(ValueError, match="padding"):
        log_mel_spectrogram(np.zeros(1600, np.float32), padding=-1)


def test_pad_or_trim() -> None:
    assert pad_or_trim(np.ones(10), 4).tolist() == [1, 1, 1, 1]
    assert pad_or_trim(np.ones(2), 4).tolist() == [1, 1, 0, 0]
    frames = np.ones((80, 5))
    assert pad_or_trim(frames, N_FRAMES).shape == (80, N_FRAMES)
    assert pad_or_trim(frames, 3, axis=0).shape == (3, 5)
    assert pad_or_trim(np.ones(N_SAMPLES)).shape == (N_SAMPLES,)


@pytest.mark.slow
@pytest.mark.skipif(not LONGFORM.exists(), reason=f"{LONGFORM} not present")
def test_fifteen_minutes_well_under_a_second() -> None:
    from runtime.audio.decode import load_audio

    audio = load_audio(LONGFORM)
    log_mel_spectrogram(audio[: 16000 * 10])  # warm-up
    timings = []
    for _ in range(3):
        start = time.process_time()  # CPU time: other jobs on a shared machine do not inflate it
        features = log_mel_spectrogram(audio)
        timings.append(time.process_time() - start)
    assert features.shape == (80, len(audio) // HOP_LENGTH)
    assert min(timings) < 1.0, (
        f"log_mel_spectrogram of {len(audio) / 16000:.0f} s took {timings} s of CPU"
    )


def _blas_threads() -> int:
    from threadpoolctl import threadpool_info

    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def test_filterbank_products_run_on_one_blas_thread(monkeypatch) -> None:
    """OpenBLAS threads spin after a threaded call and took a core from the encoder after it
    (110-140 ms per window instead of 70), so each block's product runs on one thread, and the
    process's thread count is back afterwards, also when several threads compute mels at once."""
    import threading
    from contextlib import contextmanager

    seen: list[int] = []
    original = mel._one_blas_thread

    @contextmanager
    def recording():
        with original():
            seen.append(_blas_threads())
            yield

    before = _blas_threads()
    monkeypatch.setattr(mel, "_one_blas_thread", recording)
    audio = np.random.default_rng(0).standard_normal(16000 * 25).astype(np.float32)
    log_mel_spectrogram(audio)
    assert len(seen) == -(-2500 // mel._BLOCK_FRAMES) and set(seen) == {1}
    workers = [threading.Thread(target=log_mel_spectrogram, args=(audio,)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert set(seen) == {1} and _blas_threads() == before


@pytest.mark.parametrize("seconds", [0.0, 0.013, 1.0, 7.3, 31.0])
def test_padding_frames_are_not_computed_but_equal(monkeypatch, seconds: float) -> None:
    """Frames that see only the appended zeros are filled, not transformed: bit-identical to
    transforming them, and the FFT runs over the audio's frames only."""
    audio = np.random.default_rng(1).standard_normal(int(16000 * seconds)).astype(np.float32) * 0.1
    fast = log_mel_spectrogram(audio, padding=N_SAMPLES)
    live = mel._live_frames(len(audio), N_SAMPLES, fast.shape[1])
    monkeypatch.setattr(mel, "_live_frames", lambda n_samples, padding, n_frames: n_frames)
    full = log_mel_spectrogram(audio, padding=N_SAMPLES)
    np.testing.assert_array_equal(fast, full)
    assert live <= len(audio) // HOP_LENGTH + mel._BLOCK_FRAMES + 3 and live < fast.shape[1]
