"""The one seam both transcription paths use for word timestamps.

``WordAligner.align`` runs after a batch of windows is decoded: one more decoder pass over every
row that asks for words, through the backend's ``AttentionState``. The sequential path calls it
for one window at a time, the batcher's scheduler for whole batches
(``runtime.pipeline.sequential.align_windows`` and ``attach_words`` are the glue both use).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from runtime.backend import Capabilities, Session
from runtime.errors import UnsupportedRequestError
from runtime.model.tokenizer import Tokenizer
from runtime.words.align import AlignRequest, WordTiming, alignment_heads, find_alignments

log = logging.getLogger(__name__)


def check_word_timestamps(capabilities: Capabilities, backend: str = "") -> None:
    """Raise ``UnsupportedRequestError`` when the backend cannot return cross-attention."""
    if not capabilities.word_timestamps:
        name = f"backend {backend!r}" if backend else "this backend"
        raise UnsupportedRequestError(
            f"{name} cannot return cross-attention weights, so it cannot give word timestamps; "
            "use the cpu, onnx or mlx backend, or drop word timestamps"
        )


class WordAligner:
    def __init__(
        self, session: Session, tokenizer: Tokenizer, capabilities: Capabilities, backend: str = ""
    ) -> None:
        check_word_timestamps(capabilities, backend)
        self.session, self.tokenizer = session, tokenizer
        self.heads = alignment_heads(session.model)

    def align(self, features: Any, requests: Sequence[AlignRequest]) -> list[list[WordTiming]]:
        """Word timings per row of ``features`` (a request with no text tokens: no words)."""
        if any(r.task == "translate" and r.text_tokens for r in requests):
            log.warning("word timestamps of a translation may not be reliable")
        return find_alignments(self.session, self.tokenizer, features, requests, self.heads)


def window_text_tokens(pieces: list[dict], eot: int) -> tuple[int, ...]:
    """The text tokens of a window's segments (``split_segments`` pieces), in order: what is
    aligned (an unfinished tail after the last segment is not, as in openai-whisper)."""
    return tuple(t for p in pieces for t in p["tokens"] if t < eot)
