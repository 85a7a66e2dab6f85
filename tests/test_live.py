"""Live transcription's parts: local agreement, turn detection, Silero over pieces, the live
session's turn order and errors (over a fake engine), live priority in the scheduler, and a
live row's text independent of its batch mates (the real engine)."""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace

import numpy as np
import pytest

from runtime.audio.decode import load_audio
from runtime.live import LiveError, LiveOptions, LiveSession, TurnDetection
from runtime.live import events as ev
from runtime.live.agreement import LocalAgreement
from runtime.live.turns import AudioBuffer, TurnDetector
from runtime.output.writers import segment_text
from runtime.pipeline.options import BatchOptions, Priority
from runtime.pipeline.scheduler import Scheduler
from tests.conftest import eval_file


def test_local_agreement_sends_only_agreed_words_and_never_takes_back():
    la = LocalAgreement()
    assert la.update(["And", "so"]) == []
    assert la.update(["And", "so", "my"]) == ["And", "so"]
    assert la.update(["And", "so", "my", "fellow"]) == ["my"]
    assert la.update(["And", "so,", "my", "fellow", "Americans"]) == ["fellow"]  # punctuation aside
    assert la.update(["Ask", "not"]) == []  # disagrees with what was sent: nothing more
    assert la.sent == ["And", "so", "my", "fellow"]
    assert la.rest_of(["And", "so", "my", "fellow", "Americans."]) == ["Americans."]
    assert la.rest_of(["Ask", "not"]) is None


def _frames(pattern: str) -> np.ndarray:
    """One 32 ms frame per character: '#' speech (0.9), '.' silence (0.05)."""
    return np.array([0.9 if c == "#" else 0.05 for c in pattern], np.float32)


def test_turn_detector_start_pause_resume_stop():
    turns = TurnDetection(threshold=0.5, prefix_padding_ms=0, silence_duration_ms=320)  # 10
    det = TurnDetector(turns, LiveOptions(final_tail_ms=96))  # pause after 3 frames
    kinds = [b.kind for b in det.push(_frames("..####...##" + "." * 12))]
    assert kinds == ["start", "pause", "resume", "pause", "stop"]
    det2 = TurnDetector(turns, LiveOptions(final_tail_ms=96))
    stop = [b for b in det2.push(_frames("####" + "." * 10)) if b.kind == "stop"][0]
    assert stop.speech_end == 4 * 512 and stop.at == 14 * 512


def test_turn_detector_cuts_a_long_turn_at_its_least_likely_frame():
    opts = LiveOptions(max_turn_s=2.0, cut_search_s=1.0)  # 62 frames, search 31
    det = TurnDetector(TurnDetection(), opts)
    probs = np.full(70, 0.9, np.float32)
    probs[50] = 0.4  # above the pause level: no pause, but the likeliest place to cut
    cuts = [b for b in det.push(probs) if b.kind == "cut"]
    assert len(cuts) == 1 and cuts[0].at == 51 * 512


def test_audio_buffer_slices_across_pieces_and_drops():
    buf = AudioBuffer()
    for i in range(5):
        buf.append(np.full(100, i, np.float32))
    assert buf.slice(150, 260).tolist() == [1.0] * 50 + [2.0] * 60
    buf.drop_before(250)
    assert buf.start == 200 and buf.slice(0, 210).tolist() == [2.0] * 10


def test_silero_stream_matches_whole_signal():
    from runtime.audio.silero import SileroStream
    from runtime.audio.vad import shared_silero

    audio = load_audio(str(eval_file("jfk.flac")))[: 16000 * 3]
    whole = shared_silero().probs(audio)
    stream = SileroStream(shared_silero())
    pieces = [stream.push(audio[i : i + 1234]) for i in range(0, len(audio), 1234)]
    got = np.concatenate(pieces)
    assert len(got) == len(audio) // 512
    np.testing.assert_allclose(got, whole[: len(got)], atol=1e-4)


class FakeEngine:
    """Futures resolved by the test, in any order."""

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, dict, Future]] = []
        self.live = 0

    def open_live(self, opened: bool = True) -> None:
        self.live += 1 if opened else -1

    def submit(self, audio, **kw) -> Future:
        f: Future = Future()
        self.calls.append((audio, kw, f))
        return f


def _text(t: str) -> SimpleNamespace:
    return SimpleNamespace(text=t)


def _drain(events: list, kind: type) -> list:
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(isinstance(e, kind) for e in events):
        time.sleep(0.01)
    return [e for e in events if isinstance(e, kind)]


