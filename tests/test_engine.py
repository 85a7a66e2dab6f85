"""The engine: many inputs share batches; one bad input fails alone; cancel, limits, shutdown;
``Runtime.transcribe_many`` yields per input, in order."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading

import numpy as np
import pytest

from runtime.errors import AudioError, RuntimeInputError
from runtime.pipeline import engine as engine_module
from runtime.pipeline.engine import Engine, QueueFullError
from runtime.pipeline.source import SourceRun
from tests.conftest import EVAL_DIR, eval_file
from tools.eval_common import load_librispeech, wer


@pytest.fixture(scope="module")
def utterances():
    if not EVAL_DIR.exists():
        pytest.skip("../shared/eval is absent")
    return load_librispeech(["test-clean"])[:6]


@pytest.fixture(scope="module")
def one_by_one(cpu_runtime, utterances):
    return [cpu_runtime.transcribe(u.audio).text for u in utterances]


def test_concurrent_inputs_share_batches_and_match_one_by_one(cpu_runtime, utterances, one_by_one):
    with cpu_runtime.engine(batch_size=8, max_wait_s=1.0) as engine:
        futures = [engine.submit(u.audio) for u in utterances]
        texts = [f.result(timeout=300).text for f in futures]
        stats = engine.stats()
    assert stats["requests_done"] == len(utterances) and stats["errors"] == 0
    assert stats["mean_batch_size"] > 1.5  # rows of different inputs ran together
    for text, alone, utt in zip(texts, one_by_one, utterances):
        assert abs(wer(utt.reference, text) - wer(utt.reference, alone)) < 0.05


def test_bad_input_fails_alone(cpu_runtime, utterances):
    with cpu_runtime.engine(batch_size=4) as engine:
        bad = engine.submit(b"this is not audio")
        empty = engine.submit(b"")
        good = engine.submit(utterances[0].audio)
        with pytest.raises(AudioError):
            bad.result(timeout=60)
        with pytest.raises(AudioError):
            empty.result(timeout=60)
        assert wer(utterances[0].reference, good.result().text) < 0.2
        assert engine.stats()["errors"] == 2


def test_bad_options_raise_at_submit(cpu_runtime):
    with cpu_runtime.engine() as engine, pytest.raises(RuntimeInputError, match="English-only"):
        engine.submit(np.zeros(16000, np.float32), language="de")


def test_queue_limit_and_shutdown_finish_in_flight(cpu_runtime, utterances):
    engine = cpu_runtime.engine(batch_size=2, max_queue=2)
    first = engine.submit(utterances[0].audio)
    second = engine.submit(utterances[1].audio)
    with pytest.raises(QueueFullError, match="in flight"):
        engine.submit(utterances[2].audio)
    engine.close(wait=True)  # graceful: both finish
    assert first.result(timeout=0).text and second.result(timeout=0).text
    with pytest.raises(QueueFullError, match="shutting down"):
        engine.submit(utterances[2].audio)


def test_cancelled_input_is_dropped(cpu_runtime, utterances, monkeypatch):
    gate = threading.Event()
    original = SourceRun.prepare

    def slow_prepare(run):
        gate.wait(30)
        original(run)

    monkeypatch.setattr(SourceRun, "prepare", slow_prepare)
    with cpu_runtime.engine(batch_size=2) as engine:
        doomed = engine.submit(utterances[0].audio)
        kept = engine.submit(utterances[1].audio)
        assert doomed.cancel()
        gate.set()
        assert kept.result(timeout=300).text
        assert doomed.cancelled()
    assert engine.stats()["cancelled"] == 1


def test_without_cross_request_batching_one_input_at_a_time(cpu_runtime, utterances):
    with cpu_runtime.engine(batch_size=8, cross_request=False) as engine:
        futures = [engine.submit(u.audio) for u in utterances[:3]]
        assert all(f.result(timeout=300).text for f in futures)
        assert engine.stats()["mean_batch_size"] == 1.0  # each short input is one chunk


def test_transcribe_many_yields_in_input_order_with_errors(cpu_runtime, utterances, one_by_one):
    inputs = [utterances[0].audio, b"garbage bytes", utterances[1].audio, utterances[2].audio]
    results = list(cpu_runtime.transcribe_many(inputs, batch_size=4))
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert [r.ok for r in results] == [True, False, True, True]
    assert isinstance(results[1].error, AudioError)
    for result, alone, utt in zip([results[0], results[2], results[3]], one_by_one, utterances[:3]):
        assert abs(wer(utt.reference, result.transcription.text) - wer(utt.reference, alone)) < 0.05
        assert result.transcription.duration > 1


def test_an_unexpected_worker_error_fails_requests_instead_of_hanging(
    cpu_runtime, utterances, monkeypatch
):
    engine = cpu_runtime.engine(batch_size=2)
    original, calls = engine._iterate, []

    def failing_once():
        if not calls and (engine._incoming or engine._active):  # once, with a request in flight
            calls.append(1)
            raise KeyError("boom")
        return original()

    monkeypatch.setattr(engine, "_iterate", failing_once)
    with engine:
        first = engine.submit(utterances[0].audio)
        with pytest.raises(KeyError, match="boom"):
            first.result(timeout=120)
        second = engine.submit(utterances[1].audio)  # the worker is still alive
        assert second.result(timeout=300).text


def test_alive_reports_the_worker(cpu_runtime):
    engine = cpu_runtime.engine()
    assert engine.alive  # not started yet: submit starts it
    engine.start()
    assert engine.alive
    engine.close()
    assert engine.alive  # closing on purpose is not a failure


def test_engine_without_prepare_ahead(cpu_runtime):
    """Blocks read in the worker instead (``prefetch`` gives no future to wait for)."""
    template = cpu_runtime.engine()
    batch = dataclasses.replace(template.batch, prepare_ahead=False)
    with Engine(template.model, batch) as engine:
        result = engine.submit(np.zeros(3 * 16000, np.float32)).result(timeout=120)
    assert result.segments == ()


def test_engines_left_running_are_closed_at_exit(cpu_runtime, utterances):
    """The hook ``atexit`` runs: an engine nobody closed (a ``transcribe_many`` generator its
    consumer abandoned) is cancelled and its worker joined, so no thread is inside the backend
    when the process exits."""
    engine = cpu_runtime.engine(batch_size=2)
    futures = [engine.submit(u.audio) for u in utterances[:4]]
    assert engine in engine_module._RUNNING
    engine_module.close_running_engines()
    assert engine not in engine_module._RUNNING
    assert engine._worker is not None and not engine._worker.is_alive()
    assert all(f.done() for f in futures) and any(f.cancelled() for f in futures)


def test_a_consumer_that_stops_on_an_exception_exits_with_its_own_status():
    """Before the exit hook, a script whose loop over ``transcribe_many`` raised left the worker
    inside ONNX Runtime as the process ended: it aborted (status 134, "terminate called")."""
    jfk = eval_file("jfk.flac")
    script = (
        "from runtime import Runtime\n"
        f"results = Runtime('tiny.en').transcribe_many([{str(jfk)!r}] * 60)\n"
        "next(results)\n"
        "raise RuntimeError('stopped after the first result')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1, proc.stderr
    assert "stopped after the first result" in proc.stderr
    assert "terminate called" not in proc.stderr
