"""Batch jobs: folders and input lists expanded, outputs mirrored without collisions, done inputs
skipped, a corrupt input reported without stopping the job, --overwrite, exit status."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.cli import main
from runtime.errors import RuntimeInputError
from runtime.output.jobs import (
    MEDIA_EXTENSIONS,
    JobInput,
    collect_inputs,
    media_files,
    plan_outputs,
    read_input_list,
)
from tests.conftest import eval_file

# Three short LibriSpeech utterances (2-3 s) and a word each transcript must hold.
SHORT = {"1089-134691-0000": "wait", "3005-163389-0004": "coward", "1089-134686-0001": "belly"}
CPU = ["--backend", "cpu", "--batch-size", "4", "-q"]  # the numpy backend


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """in/a/x.flac, in/b/x.flac (same name, other folder), in/b/y.flac, in/b/corrupt.flac,
    in/b/done.flac (its output already exists), and files a folder walk must leave out."""
    src = {k: eval_file("librispeech", f"{k}.flac") for k in SHORT}
    root = tmp_path / "in"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    ids = list(SHORT)
    (root / "a" / "x.flac").write_bytes(src[ids[0]].read_bytes())
    (root / "b" / "x.flac").write_bytes(src[ids[1]].read_bytes())
    (root / "b" / "y.flac").write_bytes(src[ids[2]].read_bytes())
    (root / "b" / "done.flac").write_bytes(src[ids[2]].read_bytes())
    data = src[ids[0]].read_bytes()
    (root / "b" / "corrupt.flac").write_bytes(data[:200] + b"\0" * 4000)
    (root / "b" / "notes.txt").write_text("not media")
    (root / "b" / ".hidden.flac").write_bytes(data)
    return root


def _mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def test_job_skips_done_reports_corrupt_writes_the_rest_and_resumes(folder, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "b").mkdir(parents=True)
    (out / "b" / "done.txt").write_text("transcribed before\n")
    (out / "b" / "y.txt.part").write_text("half-writ")  # an interrupted write is not "done"
    status = main(["transcribe", str(folder), "-o", str(out), "-f", "txt", *CPU])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    assert "Traceback" not in captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "corrupt.flac" in errors[0]
    assert "3 done" in captured.err and "1 skipped" in captured.err and "1 failed" in captured.err
    assert "  failed: " in captured.err and "corrupt.flac" in captured.err.split("  failed: ")[1]
    words = dict(zip(("a/x.txt", "b/x.txt", "b/y.txt"), SHORT.values()))
    for rel, word in words.items():  # same-named inputs of two folders: two outputs
        assert word in (out / rel).read_text().lower()
    assert (out / "b" / "done.txt").read_text() == "transcribed before\n"
    assert sorted(_mtimes(out)) == ["a/x.txt", "b/done.txt", "b/x.txt", "b/y.txt"]  # no .part

    past = 1_000_000_000 * 10**9
    for p in out.rglob("*.txt"):
        os.utime(p, ns=(past, past))
    before = _mtimes(out)
    status = main(["transcribe", str(folder), "-o", str(out), "-f", "txt", *CPU])
    err = capsys.readouterr().err
    assert status == 2 and "0 done" in err and "4 skipped" in err and "1 failed" in err
    assert _mtimes(out) == before  # nothing redone

    status = main(["transcribe", str(folder), "-o", str(out), "-f", "txt", "--overwrite", *CPU])
    err = capsys.readouterr().err
    assert status == 2 and "4 done" in err and "0 skipped" in err
    assert all(t > past for t in _mtimes(out).values())
    assert "belly" in (out / "b" / "done.txt").read_text().lower()


def test_input_list_all_formats_and_exit_status(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(folder)
    listing = tmp_path / "files.txt"
    listing.write_text("# the job\n\nb/y.flac\n  \n" + f"{folder / 'a' / 'x.flac'}\n# end\n")
    out = tmp_path / "out"
    status = main(["transcribe", "--input-list", str(listing), "-o", str(out), "-f", "all", *CPU])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "2 done" in err and "0 failed" in err
    for ext in ("txt", "json", "srt", "vtt", "tsv"):  # mirrored below their common folder
        assert (out / "a" / f"x.{ext}").is_file() and (out / "b" / f"y.{ext}").is_file()
    assert "belly" in (out / "b" / "y.txt").read_text().lower()


def test_several_inputs_print_each_in_input_order(folder, capsys):
    files = [folder / "b" / "y.flac", folder / "a" / "x.flac"]
    status = main(["transcribe", *map(str, files), "--backend", "cpu"])
    out = capsys.readouterr().out
    assert status == 0
    headers = [line for line in out.splitlines() if line.startswith("==> ")]
    assert headers == [f"==> {f} <==" for f in files]
    assert out.index("belly") < out.index("wait")


def test_no_inputs_and_missing_list_are_clear_errors(tmp_path, capsys):
    assert main(["transcribe", "--backend", "cpu"]) == 2
    assert "no inputs" in capsys.readouterr().err
    assert main(["transcribe", "--input-list", str(tmp_path / "nope.txt"), "--backend", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "nope.txt" in err and "Traceback" not in err


# -- planning, without a model ------------------------------------------------------------------
def test_media_files_recursive_sorted_filtered(folder):
    (folder / "a" / "deeper").mkdir()
    (folder / "a" / "deeper" / "z.MP3").write_bytes(b"x")
    names = [str(p.relative_to(folder)) for p in media_files(folder)]
    assert names == [
        "a/deeper/z.MP3",
        "a/x.flac",
        "b/corrupt.flac",
        "b/done.flac",
        "b/x.flac",
        "b/y.flac",
    ]  # no .txt, no hidden file; sorted by folder, then name
    assert {".flac", ".mp3", ".wav", ".m4a", ".mp4", ".webm"} <= MEDIA_EXTENSIONS


def test_collect_inputs_dedupes_and_reports_empty_folders(folder, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    inputs, failed = collect_inputs([str(folder / "a"), str(folder / "a" / "x.flac"), str(empty)])
    assert [i.path for i in inputs] == [folder / "a" / "x.flac"]
    assert len(failed) == 1 and "no media files" in failed[0][1]


def test_read_input_list_skips_blanks_and_comments(tmp_path):
    listing = tmp_path / "l.txt"
    listing.write_text("a.flac\n\n   # note\n b c.mp3 \n#x.wav\n")
    assert read_input_list(listing) == ["a.flac", "b c.mp3"]
    with pytest.raises(RuntimeInputError, match="input list"):
        read_input_list(tmp_path / "missing.txt")


def test_plan_outputs_mirrors_folders_and_keeps_clashing_extensions(tmp_path):
    inputs = [
        JobInput(tmp_path / "d1" / "a.flac", tmp_path / "d1"),
        JobInput(tmp_path / "d2" / "a.flac", tmp_path / "d2"),
        JobInput(tmp_path / "d2" / "s" / "b.flac", tmp_path / "d2"),
        JobInput(tmp_path / "d2" / "s" / "b.mp3", tmp_path / "d2"),
    ]
    out = tmp_path / "out"
    items = plan_outputs(inputs, out, ["txt", "srt"])
    assert [i.outputs[0] for i in items] == [
        out / "d1/a.txt",
        out / "d2/a.txt",
        out / "d2/s/b.flac.txt",
        out / "d2/s/b.mp3.txt",
    ]
    assert items[0].outputs[1] == out / "d1/a.srt"
    file = tmp_path / "d2" / "s" / "b.flac"
    one = plan_outputs([JobInput(file, file.parent)], out, ["txt"])  # a file: by its stem
    assert one[0].outputs == (out / "b.txt",)
