"""The ONNX Runtime backend: exported encoder and decoder graphs on the providers a profile names.

Graphs are built from the in-memory weights (``backends.onnx.graphs``, no torch) and cached on
disk keyed by the weights' hash (``backends.onnx.export``); sessions take their execution
providers and options from the profile's ``backend_options`` (``backends.onnx.options``), and
every session reports where its nodes really run (``backends.onnx.placement``): ONNX Runtime
itself would silently run them on the CPU.

Registered through the ``whisper_runtime`` entry-point group like any third-party backend.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backend import Availability, BaseSession, Capabilities, LoadOptions
from runtime.model.weights import WhisperModel

PRECISIONS = ("fp32", "fp16", "int8", "bf16")
CAPABILITIES = Capabilities(
    batched_encoder=True,
    batched_decoder=True,
    joinable_decoder=True,  # rows of any lengths decode side by side (``lengths`` input)
    encoder_batch_sizes=None,  # a loaded session narrows this to its static batch, if any
    word_timestamps=True,  # the decoder graph outputs the alignment heads' cross-attention
    precisions=PRECISIONS,
    devices=("cpu", "npu", "gpu"),
)


DYNAMIC_ROWS_PER_RUN = 2  # windows per encoder run when the graph's batch is dynamic


class OnnxSession(BaseSession):
    """Encoder, cross K/V and decoder graphs of one model, each in its own ONNX Runtime session."""

    def __init__(self, model: WhisperModel, options: LoadOptions) -> None:
        from backends.onnx.options import OnnxOptions

        self.options = OnnxOptions(**options.options)
        _quiet_default_logger()
        from runtime.pipeline.memory import limit_heap_arenas

        limit_heap_arenas()  # before the sessions' thread pools start (one heap each otherwise)
        self.model = model
        self.precision = options.precision
        self.static_batch = self.options.static_batch
        self.load_options = options
        self.encoder_graph, self.cross_graph, self.decoder_graph = self._open_all(
            [
                ("encoder", self.options.encoder, self.static_batch),
                ("cross_kv", self.options.decoder, None),
                ("decoder", self.options.decoder, None),
            ]
        )
        from backends.onnx.binding import binding_device

        self.decoder_device = binding_device(self.decoder_graph.session, self.options.io_binding)
        self.device = _device_of(self.encoder_graph.placement.main_provider, options.device)
        from backends.onnx.placement import PlacementReport

        self.placement = PlacementReport(
            tuple(g.placement for g in (self.encoder_graph, self.cross_graph, self.decoder_graph))
        )
        self.capabilities = self._capabilities()
        self.model = model.without_weights()  # the graphs hold them now

    def _open_all(self, graphs: list[tuple[str, Any, int | None]]) -> list[Any]:
        """Each (graph, spec, batch) exported if needed, one at a time (an export holds the
        weights), then their sessions created side by side: ONNX Runtime builds a session
        without the GIL, so three take about as long as the largest (0.25 s against 0.35-0.45
        s for tiny on 2 cores). With this project's kernels, the encoder's parts stand in for
        the encoder (``split_encoder``), and the float16 ``cross_kv`` and the decoder's parts
        for the two decoder graphs (``split``)."""
        from concurrent.futures import ThreadPoolExecutor

        located = [(graph, spec, self._locate(graph, spec, batch)) for graph, spec, batch in graphs]
        groups, logits = [[item] for item in located], None
        encoder_kernel, decoder_kernel = self._encoder_kernel(), self._kernel()
        if encoder_kernel is not None:
            from backends.onnx.split_encoder import derive_encoder

            name, spec, encoder = located[0]
            parts = derive_encoder(encoder)
            spec = _on_shared_arena(spec)
            groups[0] = [(f"{name} part {i}", spec, part) for i, part in enumerate(parts)]
        if decoder_kernel is not None:
            from backends.onnx.split import derive

            logits_kernel = self._logits_kernel()
            (name, spec, cross), (dec_name, dec_spec, decoder) = located[1:]
            fp16_cross, parts = derive(cross, decoder, logits=logits_kernel is not None)
            if not self.options.cross_kv_int8:  # else the exported graph's, packed as int8
                groups[1] = [(name, spec, fp16_cross)]
            groups[2] = [(f"{dec_name} part {i}", dec_spec, p) for i, p in enumerate(parts)]
            logits = _bind_logits(logits_kernel, parts[-2])  # the last: keys and values alone
        flat = [item for group in groups for item in group]
        with ThreadPoolExecutor(len(flat)) as pool:
            futures = iter([pool.submit(self._open, *item) for item in flat])
            opened = [[next(futures).result() for _ in group] for group in groups]
        if encoder_kernel is not None:
            from backends.onnx.split_encoder import KernelEncoder

            opened[0] = [KernelEncoder(opened[0], located[0][2][1], encoder_kernel)]
        if decoder_kernel is not None:
            from backends.onnx.split import KernelDecoder, kernel_manifest

            manifest = kernel_manifest(located[2][2][1])
            if self.options.cross_kv_int8:
                from backends.onnx.cross_int8 import Int8CrossKV, int8_specs

                opened[1] = [Int8CrossKV(opened[1][0], decoder_kernel.quantizer)]
                inputs = int8_specs(located[2][2][1].inputs)
                manifest = dataclasses.replace(manifest, inputs=inputs)
            opened[2] = [KernelDecoder(opened[2], manifest, decoder_kernel, logits)]
        return [group[0] for group in opened]

    def _kernel_fits(self, spec: Any) -> bool:
        """Whether a graph's spec lets this project's kernels stand in for its attention: an
        exported (not pre-exported) float32 or int8 graph on the CPU alone."""
        cpu_only = all(p.name == "CPUExecutionProvider" for p in spec.providers)
        precise = (spec.precision or self.precision) in ("fp32", "int8")
        return cpu_only and precise and not spec.model

    def _encoder_kernel(self) -> Any:
        """The bfloat16 self-attention kernel where the profile asks for it and the encoder is
        an exported graph with fused attention that fits (``_kernel_fits``); None otherwise, or
        where it cannot run here (said at INFO: the encoder graph attends by itself)."""
        spec = self.options.encoder
        if not self.options.encoder_attention_kernel or not self.options.fused_attention:
            return None
        if not self._kernel_fits(spec):
            return None
        from backends.onnx.kernel import load_self_attention

        return self._load_kernel(load_self_attention, spec, "encoder self-attention")

    def _kernel(self) -> Any:
        """The float16 cross-attention kernel where the profile asks for it and the decoder
        fits (``_kernel_fits``) without I/O binding; None otherwise, or where it cannot run
        here (said at INFO: the decoder graph attends by itself)."""
        spec = self.options.decoder
        if not self.options.cross_attention_kernel or self.options.io_binding:
            return None
        if not self._kernel_fits(spec):
            return None  # the kernel reads float32 queries and writes float32 contexts
        from backends.onnx.kernel import load_kernel

        return self._load_kernel(load_kernel, spec, "decoder cross-attention")

    def _logits_kernel(self) -> Any:
        """The int8 logits kernel where the profile asks for it (with the cross-attention
        kernel, whose decoder parts it ends), or None."""
        if not self.options.logits_kernel:
            return None
        from backends.onnx.kernel import load_logits

        return self._load_kernel(load_logits, self.options.decoder, "decoder logits")

    def _load_kernel(self, loader: Any, spec: Any, attention: str) -> Any:
        """``loader``'s kernel with the graph's threads, or None where it says it cannot run
        (INFO says which attention runs where, and why)."""
        from backends.onnx.export import cache_root

        threads = spec.intra_op_num_threads or os.cpu_count() or 1
        kernel = loader(cache_root(self.options.cache_dir) / "kernels", threads)
        log = logging.getLogger(__name__)
        if isinstance(kernel, str):
            log.info("%s; the graph computes the %s itself", kernel, attention)
            return None
        log.info("%s: this project's kernel, %d threads", attention, threads)
        return kernel

    def _locate(self, graph: str, spec, batch: int | None) -> tuple[Path, Any]:
        """The graph's manifest path and manifest: a pre-exported one the options name, or the
        cached export (made now when missing or stale)."""
        from backends.onnx.export import cache_root, ensure_graph, model_folder
        from backends.onnx.manifest import Manifest

        precision = spec.precision or self.precision
        if spec.model and graph != "cross_kv":
            path = Path(str(_expand(spec.model)))
            manifest = Manifest.read(path)
            if manifest.graph != graph:
                raise ValueError(f"{path} holds a {manifest.graph} graph, not a {graph} graph")
        else:
            folder = model_folder(cache_root(self.options.cache_dir), self.model)
            path, manifest = ensure_graph(
                self.model, graph, precision, batch, folder, fused=self.options.fused_attention
            )
        return path, manifest

    def _open(self, graph: str, spec, located: tuple[Path, Any]):
        from backends.onnx.eps import cache_versions
        from backends.onnx.export import cache_root
        from backends.onnx.sessions import OpenRequest, open_graph

        path, manifest = located
        # a compiled-model cache entry per model, graph, and EP/driver version (never reused
        # across versions: Ryzen AI's documentation forbids it)
        tag = (
            f"{self.model.name}-{self.model.digest()[:8]}-{path.stem}"
            f"-{cache_versions([p.name for p in spec.providers])}"
        )
        options = self.load_options
        variables: tuple[tuple[str, str], ...] = (
            ("ONNX_CACHE", str(cache_root(self.options.cache_dir))),
        )
        if options.profile_dir:
            variables += (("PROFILE_DIR", options.profile_dir),)
        request = OpenRequest(
            strict=self.options.strict_placement or options.strict,
            check=self.options.check_placement,
            cache_tag=tag,
            emulate=options.emulate or self.options.emulate,
            variables=variables,
        )
        return open_graph(path.parent / manifest.file, manifest, graph, spec, request)

    def _capabilities(self) -> Capabilities:
        """What this loaded session does: a static encoder batch narrows the batch sizes."""
        sizes = (self.static_batch,) if self.static_batch else None
        # word timestamps need the decoder graph's cross_qk output (pre-exported graphs may lack it)
        words = bool(self.decoder_graph.manifest.outputs_of("cross_qk"))
        return dataclasses.replace(
            CAPABILITIES,
            encoder_batch_sizes=sizes,
            precisions=(self.precision,),
            word_timestamps=words,
            host_decoder_state=self.decoder_device is None or self.decoder_device.kind == "cpu",
        )

    def encode(self, mel: np.ndarray) -> np.ndarray:
        """(B, n_mels, 3000) -> (B, 1500, D). A static-batch encoder runs B in pieces of its
        batch, the last one zero-padded, so callers may send any B (B = static batch is best)."""
        from backends.onnx.export import quantized_per_call

        mel = np.ascontiguousarray(mel, dtype=np.float32)
        m = self.encoder_graph.manifest
        name_in, name_out = m.input("mel").name, m.output("features").name
        # A dynamic graph runs at most DYNAMIC_ROWS_PER_RUN windows at a time: the attention
        # scores of 8 windows held ~650 MB in ONNX Runtime's arena for the whole process, while
        # the time per window is about the same at any batch on a CPU.
        # int8 graphs quantize activations dynamically, with one scale per call: windows encoded
        # together would change each other's features, so they go one at a time, each written
        # into its slice of the output (same speed, no concatenation).
        if self.static_batch is None and quantized_per_call(m) and len(mel) > 1:
            return self.encoder_graph.run_rows([name_out], name_in, mel)[0]
        step = self.static_batch or DYNAMIC_ROWS_PER_RUN
        if len(mel) <= step and (self.static_batch is None or len(mel) == step):
            return self.encoder_graph.run([name_out], {name_in: mel})[0]
        parts = []
        for i in range(0, len(mel), step):
            piece = mel[i : i + step]
            n = len(piece)
            if n < step and self.static_batch is not None:
                piece = np.concatenate([piece, np.zeros((step - n, *piece.shape[1:]), piece.dtype)])
            parts.append(self.encoder_graph.run([name_out], {name_in: piece})[0][:n])
        return np.concatenate(parts)

    def decoder(self, features: Any):
        from backends.onnx.decoder import OnnxDecoderState

        return OnnxDecoderState(
            self.cross_graph,
            self.decoder_graph,
            np.asarray(features),
            self.model.dims.n_text_ctx,
            self.decoder_device,
        )

    def report(self) -> list[str]:
        """``describe()`` then one line per graph: where its nodes really run, and warnings."""
        return [self.describe().split(";")[0]] + self.placement.lines()

    def describe(self) -> str:
        import onnxruntime as ort

        precisions = {g.manifest.precision for g in (self.encoder_graph, self.decoder_graph)}
        batch = f"static batch {self.static_batch}" if self.static_batch else "dynamic batch"
        return (
            f"onnx backend: onnxruntime {ort.__version__}, {'/'.join(sorted(precisions))} "
            f"({self.precision} requested), encoder {batch}; {self.placement.summary()}"
        )


@functools.lru_cache(maxsize=1)
def _register_shared_arena() -> None:
    """One CPU arena for the process's sessions that ask for it (``_on_shared_arena``),
    growing by what is requested."""
    import onnxruntime as ort

    info = ort.OrtMemoryInfo(
        "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
    )
    ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 1, -1, -1))  # same as requested


def _on_shared_arena(spec: Any) -> Any:
    """``spec`` with its sessions on the process's shared CPU arena. The encoder's parts run
    one after another, each window: with an arena of their own each would keep its largest
    buffers, and with none their 2-9 MB buffers, freed and allocated between the decoder's,
    fragmented glibc's heap (peak RSS of the 15.5-min chapter varied by 150 MB run to run)."""
    _register_shared_arena()
    config = {**spec.session_config, "session.use_env_allocators": "1"}
    return spec.model_copy(update={"cpu_memory_arena": True, "session_config": config})


