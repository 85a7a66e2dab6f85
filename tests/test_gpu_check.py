"""tools/gpu_check.py without a GPU: its arguments and its one table."""

from __future__ import annotations

from tools.gpu_check import BATCHES, Row, parse_args, table


def test_defaults_on_a_gpu_and_on_the_cpu():
    gpu = parse_args([])
    assert not gpu.cpu and gpu.systems == "ours,mlx,faster"
    assert gpu.tasks == "chapter-15,chapter-8,librispeech-123,decoder"
    assert gpu.models == "tiny.en,base" and gpu.budget < 600  # well inside ten minutes
    cpu = parse_args(["--cpu", "--faster-python", "/x/python", "--tasks", "librispeech-2"])
    assert cpu.cpu and cpu.systems == "ours,faster" and cpu.tasks == "librispeech-2"
    assert cpu.faster_python == "/x/python"


def test_one_table_with_rtf_steps_and_failures():
    rows = [
        Row("ours", "tiny.en", "chapter-8", audio_s=500.0, wall_s=10.0, wer=4.5, peak_mib=812.4),
        Row("ours", "tiny.en", "decoder", steps={str(b): 100.0 * b for b in BATCHES}),
        Row("faster", "base", "chapter-8", audio_s=500.0, error="CUDA driver too old"),
    ]
    lines = table(rows).splitlines()
    assert lines[0].startswith("| system | model | task | audio s | wall s | RTF | WER %")
    assert lines[0].endswith("steps/s b1 / b8 / b16 / b32 |")
    assert lines[2] == "| ours | tiny.en | chapter-8 | 500 | 10.00 | 0.0200 | 4.50 | 812 | - |"
    assert lines[3].endswith("| 100 / 800 / 1600 / 3200 |")
    assert "failed: CUDA driver too old" in lines[4] and "| - | - | - |" in lines[4]
    assert all(line.count("|") == 10 for line in lines)
