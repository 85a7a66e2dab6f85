"""How close an int8 decoder's logits are to the fp32 decoder's, teacher-forced on real speech.

WER on a few thousand words moves by half a point when any rounding changes, so it cannot tell
two quantizations apart; the logits can. This encodes LibriSpeech windows with the fp32 encoder,
takes the fp32 sequential transcript's tokens, and feeds the same features and tokens to the
fp32 decoder and to the int8 decoder of each checkout given (rows in batches of 8, as the
batched path runs them), then prints per checkout: mean |log p difference| at the fp32 tokens,
top-1 agreement and mean KL divergence from fp32.

    python tools/int8_fidelity.py                                # this checkout's int8 decoder
    git worktree add /tmp/old <commit>
    python tools/int8_fidelity.py --checkout /tmp/old --checkout .   # side by side
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LOGITS = """
import os, sys, numpy as np
sys.path.insert(0, os.getcwd())
from runtime import Runtime
session = Runtime("tiny.en", backend="onnx", precision=sys.argv[1]).session
data = np.load(sys.argv[2])
feats, tokens = data["features"], data["tokens"]
out = [session.decoder(feats[i: i + 8]).logits(tokens[i: i + 8], tuple(range(tokens.shape[1])))
       for i in range(0, len(feats), 8)]
np.save(sys.argv[3], np.concatenate(out))
"""


def prepare(path: Path, rows: int, n_tokens: int) -> None:
    """Features (fp32 encoder) and fp32 transcript tokens of up to ``rows`` utterances."""
    sys.path.insert(0, str(REPO))
    from runtime import Runtime
    from runtime.audio.decode import load_audio
    from runtime.audio.mel import log_mel_spectrogram, pad_or_trim
    from tools.eval_common import load_librispeech

    rt = Runtime("tiny.en", backend="onnx", precision="fp32")
    tok, tokens, feats = rt.tokenizer, [], []
    for utt in load_librispeech():
        audio = load_audio(utt.audio)
        ids = tok.encode(" " + rt.transcribe(audio, sequential=True).text.strip())
        if len(audio) > 30 * 16000 or len(ids) < n_tokens:
            continue
        tokens.append(list(tok.sot_sequence("en")) + [tok.special.no_timestamps] + ids[:n_tokens])
        feats.append(rt.session.encode(log_mel_spectrogram(pad_or_trim(audio))[None])[0])
        if len(tokens) == rows:
            break
    np.savez(path, features=np.stack(feats), tokens=np.array(tokens))


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def logits(checkout: Path, precision: str, inputs: Path, out: Path, cache: Path) -> np.ndarray:
    env = {**os.environ, "WHISPER_RUNTIME_ONNX_CACHE": str(cache)}
    subprocess.run(
        [sys.executable, "-c", LOGITS, precision, str(inputs), str(out)],
        cwd=checkout,
        env=env,
        check=True,
    )
    return np.load(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--checkout",
        type=Path,
        action="append",
        default=None,
        help="a checkout whose int8 decoder to measure (repeatable; default: this)",
    )
    ap.add_argument("--rows", type=int, default=48)
    ap.add_argument("--tokens", type=int, default=44, help="text tokens per row")
    args = ap.parse_args()
    checkouts = [c.resolve() for c in (args.checkout or [REPO])]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepare(tmp / "inputs.npz", args.rows, args.tokens)
        tokens = np.load(tmp / "inputs.npz")["tokens"]
        ref = log_softmax(logits(REPO, "fp32", tmp / "inputs.npz", tmp / "fp32.npy", tmp / "c0"))
        target = tokens[:, 2:, None]  # the text tokens, predicted from positions 1 .. T-2
        print(f"{len(tokens)} windows x {args.tokens} text tokens, teacher-forced")
        for i, checkout in enumerate(checkouts):
            got = log_softmax(
                logits(checkout, "int8", tmp / "inputs.npz", tmp / f"{i}.npy", tmp / f"c{i + 1}")
            )
            a, b = got[:, 1:-1], ref[:, 1:-1]
            dlogp = np.abs(np.take_along_axis(a, target, -1) - np.take_along_axis(b, target, -1))
            kl = (np.exp(b) * (b - a)).sum(-1)
            agree = (a.argmax(-1) == b.argmax(-1)).mean()
            print(
                f"{checkout}: mean |dlogp| {dlogp.mean():.4f}  top-1 agreement {agree:.4f}  "
                f"mean KL {kl.mean():.5f}"
            )


if __name__ == "__main__":
    main()
