"""Iteration-level batching: decoder states whose rows join and leave at any step
(``JoinableState``) and the runner that keeps the batch full with them (``ContinuousRunner``)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from backends.onnx import OnnxBackend  # noqa: E402
from runtime.audio.decode import load_audio  # noqa: E402
from runtime.backend import JoinableState, LoadOptions  # noqa: E402
from runtime.pipeline.continuous import ContinuousRunner, make_runner  # noqa: E402
from runtime.pipeline.options import BatchOptions, TranscribeOptions  # noqa: E402
from runtime.pipeline.runner import BatchRunner  # noqa: E402
from runtime.pipeline.scheduler import Scheduler, run_to_completion  # noqa: E402
from runtime.pipeline.source import SourceRun  # noqa: E402
from tests.conftest import EVAL_DIR, eval_file  # noqa: E402
from tools.eval_common import load_librispeech, wer  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def session(tiny_model, tmp_path_factory):
    options = {"cache_dir": str(tmp_path_factory.mktemp("onnx-cache"))}
    return OnnxBackend().load(tiny_model, LoadOptions(precision="int8", options=options))


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(5)
    f = rng.normal(size=(4, 1500, 384)).astype(np.float32)
    f[1] *= 6.0  # a loud row beside quiet ones: int8 scales must stay per row
    return f


def _prompt(tokenizer, text: str) -> np.ndarray:
    return np.array([[tokenizer.special.sot, *tokenizer.encode(text)]])


def _alone(session, features, prompt, steps):
    """A row decoded by itself: its prompt's last logits and each step's."""
    state = session.decoder(features[None])
    out = [state.logits(prompt)[0, -1]]
    for token in steps:
        out.append(state.logits(np.array([[token]]))[0, -1])
    return out


def test_rows_joining_at_other_lengths_get_the_logits_they_get_alone(
    session, features, tiny_tokenizer
):
    """Rows with prompts of different lengths join a running state at different steps, rows
    leave, every row leaves and new ones join: each row's logits stay bit-identical to the
    row decoded alone (masks over a cache of fixed width: no sum depends on batch mates)."""
    prompts = [_prompt(tiny_tokenizer, t) for t in (" so", " and so my", " ask not what your")]
    steps = [[300, 301, 302, 303], [310, 311, 312], [320, 321]]
    want = [_alone(session, features[i], prompts[i], steps[i]) for i in range(3)]

    state = session.decoder(features[:1])
    assert isinstance(state, JoinableState)
    state.reserve(4)
    assert state.capacity == 1  # grown as rows join
    got = {0: [state.logits(prompts[0])[0, -1]]}
    got[0].append(state.logits(np.array([[steps[0][0]]]))[0, -1])
    joining = session.decoder(features[1:2])
    got[1] = [joining.logits(prompts[1])[0, -1]]
    state.join(joining)  # row 1 joins with 4 cached tokens beside row 0's 3
    assert state.n_rows == 2 and list(state.lengths) == [3, 4]
    capacity = state.capacity
    assert capacity == 2
    out = state.logits(np.array([[steps[0][1]], [steps[1][0]]]))
    got[0].append(out[0, -1])
    got[1].append(out[1, -1])
    state.keep(np.array([1]))  # row 0 leaves
    joining = session.decoder(features[2:3])
    got[2] = [joining.logits(prompts[2])[0, -1]]
    state.join(joining)
    out = state.logits(np.array([[steps[1][1]], [steps[2][0]]]))
    got[1].append(out[0, -1])
    got[2].append(out[1, -1])
    for row in (0, 1, 2):
        for k, logits in enumerate(got[row]):
            np.testing.assert_array_equal(logits, want[row][k], err_msg=f"row {row} step {k}")
    state.keep(np.array([], dtype=np.int64))  # every row leaves: the arrays stay
    assert state.n_rows == 0 and state.capacity == capacity
    again = session.decoder(features[:1])
    first = again.logits(prompts[0])[0, -1]
    state.join(again)
    np.testing.assert_array_equal(first, want[0][0])
    np.testing.assert_array_equal(state.logits(np.array([[steps[0][0]]]))[0, -1], want[0][1])
    assert state.capacity == capacity


def test_rows_prefilled_in_free_slots_join_without_a_copy(session, features, tiny_tokenizer):
    """``incoming`` builds the new rows in the running state's free slots: their cross K/V are
    written where they stay (joining copies nothing), and a slot a longer row left, its stale
    keys and values masked, gives the new row the logits it gets alone, bit for bit."""
    prompts = [_prompt(tiny_tokenizer, t) for t in (" and so my fellow", " so", " ask")]
    steps = [[300, 301, 302], [310, 311], [320, 321]]
    want = [_alone(session, features[i], prompts[i], steps[i]) for i in range(3)]
    state = session.decoder(features[:1])
    state.reserve(2)
    got = {0: [state.logits(prompts[0])[0, -1]]}
    got[0] += [state.logits(np.array([[t]]))[0, -1] for t in steps[0][:2]]  # 7 tokens cached
    state.keep(np.array([], dtype=np.int64))  # row 0 leaves its slot with stale values
    for row in (1, 2):
        joining = state.incoming(features[row : row + 1])
        slot = state.n_rows
        cross = joining._arrays["cross_k"][0]
        assert np.shares_memory(cross, state._arrays["cross_k"][0][slot])
        got[row] = [joining.logits(prompts[row])[0, -1]]
        state.join(joining)
        assert state._arrays["cross_k"][0][slot].ctypes.data == cross.ctypes.data
    assert list(state.lengths) == [2, 2]
    first = state.incoming(features[:1])
    with pytest.raises(RuntimeError, match="join the rows"):  # its slots would overlap
        state.incoming(features[1:2])
    first.n_rows = 0  # let go unjoined: the next may take its slots
    state.incoming(features[1:2]).n_rows = 0
    out = state.logits(np.array([[steps[1][0]], [steps[2][0]]]))
    got[1].append(out[0, -1])
    got[2].append(out[1, -1])
    for row in (1, 2):
        for k, logits in enumerate(got[row]):
            np.testing.assert_array_equal(logits, want[row][k], err_msg=f"row {row} step {k}")


@pytest.fixture(scope="module")
def speech_minute():
    """Six LibriSpeech utterances with 1 s pauses (50 s), three times over (several streams of
    sequential windows decode side by side), and the joined reference."""
    if not EVAL_DIR.exists():
        pytest.skip("../shared/eval is absent")
    utts = load_librispeech(["test-clean"])[:6]
    gap = np.zeros(SR, np.float32)
    audio = np.concatenate([x for u in utts for x in (load_audio(u.audio), gap)])
    return np.concatenate([audio] * 3), " ".join(u.reference for u in utts * 3)


def _run(session, tokenizer, caps, audio, **batch_options):
    """One input through the scheduler and the runner the options pick; the runner too."""
    batch = BatchOptions(block_s=60, **batch_options)  # the same streams at any batch size
    run = SourceRun(session, tokenizer, TranscribeOptions(), batch, audio, "en")
    runner = make_runner(session, tokenizer, caps, batch)
    run_to_completion(Scheduler(batch), runner, run)
    return run.ordered_segments(), runner


@pytest.fixture(scope="module")
def onnx_caps(session):
    return session.capabilities


def test_continuous_rows_keep_the_batch_busier_with_the_same_tokens(
    session, tiny_tokenizer, onnx_caps, speech_minute, monkeypatch
):
    """On two and a half minutes of speech: the same tokens as decoding whole batches (rows
    leave and join, and no row's tokens depend on its mates), in fewer decoder steps."""
    from backends.onnx.decoder import OnnxDecoderState

    steps: list[int] = []
    step = OnnxDecoderState._step

    def counting(self, tokens, *args):
        if tokens.shape[1] == 1:
            steps.append(tokens.shape[0])
        return step(self, tokens, *args)

    monkeypatch.setattr(OnnxDecoderState, "_step", counting)
    audio, reference = speech_minute
    batched, whole = _run(
        session, tiny_tokenizer, onnx_caps, audio, batch_size=3, decoder="batched"
    )
    batched_steps, steps[:] = list(steps), []
    cont, runner = _run(session, tiny_tokenizer, onnx_caps, audio, batch_size=3)
    cont_steps = list(steps)
    assert type(whole) is BatchRunner and isinstance(runner, ContinuousRunner)
    assert [s.tokens for s in cont] == [s.tokens for s in batched]
    assert wer(reference, "".join(s.text for s in cont)) < 0.10
    assert sum(cont_steps) == sum(batched_steps)  # the same row-steps ...
    assert len(cont_steps) < len(batched_steps)  # ... in fewer steps
    assert max(cont_steps) == 3


@pytest.mark.parametrize("words", [False, True])
def test_a_fallback_row_is_encoded_again_unless_its_words_keep_the_features(
    session, tiny_tokenizer, onnx_caps, speech_minute, words
):
    """Rows do not hold their window's features while they decode: a row that falls back to
    the next temperature has its window encoded again (every row here: no result passes a
    log-probability threshold of 0), while rows whose words are aligned keep theirs."""
    audio, _ = speech_minute
    batch = BatchOptions(batch_size=3, block_s=30)
    options = TranscribeOptions(
        logprob_threshold=0.0, temperatures=(0.0, 0.4), word_timestamps=words
    )
    run = SourceRun(session, tiny_tokenizer, options, batch, audio[: 40 * SR], "en")
    runner = ContinuousRunner(session, tiny_tokenizer, onnx_caps, batch)
    encoded: list[int] = []  # windows per encoder call
    finished: list[int] = []  # rows that ended (each decodes its fallback once)
    encode, decode = runner.encode, runner.decode
    runner.encode = lambda rows: encoded.append(len(rows)) or encode(rows)  # type: ignore
    runner.decode = lambda f, rows, first=None: finished.append(len(rows)) or decode(f, rows, first)  # type: ignore
    run_to_completion(Scheduler(batch), runner, run)
    segments = run.ordered_segments()
    assert segments and {s.temperature for s in segments} == {0.4}
    rows = sum(finished)
    assert rows >= 2
    assert sum(encoded) == (rows if words else 2 * rows)


def test_a_later_input_joins_the_running_batch(session, tiny_tokenizer, onnx_caps, speech_minute):
    """An input added while another decodes has rows in the batch before the first one ends
    (what lets a server request start without waiting for the batch in front of it); an input
    dropped from the scheduler (cancelled) leaves the batch at the next step."""
    audio, _ = speech_minute
    batch = BatchOptions(batch_size=4, block_s=30)
    runner = ContinuousRunner(session, tiny_tokenizer, onnx_caps, batch)
    scheduler = Scheduler(batch)
    runs = [
        SourceRun(session, tiny_tokenizer, TranscribeOptions(), batch, a, "en")
        for a in (audio, audio[: 50 * SR], audio[50 * SR : 100 * SR])
    ]
    scheduler.add(runs[0])
    for _ in range(3):
        scheduler.step(runner)
    scheduler.add(runs[1])
    scheduler.add(runs[2])
    seen: set[int] = set()
    finished: list[SourceRun] = []
    while runs[0] not in finished and scheduler.pending:
        finished += scheduler.step(runner)  # every step's finished inputs are kept
        seen.update(id(a.run) for a in runner._active)
        if id(runs[2]) in seen and runs[2] in scheduler.runs:
            scheduler.drop(runs[2])
        finished += scheduler.step(runner)
    assert id(runs[1]) in seen  # decoded beside the first input, not after it
    assert all(a.run is not runs[2] for a in runner._active)
    while scheduler.pending:
        finished += scheduler.step(runner)
    scheduler.close()
    assert runs[1] in finished and runs[1].ordered_segments()
    assert runs[2] not in finished


def test_inputs_without_rows_finish_too(session, tiny_tokenizer, onnx_caps):
    """An input with no speech (no row ever decodes) and one whose audio cannot be read are
    reported finished at the next step, beside an input that decodes: nothing waits for a row
    that will never finish."""
    batch = BatchOptions(batch_size=4)
    runner = ContinuousRunner(session, tiny_tokenizer, onnx_caps, batch)
    scheduler = Scheduler(batch)
    t = np.arange(3 * SR) / SR
    tone = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    silence = SourceRun(
        session, tiny_tokenizer, TranscribeOptions(), batch, np.zeros(SR * 40, np.float32), "en"
    )
    broken = SourceRun(
        session, tiny_tokenizer, TranscribeOptions(), batch, b"not audio at all", "en"
    )
    other = SourceRun(session, tiny_tokenizer, TranscribeOptions(), batch, tone, "en")
    for run in (silence, broken, other):
        scheduler.add(run)
    finished: list[SourceRun] = []
    for _ in range(500):
        if not scheduler.pending:
            break
        finished += scheduler.step(runner)
    scheduler.close()
    assert not scheduler.pending and set(map(id, finished)) == {id(silence), id(broken), id(other)}
    assert broken.error is not None and silence.error is None
    assert "".join(s.text for s in silence.ordered_segments()).strip() == ""


def test_busy_rows_tool_counts_the_steps_of_a_file():
    """``tools/busy_rows.py`` (the speed issue's busy-rows figure) on jfk: one row, so every
    step has one busy row, and the WER against jfk.txt."""
    import re
    import subprocess

    done = subprocess.run(
        [sys.executable, "tools/busy_rows.py", str(eval_file("jfk.flac"))],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    steps = re.search(r"(\d+) steps, ([\d.]+) busy rows of (\d+)", done.stdout)
    assert steps is not None and int(steps[1]) > 10 and float(steps[2]) == 1.0
    assert re.search(r"steps by rows: \{1: (\d+)\}", done.stdout)[1] == steps[1]  # type: ignore[index]
    assert "WER 0.00%" in done.stdout
