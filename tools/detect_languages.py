"""Language detection on every English file of ``../shared/eval`` with the multilingual model.

    python tools/detect_languages.py                    # base on onnx int8, first 30 s per file
    python tools/detect_languages.py --batched          # the batched path's detection instead

Default: ``Runtime.detect_language`` (the first 30 s, what the sequential path uses). With
``--batched`` every file is transcribed on the batched path, whose detection sums the confident
windows of the file's first batch; that is slower (a full transcription per file). Prints
every file not detected as English, the lowest probabilities, and the count.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.eval_common import eval_dir  # noqa: E402


def english_files() -> list[Path]:
    root = eval_dir()
    files = sorted(root.glob("librispeech*/*.flac")) + sorted(root.glob("longform/*.flac"))
    return files + [root / "jfk.flac"]


def main(argv: list[str] | None = None) -> None:
    from runtime import Runtime

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--batched", action="store_true")
    args = parser.parse_args(argv)
    rt = Runtime(args.model, backend=args.backend, precision=args.precision)
    print(rt.session.describe())
    found, t0 = [], time.perf_counter()
    for path in english_files():
        if args.batched:
            result = rt.transcribe(path, temperature=0.0)
            language, probability = result.language, result.language_probability or 0.0
        else:
            guess = rt.detect_language(path)
            language, probability = guess.language, guess.probability
        found.append((path.relative_to(eval_dir()), language, probability))
        if language != "en":
            print(f"  NOT ENGLISH: {found[-1][0]}: {language} ({probability:.2f})", flush=True)
    english = sum(1 for _, lang, _ in found if lang == "en")
    lowest = sorted(found, key=lambda f: f[2] if f[1] == "en" else -1)[:3]
    print(
        f"{english}/{len(found)} files detected as English "
        f"({'batched path' if args.batched else 'first 30 s'}, {time.perf_counter() - t0:.0f} s); "
        f"lowest: {', '.join(f'{p.name} {lang} {prob:.2f}' for p, lang, prob in lowest)}"
    )


if __name__ == "__main__":
    main()
