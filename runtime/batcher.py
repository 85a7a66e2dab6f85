"""The common batcher: every backend is fed through it.

    audio blocks ──VAD──> speech chunks (<= 30 s, cut in silences)
      └─ log-mel once per block, on the backend's device; windows sliced per chunk
      └─ encoder over batches of B windows (static sizes padded)
      └─ decoder: rows of a batch advance together (or one by one, by capability/profile);
         only rows that fail the quality checks are re-decoded hotter, batched again
      └─ a chunk whose text stops before its end continues as a new chunk (the batched form of
         Whisper's seek), so speech is never dropped at a chunk's end

Audio is read in blocks (10 min by default), so memory stays bounded whatever the length.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from runtime.audio import SAMPLE_RATE, iter_audio_blocks
from runtime.backend import Capabilities, Session
from runtime.chunking import Chunk, fixed_chunks, vad_chunks
from runtime.decoding import DecodingResult, decode, detect_language
from runtime.mel import FRAMES_PER_SECOND, HOP_LENGTH, N_SAMPLES
from runtime.results import Segment
from runtime.tokenizer import Tokenizer
from runtime.transcribe import (TranscribeOptions, is_digital_silence, is_silence,
                                make_segment, needs_fallback, split_segments)
from runtime.vad import VadOptions, speech_probs, speech_regions

MIN_CONTINUATION_FRAMES = 100  # less than 1 s left after the last complete segment: done
MIN_UNCOVERED_SPEECH_FRAMES = 100  # VAD speech this long after the last segment: decode it


@dataclass(frozen=True)
class BatchOptions:
    batch_size: int = 8  # chunks per encoder call
    decoder: str = "batched"  # "sequential" decodes rows one by one through the same loop
    chunking: str = "vad"  # "fixed": plain 30 s windows
    block_s: float = 1200.0  # audio read, VAD'd and mel'd at a time (a multiple of 30 s)
    context_tokens: int = 32  # previous-text tokens each row is prompted with (0: none)
    vad: VadOptions = field(default_factory=VadOptions)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.decoder not in ("batched", "sequential"):
            raise ValueError(f"decoder must be 'batched' or 'sequential', not {self.decoder!r}")
        if self.chunking not in ("vad", "fixed"):
            raise ValueError(f"chunking must be 'vad' or 'fixed', not {self.chunking!r}")


@dataclass
class Job:
    """One window to decode: a span of a block's log-mel, and the speech the VAD heard in it."""

    mel: Any
    start_frame: int  # within ``mel``
    n_frames: int
    offset_s: float  # absolute time of the block's frame 0
    speech: list[tuple[int, int]] = field(default_factory=list)  # VAD regions, frames in mel

    @property
    def start_s(self) -> float:
        return self.offset_s + self.start_frame / FRAMES_PER_SECOND


