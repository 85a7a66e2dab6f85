from __future__ import annotations

import platform

import pytest

from runtime.pipeline.memory import release_free_memory


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="malloc_trim is a glibc function",
)
def test_free_memory_is_given_back_on_glibc():
    assert release_free_memory() is True
    assert release_free_memory() is True  # cached lookup, callable again


def test_heap_arenas_are_limited_unless_the_user_chose(monkeypatch):
    """The ONNX backend asks glibc for two heap arenas before its sessions start their thread
    pools; a ``MALLOC_ARENA_MAX`` of the user's is left alone, and without glibc nothing is
    asked."""
    import runtime.pipeline.memory as memory

    asked: list[tuple[int, int]] = []

    class Libc:
        def mallopt(self, param: int, value: int) -> int:
            asked.append((param, value))
            return 1

    monkeypatch.setattr(memory, "_libc", lambda: Libc())
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert memory.limit_heap_arenas() is True and asked == [(memory.M_ARENA_MAX, 2)]
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert memory.limit_heap_arenas() is False and len(asked) == 1
    monkeypatch.setattr(memory, "_libc", lambda: None)
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert memory.limit_heap_arenas() is False


def test_the_onnx_backend_limits_heap_arenas_before_its_sessions(monkeypatch, tmp_path):
    import runtime.pipeline.memory as memory
    from backends.onnx import OnnxBackend
    from runtime.backend import LoadOptions
    from runtime.model.registry import resolve_model

    calls: list[int] = []
    monkeypatch.setattr(memory, "limit_heap_arenas", lambda count=2: calls.append(count) or True)
    OnnxBackend().load(resolve_model("tiny.en"), LoadOptions(options={"cache_dir": str(tmp_path)}))
    assert calls == [2]


def test_release_never_raises_elsewhere(monkeypatch):
    import runtime.pipeline.memory as memory

    monkeypatch.setattr(memory, "_trim", lambda: None)
    assert memory.release_free_memory() is False


def test_audio_blocks_cost_about_one_block_of_memory():
    """Blocks are filled from the decoded chunks directly: reading 10 minutes in 30 s blocks,
    one at a time, never holds much more than the block being filled and the one handed out
    (joining the pending chunks first copied the whole input when it came as one array)."""
    import tracemalloc

    import numpy as np

    from runtime.audio.blocks import iter_audio_blocks
    from runtime.audio.decode import SAMPLE_RATE

    audio = np.random.default_rng(0).normal(0, 0.1, 600 * SAMPLE_RATE).astype(np.float32)
    block_bytes = 30 * SAMPLE_RATE * 4
    tracemalloc.start()
    try:
        blocks = iter_audio_blocks(audio, block_seconds=30)
        total = len(next(blocks))  # the input's checks (a mask of the whole signal) done
        tracemalloc.reset_peak()
        total += sum(len(b) for b in blocks)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == len(audio)
    assert peak < 2.5 * block_bytes, f"{peak / block_bytes:.1f} blocks"


def test_a_prepared_block_does_not_hold_its_audio(cpu_runtime, monkeypatch):
    """Once a block's VAD and mel are made, its audio is free: only the deferred last chunk
    stays (each stream keeps a mel, not the audio), and the reader holds no block ahead: it
    knows the last block by one more decoded chunk, not by reading the next block."""
    import gc
    import weakref

    import numpy as np

    import runtime.pipeline.source as batcher_module
    from runtime.audio.decode import SAMPLE_RATE
    from runtime.pipeline.options import BatchOptions, TranscribeOptions
    from runtime.pipeline.source import SourceRun

    refs = []

    def fake_blocks(source, block_seconds, allow_truncated=False):
        for i in range(3):
            audio = np.random.default_rng(i).normal(0, 0.1, 30 * SAMPLE_RATE).astype(np.float32)
            refs.append(weakref.ref(audio))
            held = [audio]
            del audio
            yield held.pop(), i == 2

    monkeypatch.setattr(batcher_module, "iter_audio_blocks_flagged", fake_blocks)
    run = SourceRun(
        cpu_runtime.session,
        cpu_runtime.tokenizer,
        TranscribeOptions(),
        BatchOptions(block_s=30.0),
        source=None,
    )
    blocks = run._prepared_blocks_of(None)
    first = next(blocks)
    gc.collect()
    assert first.mel.shape[0] == 80
    assert len(refs) == 1  # no block read ahead
    assert refs[0]() is None
    second = next(blocks)
    gc.collect()
    assert second.mel.shape[0] == 80 and len(refs) == 2 and refs[1]() is None


def test_a_loaded_onnx_session_does_not_keep_the_weights(tmp_path):
    """Once its graphs are built the ONNX session keeps the model without its arrays, and the
    registry holds a model only while something uses it: the 70 MB of tiny's weights leave
    memory after loading; the int8 decoder reads the token embedding from the output
    projection's int8 blocks (no float table: 40 MB less than an fp16 one, 80 than fp32)."""
    import gc
    import weakref

    import onnx

    from backends.onnx import OnnxBackend
    from runtime.backend import LoadOptions
    from runtime.model.registry import clear_model_cache, resolve_model

    clear_model_cache()
    model = resolve_model("tiny.en")
    digest, alive = model.digest(), weakref.ref(model)
    options = LoadOptions(precision="int8", options={"cache_dir": str(tmp_path)})
    session = OnnxBackend().load(model, options)
    del model
    gc.collect()
    assert alive() is None and session.model.weights == {}
    assert session.model.digest() == digest
    assert session.model.dims.n_vocab == 51864
    graph = onnx.load(str(next(tmp_path.rglob("decoder-int8.onnx"))), load_external_data=False)
    names = {t.name for t in graph.graph.initializer}
    assert "decoder.token_embedding.weight" not in names
    gathers = [n for n in graph.graph.node if n.op_type == "GatherBlockQuantized"]
    assert [n.input[0] for n in gathers] == ["decoder.token_embedding.weight_t_q8"]
    assert sum(len(t.raw_data) for t in graph.graph.initializer) < 40e6


def test_the_cpu_arena_can_be_turned_off_per_graph():
    """A profile trades speed for resident memory per graph (measured in docs/benchmarks.md)."""
    from backends.onnx.options import GraphOptions
    from backends.onnx.sessions import _session_options

    assert _session_options(GraphOptions(), False, None).enable_cpu_mem_arena is True
    off = _session_options(GraphOptions(cpu_memory_arena=False), False, None)
    assert off.enable_cpu_mem_arena is False


def test_loading_gives_back_what_it_freed(monkeypatch):
    """The heap memory freed while a backend loads (a model file read, graphs built in threads)
    goes back to the system once it has loaded, not at the first finished block."""
    import runtime.api as api
    from runtime import Runtime

    calls: list[int] = []
    monkeypatch.setattr(api, "release_free_memory", lambda: calls.append(1) or True)
    rt = Runtime("tiny.en", backend="cpu")
    assert calls == []
    rt.load()
    assert calls == [1]
    rt.load()  # loaded once
    assert calls == [1]
