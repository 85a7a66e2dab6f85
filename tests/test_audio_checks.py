"""runtime.audio.checks through runtime.audio.decode: what audio intake refuses (lying WAV headers,
unknown codecs, NaN samples, truncated Ogg, absurd sample rates) and repairs (float samples
beyond full scale), each with one line that names the input and what to do."""

from __future__ import annotations

import io
import logging
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from runtime.audio.blocks import iter_audio_blocks
from runtime.audio.checks import caf_declared_seconds, ogg_end_problem, parse_wav_header
from runtime.audio.decode import SAMPLE_RATE, load_audio
from runtime.errors import AudioError, TruncatedAudioError
from tests.fuzz_audio import encode, wav_bytes


def tone(seconds: float = 3.0, rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)  # noise, so that lossless codecs do not squeeze it to nothing
    return (0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))).astype(
        np.float32
    )


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def sources(path: Path) -> list:
    """The same file as a path, as bytes and as a file object: each must behave alike."""
    return [path, path.read_bytes(), io.BytesIO(path.read_bytes())]


# -- WAV headers -------------------------------------------------------------------------------
def test_unknown_wav_format_tag_is_an_audio_error_naming_the_tag(tmp_path):
    """Was AttributeError: 'AudioStream' object has no attribute 'bit_rate' (a 500 served)."""
    path = write(tmp_path, "tag.wav", wav_bytes(tone(), header={"tag": 0x1234}))
    for source in sources(path):
        with pytest.raises(
            AudioError, match=r"WAV format tag 0x1234, which FFmpeg cannot decode; convert"
        ):
            load_audio(source)
    with pytest.raises(AudioError, match=r"^.*tag\.wav: its audio is in WAV format tag 0x1234"):
        load_audio(path)


@pytest.mark.parametrize(
    ("lie", "says"),
    [
        (
            {"bits": 7},
            "declares 7 bits per sample in 1 channel(s), 1 byte(s) a frame, but frames of 2",
        ),
        ({"channels": 0}, "declares 0 channels"),
        (
            {"channels": 3},
            "declares 16 bits per sample in 3 channel(s), 6 byte(s) a frame, but frames of 2",
        ),
        ({"rate": 8000, "byte_rate": 32000}, "declares 32000 bytes per second, but 8000 Hz"),
        (
            {"block_align": 4},
            "declares 16 bits per sample in 1 channel(s), 2 byte(s) a frame, but frames of 4",
        ),
    ],
)
def test_a_wav_header_that_contradicts_itself_is_refused(tmp_path, lie, says):
    """7 bits per sample in 2-byte frames was read as 22 s of 8-bit noise: an empty success."""
    path = write(tmp_path, "lie.wav", wav_bytes(tone(), header=lie))
    for source in sources(path):
        with pytest.raises(
            AudioError, match="the WAV header contradicts itself: it " + re.escape(says)
        ):
            load_audio(source)


def test_consistent_odd_wav_headers_still_decode(tmp_path):
    """Not every odd header lies: 8-bit, float64, a 0 or 0xFFFFFFFF data size (a recording
    still being written) and a missing byte rate all decode."""
    x = tone(1.0)
    for data in (
        wav_bytes(x, bits=8),
        wav_bytes(x, tag=3, bits=64),
        wav_bytes(x, header={"data_size": 0}),
        wav_bytes(x, header={"data_size": 0xFFFFFFFF}),
        wav_bytes(x, header={"byte_rate": 0}),
    ):
        assert abs(len(load_audio(data)) - SAMPLE_RATE) <= 1


def test_parse_wav_header_reads_fmt_and_data():
    header = parse_wav_header(wav_bytes(np.zeros(100), 22050, bits=16, channels=1))
    assert (
        header.format_tag,
        header.channels,
        header.sample_rate,
        header.block_align,
        header.bits_per_sample,
        header.data_size,
    ) == (1, 1, 22050, 2, 16, 200)
    assert header.contradiction() is None and header.declared_seconds() == pytest.approx(
        100 / 22050
    )
    assert parse_wav_header(b"not a wav") is None


