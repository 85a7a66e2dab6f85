"""Backend conformance: every available backend against the CPU (numpy) reference, on real speech.

Backends are discovered as the runtime finds them (``runtime.plugins.Plugins()``, i.e. the
``whisper_runtime`` entry points) plus, in process, the in-tree plugins that may not be listed in
pyproject.toml yet (``EXTRA_PLUGINS``). A backend that is not available here is a skipped
parameter with its reason; one that is not in the tree is not a parameter at all.

Inputs are the openai-whisper reference fixture's way of making a window,
``log_mel_spectrogram(pad_or_trim(audio))``, for four short real utterances (JFK and three
LibriSpeech), so the CPU reference reproduces the openai-whisper tokens of
``tests/fixtures/reference_tiny_en.json`` and every backend is compared with both.

Stated tolerances, float32 (fp32 reorders sums; nothing else may differ):

- log-mel of the backend's own frontend: max |diff| <= 1e-4 (log10 units / 4, as runtime.audio.mel);
- encoder features (2 windows): max |diff| <= 1e-2 on values of magnitude ~10 (seen: 2.5e-3);
- teacher-forced decoder logits: max |diff| <= 1e-2 on logits of magnitude ~10-30;
- greedy tokens: identical to the CPU backend's (and to openai-whisper's where the fixture has
  them);
- batched decoding: a batch of 12 rows gives, per row, exactly the tokens of that window alone;
- quantized weights (``QUANTIZED_WER_MARGIN``): corpus WER on 2 windows at most the CPU fp32 WER
  plus 0.05 (int8) or 0.15 (int4): on these ~40 words that is 2 and 6 more word errors.
"""

from __future__ import annotations

import importlib
import importlib.util
import json

import numpy as np
import pytest

from runtime.audio.mel import N_SAMPLES, log_mel_spectrogram, pad_or_trim
from runtime.backend import LoadOptions
from runtime.decoding import DecodingOptions, decode
from tests.conftest import EVAL_DIR, FIXTURES

EXTRA_PLUGINS = ("backends.mlx.plugin", "backends.onnx.plugin")
UTTERANCES = ("jfk", "1089-134686-0001", "1089-134691-0000", "2414-128291-0000")  # 27, 14, 8, 8
# tokens: short texts keep decoding cheap on every backend; different lengths make rows of a
# batch finish at different steps
ENCODED = 2  # windows each backend encodes itself (an encoder pass is the costly part)
MEL_ATOL, FEATURE_ATOL, LOGITS_ATOL = 1e-4, 1e-2, 1e-2
QUANTIZED_WER_MARGIN = {"int8": 0.05, "int4": 0.15}
GREEDY = DecodingOptions(language="en")  # the fixture's options: greedy, with timestamps


def _extra_plugins() -> tuple[list, dict[str, str]]:
    """In-tree plugin modules that import, and the reasons of those that exist but do not."""
    modules, broken = [], {}
    for name in EXTRA_PLUGINS:
        package = name.rsplit(".", 1)[0]
        try:
            present = importlib.util.find_spec(package) is not None
        except ImportError:
            present = False
        if not present:
            continue  # that backend is not in the tree (yet)
        try:
            modules.append(importlib.import_module(name))
        except Exception as exc:  # a broken plugin is a skipped parameter, with its reason
            broken[package.rsplit(".", 1)[1]] = (
                f"{name} failed to import: {type(exc).__name__}: {exc}"
            )
    return modules, broken


def discover_backends() -> tuple[dict, dict[str, str]]:
    """Every backend the runtime would find, plus in-tree extras not registered yet."""
    from runtime.plugins import Plugins

    registered = Plugins().backends()
    modules, broken = _extra_plugins()
    extra = [m for m in modules if not {b.name for b in m.register_backends()} <= set(registered)]
    return (Plugins(extra=extra).backends() if extra else registered), broken


def _backend_params() -> list:
    backends, broken = discover_backends()
    params = []
    for name, backend in sorted(backends.items()):
        availability = backend.available()
        marks = (
            []
            if availability
            else [pytest.mark.skip(reason=f"backend {name} unavailable: {availability.reason}")]
        )
        params.append(pytest.param(backend, id=name, marks=marks))
    for name, reason in sorted(broken.items()):
        params.append(pytest.param(None, id=name, marks=[pytest.mark.skip(reason=reason)]))
    return params


BACKENDS = _backend_params()


def _quantized_params() -> list:
    params = []
    for p in BACKENDS:
        backend = p.values[0]
        for precision in QUANTIZED_WER_MARGIN:
            if backend is not None and precision in backend.capabilities.precisions:
                params.append(
                    pytest.param(
                        backend,
                        precision,
                        id=f"{backend.name}-{precision}",
                        marks=[*p.marks, pytest.mark.slow],
                    )
                )
    return params


