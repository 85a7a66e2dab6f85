"""The batched path (source, scheduler, runner): VAD chunks, static batches, decoder modes,
continuations, bounded blocks, streams and their prompts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from runtime.audio.constants import N_SAMPLES
from runtime.audio.decode import load_audio
from runtime.decoding import DecodingResult
from runtime.pipeline.options import BatchOptions, TranscribeOptions
from runtime.pipeline.runner import BatchRunner, Row
from runtime.pipeline.scheduler import Scheduler, run_to_completion
from runtime.pipeline.source import Block, SourceRun, Stream
from runtime.pipeline.window import Window
from tests.conftest import EVAL_DIR, eval_file
from tools.eval_common import load_librispeech, wer

SR = 16000


@pytest.fixture(scope="module")
def speech_minute():
    """Six LibriSpeech utterances with 1 s pauses (about a minute) and their joined reference."""
    if not EVAL_DIR.exists():
        pytest.skip("../shared/eval is absent")
    utts = load_librispeech(["test-clean"])[:6]
    gap = np.zeros(SR, np.float32)
    audio = np.concatenate([x for u in utts for x in (load_audio(u.audio), gap)])
    return audio, " ".join(u.reference for u in utts)


def _batched(rt, audio, caps=None, session=None, **batch_options):
    """One input through the scheduler and runner: ``Runtime.transcribe``'s batched path."""
    session = session or rt.session
    batch = BatchOptions(**batch_options)
    run = SourceRun(session, rt.tokenizer, TranscribeOptions(), batch, audio, "en")
    run_to_completion(
        Scheduler(batch), BatchRunner(session, rt.tokenizer, caps or rt.capabilities, batch), run
    )
    return run.ordered_segments()


def _text(segments) -> str:
    return "".join(s.text for s in segments)


def test_batched_jfk(cpu_runtime):
    result = cpu_runtime.transcribe(eval_file("jfk.flac"), batch_size=4)
    assert "ask not what your country can do for you" in result.text
    assert set(result.timings) >= {"vad", "mel", "encode", "decode"}


@pytest.fixture(scope="module")
def batched_minute(cpu_runtime, speech_minute):
    return _batched(cpu_runtime, speech_minute[0], batch_size=4)


def test_multi_chunk_accuracy_and_order(batched_minute, speech_minute):
    audio, reference = speech_minute
    segments = batched_minute
    assert wer(reference, _text(segments)) < 0.10
    starts = [s.start for s in segments]
    assert starts == sorted(starts) and [s.id for s in segments] == list(range(len(segments)))
    assert segments[-1].end <= len(audio) / SR + 0.5


def test_sequential_decoder_mode_gives_the_same_text(cpu_runtime, speech_minute, batched_minute):
    audio, _ = speech_minute
    batched = batched_minute
    one_by_one = _batched(cpu_runtime, audio, batch_size=4, decoder="sequential")
    assert [s.tokens for s in batched] == [s.tokens for s in one_by_one]


def test_static_batch_sizes_are_padded(cpu_runtime, speech_minute, batched_minute):
    audio, _ = speech_minute
    seen = []
    session = cpu_runtime.session

    class Recording:
        def __getattr__(self, name):
            return getattr(session, name)

        def encode(self, mel):
            seen.append(mel.shape[0])
            return session.encode(mel)

    caps = dataclasses.replace(cpu_runtime.capabilities, encoder_batch_sizes=(6,))
    static = _batched(cpu_runtime, audio, caps, Recording(), batch_size=4)
    assert seen and set(seen) == {6}  # every encoder call has the static size, padded
    assert [s.tokens for s in static] == [s.tokens for s in batched_minute]


def test_small_blocks_keep_every_word(cpu_runtime, speech_minute, batched_minute):
    """Blocks of 30 s (a chunk carried across each boundary) lose nothing against one block."""
    audio, reference = speech_minute
    small = _batched(cpu_runtime, audio, batch_size=4, block_s=30)
    big = batched_minute
    assert wer(reference, _text(small)) <= wer(reference, _text(big)) + 0.02


@pytest.mark.parametrize(
    "signal, chunking", [("silence", "vad"), ("silence", "fixed"), ("noise", "vad")]
)
def test_no_text_without_speech(cpu_runtime, signal, chunking):
    rng = np.random.default_rng(0)
    n = SR * 65
    audio = (np.zeros(n) if signal == "silence" else rng.normal(0, 0.05, n)).astype(np.float32)
    assert _text(_batched(cpu_runtime, audio, chunking=chunking)).strip() == ""


