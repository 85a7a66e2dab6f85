"""Every setting through every entry point: defaults, the TOML file, RUNTIME_* variables, CLI
flags, ``Runtime`` arguments and server fields. A flag, keyword or field the user did not give
never overrides the settings (the CLI once passed its own defaults for beam_size, best_of and
condition_on_previous_text, so ``RUNTIME_DECODING__BEAM_SIZE=5`` was silently ignored).

Each case goes through the function the entry point itself calls, so what is asserted is what
a transcription would use."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.api import Runtime
from runtime.cli import build_parser
from runtime.cli.transcribe import _overrides, _settings
from runtime.config.settings import Settings
from runtime.pipeline.options import BatchOptions, TranscribeOptions
from runtime.server.request import AudioRequest


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No RUNTIME_* variable from the outside, and no user config file."""
    import os

    for name in list(os.environ):
        if name.startswith("RUNTIME_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/.config/whisper-runtime/config.toml: absent
    monkeypatch.setenv("RUNTIME_BACKEND", "cpu")  # no profile selection: these tests load nothing
    return monkeypatch


def _cli(*argv: str) -> tuple[TranscribeOptions, BatchOptions]:
    """What `runtime transcribe ARGV jfk.flac` would transcribe with (cmd_transcribe's calls)."""
    args = build_parser().parse_args(["transcribe", *argv, "x.flac"])
    rt = Runtime(settings=_settings(args))
    options = rt.transcribe_options(None, args.language, args.task, _overrides(args))
    return options, rt.batch_options(args.batch_size, args.chunking)


def _api(settings: Settings | None = None, **given) -> TranscribeOptions:
    return Runtime(settings=settings or Settings()).transcribe_options(overrides=given)


def _toml(tmp_path: Path, monkeypatch, text: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    monkeypatch.setenv("RUNTIME_CONFIG", str(path))


def test_defaults_live_in_the_options_and_nowhere_else(clean_env):
    default = TranscribeOptions()
    assert _api() == default
    options, batch = _cli()
    assert options == default and batch == BatchOptions()
    settings = Settings()
    assert settings.decoding.best_of == default.best_of == 5
    assert settings.decoding.temperatures == default.temperatures
    assert settings.batch.batch_size is None and settings.batch.chunking == BatchOptions().chunking


@pytest.mark.parametrize(
    "name, env, value, expected",
    [
        ("beam_size", "RUNTIME_DECODING__BEAM_SIZE", "5", 5),
        ("best_of", "RUNTIME_DECODING__BEST_OF", "2", 2),
        (
            "condition_on_previous_text",
            "RUNTIME_DECODING__CONDITION_ON_PREVIOUS_TEXT",
            "false",
            False,
        ),
        ("temperatures", "RUNTIME_DECODING__TEMPERATURES", "[0.0, 0.5]", (0.0, 0.5)),
    ],
)
def test_environment_reaches_the_cli_and_the_api(clean_env, name, env, value, expected):
    clean_env.setenv(env, value)
    assert getattr(_cli()[0], name) == expected  # the bug: the CLI's defaults won
    assert getattr(_api(), name) == expected


def test_toml_reaches_the_cli_and_the_api(clean_env, tmp_path):
    _toml(
        tmp_path,
        clean_env,
        "[decoding]\nbeam_size = 3\nbest_of = 4\n"
        "condition_on_previous_text = false\n"
        '[batch]\nbatch_size = 6\nchunking = "fixed"\n',
    )
    options, batch = _cli()
    assert (options.beam_size, options.best_of, options.condition_on_previous_text) == (3, 4, False)
    assert (batch.batch_size, batch.chunking) == (6, "fixed")
    assert _api().beam_size == 3


def test_environment_wins_over_toml_and_flags_win_over_both(clean_env, tmp_path):
    _toml(tmp_path, clean_env, "[decoding]\nbeam_size = 3\n[batch]\nbatch_size = 6\n")
    clean_env.setenv("RUNTIME_DECODING__BEAM_SIZE", "4")
    clean_env.setenv("RUNTIME_BATCH__BATCH_SIZE", "5")
    options, batch = _cli()
    assert options.beam_size == 4 and batch.batch_size == 5
    options, batch = _cli(
        "--beam-size",
        "2",
        "--best-of",
        "3",
        "--no-condition-on-previous-text",
        "--batch-size",
        "7",
        "--chunking",
        "fixed",
        "--temperature",
        "0.3",
    )
    assert (options.beam_size, options.best_of, options.condition_on_previous_text) == (2, 3, False)
    assert options.temperatures == (0.3,)
    assert (batch.batch_size, batch.chunking) == (7, "fixed")


def test_api_arguments_override_only_what_they_name(clean_env):
    clean_env.setenv("RUNTIME_DECODING__BEST_OF", "2")
    options = _api(beam_size=3, temperature=[0.0, 0.4])
    assert (options.beam_size, options.best_of, options.temperatures) == (3, 2, (0.0, 0.4))
    rt = Runtime()
    assert rt.batch_options(batch_size=2).batch_size == 2
    assert rt.batch_options(chunking="fixed").chunking == "fixed"


def test_server_fields_override_only_what_the_client_sent(clean_env):
    """A request's fields reach the engine as overrides (``AudioRequest.engine_overrides``) of
    the server's settings, which come from the same TOML and variables."""
    clean_env.setenv("RUNTIME_DECODING__BEAM_SIZE", "5")
    rt = Runtime()
    plain = AudioRequest(task="transcribe", model="tiny.en")
    options = rt.transcribe_options(None, plain.language, plain.task, plain.engine_overrides())
    assert options.beam_size == 5 and options.temperatures == TranscribeOptions().temperatures
    asked = AudioRequest(
        task="transcribe",
        model="tiny.en",
        prompt="Glossary",
        temperature=0.2,
        granularities=frozenset({"word", "segment"}),
    )
    options = rt.transcribe_options(None, asked.language, asked.task, asked.engine_overrides())
    assert options.beam_size == 5 and options.temperatures == (0.2,)
    assert options.initial_prompt == "Glossary" and options.word_timestamps


def test_server_batching_settings(clean_env, tmp_path):
    """``[server] batch_size`` (or --batch-size of `runtime serve`) sizes each model's engine,
    else ``[batch]``, else the profile's."""
    from runtime.cli import build_parser as parser

    _toml(tmp_path, clean_env, "[batch]\nbatch_size = 6\n[server]\nmax_wait_ms = 20\n")
    settings = Settings()
    rt = Runtime(settings=settings)
    assert rt.engine(batch_size=settings.server.batch_size).batch.batch_size == 6
    args = parser().parse_args(["serve", "--batch-size", "3"])
    assert args.batch_size == 3 and rt.engine(batch_size=args.batch_size).batch.batch_size == 3
    assert settings.server.max_wait_ms == 20
