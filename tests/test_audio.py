"""runtime.audio.decode: decoding, resampling, downmixing, streaming blocks, errors of bad files."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from runtime.audio.blocks import iter_audio_blocks, iter_audio_blocks_flagged
from runtime.audio.decode import SAMPLE_RATE, audio_duration, load_audio
from runtime.errors import AudioError
from tests.fuzz_audio import video_only

EVAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "eval"


def sine(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_audio(
    path: Path, channels: np.ndarray, rate: int, codec: str, **stream_options: str
) -> Path:
    """(channels, samples) float32 into `path` with PyAV; the container follows the suffix."""
    layout = {1: "mono", 2: "stereo"}[channels.shape[0]]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = layout
        if stream_options:
            stream.codec_context.options = stream_options
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(channels.T).reshape(1, -1), format="flt", layout=layout
        )
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def dominant_frequency(audio: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / rate)[np.argmax(spectrum)])


@pytest.fixture
def flac_4s(tmp_path: Path) -> Path:
    """Four seconds of tone plus noise: noise keeps FLAC from compressing it to almost nothing."""
    rng = np.random.default_rng(0)
    signal = sine(440, 4.0, 44100) + 0.1 * rng.standard_normal(4 * 44100).astype(np.float32)
    return write_audio(tmp_path / "tone.flac", signal[None], 44100, "flac")


# --- arrays -------------------------------------------------------------------------------------


def test_float_arrays_pass_through_as_float32() -> None:
    x = np.linspace(-1, 1, 1000)
    out = load_audio(x)
    assert out.dtype == np.float32 and out.shape == (1000,)
    np.testing.assert_allclose(out, x, atol=1e-7)


def test_int16_array_is_scaled_by_1_over_32768() -> None:
    out = load_audio(np.array([0, 16384, -32768, 32767], dtype=np.int16))
    np.testing.assert_allclose(out, [0.0, 0.5, -1.0, 32767 / 32768])


@pytest.mark.parametrize("channels_first", [True, False])
def test_2d_arrays_are_averaged_to_mono(channels_first: bool) -> None:
    stereo = np.stack([np.full(500, 0.2), np.full(500, 0.6)]).astype(np.float32)
    out = load_audio(stereo if channels_first else stereo.T)
    assert out.shape == (500,)
    np.testing.assert_allclose(out, 0.4, atol=1e-6)


@pytest.mark.parametrize(
    ("array", "problem"),
    [
        (np.zeros((100, 100), np.float32), "cannot tell channels"),
        (np.zeros((2, 3, 4), np.float32), "expected 1-D"),
        (np.zeros(0, np.float32), "empty"),
        (np.array([0.0, np.nan], np.float32), "NaN"),
    ],
)
def test_bad_arrays_raise_audio_error(array: np.ndarray, problem: str) -> None:
    with pytest.raises(AudioError, match=problem):
        load_audio(array)


# --- files --------------------------------------------------------------------------------------


def test_44k_stereo_sine_becomes_16k_mono_of_the_same_frequency(tmp_path: Path) -> None:
    tone = sine(1000, 2.0, 44100)
    path = write_audio(tmp_path / "stereo.wav", np.stack([tone, tone]), 44100, "pcm_s16le")
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 2 * SAMPLE_RATE) <= 1
    assert dominant_frequency(audio) == pytest.approx(1000, abs=1)
    middle = audio[SAMPLE_RATE // 2 : -SAMPLE_RATE // 2]  # away from the resampler's edges
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_channels_are_averaged_not_picked(tmp_path: Path) -> None:
    tone = sine(1000, 1.0, 16000)
    path = write_audio(tmp_path / "opposite.wav", np.stack([tone, -tone]), 16000, "pcm_f32le")
    assert np.abs(load_audio(path)).max() < 1e-6


@pytest.mark.parametrize(
    ("suffix", "codec", "rate"),
    [
        ("wav", "pcm_s16le", 44100),
        ("flac", "flac", 22050),
        ("mp3", "mp3", 44100),
        ("ogg", "libopus", 48000),
        ("m4a", "aac", 44100),
        ("webm", "libopus", 48000),
    ],
)
def test_common_formats_decode(tmp_path: Path, suffix: str, codec: str, rate: int) -> None:
    path = write_audio(tmp_path / f"tone.{suffix}", sine(1000, 2.0, rate)[None], rate, codec)
    audio = load_audio(path)
    assert len(audio) / SAMPLE_RATE == pytest.approx(
        2.0, abs=0.06
    )  # lossy codecs add priming/padding
    assert dominant_frequency(audio) == pytest.approx(1000, abs=2)
    assert audio_duration(path) == pytest.approx(2.0, abs=0.06)


def test_bytes_and_file_objects_decode_like_paths(flac_4s: Path) -> None:
    from_path = load_audio(flac_4s)
    np.testing.assert_array_equal(load_audio(flac_4s.read_bytes()), from_path)
    np.testing.assert_array_equal(load_audio(bytearray(flac_4s.read_bytes())), from_path)
    np.testing.assert_array_equal(load_audio(io.BytesIO(flac_4s.read_bytes())), from_path)
    with open(flac_4s, "rb") as file:
        np.testing.assert_array_equal(load_audio(file), from_path)


def test_other_sample_rates_on_request(flac_4s: Path) -> None:
    assert abs(len(load_audio(flac_4s, sample_rate=8000)) - 4 * 8000) <= 1


def test_vbr_mp3_without_header_is_not_mistaken_for_truncated(tmp_path: Path) -> None:
    """With no Xing header FFmpeg guesses the duration from the first frames' bitrate."""
    rate = 44100
    signal = np.concatenate(
        [np.zeros(3 * rate), 0.3 * np.random.default_rng(0).standard_normal(3 * rate)]
    )
    path = tmp_path / "vbr.mp3"
    with av.open(str(path), "w", options={"write_xing": "0"}) as container:
        stream = container.add_stream("mp3", rate=rate)
        stream.layout = "mono"
        stream.codec_context.qscale = 4  # variable bitrate: silence is coded at the lowest rate
        frame = av.AudioFrame.from_ndarray(
            signal.astype(np.float32)[None], format="flt", layout="mono"
        )
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    if (audio_duration(path) or 0) < 9:
        pytest.skip("this encoder build wrote CBR; the bitrate estimate is not wrong to begin with")
    assert len(load_audio(path)) / SAMPLE_RATE == pytest.approx(6.0, abs=0.1)


