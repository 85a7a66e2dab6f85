"""Median filter and dynamic time warping in numpy: the two numeric steps of word alignment.

Both reproduce openai-whisper's ``timing.py`` exactly (its ``median_filter`` with reflect padding,
its numba ``dtw_cpu`` including the order in which ties are broken and the float32 cost matrix),
without numba: the DTW recursion is evaluated one anti-diagonal at a time, for every matrix of a
batch at once, since cell (i, j) needs only cells of the two previous anti-diagonals.
"""

from __future__ import annotations

import numpy as np

# Knuth's optimal 16-comparator sorting network for 7 inputs, less the comparators that cannot
# reach the middle wire: the median of 7 in 14 elementwise min/max pairs, ~4x faster than
# np.median over a sliding window (checked against it in tests, and on all 0/1 inputs).
MEDIAN7_NETWORK = (
    (0, 6),
    (2, 3),
    (4, 5),
    (0, 2),
    (1, 4),
    (3, 6),
    (0, 1),
    (2, 5),
    (3, 4),
    (1, 2),
    (4, 6),
    (2, 3),
    (4, 5),
    (3, 4),
)


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median of ``width`` (odd) neighbours along the last axis, reflect-padded at the edges
    (torch's 'reflect': the edge sample is not repeated). Short inputs are returned unchanged."""
    if width <= 0 or width % 2 == 0:
        raise ValueError("the median filter width must be a positive odd number")
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    n = x.shape[-1]
    if width == 7:
        wires = [padded[..., k : k + n].copy() for k in range(width)]
        spare = np.empty_like(wires[0])
        for a, b in MEDIAN7_NETWORK:  # in place: one spare buffer, no allocation per step
            np.minimum(wires[a], wires[b], out=spare)
            np.maximum(wires[a], wires[b], out=wires[b])
            wires[a], spare = spare, wires[a]
        return wires[3]
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.median(windows, axis=-1).astype(x.dtype, copy=False)


def dtw_batch(costs: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The minimal-cost monotonic path through each (N, M) cost matrix: per matrix, the row and
    column indices along the path (both of the path's length), as openai-whisper's ``dtw``.

    Matrices may differ in shape; they are zero-padded into one (B, N, M) array, which is
    harmless because a path back from (N_b, M_b) only visits cells above and left of it."""
    if not costs:
        return []
    n = max(c.shape[0] for c in costs)
    m = max(c.shape[1] for c in costs)
    x = np.zeros((len(costs), n, m), dtype=np.float64)
    for b, c in enumerate(costs):
        x[b, : c.shape[0], : c.shape[1]] = c
    trace = _dtw_trace(x)
    return [
        _backtrace(trace[b, : c.shape[0] + 1, : c.shape[1] + 1].copy()) for b, c in enumerate(costs)
    ]


def _dtw_trace(x: np.ndarray) -> np.ndarray:
    """Trace matrices (B, N + 1, M + 1) of the DTW recursion: 0 diagonal, 1 up, 2 left."""
    bsz, n, m = x.shape
    cost = np.full((bsz, n + 1, m + 1), np.inf, dtype=np.float32)
    trace = np.full((bsz, n + 1, m + 1), -1, dtype=np.int8)
    cost[:, 0, 0] = 0
    for d in range(2, n + m + 1):  # anti-diagonal i + j = d, cells with 1 <= i <= n, 1 <= j <= m
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        c0 = cost[:, i - 1, j - 1]
        c1 = cost[:, i - 1, j]
        c2 = cost[:, i, j - 1]
        diagonal = (c0 < c1) & (c0 < c2)
        up = ~diagonal & (c1 < c0) & (c1 < c2)
        best = np.where(diagonal, c0, np.where(up, c1, c2))
        # the reference adds the float64 cost to the float32 best and stores float32
        cost[:, i, j] = (x[:, i - 1, j - 1] + best).astype(np.float32)
        trace[:, i, j] = np.where(diagonal, 0, np.where(up, 1, 2))
    return trace


def _backtrace(trace: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    i, j = trace.shape[0] - 1, trace.shape[1] - 1
    trace[0, :] = 2
    trace[:, 0] = 1
    rows, cols = [], []
    while i > 0 or j > 0:
        rows.append(i - 1)
        cols.append(j - 1)
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        elif step == 2:
            j -= 1
        else:  # pragma: no cover - every reachable cell has a trace
            raise ValueError(f"unexpected DTW trace {step} at ({i}, {j})")
    return np.array(rows[::-1], dtype=np.int64), np.array(cols[::-1], dtype=np.int64)