def test_unfinished_chunk_continues(cpu_runtime):
    tok = cpu_runtime.tokenizer
    ts = tok.special.timestamp_begin
    words = tok.encode(" hello")
    tokens = [ts, *words, ts + 250, ts + 250, *words, ts + 900, ts + 900, *words]
    result = DecodingResult(
        tokens=tokens,
        text="hello hello hello",
        language="en",
        avg_logprob=-0.2,
        sum_logprob=-2.0,
        no_speech_prob=0.0,
        temperature=0.0,
    )
    b = SourceRun(cpu_runtime.session, tok, TranscribeOptions(), BatchOptions(), source=None)
    cont, kept = b.collect(Window(mel=None, start_frame=500, n_frames=3000, offset_s=60.0), result)
    assert [(s.start, s.end) for s in b.segments] == [(65.0, 70.0), (70.0, 83.0)]
    assert (cont.start_frame, cont.n_frames) == (500 + 1800, 1200)
    assert kept == tokens[: -(len(words) + 1)]  # the stream's next context: the kept segments


def _fake_result() -> DecodingResult:
    return DecodingResult(
        tokens=[],
        text="",
        language="en",
        avg_logprob=-0.1,
        sum_logprob=-0.1,
        no_speech_prob=0.0,
        temperature=0.0,
    )


class ScriptedRun(SourceRun):
    """A SourceRun over given blocks whose windows are 30 s pieces numbered 0, 1, ... and whose
    decoded text is two tokens per window (100 + i, 200 + i)."""

    def __init__(self, rt, blocks, **batch):
        super().__init__(
            rt.session, rt.tokenizer, TranscribeOptions(), BatchOptions(**batch), source=None
        )
        self._prepared_blocks = iter(blocks)

    def collect(self, window, result):
        i = window.start_frame // 3000
        return None, [100 + i, 200 + i]


