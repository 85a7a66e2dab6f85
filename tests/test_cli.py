"""The `runtime` command: transcripts on stdout, output files, and one clear line per bad file."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from runtime.cli import main
from tests.conftest import eval_file


def test_console_script_prints_jfk():
    jfk = eval_file("jfk.flac")
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "transcribe", str(jfk)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ask not what your country can do for you" in proc.stdout
    assert re.match(r"\[00:0\d\.\d{3} --> 00:\d\d\.\d{3}\] ", proc.stdout)
    assert "detected language" not in proc.stderr  # an English-only model detects nothing


def test_bad_files_reported_and_others_still_transcribed(tmp_path, capsys):
    jfk = eval_file("jfk.flac")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 50)
    truncated = tmp_path / "cut.flac"
    truncated.write_bytes(jfk.read_bytes()[: jfk.stat().st_size // 2])
    missing = tmp_path / "missing.mp3"
    status = main(["transcribe", str(missing), str(empty), str(text), str(truncated), str(jfk)])
    out, err = capsys.readouterr()
    assert status == 2
    assert "ask not what your country" in out  # the good file was still transcribed
    lines = err.strip().splitlines()
    assert len(lines) == 4 and "Traceback" not in err
    for line, path in zip(lines, (missing, empty, text, truncated)):
        assert line.startswith("error: ") and path.name in line


def test_output_files(tmp_path, capsys):
    jfk = eval_file("jfk.flac")
    status = main(["transcribe", str(jfk), "-f", "all", "-o", str(tmp_path), "-q"])
    assert status == 0 and capsys.readouterr().out == ""
    for ext in ("txt", "json", "srt", "vtt", "tsv"):
        assert "ask not" in (tmp_path / f"jfk.{ext}").read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["transcribe", "x.wav", "--model", "no-such-model"], "no-such-model"),
        (["transcribe", "x.wav", "--backend", "nope"], "unknown backend"),
    ],
)
def test_bad_model_or_backend(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_detected_language_is_reported_with_how_to_force_one(capsys):
    """As openai-whisper's command does, the language a multilingual model detected is said
    (on stderr, with its probability), so a wrong guess is seen and can be overridden."""
    import argparse
    from types import SimpleNamespace

    from runtime.cli.transcribe import _echo

    args = argparse.Namespace(quiet=False, verbose=False)
    result = SimpleNamespace(segments=[], language="la", language_probability=0.6)
    _echo(args, several=False)(SimpleNamespace(source="talk.flac"), result)
    err = capsys.readouterr().err
    assert err.strip() == (
        "talk.flac: detected language Latin (la, probability 0.60); --language sets it"
    )
    given = SimpleNamespace(segments=[], language="en", language_probability=None)
    _echo(args, several=False)(SimpleNamespace(source="talk.flac"), given)
    assert capsys.readouterr().err == ""


def test_hostile_files_give_one_line_each_and_loud_floats_a_warning(tmp_path):
    """NaN samples, an unknown WAV format tag, a header claiming 7 bits and a truncated Ogg:
    one `error:` line each (no traceback, no numpy warning, no 17 s of work), while a float WAV
    of speech x 1e6 is scaled to full scale, said on stderr, and transcribed right."""
    from runtime.audio.decode import load_audio
    from tests.fuzz_audio import encode, wav_bytes

    speech = load_audio(eval_file("jfk.flac"))
    nan = speech.copy()
    nan[50000:51000] = float("nan")
    ogg = encode(speech, 48000, "ogg", "libopus")
    files = {
        "nan.wav": wav_bytes(nan, tag=3, bits=32),
        "tag.wav": wav_bytes(speech, header={"tag": 0x1234}),
        "bits7.wav": wav_bytes(speech, header={"bits": 7}),
        "cut.ogg": ogg[: len(ogg) // 2],
        "loud.wav": wav_bytes(speech * 1e6, tag=3, bits=32),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "transcribe", *files],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "ask not what your country can do for you" in proc.stdout.lower()
    assert "Traceback" not in proc.stderr and "Warning:" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert [e.split(":")[1].strip() for e in errors] == [
        "nan.wav",
        "tag.wav",
        "bits7.wav",
        "cut.ogg",
    ]
    assert "NaN or infinite samples (the first at 3.13 s)" in errors[0]
    assert "WAV format tag 0x1234" in errors[1] and "contradicts itself" in errors[2]
    assert "the data ends at 5.0 s" in errors[3] and "--allow-truncated" in errors[3]
    assert "loud.wav: float samples peak at" in proc.stderr  # the warning: stderr, not stdout
    assert "peak" not in proc.stdout

    allowed = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "transcribe", "cut.ogg", "--allow-truncated"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.lower().count("and so my fellow americans") == 1
    assert "transcribing the first 5.0 s" in allowed.stderr


def test_a_file_name_with_a_newline_fails_in_one_line(tmp_path, capsys):
    bad = tmp_path / "two\nlines.wav"
    bad.write_bytes(b"not audio" * 50)
    assert main(["transcribe", str(bad)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "two\\nlines.wav: not a readable" in err
