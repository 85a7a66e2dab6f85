from __future__ import annotations

import json

import pytest

from runtime.output.results import RunInfo, Segment, Transcription
from runtime.output.writers import WRITERS, format_timestamp, segment_text


def _seg(i, start, end, text):
    return Segment(
        id=i,
        seek=0,
        start=start,
        end=end,
        text=text,
        tokens=(1, 2),
        temperature=0.0,
        avg_logprob=-0.2,
        compression_ratio=1.1,
        no_speech_prob=0.01,
    )


@pytest.fixture
def result():
    segs = (
        _seg(0, 0.0, 7.74, " And so my fellow Americans,"),
        _seg(1, 7.74, 3725.5, " ask not --> what\tyour country."),
    )
    return Transcription(
        text=segment_text(segs),
        segments=segs,
        language="en",
        duration=3726.0,
        run=RunInfo(model="tiny.en", backend="cpu", device="cpu"),
    )


def test_format_timestamp():
    assert format_timestamp(0) == "00:00.000"
    assert format_timestamp(12.3456) == "00:12.346"
    assert format_timestamp(3725.5, True, ",") == "01:02:05,500"
    assert format_timestamp(3725.5) == "01:02:05.500"
    with pytest.raises(ValueError):
        format_timestamp(-1)


def test_srt(result):
    assert WRITERS["srt"]().to_string(result) == (
        "1\n00:00:00,000 --> 00:00:07,740\nAnd so my fellow Americans,\n\n"
        "2\n00:00:07,740 --> 01:02:05,500\nask not -> what\tyour country.\n\n"
    )


def test_vtt(result):
    assert WRITERS["vtt"]().to_string(result) == (
        "WEBVTT\n\n00:00.000 --> 00:07.740\nAnd so my fellow Americans,\n\n"
        "00:07.740 --> 01:02:05.500\nask not -> what\tyour country.\n\n"
    )


def test_tsv_txt(result):
    assert WRITERS["tsv"]().to_string(result).splitlines() == [
        "start\tend\ttext",
        "0\t7740\tAnd so my fellow Americans,",
        "7740\t3725500\task not --> what your country.",
    ]
    assert WRITERS["txt"]().to_string(result) == (
        "And so my fellow Americans,\nask not --> what\tyour country.\n"
    )


def test_json_round_trip(result):
    data = json.loads(WRITERS["json"]().to_string(result))
    assert data["text"] == "And so my fellow Americans, ask not --> what\tyour country."
    assert data["segments"][1]["end"] == 3725.5 and data["segments"][0]["tokens"] == [1, 2]
    assert data["run"]["backend"] == "cpu" and "words" not in data["segments"][0]


def test_write_to_dir_is_atomic(result, tmp_path):
    path = WRITERS["srt"]().write_to_dir(result, tmp_path / "out", "talk")
    assert path == tmp_path / "out" / "talk.srt" and path.read_text().startswith("1\n")
    assert not list((tmp_path / "out").glob("*.part"))
