"""Word-level timestamps from the cross-attention of the alignment heads (openai-whisper's method,
in numpy, for whole batches of windows): ``align`` finds each word's time in its window, ``attach``
puts the words onto the window's segments, ``dtw`` holds the numeric steps."""

from runtime.words.align import (
    AlignRequest,
    WordTiming,
    alignment_heads,
    find_alignments,
    split_to_word_tokens,
)
from runtime.words.attach import Punctuation, add_word_timestamps, last_word_end

__all__ = [
    "AlignRequest",
    "WordTiming",
    "alignment_heads",
    "find_alignments",
    "split_to_word_tokens",
    "Punctuation",
    "add_word_timestamps",
    "last_word_end",
]
