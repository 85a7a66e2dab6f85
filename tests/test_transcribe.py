"""The sequential long-form path: segment cutting, seeking, fallback and silence gates."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.decoding import DecodingResult
from runtime.pipeline.options import BatchOptions, TranscribeOptions
from runtime.pipeline.runner import BatchRunner
from runtime.pipeline.segments import is_silence, needs_fallback, split_segments
from runtime.pipeline.sequential import transcribe_sequential


def _result(tokens, text="hello there", avg=-0.3, no_speech=0.01, temperature=0.0):
    return DecodingResult(
        tokens=tokens,
        text=text,
        language="en",
        avg_logprob=avg,
        sum_logprob=avg * (len(tokens) + 1),
        no_speech_prob=no_speech,
        temperature=temperature,
    )


def test_split_on_timestamp_pairs(tiny_tokenizer):
    ts = tiny_tokenizer.special.timestamp_begin
    r = _result([ts, 100, 101, ts + 50, ts + 50, 102, ts + 120])  # ends on a single timestamp
    pieces, seek = split_segments(r, tiny_tokenizer, time_offset=30.0, segment_frames=3000)
    assert [(p["start"], p["end"]) for p in pieces] == [(30.0, 31.0), (31.0, 32.4)]
    assert seek == 3000  # a single timestamp ending: the whole window is done


def test_split_seeks_to_last_pair(tiny_tokenizer):
    ts = tiny_tokenizer.special.timestamp_begin
    r = _result([ts, 100, ts + 250, ts + 250, 102, ts + 900, ts + 900, 103])  # cut mid-sentence
    pieces, seek = split_segments(r, tiny_tokenizer, time_offset=0.0, segment_frames=3000)
    assert [(p["start"], p["end"]) for p in pieces] == [(0.0, 5.0), (5.0, 18.0)]
    assert seek == 900 * 2  # resume at 18 s, where the unfinished segment began


def test_split_without_pairs(tiny_tokenizer):
    ts = tiny_tokenizer.special.timestamp_begin
    pieces, seek = split_segments(_result([ts, 100, 101, ts + 400]), tiny_tokenizer, 10.0, 2000)
    assert [(p["start"], p["end"]) for p in pieces] == [(10.0, 18.0)]
    assert seek == 2000


def test_fallback_and_silence_gates():
    opts = TranscribeOptions()
    assert not needs_fallback(_result([1, 2]), opts)
    assert needs_fallback(_result([1, 2], text="the the the " * 40), opts)  # loop: compresses well
    assert needs_fallback(_result([1, 2], avg=-1.5), opts)
    assert not needs_fallback(_result([1, 2], avg=-1.5, no_speech=0.9), opts)  # silence
    assert is_silence(_result([1], avg=-1.5, no_speech=0.9), opts)
    assert not is_silence(_result([1], avg=-0.2, no_speech=0.9), opts)  # confident speech wins


@pytest.mark.parametrize("signal", ["silence", "noise"])
def test_no_text_from_silence_or_noise(cpu_runtime, signal):
    rng = np.random.default_rng(0)
    n = 16000 * 45
    audio = (np.zeros(n) if signal == "silence" else rng.normal(0, 0.05, n)).astype(np.float32)
    runner = BatchRunner(
        cpu_runtime.session, cpu_runtime.tokenizer, cpu_runtime.capabilities, BatchOptions()
    )
    segments = transcribe_sequential(runner, audio, TranscribeOptions(), "en")
    assert "".join(s.text for s in segments).strip() == ""


def test_an_initial_prompt_longer_than_whisper_reads_is_cut_with_a_warning(tiny_tokenizer, caplog):
    """Whisper reads the last 223 tokens (n_text_ctx // 2 - 1) of a prompt, as openai-whisper
    cuts it; a 20,000-character prompt is cut the same way and a warning says so, once."""
    from runtime.pipeline.options import initial_prompt_tokens

    short = initial_prompt_tokens(tiny_tokenizer, "Glossary: pluggy, MLX.", 448)
    assert tiny_tokenizer.decode(short) == " Glossary: pluggy, MLX." and not caplog.records
    prompt = "The weather today is sunny and warm. " * 540 + "Last words."
    for _ in range(3):
        tokens = initial_prompt_tokens(tiny_tokenizer, prompt, 448)
    assert len(tokens) == 223 and tiny_tokenizer.decode(tokens).endswith("Last words.")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "Whisper reads only its last 223" in warnings[0]
    assert initial_prompt_tokens(tiny_tokenizer, None, 448) == []
