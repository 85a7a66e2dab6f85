"""Decoder steps through ONNX Runtime's I/O binding, with inputs that do not change between steps
kept where the session runs.

``InferenceSession.run`` takes numpy feeds: on a GPU every feed is copied host to device at every
call. The decoder's biggest feeds, the cross-attention keys and values (for large-v3 at a batch
of 16 about 3.9 GB), change only when rows join or leave. ``BoundStep`` copies them to the
session's device once (``keep_resident``) and binds the copies (``OrtValue``) for every step
until the rows change; the per-step feeds (tokens, lengths, positions, self-attention caches)
are bound from host memory and the outputs (logits, new keys and values) come back to host
memory, written straight into numpy arrays. On the CPU the same path binds OrtValues that wrap
the numpy arrays (no copy; the self caches, updated in place, stay bound too), so it is tested
here for equality with ``run``.

Next step (not built): self-attention caches resident on the device too. The graph returns only
the new keys and values; writing them into a device cache at each row's length needs an in-graph
scatter (``ScatterElements``/``ScatterND`` on the cache inputs, outputs aliased to them) and row
moves on the device (``keep``/``join``), so that per-step host traffic is tokens in, logits out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backends.onnx.manifest import TensorSpec

# ONNX Runtime's OrtValue device names for providers whose memory is not the host's; a provider
# absent here runs bound steps with host memory (as on the CPU)
DEVICES = {"CUDAExecutionProvider": "cuda"}


@dataclass(frozen=True)
class Device:
    """Where bound inputs are kept: an OrtValue device name ("cpu", "cuda") and its index."""

    kind: str = "cpu"
    index: int = 0


def device_of(session: Any) -> Device:
    """The device of the session's first provider that has one (its ``device_id`` option), or
    the CPU."""
    options = session.get_provider_options()
    for provider in session.get_providers():
        if provider in DEVICES:
            index = int(options.get(provider, {}).get("device_id", 0) or 0)
            return Device(DEVICES[provider], index)
    return Device()


def binding_device(session: Any, wanted: bool | None) -> Device | None:
    """The device decoder steps bind to, or None for plain ``run``: ``wanted`` None binds when
    the session runs on a device other than the host's; True always (host memory on the CPU);
    False never."""
    device = device_of(session)
    if wanted is None:
        return device if device.kind != "cpu" else None
    return device if wanted else None


class BoundStep:
    """One decoder state's I/O binding: resident inputs bound once, the rest at every step."""

    def __init__(self, session: Any, device: Device, outputs: Sequence[TensorSpec]) -> None:
        self.session = session
        self.device = device
        self.specs = {t.name: t for t in outputs}
        self.binding = session.io_binding()
        self.resident: dict[str, Any] = {}  # input name -> OrtValue on the device

    def keep_resident(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy ``arrays`` to the device (wrap them, on the CPU) and bind them for every step
        until the next call; the numpy arrays must stay unchanged until then."""
        import onnxruntime as ort

        self.resident = {
            name: ort.OrtValue.ortvalue_from_numpy(a, self.device.kind, self.device.index)
            for name, a in arrays.items()
        }
        for name, value in self.resident.items():
            self.binding.bind_ortvalue_input(name, value)

    def run(
        self, outputs: list[str], feeds: dict[str, np.ndarray], dims: dict[str, int]
    ) -> list[np.ndarray]:
        """``Graph.run`` with the resident inputs: ``feeds`` from host memory (copied to the
        device by ONNX Runtime), ``outputs`` back in host memory, in order. An output whose
        manifest shape ``dims`` resolves (symbolic name -> size) is written straight into a
        numpy array (no copy out of ONNX Runtime's buffer afterwards)."""
        for name, array in feeds.items():
            self.binding.bind_cpu_input(name, np.ascontiguousarray(array))
        self.binding.clear_binding_outputs()
        arrays: list[np.ndarray | None] = []
        for name in outputs:
            spec = self.specs[name]
            shape = [d if isinstance(d, int) else dims.get(d, -1) for d in spec.shape]
            if -1 in shape:
                self.binding.bind_output(name, "cpu")
                arrays.append(None)
                continue
            out = np.empty(shape, spec.dtype)
            self.binding.bind_output(name, "cpu", 0, out.dtype, out.shape, out.ctypes.data)
            arrays.append(out)
        self.session.run_with_iobinding(self.binding)
        if all(a is not None for a in arrays):
            return [a for a in arrays if a is not None]
        copied = self.binding.copy_outputs_to_cpu()
        return [a if a is not None else c for a, c in zip(arrays, copied)]
