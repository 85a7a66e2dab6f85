"""The fuzzing suite's properties: what must hold for every generated input, at every layer.

A ``Tally`` counts inputs, HTTP requests and property checks, and keeps each violation as one
line; a test asserts it holds none. Layers: intake (``load_audio`` on a path, the bytes and a
file object), the Python API (``transcribe_many``), the ``runtime transcribe`` command and the
HTTP server (``tests/fuzz_http.py``).
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.fuzz_audio import ANY, EMPTY, ERROR, SPEECH, Case, is_speech

PEAK_BOUND = 4.0  # resampling overshoot on clipped or damaged material stays far below this
PYTHON_ERROR = re.compile(r"Traceback|\b[A-Z]\w*(Error|Exception|Warning): ")


@dataclass
class Tally:
    inputs: set[str] = field(default_factory=set)  # distinct audio inputs, by name
    requests: int = 0
    checks: Counter = field(default_factory=Counter)  # property -> times checked
    violations: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # clients in threads

    def check(self, prop: str, ok: bool, what: str) -> bool:
        with self.lock:
            self.checks[prop] += 1
            if not ok:
                self.violations.append(f"{prop}: {what}")
        return ok

    def add(self, case: Case | None = None, requests: int = 0) -> None:
        with self.lock:
            if case is not None:
                self.inputs.add(case.name)
            self.requests += requests

    def summary(self) -> str:
        return (
            f"{len(self.inputs)} inputs, {self.requests} requests, {len(self.checks)} properties "
            f"checked {sum(self.checks.values())} times, {len(self.violations)} violations"
        )


def python_error(text: str) -> str | None:
    """A Python exception or warning name in ``text`` (not our own messages' words)."""
    found = PYTHON_ERROR.search(text)
    return found.group(0) if found else None


def check_expectation(
    tally: Tally, layer: str, case: Case, text: str | None, error: str | None
) -> None:
    """A success (``text``) or an input error (``error``) is what the case allows."""
    got = f"{case.name!r} -> " + (f"error {error!r}" if error is not None else f"text {text!r}")
    if error is not None:
        tally.check(f"{layer}: an error only where one may come", case.expect in (ERROR, ANY), got)
        tally.check(f"{layer}: an error is one line", "\n" not in error, got)
        if case.error:
            tally.check(f"{layer}: the error says why", case.error in error, got)
        return
    tally.check(f"{layer}: success only where one may come", case.expect != ERROR, got)
    if case.expect == SPEECH:
        tally.check(f"{layer}: speech is transcribed", is_speech(text or ""), got)
    elif case.expect == EMPTY:
        tally.check(f"{layer}: silence and noise give empty text", not (text or "").strip(), got)


# -- intake ------------------------------------------------------------------------------------
def _intake(source) -> tuple[str, object]:
    from runtime.audio.decode import load_audio
    from runtime.errors import AudioError

    try:
        return "ok", load_audio(source)
    except AudioError as exc:
        return "error", str(exc)
    except Exception as exc:  # noqa: BLE001 - the violation this records
        return "crash", f"{type(exc).__name__}: {exc}"


def check_intake(tally: Tally, case: Case, path: Path | None) -> None:
    """``load_audio`` on the path, the bytes and a file object: samples or one AudioError
    line, the same for all three, finite mono float32 within a sane peak."""
    tally.add(case)
    if case.is_array:
        outcomes = [_intake(case.data)]
    else:
        outcomes = [_intake(path), _intake(case.data), _intake(io.BytesIO(case.data))]
    kinds = [kind for kind, _ in outcomes]
    tally.check(
        "intake: samples or an AudioError, nothing else",
        "crash" not in kinds,
        f"{case.name!r}: {[v for k, v in outcomes if k == 'crash']}",
    )
    if case.expect != ANY:  # a damaged file may decode only with its name's format hint
        tally.check(
            "intake: path, bytes and file object agree",
            len(set(kinds)) == 1,
            f"{case.name!r}: {kinds}",
        )
    oks = [v for k, v in outcomes if k == "ok"]
    for samples in oks:
        ok = (
            isinstance(samples, np.ndarray)
            and samples.dtype == np.float32
            and samples.ndim == 1
            and bool(np.isfinite(samples).all())
        )
        tally.check("intake: samples are finite float32 mono", ok, case.name)
        if ok and len(samples) and case.family != "mutations":
            peak = float(np.abs(samples).max())
            tally.check(
                "intake: samples within full scale (plus resampling)",
                peak <= PEAK_BOUND,
                f"{case.name!r}: peak {peak:.3g}",
            )
    if len(oks) > 1 and case.expect != ANY:
        tally.check(
            "intake: path, bytes and file object agree",
            all(np.array_equal(oks[0], o) for o in oks[1:]),
            f"{case.name!r}: different samples",
        )
    kind, value = outcomes[0]
    if kind == "error":
        tally.check(
            "intake: an error only where one may come",
            case.expect in (ERROR, ANY),
            f"{case.name!r}: {value}",
        )
        tally.check("intake: an error is one line", "\n" not in value, repr(value))
    elif kind == "ok":
        tally.check("intake: decodes where it must", case.expect != ERROR, case.name)


# -- the Python API ----------------------------------------------------------------------------
def check_api(tally: Tally, runtime, cases: list[Case], timeout_s: float) -> None:
    """``Runtime.transcribe_many`` over the cases as given (arrays, bytes): each one a result
    or an input error, in time."""
    from runtime.errors import RuntimeInputError

    t0 = time.monotonic()
    results = list(runtime.transcribe_many([c.data for c in cases]))
    tally.check(
        "no hang: the API answers in time",
        time.monotonic() - t0 < timeout_s,
        f"{len(cases)} inputs took {time.monotonic() - t0:.0f} s",
    )
    for case, result in zip(cases, results):
        tally.add(case)
        error = result.error
        tally.check(
            "api: failures are input errors, not crashes",
            error is None or isinstance(error, RuntimeInputError),
            f"{case.name!r}: {type(error).__name__}: {error}",
        )
        check_expectation(
            tally,
            "api",
            case,
            result.transcription.text if result.ok else None,
            str(error) if error is not None else None,
        )


# -- the command -------------------------------------------------------------------------------
STDERR_LINE = re.compile(r"^(error: |WARNING runtime\.|\d+ done \(|  failed: )")


def disk_name(case: Case) -> str:
    return case.filename.replace("/", "_") or "unnamed"


def check_cli(
    tally: Tally, cases: list[Case], folder: Path, timeout_s: float, extra: tuple[str, ...] = ()
) -> None:
    """All file cases through one ``runtime transcribe -f json -o``: exit 0 or 2, one `error:`
    line per failed input naming it, a json per success, nothing else on stderr."""
    from runtime.errors import one_line

    paths = []
    for k, case in enumerate(cases):
        path = folder / "in" / f"c{k:04d}" / disk_name(case)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(case.data)
        paths.append(path)
    out = folder / "out"
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "runtime.cli",
                "transcribe",
                "-f",
                "json",
                "-o",
                str(out),
                *extra,
                *map(str, paths),
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        tally.check("no hang: the command ends in time", False, f"over {timeout_s:.0f} s")
        return
    tally.check("no hang: the command ends in time", True, "")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    tally.check(
        "cli: exit 0, or 2 when an input failed",
        proc.returncode == (2 if errors else 0),
        f"status {proc.returncode} with {len(errors)} error lines",
    )
    for line in proc.stderr.splitlines():
        tally.check(
            "cli: stderr holds error, warning and summary lines only",
            bool(STDERR_LINE.match(line)) and python_error(line) is None,
            repr(line),
        )
    tally.check("cli: no half-written output left", not list(out.rglob("*.part")), str(out))
    for k, (case, path) in enumerate(zip(cases, paths)):
        tally.add(case)
        name = one_line(str(path))
        mine = [e for e in errors if e.startswith(f"error: {name}: ")]
        result = out / f"c{k:04d}" / f"{path.stem}.json"
        tally.check(
            "cli: each input gives one error line or one output",
            (len(mine) == 1) != result.exists(),
            f"{case.name!r}: {mine}, {result.exists()}",
        )
        text = json.loads(result.read_text())["text"] if result.exists() else None
        check_expectation(tally, "cli", case, text, mine[0] if mine else None)