class Stopwatch:
    """Seconds spent per stage, summed."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.totals[stage] = self.totals.get(stage, 0.0) + now - since
        return now


class Batcher:
    def __init__(self, session: Session, tokenizer: Tokenizer, capabilities: Capabilities,
                 options: TranscribeOptions, batch: BatchOptions, language: str | None,
                 progress: Callable[[float], None] | None = None) -> None:
        self.session, self.tokenizer, self.caps = session, tokenizer, capabilities
        self.options, self.batch = options, batch
        self.language = language if tokenizer.multilingual else "en"
        self.progress = progress
        self.clock = Stopwatch()
        self.segments: list[Segment] = []
        self.samples = 0
        self.vad_method: str | None = None
        self.initial = (tokenizer.encode(" " + options.initial_prompt.strip())
                        if options.initial_prompt else [])

    # -- the pipeline ---------------------------------------------------------------------------
    def transcribe(self, source: Any) -> list[Segment]:
        history = list(self.initial)
        for jobs in self._jobs(source):
            history = self._run_streams(jobs, history)
        ordered = sorted(self.segments, key=lambda s: (s.start, s.end))
        return [dataclasses.replace(s, id=i) for i, s in enumerate(ordered)]

    def _run_streams(self, jobs: list[Job], head: list[int]) -> list[int]:
        """A block's chunks as B streams of consecutive chunks, one row each, advancing together:
        each row is conditioned on the text before it in its stream, as the sequential path is.
        Returns the last stream's text history (the next block's first stream continues it)."""
        per_stream = max(1, -(-len(jobs) // self.batch.batch_size))
        streams = [deque(jobs[i: i + per_stream]) for i in range(0, len(jobs), per_stream)]
        history = [list(head)] + [list(self.initial) for _ in streams[1:]]
        while any(streams):
            active = [k for k, q in enumerate(streams) if q]
            batch = [streams[k].popleft() for k in active]
            results = self._run(batch, [history[k] for k in active])
            for k, job, result in zip(active, batch, results):
                continuation, kept = self._collect(job, result)
                conditioned = (self.options.condition_on_previous_text
                               and result.temperature <= self.options.prompt_reset_on_temperature)
                history[k] = history[k] + kept if conditioned else list(self.initial)
                if continuation is not None:
                    streams[k].appendleft(continuation)
        return history[-1] if history else list(head)

    def _blocks(self, source: Any) -> Iterator[tuple[np.ndarray, bool]]:
        """Audio blocks with a flag for the last one (one block of look-ahead)."""
        t = time.perf_counter()
        block_s = max(30.0, round(self.batch.block_s / 30.0) * 30.0)
        it = iter_audio_blocks(source, block_seconds=block_s)
        current = next(it, None)
        while current is not None:
            following = next(it, None)
            t = self.clock.add("decode_audio", t)
            yield current, following is None
            t = time.perf_counter()
            current = following

    def _jobs(self, source: Any) -> Iterator[list[Job]]:
        """Per block: chunks (the last one deferred to the next block unless final) as jobs."""
        carry, carry_at = np.zeros(0, np.float32), 0  # audio held back, and its absolute offset
        for block, last in self._blocks(source):
            self.samples += len(block)
            buf = np.concatenate([carry, block]) if len(carry) else block
            chunks, regions = self._chunks(buf)
            chunks = [c for c in chunks if not self._digital_silence(buf[c.start: c.end])]
            if not last and self.batch.chunking == "vad":
                keep_from = chunks[-1].start if chunks else max(0, len(buf) - SAMPLE_RATE)
                chunks = chunks[:-1] if chunks else []
                carry, next_at = buf[keep_from:], carry_at + keep_from
            else:
                carry, next_at = np.zeros(0, np.float32), carry_at + len(buf)
            t = time.perf_counter()
            mel = self.session.log_mel(buf, padding=N_SAMPLES if last else 0)
            self.clock.add("mel", t)
            offset_s = carry_at / SAMPLE_RATE
            yield [Job(mel, c.start // HOP_LENGTH, -(-c.samples // HOP_LENGTH), offset_s,
                       self._speech_in(c, regions)) for c in chunks]
            carry_at = next_at

    def _chunks(self, audio: np.ndarray) -> tuple[list[Chunk], list[tuple[int, int]]]:
        """Chunks of the audio, and the VAD's speech regions (samples) for coverage checks."""
        if self.batch.chunking == "fixed":
            return fixed_chunks(len(audio)), []
        t = time.perf_counter()
        probs = speech_probs(audio, self.batch.vad)
        self.vad_method = probs.method
        regions = speech_regions(probs.probs, self.batch.vad, len(audio))
        self.clock.add("vad", t)
        return vad_chunks(regions, probs.probs), regions

    def _digital_silence(self, samples: np.ndarray) -> bool:
        return is_digital_silence(samples, self.options)

    @staticmethod
    def _speech_in(chunk: Chunk, regions: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return [(max(s, chunk.start) // HOP_LENGTH, min(e, chunk.end) // HOP_LENGTH)
                for s, e in regions if s < chunk.end and e > chunk.start]

    # -- one batch ------------------------------------------------------------------------------
    def _run(self, jobs: list[Job], histories: list[list[int]]) -> list[DecodingResult]:
        t = time.perf_counter()
        spans = [(j.mel, j.start_frame, j.n_frames) for j in jobs]
        size = self._static_size(len(jobs))
        spans += [(jobs[0].mel, 0, 0)] * (size - len(jobs))  # zero windows fill a static batch
        features = self.session.encode(self.session.mel_windows(spans))
        if size > len(jobs):
            features = self.session.take(features, np.arange(len(jobs)))
        t = self.clock.add("encode", t)
        if self.language is None:
            self.language = self._detect(features)
        results = self._decode(features, [self._prompt(h) for h in histories])
        self.clock.add("decode", t)
        if self.progress:
            self.progress(max(j.start_s + j.n_frames / FRAMES_PER_SECOND for j in jobs))
        return results

    def _prompt(self, history: list[int]) -> list[int]:
        """The last ``context_tokens`` of a stream's text, or nothing while it has fewer (rows
        decode together only with prompts of one length)."""
        n = self.batch.context_tokens
        if n and len(history) >= n:
            return history[-n:]
        return self.initial[-n:] if n and self.initial else []

    def _static_size(self, n: int) -> int:
        sizes = self.caps.encoder_batch_sizes
        if not sizes:
            return n
        fitting = [s for s in sorted(sizes) if s >= n]
        if not fitting:
            raise ValueError(f"batch of {n} exceeds the backend's static sizes {sizes}")
        return fitting[0]

    def _detect(self, features: Any) -> str:
        """One language for the file: the most probable over the first batch's chunks."""
        _, probs = detect_language(self.session, features, self.tokenizer)
        total: dict[str, float] = {}
        for row in probs:
            for code, p in row.items():
                total[code] = total.get(code, 0.0) + p
        return max(total, key=total.get)

    def _decode(self, features: Any, prompts: list[list[int]]) -> list[DecodingResult]:
        """Decode every row; re-decode only failing rows at the next temperature, batched."""
        results: list[DecodingResult | None] = [None] * len(prompts)
        todo = list(range(len(prompts)))
        for temperature in self.options.temperatures:
            groups: dict[int, list[int]] = {}
            for r in todo:  # rows whose prompts have one length decode together
                groups.setdefault(len(prompts[r]), []).append(r)
            opts = self.options.decoding_options(temperature, None, self.language)
            for rows in groups.values():
                singles = [[r] for r in rows] if self._sequential else [rows]
                for part in singles:
                    feats = self.session.take(features, np.array(part))
                    out = decode(self.session, feats, self.tokenizer, opts,
                                 prompts=[prompts[r] for r in part])
                    for r, res in zip(part, out):
                        results[r] = res
            todo = [r for r in todo if needs_fallback(results[r], self.options)]
            if not todo:
                break
        return results  # type: ignore[return-value]

    @property
    def _sequential(self) -> bool:
        return self.batch.decoder == "sequential" or not self.caps.batched_decoder

    def _collect(self, job: Job, result: DecodingResult) -> tuple[Job | None, list[int]]:
        """Segments in absolute time; an unfinished chunk continues as a new job. Returns that
        job (or None) and the tokens of the segments kept (the stream's next context)."""
        if is_silence(result, self.options):
            return None, []
        pieces, seek = split_segments(result, self.tokenizer, job.start_s, job.n_frames)
        kept: list[int] = []
        for piece in pieces:
            text = self.tokenizer.decode(piece["tokens"])
            if piece["start"] == piece["end"] or not text.strip():
                continue
            self.segments.append(make_segment(0, round(job.start_s * FRAMES_PER_SECOND), piece,
                                              text, result))
            kept += piece["tokens"]
            last_end = round((piece["end"] - job.offset_s) * FRAMES_PER_SECOND) - job.start_frame
        if seek >= job.n_frames - MIN_CONTINUATION_FRAMES:
            seek = self._uncovered_speech(job, last_end if kept else 0, seek)
        if 0 < seek < job.n_frames - MIN_CONTINUATION_FRAMES:
            return Job(job.mel, job.start_frame + seek, job.n_frames - seek, job.offset_s,
                       job.speech), kept
        return None, kept

    @staticmethod
    def _uncovered_speech(job: Job, covered: int, seek: int) -> int:
        """Whisper sometimes ends a window early, as if the rest were silence. Where the VAD
        heard speech after the last segment, resume there instead of dropping it."""
        for start, end in job.speech:
            start, end = start - job.start_frame, end - job.start_frame
            if end - max(start, covered) >= MIN_UNCOVERED_SPEECH_FRAMES:
                resume = max(start, covered)
                return resume if resume > 0 else seek
        return seek

    @property
    def duration(self) -> float:
        return self.samples / SAMPLE_RATE
