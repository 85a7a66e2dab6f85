"""Shared helpers for evaluation scripts: the eval sets, text normalisation and corpus WER.

The eval sets live outside the repository, in ``../shared/eval`` relative to the repo root
(override with ``$WHISPER_EVAL_DIR``); see that folder's ``SOURCES.md``. Nothing here imports
the runtime, so these helpers also work from the reference venv (openai-whisper, faster-whisper).
Importing this module needs only numpy; ``jiwer`` is imported by the WER
functions, and PyAV + soxr by :func:`decode_audio`.

Normalisation for scoring (:func:`normalize_text`), applied the same way to hypothesis and
reference:

1. Unicode NFKC; typographic apostrophes (’ ‘ ʼ `) become ``'``.
2. Lower case.
3. ``&`` becomes "and", ``%`` becomes "percent"; thousands separators inside numbers are dropped
   (``1,000`` becomes ``1000``).
4. Every other character that is not a letter, digit, apostrophe or whitespace becomes a space
   (so hyphens and dashes split words: "well-known" scores as "well known", as LibriSpeech writes
   it). An apostrophe survives only between two letters or digits ("don't", "o'clock");
   leading and trailing ones go ("'tis" becomes "tis", "dickens'" becomes "dickens").
5. A few spoken forms LibriSpeech uses: "mr" becomes "mister", "mrs" "missus", "dr" "doctor".
6. Integers and ordinals written with digits are spelled out in plain American cardinal form
   without "and": "42" becomes "forty two", "1803" becomes "one thousand eight hundred three",
   "21st" becomes "twenty first". Years read as "eighteen o three" still count as errors, as
   do British/American spelling variants ("counselled" / "counseled"); the reference WER
   script also reports openai-whisper's ``EnglishTextNormalizer`` for comparison.
7. Runs of whitespace collapse to one space.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16000  # Whisper's input rate

LIBRISPEECH_SUBSETS = ("test-clean", "test-other", "dev-clean")


def eval_dir() -> Path:
    """The shared eval data folder: ``$WHISPER_EVAL_DIR`` or ``<repo>/../shared/eval``."""
    override = os.environ.get("WHISPER_EVAL_DIR")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "eval"


# ---------------------------------------------------------------------------------------------
# Eval sets


@dataclass(frozen=True)
class Utterance:
    """One short recording with its human reference transcript."""

    utt_id: str
    subset: str  # "test-clean", "test-other", "dev-clean", "jfk", ...
    duration_s: float
    audio: Path
    reference: str


@dataclass(frozen=True)
class LongformSegment:
    """One corpus segment inside a long-form file (times within the concatenated audio)."""

    utt_id: str
    start_s: float
    end_s: float
    reference: str


@dataclass(frozen=True)
class LongformFile:
    """A whole LibriSpeech chapter as one audio file, with its reference and segment table."""

    name: str
    audio: Path
    reference: str  # the segments' references joined with spaces
    segments: tuple[LongformSegment, ...]

    @property
    def duration_s(self) -> float:
        return self.segments[-1].end_s if self.segments else 0.0


def _read_tsv(path: Path, header: bool) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = [row for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if row]
    return rows[1:] if header else rows


def load_librispeech(
    subsets: Iterable[str] | None = None, folder: str = "librispeech", root: Path | None = None
) -> list[Utterance]:
    """Utterances of ``folder`` (from its ``subsets.tsv`` and ``refs.tsv``), sorted by id.

    ``subsets`` filters by the subset column (e.g. ``["test-clean"]``); None keeps all.
    """
    base = (root or eval_dir()) / folder
    refs = dict(_read_tsv(base / "refs.tsv", header=False))
    wanted = None if subsets is None else set(subsets)
    out = []
    for utt_id, subset, duration, *_ in _read_tsv(base / "subsets.tsv", header=True):
        if wanted is not None and subset not in wanted:
            continue
        out.append(
            Utterance(utt_id, subset, float(duration), base / f"{utt_id}.flac", refs[utt_id])
        )
    if wanted is not None and not out:
        raise ValueError(f"no utterances of subsets {sorted(wanted)} in {base}")
    return sorted(out, key=lambda u: u.utt_id)


def load_longform(root: Path | None = None) -> list[LongformFile]:
    """The long-form chapters, sorted by name."""
    base = (root or eval_dir()) / "longform"
    files = []
    for audio in sorted(base.glob("*.flac")):
        rows = _read_tsv(audio.with_suffix(".segments.tsv"), header=True)
        segments = tuple(LongformSegment(u, float(s), float(e), r) for u, s, e, r in rows)
        reference = " ".join(audio.with_suffix(".txt").read_text(encoding="utf-8").split())
        files.append(LongformFile(audio.stem, audio, reference, segments))
    return files


def load_jfk(root: Path | None = None) -> Utterance:
    """The 11 s JFK clip (44.1 kHz stereo FLAC) with its written reference."""
    base = root or eval_dir()
    text = (base / "jfk.txt").read_text(encoding="utf-8").strip()
    return Utterance("jfk", "jfk", 11.0, base / "jfk.flac", text)


# ---------------------------------------------------------------------------------------------
# Audio


def decode_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode a file to float32 mono at ``sample_rate``, without an ffmpeg binary.

    PyAV decodes at the file's own rate and converts samples to float (16-bit PCM becomes
    ``x / 32768`` exactly); channels are averaged; ``soxr.resample(..., quality="HQ")`` changes
    the rate only when it differs. LibriSpeech files (16 kHz mono) therefore decode to the same
    samples with any correct decoder.
    """
    import av
    import soxr

    chunks = []
    with av.open(os.fspath(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        for frame in container.decode(stream):
            pcm = frame.to_ndarray()
            if not frame.format.is_planar:  # packed (1, samples * channels)
                pcm = pcm.reshape(-1, len(frame.layout.channels)).T
            chunks.append(_to_float(pcm, frame.format.name))
    audio = np.concatenate(chunks, axis=1).mean(axis=0, dtype=np.float64)
    audio = audio.astype(np.float32)
    if rate != sample_rate:
        audio = soxr.resample(audio, rate, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(audio)


_INT_SCALE = {"s16": 2.0**15, "s16p": 2.0**15, "s32": 2.0**31, "s32p": 2.0**31, "u8": 2.0**7}


def _to_float(pcm: np.ndarray, fmt: str) -> np.ndarray:
    if fmt in ("flt", "fltp", "dbl", "dblp"):
        return pcm.astype(np.float64)
    if fmt in ("u8", "u8p"):
        return (pcm.astype(np.float64) - 128.0) / _INT_SCALE["u8"]
    if fmt in _INT_SCALE:
        return pcm.astype(np.float64) / _INT_SCALE[fmt]
    raise ValueError(f"unsupported sample format {fmt!r}")


def audio_sha256(audio: np.ndarray) -> str:
    """sha256 of the little-endian float32 bytes, to check two decoders agree sample for sample."""
    return hashlib.sha256(np.ascontiguousarray(audio, dtype="<f4").tobytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Text normalisation

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_NOT_WORD = re.compile(r"[^\w\s']|_")
_LOOSE_APOSTROPHE = re.compile(r"(?<![^\W_])'|'(?![^\W_])")  # not between two letters/digits
_NUMBER = re.compile(r"^(\d+)(st|nd|rd|th)?$")
_SPOKEN = {"mr": "mister", "mrs": "missus", "dr": "doctor"}

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def number_to_words(n: int) -> str:
    """Plain American cardinal words without "and": 1803 -> 'one thousand eight hundred three'."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = "" if n % 100 == 0 else " " + number_to_words(n % 100)
        return _ONES[n // 100] + " hundred" + rest
    for scale, name in _SCALES:
        if n >= scale:
            rest = "" if n % scale == 0 else " " + number_to_words(n % scale)
            return number_to_words(n // scale) + " " + name + rest
    raise AssertionError("unreachable")


def _ordinal(words: str) -> str:
    head, _, last = words.rpartition(" ")
    if last in _ORDINAL:
        last = _ORDINAL[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head} {last}" if head else last


def _spell_number(token: str) -> str:
    match = _NUMBER.match(token)
    if match is None or len(match.group(1)) > 15:
        return token
    words = number_to_words(int(match.group(1)))
    return _ordinal(words) if match.group(2) else words


def normalize_text(text: str) -> str:
    """Lower-case words for scoring; the steps are listed in this module's docstring."""
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower()
    text = text.replace("&", " and ").replace("%", " percent ")
    text = _THOUSANDS.sub("", text)
    text = _NOT_WORD.sub(" ", text)
    text = _LOOSE_APOSTROPHE.sub(" ", text)
    words = (_spell_number(_SPOKEN.get(w, w)) for w in text.split())
    return " ".join(" ".join(words).split())


# ---------------------------------------------------------------------------------------------
# Word error rate


@dataclass(frozen=True)
class WordErrors:
    """Corpus-level alignment counts; ``wer`` is total errors over total reference words."""

    substitutions: int
    deletions: int
    insertions: int
    hits: int

    @property
    def ref_words(self) -> int:
        return self.substitutions + self.deletions + self.hits

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        if self.ref_words == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.ref_words

    def __add__(self, other: WordErrors) -> WordErrors:
        return WordErrors(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.hits + other.hits,
        )


def word_errors(
    refs: Sequence[str] | str, hyps: Sequence[str] | str, normalize: bool = True
) -> WordErrors:
    """Align each hypothesis with its reference (jiwer) and sum the counts over the corpus.

    Both sides go through :func:`normalize_text` unless ``normalize`` is False. A pair whose
    reference is empty counts every hypothesis word as an insertion.
    """
    import jiwer

    if isinstance(refs, str):
        refs = [refs]
    if isinstance(hyps, str):
        hyps = [hyps]
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    prep = normalize_text if normalize else (lambda s: " ".join(s.split()))
    pairs = [(prep(r), prep(h)) for r, h in zip(refs, hyps, strict=True)]
    scored = [(r, h) for r, h in pairs if r]
    # jiwer rejects empty strings on either side; an empty hypothesis is all deletions.
    total = WordErrors(0, 0, sum(len(h.split()) for r, h in pairs if not r), 0)
    with_hyp = [(r, h) for r, h in scored if h]
    total += WordErrors(0, sum(len(r.split()) for r, h in scored if not h), 0, 0)
    if with_hyp:
        out = jiwer.process_words([r for r, _ in with_hyp], [h for _, h in with_hyp])
        total += WordErrors(out.substitutions, out.deletions, out.insertions, out.hits)
    return total


def wer(refs: Sequence[str] | str, hyps: Sequence[str] | str, normalize: bool = True) -> float:
    """Corpus-level word error rate: total errors / total reference words (0.05 = 5 %)."""
    return word_errors(refs, hyps, normalize=normalize).wer
