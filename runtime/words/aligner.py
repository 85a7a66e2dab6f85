"""The one seam both transcription paths use for word timestamps: align a batch, attach a window.

``WordAligner.align`` runs after a batch of windows is decoded (one extra decoder pass over all
rows); ``attach`` runs when a window's result is cut into segments. The sequential path calls
both for one window at a time, the batcher for whole batches.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from runtime.backend import Capabilities, Session
from runtime.decoding import DecodingResult
from runtime.errors import UnsupportedRequestError
from runtime.tokenizer import Tokenizer
from runtime.words.align import AlignRequest, WordTiming, alignment_heads, find_alignments
from runtime.words.attach import Punctuation, add_word_timestamps

log = logging.getLogger(__name__)


def window_text_tokens(pieces: list[dict], eot: int) -> tuple[int, ...]:
    """The text tokens of a window's segments (``split_segments`` pieces), in order: what is
    aligned (an unfinished tail after the last segment is not, as in openai-whisper)."""
    return tuple(t for p in pieces for t in p["tokens"] if t < eot)


class WordAligner:
    def __init__(self, session: Session, tokenizer: Tokenizer, capabilities: Capabilities,
                 backend: str = "", punctuation: Punctuation = Punctuation()) -> None:
        if not capabilities.word_timestamps:
            name = f"backend {backend!r}" if backend else "this backend"
            raise UnsupportedRequestError(
                f"{name} cannot return cross-attention weights, so it cannot give word "
                "timestamps; use the cpu, onnx or mlx backend, or drop word timestamps")
        self.session, self.tokenizer = session, tokenizer
        self.heads = alignment_heads(session.model)
        self.punctuation = punctuation

    def align(self, features: Any, windows: Sequence[tuple[tuple[int, ...], int] | None],
              languages: Sequence[str | None], task: str) -> list[list[WordTiming]]:
        """Word timings per row of ``features``: ``windows`` gives each row's text tokens and mel
        frames (None: a row not to align, e.g. silence)."""
        if task == "translate":
            log.warning("word timestamps of a translation may not be reliable")
        requests = [AlignRequest(w[0] if w else (), w[1] if w else 0, lang, task)
                    for w, lang in zip(windows, languages)]
        return find_alignments(self.session, self.tokenizer, features, requests, self.heads)

    def attach(self, pieces: list[dict], alignment: list[WordTiming], time_offset: float,
               last_speech_timestamp: float) -> float:
        """Words onto a window's pieces (in place); returns the last speech timestamp."""
        return add_word_timestamps(pieces, alignment, time_offset, self.tokenizer.special.eot,
                                   last_speech_timestamp, self.punctuation)


def attach_result(aligner: WordAligner, result: DecodingResult, pieces: list[dict],
                  time_offset: float, last_speech_timestamp: float) -> float:
    """``attach`` with the alignment a batch hook stored on the result (none: no words)."""
    if result.alignment is None:
        return last_speech_timestamp
    return aligner.attach(pieces, result.alignment, time_offset, last_speech_timestamp)