# -- shared inputs and the CPU reference ----------------------------------------------------------
@pytest.fixture(scope="module")
def speech() -> list[dict]:
    """The utterances: audio (16 kHz float32), human reference, openai-whisper tokens if known."""
    if not (EVAL_DIR / "jfk.flac").exists():
        pytest.skip(f"evaluation audio is absent ({EVAL_DIR} not beside the repo)")
    from tools.eval_common import decode_audio, load_jfk, load_librispeech

    refs = {u.utt_id: u for u in load_librispeech()}
    refs["jfk"] = load_jfk()
    fixture = FIXTURES / "reference_tiny_en.json"
    openai = (
        {
            u["utt_id"]: u["timestamps"]["tokens"]
            for u in json.loads(fixture.read_text())["utterances"]
        }
        if fixture.exists()
        else {}
    )
    return [
        {
            "utt_id": u,
            "audio": decode_audio(refs[u].audio),
            "reference": refs[u].reference,
            "openai_tokens": openai.get(u),
        }
        for u in UTTERANCES
    ]


@pytest.fixture(scope="module")
def mels(speech) -> np.ndarray:
    """(4, 80, 3000): whisper.log_mel_spectrogram(whisper.pad_or_trim(audio)) per utterance."""
    return np.stack([log_mel_spectrogram(pad_or_trim(s["audio"])) for s in speech])


@pytest.fixture(scope="module")
def sessions(tiny_model):
    """Sessions by (backend name, precision), loaded once for the module."""
    cache: dict[tuple[str, str], object] = {}

    def get(backend, precision: str = "fp32"):
        if precision not in backend.capabilities.precisions:
            pytest.skip(f"backend {backend.name} has no {precision} precision")
        key = (backend.name, precision)
        if key not in cache:
            cache[key] = backend.load(tiny_model, LoadOptions(precision=precision))
        return cache[key]

    return get


@pytest.fixture(scope="module")
def cpu_reference(sessions, mels, tiny_tokenizer) -> dict:
    from backends.cpu import CpuBackend

    session = sessions(CpuBackend())
    features = session.encode(mels)
    results = decode(session, features, tiny_tokenizer, GREEDY)
    return {
        "session": session,
        "features": features,
        "tokens": [r.tokens for r in results],
        "texts": [r.text for r in results],
    }


@pytest.fixture(scope="module")
def encoded(sessions, mels):
    """Features of the first ENCODED windows by each (backend, precision), computed once."""
    cache: dict[tuple[str, str], object] = {}

    def get(backend, precision: str = "fp32"):
        key = (backend.name, precision)
        if key not in cache:
            cache[key] = sessions(backend, precision).encode(mels[:ENCODED])
        return cache[key]

    return get


def _check_openai_tokens(speech: list[dict], rows: list[int], tokens: list[list[int]]) -> None:
    for row, toks in zip(rows, tokens):
        expected = speech[row]["openai_tokens"]
        if expected is not None:
            assert toks == expected, f"{speech[row]['utt_id']}: differs from openai-whisper"


