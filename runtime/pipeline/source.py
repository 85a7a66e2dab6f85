"""One input on its way through the batched path: its audio read in blocks, each block's speech
cut into windows, and the results of its windows cut into segments.

    audio blocks ──VAD──> speech chunks (<= 30 s, cut in silences)
      └─ log-mel once per block, on the backend's device; windows sliced per chunk
      └─ streams of consecutive chunks, each conditioned on the text before it (``Stream``)
      └─ rows taken from the streams of every input in flight (``runtime.pipeline.scheduler``)
      └─ a window whose text stops before its end continues as a new window (the batched form
         of Whisper's seek), so speech is never dropped at a window's end

Audio is read in blocks of 30 s to 4 minutes (``SourceRun.block_seconds``), so memory stays
bounded whatever the length.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from runtime.audio.blocks import iter_audio_blocks_flagged
from runtime.audio.chunking import Chunk, fixed_chunks, split_long, vad_chunks
from runtime.audio.constants import FRAMES_PER_SECOND, HOP_LENGTH, N_SAMPLES, SAMPLE_RATE
from runtime.audio.decode import audio_duration
from runtime.audio.vad import speech_probs, speech_regions
from runtime.backend import Session
from runtime.decoding import DecodingResult
from runtime.model.tokenizer import Tokenizer
from runtime.output.results import Segment
from runtime.pipeline.memory import release_free_memory
from runtime.pipeline.options import (
    BatchOptions,
    Priority,
    TranscribeOptions,
    initial_prompt_tokens,
)
from runtime.pipeline.segments import (
    attach_words,
    emit_segments,
    is_digital_silence,
    is_silence,
    split_segments,
    tag_language,
)
from runtime.pipeline.streams import Block, Stream
from runtime.pipeline.window import Stopwatch, Window

MIN_CONTINUATION_FRAMES = 100  # less than 1 s left after the last complete segment: done
MIN_UNCOVERED_SPEECH_FRAMES = 100  # VAD speech this long after the last segment: decode it


class SourceRun:
    """One input on its way through the batched path. Its audio is read in blocks
    (``block_seconds``);
    each block's chunks form a stream, and up to B streams of an input decode side by side, so a
    batch stays full from the first block to the last, and memory holds B blocks whatever the
    length. The scheduler takes rows (stream heads) from it and hands results back."""

    def __init__(
        self,
        session: Session,
        tokenizer: Tokenizer,
        options: TranscribeOptions,
        batch: BatchOptions,
        source: Any,
        language: str | None = None,
        progress: Callable[[float], None] | None = None,
        *,
        priority: int = Priority.NORMAL,
        on_segments: Callable[[list[Segment]], None] | None = None,
    ) -> None:
        self.session, self.tokenizer = session, tokenizer
        self.priority = priority  # the scheduler's ordering key (``Priority``)
        # segments in the order of the audio, as soon as no earlier one can still come
        self.on_segments = on_segments
        self._unreleased: deque[Stream] = deque()  # opened streams not yet wholly handed on
        self.options, self.batch, self.source = options, batch, source
        self.language = language if tokenizer.multilingual else "en"
        self.language_probability: float | None = None  # when the language was detected
        self.progress = progress
        self.clock = Stopwatch()
        self.segments: list[Segment] = []
        self.samples = 0
        self.vad_method: str | None = None
        self.initial = initial_prompt_tokens(
            tokenizer, options.initial_prompt, session.model.dims.n_text_ctx
        )
        self.streams: list[Stream] = []  # open streams, in the order of the audio
        self.exhausted = False
        self.error: Exception | None = None  # the input failed (unreadable audio, ...)
        self.preparing: Any = None  # the future of ``prepare`` in the scheduler's thread
        self._previous: Stream | None = None
        self._prepared_blocks: Iterator[Block] | None = None
        self._prepared: Block | None = None
        self._lock = threading.Lock()
        self._done_s = 0.0

    # -- rows for the scheduler ---------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.exhausted and not any(s.has_work for s in self.streams)

    def ready(self, limit: int) -> list[Stream]:
        """Up to ``limit`` streams with a chunk to decode and no window being decoded, opening
        the next blocks' streams while fewer are idle and fewer than the batch size are open.
        Raises the input's error (unreadable audio)."""
        if self.error is not None:
            raise self.error
        open_streams = len(self.streams)
        self.streams = [s for s in self.streams if s.has_work]
        if len(self.streams) < open_streams:  # a block is done: its arrays are free now
            release_free_memory()
        idle = [s for s in self.streams if not s.busy]
        while len(idle) < limit and len(self.streams) < self.batch.batch_size:
            if self.exhausted or not self._open_stream():
                break
            idle.append(self.streams[-1])
        return idle[:limit]

    def split_tail(self, limit: int) -> list[Stream]:
        """Rows that would sit idle at the input's end (every block is open): up to ``limit``
        new streams, each the later half of the stream with the most speech left, so a file
        does not end on one or two rows decoding alone. A new stream is prompted with the
        initial prompt only, as a block's stream is when the one before it is unfinished."""
        new: list[Stream] = []
        while self.exhausted and len(new) < limit and len(self.streams) < self.batch.batch_size:
            if not self.streams:
                break
            parent = max(self.streams, key=Stream.later_speech)
            child = parent.split(list(self.initial))
            if child is None:
                break
            self.streams.insert(self.streams.index(parent) + 1, child)
            if parent in self._unreleased:  # its segments come before the child's
                self._unreleased.insert(self._unreleased.index(parent) + 1, child)
            new.append(child)
        return new

    def take(self, stream: Stream) -> tuple[Window, list[int]]:
        """The stream's next window and its prompt."""
        window = stream.next_window()
        # ready() hands out only streams that have work, which is a next window
        assert window is not None, "take() of a stream with no window left"
        stream.busy = True
        return window, self.prompt(stream.history)

    def prompt(self, history: list[int]) -> list[int]:
        """The last ``context_tokens`` of a stream's text (Whisper's 223); while it has fewer,
        its last whole multiple of ``context_step`` (all of it below one step, or while it is
        still just the initial prompt). Rows decode together only with prompts of one length:
        a few lengths keep batches full, and each row's prompt depends on its own stream alone,
        so its text never depends on what it is batched with."""
        n, step = self.batch.context_tokens, self.batch.context_step
        if len(history) >= n:
            keep = n
        elif len(history) <= len(self.initial):  # the user's initial prompt, whole
            keep = len(history)
        else:
            keep = len(history) // step * step or len(history)
        return history[len(history) - keep :] if keep else []

    def finish(self, stream: Stream, window: Window, result: DecodingResult) -> None:
        """A decoded row: its segments kept, its stream's history extended, and what is left of
        the chunk (if its text stopped early) put back at the head of the stream."""
        stream.busy = False
        before = len(self.segments)
        continuation, kept = self.collect(window, result)
        stream.segments += self.segments[before:]
        conditioned = (
            self.options.condition_on_previous_text
            and result.temperature <= self.options.prompt_reset_on_temperature
        )
        stream.history = stream.history + kept if conditioned else list(self.initial)
        end = continuation.start_frame if continuation else window.start_frame + window.n_frames
        stream.cursor = max(stream.cursor, end * HOP_LENGTH)
        if self.progress:  # audio seconds: blocks read before, and this block's cursor
            self._done_s = max(self._done_s, window.offset_s + end / FRAMES_PER_SECOND)
            self.progress(min(self._done_s, self.duration))
        if self.on_segments is not None:
            self._release()

    def _release(self) -> None:
        """Hand on the segments that no later result can precede: streams decode side by side,
        so a stream's segments wait until every stream before it is done (a stream's own come
        in order, and later blocks start after earlier ones end)."""
        assert self.on_segments is not None
        ready: list[Segment] = []
        while self._unreleased:
            stream = self._unreleased[0]
            ready += stream.segments[stream.released :]
            stream.released = len(stream.segments)
            if stream.has_work:
                break
            self._unreleased.popleft()  # done: its block is no longer held here
        if ready:
            self.on_segments(ready)

    def ordered_segments(self) -> list[Segment]:
        ordered = sorted(self.segments, key=lambda s: (s.start, s.end))
        return [dataclasses.replace(s, id=i) for i, s in enumerate(ordered)]

    @property
    def duration(self) -> float:
        return self.samples / SAMPLE_RATE

    # -- preparing blocks (decode audio, VAD, mel) --------------------------------------------
    @property
    def needs_preparing(self) -> bool:
        """Whether the next block should be prepared ahead now: none is ready, none is being
        prepared, and the input has more and has not failed."""
        if self.exhausted or self.error is not None or self._prepared is not None:
            return False
        return self.preparing is None or self.preparing.done()

    def prepare(self) -> None:
        """Compute the next block's chunks ahead of need (the scheduler calls this from its
        preparing thread, so audio decoding, VAD and mel overlap the encoder and decoder)."""
        with self._lock:
            try:
                if self._prepared is None and not self.exhausted:
                    self._prepared = self._read_block()
            except Exception as exc:  # noqa: BLE001 - reported by ``ready`` to the scheduler
                self.error = exc

    def _open_stream(self) -> bool:
        """Open the next block with speech as a stream; False when the input has no more."""
        with self._lock:
            block, self._prepared = self._prepared, None
            while (block is None or not block.pieces) and not self.exhausted:  # no speech
                block = self._read_block()
        if block is None or not block.pieces:
            return False
        previous = self._previous  # a stream that starts after the one before it finished
        history = (
            previous.history if previous is not None and not previous.has_work else self.initial
        )
        self._previous = Stream(block, list(history))
        self.streams.append(self._previous)
        if self.on_segments is not None:
            self._unreleased.append(self._previous)
        return True

    def _read_block(self) -> Block | None:
        """The next block (possibly without speech), or None at the end of the input."""
        if self._prepared_blocks is None:
            self._prepared_blocks = self._prepared_blocks_of(self.source)
        block = next(self._prepared_blocks, None)
        if block is None:
            self.exhausted = True
        return block

    def block_seconds(self) -> float:
        """Blocks of ``batch.block_s``; by default the length that gives every row of a batch a
        stream of its own (known durations), between 30 s and 4 minutes, in whole 30 s windows."""
        if self.batch.block_s:
            seconds = self.batch.block_s
        else:
            duration = _duration_of(self.source)
            seconds = 120.0 if duration is None else duration / self.batch.batch_size
            seconds = min(max(seconds, 30.0), 240.0)
        return max(30.0, -(-seconds // 30.0) * 30.0)

    def _blocks(self, source: Any) -> Iterator[tuple[np.ndarray, bool]]:
        """Audio blocks with a flag for the last one, each timed as decoding."""
        t = time.perf_counter()
        blocks = iter_audio_blocks_flagged(
            source, block_seconds=self.block_seconds(), allow_truncated=self.options.allow_truncated
        )
        for block, last in blocks:
            t = self.clock.add("decode_audio", t)
            held = [block]  # the caller's reference is the only one while suspended
            del block
            yield held.pop(), last
            t = time.perf_counter()

    def _prepared_blocks_of(self, source: Any) -> Iterator[Block]:
        """Per block: its speech pieces (the last chunk deferred to the next block unless
        final), log-mel and VAD regions."""
        carry, carry_at = np.zeros(0, np.float32), 0  # audio held back, and its absolute offset
        for block, last in self._blocks(source):
            self.samples += len(block)
            buf = np.concatenate([carry, block]) if len(carry) else block
            del block  # held while suspended below otherwise, as is anything named here
            chunks, regions, pieces = self._chunks(buf)
            if not last and self.batch.chunking == "vad":
                keep_from = chunks[-1].start if chunks else max(0, len(buf) - SAMPLE_RATE)
                pieces = [(s, e) for s, e in pieces if e <= keep_from]
                carry, next_at = buf[keep_from:].copy(), carry_at + keep_from
            else:
                carry, next_at = np.zeros(0, np.float32), carry_at + len(buf)
            t = time.perf_counter()
            mel = self.session.log_mel(buf, padding=N_SAMPLES if last else 0)
            self.clock.add("mel", t)
            del buf, chunks  # the block's audio is not needed once its mel is made
            yield Block(mel, carry_at / SAMPLE_RATE, pieces, regions)
            carry_at = next_at

    def _chunks(
        self, audio: np.ndarray
    ) -> tuple[list[Chunk], list[tuple[int, int]], list[tuple[int, int]]]:
        """Chunks of the audio, the VAD's speech regions, and the speech as pieces of at most
        30 s (samples); digital silence is no speech."""
        if self.batch.chunking == "fixed":
            chunks = [
                c
                for c in fixed_chunks(len(audio))
                if not is_digital_silence(audio[c.start : c.end], self.options)
            ]
            return chunks, [], [(c.start, c.end) for c in chunks]
        t = time.perf_counter()
        probs = speech_probs(audio)
        self.vad_method = probs.method
        regions = speech_regions(probs.probs, self.batch.vad, len(audio))
        self.clock.add("vad", t)
        pieces = [p for s, e in regions for p in split_long(s, e, probs.probs, N_SAMPLES)]
        pieces = [(s, e) for s, e in pieces if not is_digital_silence(audio[s:e], self.options)]
        return vad_chunks(regions, probs.probs), regions, pieces

    # -- results --------------------------------------------------------------------------------
    def collect(self, window: Window, result: DecodingResult) -> tuple[Window | None, list[int]]:
        """Segments in absolute time; an unfinished chunk continues as a new window. Returns that
        window (or None) and the tokens of the segments kept (the stream's next context)."""
        if is_silence(result, self.options):
            return None, []
        pieces, seek = split_segments(result, self.tokenizer, window.start_s, window.n_frames)
        # words (the window's start is the last speech before it) and, per chunk, its language
        attach_words(pieces, result, window.start_s, self.tokenizer, self.options, window.start_s)
        tag_language(pieces, result, self.options)
        segments, kept, end_s = emit_segments(
            pieces, self.tokenizer, result, round(window.start_s * FRAMES_PER_SECOND)
        )
        self.segments += segments
        if seek >= window.n_frames - MIN_CONTINUATION_FRAMES:
            covered = (
                0
                if end_s is None
                else round((end_s - window.offset_s) * FRAMES_PER_SECOND) - window.start_frame
            )
            seek = self._uncovered_speech(window, covered, seek)
        if 0 < seek < window.n_frames - MIN_CONTINUATION_FRAMES:
            return Window(
                window.mel,
                window.start_frame + seek,
                window.n_frames - seek,
                window.offset_s,
                window.speech,
            ), kept
        return None, kept

    @staticmethod
    def _uncovered_speech(window: Window, covered: int, seek: int) -> int:
        """Whisper sometimes ends a window early, as if the rest were silence. Where the VAD
        heard speech after the last segment, resume there instead of dropping it."""
        for start, end in window.speech:
            start, end = start - window.start_frame, end - window.start_frame
            if end - max(start, covered) >= MIN_UNCOVERED_SPEECH_FRAMES:
                resume = max(start, covered)
                return resume if resume > 0 else seek
        return seek


def _duration_of(source: Any) -> float | None:
    """Seconds of an input, when known without decoding it (arrays, files that declare it)."""
    if isinstance(source, np.ndarray):
        return max(source.shape) / SAMPLE_RATE if source.ndim else None
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        try:
            return audio_duration(source)
        except Exception:  # noqa: BLE001 - unreadable input: reading it later says why
            return None
    return None
