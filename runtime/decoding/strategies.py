"""How the next token is picked: greedy/sampling and beam search, and how finished candidates rank.

These are openai-whisper's ``TokenDecoder`` and ``SequenceRanker`` over numpy arrays. Greedy rows
finish independently so a batch can shrink as rows end; beam search keeps groups of
``beam_size`` rows per window and tells the caller how to rearrange the KV cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from runtime.decoding.filters import log_softmax


def sample_tokens(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Argmax at temperature 0, else a draw from softmax(logits / temperature): (B, V) -> (B,)."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = np.exp(log_softmax(logits / temperature).astype(np.float64))
    probs /= probs.sum(-1, keepdims=True)
    cumulative = probs.cumsum(-1)
    draws = rng.random(len(probs))[:, None]
    return np.minimum((cumulative < draws).sum(-1), probs.shape[1] - 1)


@dataclass
class BeamStep:
    """Result of one beam-search step for all groups."""

    next_tokens: np.ndarray  # (B * beam, T + 1)
    source_rows: np.ndarray  # which old row each new row continues (rearrange caches)
    sum_logprobs: np.ndarray  # (B * beam,)
    completed: bool


@dataclass
class BeamSearch:
    beam_size: int
    eot: int
    patience: float = 1.0
    finished: list[dict[tuple[int, ...], float]] = field(default_factory=list)

    @property
    def max_candidates(self) -> int:
        return round(self.beam_size * self.patience)

    def reset(self, n_windows: int) -> None:
        self.finished = [{} for _ in range(n_windows)]

    def update(self, tokens: np.ndarray, logits: np.ndarray, sum_logprobs: np.ndarray) -> BeamStep:
        """Expand each hypothesis by its beam_size + 1 best tokens and keep the best beam_size."""
        logprobs = log_softmax(logits)
        top = np.argsort(-logprobs, axis=-1)[:, : self.beam_size + 1]
        next_tokens, sources, new_sums = [], [], []
        for i in range(tokens.shape[0] // self.beam_size):
            scores: dict[tuple[int, ...], float] = {}
            origin: dict[tuple[int, ...], int] = {}
            for j in range(self.beam_size):
                row = i * self.beam_size + j
                prefix = tuple(tokens[row].tolist())
                for token in top[row]:
                    seq = prefix + (int(token),)
                    scores[seq] = float(sum_logprobs[row] + logprobs[row, token])
                    origin[seq] = row
            kept = 0
            for seq in sorted(scores, key=scores.__getitem__, reverse=True):
                if seq[-1] == self.eot:
                    if len(self.finished[i]) < self.max_candidates:
                        self.finished[i][seq] = scores[seq]
                else:
                    next_tokens.append(seq)
                    sources.append(origin[seq])
                    new_sums.append(scores[seq])
                    kept += 1
                    if kept == self.beam_size:
                        break
        completed = all(len(f) >= self.max_candidates for f in self.finished)
        return BeamStep(
            np.array(next_tokens, dtype=np.int64),
            np.array(sources, dtype=np.int64),
            np.array(new_sums, dtype=np.float64),
            completed,
        )

    def finalize(self, tokens: np.ndarray, sum_logprobs: np.ndarray) -> list[dict]:
        """Top up windows that finished too few candidates with their best live hypotheses."""
        for i, finished in enumerate(self.finished):
            if len(finished) >= self.beam_size:
                continue
            rows = range(i * self.beam_size, (i + 1) * self.beam_size)
            for row in sorted(rows, key=lambda r: sum_logprobs[r], reverse=True):
                finished[tuple(tokens[row].tolist()) + (self.eot,)] = float(sum_logprobs[row])
                if len(finished) >= self.beam_size:
                    break
        return self.finished


def rank(
    candidates: list[list[int]], sum_logprobs: list[float], length_penalty: float | None
) -> int:
    """openai-whisper's MaximumLikelihoodRanker: index of the best candidate."""

    def score(tokens: list[int], logprob: float) -> float:
        n = len(tokens)
        penalty = n if length_penalty is None else ((5 + n) / 6) ** length_penalty
        return logprob / penalty

    return int(np.argmax([score(t, lp) for t, lp in zip(candidates, sum_logprobs)]))