# -- the suite ----------------------------------------------------------------------------------
def test_cpu_reference_reproduces_openai_whisper(speech, cpu_reference):
    _check_openai_tokens(speech, list(range(len(speech))), cpu_reference["tokens"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_frontend_matches_numpy_mel(backend, sessions, speech):
    session = sessions(backend)
    audio = speech[0]["audio"]
    want = log_mel_spectrogram(audio, padding=N_SAMPLES)
    mel = session.log_mel(audio, padding=N_SAMPLES)
    np.testing.assert_allclose(np.asarray(mel), want, atol=MEL_ATOL)
    spans = [(0, 3000), (500, 600)]
    windows = np.asarray(session.mel_windows([(mel, s, n) for s, n in spans]))
    assert windows.shape == (2, 80, 3000)
    np.testing.assert_allclose(windows[1, :, :600], want[:, 500:1100], atol=MEL_ATOL)
    assert not windows[1, :, 600:].any()  # padded with zeros, as whisper pads mel windows


@pytest.mark.parametrize("backend", BACKENDS)
def test_encoder_matches_cpu(backend, encoded, cpu_reference):
    features = np.asarray(encoded(backend))  # features brought to the host
    want = cpu_reference["features"][:ENCODED]
    assert features.shape == want.shape
    np.testing.assert_allclose(features.astype(np.float32), want, atol=FEATURE_ATOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_logits_match_cpu(backend, sessions, cpu_reference, tiny_tokenizer):
    """Teacher-forced: the same CPU features and tokens give the same logits at every position."""
    features = cpu_reference["features"][:ENCODED]
    n = min(len(t) for t in cpu_reference["tokens"][:ENCODED])
    prompt = [tiny_tokenizer.special.sot]
    tokens = np.array([prompt + t[:n] for t in cpu_reference["tokens"][:ENCODED]])
    positions = tuple(range(tokens.shape[1]))
    want = cpu_reference["session"].decoder(features).logits(tokens, positions)
    got = sessions(backend).decoder(features).logits(tokens, positions)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=LOGITS_ATOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_greedy_tokens_match_cpu_and_openai(
    backend, sessions, encoded, cpu_reference, speech, tiny_tokenizer
):
    results = decode(sessions(backend), encoded(backend), tiny_tokenizer, GREEDY)
    tokens = [r.tokens for r in results]
    assert tokens == cpu_reference["tokens"][:ENCODED]
    _check_openai_tokens(speech, list(range(ENCODED)), tokens)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_of_12_matches_rows(backend, sessions, cpu_reference, speech, tiny_tokenizer):
    """12 rows (four windows, each three times, in mixed order) decoded as one batch give each
    row the tokens of its window decoded alone; rows finish at different steps, so it shrinks."""
    if not backend.capabilities.batched_decoder:
        pytest.skip(f"backend {backend.name} decodes one window at a time")
    session = sessions(backend)
    n = len(speech)
    rows = [i % n if (i // n) % 2 == 0 else n - 1 - i % n for i in range(12)]  # 0123 3210 0123
    features = cpu_reference["features"]
    batched = [r.tokens for r in decode(session, features[rows], tiny_tokenizer, GREEDY)]
    alone = [
        decode(session, features[i : i + 1], tiny_tokenizer, GREEDY)[0].tokens for i in range(n)
    ]
    assert len(batched) == 12
    for row, window in enumerate(rows):
        assert batched[row] == alone[window], f"row {row} ({speech[window]['utt_id']})"
    assert alone == cpu_reference["tokens"]
    _check_openai_tokens(speech, rows, batched)


@pytest.mark.parametrize("backend,precision", _quantized_params())
def test_quantized_wer_within_margin(
    backend, precision, sessions, encoded, cpu_reference, speech, tiny_tokenizer
):
    from tools.eval_common import wer

    results = decode(
        sessions(backend, precision), encoded(backend, precision), tiny_tokenizer, GREEDY
    )
    refs = [s["reference"] for s in speech[:ENCODED]]
    baseline = wer(refs, cpu_reference["texts"][:ENCODED])
    got = wer(refs, [r.text for r in results])
    assert got <= baseline + QUANTIZED_WER_MARGIN[precision], (
        f"{precision} WER {got:.3f} vs fp32 {baseline:.3f}: {[r.text for r in results]}"
    )


# -- word timestamps ------------------------------------------------------------------------------
WORD_TIME_ATOL = 0.04  # seconds: two encoder frames; the same scores give the same DTW path


def _word_timings(session, features, tokenizer, speech, token_lists) -> list[list]:
    from runtime.words import AlignRequest, alignment_heads, find_alignments

    requests = [
        AlignRequest(
            tuple(t for t in toks if t < tokenizer.special.eot), min(len(s["audio"]) // 160, 3000)
        )
        for s, toks in zip(speech, token_lists)
    ]
    return find_alignments(session, tokenizer, features, requests, alignment_heads(session.model))


@pytest.mark.parametrize("backend", BACKENDS)
def test_word_timestamps_match_cpu(backend, sessions, cpu_reference, speech, tiny_tokenizer):
    """Teacher-forced on the CPU features and tokens, in one batch of four rows of different
    lengths: the same words, each start and end within WORD_TIME_ATOL of the CPU backend's."""
    if not backend.capabilities.word_timestamps:
        pytest.skip(f"backend {backend.name} returns no cross-attention")
    features, tokens = cpu_reference["features"], cpu_reference["tokens"]
    want = _word_timings(cpu_reference["session"], features, tiny_tokenizer, speech, tokens)
    got = _word_timings(sessions(backend), features, tiny_tokenizer, speech, tokens)
    assert sum(len(w) for w in want) > 40
    for row_want, row_got, s in zip(want, got, speech):
        assert [w.word for w in row_got] == [w.word for w in row_want], s["utt_id"]
        starts = np.array([[a.start, b.start, a.end, b.end] for a, b in zip(row_got, row_want)])
        assert np.abs(starts[:, 0] - starts[:, 1]).max() <= WORD_TIME_ATOL, s["utt_id"]
        assert np.abs(starts[:, 2] - starts[:, 3]).max() <= WORD_TIME_ATOL, s["utt_id"]
        np.testing.assert_allclose(
            [w.probability for w in row_got], [w.probability for w in row_want], atol=0.02
        )