@pytest.mark.parametrize(
    ("fmt", "codec"), [("w64", "pcm_s16le"), ("caf", "pcm_s16le"), ("caf", "pcm_f32le")]
)
def test_w64_and_caf_cut_short_are_truncated_like_wav(fmt, codec):
    """FFmpeg clamps their declared length to the bytes present, as for WAV."""
    data = encode(tone(), SAMPLE_RATE, fmt, codec)
    assert len(load_audio(data)) == 3 * SAMPLE_RATE
    if fmt == "caf":
        assert caf_declared_seconds(data) == pytest.approx(3.0)
    with pytest.raises(TruncatedAudioError, match=r"declared 3\.0 s, the data ends at 1\.5 s"):
        load_audio(data[: len(data) // 2])


def test_a_sample_rate_under_1000_hz_is_refused():
    """A WAV "at 2 Hz" is hours of nothing from a few bytes: refused, not transcribed."""
    with pytest.raises(
        AudioError, match="declares a sample rate of 2 Hz; no speech is recorded at under 1000 Hz"
    ):
        load_audio(wav_bytes(tone(0.1), 2))


# -- non-finite and out-of-range samples -------------------------------------------------------
@pytest.mark.parametrize(("bad", "at"), [(np.nan, "3.13"), (np.inf, "3.13"), (-np.inf, "3.13")])
def test_non_finite_samples_in_a_file_are_refused_at_once(tmp_path, bad, at):
    """Was accepted: 13-17 s of work for a transcript of '!!!!', with numpy warnings on stderr."""
    x = np.tile(tone(1.0), 5)
    x[50000:51000] = bad
    path = write(tmp_path, "bad.wav", wav_bytes(x, tag=3, bits=32))
    for source in sources(path):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no RuntimeWarning from numpy either
            with pytest.raises(
                AudioError, match=rf"contains NaN or infinite samples \(the first at {at} s\)"
            ):
                load_audio(source)
        assert time.perf_counter() - t0 < 2.0


def test_an_all_nan_file_is_refused_not_an_empty_success():
    with pytest.raises(AudioError, match=r"NaN or infinite samples \(the first at 0\.00 s\)"):
        load_audio(wav_bytes(np.full(SAMPLE_RATE, np.nan), tag=3, bits=64))


def test_nan_in_a_compressed_float_stream_is_refused_as_it_decodes(tmp_path):
    """Formats not scanned ahead (Matroska float PCM here stands for them) are checked per frame."""
    x = tone()
    x[20000] = np.nan
    data = encode(x, SAMPLE_RATE, "matroska", "pcm_f32le")
    with pytest.raises(AudioError, match=r"NaN or infinite samples \(the first at 1\.25 s\)"):
        load_audio(data)


def test_float_samples_beyond_full_scale_are_scaled_with_one_warning(tmp_path, caplog):
    """Speech x 1e6 as float WAV hallucinated ('yeah no. Yes that's awesome'); now it is the
    same signal at full scale, and a warning (stderr, never stdout) says so once."""
    x = tone()
    path = write(tmp_path, "loud.wav", wav_bytes(x * 1e6, tag=3, bits=32))
    with caplog.at_level(logging.WARNING, logger="runtime.audio"):
        out = load_audio(path)
    np.testing.assert_allclose(out, x / np.abs(x).max(), atol=1e-6)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "loud.wav: float samples peak at" in warned[0]
    assert "beyond full scale (1.0): scaled by" in warned[0]
    blocks = np.concatenate(list(iter_audio_blocks(path.read_bytes(), block_seconds=1.0)))
    np.testing.assert_array_equal(blocks, out)  # the whole file's peak, not each block's


def test_float_samples_within_full_scale_are_left_alone(caplog):
    x = tone()
    with caplog.at_level(logging.WARNING, logger="runtime.audio"):
        out = load_audio(wav_bytes(x, tag=3, bits=32))
    np.testing.assert_array_equal(out, x)
    assert not caplog.records


def test_an_array_of_int16_values_as_floats_is_scaled(caplog):
    x = tone()
    with caplog.at_level(logging.WARNING, logger="runtime.audio"):
        out = load_audio(x * 32767)
    np.testing.assert_allclose(out, x / np.abs(x).max(), atol=1e-6)
    assert "audio array: samples peak at" in caplog.text


# -- truncation, consistent across containers --------------------------------------------------
def ogg_opus(x: np.ndarray) -> bytes:
    return encode(x, 48000, "ogg", "libopus")


def test_ogg_opus_cut_short_is_truncated_saying_where_the_data_ends(tmp_path):
    """Was a silently short transcript (exit 0); FLAC, WAV, MP3 and M4A were already errors."""
    data = ogg_opus(tone(6.0))
    path = write(tmp_path, "cut.ogg", data[: len(data) // 2])
    for source in sources(path):
        with pytest.raises(TruncatedAudioError) as caught:
            load_audio(source)
        message = str(caught.value)
        assert "truncated: the Ogg stream stops inside a page; the data ends at" in message
        assert "--allow-truncated (allow_truncated=True) to transcribe its first" in message
        assert 1.5 < caught.value.readable_s < 3.5 and "\n" not in message


def test_ogg_cut_at_a_page_boundary_is_truncated_too():
    data = ogg_opus(tone(6.0))
    last_pages = data.rfind(b"OggS", 0, data.rfind(b"OggS"))
    with pytest.raises(TruncatedAudioError, match="stops after a page that is not its last"):
        load_audio(data[:last_pages])


def test_allow_truncated_transcribes_what_is_there_with_a_warning(caplog):
    data = ogg_opus(tone(6.0))
    cut = data[: len(data) // 2]
    with caplog.at_level(logging.WARNING, logger="runtime.audio"):
        out = load_audio(cut, allow_truncated=True)
        blocks = list(iter_audio_blocks(cut, block_seconds=1.0, allow_truncated=True))
    assert 1.5 < len(out) / SAMPLE_RATE < 3.5
    np.testing.assert_array_equal(np.concatenate(blocks), out)
    assert "transcribing the first" in caplog.text and "truncated input allowed" in caplog.text
    assert len(load_audio(data)) == pytest.approx(
        6 * SAMPLE_RATE, abs=SAMPLE_RATE // 10
    )  # whole: fine


def test_ogg_end_problem():
    data = ogg_opus(tone(1.0))
    assert ogg_end_problem(data) is None
    assert ogg_end_problem(data[:-1]) == "the Ogg stream stops inside a page"
    assert ogg_end_problem(b"no pages") == "the Ogg stream stops inside a page"


def test_a_file_that_declares_a_length_but_decodes_nothing_says_truncated():
    import av

    buffer = io.BytesIO()  # 3 s in one Matroska block: half the file holds no whole packet
    with av.open(buffer, "w", format="matroska") as container:
        stream = container.add_stream("pcm_f32le", rate=SAMPLE_RATE)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(tone()[None], format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    data = buffer.getvalue()
    with pytest.raises(
        AudioError, match=r"truncated or corrupt: declared 3\.0 s, but not one sample decodes"
    ):
        load_audio(data[: len(data) // 2])


# -- messages ----------------------------------------------------------------------------------
def test_a_damaged_file_does_not_say_no_audio_stream_found_audio(tmp_path):
    """Was 'contains no audio stream (found: audio)' for random bytes named .flac."""
    noise = np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    path = write(tmp_path, "noise.flac", noise)
    with pytest.raises(AudioError) as caught:
        load_audio(path)
    assert "found: audio" not in str(caught.value)
    assert "noise.flac: " in str(caught.value)


def test_a_file_name_with_a_newline_gives_a_one_line_error(tmp_path):
    path = write(tmp_path, "two\nlines.wav", b"not audio" * 50)
    with pytest.raises(AudioError) as caught:
        load_audio(path)
    assert "\n" not in str(caught.value) and "two\\nlines.wav: not a readable" in str(caught.value)


def test_something_that_is_not_audio_at_all_is_an_audio_error():
    for value in ([0.0, 0.1], np.float32(0.5), None):
        with pytest.raises(AudioError, match="cannot read audio from a"):
            load_audio(value)