@pytest.mark.skipif(
    not (EVAL_DIR / "jfk.flac").exists(), reason=f"{EVAL_DIR / 'jfk.flac'} not present"
)
def test_real_recording_jfk() -> None:
    """44.1 kHz stereo 24-bit FLAC: resampled and downmixed to 11.0 s at 16 kHz."""
    audio = load_audio(EVAL_DIR / "jfk.flac")
    assert len(audio) / SAMPLE_RATE == pytest.approx(11.0, abs=0.01)
    assert 0.05 < np.abs(audio).max() <= 1.0
    assert audio_duration(EVAL_DIR / "jfk.flac") == pytest.approx(11.0, abs=0.01)


# --- streaming blocks ---------------------------------------------------------------------------


def test_blocks_have_exact_length_and_join_to_load_audio(flac_4s: Path) -> None:
    blocks = list(iter_audio_blocks(flac_4s, block_seconds=1.5))
    assert [len(b) for b in blocks] == [24000, 24000, 16000]
    assert all(b.dtype == np.float32 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), load_audio(flac_4s))


def test_blocks_of_an_array() -> None:
    signal = np.arange(10, dtype=np.float32) / 16
    blocks = list(iter_audio_blocks(signal, block_seconds=4 / SAMPLE_RATE))
    assert [(b * 16).tolist() for b in blocks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_block_seconds_must_be_positive(flac_4s: Path) -> None:
    with pytest.raises(ValueError):
        next(iter_audio_blocks(flac_4s, block_seconds=0))


# --- bad input ----------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"missing\.wav: no such file"):
        load_audio(tmp_path / "missing.wav")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.mp3").write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.mp3: file is empty \(0 bytes\)"):
        load_audio(tmp_path / "empty.mp3")


