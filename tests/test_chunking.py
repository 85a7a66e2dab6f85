from __future__ import annotations

import numpy as np

from runtime.audio.chunking import Chunk, fixed_chunks, split_long, vad_chunks
from runtime.audio.vad import FRAME

SR = 16000


def test_regions_merge_up_to_30_seconds():
    regions = [(0, 10 * SR), (12 * SR, 25 * SR), (27 * SR, 40 * SR), (41 * SR, 45 * SR)]
    chunks = vad_chunks(regions, np.ones(3000, np.float32))
    assert chunks == [Chunk(0, 25 * SR), Chunk(27 * SR, 45 * SR)]
    assert all(c.samples <= 30 * SR for c in chunks)


def test_long_region_split_at_least_likely_frame():
    probs = np.ones(3000, np.float32)
    dip = (22 * SR) // FRAME
    probs[dip] = 0.01
    pieces = split_long(0, 70 * SR, probs, 30 * SR)
    assert pieces[0] == (0, dip * FRAME)
    assert all(e - s <= 30 * SR for s, e in pieces) and pieces[-1][1] == 70 * SR
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))  # nothing lost between pieces


def test_fixed_chunks():
    assert fixed_chunks(65 * SR) == [
        Chunk(0, 30 * SR),
        Chunk(30 * SR, 60 * SR),
        Chunk(60 * SR, 65 * SR),
    ]