class ScriptedRunner:
    """Runs nothing: records each batch's rows (input, window number, prompt)."""

    def __init__(self) -> None:
        self.rounds: list = []

    def run(self, rows):
        self.rounds.append([(id(r.input), r.window.start_frame // 3000, r.prompt) for r in rows])
        return [_fake_result() for _ in rows]

    step = BatchRunner.step  # a whole batch per step


def _windows(*ids):
    """A block whose speech is the 30 s windows numbered ``ids`` (each a window of its own)."""
    return Block(
        mel=None,
        offset_s=0.0,
        pieces=[(i * N_SAMPLES, (i + 1) * N_SAMPLES - 1) for i in ids],
        regions=[],
    )


def test_blocks_are_streams_that_carry_their_context(cpu_runtime):
    """Each block's chunks are a stream: B streams decode side by side, each chunk prompted with
    its stream's text so far; a stream opened after the one before it finished continues its
    text."""
    run = ScriptedRun(
        cpu_runtime, [_windows(0, 1), _windows(2, 3), _windows(4)], batch_size=2, context_tokens=2
    )
    runner = ScriptedRunner()
    scheduler = Scheduler(BatchOptions(batch_size=2))
    scheduler.add(run)
    finished = []
    while scheduler.pending:
        finished += scheduler.step(runner)
    assert [[(f, p) for _, f, p in r] for r in runner.rounds] == [
        [(0, []), (2, [])],
        [(1, [100, 200]), (3, [102, 202])],
        [(4, [103, 203])],
    ]
    assert finished == [run] and run.done


def test_rows_of_many_inputs_share_batches_oldest_first(cpu_runtime):
    """Chunks of several inputs fill one batch; the oldest input's rows go first. With every
    block open and rows free, b's last stream splits: 12 decodes beside 11, unprompted."""
    a = ScriptedRun(cpu_runtime, [_windows(0), _windows(1), _windows(2)], batch_size=4)
    b = ScriptedRun(cpu_runtime, [_windows(10), _windows(11, 12)], batch_size=4)
    runner = ScriptedRunner()
    scheduler = Scheduler(BatchOptions(batch_size=4))
    scheduler.add(a)
    scheduler.add(b)
    done_order = []
    while scheduler.pending:
        done_order += scheduler.step(runner)
    assert [[f for _, f, _ in r] for r in runner.rounds] == [[0, 1, 2, 10], [11, 12]]
    assert [p for _, _, p in runner.rounds[1]] == [[110, 210], []]
    assert done_order == [a, b]


def test_a_file_end_splits_its_streams_over_free_rows(cpu_runtime):
    """Every block open and rows free: the stream with the most speech left gives its later
    half (cut at a window's start) to a new, unprompted stream, which carries its own context
    from there; each window is decoded once."""
    run = ScriptedRun(cpu_runtime, [_windows(0, 1, 2, 3)], batch_size=2, context_tokens=2)
    runner = ScriptedRunner()
    scheduler = Scheduler(BatchOptions(batch_size=2))
    scheduler.add(run)
    while scheduler.pending:
        scheduler.step(runner)
    assert [[(f, p) for _, f, p in r] for r in runner.rounds] == [
        [(0, []), (2, [])],
        [(1, [100, 200]), (3, [102, 202])],
    ]
    assert run.done


def test_stream_split_halves_the_speech_after_its_next_window():
    """Pieces of 20 s at 0, 25, 50 and 75 s: the next window holds the first alone (the second
    would pass 30 s), so the split is at 50 s (40 s of speech each side); the parent's windows
    stop there, the child's begin there; too little speech left splits nothing."""
    pieces = [(k * 25 * SR, (k * 25 + 20) * SR) for k in range(4)]
    block = Block(mel=None, offset_s=0.0, pieces=pieces, regions=[])
    parent = Stream(block, [1, 2])
    assert parent.later_speech() == 60 * SR
    child = parent.split([7])
    assert child is not None and child.history == [7] and parent.history == [1, 2]
    assert parent.stop == child.cursor == 50 * SR
    assert parent.pieces() == pieces[:2] and child.pieces() == pieces[2:]
    parent.cursor = 25 * SR  # after the first window: the next one stops at the split
    window = parent.next_window()
    assert window is not None and (window.start_frame, window.n_frames) == (2500, 2000)
    assert child.split([]) is not None  # 20 s after its next window
    small = Stream(Block(None, 0.0, [(0, 20 * SR), (21 * SR, 30 * SR), (31 * SR, 40 * SR)], []), [])
    assert small.later_speech() == 9 * SR and small.split([]) is None


def test_stream_windows_resume_at_the_seek_and_merge_what_follows():
    """A window ends at the last silence within 30 s; after a seek the next window starts at
    the seek and takes in the speech that follows (no window for a remainder alone)."""
    sec = SR
    block = Block(
        mel=None,
        offset_s=100.0,
        pieces=[(0, 20 * sec), (22 * sec, 40 * sec)],
        regions=[(0, 20 * sec), (22 * sec, 40 * sec)],
    )
    stream = Stream(block, history=[])
    first = stream.next_window()
    assert (first.start_frame, first.n_frames, first.start_s) == (0, 2000, 100.0)
    stream.cursor = 15 * sec  # the text stopped at 15 s
    second = stream.next_window()
    assert (second.start_frame, second.n_frames) == (1500, 2500)
    assert second.speech == [(1500, 2000), (2200, 4000)]
    stream.cursor = 40 * sec
    assert stream.next_window() is None and not stream.has_work


def test_prompts_are_the_streams_own_text_in_a_few_lengths(cpu_runtime):
    """A row is prompted with its stream's last 223 tokens (Whisper's), or with fewer, in whole
    multiples of 32, while the stream has less text (all of it below 32 tokens, so a short
    initial prompt is kept): a function of the stream alone."""
    run = SourceRun(
        cpu_runtime.session, cpu_runtime.tokenizer, TranscribeOptions(), BatchOptions(), source=None
    )
    history = list(range(1000, 1300))
    assert run.prompt(history) == history[-223:]
    assert run.prompt(history[:223]) == history[:223]
    assert run.prompt(history[:222]) == history[222 - 192 : 222]
    assert run.prompt(history[:70]) == history[6:70]
    assert run.prompt(history[:31]) == history[:31]  # below one step: all of it
    assert run.prompt([]) == []
    glossary = SourceRun(
        cpu_runtime.session,
        cpu_runtime.tokenizer,
        TranscribeOptions(initial_prompt="Glossary: pluggy, MLX"),
        BatchOptions(),
        source=None,
    )
    assert glossary.initial and glossary.prompt(list(glossary.initial)) == glossary.initial
    long_prompt = SourceRun(
        cpu_runtime.session,
        cpu_runtime.tokenizer,
        TranscribeOptions(initial_prompt="pluggy, MLX, ONNX Runtime " * 8),
        BatchOptions(),
        source=None,
    )
    initial = list(long_prompt.initial)
    assert 32 < len(initial) < 223 and len(initial) % 32
    assert long_prompt.prompt(initial) == initial  # not cut to a multiple of 32
    none = SourceRun(
        cpu_runtime.session,
        cpu_runtime.tokenizer,
        TranscribeOptions(),
        BatchOptions(context_tokens=0),
        source=None,
    )
    assert none.prompt(history) == []


def test_a_rows_prompt_does_not_depend_on_its_batch(cpu_runtime, monkeypatch):
    """Rows whose prompts differ in length decode in calls of their own, each with its whole
    prompt: cutting them to a common length would make a request's text depend on the others
    it is batched with (on the server, other users' requests)."""
    import runtime.pipeline.runner as runner_module

    calls = []

    def fake_decode(session, features, tokenizer, options, prompts):
        calls.append([list(p) for p in prompts])
        return [_fake_result() for _ in prompts]

    monkeypatch.setattr(runner_module, "decode", fake_decode)
    run = ScriptedRun(cpu_runtime, [], batch_size=4)
    run.options = dataclasses.replace(run.options, temperatures=(0.0,))
    prompts = [[1, 2, 3], [], [7, 8, 9], [10, 11, 12, 13]]
    rows = [Row(None, p, run, "en") for p in prompts]
    runner = BatchRunner(
        cpu_runtime.session,
        cpu_runtime.tokenizer,
        cpu_runtime.capabilities,
        BatchOptions(batch_size=4),
    )
    results = runner.decode(np.zeros((4, 1500, 384), np.float32), rows)
    assert len(results) == 4 and all(r is not None for r in results)
    assert sorted(calls) == [[[]], [[1, 2, 3], [7, 8, 9]], [[10, 11, 12, 13]]]