def test_session_manual_commits_finals_in_turn_order():
    engine, events = FakeEngine(), []
    s = LiveSession(engine, LiveOptions(turn_detection=None, partials=False), events.append)
    with pytest.raises(LiveError) as info:
        s.commit()
    assert info.value.code == "input_audio_buffer_commit_empty"
    s.append(np.zeros(8000, np.float32))
    s.commit()
    s.append(np.zeros(8000, np.float32))
    s.commit()
    (_, kw1, f1), (audio2, kw2, f2) = engine.calls
    assert kw1["priority"] == Priority.LIVE and len(audio2) == 8000
    f2.set_result(_text("second"))  # the later turn finishes first
    f1.set_result(_text("first"))
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(_drain(events, ev.Completed)) < 2:
        time.sleep(0.01)
    done = [e.transcript for e in events if isinstance(e, ev.Completed)]
    committed = [e for e in events if isinstance(e, ev.Committed)]
    assert done == ["first", "second"]
    assert committed[1].previous_item_id == committed[0].item_id
    assert s.pending == 0


def test_session_clear_and_close_cancel_decodes():
    engine, events = FakeEngine(), []
    s = LiveSession(
        engine, LiveOptions(turn_detection=None, partial_interval_ms=100), events.append
    )
    s.append(np.zeros(3200, np.float32))  # 200 ms: a partial is submitted
    assert engine.calls and engine.calls[0][1]["priority"] == Priority.PARTIAL
    # a partial skips the engine's VAD (the turn is speech already); a final keeps it
    assert engine.calls[0][1]["chunking"] == "fixed"
    s.clear()
    assert isinstance(events[-1], ev.Cleared) and engine.calls[0][2].cancelled()
    s.append(np.zeros(3200, np.float32))
    s.commit()
    assert "chunking" not in engine.calls[-1][1] and engine.calls[-1][1]["priority"] == 0
    s.close()
    s.close()
    assert all(f.cancelled() for _, _, f in engine.calls) and engine.live == 0


def test_scheduler_takes_live_rows_first():
    def run(priority: int, name: str):
        streams = [SimpleNamespace(name=f"{name}{i}") for i in range(4)]
        return SimpleNamespace(
            priority=priority, error=None, ready=lambda limit, s=streams: s[:limit]
        )

    sched = Scheduler(BatchOptions(batch_size=4))
    for r in (run(Priority.NORMAL, "file"), run(Priority.LOW, "low"), run(Priority.LIVE, "live")):
        sched.add(r)  # type: ignore[arg-type]
    picked = [s.name for _, s in sched.ready_rows(6)]
    assert picked == ["live0", "live1", "live2", "live3", "file0", "file1"]
    # a continuous runner's joiners: live rows join alone, the files' windows a step later
    assert [s.name for _, s in sched.ready_rows(6, live_alone=True)] == [
        f"live{i}" for i in range(4)
    ]
    sched.live_reserve = 1  # a live session is open: file rows leave one row free
    sched.runs = [r for r in sched.runs if r.priority >= Priority.NORMAL]
    assert [s.name for _, s in sched.ready_rows(3)] == ["file0", "file1"]
    assert sched.ready_rows(1) == []


@pytest.fixture(scope="module")
def live_runtime(tiny_model):
    """ONNX: rows join the running batch (continuous decoding)."""
    from runtime.api import Runtime

    return Runtime(tiny_model, backend="onnx")


def test_live_row_text_does_not_depend_on_batch_mates(live_runtime):
    """The same turn alone and beside file rows (joining their running batch) reads the same;
    its segments also stream in order (on_segments) and join to the final text."""
    jfk = load_audio(str(eval_file("jfk.flac")))
    files = [str(eval_file("librispeech", f"1089-134686-000{i}.flac")) for i in range(3)]
    with live_runtime.engine(batch_size=4) as engine:
        alone = engine.submit(jfk, priority=Priority.LIVE).result(timeout=120).text
        busy = [engine.submit(f) for f in files]
        got: list = []
        live = engine.submit(jfk, priority=Priority.LIVE, on_segments=got.extend)
        text = live.result(timeout=120).text
        for f in busy:
            f.result(timeout=300)
    assert text == alone
    assert segment_text(got) == text


def test_engine_chunking_override_decodes_a_turn_onset_the_vad_drops(live_runtime):
    """The first 0.4 s of a turn's speech (after 0.3 s of prefix padding): the offline VAD drops
    it as too short a region, so a partial that went through it came back empty; with
    ``chunking="fixed"`` (what a live partial asks for) the same audio is decoded."""
    jfk = load_audio(str(eval_file("jfk.flac")))
    onset = next(i for i in range(0, len(jfk), 160) if abs(jfk[i : i + 160]).max() > 0.1)
    clip = jfk[max(0, onset - 4800) : onset + 6400]
    with live_runtime.engine(batch_size=4) as engine:
        dropped = engine.submit(clip, priority=Priority.PARTIAL).result(timeout=120).text
        fixed = engine.submit(clip, priority=Priority.PARTIAL, chunking="fixed")
        text = fixed.result(timeout=120).text
    assert dropped.strip() == ""
    assert text.strip().lower().startswith("and so")