def _bind_logits(kernel: Any, last: tuple[Path, Any]) -> Any:
    """The logits kernel with the panels saved beside the decoder's last part, where that part
    stops before the projection; else None (the part computes the logits itself)."""
    path, manifest = last
    files = manifest.details.get("logit_panels")
    if kernel is None or not files:
        return None
    weights, scales = (np.load(path.parent / f) for f in files)
    return kernel, weights, scales


def _quiet_default_logger() -> None:
    """ONNX Runtime's process-wide logger prints EP warnings straight to stderr (QNN's "File
    mapped weights ...", OpenVINO's recompiles, an EP's error before the exception that carries
    it); placement says what matters in one line. They are shown with --verbose (INFO logging)."""
    import logging

    import onnxruntime as ort

    verbose = logging.getLogger(__name__).isEnabledFor(logging.INFO)
    ort.set_default_logger_severity(2 if verbose else 4)


def _expand(value: str) -> str:
    from backends.onnx.options import expand

    return str(expand(value))


def _device_of(provider: str, requested: str | None) -> str:
    """A short device word for results: what the encoder's main provider drives."""
    words = {
        "CPUExecutionProvider": "cpu",
        "CUDAExecutionProvider": "cuda",
        "TensorrtExecutionProvider": "cuda",
        "VitisAIExecutionProvider": "npu",
        "QNNExecutionProvider": "npu",
        "OpenVINOExecutionProvider": "openvino",
        "DmlExecutionProvider": "gpu",
        "CoreMLExecutionProvider": "coreml",
    }
    return words.get(provider, requested or provider)


class OnnxBackend:
    name = "onnx"
    capabilities = CAPABILITIES

    def available(self) -> Availability:
        """onnxruntime must import (its providers are listed); onnx is needed only to export."""
        try:
            import onnxruntime as ort
        except ImportError as exc:
            return Availability(
                False, f"onnxruntime is not installed ({exc}); pip install onnxruntime"
            )
        providers = ort.get_available_providers()
        if importlib.util.find_spec("onnx") is not None:  # not imported: 0.6 s, only to export
            export = "onnx installed (exports graphs)"
        else:
            export = "onnx not installed: only pre-exported graphs (pip install onnx)"
        return Availability(
            True,
            f"onnxruntime {ort.__version__}; providers: {', '.join(providers)}; {export}",
            device="cpu",
        )

    def load(self, model: WhisperModel, options: LoadOptions) -> OnnxSession:
        return OnnxSession(model, options)
