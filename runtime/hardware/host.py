"""Platform facts a probe cannot read from files: OS, architecture, commands, libraries.

Probes read `/sys`, `/proc` and `/dev` through a `root` folder so tests can fake them. The
rest (``platform.system()``, ``sysctl``, ``nvidia-smi``, what an installed library reports)
comes from a `HostInfo`, which `HostInfo.detect(root)` builds:

- for the real root ("/"), from `platform` and real commands (3 s timeout); ``library(name)``
  is None there: a backend's probe imports the real library itself;
- for any other root (a fake machine in a test), only from files under ``root/fake/``,
  so a test never runs a real command or depends on the machine it runs on:

      fake/system                 platform.system(), e.g. "Darwin" (default "Linux")
      fake/machine                platform.machine(), e.g. "arm64" (default "x86_64")
      fake/processor              the CPU name Windows reports (default "")
      fake/cpu_count              os.cpu_count() (default 0, unknown)
      fake/sysctl/<name>          the output of `sysctl -n <name>`; missing = unknown oid
      fake/bin/<command>          the output of `<command> ...`; missing = not installed
      fake/<library>.json         what a library reports, read by its backend's probe, e.g.
                                  onnxruntime.json {"version", "providers", "ep_devices"},
                                  mlx.json {"version", "device", "metal"}; missing = not installed
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path("/")
COMMAND_TIMEOUT_S = 3.0  # probes must stay cheap; a hung driver tool must not hang `detect`

# Runs a command and returns its stdout. Raises OSError (not installed),
# subprocess.TimeoutExpired or subprocess.CalledProcessError, like subprocess.run.
Runner = Callable[[Sequence[str]], str]


def run_command(argv: Sequence[str]) -> str:
    """Run `argv` with a short timeout and return its stdout; failures raise."""
    done = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=True
    )
    return done.stdout


def is_real_root(root: Path) -> bool:
    """True for the filesystem root ("/" or a drive anchor), false for a fake tree."""
    resolved = root.resolve()
    return resolved == Path(resolved.anchor)


@dataclass(frozen=True)
class HostInfo:
    """Platform facts and the means to run commands and import libraries, all injectable."""

    system: str  # platform.system(): "Linux", "Darwin", "Windows"
    machine: str  # platform.machine(): "x86_64", "AMD64", "arm64", "ARM64", "aarch64"
    processor: str = ""  # CPU name where the OS gives one cheaply (Windows), else ""
    cpu_count: int = 0  # os.cpu_count(); 0 when unknown
    run: Runner = run_command
    which: Callable[[str], str | None] = shutil.which
    # a fake library's facts (dict), or raises ImportError when the fake tree lacks it; on the
    # real host it returns None: the probe asks the real library
    library: Callable[[str], dict[str, Any] | None] = field(default=lambda name: None)

    def sysctl(self, name: str) -> str:
        """`sysctl -n name`, stripped; raises like `run` when the oid or sysctl is missing."""
        return self.run(["sysctl", "-n", name]).strip()

    @classmethod
    def detect(cls, root: Path = ROOT) -> HostInfo:
        """The real host for the real root; the files under root/fake/ for a fake tree."""
        return cls.local() if is_real_root(root) else cls.fake(root / "fake")

    @classmethod
    def local(cls) -> HostInfo:
        """This machine. Avoids platform.processor(), which runs `uname -p` on Linux."""
        processor = (
            os.environ.get("PROCESSOR_IDENTIFIER", "") if platform.system() == "Windows" else ""
        )
        return cls(platform.system(), platform.machine(), processor, os.cpu_count() or 0)

    @classmethod
    def fake(cls, fake_dir: Path) -> HostInfo:
        """A host described by files (see the module docstring); nothing real is touched."""
        return cls(
            system=_read(fake_dir / "system") or "Linux",
            machine=_read(fake_dir / "machine") or "x86_64",
            processor=_read(fake_dir / "processor"),
            cpu_count=int(_read(fake_dir / "cpu_count") or 0),
            run=_FakeRunner(fake_dir),
            which=lambda name: (
                str(fake_dir / "bin" / name) if (fake_dir / "bin" / name).is_file() else None
            ),
            library=lambda name: _fake_library(fake_dir / f"{name}.json", name),
        )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class _FakeRunner:
    """Answers commands from fake/sysctl/<name> and fake/bin/<command>."""

    fake_dir: Path

    def __call__(self, argv: Sequence[str]) -> str:
        if list(argv[:2]) == ["sysctl", "-n"] and len(argv) == 3:
            sysctl_dir = self.fake_dir / "sysctl"
            if not sysctl_dir.is_dir():
                raise FileNotFoundError(f"sysctl: not found (no {sysctl_dir})")
            value = sysctl_dir / argv[2]
            if not value.is_file():
                raise subprocess.CalledProcessError(
                    1, list(argv), stderr=f"unknown oid '{argv[2]}'"
                )
            return value.read_text(encoding="utf-8")
        command = self.fake_dir / "bin" / argv[0]
        if not command.is_file():
            raise FileNotFoundError(f"{argv[0]}: not found (no {command})")
        return command.read_text(encoding="utf-8")


def _fake_library(path: Path, name: str) -> dict[str, Any]:
    if not path.is_file():
        raise ImportError(f"{name} is not installed (fake tree has no {path.name})")
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}