def test_empty_bytes() -> None:
    with pytest.raises(AudioError, match="0 bytes"):
        load_audio(b"")


def test_text_named_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("these are meeting notes, not a recording\n" * 20)
    with pytest.raises(AudioError, match=r"notes\.wav: not a readable audio or video file"):
        load_audio(path)


def test_video_without_audio(tmp_path: Path) -> None:
    path = tmp_path / "silent_film.mkv"
    path.write_bytes(video_only())
    with pytest.raises(
        AudioError, match=r"silent_film\.mkv: contains no audio stream \(found: video\)"
    ):
        load_audio(path)


def test_wav_with_no_samples(tmp_path: Path) -> None:
    path = tmp_path / "header_only.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
    with pytest.raises(AudioError, match=r"header_only\.wav: .*decoded to 0 samples"):
        load_audio(path)


def test_truncated_flac(tmp_path: Path, flac_4s: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = flac_4s.read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        AudioError,
        match=r"cut\.flac: truncated or corrupt: declared 4\.0 s, the data ends at \d\.\d s",
    ):
        load_audio(cut)
    with pytest.raises(
        AudioError, match="truncated"
    ):  # the stream yields what it can, then says so
        for _ in iter_audio_blocks(cut, block_seconds=0.5):
            pass
    assert not [
        r for r in caplog.records if r.name.startswith("libav")
    ]  # FFmpeg's own log stays quiet


def test_truncated_wav(tmp_path: Path) -> None:
    """FFmpeg clamps a WAV's declared length to the bytes present: the header is read directly."""
    path = write_audio(tmp_path / "full.wav", sine(440, 3.0, 16000)[None], 16000, "pcm_s16le")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(
        AudioError,
        match=r"cut\.wav: truncated or corrupt: declared 3\.0 s, the data ends at 1\.5 s",
    ):
        load_audio(cut)


def test_truncated_mp3_with_header(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "full.mp3", sine(440, 4.0, 44100)[None], 44100, "mp3")
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(AudioError, match=r"cut\.mp3: truncated or corrupt: declared 4\.0 s"):
        load_audio(cut)


def test_audio_duration_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no such file"):
        audio_duration(tmp_path / "nope.flac")


def test_a_stream_pyav_cannot_follow_ends_the_decode_as_damage() -> None:
    """A damaged FLV made FFmpeg add a stream part-way; PyAV's demuxer then raised IndexError
    (found by tools/fuzz.py). It ends the stream like other container damage."""
    from runtime.audio.decode import _frames

    class Packet:
        def decode(self):
            return ["frame"]

    class Container:
        def demux(self, stream):
            yield Packet()
            raise IndexError("list index out of range")

    errors: list[Exception] = []
    assert list(_frames(Container(), None, errors)) == ["frame"]
    assert "a stream appears part-way through the file" in str(errors[0])


def test_blocks_know_the_last_one_without_reading_ahead(flac_4s: Path) -> None:
    """The flag for the last block, at a block boundary or not: only the last is flagged, and
    the blocks are those of ``iter_audio_blocks``."""
    for seconds in (1.5, 2.0, 4.0, 5.0):
        flagged = list(iter_audio_blocks_flagged(flac_4s, block_seconds=seconds))
        plain = list(iter_audio_blocks(flac_4s, block_seconds=seconds))
        assert [last for _, last in flagged] == [False] * (len(plain) - 1) + [True]
        for (block, _), same in zip(flagged, plain):
            np.testing.assert_array_equal(block, same)
